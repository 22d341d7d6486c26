"""Chapter 11's picture: what one attention call costs as the sequence grows, on log-log axes.

A cost that grows like T^p is a straight line of slope p on log-log axes, so the legend gives each
line's fitted slope: about 2 for the time of every exact path (the T x S work of Vaswani et al.,
2017), 2 for the explicit path's memory (it stores the (T, S) matrix), at most 1 for the memory of
a tiled path (FlashAttention, Dao et al., 2022). The numbers come from
`python -m tfm_edu.bench scaling --json PATH` or `tfm_edu.efficiency`; this module only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfm_edu.viz._common import new_matplotlib_figure

__all__ = ["scaling_figure"]

PATH_COLORS = {"explicit": "tab:red", "sdpa": "tab:green", "tiled": "tab:blue"}
FIT_FROM = 512  # slopes are fitted over T >= this when two such lengths exist (fixed costs below)


def scaling_figure(
    lengths: Sequence[int],
    seconds: Mapping[str, Sequence[float]],
    peak_bytes: Mapping[str, Sequence[float]] | None = None,
    *,
    title: str | None = None,
):
    """Time (and peak memory) of each attention path against sequence length, log-log.

    Args:
        lengths: the N sequence lengths T (positive).
        seconds: {path: N seconds per call}, one line each.
        peak_bytes: optional {path: N peak bytes}, drawn in a second panel (MiB).
        title: optional heading.

    Returns:
        A matplotlib Figure with one panel, or two with `peak_bytes`; each legend entry ends with
        the line's fitted log-log slope, e.g. "explicit (~T^2.0)".
    """
    x = np.asarray(lengths, dtype=np.float64)
    if x.ndim != 1 or not len(x) or (x <= 0).any():
        raise ValueError(f"lengths must be (N,) positive numbers, got {np.asarray(lengths)!r}")
    panels = [("time per call (s)", _series(seconds, len(x), "seconds"), 1.0)]
    if peak_bytes is not None:
        panels.append(("peak memory (MiB)", _series(peak_bytes, len(x), "peak_bytes"), 2.0**-20))
    fit = x >= FIT_FROM if np.unique(x[x >= FIT_FROM]).size >= 2 else np.ones(len(x), bool)
    fig = new_matplotlib_figure(4.4 * len(panels) + 0.4, 3.5 + (0.3 if title else 0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, series, unit) in zip(axes, panels, strict=True):
        for path, values in series.items():
            slope = _slope(x[fit], values[fit])
            name = path if slope is None else f"{path} (~T^{slope:.1f})"
            ax.plot(x, values * unit, marker="o", color=PATH_COLORS.get(path), label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(x), [str(int(n)) if n == int(n) else f"{n:g}" for n in x])
        ax.minorticks_off()
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if len(x) > 1 and fit.sum() < len(x):
        axes[0].set_title(f"slopes fitted over T >= {FIT_FROM}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _series(table: Mapping[str, Sequence[float]], count: int, name: str) -> dict[str, np.ndarray]:
    if not isinstance(table, Mapping) or not table:
        raise ValueError(f"{name} must be a non-empty {{path: values}} dict, got {table!r}")
    series = {}
    for path, values in table.items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (count,):
            raise ValueError(
                f"{name}[{path!r}] must hold one value per length, (N,) = ({count},), "
                f"got shape {array.shape}"
            )
        if not np.isfinite(array).all() or (array <= 0).any():
            raise ValueError(f"{name}[{path!r}] must be positive (log axes), got {array.tolist()}")
        series[path] = array
    return series


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    if np.unique(x).size < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
