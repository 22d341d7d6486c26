"""Attention's cost against sequence length: `python -m tfm_edu.bench scaling`.

Chapter 11: one self-attention call at growing T (= S) through the three paths of
`tfm_edu.efficiency.memory.ATTENTION_PATHS` (the explicit formula, PyTorch's SDPA and our
`tiled_attention`), timed in interleaved rounds, with the peak memory of each call measured by
`tfm_edu.efficiency.memory.measure_peak` (in a fresh process on the CPU), beside the FLOPs and
bytes `tfm_edu.efficiency.cost` predicts. Slopes fitted on log-log axes say how time and memory
grow with T; `--json PATH` keeps every number, for `tfm_edu.viz.cost_views` to draw.
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

__all__ = ["SCALING_LENGTHS", "scaling_repeats", "bench_scaling"]

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
        f"{where_text(device, threads)}, torch {torch.__version__}"
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
        f"interleaved rounds (order shuffled) after one warm-up, {clock_text(device, threads)}; "
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
            json.dump({"device": where_text(device, threads), "torch": torch.__version__,
                       "batch": B, "heads": H, "head_dim": Dh, "dtype": "float32",
                       "sdpa_backend": backend, "memory_method": method, "slopes": slopes,
                       "results": results}, file, indent=2)  # fmt: skip
    return rows


def _figures(x: float) -> str:
    """Three significant figures, without an exponent up to 999,999."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
