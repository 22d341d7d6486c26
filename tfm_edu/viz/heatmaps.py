"""Attention drawn as heatmaps: one map, a grid of heads (and layers), and boolean masks; and
`value_heatmap` for matrices that are not attention (per-head statistics, cosine similarities).

Row t of an attention map is query token t; column s is key token s; the cell is how much the
query takes from that key, softmax(Q K^T / sqrt(d_k)) (Vaswani et al., 2017, eq. 1), so each row
sums to 1. One map's colour scale is fixed to 0..1 so that maps can be compared with each other.
The grid of all layers x heads is bertviz's "model view" (Vig, 2019) drawn as small multiples;
its scale runs from 0 to the figure's largest weight, with colours stretched near 0 (square
root), so that attention spread over many tokens does not vanish into white. Every colour bar
says its range; every token keeps its tick label unless cells are too small, and then the axis
title says which tokens are labelled (hovering always shows all).

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

__all__ = ["attention_heatmap", "attention_grid", "mask_heatmap", "value_heatmap"]


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
    value_range: tuple[float, float] | None = None,
):
    """Small multiples with one shared colour scale: heads of a layer, or layers x heads.

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
        value_range: the colour scale's (min, max); None runs from 0 to the largest weight in
            the figure (rounded up to 0.05), which the colour bar's title states. Colours are
            stretched near 0 (square root), so small weights stay visible.

    Returns:
        A plotly `go.Figure` or a matplotlib `Figure`. Tick labels sit on the outer panels;
        when panels are too small for one label per token, every k-th token is labelled and
        the axis title says so; in plotly, hovering always shows panel, tokens and weight.
    """
    common.check_backend(backend)
    w = common.as_array(weights, (3, 4), "weights", "(R, C, T, S) or (H, T, S)")
    T, S = w.shape[-2:]
    queries = common.check_labels(query_labels, T, "query_labels", "queries (T)", w.shape)
    keys = common.key_labels_or_queries(key_labels, query_labels, S, w.shape)
    panels = _grid_panels(w, row_titles, col_titles)
    vmin, vmax = (0.0, common.nice_max(w)) if value_range is None else value_range
    if backend == "matplotlib":
        return static.matplotlib_grid(panels, queries, keys, title, vmin=vmin, vmax=vmax)
    colorscale = common.stretched_colorscale()
    return interactive.plotly_grid(panels, queries, keys, title, vmin, vmax, colorscale)


def value_heatmap(
    values,
    row_labels,
    col_labels,
    *,
    row_title: str,
    col_title: str,
    value_title: str,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
    diverging: bool = False,
    backend: str = "plotly",
    ax=None,
):
    """A matrix that is not an attention map (per-head statistics, similarities), labelled by
    what its rows, columns and values are.

    Args:
        values: (R, C) array or tensor.
        row_labels: R strings; col_labels: C strings.
        row_title, col_title: what a row and a column are ("layer", "head", "sentence").
        value_title: what a cell holds ("share on [CLS]", "cosine similarity"); the colour
            bar's title, with its range.
        title: optional figure title.
        value_range: the colour scale's (min, max); None spans the data (symmetric around 0
            when `diverging`).
        diverging: for signed values: blue below 0, white at 0, red above.
        backend: "plotly" (hover shows row, column and value) or "matplotlib".
        ax: matplotlib only: draw into this Axes instead of a new figure.

    Returns:
        A plotly `go.Figure`, or the matplotlib `Figure` holding the map.
    """
    common.check_backend(backend)
    v = common.as_array(values, (2,), "values", "(R, C)")  # (R, C)
    rows = common.check_labels(row_labels, v.shape[0], "row_labels", "rows (R)", v.shape)
    cols = common.check_labels(col_labels, v.shape[1], "col_labels", "columns (C)", v.shape)
    if value_range is not None:
        vmin, vmax = (float(x) for x in value_range)
    elif diverging:
        vmax = float(np.abs(v).max()) or 1.0
        vmin = -vmax
    else:
        vmin, vmax = float(v.min()), float(v.max())
    if not vmin < vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5  # a constant matrix still gets a colour bar
    cmap = common.DIVERGING_COLORSCALE if diverging else common.ATTENTION_COLORSCALE
    axes = (row_title, col_title, value_title)
    if backend == "matplotlib":
        return static.matplotlib_map(
            v, rows, cols, title, ax, vmin=vmin, vmax=vmax, cmap=cmap, axes=axes
        )
    colors = {"zmin": vmin, "zmax": vmax, "colorscale": cmap}
    if diverging:
        colors["zmid"] = 0.0
    z = np.round(v, 4).astype(np.float32)
    return interactive.plotly_matrix(z, rows, cols, title=title, axes=(*axes, False), colors=colors)


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
    H, T, S = w.shape
    names = _titles(col_titles, H, "col_titles", "head", w.shape, "H")
    R, C = _wrap(H, T, S)
    panels = [(h // C, h % C, names[h], w[h]) for h in range(H)]
    return {"panels": panels, "shape": (R, C), "rows": None, "cols": None}


def _wrap(H: int, T: int, S: int) -> tuple[int, int]:
    """Rows x columns for H panels: at most 6 across, as few rows as keep a label per token.

    12 heads of 5 tokens -> 2 x 6; 12 heads of 16 tokens -> 3 x 4 (6 across would leave ~6 px
    per token); 4 heads of 64 tokens -> 2 x 2. Among layouts at most ~1000 px tall, the first
    (widest) whose cells reach `MIN_LABEL_PX`, else the one with the largest cells.
    """
    layouts = []  # (R, C), widest first: 12 heads -> 2 x 6, 3 x 4, 4 x 3, 6 x 2, 12 x 1
    for R in range(math.ceil(H / 6), H + 1):
        C = math.ceil(H / R)
        if math.ceil(H / C) == R and (R, C) not in layouts:
            layouts.append((R, C))
    best, best_cell = layouts[0], 0.0
    for R, C in layouts:
        avail = common.NOTEBOOK_WIDTH_PX - 280 - (C - 1) * 10  # margins, colour bar, gaps
        cell = min(avail / C / S, 300.0 / max(T, S))
        if R * cell * T > 1000 and (R, C) != layouts[0]:
            continue
        if cell >= common.MIN_LABEL_PX:
            return R, C
        if cell > best_cell:
            best, best_cell = (R, C), cell
    return best


def _titles(titles, count, name, default, shape, axis):
    if titles is None:
        return [f"{default} {i}" for i in range(count)]
    titles = [str(t) for t in titles]
    if len(titles) != count:
        raise ValueError(f"{name} has {len(titles)} titles but weights {shape} have {axis}={count}")
    return titles
