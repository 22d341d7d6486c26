"""Chapter 11's head-pruning views, headless."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfm_edu.viz.pruning_views import head_importance_figure, pruning_curve_figure


def test_pruning_curve_draws_a_line_per_order_a_band_for_the_spread_and_the_baseline():
    x = [0, 1, 2, 3]
    fig = pruning_curve_figure(
        x,
        {
            "importance": ([0.9, 0.9, 0.8, 0.5], None),
            "random": ([0.9, 0.7, 0.6, 0.5], [0, 0.1, 0.1, 0]),
        },
        baseline=0.5,
        title="tiny BERT",
    )
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["importance", "random", "chance"]
    np.testing.assert_allclose(
        np.asarray(ax.lines[1].get_ydata(), dtype=float), [0.9, 0.7, 0.6, 0.5]
    )
    assert len(ax.collections) == 1  # one band: only "random" has a spread
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(0.9)
    assert np.asarray(ax.lines[2].get_ydata(), dtype=float).tolist() == [0.5, 0.5]  # baseline
    assert ax.get_title() == "tiny BERT" and ax.get_xlabel() == "heads removed"


def test_pruning_curve_names_what_does_not_fit():
    with pytest.raises(ValueError, match="3 mean values for 4 points"):
        pruning_curve_figure([0, 1, 2, 3], {"a": ([1, 2, 3], None)})
    with pytest.raises(ValueError, match="2 spread values for 4 points"):
        pruning_curve_figure([0, 1, 2, 3], {"a": ([1, 2, 3, 4], [0, 0])})
    with pytest.raises(ValueError, match="empty"):
        pruning_curve_figure([0, 1], {})
    with pytest.raises(ValueError, match=r"give \(mean, spread or None\)"):
        pruning_curve_figure([0, 1], {"a": [0.5, 0.4, 0.3]})


def test_head_importance_writes_every_value_and_outlines_the_lowest():
    importance = torch.tensor([[0.3, 0.1, 0.9], [0.2, 0.8, 0.1]])
    fig = head_importance_figure(importance, outline_lowest=2, layer_labels=["first", "second"])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.30", "0.10", "0.90", "0.20", "0.80", "0.10"]
    outlined = sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches)
    assert outlined == [(1.0, 0.0), (2.0, 1.0)]  # the two 0.1s: (layer 0, head 1), (1, 2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second"]
    np.testing.assert_allclose(ax.images[0].get_array(), importance.numpy())
    assert "the 2 least important" in ax.get_title()
    assert not head_importance_figure(importance).axes[0].patches


def test_head_importance_names_what_does_not_fit():
    with pytest.raises(ValueError, match=r"importance must be \(L, H\)"):
        head_importance_figure(np.ones(4))
    with pytest.raises(ValueError, match=r"outline_lowest must lie in 0\.\.4"):
        head_importance_figure(np.ones((2, 2)), outline_lowest=5)
    with pytest.raises(ValueError, match="1 layer_labels for L = 2"):
        head_importance_figure(np.ones((2, 2)), layer_labels=["a"])
