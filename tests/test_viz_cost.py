"""Chapter 11's scaling figure, headless."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tfm_edu.viz.cost_views import scaling_figure

matplotlib.use("Agg")

LENGTHS = [128, 256, 512, 1024, 2048]


def test_one_line_per_path_with_its_fitted_slope_and_a_memory_panel():
    seconds = {
        "explicit": [2e-9 * n**2 for n in LENGTHS],
        "tiled": [5.0 if n < 512 else 1e-9 * n**2 for n in LENGTHS],  # fixed costs below 512
    }
    peak = {"explicit": [8.0 * n**2 for n in LENGTHS], "tiled": [1000.0 * n for n in LENGTHS]}
    fig = scaling_figure(LENGTHS, seconds, peak)
    FigureCanvasAgg(fig).draw()  # renders headless
    time_axes, memory_axes = fig.axes
    labels = [line.get_label() for line in time_axes.get_lines()]
    assert labels == ["explicit (~T^2.0)", "tiled (~T^2.0)"]  # fitted over T >= 512 only
    assert [line.get_label() for line in memory_axes.get_lines()] == [
        "explicit (~T^2.0)",
        "tiled (~T^1.0)",
    ]
    assert time_axes.get_xscale() == memory_axes.get_yscale() == "log"
    np.testing.assert_allclose(
        memory_axes.get_lines()[1].get_ydata(), np.array(peak["tiled"]) / 2**20
    )
    assert "T >= 512" in time_axes.get_title()


def test_without_memory_one_panel_and_with_two_lengths_the_slope_of_both():
    fig = scaling_figure([64, 128], {"sdpa": [1.0, 4.0]}, title="tiny")
    (axes,) = fig.axes
    assert axes.get_lines()[0].get_label() == "sdpa (~T^2.0)"
    assert fig._suptitle.get_text() == "tiny"


def test_a_single_length_draws_without_a_slope():
    fig = scaling_figure([128], {"tiled": [0.5]})
    assert fig.axes[0].get_lines()[0].get_label() == "tiled"


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match=r"one value per length, \(N,\) = \(2,\)"):
        scaling_figure([64, 128], {"tiled": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="positive"):
        scaling_figure([64, 128], {"tiled": [1.0, 2.0]}, {"tiled": [0.0, 5.0]})
    with pytest.raises(ValueError, match="non-empty"):
        scaling_figure([64, 128], {})
    with pytest.raises(ValueError, match="lengths must be"):
        scaling_figure([0, 128], {"tiled": [1.0, 2.0]})
