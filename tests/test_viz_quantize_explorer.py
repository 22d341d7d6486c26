"""The weight-outliers explorer runs headless: it opens on the layer with the strongest outlier
row, redraws on a new choice, and its notes come from the weights."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from tfm_edu.viz import WeightOutliersExplorer

matplotlib.use("Agg")


def weights():
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(8, 6)) * 0.1
    outlier = plain.copy()
    outlier[3] *= 50.0  # one row 50x larger
    return {"plain": plain, "outlier": outlier}


def test_opens_on_the_strongest_outlier_and_says_how_much_per_tensor_costs():
    explorer = WeightOutliersExplorer(weights())
    assert explorer.layer_dropdown.value == "outlier"
    assert explorer.outlier_ratio["outlier"] > 20 > explorer.outlier_ratio["plain"]
    assert (
        "outlier (8, 6)" in explorer.message and "x the mean round-trip error" in explorer.message
    )
    first = explorer.figure
    explorer.set_view("plain")
    assert explorer.figure is not first and explorer.message.startswith("plain (8, 6)")
    assert len(explorer.output.outputs) == 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="non-empty mapping"):
        WeightOutliersExplorer({})
    with pytest.raises(ValueError, match="is not one of the 2 given"):
        WeightOutliersExplorer(weights(), layer="missing")
    with pytest.raises(ValueError, match="weights\\['flat'\\]"):
        WeightOutliersExplorer({"flat": np.ones(4)})
