"""How `heatmaps` draws with matplotlib: static figures for GitHub's notebook view and slides.

Figures are sized from the number of cells, so cells are about square with `aspect="auto"`: the
image then fills its axes, and the colour bar (as tall as the axes) never runs above the title.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

_MIN_LABEL_PT = 7.5  # one tick label per this many points at least


def _draw_ticks(ax, queries, keys, stride_x: int = 1, stride_y: int = 1, fontsize: float = 8):
    xs, ys = range(0, len(keys), stride_x), range(0, len(queries), stride_y)
    ax.set_xticks(
        list(xs),
        [common.matplotlib_label(keys[i]) for i in xs],
        rotation=60,
        ha="right",
        rotation_mode="anchor",
        fontsize=fontsize,
    )
    ax.set_yticks(list(ys), [common.matplotlib_label(queries[i]) for i in ys], fontsize=fontsize)


def _map_axes(ax, n_rows, n_cols, title):
    """A new figure sized for the cells (or the given axes) and the points per cell."""
    if ax is not None:
        box = ax.get_position()
        fig_w, fig_h = ax.figure.get_size_inches()
        cell_pt = 72 * min(box.width * fig_w / n_cols, box.height * fig_h / n_rows)
        return ax.figure, ax, cell_pt
    cell = float(np.clip(6.0 / max(n_rows, n_cols), 0.1, 0.45))  # inches
    plot_w, plot_h = max(n_cols * cell, 1.6), max(n_rows * cell, 1.8)
    lines = title.count("\n") + 1 if title else 0
    width = max(plot_w + 3.0, 0.09 * max((len(t) for t in (title or "").split("\n")), default=0))
    fig = common.new_matplotlib_figure(width, plot_h + 1.8 + 0.3 * lines)
    return fig, fig.add_subplot(), 72 * cell


def matplotlib_map(
    w, queries, keys, title, ax, vmin, vmax, cmap=common.ATTENTION_COLORSCALE, axes=None
):
    """One (T, S) matrix; axes = (row title, column title, value title), default attention's."""
    row_title, col_title, value_title = axes or ("query", "key", "weight")
    fig, ax, cell_pt = _map_axes(ax, *w.shape, title)
    image = ax.imshow(w, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto", interpolation="nearest")
    stride = common.label_stride(cell_pt, _MIN_LABEL_PT)
    _draw_ticks(ax, queries, keys, stride, stride, fontsize=float(np.clip(cell_pt - 2, 6, 9)))
    ax.set_xlabel(common.axis_title(col_title, stride))
    ax.set_ylabel(common.axis_title(row_title, stride))
    if title:
        ax.set_title(title, fontsize=10)
    label = f"{value_title} ({common.range_text(vmin, vmax)})"
    fig.colorbar(image, ax=ax, label=label, fraction=0.08, pad=0.03)
    return fig


def matplotlib_grid(grid, queries, keys, title, vmin=0.0, vmax=1.0):
    from matplotlib.colors import PowerNorm

    (R, C), T, S = grid["shape"], len(queries), len(keys)
    panel = float(np.clip(8.5 / C, 0.7, 2.6))  # inches: the grid stays under ~10 in wide
    panel_h = max(panel * T / S, 1.8 / R, 0.4)
    fig = common.new_matplotlib_figure(C * panel + 1.6, R * panel_h + 1.2)
    axes = fig.subplots(R, C, squeeze=False)
    cell_x, cell_y = 72 * panel / S, 72 * panel_h / T  # points per cell
    stride_x = common.label_stride(cell_x, _MIN_LABEL_PT)
    stride_y = common.label_stride(cell_y, _MIN_LABEL_PT)
    fontsize = float(np.clip(min(cell_x * stride_x, cell_y * stride_y) - 2, 5, 8))
    norm = PowerNorm(gamma=0.5, vmin=vmin, vmax=vmax)  # small weights stay visible
    image = None
    last_row = {c: max(r for r, cc, _, _ in grid["panels"] if cc == c) for c in range(C)}
    for r, c, name, w in grid["panels"]:
        ax = axes[r, c]
        image = ax.imshow(w, norm=norm, cmap=common.ATTENTION_COLORSCALE, aspect="auto")
        _draw_ticks(ax, queries, keys, stride_x, stride_y, fontsize=fontsize)
        if c > 0:
            ax.set_yticks([])
        if r != last_row[c]:
            ax.set_xticks([])
        ax.set_title(
            name if grid["rows"] is None else (grid["cols"][c] if r == 0 else ""), fontsize=8
        )
        if grid["rows"] is not None and c == 0:
            ax.set_ylabel(grid["rows"][r], fontsize=8)
    for r in range(R):
        for c in range(C):
            if not any(p[0] == r and p[1] == c for p in grid["panels"]):
                axes[r, c].set_axis_off()
    label = f"weight ({common.range_text(vmin, vmax)})"
    ticks = np.linspace(vmin, vmax, 5)  # even ticks: the square-root colours crowd PowerNorm's
    fig.colorbar(image, ax=axes, shrink=0.8, label=label, ticks=ticks)
    fig.supxlabel(common.axis_title("key", stride_x), fontsize=9)
    fig.supylabel(common.axis_title("query", stride_y), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def matplotlib_mask(mask, queries, keys, title, ax):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax, cell_pt = _map_axes(ax, *mask.shape, title)
    colors = ListedColormap(list(common.MASK_COLORS))
    ax.imshow(mask.astype(float), vmin=0, vmax=1, cmap=colors, aspect="auto")
    stride = common.label_stride(cell_pt, _MIN_LABEL_PT)
    _draw_ticks(ax, queries, keys, stride, stride, fontsize=float(np.clip(cell_pt - 2, 6, 9)))
    ax.set_xlabel(common.axis_title("key", stride))
    ax.set_ylabel(common.axis_title("query", stride))
    if title:
        ax.set_title(title, fontsize=10)
    handles = [
        Patch(color=common.MASK_COLORS[1], label="may attend"),
        Patch(color=common.MASK_COLORS[0], label="blocked"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig
