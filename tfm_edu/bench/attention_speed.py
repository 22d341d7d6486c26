"""Attention, ours against PyTorch's: `python -m tfm_edu.bench attention | bert`.

- `bench_attention` (chapter 2): one multi-head self-attention forward at several (B, T, D, H)
  sizes, NumPy's (chapter 1), our `MultiHeadAttention` and `nn.MultiheadAttention`, both of the
  latter returning per-head weights, then both again through their fused paths (no weights);
  `attention_rows` is the same measurement as table rows, for the notebook.
- `bench_bert` (chapter 7): the real all-MiniLM-L6-v2 over a padded batch, our explicit attention
  (softmax written out, every weight map kept) against the fused
  `F.scaled_dot_product_attention`, with the largest difference between their outputs.

Both time as `tfm_edu.bench.method` explains: interleaved rounds, paired ratios.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from torch import nn

from tfm_edu.bench.method import (
    benchmark_clock,
    benchmark_threads,
    clock_text,
    compare,
    format_table,
    paired_ratio,
    where_text,
)

__all__ = ["attention_sizes", "attention_rows", "bench_attention", "bench_bert"]


def attention_sizes(quick: bool = False) -> list[tuple[int, int, int, int]]:
    """(B, T, D, H) shapes for the attention benchmark."""
    if quick:
        return [(2, 32, 64, 4), (2, 128, 128, 4)]
    return [(8, 64, 128, 4), (2, 128, 128, 4), (8, 128, 256, 8), (4, 256, 256, 8), (2, 512, 512, 8)]


@torch.no_grad()
def attention_rows(
    sizes: list[tuple[int, int, int, int]],
    repeats: int,
    device: torch.device,
    threads: int | None = 1,
    causal: bool = False,
) -> list[dict[str, str]]:
    """Time self-attention forward passes of each implementation; one table row per size.

    Args:
        sizes: (B, T, D, H) shapes.
        repeats: interleaved rounds per size.
        device: where the torch modules and inputs live (NumPy always runs on the CPU).
        threads: CPU threads for torch and NumPy while timing (restored after); None leaves the
            current setting.
        causal: pass a causal mask to every implementation (default: no mask).

    Returns:
        One dict per size: times in ms, and the ratios as the median of round-by-round ratios
        ("ours/nn.MHA q1-q3" gives that ratio's quartiles), except numpy/ours: NumPy is timed
        in rounds of its own, and that ratio divides the two medians.
    """
    with benchmark_threads(threads if device.type == "cpu" else None):
        return [_attention_row(size, repeats, device, causal) for size in sizes]


def _attention_row(
    size: tuple[int, int, int, int], repeats: int, device: torch.device, causal: bool
) -> dict[str, str]:
    from tfm_edu import numpy_attention as npa
    from tfm_edu.attention import MultiHeadAttention
    from tfm_edu.reference import copy_attention_to_torch, to_torch_mask

    B, T, D, H = size
    ours = MultiHeadAttention(d_model=D, num_heads=H, bias=False).to(device).eval()
    ours_fused = MultiHeadAttention(d_model=D, num_heads=H, bias=False, fused=True)
    ours_fused = ours_fused.to(device).eval()
    ours_fused.load_state_dict(ours.state_dict())
    theirs = nn.MultiheadAttention(D, H, bias=False, batch_first=True).to(device).eval()
    copy_attention_to_torch(ours, theirs)
    x = torch.randn(B, T, D, device=device)  # (B, T, D)
    mask = torch.ones(T, T, dtype=torch.bool, device=device).tril() if causal else None  # (T, T)
    blocked = None if mask is None else to_torch_mask(mask)  # (T, T) nn.MHA's: True = blocked
    candidates = {
        "ours": partial(ours, x, x, x, mask),
        "torch": partial(
            theirs, x, x, x, attn_mask=blocked, need_weights=True, average_attn_weights=False
        ),
        "ours_fused": partial(ours_fused, x, x, x, mask, return_attention=False),
        "torch_fused": partial(theirs, x, x, x, attn_mask=blocked, need_weights=False),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    clock = benchmark_clock(device, torch.get_num_threads() if device.type == "cpu" else None)
    t = compare(
        candidates, repeats=repeats, synchronize=sync, number=None, clock=clock, shuffle=True
    )
    if device.type == "cpu":
        # In rounds of its own: NumPy's large temporaries make the allocator hand fresh memory
        # pages (page faults, several ms) to whichever torch candidate runs next.
        x_np = x.numpy()
        w = [p.weight.T.numpy() for p in (ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj)]
        mask_np = None if mask is None else mask.numpy()
        numpy_mha = partial(npa.multi_head_attention, x_np, x_np, *w, H, mask_np)
        t |= compare({"numpy": numpy_mha}, repeats=repeats, number=None, clock=clock)
    ms = {k: f"{v.median * 1e3:.2f}" for k, v in t.items()}
    ratio, q1, q3 = paired_ratio(t["ours"], t["torch"])
    return {
        "B,T,D,H": f"{B},{T},{D},{H}",
        "numpy ms": ms.get("numpy", "-"),
        "ours ms": ms["ours"],
        "nn.MHA ms": ms["torch"],
        "ours/nn.MHA": f"{ratio:.2f}x",
        "ours/nn.MHA q1-q3": f"{q1:.2f}-{q3:.2f}",
        "numpy/ours": f"{t['numpy'].median / t['ours'].median:.2f}x" if "numpy" in t else "-",
        "fused: ours ms": ms["ours_fused"],
        "fused: nn.MHA ms": ms["torch_fused"],
        "fused ratio": f"{paired_ratio(t['ours_fused'], t['torch_fused'])[0]:.2f}x",
    }


def bench_attention(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Multi-head self-attention forward: NumPy, ours and PyTorch's, with and without weights."""
    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench attention")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="two small sizes (for notebooks)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    parser.add_argument("--causal", action="store_true", help="with a causal mask")
    args = parser.parse_args(argv or [])
    from tfm_edu.device import pick

    device = pick(args.device)
    threads = args.threads or None
    torch.manual_seed(0)
    rows = attention_rows(attention_sizes(args.quick), args.repeats, device, threads, args.causal)
    where = where_text(device, threads)
    print(
        f"Multi-head self-attention forward{' with a causal mask' if args.causal else ''}, "
        f"float32, {where}, torch {torch.__version__}"
    )
    print(
        f"{args.repeats} interleaved rounds (order shuffled, after warm-up), "
        f"{clock_text(device, threads)}; times are medians, ratios the median of round-by-round "
        "ratios; "
        "ratio < 1 means ours is faster\n"
    )
    print(format_table(rows))
    worst = max(float(r["ours/nn.MHA"].rstrip("x")) for r in rows)
    print(
        "\nours/nn.MHA: both return per-head weights "
        "(need_weights=True, average_attn_weights=False); q1-q3 are its quartiles."
        "\nfused: no weights; ours calls F.scaled_dot_product_attention, nn.MHA its fast path."
        "\nnumpy/ours: NumPy runs in rounds of its own (its large temporaries would slow whatever "
        "runs next), so it is a ratio of medians."
        f"\nslowest size: ours takes {worst:.2f}x nn.MHA's time "
        f"({'within' if worst <= 1.1 else 'outside'} 1.1x)"
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
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    import copy

    from tfm_edu.attention import set_fused
    from tfm_edu.device import pick
    from tfm_edu.pretrained import load_minilm

    device = pick(args.device)
    threads = args.threads or None
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
    threads_used = benchmark_threads(threads if device.type == "cpu" else None)
    with torch.inference_mode(), threads_used:
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
            clock=benchmark_clock(device, threads),
            shuffle=True,
        )
    ratio = paired_ratio(t["explicit"], t["fused"])[0]
    rows = [
        {
            "attention path": name,
            "ms / batch": f"{t[name].median * 1e3:.1f}",
            "sentences / s": f"{B / t[name].median:.1f}",
            "time / fused": f"{ratio if name == 'explicit' else 1.0:.2f}x",
        }
        for name in ("explicit", "fused")
    ]
    print(
        f"all-MiniLM-L6-v2 forward (6 layers, 12 heads, D=384), batch {B} x {T} tokens padded "
        f"(real lengths {T // 4}-{T}), float32, {where_text(device, threads)}, "
        f"torch {torch.__version__}"
    )
    print(
        f"{args.repeats} interleaved rounds after warm-up, {clock_text(device, threads)}; "
        "times are medians, the ratio the median of round-by-round ratios\n"
    )
    print(format_table(rows))
    print(
        f"\nexplicit / fused = {ratio:.2f}: explicit computes "
        "and keeps every (B, H, T, T) weight map; fused never materialises them."
        f"\nlargest difference in the outputs' real tokens: {difference:.1e}"
    )
    return rows
