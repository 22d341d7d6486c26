"""Length generalisation drawn: accuracy against sequence length, and against position.

Chapter 3 trains the same small encoder with different positional encodings on short
sequences and tests it on longer ones (`tfm_edu.analysis.shift_accuracy_by_length` and
`shift_accuracy_by_position` compute the numbers). The shaded band is what training saw: the
lengths (left) or positions (right) up to the training length; everything to its right is new.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

__all__ = ["length_generalisation_figure"]


def length_generalisation_figure(
    by_length: dict[str, dict[int, float]],
    *,
    train_length: int,
    by_position: dict[str, np.ndarray] | None = None,
    chance: float | None = None,
    title: str | None = None,
):
    """Accuracy by test length for each model, and (optionally) by position in long sequences.

    Args:
        by_length: {model name: {length: accuracy in [0, 1]}}, e.g. one
            `shift_accuracy_by_length` table per kind of position.
        train_length: the longest length seen in training (the shaded band ends there).
        by_position: optional {model name: (T,) accuracy at each position}, NaN where there is
            no answer; drawn in a second panel.
        chance: optional accuracy of guessing, drawn as a dotted line.
        title: the figure's title.

    Returns:
        A matplotlib Figure with one or two panels.
    """
    if not by_length:
        raise ValueError("by_length is empty: give {model name: {length: accuracy}}")
    if not isinstance(train_length, int) or train_length < 1:
        raise ValueError(f"train_length must be a positive int, got {train_length!r}")
    for name, table in by_length.items():
        values = np.asarray(list(table.values()), dtype=float)
        if not table or np.any((values < 0) | (values > 1)):
            raise ValueError(f"{name}: accuracies must be a non-empty {{length: value in [0, 1]}}")
    panels = 2 if by_position else 1
    fig = common.new_matplotlib_figure(4.6 * panels + 2.0, 3.6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    longest = max(max(table) for table in by_length.values())
    _panel(axes[0], train_length, longest, chance, "sequence length", "accuracy")
    for name, table in by_length.items():
        lengths = sorted(table)
        axes[0].plot(lengths, [table[n] for n in lengths], marker="o", label=name)
    axes[0].set_title("accuracy by test length")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    if by_position:
        length = max(len(np.asarray(row)) for row in by_position.values())
        _panel(axes[1], train_length, length - 1, chance, "position", "accuracy at position")
        for name, row in by_position.items():
            row = common.as_array(row, (1,), f"by_position[{name!r}]", "(T,)")
            axes[1].plot(np.arange(len(row)), row, linewidth=1.2, label=name)
        axes[1].set_title(f"by position, sequences of {length}")
    if title:
        fig.suptitle(title)
    return fig


def _panel(ax, train_length, right, chance, xlabel, ylabel):
    ax.axvspan(
        0, train_length, color="0.9", zorder=0, label=f"seen in training (up to {train_length})"
    )
    if chance is not None:
        ax.axhline(chance, color="0.4", linestyle=":", linewidth=1, label=f"chance ({chance:.2f})")
    ax.set(xlim=(0, right), ylim=(-0.02, 1.02), xlabel=xlabel, ylabel=ylabel)
