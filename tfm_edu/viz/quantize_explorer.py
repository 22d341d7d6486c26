"""`WeightOutliersExplorer`: pick one of a model's linear layers and see its int8 round trip, one
step for the whole matrix against one step per output row (`weight_outliers_figure`).

The explorer takes the weights as plain arrays, `{name: (out, in)}`, so it works for any model;
chapter 11 hands it every linear layer of the real MiniLM. Above the figure it says how far the
largest row stands out and how much error one step per tensor costs, computed from the weights.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from tfm_edu.viz._common import as_array
from tfm_edu.viz.explorer import Explorer
from tfm_edu.viz.quantize_views import _round_trip_error, weight_outliers_figure

__all__ = ["WeightOutliersExplorer"]


class WeightOutliersExplorer(Explorer):
    """A drop-down over named weight matrices; each drawn with its per-tensor and per-channel
    int8 round trips."""

    def __init__(
        self, weights: Mapping[str, object], *, layer: str | None = None, title: str | None = None
    ) -> None:
        """
        Args:
            weights: {name: (out, in) array or tensor}, e.g. every `nn.Linear` weight of a model.
            layer: the name shown first (default: the one whose largest row stands out most).
            title: optional heading.
        """
        import ipywidgets as widgets

        if not isinstance(weights, Mapping) or not weights:
            raise ValueError("weights must be a non-empty mapping {name: (out, in) matrix}")
        self.weights = {
            str(name): as_array(w, (2,), f"weights[{name!r}]", "an (out, in) matrix")
            for name, w in weights.items()
        }
        self.outlier_ratio = {name: _outlier_ratio(w) for name, w in self.weights.items()}
        if layer is None:
            layer = max(self.outlier_ratio, key=self.outlier_ratio.get)
        if layer not in self.weights:
            raise ValueError(f"layer {layer!r} is not one of the {len(self.weights)} given")
        self.figure = None
        self.layer_dropdown = widgets.Dropdown(
            options=list(self.weights), value=layer, description="layer",
            layout=widgets.Layout(width="460px"),
        )  # fmt: skip
        self._assemble(
            title,
            [self.layer_dropdown],
            hint="Red: one step for the whole matrix. Blue: one step per output row.",
            min_height=300,
        )
        self.layer_dropdown.observe(self._on_view, names="value")
        self._draw()

    def set_view(self, layer: str) -> None:
        """Show `layer` (a name of `weights`)."""
        if layer not in self.weights:
            raise ValueError(f"layer {layer!r} is not one of the {len(self.weights)} given")
        self.layer_dropdown.value = layer  # the observer redraws

    def _draw(self) -> None:
        import matplotlib

        name = self.layer_dropdown.value
        w = self.weights[name]
        row_max = np.abs(w).max(axis=1, keepdims=True)  # (out, 1)
        tensor_error = float(_round_trip_error(w, row_max.max()).mean())
        channel_error = float(_round_trip_error(w, row_max).mean())
        ratio = tensor_error / channel_error if channel_error > 0 else 1.0
        self._show_notes([("info", (
            f"{name} {w.shape}: the largest row's max |w| is {self.outlier_ratio[name]:.1f}x the "
            f"median row's; one step for all rows gives {ratio:.1f}x the mean round-trip error "
            "of one step per row."
        ))])  # fmt: skip
        with matplotlib.rc_context({"figure.dpi": 90}):
            self.figure = weight_outliers_figure(w, title=name)
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png")
        self._show_png(buffer.getvalue(), f"int8 round trip of {name}")


def _outlier_ratio(weight: np.ndarray) -> float:
    """The largest row's max |w| over the median row's."""
    row_max = np.abs(weight).max(axis=1)  # (out,)
    median = float(np.median(row_max))
    return float(row_max.max()) / median if median > 0 else 1.0
