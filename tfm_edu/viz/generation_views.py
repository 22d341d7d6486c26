"""Chapter 9's picture of one sampling step: the next-character distribution before and after
temperature, top-k and top-p (Holtzman et al., 2020).

For each of the most likely characters, a faint bar is the model's own (raw, temperature-1)
probability and a solid bar in front of it is the probability `generate` actually draws with:
the kept characters renormalised to sum to 1. Characters that top-k or top-p cut are greyed and
hatched, and their hover text says so. The numbers come from
`tfm_edu.analysis.next_token_table`; this module only draws them (plotly, offline).
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

__all__ = ["next_token_figure"]

RAW_COLOR = "rgba(47, 109, 179, 0.25)"  # the model's own probability: faint blue
FINAL_COLOR = "#2f6db3"  # what sampling draws with: solid blue
CUT_COLOR = "rgba(140, 140, 140, 0.35)"  # cut by top-k / top-p: grey, hatched
HEIGHT_PX = 380
_BAR_PX = 34  # width per character on the x axis


def next_token_figure(
    labels, raw, final, kept, *, title: str | None = None, summary: str | None = None
):
    """A bar chart of the most likely next characters, before and after the sampling knobs.

    Args:
        labels: N display labels, most likely first ("␣" for a space, "⏎" for a new line...;
            `tfm_edu.analysis.display_char`).
        raw: (N,) the model's probabilities, softmax(logits), in [0, 1].
        final: (N,) the probabilities `generate` draws from, in [0, 1]; 0 where not kept.
        kept: (N,) bool: the character survives top-k and top-p.
        title: optional figure title.
        summary: the line under the title (e.g. `NextTokenTable.summary`); None says how many
            of the N characters shown are kept.

    Returns:
        A plotly `go.Figure`; `figure.data` holds the traces "raw", "cut" and "renormalised".

    Raises:
        ValueError when the lengths differ, a probability lies outside [0, 1], or a character
        that is not kept has a final probability above 0.
    """
    import plotly.graph_objects as go

    raw = _probabilities(raw, "raw")  # (N,)
    final = _probabilities(final, "final")  # (N,)
    kept_array = np.asarray(kept.detach().cpu() if hasattr(kept, "detach") else kept)
    if kept_array.dtype != np.bool_ or kept_array.ndim != 1:
        raise ValueError(
            f"kept must be a 1-D boolean array (N,), got {kept_array.dtype} of shape "
            f"{kept_array.shape}"
        )
    N = raw.shape[0]
    if not N:
        raise ValueError("nothing to draw: labels, raw, final and kept are empty")
    if labels is None or isinstance(labels, str):
        raise ValueError(f"labels must be a list of {N} strings, got {labels!r}")
    names = [str(label) for label in labels]
    if len(names) != N or final.shape != (N,) or kept_array.shape != (N,):
        raise ValueError(
            f"one entry per character: raw has {N}, but labels has {len(names)}, final "
            f"{final.shape[0]} and kept {kept_array.shape[0]}"
        )
    if np.any(final[~kept_array] > 1e-9):
        cut = [names[i] for i in np.flatnonzero(~kept_array & (final > 1e-9))]
        raise ValueError(f"final must be 0 where kept is False, but is not for {cut}")
    if summary is None:
        summary = f"{int(kept_array.sum())} of the {N} characters shown may be drawn"

    x = common.plotly_categories(names)

    def where(mask, values):  # plotly leaves out a bar whose height is None
        return [float(v) if m else None for v, m in zip(values, mask, strict=True)]

    raw_hover = "<b>%{x}</b><br>raw probability %{y:.3f}<extra>kept</extra>"
    cut_hover = (
        "<b>%{x}</b>: cut by top-k / top-p, never drawn<br>raw probability %{y:.3f}"
        "<extra>cut</extra>"
    )
    final_hover = (
        "<b>%{x}</b><br>drawn with probability %{y:.3f}<br>raw probability %{customdata:.3f}"
        "<extra>kept</extra>"
    )
    traces = [
        go.Bar(
            name="the model's probability (temperature 1)",
            x=x,
            y=where(kept_array, raw),
            marker={"color": RAW_COLOR, "line": {"color": FINAL_COLOR, "width": 1}},
            width=0.8,
            hovertemplate=raw_hover,
            meta="raw",
        ),
        go.Bar(
            name="cut by top-k / top-p",
            x=x,
            y=where(~kept_array, raw),
            marker={
                "color": CUT_COLOR,
                "pattern": {"shape": "/", "fgcolor": "#777", "size": 6},
                "line": {"color": "#999", "width": 1},
            },
            width=0.8,
            hovertemplate=cut_hover,
            meta="cut",
        ),
        go.Bar(
            name="drawn with (kept, renormalised)",
            x=x,
            y=where(kept_array, final),
            customdata=raw,
            marker={"color": FINAL_COLOR},
            width=0.45,
            hovertemplate=final_hover,
            meta="renormalised",
        ),
    ]
    top = 30 + 22 * (title.count("<br>") + 1) if title else 16
    margin = {"l": 64, "r": 20, "t": top + 56, "b": 64}
    width = margin["l"] + margin["r"] + max(N * _BAR_PX, 360)
    width = min(max(width, common.title_pixels(title), 7 * len(summary) + 90),
                common.NOTEBOOK_WIDTH_PX)  # fmt: skip
    layout = {
        "title": {"text": title} if title else None,
        "barmode": "overlay",
        "width": int(width),
        "height": HEIGHT_PX,
        "margin": margin,
        "xaxis": {
            "type": "category",
            "categoryorder": "array",
            "categoryarray": x,
            "tickmode": "array",
            "tickvals": x,
            "ticktext": x,
            "tickfont": {"size": 15},
            "tickangle": 0,
            "title": {"text": "next character (most likely first)"},
        },
        "yaxis": {
            "title": {"text": "probability"},
            "range": [0.0, 1.08 * max(float(raw.max()), float(final.max()), 1e-3)],
            "tickformat": ".0%",
        },
        "legend": {
            "orientation": "h",
            "x": 0.0,
            "y": 1.0,
            "yanchor": "bottom",
            "font": {"size": 11},
        },
        "annotations": [
            {
                "text": summary,
                "xref": "paper",
                "yref": "paper",
                "x": 0.0,
                "y": 1.0,
                "xanchor": "left",
                "yanchor": "bottom",
                "yshift": 30,
                "showarrow": False,
                "font": {"size": 12, "color": "#333"},
            }
        ],
        "template": "plotly_white",
        "plot_bgcolor": "white",
    }
    return go.Figure(traces, layout)


def _probabilities(values, name: str) -> np.ndarray:
    array = common.as_array(values, (1,), name, "(N,) probabilities")  # (N,)
    if not np.all(np.isfinite(array)) or np.any(array < -1e-9) or np.any(array > 1 + 1e-9):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values from {np.nanmin(array):.3g} "
            f"to {np.nanmax(array):.3g}"
        )
    return np.clip(array, 0.0, 1.0)
