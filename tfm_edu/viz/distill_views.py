"""Chapter 10's pictures: what a teacher's softened distribution carries, how accuracy grows with
data for each way of training, and how closely a student's sentence similarities follow its
teacher's.

Every function takes arrays (probabilities already computed, e.g. with
`tfm_edu.distill.soft_targets`) and returns a matplotlib `Figure`. `DarkKnowledgeExplorer` (in
`distill_explorer.py`) is the widget built from `soft_targets_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfm_edu.viz._common import new_matplotlib_figure
from tfm_edu.viz.vit_views import IMAGE_CMAP

__all__ = ["soft_targets_figure", "distillation_curve_figure", "similarity_scatter"]

TRUE_COLOR = "tab:blue"  # the right answer
WRONG_COLOR = "tab:orange"  # the mass the teacher gives to wrong answers: the dark knowledge
STUDENT_COLOR = "black"


def _array(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def soft_targets_figure(
    probabilities,
    temperatures: Sequence[float],
    class_names: Sequence[str],
    *,
    true_class: int | None = None,
    student=None,
    image=None,
    title: str | None = None,
):
    """The teacher's distribution at several temperatures, one panel each, wrong classes in
    orange; optionally the student's at the same temperatures as black dots, and the input image.

    Args:
        probabilities: (K, V), one distribution per temperature (rows sum to 1).
        temperatures: the K temperatures, for the panel titles.
        class_names: V names, e.g. "0".."9".
        true_class: the right answer's index, drawn in blue (None: nothing is singled out).
        student: optional (K, V), the student's distributions at the same temperatures.
        image: optional (H, W) or (1, H, W), drawn in a first panel.
        title: optional heading.

    Returns:
        A matplotlib Figure.
    """
    probs = _array(probabilities)
    if probs.ndim != 2 or probs.shape[0] != len(temperatures):
        raise ValueError(
            f"probabilities must be (K, V) with K = {len(temperatures)} temperatures, got "
            f"{probs.shape}"
        )
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"{len(class_names)} class names for V = {probs.shape[1]} classes")
    student_probs = None if student is None else _array(student)
    if student_probs is not None and student_probs.shape != probs.shape:
        raise ValueError(
            f"student must be {probs.shape} like probabilities, got {student_probs.shape}"
        )
    panels = len(temperatures) + (image is not None)
    fig = new_matplotlib_figure(1.2 + 2.3 * len(temperatures), 2.5 + (0.3 if title else 0))
    axes = list(np.atleast_1d(fig.subplots(1, panels, squeeze=False)[0]))
    if image is not None:
        ax = axes.pop(0)
        ax.imshow(np.squeeze(_array(image)), cmap=IMAGE_CMAP)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("input" if true_class is None else f"a {class_names[true_class]}", fontsize=9)
    positions = np.arange(len(class_names))
    colors = [TRUE_COLOR if k == true_class else WRONG_COLOR for k in positions]
    for k, (ax, temperature) in enumerate(zip(axes, temperatures, strict=True)):
        ax.bar(positions, probs[k], color=colors)
        if student_probs is not None:
            ax.plot(positions, student_probs[k], "o", color=STUDENT_COLOR, ms=3, label="student")
        wrong = 1.0 - probs[k, true_class] if true_class is not None else None
        caption = f"T = {temperature:g}" + ("" if wrong is None else f": {wrong:.0%} on wrong")
        ax.set_title(caption, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xticks(positions, [str(name) for name in class_names], fontsize=7)
        if k:
            ax.set_yticklabels([])
        else:
            ax.set_ylabel("probability")
    if student_probs is not None:
        axes[-1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def distillation_curve_figure(
    sizes: Sequence[int],
    results: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str | None = None,
):
    """Test accuracy against training-set size: one line per method, error bars = the spread.

    Args:
        sizes: the training-set sizes (images), the x axis (drawn on a log scale).
        results: {method: (mean accuracy per size, standard deviation per size)}.
        title: optional heading.
    """
    if not results:
        raise ValueError("results is empty: nothing to draw")
    for method, (means, stds) in results.items():
        if len(means) != len(sizes) or len(stds) != len(sizes):
            raise ValueError(
                f"{method}: {len(means)} means and {len(stds)} spreads for {len(sizes)} sizes"
            )
    fig = new_matplotlib_figure(5.6, 3.4)
    ax = fig.add_subplot()
    for method, (means, stds) in results.items():
        ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images")
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "accuracy against training-set size (mean ± std over seeds)", fontsize=10)
    return fig


def similarity_scatter(teacher, student, *, title: str | None = None):
    """Each pair of sentences as a dot: its cosine similarity for the teacher (x) and for the
    student (y). On the diagonal, the student agrees with the teacher exactly.

    Args:
        teacher, student: (M,) cosine similarities of the same M pairs.
        title: optional heading (e.g. the Spearman correlation).
    """
    x, y = _array(teacher), _array(student)
    if x.ndim != 1 or x.shape != y.shape or not len(x):
        raise ValueError(
            f"teacher and student must be (M,) with the same M > 0, got {x.shape}, {y.shape}"
        )
    fig = new_matplotlib_figure(3.8, 3.6)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=2, alpha=0.3)
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([low, high], [low, high], color="gray", lw=1, ls="--")
    ax.set_xlabel("teacher's cosine similarity")
    ax.set_ylabel("student's cosine similarity")
    ax.set_title(title or f"{len(x):,} pairs of sentences", fontsize=10)
    return fig
