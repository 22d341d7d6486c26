"""Speed, measured honestly: `python -m tfm_edu.bench <benchmark>`.

Each benchmark times our implementation and its reference *in the same run*, interleaving them
round by round (so a busy machine slows both alike), and prints medians and ratios. Absolute
times depend on the machine; the ratios are what the course quotes. Tests never time anything.

    python -m tfm_edu.bench attention      # NumPy vs ours vs nn.MultiheadAttention vs SDPA
    python -m tfm_edu.bench bert           # MiniLM, batch of 64: explicit softmax vs fused SDPA
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

__all__ = [
    "Timing",
    "compare",
    "format_table",
    "attention_sizes",
    "bench_attention",
    "bench_bert",
    "main",
]


@dataclass(frozen=True)
class Timing:
    """Median seconds of one implementation over `repeats` interleaved rounds."""

    name: str
    median: float
    repeats: int


def compare(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 3,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaved round by round; return median timings.

    Args:
        candidates: name -> callable doing one unit of work.
        repeats: timed rounds (each candidate runs once per round).
        warmup: untimed rounds first (allocations, caches, lazy initialisation).
        synchronize: called after each run (e.g. `torch.cuda.synchronize` on a GPU, where
            kernels run asynchronously and would otherwise look free).
    """
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
            sync()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(name, statistics.median(s), repeats) for name, s in samples.items()}


def format_table(rows: list[dict[str, str]]) -> str:
    """Rows of equal keys -> an aligned plain-text table."""
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    line = "  ".join(h.rjust(widths[h]) for h in headers)
    body = ["  ".join(r[h].rjust(widths[h]) for h in headers) for r in rows]
    return "\n".join([line, "-" * len(line), *body])


def attention_sizes(quick: bool = False) -> list[tuple[int, int, int, int]]:
    """(B, T, D, H) shapes for the attention benchmark."""
    if quick:
        return [(2, 32, 64, 4), (2, 128, 128, 4)]
    return [(8, 64, 128, 4), (8, 128, 256, 8), (4, 256, 256, 8), (2, 512, 512, 8)]


@torch.no_grad()
def attention_rows(
    sizes: list[tuple[int, int, int, int]], repeats: int, device: torch.device
) -> list[dict[str, str]]:
    """Time self-attention forward passes of each implementation; one table row per size."""
    from tfm_edu import numpy_attention as npa
    from tfm_edu.attention import MultiHeadAttention
    from tfm_edu.reference import copy_attention_to_torch

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    for B, T, D, H in sizes:
        ours = MultiHeadAttention(d_model=D, num_heads=H, bias=False).to(device).eval()
        ours_fused = MultiHeadAttention(d_model=D, num_heads=H, bias=False, fused=True)
        ours_fused = ours_fused.to(device).eval()
        ours_fused.load_state_dict(ours.state_dict())
        theirs = nn.MultiheadAttention(D, H, bias=False, batch_first=True).to(device).eval()
        copy_attention_to_torch(ours, theirs)
        x = torch.randn(B, T, D, device=device)  # (B, T, D)
        x_np = x.cpu().numpy()
        w = [
            p.weight.T.cpu().numpy() for p in (ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj)
        ]
        t = compare(
            {
                "ours": partial(ours, x, x, x),
                "torch": partial(theirs, x, x, x, need_weights=True, average_attn_weights=False),
                "ours_fused": partial(ours_fused, x, x, x, return_attention=False),
                "torch_fused": partial(theirs, x, x, x, need_weights=False),
            },
            repeats=repeats,
            synchronize=sync,
        )
        if device.type == "cpu":
            # Timed apart: NumPy's BLAS threads keep spinning after a call and would slow the
            # torch calls interleaved with them (and vice versa).
            numpy_mha = partial(npa.multi_head_attention, x_np, x_np, *w, H)
            t |= compare({"numpy": numpy_mha}, repeats=repeats)
        ms = {k: f"{v.median * 1e3:.2f}" for k, v in t.items()}
        rows.append(
            {
                "B,T,D,H": f"{B},{T},{D},{H}",
                "numpy ms": ms.get("numpy", "-"),
                "ours ms": ms["ours"],
                "nn.MHA ms": ms["torch"],
                "ours/nn.MHA": f"{t['ours'].median / t['torch'].median:.2f}x",
                "numpy/ours": (
                    f"{t['numpy'].median / t['ours'].median:.2f}x" if "numpy" in t else "-"
                ),
                "fused: ours ms": ms["ours_fused"],
                "fused: nn.MHA ms": ms["torch_fused"],
                "fused ratio": f"{t['ours_fused'].median / t['torch_fused'].median:.2f}x",
            }
        )
    return rows


