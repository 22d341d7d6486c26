"""`ShapeTracer`: choose a model of the course and its sizes (B, T, D, H, layers), pick a
sublayer, and read every tensor's shape on its way through, in numbers and in letters.

The shapes come from a real forward pass under hooks (`tfm_edu.analysis.shapes.trace_shapes`);
this widget only lays them out as a table. Rows whose shape differs from their input are
highlighted: the step that widens D to d_ff, splits D into H heads of Dh, or turns D into V
scores. Bad sizes (H not dividing D, a model too big to run) show a message, never a traceback.
"""

from __future__ import annotations

import html
from collections import Counter
from math import prod

from tfm_edu.viz.explorer import Explorer

__all__ = ["ShapeTracer"]

_HINT = (
    "One row per step of a real forward pass on random inputs; axes are read by their place "
    "(batch first, lengths T, S, P next, widths last). 'derived': a step that is a function, "
    "not a module (hover for how it was found). Green: more numbers out than in; blue: fewer; "
    "yellow: as many, in a new shape."
)
_CONTROLS = (  # (ShapeConfig field, label, tooltip)
    ("batch_size", "B", "batch: sequences processed together"),
    ("length", "T", "tokens in each sequence (the decoder's target in seq2seq)"),
    ("source_length", "S", "the source / memory length the decoder attends to"),
    ("d_model", "D", "d_model: the width of every token vector"),
    ("num_heads", "H", "attention heads; each gets Dh = D / H dimensions"),
    ("num_layers", "layers", "layers in each stack"),
    ("image_size", "image", "ViT: side of the square image in pixels"),
    ("patch_size", "patch", "ViT: side of a square patch in pixels"),
)
_GROW, _SHRINK = "#e6f4ea", "#e8f0fe"  # background of rows whose shape grows / shrinks


class ShapeTracer(Explorer):
    """Pick a model, its sizes and a sublayer; see each step's input and output shapes."""

    def __init__(
        self,
        model: str = "encoder stack",
        sublayer: str = "",
        title: str | None = "Shape tracer",
        **sizes: int,
    ) -> None:
        """
        Args:
            model: a key of `tfm_edu.analysis.shapes.MODELS` ("encoder layer", "encoder stack",
                "decoder layer", "seq2seq (encoder-decoder)", "BERT (masked LM)", "ViT").
            sublayer: the module path shown first ("" = an overview of the whole model; e.g.
                "layers.0.self_attn" for the first layer's attention in the encoder stack).
            title: heading above the controls.
            **sizes: starting values of `ShapeConfig` fields (batch_size, length, d_model, ...).
        """
        import ipywidgets as widgets

        from tfm_edu.analysis.shapes import LIMITS, MODELS, ShapeConfig

        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        defaults = ShapeConfig()
        unknown = set(sizes) - set(LIMITS)
        if unknown:
            raise ValueError(f"unknown sizes {sorted(unknown)}; known: {sorted(LIMITS)}")
        self.trace = None  # the ShapeTrace shown last (None after an error)
        self.rows: list = []  # the rows in the table now
        self.table_html = ""  # the table, as HTML
        self.error: Exception | None = None  # why the last trace failed, if it did
        self._cache: dict = {}
        self._wanted_sublayer = sublayer
        self.model_dropdown = widgets.Dropdown(
            options=list(MODELS), value=model, description="model",
            layout=widgets.Layout(width="320px"), style={"description_width": "50px"},
        )  # fmt: skip
        self.boxes = {}
        for name, label, tip in _CONTROLS:
            self.boxes[name] = widgets.BoundedIntText(
                value=sizes.get(name, getattr(defaults, name)), min=1, max=LIMITS[name], step=1,
                description=label, tooltip=tip, continuous_update=False,
                layout=widgets.Layout(width="130px"), style={"description_width": "48px"},
            )  # fmt: skip
        self.sublayer_dropdown = widgets.Dropdown(
            description="sublayer", layout=widgets.Layout(width="560px"),
            style={"description_width": "65px"},
        )  # fmt: skip
        self._assemble(
            title,
            [
                self._row([self.model_dropdown, self.sublayer_dropdown]),
                self._row(list(self.boxes.values())),
            ],
            hint=_HINT,
        )
        self.model_dropdown.observe(self._on_input, names="value")
        for box in self.boxes.values():
            box.observe(self._on_input, names="value")
        self.sublayer_dropdown.observe(self._on_view, names="value")
        self._update()

    # --- what notebooks and tests call --------------------------------------------------------

    def set_config(self, model: str | None = None, **sizes: int) -> None:
        """Change the model and/or several sizes at once (as if typed), then redraw once."""
        unknown = set(sizes) - set(self.boxes)
        if unknown:
            raise ValueError(f"unknown sizes {sorted(unknown)}; known: {sorted(self.boxes)}")
        with self._quietly():
            if model is not None:
                self.model_dropdown.value = model
            for name, value in sizes.items():
                self.boxes[name].value = value
        self._update()

    def set_sublayer(self, sublayer: str) -> None:
        """Show one sublayer: a path from the dropdown ("" = overview) or its label."""
        options = dict(self.sublayer_dropdown.options)
        path = options.get(sublayer, sublayer)
        if path not in options.values():
            raise ValueError(f"sublayer must be one of {list(options)}, got {sublayer!r}")
        self.sublayer_dropdown.value = path
        self._draw()

    # --- events -------------------------------------------------------------------------------

    def _update(self) -> None:
        from tfm_edu.analysis.shapes import MODELS

        name = self.model_dropdown.value
        uses = MODELS[name].uses
        for field, box in self.boxes.items():
            box.layout.display = "" if field in uses else "none"
        self.trace, self.error = None, None
        sizes = {field: int(box.value) for field, box in self.boxes.items()}
        try:
            self.trace = self._traced(name, sizes)
        except Exception as error:  # a size the models refuse: a message, never a traceback
            self.error = error
        with self._quietly():
            self._refresh_sublayers()
        self._draw()

    def _traced(self, name: str, sizes: dict[str, int]):
        from tfm_edu.analysis.shapes import ShapeConfig, trace_shapes

        key = (name, tuple(sorted(sizes.items())))
        if key not in self._cache:
            self._cache[key] = trace_shapes(name, ShapeConfig(**sizes))
            if len(self._cache) > 16:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def _refresh_sublayers(self) -> None:
        if self.trace is None:
            return
        wanted = self._wanted_sublayer
        if wanted is None:
            wanted = self.sublayer_dropdown.value
        self._wanted_sublayer = None
        options = self.trace.sublayers()
        self.sublayer_dropdown.options = options
        paths = [path for _, path in options]
        self.sublayer_dropdown.value = wanted if wanted in paths else ""

    # --- drawing ------------------------------------------------------------------------------

    def _draw(self) -> None:
        notes, self.rows, self.table_html = [], [], ""
        if self.trace is None:
            text = getattr(self.error, "args", [""])[0] if self.error else "nothing to trace"
            notes.append(("error", f"Cannot build this model: {text}"))
        else:
            self.rows = self.trace.select(self.sublayer_dropdown.value or "")
            notes.append(("info", _legend(self.trace.letters)))
            notes += [("notice", note) for note in self.trace.notes]
            self.table_html = _table(self.rows)
        self._show_notes(notes)
        if self.table_html:
            text = f"{len(self.rows)} steps of {self.trace.model}"
            data = {"text/html": self.table_html, "text/plain": text}
            self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)
        else:
            self.output.outputs = ()


