"""Speed, measured honestly: `python -m tfm_edu.bench <benchmark>`.

Each benchmark times our implementation and its reference *in the same run*, interleaving them
round by round (so a busy machine slows both alike), and reports, for each pair, the median of
the round-by-round ratios with its quartiles. Absolute times depend on the machine; the ratios
are what the course quotes. Tests never time anything.

The method, and why:
- warm-up rounds first (allocations, caches, lazy initialisation), untimed;
- interleaved rounds, each in a fresh (seeded) random order, so no candidate always runs first
  or right after the same neighbour, which may leave the caches cold or warm for it;
- each sample is several calls long (about 10 ms), so the clock's resolution and one-off
  hiccups do not dominate;
- the median of the ratios of one round's samples, not the ratio of two medians: a burst of load
  from another program hits both samples of a round, and the median ignores rounds it spoils;
- one CPU thread by default (restored afterwards): on cores shared with other programs, a second
  thread mostly measures who else is running; NumPy's BLAS gets the same limit;
- on one CPU thread, the clock is that thread's CPU time (`time.thread_time`): the time spent
  waiting while another program holds the core does not count, only the work. (With more threads,
  or on a GPU, the clock is the wall clock.)

    python -m tfm_edu.bench attention      # NumPy vs ours vs nn.MultiheadAttention vs SDPA
    python -m tfm_edu.bench bert           # MiniLM, batch of 64: explicit softmax vs fused SDPA
    python -m tfm_edu.bench generate       # char GPT, greedy: generation with vs without KV cache
    python -m tfm_edu.bench student        # MiniLM vs its 2-layer student: sentences per second
    python -m tfm_edu.bench prune          # MiniLM: half its heads pruned vs half weights zeroed
    python -m tfm_edu.bench int8           # MiniLM, float32 vs our int8 linears: speed, MB, cosine
    python -m tfm_edu.bench scaling        # one attention call vs T: time, peak memory, FLOPs
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

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

SAMPLE_SECONDS = 0.01  # aim for samples of about this length (several calls of a fast candidate)


@dataclass(frozen=True)
class Timing:
    """Median seconds per call of one implementation over `repeats` interleaved rounds.

    `samples` holds the seconds per call of each round, in round order, so that two timings
    from one `compare` can be paired round by round (`paired_ratio`).
    """

    name: str
    median: float
    repeats: int
    samples: tuple[float, ...] = ()


def compare(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 3,
    synchronize: Callable[[], None] | None = None,
    number: int | None = 1,
    clock: Callable[[], float] = time.perf_counter,
    shuffle: bool = False,
) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaved round by round; return median timings.

    Args:
        candidates: name -> callable doing one unit of work.
        repeats: timed rounds (each candidate is sampled once per round).
        warmup: untimed rounds first (allocations, caches, lazy initialisation).
        synchronize: called after each run (e.g. `torch.cuda.synchronize` on a GPU, where
            kernels run asynchronously and would otherwise look free).
        number: calls per sample; None picks it so the slowest candidate's sample lasts about
            `SAMPLE_SECONDS` (at least one call).
        clock: seconds now; the wall clock by default. `time.thread_time` (this thread's CPU
            time) is steadier on a shared machine, but counts only work done in this thread:
            use it with one thread (`benchmark_threads(1)`) and never on a GPU.
        shuffle: run each round in a fresh random order (seeded, so runs repeat) instead of
            the order of `candidates`, so that no candidate always runs first or always right
            after the same neighbour (which may have left the caches cold or warm for it).

    Returns:
        name -> Timing, whose `median` and `samples` are seconds per call.
    """
    sync = synchronize or (lambda: None)
    names = list(candidates)
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
            sync()
    if number is None:
        slowest = max(_seconds(candidates[name], 1, sync, clock) for name in names)
        number = max(1, math.ceil(SAMPLE_SECONDS / max(slowest, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    order, rng = list(names), random.Random(0)
    for _ in range(repeats):
        if shuffle:
            rng.shuffle(order)
        for name in order:
            samples[name].append(_seconds(candidates[name], number, sync, clock))
    return {
        name: Timing(name, statistics.median(s), repeats, tuple(s)) for name, s in samples.items()
    }


def _seconds(
    fn: Callable[[], object], number: int, sync: Callable[[], None], clock: Callable[[], float]
) -> float:
    start = clock()
    for _ in range(number):
        fn()
    sync()
    return (clock() - start) / number


def benchmark_clock(device: torch.device, threads: int | None) -> Callable[[], float]:
    """This thread's CPU time when timing one CPU thread, else the wall clock."""
    one_thread = threads == 1 or (threads is None and torch.get_num_threads() == 1)
    return time.thread_time if device.type == "cpu" and one_thread else time.perf_counter


def paired_ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """Median and quartiles of a's time over b's, round by round: (median, q1, q3).

    Both timings must come from the same `compare` call, so that round i of one ran next to
    round i of the other.
    """
    if len(a.samples) != len(b.samples) or not a.samples:
        raise ValueError(
            f"{a.name} and {b.name} must come from one compare() call "
            f"(got {len(a.samples)} and {len(b.samples)} samples)"
        )
    ratios = [x / y for x, y in zip(a.samples, b.samples, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return median, q1, q3


@contextlib.contextmanager
def benchmark_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` CPU threads for PyTorch and NumPy's BLAS, then restore both.

    None leaves both as they are. (NumPy's BLAS is limited through `threadpoolctl` where it is
    installed; it comes with scikit-learn.)
    """
    if count is None:
        yield
        return
    from tfm_edu.device import cpu_threads

    with contextlib.ExitStack() as stack:
        stack.enter_context(cpu_threads(count))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        else:
            stack.enter_context(threadpool_limits(limits=count, user_api="blas"))
        yield


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
    where = _where(device, threads)
    print(
        f"Multi-head self-attention forward{' with a causal mask' if args.causal else ''}, "
        f"float32, {where}, torch {torch.__version__}"
    )
    print(
        f"{args.repeats} interleaved rounds (order shuffled, after warm-up), "
        f"{_clock_name(device, threads)}; times are medians, ratios the median of round-by-round "
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
        f"(real lengths {T // 4}-{T}), float32, {_where(device, threads)}, "
        f"torch {torch.__version__}"
    )
    print(
        f"{args.repeats} interleaved rounds after warm-up, {_clock_name(device, threads)}; "
        "times are medians, the ratio the median of round-by-round ratios\n"
    )
    print(format_table(rows))
    print(
        f"\nexplicit / fused = {ratio:.2f}: explicit computes "
        "and keeps every (B, H, T, T) weight map; fused never materialises them."
        f"\nlargest difference in the outputs' real tokens: {difference:.1e}"
    )
    return rows


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
        f"{_where(device, threads)}, torch {torch.__version__}"
    )
    print(
        "interleaved rounds (order shuffled) after one untimed run of each, which also "
        f"compares their tokens; {_clock_name(device, threads)}; speeds from the median time, "
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


def bench_student(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 10: all-MiniLM-L6-v2 and its 2-layer student embedding the same held-out
    sentences of the help texts: sentences per second and the speed-up."""
    from tfm_edu.data.corpus import sentence_split
    from tfm_edu.pretrained import MINILM_STUDENT, load_minilm, minilm_student

    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench student")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="32 sentences, 3 rounds")
    parser.add_argument(
        "--checkpoint", default=MINILM_STUDENT, help="name in data/ or path without suffix"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    threads = args.threads or None
    teacher, tokenizer = load_minilm()
    student, _ = minilm_student(args.checkpoint)
    sentences = sentence_split()[1]
    repeats = args.repeats
    if args.quick:
        sentences, repeats = sentences[:32], min(repeats, 3)
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
        f"sorted by length, float32, {_where(torch.device('cpu'), threads)}, "
        f"torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, "
        f"{_clock_name(torch.device('cpu'), threads)}; speeds from the median time, the "
        "speed-up the median of round-by-round ratios MiniLM time / student time\n"
    )
    print(format_table(rows))
    print(f"\nthe student is {ratio:.2f}x faster (quartiles {q1:.2f}-{q3:.2f}x)")
    return rows


SCALING_LENGTHS = (128, 256, 512, 1024, 2048, 4096, 8192)  # bench_scaling's default T values


def scaling_repeats(length: int, quick: bool = False) -> int:
    """Default rounds for `bench_scaling` at one length: fewer where one call takes longer
    (15 up to T=1024, then 9, 7, 5 at 2048, 4096, 8192; at most 5 with --quick), so that the
    default run takes about two minutes on one CPU thread."""
    rounds = 15 if length <= 1024 else 9 if length <= 2048 else 7 if length <= 4096 else 5
    return min(rounds, 5) if quick else rounds


def bench_scaling(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 11: one self-attention call at growing T through the explicit path, PyTorch's
    SDPA and `tiled_attention`: time, measured peak memory, and the analytic FLOPs and bytes."""
    from tfm_edu.device import pick
    from tfm_edu.efficiency.cost import (
        attention_flops,
        attention_memory,
        describe_slopes,
        loglog_slope,
    )
    from tfm_edu.efficiency.memory import (
        ATTENTION_PATHS,
        attention_inputs,
        measure_peak,
        sdpa_backend,
    )

    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench scaling")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="T values")
    parser.add_argument("--quick", action="store_true", help="T = 128..1024, fewer rounds")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default: by length)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: leave as is)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="write all numbers here")
    args = parser.parse_args(argv or [])
    lengths = args.lengths or (SCALING_LENGTHS[:4] if args.quick else SCALING_LENGTHS)
    if min(lengths) < 1 or (args.repeats is not None and args.repeats < 1):
        parser.error("--lengths and --repeats must be >= 1")
    device, threads = pick(args.device), args.threads or None
    B, H, Dh = 1, 4, 64
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    per_second = (1e12, "TFLOP/s") if device.type == "cuda" else (1e9, "GFLOP/s")
    rows, results, method = [], [], None
    with benchmark_threads(threads if device.type == "cpu" else None), torch.inference_mode():
        backend = sdpa_backend(*attention_inputs(lengths[0], batch=B, heads=H, head_dim=Dh,
                                                 device=device)[:3])  # fmt: skip
        for T in lengths:
            q, k, v, _ = attention_inputs(T, batch=B, heads=H, head_dim=Dh, device=device)
            repeats = args.repeats or scaling_repeats(T, args.quick)
            t = compare(
                {name: partial(run, q, k, v) for name, run in ATTENTION_PATHS.items()},
                repeats=repeats, warmup=1, synchronize=sync, number=None,
                clock=benchmark_clock(device, threads), shuffle=True,
            )  # fmt: skip
            flops = attention_flops(B, H, T, T, Dh)
            for name in ATTENTION_PATHS:
                peak = None if args.no_memory else measure_peak(
                    name, T, batch=B, heads=H, head_dim=Dh, device=device
                )  # fmt: skip
                method = peak.method if peak else method
                model = attention_memory(B, H, T, T, Dh, path=name)
                seconds = t[name].median
                results.append({"length": T, "path": name, "seconds": seconds,
                                "samples": list(t[name].samples), "flops": flops,
                                "peak_bytes": peak.bytes if peak else None,
                                "model_bytes": model})  # fmt: skip
                rows.append({
                    "T": str(T), "path": name, "rounds": str(repeats),
                    "ms": _figures(seconds * 1e3),
                    "/ explicit": f"{paired_ratio(t[name], t['explicit'])[0]:.2f}x",
                    per_second[1]: _figures(flops / seconds / per_second[0]),
                    "GFLOP": f"{flops / 1e9:.3g}",
                    "peak MiB": _figures(peak.bytes / 2**20) if peak else "-",
                    "model MiB": _figures(model / 2**20),
                })  # fmt: skip
    print(
        f"One self-attention call, B={B}, H={H}, Dh={Dh}, T = S, no mask, float32, "
        f"{_where(device, threads)}, torch {torch.__version__}"
    )
    kernel = {
        "FLASH_ATTENTION": f"flash attention in {'C++' if device.type == 'cpu' else 'CUDA'}: "
        "tiles and an online softmax, as tiled does",
        "EFFICIENT_ATTENTION": "the memory-efficient kernel: tiles, never the (T, S) matrix",
        "MATH": "the explicit formula, (T, S) matrix included",
    }.get(backend, "unknown")
    print(f"sdpa ran PyTorch's {backend} kernel on the {device.type.upper()}: {kernel}")
    fresh = ", a fresh process per call" if device.type == "cpu" else ""
    measured = "not measured (--no-memory)" if method is None else f"measured ({method}{fresh})"
    print(
        f"interleaved rounds (order shuffled) after one warm-up, {_clock_name(device, threads)}; "
        "ms = median per call, / explicit = median of round-by-round ratios; "
        f"GFLOP = 4 B H T S Dh (the two matmuls); peak MiB = {measured}, model MiB = "
        "tfm_edu.efficiency.cost.attention_memory\n"
    )
    print(format_table(rows))
    fit_from = 512 if sum(T >= 512 for T in lengths) >= 2 else None
    slopes: dict[str, dict[str, float]] = {"time": {}, "memory": {}}
    for name in ATTENTION_PATHS:
        mine = [r for r in results if r["path"] == name]
        x = [r["length"] for r in mine]
        slopes["time"][name] = loglog_slope(x, [r["seconds"] for r in mine], min_x=fit_from)
        if all(r["peak_bytes"] for r in mine) and len(set(x)) > 1:
            peaks = [r["peak_bytes"] for r in mine]
            slopes["memory"][name] = loglog_slope(x, peaks, min_x=fit_from)
    print(
        f"\nfitted log-log slopes (np.polyfit over {'T >= 512' if fit_from else 'all T'}):\n"
        + describe_slopes(slopes["time"], slopes["memory"])
    )
    if not args.no_memory:
        last = {r["path"]: max(r["peak_bytes"], 1) for r in results if r["length"] == lengths[-1]}
        print(
            f"at T={lengths[-1]}, explicit's peak is {last['explicit'] / last['tiled']:.0f}x "
            f"tiled's and {last['explicit'] / last['sdpa']:.0f}x sdpa's"
        )
    if args.json:
        import json

        with open(args.json, "w") as file:
            json.dump({"device": _where(device, threads), "torch": torch.__version__,
                       "batch": B, "heads": H, "head_dim": Dh, "dtype": "float32",
                       "sdpa_backend": backend, "memory_method": method, "slopes": slopes,
                       "results": results}, file, indent=2)  # fmt: skip
    return rows


def bench_int8(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 11: all-MiniLM-L6-v2 in float32 and with our int8 linear layers
    (`tfm_edu.efficiency.quantize`) embedding the same held-out sentences: sentences per second,
    the linear layers' bytes, and the cosine between float32 and int8 embeddings."""
    from tfm_edu.data.corpus import sentence_split
    from tfm_edu.efficiency.quantize import int8_fidelity, quantize_int8
    from tfm_edu.pretrained import load_minilm

    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench int8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="16 sentences, 3 rounds")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    threads = args.threads or None
    model, tokenizer = load_minilm()
    sentences, repeats = sentence_split()[1], args.repeats
    if args.quick:
        sentences, repeats = sentences[:16], min(repeats, 3)
    models = {
        "float32": model,
        "int8 weights": quantize_int8(model),
        "int8 matmul": quantize_int8(model, int8_matmul=True),
    }
    t = sentence_speed(models, tokenizer, sentences, repeats=repeats, threads=threads)
    speeds = {name: paired_ratio(t["float32"], t[name])[0] for name in models}  # float / it
    fidelity = {
        name: int8_fidelity(model, tokenizer, sentences, quantised=models[name])
        for name in ("int8 weights", "int8 matmul")
    }
    float_bytes = fidelity["int8 weights"]["bytes_float"]
    rows = [
        {
            "model": name,
            "linear MB": f"{(result['bytes_int8'] if result else float_bytes) / 1e6:.1f}",
            "of float32": f"{result['fraction'] if result else 1:.0%}",
            "sentences / s": f"{len(sentences) / t[name].median:.1f}",
            "speed vs float32": f"{speeds[name]:.2f}x",
            "cosine mean": f"{result['mean_cosine']:.4f}" if result else "1",
            "cosine min": f"{result['min_cosine']:.4f}" if result else "1",
        }
        for name, result in (("float32", None), *fidelity.items())
    ]
    cpu = torch.device("cpu")
    print(
        f"{len(sentences)} held-out sentences of the help texts, embedded by all-MiniLM-L6-v2 in "
        f"batches of 64 sorted by length, {_where(cpu, threads)}, "
        f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, {_clock_name(cpu, threads)}; speeds "
        "from the median time, speed vs float32 the median of round-by-round ratios.\n"
        "int8 weights: dequantised on every call, then a float32 matmul; int8 matmul: the "
        "inputs quantised per token too, int8 x int8 -> int32 sums (torch._int_mm); "
        "cosine: int8 vs float32 sentence embeddings\n"
    )
    print(format_table(rows))
    print("\n" + _int8_verdict(speeds, fidelity))
    return rows


def _int8_verdict(speeds: dict[str, float], fidelity: dict[str, dict[str, float]]) -> str:
    """The lines that read bench_int8's table, from its numbers."""
    weights, matmul = speeds["int8 weights"], speeds["int8 matmul"]
    lines = [
        f"the int8 linear layers hold {fidelity['int8 weights']['fraction']:.0%} of float32's "
        "bytes (1 byte per weight + one float32 step per output row + float32 biases)"
    ]
    if weights < 0.95:
        why = (
            "slower: dequantising every call costs more than the smaller weights save (the "
            "multiplication is still float32)"
        )
    elif weights <= 1.05:
        why = (
            "about the same: dequantising costs little, but the multiplication is still "
            "float32, so int8 weights save bytes held and moved, not arithmetic"
        )
    else:
        why = "faster: reading a quarter of the weight bytes saves more than dequantising costs"
    lines.append(f"int8 weights run at {weights:.2f}x the speed of float32, {why}")
    if matmul > 1.05:
        why = "faster: this CPU multiplies int8 faster than float32 (int8 arithmetic, int32 sums)"
    else:
        why = "no faster: quantising the inputs on every call eats what the int8 products save"
    lines.append(f"int8 matmul runs at {matmul:.2f}x the speed of float32, {why}")
    for name, result in fidelity.items():
        lines.append(
            f"{name}: cosine with float32 {result['mean_cosine']:.4f} on average, "
            f"{result['min_cosine']:.4f} at worst over {result['sentences']} sentences "
            f"({'at least' if result['min_cosine'] >= 0.99 else 'below'} 0.99)"
        )
    return "\n".join(lines)


def bench_prune(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Chapter 11: all-MiniLM-L6-v2 whole, with half of every layer's heads really removed
    (`tfm_edu.efficiency.pruning.prune_heads`), and with half of every Linear's weights zeroed
    (`magnitude_prune`), embedding the same held-out sentences: parameters, nonzero parameters,
    bytes, time, and the cosine of each one's sentence vectors with the whole model's."""
    from tfm_edu.data.corpus import sentence_split
    from tfm_edu.efficiency import pruning
    from tfm_edu.models.bert import sentence_embeddings
    from tfm_edu.pretrained import load_minilm

    parser = argparse.ArgumentParser(prog="python -m tfm_edu.bench prune")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="32 sentences, 3 rounds")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads while timing (0: leave as is)"
    )
    args = parser.parse_args(argv or [])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    threads, cpu = args.threads or None, torch.device("cpu")
    full, tokenizer = load_minilm()
    L, H = full.config.num_layers, full.config.num_heads
    # Heads H/2 .. H-1 of every layer. Every head has the same shape, so whichever half goes the
    # pruned matrices have the same sizes and the time is the same; only the accuracy depends on
    # the choice (`python -m tfm_edu.train prune-heads` measures that where there is a score).
    models = {
        "full": full,
        "heads pruned": pruning.prune_heads(full, {layer: range(H // 2, H) for layer in range(L)}),
        "weights zeroed": pruning.magnitude_prune(full, 0.5),
    }
    sentences, repeats = sentence_split()[1], args.repeats
    if args.quick:
        sentences, repeats = sentences[:32], min(repeats, 3)
    t = sentence_speed(models, tokenizer, sentences, repeats=repeats, threads=threads)
    with torch.inference_mode():
        vectors = {name: sentence_embeddings(m, tokenizer, sentences) for name, m in models.items()}
    ratios = {name: paired_ratio(t[name], t["full"]) for name in models}  # time / full's
    counts = {
        name: (pruning.count_parameters(m), pruning.count_zeros(m), pruning.parameter_bytes(m))
        for name, m in models.items()
    }
    cosines = {n: torch.cosine_similarity(v, vectors["full"]).mean() for n, v in vectors.items()}
    rows = [
        {
            "model": name,
            "heads": str(sum(layer.self_attn.num_heads for layer in model.encoder.layers)),
            "parameters": f"{counts[name][0]:,}",
            "nonzero": f"{counts[name][0] - counts[name][1]:,}",
            "MB": f"{counts[name][2] / 1e6:.1f}",
            "sentences / s": f"{len(sentences) / t[name].median:.1f}",
            "time / full": f"{ratios[name][0]:.2f} ({ratios[name][1]:.2f}-{ratios[name][2]:.2f})",
            "cosine to full": f"{cosines[name]:.3f}",
        }
        for name, model in models.items()
    ]
    print(
        f"all-MiniLM-L6-v2 ({L} layers x {H} heads): whole; heads {H // 2}-{H - 1} of every layer "
        "removed (prune_heads); 50 % of every Linear's weights zeroed by magnitude "
        f"(magnitude_prune). {len(sentences)} held-out sentences of the help texts, batches of 64 "
        f"sorted by length, float32, {_where(cpu, threads)}, torch {torch.__version__}"
    )
    print(
        f"{repeats} interleaved rounds after one warm-up, {_clock_name(cpu, threads)}; time / "
        "full: the median of round-by-round ratios (quartiles); cosine to full: the mean cosine "
        "of each sentence's vector with the whole model's\n"
    )
    print(format_table(rows))
    layer_weights = {name: pruning.count_parameters(m.encoder) for name, m in models.items()}
    print("\n" + _prune_verdict(ratios, counts, layer_weights, cosines))
    return rows


def _prune_verdict(
    ratios: dict[str, tuple[float, float, float]],
    counts: dict[str, tuple[int, int, int]],
    layer_weights: dict[str, int],
    cosines: dict[str, float],
) -> str:
    """The lines that read bench_prune's table, from its numbers."""
    (heads, q1, q3), zeroed = ratios["heads pruned"], ratios["weights zeroed"]
    fewer = 1 - layer_weights["heads pruned"] / layer_weights["full"]
    zeros = counts["weights zeroed"][1] - counts["full"][1]
    same = counts["weights zeroed"][0::2] == counts["full"][0::2]
    return "\n".join(
        [
            f"heads pruned: {fewer:.1%} fewer weights in the layers (the attention projections "
            f"lose half their rows or columns; the feed-forward layers keep theirs) and "
            f"{heads:.2f}x the time (quartiles {q1:.2f}-{q3:.2f}): "
            + (
                "faster, because smaller matrices are less work."
                if q3 < 1
                else "not clearly faster this time: a loaded machine? Try more --repeats."
            ),
            f"weights zeroed: {zeros:,} more zeros ({zeros / counts['full'][0]:.1%} of all "
            f"parameters), {'the same' if same else 'a different'} parameter count and bytes, "
            f"and {zeroed[0]:.2f}x the time (quartiles {zeroed[1]:.2f}-{zeroed[2]:.2f}): "
            + (
                "no faster: a dense matrix product multiplies a zero like any other number."
                if zeroed[1] <= 1 <= zeroed[2] or zeroed[0] > 0.95
                else "faster, though a dense product does the same work: noise? Try more --repeats."
            ),
            f"cosine to full: {cosines['heads pruned']:.3f} and {cosines['weights zeroed']:.3f}: "
            "without retraining both change the sentence vectors; which heads to remove "
            "changes that, not the time.",
        ]
    )


def _figures(x: float) -> str:
    """Three significant figures, without an exponent up to 999,999."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _where(device: torch.device, threads: int | None) -> str:
    from tfm_edu.device import describe

    if device.type != "cpu":
        return describe(device)
    count = threads or torch.get_num_threads()
    return f"cpu ({count} thread{'s' if count > 1 else ''})"


def _clock_name(device: torch.device, threads: int | None) -> str:
    if benchmark_clock(device, threads) is time.thread_time:
        return "CPU time of the timing thread"
    return "wall-clock time"


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


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
