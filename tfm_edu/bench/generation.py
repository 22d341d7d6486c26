"""The KV cache, timed: `python -m tfm_edu.bench generate`.

Chapter 9's character GPT writes greedily, batch 1, through `tfm_edu.decode.generate` with the KV
cache and without it, at several lengths; an untimed first run of each also checks that both
wrote the same tokens. Without the cache every step pushes the whole window through the model
again; with it only the newest token goes through. `_generate_verdict` reads what the numbers
say about that, up to and past the block size.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from tfm_edu.bench.method import (
    benchmark_clock,
    benchmark_threads,
    clock_text,
    compare,
    format_table,
    paired_ratio,
    where_text,
)

__all__ = ["GENERATE_PROMPT", "generate_repeats", "bench_generate"]

GENERATE_PROMPT = "def "  # what bench_generate's model continues (greedy, batch 1)


def generate_repeats(new_tokens: int) -> int:
    """Default rounds for `bench_generate` at one length: fewer for long runs, because without
    the cache a run's cost grows about with the square of its length (15, 7, 5 rounds at 64,
    256, 512 new tokens: about a minute in all for the shipped model on one CPU thread)."""
    return 15 if new_tokens <= 128 else 7 if new_tokens <= 256 else 5


def bench_generate(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 9's character GPT writing greedily, batch 1: tokens per second of
    `tfm_edu.decode.generate` with the KV cache and without it, at several lengths."""
    from tfm_edu.decode import generate
    from tfm_edu.device import pick
    from tfm_edu.pretrained import CHAR_GPT, char_gpt

    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench generate")
    parser.add_argument(
        "--tokens", type=int, nargs="+", default=[64, 256, 512], help="new tokens per run"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds per length (default: fewer when longer)"
    )
    parser.add_argument(
        "--checkpoint", default=CHAR_GPT, help="name in data/ or path without suffix"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    if any(n < 1 for n in args.tokens) or (args.repeats is not None and args.repeats < 1):
        parser.error("--tokens and --repeats must be >= 1")
    device = pick(args.device)
    threads = args.threads or None
    model, tokenizer = char_gpt(args.checkpoint, device=device)
    ids = tokenizer.encode(GENERATE_PROMPT, unknown="unk-quiet")
    prompt = torch.tensor([ids], device=device)  # (1, T0)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    clock = benchmark_clock(device, threads)
    rows, speedups, identical = [], {}, {}
    with benchmark_threads(threads if device.type == "cpu" else None):
        for n in args.tokens:
            run = partial(generate, model, prompt, n, greedy=True)
            cached, uncached = run(use_cache=True), run(use_cache=False)  # also the warm-up
            identical[n] = torch.equal(cached, uncached)
            repeats = args.repeats or generate_repeats(n)
            t = compare(
                {"cached": partial(run, use_cache=True), "uncached": partial(run, use_cache=False)},
                repeats=repeats,
                warmup=0,
                synchronize=sync,
                clock=clock,
                shuffle=True,
            )
            speedups[n] = paired_ratio(t["uncached"], t["cached"])  # uncached time / cached
            ratio, q1, q3 = speedups[n]
            rows.append(
                {
                    "new tokens": str(n),
                    "rounds": str(repeats),
                    "cached tok/s": f"{n / t['cached'].median:.0f}",
                    "uncached tok/s": f"{n / t['uncached'].median:.0f}",
                    "speed-up": f"{ratio:.2f}x",
                    "speed-up q1-q3": f"{q1:.2f}-{q3:.2f}",
                    "identical tokens": "yes" if identical[n] else "no",
                }
            )
    block = model.config.block_size
    print(
        f"Character GPT ({model.config.num_layers} layers, D={model.config.d_model}, block "
        f"{block}) writing greedily after {GENERATE_PROMPT!r}, batch 1, float32, "
        f"{where_text(device, threads)}, torch {torch.__version__}"
    )
    print(
        "interleaved rounds (order shuffled) after one untimed run of each, which also "
        f"compares their tokens; {clock_text(device, threads)}; speeds from the median time, "
        "speed-up = the median of round-by-round ratios uncached time / cached time\n"
    )
    print(format_table(rows))
    print("\n" + _generate_verdict(speedups, identical, prompt.shape[1], block))
    return rows


def _generate_verdict(
    speedups: dict[int, tuple[float, float, float]],
    identical: dict[int, bool],
    prompt_length: int,
    block: int,
) -> str:
    """The lines that read bench_generate's table, from its numbers."""
    lines = [
        f"at {n} new tokens the cache is {ratio:.1f}x faster (quartiles {q1:.1f}-{q3:.1f}x)"
        for n, (ratio, q1, q3) in speedups.items()
    ]
    lengths = sorted(speedups)
    if len(lengths) > 1:
        first, last = speedups[lengths[0]][0], speedups[lengths[-1]][0]
        trend = "grows" if last > first * 1.1 else "shrinks" if last < first / 1.1 else "stays"
        lines.append(
            f"from {lengths[0]} to {lengths[-1]} new tokens the speed-up {trend} "
            f"({first:.1f}x -> {last:.1f}x)"
            + (", as expected." if trend == "grows" else ": a loaded machine? Try more --repeats.")
        )
        lines.append(
            "Why: without the cache each step pushes the whole window, up to T tokens, through "
            "every layer again (O(T) rows of work per new token); with it only the newest token "
            "goes through, reading the stored keys and values. So the gap widens with the text "
            f"until the window reaches the block size ({block}, after {block - prompt_length} new "
            "tokens here); from there crop-and-refill keeps the window between "
            f"{block // 2 + 1} and {block} tokens, and the gap stops growing (the cached path "
            "also pays a refill each time the window jumps)."
        )
    differ = [str(n) for n, same in identical.items() if not same]
    lines.append(
        "both paths wrote exactly the same tokens at every length (torch.equal)"
        if not differ
        else f"the two paths' tokens differ at {', '.join(differ)} new tokens: the cache "
        "should change the work, never the text"
    )
    return "\n".join(lines)
