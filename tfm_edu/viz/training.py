"""Drawing training runs: loss curves (`plot_history`) and learning-rate schedules.

Both take plain data (a `tfm_edu.train.History`, or a schedule function `step -> multiplier`)
and return a matplotlib `Figure` that is not registered with pyplot, so a notebook shows it once.
Pass a dict {name: ...} to compare runs or schedules on the same axes (post-LN vs pre-LN, a
model with and without its causal mask, cosine vs inverse-square-root decay...).

The warm-up + decay schedule is the one of Vaswani et al. (2017), section 5.3, with a cosine
variant (Loshchilov & Hutter, 2017, "SGDR").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfm_edu.viz import _common as common

__all__ = ["smooth", "plot_history", "plot_schedule", "plot_per_layer", "plot_curves"]


def smooth(values, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far); (N,) -> (N,)."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    cumulative = np.cumsum(np.insert(values, 0, 0.0))  # (N + 1,)
    ends = np.arange(1, len(values) + 1)  # (N,)
    starts = np.maximum(0, ends - window)  # (N,)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)  # (N,)


def plot_history(
    history,
    *,
    metrics: list[str] | None = None,
    window: int | None = None,
    log_loss: bool = False,
    title: str | None = None,
):
    """Loss per step (faint) with its moving average, and evaluated metrics in a second panel.

    Args:
        history: a `tfm_edu.train.History` (e.g. `tfm_edu.checkpoints.load_history(name)`), or
            a dict {run name: History} to compare runs.
        metrics: which evaluated metrics to draw (default: every metric found in `evals`, but
            "seconds").
        window: points in the moving average of the loss (default: 1/50 of the run, >= 1).
        log_loss: draw the loss on a log scale.
        title: the figure's title.

    Returns:
        A matplotlib Figure: one panel (loss), or two when there are evaluations.
    """
    runs = _as_runs(history)
    # "seconds" (training time at each evaluation, recorded by `fit`) is a clock, not a metric.
    found = sorted(
        {k for run in runs.values() for e in run.evals for k in e if k not in ("step", "seconds")}
    )
    metrics = found if metrics is None else list(metrics)
    missing = [m for m in metrics if m not in found]
    if missing:
        raise ValueError(f"metrics {missing} were never evaluated; found {found}")
    if window is None:
        window = max(1, max(len(run.loss) for run in runs.values()) // 50)
    fig = common.new_matplotlib_figure(10.0 if metrics else 5.5, 3.6)
    axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    colors = _colors(len(runs))
    for (name, run), color in zip(runs.items(), colors, strict=True):
        axes[0].plot(run.steps, run.loss, color=color, alpha=0.25, linewidth=0.8)
        axes[0].plot(run.steps, smooth(run.loss, window), color=color, label=name)
        # One run: a colour per metric. Several: a colour per run, a line style per metric.
        metric_colors = _colors(len(metrics)) if len(runs) == 1 else [color] * len(metrics)
        styles = ["-"] * len(metrics) if len(runs) == 1 else ["-", "--", ":", "-."] * 4
        for metric, style, line_color in zip(metrics, styles, metric_colors, strict=False):
            steps, values = run.eval_series(metric)
            label = metric if len(runs) == 1 else f"{name}: {metric}"
            axes[1].plot(steps, values, style, marker="o", color=line_color, label=label)
    axes[0].set(
        xlabel="step",
        ylabel="training loss",
        title="loss" if window == 1 else f"loss (moving average of {window})",
    )
    if log_loss:
        axes[0].set_yscale("log")
    if len(runs) > 1:
        axes[0].legend(fontsize=8)
    if metrics:
        axes[1].set(xlabel="step", ylabel="value", title="evaluations")
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_schedule(
    multiplier: Callable[[int], float] | Mapping[str, Callable[[int], float]],
    steps: int,
    *,
    base_lr: float = 1.0,
    warmup_steps: int | None = None,
    title: str | None = None,
):
    """The learning rate at each step: base_lr * multiplier(step).

    Args:
        multiplier: a function step -> multiplier (e.g. `tfm_edu.train.warmup_schedule(...)`),
            or a dict {name: function} to compare schedules.
        steps: how many steps to draw (>= 1).
        base_lr: the peak learning rate the multiplier scales.
        warmup_steps: if given, a dotted line marks the end of the warm-up.
        title: the axes' title.

    Returns:
        A matplotlib Figure.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    schedules = multiplier if isinstance(multiplier, Mapping) else {"schedule": multiplier}
    if not schedules or not all(callable(f) for f in schedules.values()):
        raise ValueError("multiplier must be a function step -> float, or a dict of them")
    fig = common.new_matplotlib_figure(5.5, 3.2)
    ax = fig.add_subplot()
    x = np.arange(steps)
    for (name, fn), color in zip(schedules.items(), _colors(len(schedules)), strict=True):
        ax.plot(x, [base_lr * fn(int(s)) for s in x], color=color, label=name)
    if warmup_steps:
        ax.axvline(
            warmup_steps, color="gray", linestyle=":", label=f"end of warm-up ({warmup_steps})"
        )
    ax.set(xlabel="step", ylabel="learning rate", title=title or "learning-rate schedule")
    ax.set_ylim(bottom=0)
    if len(schedules) > 1 or warmup_steps:
        ax.legend(fontsize=8)
    return fig


