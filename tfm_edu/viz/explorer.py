"""What every explorer widget shares: a heading, rows of controls, notes above the figure, and
an `ipywidgets.Output` the figure is drawn into.

An explorer draws into its own Output, so showing one adds only a widget reference to the
notebook cell, nothing is printed from a callback, and nbval stays stable. The notes and the
figure are kept as attributes too (`message`, `figure`), so tests can drive an explorer headless.
"""

from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Iterator, Sequence

from tfm_edu.viz import _common as common

__all__ = ["Explorer"]

_NOTE_STYLE = {
    "info": "background:#f3f4f6;border-left:4px solid #9ca3af",
    "notice": "background:#fff8e1;border-left:4px solid #f5b400",
    "error": "background:#fdecea;border-left:4px solid #d93025",
}


class Explorer:
    """The scaffolding of an explorer; subclasses build their controls and call `_assemble`."""

    def _assemble(
        self, title: str | None, rows: Sequence, hint: str | None = None, min_height: int = 120
    ) -> None:
        """Lay out: heading, the rows of controls, the notes, an optional hint, the figure."""
        import ipywidgets as widgets

        self.message = ""  # the notes shown above the figure, as plain text
        self.message_html = widgets.HTML()
        self.output = widgets.Output(layout=widgets.Layout(min_height=f"{min_height}px"))
        self._busy = False
        heading = f"<h3 style='margin:4px 0'>{html.escape(title)}</h3>" if title else ""
        self.hint_html = widgets.HTML(layout=widgets.Layout(display="" if hint else "none"))
        self._set_hint(hint or "")
        parts = [widgets.HTML(heading), *rows, self.message_html, self.hint_html]
        self.widget = widgets.VBox([*parts, self.output])

    def _set_hint(self, hint: str) -> None:
        """The grey line under the notes, e.g. how to read the figure now shown."""
        self.hint = hint
        self.hint_html.value = f"<span style='color:#666;font-size:90%'>{html.escape(hint)}</span>"

    @staticmethod
    def _row(children):
        """Controls side by side, wrapping onto a second line in a narrow notebook."""
        import ipywidgets as widgets

        return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap"))

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change controls without each change redrawing (their observers check `_busy`)."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    # Observers for the two kinds of control: an input (new data: `_update`) and a view of the
    # same data (`_draw`); both stay silent while `_quietly` rebuilds the controls.
    def _on_input(self, _change) -> None:
        if not self._busy:
            self._update()

    def _on_view(self, _change) -> None:
        if not self._busy:
            self._draw()

    def _show_notes(self, notes: Sequence[tuple[str, str]]) -> None:
        """(kind, text) pairs above the figure; kind is "info", "notice" or "error"."""
        self.message = " ".join(text for _, text in notes)
        self.message_html.value = "".join(_note_html(kind, text) for kind, text in notes)

    def _show_plotly(self, figure) -> None:
        """Draw a plotly figure (or nothing, for None) into the Output."""
        if figure is None:
            self.output.outputs = ()
            return
        data = common.plotly_mimebundle(figure)
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)

    def _show_png(self, png: bytes, text: str) -> None:
        """Draw a PNG image into the Output; `text` is its plain-text stand-in."""
        data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        name = type(self).__name__
        bundle["text/plain"] = f"{name}: an interactive widget; run this cell to see it"
        return bundle


def _note_html(kind: str, text: str) -> str:
    style = _NOTE_STYLE[kind] + ";padding:4px 8px;margin:2px 0;border-radius:2px"
    return f"<div style='{style}'>{html.escape(text)}</div>"
