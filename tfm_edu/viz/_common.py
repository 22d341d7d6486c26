"""Checks and small helpers shared by the views: labels, backends, sizes, plotly mime bundles."""

from __future__ import annotations

import html
import json

import numpy as np

from tfm_edu.maps import to_numpy

BACKENDS = ("plotly", "matplotlib")
ATTENTION_COLORSCALE = "Blues"  # white = 0, dark blue = 1: empty cells read as "no attention"
ZERO_WIDTH_SPACE = "\u200b"
MASK_COLORS = ("#e2e2e2", "#2f6db3")  # blocked, may attend
PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}


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
