"""Chapter 9's picture of an induction head being born (Olsson et al., 2022, "In-context Learning
and Induction Heads"): during training, the loss on the first and the second copy of a random
string, and above it the best induction and previous-token scores of any head, on one step axis.

It takes plain numbers (the evaluations a recipe stored in its card, e.g.
`load_history("induction_gpt").evals`) and returns a matplotlib `Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfm_edu.viz._common import new_matplotlib_figure

__all__ = ["phase_change_figure"]

_LOSSES = {"first_copy": "first copy", "second_copy": "second copy"}
_SCORES = {"previous_token": "best previous-token score", "induction": "best induction score"}


def phase_change_figure(
    evals: Sequence[Mapping[str, float]],
    *,
    chance: float | None = None,
    mark: int | None = None,
    title: str | None = None,
):
    """Two panels sharing the step axis: the heads' scores (top) and the loss on each copy
    (bottom).

    Args:
        evals: the evaluations in step order, each {"step", "first_copy", "second_copy",
            "induction", "previous_token"} (losses in nats per character, scores in [0, 1]).
        chance: optional loss of a uniform guess, drawn as a dashed line (ln 26 for letters).
        mark: optional step drawn as a dotted vertical line on both panels (e.g. where the
            second copy became easy).
        title: the figure's title.

    Returns:
        A matplotlib Figure.
    """
    needed = {"step", *_LOSSES, *_SCORES}
    if not evals:
        raise ValueError("evals is empty: nothing to plot")
    for index, row in enumerate(evals):
        missing = needed - set(row)
        if missing:
            raise ValueError(f"evals[{index}] lacks {sorted(missing)}")
    steps = np.array([row["step"] for row in evals], dtype=float)  # (E,)
    if np.any(np.diff(steps) <= 0):
        raise ValueError("evals must be in increasing step order")
    fig = new_matplotlib_figure(7.0, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 3))
    for key, label in _SCORES.items():
        top.plot(steps, [row[key] for row in evals], marker="o", markersize=3, label=label)
    top.set(ylabel="attention share", ylim=(0, 1), title=title or "")
    top.legend(fontsize=8, loc="upper left")
    for key, label in _LOSSES.items():
        bottom.plot(steps, [row[key] for row in evals], marker="o", markersize=3, label=label)
    if chance is not None:
        bottom.axhline(chance, color="0.5", linestyle="--", linewidth=1,
                       label=f"uniform guess ({chance:.2f})")  # fmt: skip
    bottom.set(xlabel="training step", ylabel="loss (nats per character)", ylim=(0, None))
    bottom.legend(fontsize=8, loc="lower left")
    if mark is not None:
        for ax in (top, bottom):
            ax.axvline(mark, color="0.3", linestyle=":", linewidth=1)
    return fig
