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

__all__ = ["attention_heatmap", "attention_grid", "mask_heatmap"]

_HOVER = "query <b>%{y}</b> → key <b>%{x}</b><br>weight %{z:.3f}<extra></extra>"
_GRID_WIDTH_PX = 660  # panels' share of a laptop's JupyterLab column (~900 px in all)
_MASK_COLORS = ("#e2e2e2", "#2f6db3")  # blocked, may attend


def attention_heatmap(
    weights,
    query_labels,
    key_labels=None,
    title: str | None = None,
    backend: str = "plotly",
    ax=None,
):
    """One attention map: queries down, keys across, colour 0..1.

    Args:
        weights: (T, S) array or tensor.
        query_labels: T strings (repeats such as two "the" stay separate rows).
        key_labels: S strings; None for self-attention (then S must equal T).
        title: optional figure title.
        backend: "plotly" (hover shows query, key and weight) or "matplotlib".
        ax: matplotlib only: draw into this Axes instead of a new figure.

    Returns:
        A plotly `go.Figure`, or the matplotlib `Figure` holding the map.
    """
    common.check_backend(backend)
    w = common.as_array(weights, (2,), "weights", "(T, S)")  # (T, S)
    queries = common.check_labels(query_labels, w.shape[0], "query_labels", "queries (T)", w.shape)
    keys = common.key_labels_or_queries(key_labels, query_labels, w.shape[1], w.shape)
    if backend == "matplotlib":
        return _matplotlib_map(w, queries, keys, title, ax, vmin=0.0, vmax=1.0)
    return _plotly_map(w, queries, keys, title)


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
        return _matplotlib_grid(panels, queries, keys, title)
    return _plotly_grid(panels, queries, keys, title)


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
        return _matplotlib_mask(mask, queries, keys, title, ax)
    return _plotly_mask(mask, queries, keys, title)


# --- plotly ---------------------------------------------------------------------------------


def _cell_pixels(n_rows: int, n_cols: int, span: float = 520.0) -> float:
    return float(np.clip(span / max(n_rows, n_cols), 6.0, 34.0))


def _map_layout(queries, keys, n_rows, n_cols, title, colorbar_px):
    cell = _cell_pixels(n_rows, n_cols)
    show_all = cell >= 11  # below ~11 px a label per cell overlaps: let plotly thin them
    x_room, y_room = common.label_pixels(keys), common.label_pixels(queries)
    margin = {"l": y_room + 40, "r": 20, "t": 60 if title else 24, "b": int(0.8 * x_room) + 44}
    x_cats, y_cats = common.plotly_categories(keys), common.plotly_categories(queries)
    return (
        {
            "title": {"text": title} if title else None,
            "width": int(margin["l"] + n_cols * cell + colorbar_px + margin["r"]),
            "height": int(margin["t"] + n_rows * cell + margin["b"]),
            "margin": margin,
            "xaxis": {
                "type": "category",
                "tickangle": -60,
                "title": {"text": "key"},
                "dtick": 1 if show_all else None,
                "constrain": "domain",
                **common.plotly_tick_text(x_cats),
            },
            "yaxis": {
                "type": "category",
                "autorange": "reversed",
                "title": {"text": "query"},
                "dtick": 1 if show_all else None,
                **common.plotly_tick_text(y_cats),
            },
            "plot_bgcolor": "white",
            "template": "plotly_white",
        },
        x_cats,
        y_cats,
    )


def _plotly_map(w, queries, keys, title):
    import plotly.graph_objects as go

    layout, x_cats, y_cats = _map_layout(queries, keys, *w.shape, title, colorbar_px=90)
    heatmap = go.Heatmap(
        z=np.round(w, 4).astype(np.float32),
        x=x_cats,
        y=y_cats,
        zmin=0.0,
        zmax=1.0,
        colorscale=common.ATTENTION_COLORSCALE,
        hovertemplate=_HOVER,
        colorbar={"title": {"text": "weight"}, "thickness": 12, "len": 0.9},
    )
    return go.Figure(heatmap, layout)


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


