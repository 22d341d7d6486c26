"""Chapter 11 in code: the peak memory of one attention call, measured, never inferred.

`tfm_edu.efficiency.cost.attention_memory` says what each path *should* hold; this module asks
the operating system what it did hold. On a CPU each measurement runs in a fresh Python process
(one thread), so that nothing an earlier call left in the allocator's free lists hides the pages a
call touches:

1. build q, k, v (and the mask) for the size asked, and make one small warm-up call (kernels,
   thread pools, lazy initialisation), so that only the call's own memory is counted;
2. Linux: write "5" to /proc/self/clear_refs, which resets the process's peak resident memory
   (VmHWM) to its current value (VmRSS), read as the baseline;
3. run the call once, and report VmHWM - baseline: the most memory the call held at any moment.

Large blocks are allocated with mmap and handed back when freed (the child fixes glibc's
`MALLOC_MMAP_THRESHOLD_`, which otherwise rises after the warm-up), so what the call frees is
not counted twice and what it reuses is not hidden. Where /proc is missing (macOS) the child falls
back to `resource.getrusage`'s ru_maxrss, which cannot be reset: the difference is then a lower
bound, and the result says so. Windows has neither: use a GPU or WSL.

On a GPU the measurement runs in this process: `torch.cuda.reset_peak_memory_stats`, then
`max_memory_allocated` minus what was allocated before the call.

    python -m tfm_edu.efficiency.memory --path tiled --length 4096   # one JSON line
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from tfm_edu.attention import causal_mask, scaled_dot_product_attention
from tfm_edu.efficiency.tiled import tiled_attention

__all__ = [
    "ATTENTION_PATHS",
    "DTYPES",
    "MemoryMeasurement",
    "attention_inputs",
    "attention_path",
    "measure_peak",
    "peak_memory",
    "sdpa_backend",
    "main",
]

WARMUP_LENGTH = 64  # the warm-up call's T: loads the kernels without raising the allocator's peak
MMAP_THRESHOLD = 128 * 1024  # bytes: larger blocks are mmapped, and unmapped when freed
DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}  # the dtypes a measurement may ask for, by the names the child process reads


def _explicit(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    return scaled_dot_product_attention(q, k, v, mask)[0]  # (B, H, T, Dv); weights made too


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, Dv)
    if mask is not None:  # the course's rule: a fully masked row gives zeros, not NaN
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T, 1)
        if not bool(has_key.all()):
            out = torch.where(has_key, out, 0.0)  # (B, H, T, Dv)
    return out


# name -> callable(q, k, v, mask) -> out (B, H, T, Dv): the three ways chapter 11 compares
ATTENTION_PATHS: dict[str, Callable[..., Tensor]] = {
    "explicit": _explicit,  # tfm_edu.attention: scores and weights (B, H, T, S) materialised
    "sdpa": _sdpa,  # torch.nn.functional.scaled_dot_product_attention: PyTorch's fused kernel
    "tiled": tiled_attention,  # tfm_edu.efficiency.tiled: FlashAttention's loop, in Python
}


def attention_path(name: str, *, block_size: int = 128) -> Callable[..., Tensor]:
    """ATTENTION_PATHS[name], with `block_size` passed to the tiled path."""
    if name not in ATTENTION_PATHS:
        raise ValueError(f"path must be one of {sorted(ATTENTION_PATHS)}, got {name!r}")
    if name == "tiled":
        return partial(tiled_attention, block_size=block_size)
    return ATTENTION_PATHS[name]


def attention_inputs(
    length: int,
    *,
    batch: int = 1,
    heads: int = 4,
    head_dim: int = 64,
    dtype: torch.dtype = torch.float32,
    causal: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Seeded self-attention inputs q, k, v (B, H, T, Dh) with T = S = length, and the mask.

    Args:
        length: T = S.
        batch, heads, head_dim: B, H, Dh.
        dtype, device: of q, k, v (drawn on the CPU from `seed`, then moved).
        causal: also return a causal (T, T) mask (else None).

    Returns:
        q, k, v: (B, H, T, Dh) each; mask: (T, T) causal, or None.
    """
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, generator=generator, dtype=dtype).to(device)
        for _ in range(3)
    )  # (B, H, T, Dh) each
    mask = causal_mask(length, device=device) if causal else None  # (T, T)
    return q, k, v, mask


@dataclass(frozen=True)
class MemoryMeasurement:
    """The peak memory of one attention call, and how it was read."""

    bytes: int  # the most memory the call held at once, above the baseline
    baseline: int  # bytes held before the call (inputs, PyTorch itself)
    method: str  # which counter: "VmHWM", "ru_maxrss (a lower bound)" or "cuda"


