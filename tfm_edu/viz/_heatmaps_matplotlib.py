"""How `heatmaps` draws with matplotlib: static figures for GitHub's notebook view and slides."""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common


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


def matplotlib_map(w, queries, keys, title, ax, vmin, vmax, cmap=common.ATTENTION_COLORSCALE):
    fig, ax = _map_axes(ax, *w.shape)
    image = ax.imshow(w, vmin=vmin, vmax=vmax, cmap=cmap, aspect="equal")
    _draw_ticks(ax, queries, keys, show=max(w.shape) <= 64)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
    return fig


def matplotlib_grid(grid, queries, keys, title):
    (R, C), T, S = grid["shape"], len(queries), len(keys)
    panel = float(np.clip(8.5 / C, 0.7, 2.6))  # inches: the grid stays under ~10 in wide
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


def matplotlib_mask(mask, queries, keys, title, ax):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax = _map_axes(ax, *mask.shape)
    ax.imshow(mask.astype(float), vmin=0, vmax=1, cmap=ListedColormap(list(common.MASK_COLORS)))
    _draw_ticks(ax, queries, keys, show=max(mask.shape) <= 64)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    handles = [
        Patch(color=common.MASK_COLORS[1], label="may attend"),
        Patch(color=common.MASK_COLORS[0], label="blocked"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig
