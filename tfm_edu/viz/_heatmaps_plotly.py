"""How `heatmaps` draws with plotly: category axes, sizes that fit a notebook, hover text.

Sizes follow JupyterLab's notebook column (`NOTEBOOK_WIDTH_PX`): cells are square, as big as fit
(at most 36 px), and every token keeps its tick label while cells are at least `MIN_LABEL_PX`
apart; below that only every k-th token is labelled and the axis title says so. A figure is never
smaller than a minimum plot area, so one token does not cut the title or squash the colour bar.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

_MAX_CELL_PX = 36.0
_MIN_PLOT_W_PX, _MIN_PLOT_H_PX = 160.0, 220.0  # room for the colour bar and its ticks
_MAX_PLOT_H_PX = 720.0  # a single map taller than this scrolls past the screen
_COLORBAR_PX = 110  # the colour bar, its ticks and its (vertical) title


def hover_text(row_title: str, col_title: str, value_title: str, arrow: bool = True) -> str:
    between = " → " if arrow else ", "
    return (
        f"{row_title} <b>%{{y}}</b>{between}{col_title} <b>%{{x}}</b><br>"
        f"{value_title} %{{z:.3f}}<extra></extra>"
    )


def _colorbar(value_title: str, vmin: float, vmax: float, plot_h: float) -> dict:
    return {
        "title": {"text": f"{value_title} ({common.range_text(vmin, vmax)})", "side": "right"},
        "thickness": 12,
        "lenmode": "pixels",
        "len": float(min(0.9 * plot_h, 340.0)),
    }


def plotly_matrix(w, rows, cols, *, title, axes, colors, text=None, hover=None):
    """One (T, S) matrix. axes: (row_title, col_title, value_title, arrow in hover);
    colors: a dict of zmin, zmax, colorscale (and zmid for diverging scales) or a full colorbar."""
    import plotly.graph_objects as go

    row_title, col_title, value_title, arrow = axes
    n_rows, n_cols = w.shape
    y_room, x_room = common.label_pixels(rows), int(0.8 * common.label_pixels(cols))
    top = 30 + 22 * (title.count("<br>") + 1) if title else 30
    margin = {"l": y_room + 48, "r": 24, "t": top, "b": x_room + 52}
    avail_w = common.NOTEBOOK_WIDTH_PX - margin["l"] - margin["r"] - _COLORBAR_PX
    cell = float(min(avail_w / n_cols, _MAX_PLOT_H_PX / n_rows, _MAX_CELL_PX))
    stride_x, stride_y = common.label_stride(cell), common.label_stride(cell)
    font = float(np.clip(cell * min(stride_x, stride_y) - 2, 8, 12))
    plot_w, plot_h = max(n_cols * cell, _MIN_PLOT_W_PX), max(n_rows * cell, _MIN_PLOT_H_PX)
    width = margin["l"] + plot_w + _COLORBAR_PX + margin["r"]
    width = min(max(width, common.title_pixels(title)), common.NOTEBOOK_WIDTH_PX)
    colorbar = colors.pop("colorbar", None) or _colorbar(
        value_title, colors["zmin"], colors["zmax"], plot_h
    )
    heatmap = go.Heatmap(
        z=w,
        x=common.plotly_categories(cols),
        y=common.plotly_categories(rows),
        text=text,
        hovertemplate=hover or hover_text(row_title, col_title, value_title, arrow),
        colorbar=colorbar,
        **colors,
    )
    layout = {
        "title": {"text": title} if title else None,
        "width": int(width),
        "height": int(margin["t"] + plot_h + margin["b"]),
        "margin": margin,
        "xaxis": {
            "type": "category",
            "tickangle": -60,
            "title": {"text": common.axis_title(col_title, stride_x)},
            **common.plotly_ticks(cols, stride_x, font),
        },
        "yaxis": {
            "type": "category",
            "autorange": "reversed",
            "title": {"text": common.axis_title(row_title, stride_y)},
            **common.plotly_ticks(rows, stride_y, font),
        },
        "meta": {"label_stride": {"x": stride_x, "y": stride_y}},
        "plot_bgcolor": "white",
        "template": "plotly_white",
    }
    return go.Figure(heatmap, layout)


def plotly_map(w, queries, keys, title, vmin=0.0, vmax=1.0):
    colors = {"zmin": vmin, "zmax": vmax, "colorscale": common.ATTENTION_COLORSCALE}
    z = np.round(w, 4).astype(np.float32)
    return plotly_matrix(z, queries, keys, title=title, axes=_ATTENTION_AXES, colors=colors)


_ATTENTION_AXES = ("query", "key", "weight", True)


def plotly_grid(grid, queries, keys, title, vmin, vmax, colorscale):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    (R, C), T, S = grid["shape"], len(queries), len(keys)
    titled = grid["rows"] is None  # wrapped heads: a title above every panel
    h_gap = 10 if C <= 6 else 6
    v_gap = 10 + (22 if titled else 0)  # x labels go under each column's last panel only
    y_room, x_room = common.label_pixels(queries), int(0.8 * common.label_pixels(keys))
    margin = {
        "l": y_room + 40,  # tick labels, then the "query" title
        "r": _COLORBAR_PX + (34 if grid["rows"] else 10),
        "t": 30 + 22 * (title.count("<br>") + 1) if title else 34,
        "b": x_room + 44,  # tick labels, then the "key" title
    }
    avail = common.NOTEBOOK_WIDTH_PX - margin["l"] - margin["r"] - (C - 1) * h_gap
    cell = float(min(avail / C / S, 300.0 / max(T, S)))  # square cells, panels <= 300 px
    panel_w = max(cell * S, 40.0)
    panel_h = max(cell * T, 30.0, (_MIN_PLOT_H_PX - (R - 1) * v_gap) / R)
    stride_x, stride_y = common.label_stride(panel_w / S), common.label_stride(panel_h / T)
    font = float(np.clip(min(panel_w / S * stride_x, panel_h / T * stride_y) - 2, 7, 10))
    width = margin["l"] + C * panel_w + (C - 1) * h_gap + margin["r"]
    width = max(width, common.title_pixels(title))
    height = margin["t"] + R * panel_h + (R - 1) * v_gap + margin["b"]
    plot_w, plot_h = width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]
    fig = make_subplots(
        rows=R,
        cols=C,
        horizontal_spacing=h_gap / plot_w if C > 1 else 0.0,
        vertical_spacing=v_gap / plot_h if R > 1 else 0.0,
        row_titles=grid["rows"],
        column_titles=grid["cols"],
        subplot_titles=[p[2] for p in grid["panels"]] if titled else None,
    )
    x_cats, y_cats = common.plotly_categories(keys), common.plotly_categories(queries)
    hover = hover_text(*_ATTENTION_AXES)
    traces = [
        go.Heatmap(
            z=np.round(w, 4).astype(np.float32),
            x=x_cats,
            y=y_cats,
            coloraxis="coloraxis",
            hovertemplate=f"{name}<br>" + hover,
        )
        for _, _, name, w in grid["panels"]
    ]
    fig.add_traces(
        traces, rows=[p[0] + 1 for p in grid["panels"]], cols=[p[1] + 1 for p in grid["panels"]]
    )
    for annotation in fig.layout.annotations:
        annotation.font = {"size": 11}
    x_ticks = common.plotly_ticks(keys, stride_x, font)
    y_ticks = common.plotly_ticks(queries, stride_y, font)
    fig.update_xaxes(type="category", showticklabels=False, tickangle=-60, ticks="", **x_ticks)
    fig.update_yaxes(type="category", autorange="reversed", showticklabels=False, ticks="")
    fig.update_yaxes(**y_ticks)
    last_row = {c: max(r for r, cc, _, _ in grid["panels"] if cc == c) for c in range(C)}
    for c, r in last_row.items():  # labels on the outer panels only: the bottom and the left
        fig.update_xaxes(showticklabels=True, row=r + 1, col=c + 1)
    for r in range(R):
        fig.update_yaxes(showticklabels=True, row=r + 1, col=1)
    axis_font = {"size": 13}
    fig.add_annotation(
        text=common.axis_title("key", stride_x),
        **{"x": 0.5, "y": 0.0, "xref": "paper", "yref": "paper", "yanchor": "top"},
        yshift=-(x_room + 12),
        showarrow=False,
        font=axis_font,
    )
    fig.add_annotation(
        text=common.axis_title("query", stride_y),
        **{"x": 0.0, "y": 0.5, "xref": "paper", "yref": "paper", "xanchor": "right"},
        xshift=-(y_room + 6),
        textangle=-90,
        showarrow=False,
        font=axis_font,
    )
    fig.update_layout(
        title={"text": title} if title else None,
        width=int(width),
        height=int(height),
        margin=margin,
        meta={"label_stride": {"x": stride_x, "y": stride_y}},
        template="plotly_white",
        plot_bgcolor="white",
        coloraxis={
            "cmin": vmin,
            "cmax": vmax,
            "colorscale": colorscale,
            "colorbar": {
                **_colorbar("weight", vmin, vmax, plot_h),
                "x": 1.0 + (34 if grid["rows"] else 12) / plot_w,
                "xanchor": "left",
            },
        },
    )
    return fig


def plotly_mask(mask, queries, keys, title):
    blocked, allowed = common.MASK_COLORS
    colors = {
        "zmin": 0,
        "zmax": 1,
        "xgap": 1,
        "ygap": 1,
        "colorscale": [[0.0, blocked], [0.5, blocked], [0.5, allowed], [1.0, allowed]],
        "colorbar": {
            "tickvals": [0.25, 0.75],
            "ticktext": ["blocked", "may attend"],
            "thickness": 12,
            "lenmode": "pixels",
            "len": 120,
        },
    }
    return plotly_matrix(
        mask.astype(np.int8),
        queries,
        keys,
        title=title,
        axes=("query", "key", "mask", True),
        colors=colors,
        text=np.where(mask, "may attend", "blocked"),
        hover="query <b>%{y}</b> → key <b>%{x}</b>: %{text}<extra></extra>",
    )
