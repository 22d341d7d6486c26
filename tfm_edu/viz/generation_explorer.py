"""`GenerationExplorer`: type a prompt and watch a character GPT choose what comes next.

Three knobs reshape the model's next-character distribution before a character is drawn
(Holtzman et al., 2020): the temperature (0 = greedy), top-k and top-p. The bar chart shows the
model's own probabilities faint, what sampling draws with solid (the kept characters,
renormalised), and what the knobs cut hatched in grey. "sample one" draws a character from exactly
that distribution and appends it; "generate 200" continues with `tfm_edu.decode.generate` and its
KV cache. The heatmap below shows what the last character reads, one row per head of a chosen
layer: the attention row that produced these probabilities.

The numbers come from `tfm_edu.analysis.generation`, the pictures from `next_token_figure` and
`value_heatmap`. Draws are repeatable: one `torch.Generator`, seeded at construction.

The prompt box is one line, as a browser's text box cannot hold a line break: a new line in the
prompt shows as "⏎" and a tab as "⇥", the same glyphs as on the chart's axis, and typing either
glyph means that character.
"""

from __future__ import annotations

import html

from tfm_edu.viz import _common as common
from tfm_edu.viz.explorer import Explorer
from tfm_edu.viz.generation_views import next_token_figure
from tfm_edu.viz.heatmaps import value_heatmap

__all__ = ["GenerationExplorer"]

DEFAULT_PROMPT = "The default value is "
_BOX_GLYPHS = {"\n": "⏎", "\t": "⇥"}  # the characters a one-line text box cannot show
_HINT = (
    "Bars: faint = the model's own probability; solid = what sampling draws with after "
    "temperature, top-k and top-p, renormalised; hatched grey = cut. In the prompt box ⏎ is a "
    "new line and ⇥ a tab. Heatmap: how much the last character reads each character of the "
    "prompt, one row per head of the chosen layer."
)


