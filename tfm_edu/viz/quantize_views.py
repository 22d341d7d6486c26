"""Chapter 11's picture of int8 quantisation: why one step per output row (per channel) beats one
step for the whole matrix (per tensor) when a few rows hold outliers.

Symmetric int8 stores a weight as round(w / step) in [-127, 127], with step = max|w| / 127; the
round trip moves each weight by at most half a step. A matrix whose largest weights sit in a few
rows (trained transformers have such rows: Bondarenko, Nagel & Blankevoort, 2021, "Understanding
and Overcoming the Challenges of Efficient Transformer Quantization") makes the per-tensor step
large for everyone, so the ordinary rows land on a handful of levels; a step per row fits each.

`weight_outliers_figure` takes one layer's weight as a plain (out, in) array and redoes that
round trip in NumPy (the same rule as `tfm_edu.efficiency.quantize`, which the tests compare).
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz._common import as_array, new_matplotlib_figure

__all__ = ["weight_outliers_figure"]

QMAX = 127  # int8's symmetric range, -127..127
TENSOR_COLOR = "tab:red"  # one step for the whole matrix
CHANNEL_COLOR = "tab:blue"  # one step per output row


def _round_trip_error(weight: np.ndarray, largest: np.ndarray) -> np.ndarray:
    """|w - dequantised w| with step largest / 127 (largest: (out, 1) per row, or () for all)."""
    step = np.where(largest > 0, largest / QMAX, 1.0)  # a zero row: any step stores it exactly
    return np.abs(weight - np.clip(np.round(weight / step), -QMAX, QMAX) * step)  # (out, in)


def weight_outliers_figure(weight, *, title: str | None = None):
    """One layer's weights and their int8 round trip, per tensor against per channel.

    Three panels: the weights' histogram on the per-tensor grid (one bin per int8 level, counts
    on a log scale); each output row's largest |w| (the range a per-channel step covers) against
    the one range per tensor; and each row's mean round-trip error both ways.

    Args:
        weight: (out, in) array or tensor, e.g. `model.encoder.layers[0].feed_forward.linear2
            .weight`.
        title: optional heading (default: the shape).

    Returns:
        A matplotlib Figure with three axes.
    """
    w = as_array(weight, (2,), "weight", "an (out, in) matrix")
    if not w.size:
        raise ValueError(f"weight must have at least one row and column, got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"weight {w.shape} holds NaN or infinite values")
    row_max = np.abs(w).max(axis=1)  # (out,)
    top = row_max.max()  # the per-tensor range
    step = top / QMAX if top > 0 else 1.0
    tensor_error = _round_trip_error(w, np.asarray(top)).mean(axis=1)  # (out,)
    channel_error = _round_trip_error(w, row_max[:, None]).mean(axis=1)  # (out,)
    rows = np.arange(len(row_max))  # (out,)

    from matplotlib.ticker import LogLocator, NullFormatter

    fig = new_matplotlib_figure(11.5, 3.5)
    hist_ax, range_ax, error_ax = fig.subplots(1, 3)

    edges = (np.arange(-QMAX, QMAX + 2) - 0.5) * step  # (256,) one bin per int8 level
    hist_ax.hist(w.ravel(), bins=edges, color="0.4", log=True)
    for x in (-top, top):
        hist_ax.axvline(x, color=TENSOR_COLOR, ls="--", lw=1)
    within = int(np.ceil(np.quantile(np.abs(w), 0.99) / step - 0.5))  # steps from 0
    hist_ax.set_title(
        f"per-tensor grid: step {step:.2g}\n99% of weights on {2 * within + 1} of 255 levels",
        fontsize=9,
    )
    hist_ax.set_xlabel("weight (dashed: ±max|w|, the per-tensor range)")
    hist_ax.set_ylabel("count (log)")

    median = float(np.median(row_max))
    range_ax.plot(rows, row_max, ".", ms=2, color=CHANNEL_COLOR, label="per channel: own max|w|")
    range_ax.axhline(top, color=TENSOR_COLOR, ls="--", lw=1, label="per tensor: one max|w|")
    range_ax.set_yscale("log", nonpositive="mask")
    range_ax.set_title(
        f"each row's max|w|: the largest is {top / max(median, 1e-300):.1f}x the median",
        fontsize=9,
    )
    range_ax.set_xlabel("output row")
    range_ax.set_ylabel("max |w| in the row (log)")
    range_ax.legend(fontsize=7, loc="center right", markerscale=4)

    error_ax.plot(rows, tensor_error, ".", ms=2, color=TENSOR_COLOR, label="per tensor")
    error_ax.plot(rows, channel_error, ".", ms=2, color=CHANNEL_COLOR, label="per channel")
    error_ax.set_yscale("log", nonpositive="mask")
    mean_tensor, mean_channel = tensor_error.mean(), channel_error.mean()
    ratio = f" ({mean_tensor / mean_channel:.1f}x)" if mean_channel > 0 else ""
    error_ax.set_title(
        f"mean round-trip error: per tensor {mean_tensor:.2g},\nper channel {mean_channel:.2g}"
        + ratio,
        fontsize=9,
    )
    error_ax.set_xlabel("output row")
    error_ax.set_ylabel("mean |w - dequantised w| (log)")
    error_ax.legend(fontsize=7, loc="center right", markerscale=4)
    for ax in (range_ax, error_ax):  # label 1, 2, 5 x each power of ten, as plain numbers
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(title or f"one layer's weights ({w.shape[0]} x {w.shape[1]}) in int8", fontsize=11)
    return fig
