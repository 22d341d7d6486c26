"""Chapter 10's views and the dark-knowledge explorer, headless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfm_edu.distill import soft_targets
from tfm_edu.viz import (
    DarkKnowledgeExplorer,
    distillation_curve_figure,
    similarity_scatter,
    soft_targets_figure,
)

DIGITS = [str(d) for d in range(10)]


def _logits(n=4, seed=0):
    return torch.randn(n, 10, generator=torch.Generator().manual_seed(seed)) * 3


def test_soft_targets_figure_draws_one_panel_per_temperature_and_the_image():
    logits = _logits(1)[0]
    probs = torch.stack([soft_targets(logits, t) for t in (1.0, 4.0)])  # (2, 10)
    fig = soft_targets_figure(probs, [1.0, 4.0], DIGITS, true_class=3, image=torch.zeros(1, 8, 8))
    axes = fig.axes
    assert len(axes) == 3  # the image, then T = 1 and T = 4
    bars = [patch.get_height() for patch in axes[1].patches]
    np.testing.assert_allclose(bars, probs[0].numpy(), rtol=1e-6)
    assert axes[2].get_title().startswith("T = 4")
    wrong = f"{1 - float(probs[1, 3]):.0%} on wrong"
    assert wrong in axes[2].get_title()


def test_soft_targets_figure_names_the_shapes_it_wanted():
    with pytest.raises(ValueError, match=r"\(K, V\) with K = 3"):
        soft_targets_figure(np.ones((2, 10)) / 10, [1, 2, 3], DIGITS)
    with pytest.raises(ValueError, match="9 class names for V = 10"):
        soft_targets_figure(np.ones((1, 10)) / 10, [1], DIGITS[:9])
    with pytest.raises(ValueError, match="student must be"):
        soft_targets_figure(np.ones((1, 10)) / 10, [1], DIGITS, student=np.ones((2, 10)))


def test_distillation_curve_has_a_line_with_error_bars_per_method():
    fig = distillation_curve_figure(
        [100, 200, 400],
        {"ViT": ([0.8, 0.9, 0.95], [0.02, 0.01, 0.0]), "DeiT": ([0.85] * 3, [0] * 3)},
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ViT", "DeiT"]
    np.testing.assert_allclose(np.asarray(ax.lines[0].get_ydata(), dtype=float), [0.8, 0.9, 0.95])
    with pytest.raises(ValueError, match="2 means and 2 spreads for 3 sizes"):
        distillation_curve_figure([1, 2, 3], {"x": ([0.1, 0.2], [0, 0])})


def test_similarity_scatter_draws_every_pair_and_the_diagonal():
    fig = similarity_scatter(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2, title="rho")
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().shape == (50, 2)
    assert ax.get_title() == "rho"
    with pytest.raises(ValueError, match="same M > 0"):
        similarity_scatter(np.ones(3), np.ones(4))


def test_explorer_reports_the_wrong_mass_it_draws():
    teacher, student = _logits(5, seed=1), _logits(5, seed=2)
    labels = teacher.argmax(-1)
    explorer = DarkKnowledgeExplorer(
        teacher, labels, DIGITS, images=torch.zeros(5, 1, 8, 8), student_logits=student, index=2
    )
    explorer.set_view(index=3, temperature=5.0)
    expected = soft_targets(teacher[3], 5.0).numpy()
    np.testing.assert_allclose(explorer.soft, expected, rtol=1e-6)
    wrong = 1 - expected[int(labels[3])]
    assert f"puts {wrong:.1%} of its probability on wrong" in explorer.message
    kl = float(np.sum(expected * np.log(expected / soft_targets(student[3], 5.0).numpy())))
    assert f"KL = {kl:.3f} nats" in explorer.message
    colder = explorer.message
    explorer.set_view(temperature=1.0)
    assert explorer.message != colder  # the temperature changes what is shown
    assert len(explorer.figure.axes) == 3


def test_explorer_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"same N > 0, got \(3, 10\) and \(2,\)"):
        DarkKnowledgeExplorer(_logits(3), torch.tensor([0, 1]), DIGITS)
    with pytest.raises(ValueError, match="student_logits must be"):
        DarkKnowledgeExplorer(
            _logits(3), torch.tensor([0, 1, 2]), DIGITS, student_logits=_logits(2)
        )
