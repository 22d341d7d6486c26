"""`AttentionExplorer`: type a sentence and see, for every layer and head of any model, how much
each query token attends to each key token: softmax(Q K^T / sqrt(d_k)) (Vaswani et al., 2017).

It follows bertviz's head and model views (Vig, 2019), drawn with plotly inside ipywidgets so
that it works offline in JupyterLab (plotly's mime renderer, no CDN). The model is any callable
`sentence -> AttentionMaps`; the figures come from `heatmaps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tfm_edu.maps import AttentionMaps, as_attention_maps
from tfm_edu.viz.explorer import Explorer
from tfm_edu.viz.heatmaps import attention_grid, attention_heatmap

__all__ = ["AttentionExplorer"]

DEFAULT_SENTENCE = "The cat sat on the mat because it was tired."
DEFAULT_SENTENCE_B = "It fell asleep in the sun."
ALL = "all"
_HINT = (
    "Rows are queries (the token that looks), columns are keys (the tokens it looks at). "
    "Hover a cell for its weight; "
)
_ROWS_SUM_TO_1 = "each row sums to 1."
_ROWS_ARE_PART = (
    "this map is part of each row: the rest of a row's attention goes to tokens not shown, so "
    "a row need not sum to 1."
)
_GRID_SCALE = " In a grid the colour scale runs from 0 to the figure's largest weight."


class AttentionExplorer(Explorer):
    """Type a sentence, choose model, layer and head, and see where each token attends."""

    def __init__(
        self,
        models,
        sentence: str = DEFAULT_SENTENCE,
        max_tokens: int = 64,
        pair: bool = False,
        title: str | None = None,
        sentence_b: str | None = None,
        layer: int | str = 0,
        head: int | str = 0,
        note: Callable | None = None,
    ) -> None:
        """
        Args:
            models: a callable `sentence -> AttentionMaps` (or `-> (tokens, attentions)`, see
                `tfm_edu.maps.as_attention_maps`), or a dict {name: callable} shown as a
                model selector. With `pair=True` the callable receives (sentence_a, sentence_b).
            sentence: the sentence shown first.
            max_tokens: the most tokens drawn at once; longer inputs get a slider that pages
                through windows of this many tokens.
            pair: two text boxes, for models that read sentence pairs (BERT's [SEP]).
            title: optional heading above the controls.
            sentence_b: the second sentence shown first in pair mode.
            layer: the layer shown first (an index, or "all" for the layers x heads grid).
            head: the head shown first (an index, or "all" for a grid of heads).
            note: optional `(sentence, maps) -> str | None` (with `pair=True`:
                `(sentence_a, sentence_b, maps)`): a note shown above the figure, e.g. that
                the model's output for this input is made up.
        """
        import ipywidgets as widgets

        self.models = _check_models(models)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        self.max_tokens = max_tokens
        self.pair = bool(pair)
        if note is not None and not callable(note):
            raise ValueError(f"note must be a callable or None, got {type(note).__name__}")
        self.note = note
        self.current_maps: AttentionMaps | None = None  # what the model returned last
        self.figure = None  # the plotly figure shown last (None when only a message is shown)
        self.error: Exception | None = None  # the exception the model raised last, if any
        self._cache: dict[tuple, AttentionMaps] = {}
        self._notes: list[tuple[str, str]] = []  # (kind, text) shown above the figure
        self._wanted_view = (layer, head)

        wide = widgets.Layout(width="98%")
        self.sentence_box = widgets.Text(
            value=sentence,
            description="sentence A" if pair else "sentence",
            placeholder="Type a sentence, then press Enter",
            continuous_update=False,
            layout=wide,
            style={"description_width": "80px"},
        )
        self.sentence_b_box = widgets.Text(
            value=DEFAULT_SENTENCE_B if sentence_b is None else sentence_b,
            description="sentence B",
            placeholder="Type the second sentence, then press Enter",
            continuous_update=False,
            layout=wide if pair else widgets.Layout(display="none"),
            style={"description_width": "80px"},
        )
        names = list(self.models)
        longest = max(len(name) for name in names)  # the widest option must not be cut
        self.model_dropdown = widgets.Dropdown(
            options=names,
            value=names[0],
            description="model",
            layout=widgets.Layout(
                width=f"{min(max(260, 8 * longest + 100), 560)}px",
                display="" if len(names) > 1 else "none",
            ),
            style={"description_width": "50px"},
        )
        self.layer_dropdown = widgets.Dropdown(
            description="layer",
            layout=widgets.Layout(width="230px"),
            style={"description_width": "45px"},
        )
        self.head_dropdown = widgets.Dropdown(
            description="head",
            layout=widgets.Layout(width="180px"),
            style={"description_width": "45px"},
        )
        slider = {
            "min": 0,
            "max": 0,
            "continuous_update": False,
            "style": {"description_width": "90px"},
        }
        self.query_slider = widgets.IntSlider(description="tokens from", **slider)
        self.key_slider = widgets.IntSlider(description="keys from", **slider)
        for control in (self.query_slider, self.key_slider):
            control.layout.width = "48%"
        self._assemble(
            title,
            [
                self.sentence_box,
                self.sentence_b_box,
                self._row([self.model_dropdown, self.layer_dropdown, self.head_dropdown]),
                self._row([self.query_slider, self.key_slider]),
            ],
            hint=_HINT + _ROWS_SUM_TO_1,
        )
        for control in (self.sentence_box, self.sentence_b_box, self.model_dropdown):
            control.observe(self._on_input, names="value")
        for control in (
            self.layer_dropdown,
            self.head_dropdown,
            self.query_slider,
            self.key_slider,
        ):
            control.observe(self._on_view, names="value")
        self._update()

    # --- what notebooks and tests call --------------------------------------------------------

    def set_sentence(self, sentence: str, sentence_b: str | None = None) -> None:
        """Replace the text (as if typed and Enter pressed) and redraw."""
        with self._quietly():
            self.sentence_box.value = sentence
            if sentence_b is not None:
                self.sentence_b_box.value = sentence_b
        self._update()

    def set_view(self, layer: int | str | None = None, head: int | str | None = None) -> None:
        """Choose a layer and head (an index, or "all") and redraw."""
        for value, dropdown in ((layer, self.layer_dropdown), (head, self.head_dropdown)):
            allowed = [option for _, option in dropdown.options]
            if value is not None and value not in allowed:
                raise ValueError(f"{dropdown.description} must be one of {allowed}, got {value!r}")
        with self._quietly():
            if layer is not None:
                self.layer_dropdown.value = layer
            if head is not None:
                self.head_dropdown.value = head
        self._draw()

    # --- events -------------------------------------------------------------------------------

    def _update(self) -> None:
        """Ask the model for new maps, then rebuild the controls and draw."""
        self.current_maps, self.error = None, None
        notes = self._run_model()
        if self.current_maps is not None:
            with self._quietly():
                self._refresh_controls(self.current_maps)
        self._notes = notes
        self._draw()

    def _run_model(self) -> list[tuple[str, str]]:
        text_a = self.sentence_box.value.strip()
        text_b = self.sentence_b_box.value.strip() if self.pair else None
        if not text_a or (self.pair and not text_b):
            wanted = "two sentences (A and B)" if self.pair else "a sentence"
            return [("info", f"Type {wanted} above and press Enter to see its attention.")]
        name = self.model_dropdown.value
        key = (name, text_a, text_b)
        if key not in self._cache:
            model = self.models[name]
            try:
                result = model(text_a, text_b) if self.pair else model(text_a)
                self._cache[key] = as_attention_maps(result)
            except Exception as error:  # the learner's model: show it, never a traceback
                self.error = error
                return [("error", f"{name} could not process this input: {_short(error)}")]
            if len(self._cache) > 16:
                self._cache.pop(next(iter(self._cache)))
        maps = self._cache[key]
        if maps.attentions.shape[2] == 0 or maps.attentions.shape[3] == 0:
            return [("info", f"{name} returned no tokens for this input: try some words.")]
        self.current_maps = maps
        notes = [("notice", maps.notice)] if maps.notice else []
        if self.note is not None:
            try:
                text = self.note(text_a, text_b, maps) if self.pair else self.note(text_a, maps)
            except Exception as error:  # a note must never hide the figure
                text = f"(the note for this input failed: {_short(error)})"
            if text:
                notes.append(("notice", str(text)))
        return notes

    def _refresh_controls(self, maps: AttentionMaps) -> None:
        layer, head = self.layer_dropdown.value, self.head_dropdown.value
        if self._wanted_view is not None:
            layer, head = self._wanted_view
            self._wanted_view = None
        layers = [(f"all layers ({maps.num_layers} x {maps.num_heads} grid)", ALL)]
        layers += [(name, index) for index, name in enumerate(maps.names)]
        heads = [("all heads", ALL)] + [(f"head {h}", h) for h in range(maps.num_heads)]
        self.layer_dropdown.options = layers
        self.head_dropdown.options = heads
        self.layer_dropdown.value = layer if layer in dict(layers).values() else 0
        self.head_dropdown.value = head if head in dict(heads).values() else 0
        T, S = maps.attentions.shape[2:]
        for slider, length, shown in (
            (self.query_slider, T, T > self.max_tokens),
            (self.key_slider, S, S > self.max_tokens and maps.key_tokens is not None),
        ):
            slider.max = max(length - self.max_tokens, 0)
            slider.value = min(slider.value, slider.max)
            slider.layout.display = "" if shown else "none"
        self.query_slider.description = "queries from" if maps.key_tokens else "tokens from"

    # --- drawing ------------------------------------------------------------------------------

    def _draw(self) -> None:
        notes = list(self._notes)
        maps, self.figure = self.current_maps, None
        if maps is not None:
            try:
                notes += self._paging_notes(maps)
                self.figure = self._figure(maps)
            except Exception as error:  # a bug in drawing must not dump a traceback either
                notes.append(("error", f"Could not draw these maps: {_short(error)}"))
        self._show_notes(notes)
        self._set_hint(self._hint(maps))
        self._show_plotly(self.figure)

    def _hint(self, maps: AttentionMaps | None) -> str:
        """How to read the figure shown: do its rows sum to 1 (a sub-block's do not)?"""
        if maps is None:
            return _HINT + _ROWS_SUM_TO_1
        sums = maps.attentions.sum(axis=-1)  # (L, H, T)
        whole = bool(np.allclose(sums[sums > 1e-6], 1.0, atol=1e-3))  # rows with nothing: 0
        hint = _HINT + (_ROWS_SUM_TO_1 if whole else _ROWS_ARE_PART)
        grid = ALL in (self.layer_dropdown.value, self.head_dropdown.value)
        return hint + (_GRID_SCALE if grid else "")

    def _windows(self, maps: AttentionMaps) -> tuple[slice, slice]:
        q0 = self.query_slider.value
        k0 = self.key_slider.value if maps.key_tokens is not None else q0
        return slice(q0, q0 + self.max_tokens), slice(k0, k0 + self.max_tokens)

    def _paging_notes(self, maps: AttentionMaps) -> list[tuple[str, str]]:
        T, S = maps.attentions.shape[2:]
        if max(T, S) <= self.max_tokens:
            return []
        rows, cols = self._windows(maps)
        if maps.key_tokens is None:
            shown = f"tokens {rows.start}–{min(rows.stop, T) - 1} of {T}"
        else:
            shown = f"queries {rows.start}–{min(rows.stop, T) - 1} of {T}, "
            shown += f"keys {cols.start}–{min(cols.stop, S) - 1} of {S}"
        return [
            (
                "notice",
                f"This input has {max(T, S)} tokens, more than fit ({self.max_tokens}): showing "
                f"{shown}. Move the slider to page through; a row cut to this window need not "
                "sum to 1.",
            )
        ]

    def _figure(self, maps: AttentionMaps):
        rows, cols = self._windows(maps)
        weights = maps.attentions[:, :, rows, cols]  # (L, H, t, s) in the window
        queries = maps.query_tokens[rows]
        keys = maps.key_tokens[cols] if maps.key_tokens is not None else None
        layer, head = self.layer_dropdown.value, self.head_dropdown.value
        prefix = f"{self.model_dropdown.value} · " if len(self.models) > 1 else ""
        heads = [f"head {h}" for h in range(maps.num_heads)]
        if layer == ALL and head == ALL:
            title = f"{prefix}every layer (rows) x head (columns)"
            return attention_grid(weights, queries, keys, maps.names, heads, title=title)
        if layer == ALL:
            title = f"{prefix}head {head} in every layer"
            return attention_grid(weights[:, head], queries, keys, None, maps.names, title=title)
        if head == ALL:
            title = f"{prefix}{maps.names[layer]}: every head"
            return attention_grid(weights[layer], queries, keys, None, heads, title=title)
        title = f"{prefix}{maps.names[layer]}, head {head}"
        return attention_heatmap(weights[layer, head], queries, keys, title=title)


def _check_models(models) -> dict[str, Callable]:
    if callable(models) and not isinstance(models, Mapping):
        name = getattr(models, "__name__", "model")
        return {name if name != "<lambda>" else "model": models}
    if isinstance(models, Mapping) and models and all(callable(m) for m in models.values()):
        return {str(name): model for name, model in models.items()}
    raise ValueError(
        "models must be a callable sentence -> AttentionMaps, or a non-empty dict "
        f"{{name: callable}}, got {type(models).__name__}"
    )


def _short(error: Exception, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