class GenerationExplorer(Explorer):
    """Type a prompt, set temperature, top-k and top-p, and see (and sample) the next character."""

    def __init__(
        self,
        model,
        tokenizer,
        prompt: str = DEFAULT_PROMPT,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        title: str | None = None,
        layer: int = 0,
        top: int = 20,
        max_keys: int = 64,
        generate_count: int = 200,
    ) -> None:
        """
        Args:
            model: a GPT (`tfm_edu.pretrained.char_gpt()[0]`): `model(ids, ...)` with
                `.config.block_size`, `.config.num_layers` and `.config.num_heads`.
            tokenizer: its `CharTokenizer`.
            prompt: the prompt shown first.
            temperature: in [0, 2]; 0 = greedy (always the most likely character).
            top_k: keep the k most likely characters; None (or 0) = off.
            top_p: in [0.05, 1]: keep the nucleus of probability p; None (or 1) = off.
            seed: seeds the one `torch.Generator` every draw uses (`reset_seed` restarts it).
            title: optional heading.
            layer: the layer whose attention is shown first.
            top: how many characters the bar chart shows.
            max_keys: the attention map shows at most the last this many characters.
            generate_count: how many characters the "generate" button adds.
        """
        import ipywidgets as widgets
        import torch

        config = getattr(model, "config", None)
        if not callable(model) or not all(
            hasattr(config, name) for name in ("block_size", "num_layers", "num_heads")
        ):
            raise ValueError(
                "model must be a GPT with .config.block_size, .num_layers and .num_heads (e.g. "
                f"char_gpt()[0]), got {type(model).__name__}"
            )
        if not all(hasattr(tokenizer, name) for name in ("itos", "decode", "unknown_chars")):
            raise ValueError(f"tokenizer must be a CharTokenizer, got {type(tokenizer).__name__}")
        V = len(tokenizer.itos)
        if isinstance(temperature, bool) or not 0 <= temperature <= 2:
            raise ValueError(f"temperature must lie in [0, 2], got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or not 0 <= top_k <= V):
            raise ValueError(f"top_k must be None or an int in 0..{V}, got {top_k!r}")
        if top_p is not None and not 0.05 <= top_p <= 1:
            raise ValueError(f"top_p must be None or lie in [0.05, 1], got {top_p!r}")
        if not 0 <= layer < config.num_layers:
            raise ValueError(f"layer must lie in 0..{config.num_layers - 1}, got {layer!r}")
        self.model, self.tokenizer = model, tokenizer
        self.top, self.max_keys, self.generate_count = top, max_keys, generate_count
        device = next(iter(model.parameters()), torch.empty(0)).device
        self.seed = seed
        self.generator = torch.Generator(device=device).manual_seed(seed)  # every draw uses it
        self.table = None  # the NextTokenTable drawn last (None when only a message is shown)
        self.maps = None  # the last position's AttentionMaps (L, H, 1, S) drawn last
        self.figure = None  # the bar chart drawn last
        self.attention_figure = None  # the heatmap drawn last
        self.appended = ""  # what "sample one" / "generate" appended last
        self._notes: list[tuple[str, str]] = []
        self._action_notes: list[tuple[str, str]] = []  # what the last button did
        self._maps_for: tuple[str, object] | None = None  # (prompt, maps): one forward per prompt

        self.prompt_box = widgets.Text(
            value=_to_box(prompt),
            description="prompt",
            placeholder="Type a prompt, then press Enter (⏎ = new line)",
            continuous_update=False,
            layout=widgets.Layout(width="98%"),
            style={"description_width": "60px"},
        )
        style = {"description_width": "90px"}
        self.temperature_slider = widgets.FloatSlider(
            value=temperature, min=0.0, max=2.0, step=0.05, description="temperature",
            continuous_update=False, style=style, readout_format=".2f",
        )  # fmt: skip
        self.top_k_slider = widgets.IntSlider(
            value=top_k or 0, min=0, max=V, description="top-k",
            continuous_update=False, style=style,
        )  # fmt: skip
        self.top_p_slider = widgets.FloatSlider(
            value=1.0 if top_p is None else top_p, min=0.05, max=1.0, step=0.05,
            description="top-p", continuous_update=False, style=style, readout_format=".2f",
        )  # fmt: skip
        self.knobs_html = widgets.HTML(
            "<span style='color:#666;font-size:90%'>temperature 0 = greedy (always the most "
            "likely) · top-k 0 = off · top-p 1 = off</span>"
        )
        self.sample_button = widgets.Button(
            description="sample one", tooltip="draw one character and append it to the prompt"
        )
        self.generate_button = widgets.Button(
            description=f"generate {generate_count}",
            tooltip=f"draw {generate_count} characters (with the KV cache) and append them",
        )
        self.layer_dropdown = widgets.Dropdown(
            options=[(f"layer {index}", index) for index in range(config.num_layers)],
            value=layer,
            description="attention of",
            layout=widgets.Layout(width="220px"),
            style={"description_width": "80px"},
        )
        self._assemble(
            title,
            [
                self.prompt_box,
                self._row([self.temperature_slider, self.top_k_slider, self.top_p_slider]),
                self.knobs_html,
                self._row([self.sample_button, self.generate_button, self.layer_dropdown]),
            ],
            hint=_HINT,
            min_height=400,
        )
        self.prompt_box.observe(self._on_input, names="value")
        for slider in (self.temperature_slider, self.top_k_slider, self.top_p_slider):
            slider.observe(self._on_input, names="value")
        self.layer_dropdown.observe(self._on_view, names="value")
        self.sample_button.on_click(lambda _button: self.sample_one())
        self.generate_button.on_click(lambda _button: self.generate())
        self._update()

    # --- what notebooks and tests call --------------------------------------------------------

    @property
    def prompt(self) -> str:
        """The prompt as the model reads it (the box's ⏎ and ⇥ turned back into characters)."""
        value = self.prompt_box.value
        for char, glyph in _BOX_GLYPHS.items():
            value = value.replace(glyph, char)
        return value

    def set_prompt(self, text: str) -> None:
        """Replace the prompt (as if typed and Enter pressed) and redraw."""
        with self._quietly():
            self.prompt_box.value = _to_box(text)
        self._update()

    def settings(self) -> dict:
        """The sliders as `generate`'s keyword arguments: temperature, top_k, top_p."""
        top_p = round(float(self.top_p_slider.value), 4)
        return {
            "temperature": round(float(self.temperature_slider.value), 4),
            "top_k": int(self.top_k_slider.value) or None,
            "top_p": None if top_p >= 1 else top_p,
        }

    def reset_seed(self, seed: int | None = None) -> None:
        """Restart the draws: the same seed gives the same characters again."""
        self.seed = self.seed if seed is None else seed
        self.generator.manual_seed(self.seed)

    def sample_one(self) -> str:
        """Draw one character from the distribution shown, append it, redraw; returns it."""
        return self._append(1)

    def generate(self) -> str:
        """Draw `generate_count` characters (KV cache on), append them, redraw; returns them."""
        return self._append(self.generate_count)

    # --- events -------------------------------------------------------------------------------

    def _append(self, count: int) -> str:
        import torch

        from tfm_edu.analysis.generation import check_prompt, display_char, generate_text

        text = self.prompt
        self.appended = ""
        check = check_prompt(self.tokenizer, text, self.model.config.block_size)
        if check.error:
            self._action_notes = [("error", check.error)]
            self._update()
            return ""
        settings, before = self.settings(), self.table
        try:
            with torch.no_grad():
                new = generate_text(
                    self.model, self.tokenizer, text, count, generator=self.generator, **settings
                )
        except Exception as error:  # never a traceback in the notebook
            self._action_notes = [("error", f"Could not sample: {_short(error)}")]
            self._update()
            return ""
        self.appended = new
        skipped = count - len(new)
        if count == 1 and new:
            self._action_notes = [("info", f"Sampled {display_char(new)!r}{_odds(before, new)}.")]
        elif count > 1:
            self._action_notes = [("info", f"Generated {len(new)} characters (KV cache on).")]
        if skipped:
            what = "a special token" if skipped == 1 else f"{skipped} special tokens"
            self._action_notes.append(
                ("notice", f"The model drew {what} ([EOS], [UNK]...), not characters: left out.")
            )
        self.set_prompt(text + new)
        return new

    def _update(self) -> None:
        """Read the prompt, compute the table (and the attention, once per prompt), draw."""
        import torch

        from tfm_edu.analysis.generation import (
            check_prompt,
            last_position_attention,
            next_token_table,
        )

        actions, self._action_notes = self._action_notes, []
        self.table = self.maps = None
        enabled = self.temperature_slider.value > 0
        self.top_k_slider.disabled = self.top_p_slider.disabled = not enabled
        text = self.prompt
        check = check_prompt(self.tokenizer, text, self.model.config.block_size)
        if check.error:
            self._notes = [*[a for a in actions if a[0] != "error"], ("error", check.error)]
            self._draw()
            return
        notes = actions + [("notice", note) for note in check.notes]
        try:
            with torch.no_grad():
                self.table = next_token_table(
                    self.model, self.tokenizer, text, top=self.top, **self.settings()
                )
                if self._maps_for is None or self._maps_for[0] != text:
                    maps = last_position_attention(self.model, self.tokenizer, text)
                    self._maps_for = (text, maps)
                self.maps = self._maps_for[1]
        except Exception as error:  # the learner's model: show it, never a traceback
            self.table = self.maps = None
            notes.append(("error", f"The model could not read this prompt: {_short(error)}"))
        self._notes = notes
        self._draw()

    # --- drawing ------------------------------------------------------------------------------

    def _draw(self) -> None:
        notes = list(self._notes)
        self.figure = self.attention_figure = None
        if self.table is not None and self.maps is not None:
            try:
                self.figure = self._bars()
                self.attention_figure, window_note = self._attention()
                if window_note:
                    notes.append(("notice", window_note))
            except Exception as error:  # a bug in drawing must not dump a traceback either
                self.figure = self.attention_figure = None
                notes.append(("error", f"Could not draw: {_short(error)}"))
        self._show_notes(notes)
        figures = [f for f in (self.figure, self.attention_figure) if f is not None]
        self.output.outputs = tuple(
            {"output_type": "display_data", "data": common.plotly_mimebundle(f), "metadata": {}}
            for f in figures
        )

    def _bars(self):
        table, tail = self.table, self.prompt[-24:]
        shown = "".join(_label(c) for c in tail)
        title = f"What comes after “{'…' if len(self.prompt) > 24 else ''}{html.escape(shown)}”?"
        return next_token_figure(
            table.labels, table.raw, table.final, table.kept, title=title, summary=table.summary
        )

    def _attention(self):
        maps, layer = self.maps, self.layer_dropdown.value
        S = maps.attentions.shape[-1]
        shown = min(S, self.max_keys)
        weights = maps.attentions[layer, :, 0, S - shown :]  # (H, s): the last s keys
        keys = maps.key_tokens[S - shown :]
        heads = [f"head {h}" for h in range(maps.num_heads)]
        query = html.escape(maps.query_tokens[0])
        figure = value_heatmap(
            weights,
            heads,
            keys,
            row_title="head",
            col_title="key character",
            value_title="weight",
            title=f"layer {layer}: what the last character, “{query}”, reads",
            value_range=(0.0, common.nice_max(weights)),
        )
        if all(len(key) == 1 for key in keys):  # single characters read best upright
            figure.update_xaxes(tickangle=0)
        if shown == S:
            return figure, None
        return figure, (
            f"The attention map shows the last {shown} of the {S} characters the model reads: "
            "the weights on earlier characters are not drawn, so a row need not sum to 1."
        )


def _label(char: str) -> str:
    from tfm_edu.analysis.generation import display_char

    return display_char(char)


def _to_box(text: str) -> str:
    for char, glyph in _BOX_GLYPHS.items():
        text = text.replace(char, glyph)
    return text


def _odds(table, char: str) -> str:
    """', drawn with probability 0.12' from the table shown before the draw, if it lists it."""
    if table is None:
        return ""
    from tfm_edu.analysis.generation import display_char

    label = display_char(char)
    if label in table.labels:
        return f", drawn with probability {table.final[table.labels.index(label)]:.3f}"
    return f" (not among the {len(table.labels)} most likely shown)"


def _short(error: Exception, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