def plot_per_layer(
    series: Mapping[str, Sequence[float]],
    *,
    ylabel: str,
    title: str | None = None,
    log: bool = False,
):
    """One value per layer for each setting, e.g. gradient norms of post-LN vs pre-LN at init.

    Args:
        series: {setting name: L values, layer 0 (next to the input) first}.
        ylabel: what the values are.
        title: the axes' title.
        log: logarithmic y axis.

    Returns:
        A matplotlib Figure with layers 0..L-1 on the x axis (0-based, like every label).
    """
    if not series or any(len(values) == 0 for values in series.values()):
        raise ValueError("series must be a non-empty dict {name: one value per layer}")
    fig = common.new_matplotlib_figure(5.5, 3.2)
    ax = fig.add_subplot()
    for (name, values), color in zip(series.items(), _colors(len(series)), strict=True):
        layers = np.arange(len(values))  # (L,)
        ax.plot(layers, np.asarray(values, dtype=float), marker="o", color=color, label=name)
    ax.set(xlabel="layer (0 = next to the input)", ylabel=ylabel, title=title or "")
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    levels: Mapping[str, float] | None = None,
    marks: Mapping[str, float] | None = None,
):
    """Several (x, y) curves on one axes, with optional horizontal reference levels and vertical
    marks, e.g. two models' validation loss against training seconds, the bigram's loss as a
    level and the phases of a curriculum as marks.

    Args:
        curves: {name: (xs, ys)}, each a line with markers.
        xlabel, ylabel, title: the axes' labels.
        levels: {name: y} drawn as dashed horizontal lines.
        marks: {name: x} drawn as dotted vertical lines, named at the top.

    Returns:
        A matplotlib Figure.
    """
    if not curves:
        raise ValueError("curves must be a non-empty dict {name: (xs, ys)}")
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"{name!r}: {len(xs)} x values for {len(ys)} y values")
    fig = common.new_matplotlib_figure(7.0, 3.6)
    ax = fig.add_subplot()
    colors = _colors(len(curves) + len(levels or {}))
    for (name, (xs, ys)), color in zip(curves.items(), colors, strict=False):
        ax.plot(np.asarray(xs, float), np.asarray(ys, float), marker="o", markersize=3,
                color=color, label=name)  # fmt: skip
    for (name, y), color in zip((levels or {}).items(), colors[len(curves) :], strict=True):
        ax.axhline(y, color=color, linestyle="--", linewidth=1, label=f"{name} ({y:.3f})")
    for name, x in (marks or {}).items():
        ax.axvline(x, color="gray", linestyle=":", linewidth=1)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                    rotation=90, va="top", ha="right", color="gray")  # fmt: skip
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.legend(fontsize=8)
    return fig


def _as_runs(history) -> dict:
    runs = dict(history) if isinstance(history, Mapping) else {"training": history}
    if not runs:
        raise ValueError("history is an empty dict: pass a History or {name: History}")
    for name, run in runs.items():
        if not all(hasattr(run, a) for a in ("steps", "loss", "evals", "eval_series")):
            raise ValueError(f"{name!r} is a {type(run).__name__}, not a History")
        if len(run.loss) == 0 or len(run.loss) != len(run.steps):
            raise ValueError(
                f"{name!r} has {len(run.loss)} losses for {len(run.steps)} steps: nothing to plot"
            )
    return runs


def _colors(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["tab10"](i % 10) for i in range(n)]