def _legend(letters: dict[str, int]) -> str:
    words = {"Dh": "D / H", "d_ff": "4·D", "T": None, "p²C": "patch²·C"}
    parts = []
    for letter, value in letters.items():
        rule = words.get(letter)
        parts.append(f"{letter} = {rule} = {value}" if rule else f"{letter} = {value}")
    if "P" in letters:
        parts.append(f"(T = P + 1: [CLS] and {letters['P']} patches)")
    return "Letters: " + ", ".join(parts)


def _shapes(shapes, symbols) -> str:
    """ "(2, 6, 32) (B, T, D)" per distinct shape, repeats counted: "2 × (B, H, T, T)"."""
    counts = Counter(zip(shapes, symbols, strict=True))
    parts = []
    for (shape, symbol), n in counts.items():
        text = f"{symbol}  {tuple(shape)}"
        parts.append(f"{n} × {text}" if n > 1 else text)
    return "<br>".join(html.escape(p) for p in parts)


def _table(rows) -> str:
    # JupyterLab right-aligns table cells by default: say left.
    cell = "padding:2px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top;text-align:left"
    head = "".join(
        f"<th style='{cell}'>{h}</th>" for h in ("step", "in", "out: letters, numbers", "")
    )
    lines, top = [], min((r.depth for r in rows), default=0)
    for r in rows:
        grow = _change(r)
        style = f"{cell};background:{grow}" if grow else cell
        inputs = "<br>".join(
            f"<span title='{shape}'>{html.escape(f'{name} {symbol}')}</span>"
            for (name, shape), symbol in zip(r.inputs, r.input_symbols, strict=True)
        )
        source = "hook" if r.measured else "derived"
        tip = html.escape(r.how, quote=True)
        indent = 16 * (r.depth - top)
        step = html.escape(r.step.rsplit(" › ", 1)[-1])
        lines.append(
            f"<tr><td style='{cell};padding-left:{8 + indent}px' title='{html.escape(r.path)}'>"
            f"{step}</td><td style='{cell};color:#555'>{inputs}</td>"
            f"<td style='{style};font-family:monospace'>{_shapes(r.outputs, r.output_symbols)}</td>"
            f"<td style='{cell};color:#777;font-size:85%' title='{tip}'>{source}</td></tr>"
        )
    return (
        "<table style='border-collapse:collapse;font-size:13px;width:100%;max-width:950px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def _change(row) -> str:
    """Background for a row whose first output is bigger / smaller than its first input."""
    if not row.inputs or not row.outputs or row.inputs[0][1] == row.outputs[0]:
        return ""
    before, after = prod(row.inputs[0][1]), prod(row.outputs[0])
    return _GROW if after > before else _SHRINK if after < before else "#fef7e0"
