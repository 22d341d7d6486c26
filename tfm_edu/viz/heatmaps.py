"""Attention drawn as heatmaps: one map, a grid of heads (and layers), and boolean masks.

Row t of an attention map is query token t; column s is key token s; the cell is how much the
query takes from that key, softmax(Q K^T / sqrt(d_k)) (Vaswani et al., 2017, eq. 1), so each row
sums to 1. The colour scale is fixed to 0..1 so that maps can be compared with each other. The
grid of all layers x heads is bertviz's "model view" (Vig, 2019) drawn as small multiples.

Every function takes arrays (NumPy or torch) plus token labels, checks that they agree, and
returns a figure: plotly (interactive: hover a cell for "query -> key, weight") or matplotlib
(static: what GitHub's notebook view and slides can show). The data never comes from here:
models extract weights, these functions only draw them.
"""

from __future__ import annotations

import math

import numpy as np

from tfm_edu.viz import _common as common
from tfm_edu.viz import _heatmaps_matplotlib as static
from tfm_edu.viz import _heatmaps_plotly as interactive

__all__ = ["attention_heatmap", "attention_grid", "mask_heatmap"]


def attention_heatmap(
    weights,
    query_labels,
    key_labels=None,
    title: str | None = None,
    backend: str = "plotly",
    ax=None,
    value_range: tuple[float, float] | None = (0.0, 1.0),
):
    """One attention map: queries down, keys across, colour 0..1.

    Args:
        weights: (T, S) array or tensor.
        query_labels: T strings (repeats such as two "the" stay separate rows).
        key_labels: S strings; None for self-attention (then S must equal T).
        title: optional figure title.
        backend: "plotly" (hover shows query, key and weight) or "matplotlib".
        ax: matplotlib only: draw into this Axes instead of a new figure.
        value_range: the colour scale's (min, max); 0..1 suits weights, so maps compare; None
            spans the data (for raw scores before the softmax).

    Returns:
        A plotly `go.Figure`, or the matplotlib `Figure` holding the map.
    """
    common.check_backend(backend)
    w = common.as_array(weights, (2,), "weights", "(T, S)")  # (T, S)
    vmin, vmax = (float(w.min()), float(w.max())) if value_range is None else value_range
    queries = common.check_labels(query_labels, w.shape[0], "query_labels", "queries (T)", w.shape)
    keys = common.key_labels_or_queries(key_labels, query_labels, w.shape[1], w.shape)
    if backend == "matplotlib":
        return static.matplotlib_map(w, queries, keys, title, ax, vmin=vmin, vmax=vmax)
    return interactive.plotly_map(w, queries, keys, title, vmin=vmin, vmax=vmax)


def attention_grid(
    weights,
    query_labels,
    key_labels=None,
    row_titles=None,
    col_titles=None,
    backend: str = "plotly",
    title: str | None = None,
):
    """Small multiples with one shared 0..1 colour scale: heads of a layer, or layers x heads.

    Args:
        weights: (R, C, T, S), e.g. layers x heads; or (H, T, S), drawn as panels wrapped into
            rows of at most 6.
        query_labels: T strings.
        key_labels: S strings; None for self-attention.
        row_titles: R strings for (R, C, T, S) (default "layer 0", ...); not used with (H, T, S).
        col_titles: C strings for (R, C, T, S) (default "head 0", ...); for (H, T, S), one title
            per panel (default "head 0", ...).
        backend: "plotly" or "matplotlib".
        title: optional figure title.

    Returns:
        A plotly `go.Figure` or a matplotlib `Figure`. Token labels are drawn when the panels
        are big enough to read them; in plotly, hovering always shows panel, tokens and weight.
    """
    common.check_backend(backend)
    w = common.as_array(weights, (3, 4), "weights", "(R, C, T, S) or (H, T, S)")
    T, S = w.shape[-2:]
    queries = common.check_labels(query_labels, T, "query_labels", "queries (T)", w.shape)
    keys = common.key_labels_or_queries(key_labels, query_labels, S, w.shape)
    panels = _grid_panels(w, row_titles, col_titles)
    if backend == "matplotlib":
        return static.matplotlib_grid(panels, queries, keys, title)
    return interactive.plotly_grid(panels, queries, keys, title)


def mask_heatmap(
    mask,
    query_labels,
    key_labels=None,
    title: str | None = None,
    backend: str = "plotly",
    ax=None,
):
    """A boolean attention mask (True = may attend) as a two-colour grid.

    Args:
        mask: (T, S) bool; an axis of size 1 is broadcast to the labels, so a padding mask
            row (1, S) draws as (T, S).
        query_labels: T strings.
        key_labels: S strings; None when keys are the queries.
        title, backend, ax: as for `attention_heatmap`.

    Returns:
        A plotly `go.Figure` or a matplotlib `Figure`.
    """
    common.check_backend(backend)
    mask = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if mask.dtype != np.bool_ or mask.ndim != 2:
        raise ValueError(
            f"mask must be a (T, S) boolean array (True = may attend), got {mask.dtype} "
            f"of shape {mask.shape}"
        )
    key_source = key_labels if key_labels is not None else query_labels
    rows = len(query_labels) if mask.shape[0] == 1 and query_labels is not None else mask.shape[0]
    cols = len(key_source) if mask.shape[1] == 1 and key_source is not None else mask.shape[1]
    mask = np.broadcast_to(mask, (rows, cols))  # (T, S)
    queries = common.check_labels(
        query_labels, mask.shape[0], "query_labels", "queries (T)", mask.shape
    )
    keys = common.key_labels_or_queries(key_labels, query_labels, mask.shape[1], mask.shape)
    if backend == "matplotlib":
        return static.matplotlib_mask(mask, queries, keys, title, ax)
    return interactive.plotly_mask(mask, queries, keys, title)


def _grid_panels(w, row_titles, col_titles):
    """[(row, col, title, (T, S) map)], the grid's shape and its row/column titles."""
    if w.ndim == 4:
        R, C = w.shape[:2]
        rows = _titles(row_titles, R, "row_titles", "layer", w.shape, "R")
        cols = _titles(col_titles, C, "col_titles", "head", w.shape, "C")
        panels = [(r, c, f"{rows[r]}, {cols[c]}", w[r, c]) for r in range(R) for c in range(C)]
        return {"panels": panels, "shape": (R, C), "rows": rows, "cols": cols}
    if row_titles is not None:
        raise ValueError(f"row_titles needs weights (R, C, T, S), got (H, T, S) = {w.shape}")
    H = w.shape[0]
    names = _titles(col_titles, H, "col_titles", "head", w.shape, "H")
    C = math.ceil(H / math.ceil(H / 6))  # 12 heads -> 2 x 6, 8 -> 2 x 4, 5 -> 1 x 5
    R = math.ceil(H / C)
    panels = [(h // C, h % C, names[h], w[h]) for h in range(H)]
    return {"panels": panels, "shape": (R, C), "rows": None, "cols": None}


def _titles(titles, count, name, default, shape, axis):
    if titles is None:
        return [f"{default} {i}" for i in range(count)]
    titles = [str(t) for t in titles]
    if len(titles) != count:
        raise ValueError(f"{name} has {len(titles)} titles but weights {shape} have {axis}={count}")
    return titles
