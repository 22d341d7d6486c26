"""PositionalEncodingExplorer: sliders over the sinusoidal table and RoPE, three views.

Sinusoidal (Vaswani et al., 2017, section 3.5): PE[pos, 2i] = sin(pos / base^(2i/D)),
PE[pos, 2i+1] = cos(pos / base^(2i/D)). RoPE (Su et al., 2021): rotate each (even, odd) pair of a
query or key by pos * base^(-2i/D). For RoPE the explorer draws a vector rotated to every
position: rotating (1, 0, 1, 0, ...) gives (cos, sin) pairs, the sinusoidal table again, and
the similarity of the vector at position m with itself at position n depends only on n - m.

Views come from `tfm_edu.viz.positional_views`; tables from `tfm_edu.positional`.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz.explorer import Explorer
from tfm_edu.viz.positional_views import encoding_heatmap, encoding_waves, similarity_by_offset

__all__ = ["PositionalEncodingExplorer"]

KINDS = (("sinusoidal", "sinusoidal"), ("RoPE", "rope"))
VIEWS = (("table", "table"), ("waves", "waves"), ("similarity by offset", "similarity"))
VECTORS = (("(1, 0, 1, 0, …)", "unit"), ("random (seed 0)", "random"))


class PositionalEncodingExplorer(Explorer):
    """Sliders for d_model, positions and base; sinusoidal vs RoPE; table, waves, similarity."""

    def __init__(
        self,
        d_model: int = 64,
        n_positions: int = 100,
        base: float = 10000.0,
        kind: str = "sinusoidal",
        view: str = "table",
        dims=(0, 10, 11, 30),
        title: str | None = None,
    ) -> None:
        """
        Args:
            d_model: D, 2..256, even (RoPE rotates pairs).
            n_positions: N, 2..256.
            base: 10..1e6 (the paper's 10000).
            kind: "sinusoidal" or "rope".
            view: "table", "waves" or "similarity".
            dims: the dimensions drawn as waves (default: a fast sine, a sin/cos pair, a slow one).
            title: optional heading.
        """
        import ipywidgets as widgets

        if d_model % 2 or not 2 <= d_model <= 256:
            raise ValueError(
                f"d_model must be even and in 2..256 (RoPE rotates pairs), got {d_model}"
            )
        if kind not in dict(KINDS).values() or view not in dict(VIEWS).values():
            raise ValueError(
                f"kind must be one of {[k for _, k in KINDS]} and view one of "
                f"{[v for _, v in VIEWS]}, got kind={kind!r}, view={view!r}"
            )
        self.table = None  # the (N, D) array drawn last
        self.figure = None  # the plotly figure drawn last
        self._control_notes: list[str] = []  # what a control corrected, said at the next draw
        style = {"description_width": "80px"}
        self.kind_toggle = widgets.ToggleButtons(options=KINDS, value=kind, description="encoding")
        self.view_toggle = widgets.ToggleButtons(options=VIEWS, value=view, description="view")
        for toggle in (self.kind_toggle, self.view_toggle):
            toggle.style = {"description_width": "70px", "button_width": "auto"}
            toggle.layout.width = "auto"
        slider = {"continuous_update": False, "style": style}
        self.d_model_slider = widgets.IntSlider(
            value=d_model, min=2, max=256, step=2, description="d_model", **slider
        )
        self.positions_slider = widgets.IntSlider(
            value=n_positions, min=2, max=256, description="positions", **slider
        )
        self.base_slider = widgets.FloatLogSlider(
            value=base, base=10, min=1, max=6, step=0.25, description="base",
            readout_format=",.0f", **slider,
        )  # fmt: skip
        self.dims_box = widgets.Text(
            value=", ".join(str(d) for d in dims),
            description="dimensions",
            continuous_update=False,
            style=style,
        )
        self.vector_dropdown = widgets.Dropdown(
            options=VECTORS,
            value="unit",
            description="rotated vector",
            style={"description_width": "100px"},
        )
        self._assemble(
            title,
            [
                self._row([self.kind_toggle, self.view_toggle]),
                self._row([self.d_model_slider, self.positions_slider, self.base_slider]),
                self._row([self.dims_box, self.vector_dropdown]),
            ],
        )
        for control in (
            self.kind_toggle,
            self.view_toggle,
            self.d_model_slider,
            self.positions_slider,
            self.base_slider,
            self.dims_box,
            self.vector_dropdown,
        ):
            control.observe(self._on_change, names="value")
        self._draw()

    def _on_change(self, change) -> None:
        if self._busy:
            return
        if change["owner"] is self.d_model_slider and change["new"] % 2:
            # the slider steps by 2, but its number box accepts any whole number
            even = min(change["new"] + 1, self.d_model_slider.max)
            with self._quietly():
                self.d_model_slider.value = even
            self._control_notes.append(
                f"d_model must be even (sinusoidal and RoPE both use (sin, cos) pairs): "
                f"{change['new']} was rounded up to {even}."
            )
        self._draw()

    def _draw(self) -> None:
        kind, view = self.kind_toggle.value, self.view_toggle.value
        self.dims_box.layout.display = "" if view == "waves" else "none"
        self.vector_dropdown.layout.display = "" if kind == "rope" else "none"
        notes, self._control_notes = self._control_notes, []
        try:
            self.table = self._table()  # (N, D)
            self.figure = self._figure(kind, view, notes)
        except Exception as error:  # never a traceback in the widget
            self.figure = None
            notes.append(f"Could not draw this: {type(error).__name__}: {error}")
        self._show_notes([("notice", note) for note in notes])
        self._show_plotly(self.figure)

    def _table(self) -> np.ndarray:
        from tfm_edu.positional import sinusoidal_encoding

        N, D = self.positions_slider.value, self.d_model_slider.value
        base = float(self.base_slider.value)
        if self.kind_toggle.value == "sinusoidal":
            return sinusoidal_encoding(N, D, base)  # (N, D)
        if self.vector_dropdown.value == "unit":
            vector = np.tile([1.0, 0.0], D // 2)  # (D,)
        else:
            vector = np.random.default_rng(0).standard_normal(D)  # (D,)
        from tfm_edu.analysis.positions import rotated_copies  # torch loads on first use

        return rotated_copies(vector, N, base)  # (N, D)

    def _figure(self, kind: str, view: str, notes: list[str]):
        N, D = self.table.shape
        base = f"{self.base_slider.value:,.0f}"
        rope = kind == "rope"
        what = (
            f"RoPE: the vector {dict((v, k) for k, v in VECTORS)[self.vector_dropdown.value]} "
            "rotated to each position"
            if rope
            else "sinusoidal encoding"
        )
        if view == "table":
            title = f"{what} (d_model={D}, base={base})"
            return encoding_heatmap(self.table, title=title)
        if view == "waves":
            dims = self._dims(D, notes)
            return encoding_waves(self.table, dims, title=f"{what}: dimensions {dims}")
        references = sorted({0, N // 2})
        title = (
            "rotated vector at m · itself at n: depends only on n − m"
            if rope
            else "PE[m] · PE[n]: depends only on n − m"
        )
        return similarity_by_offset(self.table, references, title=title)

    def _dims(self, D: int, notes: list[str]) -> list[int]:
        wanted, bad = [], []
        for part in self.dims_box.value.replace(";", ",").split(","):
            part = part.strip()
            if part.isdigit() and int(part) < D:
                wanted.append(int(part))
            elif part:
                bad.append(part)
        if bad:
            notes.append(f"Skipped {', '.join(bad)}: dimensions are whole numbers 0..{D - 1}.")
        if not wanted:
            wanted = [0, 1]
            notes.append("No dimension to draw: showing 0 and 1.")
        return wanted