def bench_attention(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Multi-head self-attention forward: NumPy, ours and PyTorch's, with and without weights."""
    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench attention")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="two small sizes (for notebooks)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    args = parser.parse_args(argv or [])
    from tfm_edu.device import describe, pick

    device = pick(args.device)
    torch.manual_seed(0)
    rows = attention_rows(attention_sizes(args.quick), args.repeats, device)
    print(
        f"Multi-head self-attention forward, float32, {describe(device)}, torch {torch.__version__}"
    )
    print(f"median of {args.repeats} interleaved rounds; ratio < 1 means ours is faster\n")
    print(format_table(rows))
    print(
        "\nours/nn.MHA: both return per-head weights "
        "(need_weights=True, average_attn_weights=False)."
        "\nfused: no weights; ours calls F.scaled_dot_product_attention, nn.MHA its fast path."
    )
    return rows


def bench_bert(argv: list[str] | None = None) -> list[dict[str, str]]:
    """The real all-MiniLM-L6-v2, one forward pass over a padded batch: our explicit attention
    (softmax written out, weights computed) vs the fused `F.scaled_dot_product_attention`."""
    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench bert")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128, help="padded length T")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    args = parser.parse_args(argv or [])
    import copy

    from tfm_edu.attention import set_fused
    from tfm_edu.device import describe, pick
    from tfm_edu.pretrained import load_minilm

    device = pick(args.device)
    explicit, tokenizer = load_minilm(device)
    fused = set_fused(copy.deepcopy(explicit), True)
    B, T = args.batch_size, args.seq_len
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(T // 4, T + 1, (B,), generator=generator)  # (B,) real lengths
    ids = torch.randint(1000, tokenizer.vocab_size, (B, T), generator=generator)  # (B, T) words
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T) True = real token
    ids = ids.masked_fill(~mask, tokenizer.pad_id).to(device)
    ids[:, 0] = tokenizer.cls_id
    mask = mask.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.inference_mode():
        difference = (
            (explicit(ids, mask).last_hidden_state - fused(ids, mask).last_hidden_state)[mask]
            .abs()
            .max()
            .item()
        )
        t = compare(
            {
                "explicit": partial(explicit, ids, mask),
                "fused": partial(fused, ids, mask),
            },
            repeats=args.repeats,
            warmup=1,
            synchronize=sync,
        )
    rows = [
        {
            "attention path": name,
            "ms / batch": f"{t[name].median * 1e3:.1f}",
            "sentences / s": f"{B / t[name].median:.1f}",
            "time / fused": f"{t[name].median / t['fused'].median:.2f}x",
        }
        for name in ("explicit", "fused")
    ]
    print(
        f"all-MiniLM-L6-v2 forward (6 layers, 12 heads, D=384), batch {B} x {T} tokens padded "
        f"(real lengths {T // 4}-{T}), float32, {describe(device)}, torch {torch.__version__}"
    )
    print(f"median of {args.repeats} interleaved rounds\n")
    print(format_table(rows))
    print(
        f"\nexplicit / fused = {t['explicit'].median / t['fused'].median:.2f}: explicit computes "
        "and keeps every (B, H, T, T) weight map; fused never materialises them."
        f"\nlargest difference in the outputs' real tokens: {difference:.1e}"
    )
    return rows


# name -> (the benchmark, taking the remaining argv; what it measures)
BENCHMARKS: dict[str, tuple[Callable[[list[str]], object], str]] = {
    "attention": (bench_attention, "multi-head attention forward, CPU or GPU"),
    "bert": (bench_bert, "real MiniLM forward: explicit attention vs fused SDPA"),
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


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
