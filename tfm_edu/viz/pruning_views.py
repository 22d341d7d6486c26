"""Chapter 11's pictures of head pruning (Michel, Levy & Neubig, 2019, "Are Sixteen Heads Really
Better than One?"): how a score falls as heads are removed in one order or another, and how
important each head is.

Every function takes plain arrays (the numbers computed by `tfm_edu.efficiency.pruning`, or
read from `tfm_edu.pretrained.prune_heads_table()`) and returns a matplotlib `Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfm_edu.viz._common import as_array, new_matplotlib_figure

__all__ = ["pruning_curve_figure", "head_importance_figure"]

BASELINE_COLOR = "0.5"  # the score without the model's help (chance), a grey dashed line
OUTLINE_COLOR = "tab:red"  # the heads removed first


def pruning_curve_figure(
    heads_removed: Sequence[int],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float] | None]],
    *,
    baseline: float | None = None,
    baseline_label: str = "chance",
    ylabel: str = "test accuracy",
    percent: bool = True,
    title: str | None = None,
):
    """A score against the number of heads removed: one line per order of removal, with a band
    of +- the spread where there is one (e.g. the std over random orders).

    Args:
        heads_removed: (K,) the x axis, e.g. 0, 1, ..., L * H.
        curves: {name: (mean score per point (K,), spread per point (K,) or None)}.
        baseline: optional score drawn as a dashed line (e.g. 0.5 for two balanced classes).
        baseline_label: the baseline's name in the legend.
        ylabel: what the score is.
        percent: show the scores as percentages (for accuracies in [0, 1]).
        title: optional heading.

    Returns:
        A matplotlib Figure.
    """
    x = as_array(heads_removed, (1,), "heads_removed", "(K,)")
    if not curves:
        raise ValueError("curves is empty: nothing to draw")
    checked = {}
    for name, pair in curves.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"{name}: give (mean, spread or None), got {type(pair).__name__}")
        mean = as_array(pair[0], (1,), f"{name}'s mean", "(K,)")
        spread = None if pair[1] is None else as_array(pair[1], (1,), f"{name}'s spread", "(K,)")
        for what, values in (("mean", mean), ("spread", spread)):
            if values is not None and values.shape != x.shape:
                raise ValueError(
                    f"{name}: {values.shape[0]} {what} values for {x.shape[0]} points of "
                    "heads_removed"
                )
        checked[name] = (mean, spread)
    fig = new_matplotlib_figure(5.6, 3.4)
    ax = fig.add_subplot()
    for name, (mean, spread) in checked.items():
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=name)
        if spread is not None:
            ax.fill_between(x, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
    if baseline is not None:
        ax.axhline(baseline, color=BASELINE_COLOR, ls="--", lw=1, label=baseline_label)
    ax.set_xlabel("heads removed")
    ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{ylabel} as heads are removed", fontsize=10)
    return fig


def head_importance_figure(
    importance,
    *,
    outline_lowest: int = 0,
    layer_labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """Every head's importance as a grid, layers down, heads across, each value written in its
    cell; optionally the least important heads (the first to be removed) outlined.

    Args:
        importance: (L, H) scores, e.g. `head_importance(...)` (>= 0; higher = more important).
        outline_lowest: outline this many of the lowest scores (ties: earlier layer, then lower
            head first, as `importance_order` removes them).
        layer_labels: L row names (default "layer 0", "layer 1", ...).
        title: optional heading.

    Returns:
        A matplotlib Figure.
    """
    scores = as_array(importance, (2,), "importance", "(L, H)")
    L, H = scores.shape
    if not L or not H:
        raise ValueError(f"importance must have at least one layer and head, got {scores.shape}")
    if not 0 <= outline_lowest <= scores.size:
        raise ValueError(
            f"outline_lowest must lie in 0..{scores.size} (L * H), got {outline_lowest}"
        )
    labels = [f"layer {i}" for i in range(L)] if layer_labels is None else list(layer_labels)
    if len(labels) != L:
        raise ValueError(f"{len(labels)} layer_labels for L = {L} layers of {scores.shape}")
    fig = new_matplotlib_figure(1.4 + 0.7 * H, 0.9 + 0.5 * L)
    ax = fig.add_subplot()
    image = ax.imshow(scores, cmap="viridis", vmin=0, aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.9)
    dark = scores < scores.min() + 0.5 * (scores.max() - scores.min())  # viridis: low = dark
    for layer in range(L):
        for head in range(H):
            color = "white" if dark[layer, head] else "black"
            ax.text(head, layer, f"{scores[layer, head]:.2f}", ha="center", va="center",
                    fontsize=8, color=color)  # fmt: skip
    lowest = np.argsort(scores.flatten(), kind="stable")[:outline_lowest]
    for index in lowest:
        layer, head = divmod(int(index), H)
        ax.add_patch(_outline(head, layer))
    ax.set_xticks(range(H), [str(h) for h in range(H)])
    ax.set_yticks(range(L), labels)
    ax.set_xlabel("head")
    caption = f"; outlined: the {outline_lowest} least important" if outline_lowest else ""
    ax.set_title(title or f"head importance{caption}", fontsize=10)
    return fig


def _outline(head: int, layer: int):
    from matplotlib.patches import Rectangle

    return Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec=OUTLINE_COLOR, lw=2)
