"""Chapter 11's int8 view, headless: it draws the package's round trip, refuses bad weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tfm_edu.efficiency.quantize import quantization_error
from tfm_edu.viz.quantize_views import weight_outliers_figure


def _weight_with_outlier_rows():
    weight = torch.randn(24, 40, generator=torch.Generator().manual_seed(0)) * 0.05  # (out, in)
    weight[[3, 17]] *= 40  # two outlier rows
    return weight


def test_the_view_draws_the_packages_round_trip_per_tensor_and_per_channel():
    weight = _weight_with_outlier_rows()
    fig = weight_outliers_figure(weight, title="a layer")
    hist_ax, range_ax, error_ax = fig.axes
    assert fig._suptitle.get_text() == "a layer"
    # Panel 1: one bin per int8 level of the per-tensor grid, every weight counted.
    assert len(hist_ax.patches) == 255
    assert sum(p.get_height() for p in hist_ax.patches) == weight.numel()
    # Panel 2: each row's max |w| against the one per-tensor range.
    row_max = weight.abs().amax(dim=1).numpy()
    np.testing.assert_allclose(range_ax.lines[0].get_ydata(), row_max, rtol=1e-6)
    assert range_ax.lines[1].get_ydata()[0] == pytest.approx(row_max.max(), rel=1e-6)
    ratio = row_max.max() / np.median(row_max)
    assert f"the largest is {ratio:.1f}x the median" in range_ax.get_title()
    # Panel 3: the same errors as tfm_edu.efficiency.quantize, per tensor above per channel.
    tensor_mean, _ = quantization_error(weight.double(), per="tensor")
    channel_mean, _ = quantization_error(weight.double(), per="channel")
    tensor_line, channel_line = error_ax.lines
    np.testing.assert_allclose(tensor_line.get_ydata(), tensor_mean.numpy(), rtol=1e-9)
    np.testing.assert_allclose(channel_line.get_ydata(), channel_mean.numpy(), rtol=1e-9)
    assert channel_mean.mean() < tensor_mean.mean()
    assert f"({tensor_mean.mean() / channel_mean.mean():.1f}x)" in error_ax.get_title()


def test_the_view_takes_arrays_and_survives_a_zero_row():
    weight = _weight_with_outlier_rows().numpy()
    weight[0] = 0
    fig = weight_outliers_figure(weight)
    assert "(24 x 40)" in fig._suptitle.get_text()
    assert fig.axes[2].lines[1].get_ydata()[0] == 0  # zeros survive the round trip exactly
    png = io.BytesIO()
    fig.savefig(png, format="png")  # rendered headless (Agg), a zero on a log axis included
    assert png.getvalue().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (np.ones(5), r"\(out, in\) matrix, got shape \(5,\)"),
        (np.ones((2, 3, 4)), r"\(out, in\) matrix, got shape \(2, 3, 4\)"),
        (np.ones((0, 4)), "at least one row and column"),
        (np.array([[1.0, np.nan]]), "NaN or infinite"),
        ([["a", "b"]], "numeric"),
    ],
)
def test_the_view_refuses_bad_weights(weight, message):
    with pytest.raises(ValueError, match=message):
        weight_outliers_figure(weight)
