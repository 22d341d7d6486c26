"""Sentences per second, and chapter 10's student: `python -m tfm_edu.bench student`.

`sentence_speed` is the yardstick for every smaller MiniLM: each model embeds the same held-out
sentences of the help texts (`tfm_edu.models.bert.sentence_embeddings`, batches of 64 sorted by
length) in interleaved rounds. `bench_student` uses it on all-MiniLM-L6-v2 and its distilled
2-layer student; `tfm_edu.bench.compression` on its int8 and pruned versions.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from torch import nn

from tfm_edu.bench.method import (
    Timing,
    benchmark_clock,
    benchmark_threads,
    clock_text,
    compare,
    format_table,
    paired_ratio,
    where_text,
)

__all__ = ["sentence_speed", "sentence_bench_args", "bench_student"]


def sentence_speed(
    models: dict[str, nn.Module],
    tokenizer,
    sentences: list[str],
    *,
    repeats: int = 5,
    threads: int | None = 1,
) -> dict[str, Timing]:
    """Seconds to embed the same sentences (`tfm_edu.models.bert.sentence_embeddings`, batches
    of 64 sorted by length) with each model, in interleaved rounds after one warm-up, on the
    CPU with `threads` threads (None: leave as is).

    Returns:
        name -> Timing (seconds per pass over all the sentences); sentences per second is
        len(sentences) / median.
    """
    from tfm_edu.models.bert import sentence_embeddings

    device = next(iter(models.values())).embeddings.token_embedding.weight.device
    with benchmark_threads(threads if device.type == "cpu" else None), torch.inference_mode():
        return compare(
            {
                name: partial(sentence_embeddings, m, tokenizer, sentences)
                for name, m in models.items()
            },
            repeats=repeats,
            warmup=1,
            synchronize=torch.cuda.synchronize if device.type == "cuda" else None,
            clock=benchmark_clock(device, threads),
            shuffle=True,
        )


def sentence_bench_args(
    name: str, argv: list[str] | None, *, quick: int, extra: dict[str, dict] | None = None
) -> tuple[argparse.Namespace, list[str], int, int | None]:
    """The command line every MiniLM sentences-per-second benchmark shares, and its sentences.

    Args:
        name: the benchmark, e.g. "student" (for the usage line).
        argv: its arguments: --repeats N (default 7), --quick, --threads N (default 1), and
            `extra` {flag: add_argument keywords}.
        quick: how many sentences --quick keeps (it also caps the rounds at 3).

    Returns:
        (args, the held-out sentences of the help texts, rounds, threads or None to leave the
        thread count as it is).
    """
    from tfm_edu.data.corpus import sentence_split

    parser = argparse.ArgumentParser(prog=f"python -m tfm_edu.bench {name}")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help=f"{quick} sentences, 3 rounds")
    for flag, options in (extra or {}).items():
        parser.add_argument(flag, **options)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    sentences, repeats = sentence_split()[1], args.repeats
    if args.quick:
        sentences, repeats = sentences[:quick], min(repeats, 3)
    return args, sentences, repeats, args.threads or None


def bench_student(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 10: all-MiniLM-L6-v2 and its 2-layer student embedding the same held-out
    sentences of the help texts: sentences per second and the speed-up."""
    from tfm_edu.pretrained import MINILM_STUDENT, load_minilm, minilm_student

    checkpoint = {"default": MINILM_STUDENT, "help": "name in data/ or path without suffix"}
    args, sentences, repeats, threads = sentence_bench_args(
        "student", argv, quick=32, extra={"--checkpoint": checkpoint}
    )
    teacher, tokenizer = load_minilm()
    student, _ = minilm_student(args.checkpoint)
    t = sentence_speed(
        {"MiniLM": teacher, "student": student}, tokenizer, sentences, repeats=repeats,
        threads=threads,
    )  # fmt: skip
    ratio, q1, q3 = paired_ratio(t["MiniLM"], t["student"])
    rows = [
        {
            "model": name,
            "layers": str(model.config.num_layers),
            "d_ff": str(model.config.d_ff),
            "sentences / s": f"{len(sentences) / t[name].median:.1f}",
            "speed-up": f"{ratio if name == 'student' else 1.0:.2f}x",
        }
        for name, model in (("MiniLM", teacher), ("student", student))
    ]
    print(
        f"{len(sentences)} held-out sentences of the help texts, embedded in batches of 64 "
        f"sorted by length, float32, {where_text(torch.device('cpu'), threads)}, "
        f"torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, "
        f"{clock_text(torch.device('cpu'), threads)}; speeds from the median time, the "
        "speed-up the median of round-by-round ratios MiniLM time / student time\n"
    )
    print(format_table(rows))
    print(f"\nthe student is {ratio:.2f}x faster (quartiles {q1:.2f}-{q3:.2f}x)")
    return rows
