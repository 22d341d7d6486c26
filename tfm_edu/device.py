"""Pick the device a chapter runs on: CUDA if present, else Apple's MPS, else the CPU.

Nothing else in the package names a device: modules follow their tensors, so the same code runs
on a laptop CPU and on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["pick", "describe", "cpu_threads"]


def pick(prefer: str | None = None) -> torch.device:
    """Return `cuda` if available, else `mps`, else `cpu`.

    Args:
        prefer: force a device ("cpu", "cuda", "mps"); raises ValueError if it is not available.
    """
    if prefer is not None:
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("prefer='cuda' but torch.cuda.is_available() is False on this machine")
        if prefer == "mps" and not _mps_available():
            raise ValueError("prefer='mps' but the MPS backend is not available on this machine")
        if prefer not in ("cpu", "cuda", "mps"):
            raise ValueError(f"prefer must be 'cpu', 'cuda' or 'mps', got {prefer!r}")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device | None = None) -> str:
    """One line naming the device, e.g. 'cpu (2 threads)' or 'cuda: NVIDIA H100 (79 GiB)'."""
    device = device or pick()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "mps: Apple GPU"
    return f"cpu ({torch.get_num_threads()} threads)"


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with `count` PyTorch CPU threads, then restore the previous setting.

    The course's models are small: one thread is often faster than two when other programs
    share the cores, and it makes training reproducible bit for bit.
    """
    if count < 1:
        raise ValueError(f"need at least one thread, got {count}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
