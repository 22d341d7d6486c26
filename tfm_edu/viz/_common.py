"""Checks and small helpers shared by the views: labels, backends, sizes, plotly mime bundles."""

from __future__ import annotations

import html
import json
import math

import numpy as np

from tfm_edu.maps import to_numpy

BACKENDS = ("plotly", "matplotlib")
ATTENTION_COLORSCALE = "Blues"  # white = 0, dark blue = 1: empty cells read as "no attention"
ZERO_WIDTH_SPACE = "\u200b"
MASK_COLORS = ("#e2e2e2", "#2f6db3")  # blocked, may attend
PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}
DIVERGING_COLORSCALE = "RdBu_r"  # blue < 0 < red, white at 0: for signed values (cosines)
NOTEBOOK_WIDTH_PX = 950  # a JupyterLab notebook column on a laptop (1400 px window)
MIN_LABEL_PX = 9  # one tick label per this many pixels at least: closer labels overlap


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def as_array(x, ndim: tuple[int, ...], name: str, shape_names: str) -> np.ndarray:
    """float64 NumPy from an array or tensor, with one of the allowed numbers of axes."""
    array = to_numpy(x, name)
    if array.ndim not in ndim:
        raise ValueError(f"{name} must be {shape_names}, got shape {array.shape}")
    return array


def check_labels(labels, count: int, name: str, axis: str, shape: tuple[int, ...]) -> list[str]:
    """One string per row/column, or ValueError naming both counts and the shape."""
    if labels is None or isinstance(labels, str):
        raise ValueError(f"{name} must be a list of {count} strings, got {labels!r}")
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(
            f"{name} has {len(labels)} labels but the weights of shape {tuple(shape)} have "
            f"{count} {axis}"
        )
    return labels


def key_labels_or_queries(key_labels, query_labels, count: int, shape: tuple[int, ...]):
    """Key labels default to the query labels (self-attention) when the map is square."""
    if key_labels is not None:
        return check_labels(key_labels, count, "key_labels", "keys (S)", shape)
    if query_labels is not None and not isinstance(query_labels, str):
        if len(query_labels) != count:
            raise ValueError(
                f"key_labels is None, so the {len(query_labels)} query_labels label the keys "
                f"too (self-attention), but the weights of shape {tuple(shape)} have {count} "
                "keys (S): pass key_labels"
            )
    return check_labels(query_labels, count, "query_labels", "keys (S)", shape)


def plotly_categories(labels: list[str]) -> list[str]:
    """Distinct plotly category names that *look* like the labels.

    Plotly merges equal category names, so a sentence with "the" twice would lose a row. The
    k-th repeat of a label gets k zero-width spaces appended: invisible on the axis and in the
    hover text, but distinct. '<', '>' and '&' are escaped because plotly reads labels as HTML
    ("<s>" would vanish).
    """
    seen: dict[str, int] = {}
    categories = []
    for label in labels:
        shown = html.escape(label, quote=False) if label.strip() else repr(label)
        repeat = seen.get(shown, 0)
        seen[shown] = repeat + 1
        categories.append(shown + ZERO_WIDTH_SPACE * repeat)
    return categories