def measure_peak(
    path: str,
    length: int,
    *,
    batch: int = 1,
    heads: int = 4,
    head_dim: int = 64,
    dtype: torch.dtype = torch.float32,
    block_size: int = 128,
    causal: bool = False,
    device: str | torch.device = "cpu",
) -> MemoryMeasurement:
    """Measure one call of an attention path on self-attention inputs of `length` tokens.

    Args:
        path: "explicit", "sdpa" or "tiled" (`ATTENTION_PATHS`).
        length: T = S, the number of tokens.
        batch, heads, head_dim: B, H, Dh.
        dtype: of q, k, v (`DTYPES`).
        block_size: the tiled path's tile size.
        causal: pass a causal (T, T) mask.
        device: "cpu" (a fresh subprocess) or "cuda" (this process).

    Returns:
        A MemoryMeasurement, its `bytes` the peak above the baseline.
    """
    _check_request(path, length, batch, heads, head_dim, dtype, block_size)
    device = torch.device(device)
    sizes = {"length": length, "batch": batch, "heads": heads, "head_dim": head_dim}
    if device.type == "cuda":
        return _measure_cuda(path, sizes, dtype, block_size, causal, device)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    if sys.platform == "win32":
        raise RuntimeError(
            "peak_memory on a CPU reads /proc (Linux) or getrusage (macOS); Windows has neither: "
            "run it under WSL, or measure on a GPU with device='cuda'"
        )
    command = [sys.executable, "-m", "tfm_edu.efficiency.memory", "--path", path]
    for name, value in sizes.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    command += ["--dtype", str(dtype).removeprefix("torch."), "--block-size", str(block_size)]
    command += ["--causal"] if causal else []
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"measuring {path} at T={length} failed (exit {done.returncode}):\n{done.stderr}"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return MemoryMeasurement(result["bytes"], result["baseline"], result["method"])


def peak_memory(
    path: str,
    length: int,
    *,
    batch: int = 1,
    heads: int = 4,
    head_dim: int = 64,
    dtype: torch.dtype = torch.float32,
    block_size: int = 128,
    causal: bool = False,
    device: str | torch.device = "cpu",
) -> int:
    """Peak bytes one call of `path` holds above what existed before it (`measure_peak`).

    Args: as `measure_peak`.

    Returns:
        bytes, an int.
    """
    return measure_peak(
        path, length, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype,
        block_size=block_size, causal=causal, device=device,
    ).bytes  # fmt: skip


def sdpa_backend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> str:
    """Which kernel `F.scaled_dot_product_attention` runs for these inputs.

    Each of FLASH_ATTENTION, EFFICIENT_ATTENTION and MATH is tried alone, in PyTorch's order of
    preference; the first that accepts the inputs (device, dtype, head width, mask) is the one
    a plain call normally picks (some PyTorch versions also consider cuDNN's kernel on a GPU).

    Args:
        q, k, v, mask: as for `ATTENTION_PATHS["sdpa"]`.

    Returns:
        The backend's name, e.g. "FLASH_ATTENTION"; "none" if none runs.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with warnings.catch_warnings(), sdpa_kernel(backend):
                warnings.simplefilter("ignore")  # each refusal also warns why
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        except RuntimeError:
            continue
        return backend.name
    return "none"


def _measure_cuda(path, sizes, dtype, block_size, causal, device) -> MemoryMeasurement:
    if not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False on this machine")
    run = attention_path(path, block_size=block_size)
    shape = {k: sizes[k] for k in ("batch", "heads", "head_dim")}
    q, k, v, mask = attention_inputs(
        sizes["length"], dtype=dtype, causal=causal, device=device, **shape
    )
    with torch.inference_mode():
        run(*attention_inputs(min(sizes["length"], WARMUP_LENGTH), dtype=dtype, causal=causal,
                              device=device, **shape))  # fmt: skip
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        out = run(q, k, v, mask)  # (B, H, T, Dh)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - baseline
    del out
    return MemoryMeasurement(int(peak), int(baseline), "cuda")


def _check_request(path, length, batch, heads, head_dim, dtype, block_size) -> None:
    if path not in ATTENTION_PATHS:
        raise ValueError(f"path must be one of {sorted(ATTENTION_PATHS)}, got {path!r}")
    sizes = {"length": length, "batch": batch, "heads": heads, "head_dim": head_dim,
             "block_size": block_size}  # fmt: skip
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")


# ---------------------------------------------------------------- the child process's side


def _process_memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes, from /proc/self/status (Linux)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024  # the file says kB
    return values


def _max_rss() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, kB on Linux


def _measure_here(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(1)
    dtype = DTYPES[args.dtype]
    shape = {"batch": args.batch, "heads": args.heads, "head_dim": args.head_dim}
    run = attention_path(args.path, block_size=args.block_size)
    q, k, v, mask = attention_inputs(args.length, dtype=dtype, causal=args.causal, **shape)
    with torch.inference_mode():
        run(*attention_inputs(min(args.length, WARMUP_LENGTH), dtype=dtype, causal=args.causal,
                              **shape))  # fmt: skip
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # VmHWM := VmRSS
            method, baseline = "VmHWM", _process_memory()["VmRSS"]
        except OSError:  # no /proc (macOS), or not allowed to write it
            method, baseline = "ru_maxrss (cannot be reset: a lower bound)", _max_rss()
        out = run(q, k, v, mask)  # (B, H, T, Dh)
        peak = _process_memory()["VmHWM"] if method == "VmHWM" else _max_rss()
    del out
    return {"path": args.path, "length": args.length, "bytes": max(0, peak - baseline),
            "baseline": baseline, "method": method}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """`python -m tfm_edu.efficiency.memory --path P --length T ...`: print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m tfm_edu.efficiency.memory")
    parser.add_argument("--path", required=True, choices=sorted(ATTENTION_PATHS))
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args(argv)
    _check_request(args.path, args.length, args.batch, args.heads, args.head_dim,
                   DTYPES[args.dtype], args.block_size)  # fmt: skip
    print(json.dumps(_measure_here(args)))


if __name__ == "__main__":
    main()
