"""Speed, measured honestly: `python -m tfm_edu.bench <benchmark>`.

Each benchmark times our implementation and its reference *in the same run*, interleaving them
round by round (so a busy machine slows both alike), and reports, for each pair, the median of
the round-by-round ratios with its quartiles. Absolute times depend on the machine; the ratios
are what the course quotes. Tests never time anything. The method, and why, is in `method`.

    python -m tfm_edu.bench attention      # NumPy vs ours vs nn.MultiheadAttention vs SDPA
    python -m tfm_edu.bench bert           # MiniLM, batch of 64: explicit softmax vs fused SDPA
    python -m tfm_edu.bench generate       # char GPT, greedy: generation with vs without KV cache
    python -m tfm_edu.bench student        # MiniLM vs its 2-layer student: sentences per second
    python -m tfm_edu.bench prune          # MiniLM: half its heads pruned vs half weights zeroed
    python -m tfm_edu.bench int8           # MiniLM, float32 vs our int8 linears: speed, MB, cosine
    python -m tfm_edu.bench scaling        # one attention call vs T: time, peak memory, FLOPs

One module per subject, all of it importable from `tfm_edu.bench` itself:

- `method`: the measuring method (`compare`, `paired_ratio`, `benchmark_threads`,
  `benchmark_clock`, `Timing`) and `format_table`;
- `attention_speed`: `attention` and `bert`, our attention against PyTorch's (chapters 2 and 7);
- `generation`: `generate`, with and without the KV cache (chapter 9);
- `student`: `sentence_speed`, the sentences-per-second yardstick, and `student` (chapter 10);
- `compression`: `int8` and `prune`, MiniLM made cheaper without retraining (chapter 11);
- `scaling`: `scaling`, one attention call's time and memory against T (chapter 11).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tfm_edu.bench.attention_speed import (
    attention_rows,
    attention_sizes,
    bench_attention,
    bench_bert,
)
from tfm_edu.bench.compression import bench_int8, bench_prune
from tfm_edu.bench.generation import GENERATE_PROMPT, bench_generate, generate_repeats
from tfm_edu.bench.method import SAMPLE_SECONDS as SAMPLE_SECONDS  # importable here, not in __all__
from tfm_edu.bench.method import (
    Timing,
    benchmark_clock,
    benchmark_threads,
    compare,
    format_table,
    paired_ratio,
)
from tfm_edu.bench.scaling import SCALING_LENGTHS, bench_scaling, scaling_repeats
from tfm_edu.bench.student import bench_student, sentence_speed

__all__ = [
    "Timing",
    "compare",
    "paired_ratio",
    "benchmark_threads",
    "benchmark_clock",
    "format_table",
    "attention_sizes",
    "attention_rows",
    "bench_attention",
    "bench_bert",
    "GENERATE_PROMPT",
    "generate_repeats",
    "bench_generate",
    "sentence_speed",
    "bench_student",
    "bench_prune",
    "bench_int8",
    "SCALING_LENGTHS",
    "scaling_repeats",
    "bench_scaling",
    "main",
]


# name -> (the benchmark, taking the remaining argv; what it measures)
BENCHMARKS: dict[str, tuple[Callable[[list[str]], object], str]] = {
    "attention": (bench_attention, "multi-head attention forward, CPU or GPU"),
    "bert": (bench_bert, "real MiniLM forward: explicit attention vs fused SDPA"),
    "generate": (bench_generate, "char GPT generation: tokens/s with and without the KV cache"),
    "student": (bench_student, "MiniLM vs its distilled student: sentences/s, same sentences"),
    "prune": (
        bench_prune,
        "heads really pruned vs weights zeroed by magnitude: parameters and time",
    ),
    "int8": (bench_int8, "real MiniLM, float32 vs our int8 linears: sentences/s, bytes, cosine"),
    "scaling": (
        bench_scaling,
        "one attention call vs sequence length: time, peak memory, FLOPs",
    ),
}


def main(argv: list[str] | None = None) -> None:
    """`python -m tfm_edu.bench <benchmark> [options]`."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.bench",
        description="Time our implementations against PyTorch's references, in one run.",
        epilog="benchmarks:\n" + "\n".join(f"  {k:12s}{v[1]}" for k, v in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    if not argv or argv[0] not in BENCHMARKS:  # none named: show help or a clear error
        parser.parse_args(argv[:1] or ["--help"])
    run, _ = BENCHMARKS[argv[0]]
    run(argv[1:])
