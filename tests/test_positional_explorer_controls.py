"""Chapter 3's explorer: whole-number ticks on short axes, and d_model kept even at the control."""

import numpy as np
import pytest

from tfm_edu.positional import sinusoidal_encoding
from tfm_edu.viz import PositionalEncodingExplorer
from tfm_edu.viz.positional_views import encoding_heatmap, encoding_waves, similarity_by_offset


def _ticks(axis) -> np.ndarray:
    """The tick positions plotly draws for an axis with tick0 and dtick over its data range."""
    assert axis.dtick is not None, "a short whole-number axis needs an explicit dtick"
    return np.arange(axis.tick0, 10, axis.dtick)


@pytest.mark.parametrize("positions, d_model", [(2, 2), (2, 8), (7, 2)])
def test_short_axes_have_whole_ticks(positions, d_model):
    table = sinusoidal_encoding(positions, d_model)  # (N, D)
    heatmap = encoding_heatmap(table)
    for axis in (heatmap.layout.xaxis, heatmap.layout.yaxis):
        ticks = _ticks(axis)
        assert np.all(ticks == np.round(ticks)), ticks
        assert axis.dtick == 1  # at most 10 values: one tick each
    waves = encoding_waves(table, [0, d_model - 1])
    assert waves.layout.xaxis.dtick == 1
    offsets = similarity_by_offset(table, [0, positions - 1])
    assert offsets.layout.xaxis.dtick in (1, 2)
    assert offsets.layout.xaxis.tick0 == 0


def test_long_axes_keep_plotly_ticks():
    heatmap = encoding_heatmap(sinusoidal_encoding(100, 64))
    assert heatmap.layout.xaxis.dtick is None and heatmap.layout.yaxis.dtick is None
    assert encoding_heatmap(sinusoidal_encoding(15, 16)).layout.yaxis.dtick == 2


def test_odd_d_model_typed_into_the_box_is_rounded_up_and_said():
    explorer = PositionalEncodingExplorer(d_model=8, n_positions=6, kind="rope")
    explorer.d_model_slider.value = 3  # what typing 3 into the number box does
    assert explorer.d_model_slider.value == 4
    assert explorer.table.shape == (6, 4)
    assert explorer.figure is not None
    assert "rounded up to 4" in explorer.message
    assert "Error" not in explorer.message
    explorer.positions_slider.value = 5  # the note is said once, not forever
    assert explorer.message == ""
    explorer.kind_toggle.value = "sinusoidal"
    explorer.d_model_slider.value = 255
    assert explorer.d_model_slider.value == 256 and explorer.table.shape == (5, 256)


def test_constructor_rejects_odd_d_model():
    with pytest.raises(ValueError, match="even"):
        PositionalEncodingExplorer(d_model=3)
