"""How `heatmaps` draws with plotly: category axes, sizes that fit a notebook, hover text."""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

_HOVER = "query <b>%{y}</b> → key <b>%{x}</b><br>weight %{z:.3f}<extra></extra>"
_GRID_WIDTH_PX = 660  # panels' share of a laptop's JupyterLab column (~900 px in all)


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


def plotly_map(w, queries, keys, title, vmin=0.0, vmax=1.0):
    import plotly.graph_objects as go

    layout, x_cats, y_cats = _map_layout(queries, keys, *w.shape, title, colorbar_px=90)
    heatmap = go.Heatmap(
        z=np.round(w, 4).astype(np.float32),
        x=x_cats,
        y=y_cats,
        zmin=vmin,
        zmax=vmax,
        colorscale=common.ATTENTION_COLORSCALE,
        hovertemplate=_HOVER,
        colorbar={"title": {"text": "weight"}, "thickness": 12, "len": 0.9},
    )
    return go.Figure(heatmap, layout)


def plotly_grid(grid, queries, keys, title):
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


def plotly_mask(mask, queries, keys, title):
    import plotly.graph_objects as go

    layout, x_cats, y_cats = _map_layout(queries, keys, *mask.shape, title, colorbar_px=110)
    blocked, allowed = common.MASK_COLORS
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