def short(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def plotly_tick_text(categories: list[str], limit: int = 14) -> dict:
    """Tick settings for a category axis, shortening long labels (the hover keeps them whole)."""
    if all(len(c.rstrip(ZERO_WIDTH_SPACE)) <= limit for c in categories):
        return {}
    return {"tickvals": categories, "ticktext": [short(c, limit) for c in categories]}


def label_stride(cell_px: float, min_px: float = MIN_LABEL_PX) -> int:
    """Label every k-th row/column so that labels stay `min_px` apart: 1 = every one."""
    return max(1, math.ceil(min_px / max(cell_px, 1e-6) - 1e-9))


def thinning_note(stride: int, what: str = "token") -> str:
    """'' for stride 1, else e.g. 'every 2nd token labelled; hover for all' (for axis titles)."""
    if stride <= 1:
        return ""
    suffix = (
        "th" if 11 <= stride % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(stride % 10, "th")
    )
    return f"every {stride}{suffix} {what} labelled; hover for all"


def axis_title(name: str, stride: int, what: str = "token") -> str:
    """'key', or 'key (every 2nd token labelled; hover for all)' when labels are thinned."""
    note = thinning_note(stride, what)
    return f"{name} ({note})" if note else name


def plotly_ticks(labels: list[str], stride: int = 1, font_px: float = 11) -> dict:
    """Explicit ticks for a category axis: every `stride`-th label, shortened (hover has all).

    The tick values are the axis categories (`plotly_categories(labels)`), so a test or a
    browser can read each row's label from the layout: `tickvals` / `ticktext`.
    """
    categories = plotly_categories(labels)
    shown = range(0, len(labels), max(1, stride))
    return {
        "tickmode": "array",
        "tickvals": [categories[i] for i in shown],
        "ticktext": [plotly_categories([short(labels[i])])[0] for i in shown],
        "tickfont": {"size": int(round(font_px))},
    }


def range_text(vmin: float, vmax: float) -> str:
    """'0 to 1', '-1 to 1', '0 to 0.45': the colour bar's range, said in words."""
    return f"{vmin:.3g} to {vmax:.3g}"


def title_pixels(title: str | None, font_px: float = 16) -> int:
    """Rough width of a (possibly multi-line) figure title in pixels, with some room."""
    if not title:
        return 0
    longest = max(len(line) for line in title.replace("<br>", "\n").split("\n"))
    return int(0.58 * font_px * longest) + 60


def stretched_colorscale(name: str = ATTENTION_COLORSCALE, steps: int = 21) -> list:
    """A plotly colour scale whose colours change fastest near 0 (colour = scale(sqrt(value))).

    Attention spread over 16 or 64 tokens gives weights of 0.02-0.1, which a linear white-to-blue
    scale draws as white; the square root shows them pale blue, while the colour bar still reads
    in weights. Matplotlib's equivalent is `PowerNorm(gamma=0.5)`.
    """
    from plotly.colors import sample_colorscale

    positions = [i / (steps - 1) for i in range(steps)]
    colors = sample_colorscale(name, [math.sqrt(p) for p in positions])
    return [[p, c] for p, c in zip(positions, colors, strict=True)]


def nice_max(values, step: float = 0.05) -> float:
    """The data's maximum rounded up to a multiple of `step` (at least `step`, at most 1)."""
    top = float(np.max(values)) if np.size(values) else 1.0
    return float(min(max(math.ceil(top / step - 1e-9) * step, step), 1.0))


def matplotlib_label(label: str, limit: int = 14) -> str:
    """'$' would start mathtext in matplotlib."""
    return short(label if label.strip() else repr(label), limit).replace("$", r"\$")


def label_pixels(labels: list[str], limit: int = 14) -> int:
    """Rough width in pixels of the longest label at plotly's 11-12 px tick font."""
    longest = max((min(len(label), limit) for label in labels), default=1)
    return 7 * longest + 8


def new_matplotlib_figure(width_in: float, height_in: float):
    """A figure not registered with pyplot, so a notebook shows it once (as the cell's value)."""
    from matplotlib.figure import Figure

    _ensure_notebook_png(Figure)
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _ensure_notebook_png(figure_type) -> None:
    """Make Jupyter draw a bare Figure as a PNG even before pyplot has picked its backend.

    IPython registers its Figure-to-PNG formatter only when the inline backend starts, which
    (matplotlib >= 3.9) happens on pyplot's first figure; until then a Figure shows as text.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(figure_type)
    except KeyError:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})


def plotly_mimebundle(figure) -> dict:
    """The JupyterLab plotly mime bundle of a figure, built without asking for a renderer.

    Widgets put this into an `ipywidgets.Output`, which works the same with or without a running
    kernel (tests) and never needs a CDN: JupyterLab's plotly extension draws it offline.
    """
    figure_dict = json.loads(figure.to_json())  # NumPy arrays become plotly's base64 arrays
    return {
        "application/vnd.plotly.v1+json": {
            "data": figure_dict.get("data", []),
            "layout": figure_dict.get("layout", {}),
            "config": PLOTLY_CONFIG,
        },
        "text/plain": "(a plotly figure: open this notebook in JupyterLab to see it)",
    }