def _plotly_grid(grid, queries, keys, title):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    (R, C), T, S = grid["shape"], len(queries), len(keys)
    panel = float(np.clip(_GRID_WIDTH_PX / C, 50, 220))  # panel width in px
    panel_h = float(np.clip(panel * T / S, 40, 240))
    cell = min(panel / S, panel_h / T)
    readable = cell >= 10
    x_room = int(0.8 * common.label_pixels(keys)) + 8 if readable else 0
    titled = grid["rows"] is None  # wrapped heads: a title above every panel
    h_gap = 10 if C <= 6 else 6
    v_gap = 10 + (22 if titled else 0)  # x labels go under each column's last panel only
    margin = {
        "l": (common.label_pixels(queries) + 10) if readable else 20,
        "r": 120 if grid["rows"] else 90,
        "t": (70 if title else 40),
        "b": x_room + 16,
    }
    width = margin["l"] + C * panel + (C - 1) * h_gap + margin["r"]
    height = margin["t"] + R * panel_h + (R - 1) * v_gap + margin["b"]
    fig = make_subplots(
        rows=R,
        cols=C,
        horizontal_spacing=h_gap / (width - margin["l"] - margin["r"]) if C > 1 else 0.0,
        vertical_spacing=v_gap / (height - margin["t"] - margin["b"]) if R > 1 else 0.0,
        row_titles=grid["rows"],
        column_titles=grid["cols"],
        subplot_titles=[p[2] for p in grid["panels"]] if titled else None,
    )
    x_cats, y_cats = common.plotly_categories(keys), common.plotly_categories(queries)
    traces = [
        go.Heatmap(
            z=np.round(w, 4).astype(np.float32),
            x=x_cats,
            y=y_cats,
            coloraxis="coloraxis",
            hovertemplate=f"{name}<br>" + _HOVER,
        )
        for _, _, name, w in grid["panels"]
    ]
    fig.add_traces(
        traces, rows=[p[0] + 1 for p in grid["panels"]], cols=[p[1] + 1 for p in grid["panels"]]
    )
    fig.update_xaxes(
        type="category",
        showticklabels=False,
        tickangle=-60,
        ticks="",
        tickfont={"size": 10},
        **common.plotly_tick_text(x_cats),
    )
    fig.update_yaxes(
        type="category",
        autorange="reversed",
        showticklabels=False,
        ticks="",
        tickfont={"size": 10},
        **common.plotly_tick_text(y_cats),
    )
    if readable:
        last_row = {c: max(r for r, cc, _, _ in grid["panels"] if cc == c) for c in range(C)}
        for c, r in last_row.items():
            fig.update_xaxes(showticklabels=True, dtick=1, row=r + 1, col=c + 1)
        for r in range(R):
            fig.update_yaxes(showticklabels=True, dtick=1, row=r + 1, col=1)
    for annotation in fig.layout.annotations:
        annotation.font = {"size": 11}
    fig.update_layout(
        title={"text": title} if title else None,
        width=int(width),
        height=int(height),
        margin=margin,
        template="plotly_white",
        plot_bgcolor="white",
        coloraxis={
            "cmin": 0.0,
            "cmax": 1.0,
            "colorscale": common.ATTENTION_COLORSCALE,
            "colorbar": {
                "title": {"text": "weight"},
                "thickness": 12,
                "len": 0.8,
                "x": 1.0 + (34 if grid["rows"] else 12) / (width - margin["l"] - margin["r"]),
                "xanchor": "left",
            },
        },
    )
    return fig


def _plotly_mask(mask, queries, keys, title):
    import plotly.graph_objects as go

    layout, x_cats, y_cats = _map_layout(queries, keys, *mask.shape, title, colorbar_px=110)
    blocked, allowed = _MASK_COLORS
    heatmap = go.Heatmap(
        z=mask.astype(np.int8),
        x=x_cats,
        y=y_cats,
        zmin=0,
        zmax=1,
        xgap=1,
        ygap=1,
        text=np.where(mask, "may attend", "blocked"),
        colorscale=[[0.0, blocked], [0.5, blocked], [0.5, allowed], [1.0, allowed]],
        hovertemplate="query <b>%{y}</b> → key <b>%{x}</b>: %{text}<extra></extra>",
        colorbar={
            "tickvals": [0.25, 0.75],
            "ticktext": ["blocked", "may attend"],
            "thickness": 12,
            "len": 0.5,
        },
    )
    return go.Figure(heatmap, layout)


# --- matplotlib -----------------------------------------------------------------------------


def _draw_ticks(ax, queries, keys, show: bool = True):
    if not show:
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xticks(
        range(len(keys)),
        [common.matplotlib_label(k) for k in keys],
        rotation=60,
        ha="right",
        rotation_mode="anchor",
        fontsize=8,
    )
    ax.set_yticks(range(len(queries)), [common.matplotlib_label(q) for q in queries], fontsize=8)


def _map_axes(ax, n_rows, n_cols):
    if ax is not None:
        return ax.figure, ax
    side = float(np.clip(0.28 * max(n_rows, n_cols), 2.5, 7.0))
    fig = common.new_matplotlib_figure(side * n_cols / max(n_rows, n_cols) + 1.8, side + 1.0)
    return fig, fig.add_subplot()


def _matplotlib_map(w, queries, keys, title, ax, vmin, vmax, cmap=common.ATTENTION_COLORSCALE):
    fig, ax = _map_axes(ax, *w.shape)
    image = ax.imshow(w, vmin=vmin, vmax=vmax, cmap=cmap, aspect="equal")
    _draw_ticks(ax, queries, keys, show=max(w.shape) <= 64)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
    return fig


def _matplotlib_grid(grid, queries, keys, title):
    (R, C), T, S = grid["shape"], len(queries), len(keys)
    panel = float(np.clip(10.0 / C, 1.0, 3.0))  # inches
    fig = common.new_matplotlib_figure(C * panel + 1.2, R * panel * max(T / S, 0.4) + 0.8)
    axes = fig.subplots(R, C, squeeze=False)
    readable = panel * 72 / max(T, S) >= 9  # points per cell
    image = None
    for r, c, name, w in grid["panels"]:
        ax = axes[r, c]
        image = ax.imshow(w, vmin=0.0, vmax=1.0, cmap=common.ATTENTION_COLORSCALE)
        _draw_ticks(ax, queries, keys, show=readable)
        if not readable or c > 0:
            ax.set_yticks([])
        ax.set_title(
            name if grid["rows"] is None else (grid["cols"][c] if r == 0 else ""), fontsize=8
        )
        if grid["rows"] is not None and c == 0:
            ax.set_ylabel(grid["rows"][r], fontsize=8)
    for r in range(R):
        for c in range(C):
            if not any(p[0] == r and p[1] == c for p in grid["panels"]):
                axes[r, c].set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    if title:
        fig.suptitle(title)
    return fig


def _matplotlib_mask(mask, queries, keys, title, ax):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax = _map_axes(ax, *mask.shape)
    ax.imshow(mask.astype(float), vmin=0, vmax=1, cmap=ListedColormap(list(_MASK_COLORS)))
    _draw_ticks(ax, queries, keys, show=max(mask.shape) <= 64)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    handles = [
        Patch(color=_MASK_COLORS[1], label="may attend"),
        Patch(color=_MASK_COLORS[0], label="blocked"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig
