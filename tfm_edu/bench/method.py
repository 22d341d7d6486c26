"""How `tfm_edu.bench` times: interleaved rounds, paired ratios, one thread, a steady clock.

Every benchmark of the package times our implementation and its reference *in the same run*
with `compare`, and quotes `paired_ratio`: for each pair, the median of the round-by-round ratios
with its quartiles. Absolute times depend on the machine; the ratios are what the course quotes.

The method, and why:
- warm-up rounds first (allocations, caches, lazy initialisation), untimed;
- interleaved rounds, each in a fresh (seeded) random order, so no candidate always runs first
  or right after the same neighbour, which may leave the caches cold or warm for it;
- each sample is several calls long (about 10 ms), so the clock's resolution and one-off
  hiccups do not dominate;
- the median of the ratios of one round's samples, not the ratio of two medians: a burst of load
  from another program hits both samples of a round, and the median ignores rounds it spoils;
- one CPU thread by default (restored afterwards, `benchmark_threads`): on cores shared with
  other programs, a second thread mostly measures who else is running; NumPy's BLAS gets the
  same limit;
- on one CPU thread, the clock is that thread's CPU time (`time.thread_time`): the time spent
  waiting while another program holds the core does not count, only the work. (With more threads,
  or on a GPU, the clock is the wall clock: `benchmark_clock`.)

`format_table` lays out the rows every benchmark prints; `where_text` and `clock_text` word the
header lines that say where it ran and which clock it read.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = [
    "SAMPLE_SECONDS",
    "Timing",
    "compare",
    "paired_ratio",
    "benchmark_threads",
    "benchmark_clock",
    "format_table",
    "where_text",
    "clock_text",
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


def where_text(device: torch.device, threads: int | None) -> str:
    """Where a benchmark ran, for its header: the device, or the CPU and its thread count."""
    from tfm_edu.device import describe

    if device.type != "cpu":
        return describe(device)
    count = threads or torch.get_num_threads()
    return f"cpu ({count} thread{'s' if count > 1 else ''})"


def clock_text(device: torch.device, threads: int | None) -> str:
    """The clock `benchmark_clock` picks for this device and thread count, in words."""
    if benchmark_clock(device, threads) is time.thread_time:
        return "CPU time of the timing thread"
    return "wall-clock time"
