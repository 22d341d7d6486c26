"""Positional encodings drawn three ways: the table, some dimensions as waves, similarity by offset.

The sinusoidal table (Vaswani et al., 2017, section 3.5) puts sin and cos of pos / base^(2i/D)
in dimensions 2i and 2i+1: low dimensions oscillate fast, high ones slowly. Its dot product
PE[m] . PE[n] = sum_i cos((m - n) w_i) depends only on the offset m - n, which
`similarity_by_offset` shows by drawing the curve from several reference positions: when they
fall on top of each other, only the offset matters. RoPE (Su et al., 2021) rotates queries and
keys so that q_m . k_n has the same property; `tfm_edu.viz.PositionalEncodingExplorer`
compares both.

Each function takes a table (N positions, D dimensions) from `tfm_edu.positional` (or any other
(N, D) array, e.g. learned embeddings) and returns a plotly or matplotlib figure.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz import _common as common

__all__ = ["encoding_heatmap", "encoding_waves", "similarity_by_offset"]


def encoding_heatmap(
    table, title: str | None = None, backend: str = "plotly", ax=None, value_name: str = "value"
):
    """The (N, D) table as an image: positions down, dimensions across, 0 is white.

    Args:
        table: (N, D) array or tensor, e.g. `sinusoidal_encoding(100, 64)`.
        title: optional title.
        backend: "plotly" (hover: position, dimension, value) or "matplotlib".
        ax: matplotlib only: draw into this Axes.
        value_name: what a cell holds, for the colour bar and the hover text.

    Returns:
        A plotly `go.Figure` or a matplotlib `Figure`.
    """
    common.check_backend(backend)
    table = common.as_array(table, (2,), "table", "(N, D)")  # (N, D)
    limit = float(np.nanmax(np.abs(table))) if table.size else 1.0
    limit = limit if limit > 0 else 1.0  # symmetric scale: +v and -v get equally strong colours
    if backend == "matplotlib":
        fig, ax = _axes(ax, 7.0, 4.0)
        image = ax.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xlabel("dimension")
        ax.set_ylabel("position")
        ax.set_title(title or "")
        fig.colorbar(image, ax=ax, label=value_name)
        return fig
    import plotly.graph_objects as go

    heatmap = go.Heatmap(
        z=np.round(table, 4),
        zmin=-limit,
        zmax=limit,
        colorscale="RdBu",
        reversescale=True,
        colorbar={"title": {"text": value_name}, "thickness": 12},
        hovertemplate="position %{y}, dimension %{x}<br>"
        + f"{value_name} %{{z:.3f}}<extra></extra>",
    )
    fig = go.Figure(heatmap)
    fig.update_yaxes(autorange="reversed", title_text="position", **_whole_ticks(table.shape[0]))
    fig.update_xaxes(title_text="dimension", **_whole_ticks(table.shape[1]))
    return _finish(fig, title, height=420)


def encoding_waves(table, dims, title: str | None = None, backend: str = "plotly", ax=None):
    """Chosen columns of the table as curves over positions.

    Args:
        table: (N, D) array or tensor.
        dims: dimension indices to draw, each in 0..D-1 (e.g. [0, 1, 10, 11]).
        title, backend, ax: as for `encoding_heatmap`.

    Returns:
        A plotly `go.Figure` (one line per dimension) or a matplotlib `Figure`.
    """
    common.check_backend(backend)
    table = common.as_array(table, (2,), "table", "(N, D)")  # (N, D)
    dims = [int(d) for d in np.atleast_1d(dims)]
    if not dims or any(d < 0 or d >= table.shape[1] for d in dims):
        raise ValueError(
            f"dims must be a non-empty list of indices in 0..{table.shape[1] - 1} for a table "
            f"of shape {table.shape} (N, D), got {dims}"
        )
    positions = np.arange(table.shape[0])  # (N,)
    if backend == "matplotlib":
        fig, ax = _axes(ax, 7.0, 3.2)
        for d in dims:
            ax.plot(positions, table[:, d], ".-", markersize=3, label=f"dimension {d}")
        ax.set_xlabel("position")
        ax.set_ylabel("value")
        ax.legend(fontsize=8, loc="upper right")
        ax.set_title(title or "")
        return fig
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Scatter(
                x=positions,
                y=np.round(table[:, d], 4),
                mode="lines+markers",  # the encoding exists at whole positions only
                marker={"size": 4},
                name=f"dimension {d}",
                hovertemplate=f"dimension {d}, position %{{x}}: %{{y:.3f}}<extra></extra>",
            )
            for d in dims
        ]
    )
    fig.update_xaxes(title_text="position", **_whole_ticks(table.shape[0]))
    fig.update_yaxes(title_text="value")
    return _finish(fig, title, height=360)


def similarity_by_offset(
    vectors,
    references=(0,),
    normalize: bool = True,
    title: str | None = None,
    backend: str = "plotly",
    ax=None,
):
    """Similarity of position m's vector with every position n, plotted against the offset n - m.

    One curve per reference position m. If the similarity depends only on the offset, the
    curves coincide where they overlap.

    Args:
        vectors: (N, D) array or tensor, one vector per position (an encoding table, or rotated
            copies of a query).
        references: reference positions m, each in 0..N-1.
        normalize: cosine similarity (True, in -1..1) or raw dot product (False).
        title, backend, ax: as for `encoding_heatmap`.

    Returns:
        A plotly `go.Figure` or a matplotlib `Figure`.
    """
    common.check_backend(backend)
    vectors = common.as_array(vectors, (2,), "vectors", "(N, D)")  # (N, D)
    N = vectors.shape[0]
    references = [int(m) for m in np.atleast_1d(references)]
    if not references or any(m < 0 or m >= N for m in references):
        raise ValueError(
            f"references must be positions in 0..{N - 1} for vectors of shape {vectors.shape} "
            f"(N, D), got {references}"
        )
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
        vectors = vectors / np.where(norms == 0, 1.0, norms)  # (N, D)
    similarity = vectors[references] @ vectors.T  # (M, N), M reference positions
    offsets = np.arange(N)[None, :] - np.array(references)[:, None]  # (M, N)
    label = "cosine similarity" if normalize else "dot product"
    if backend == "matplotlib":
        fig, ax = _axes(ax, 7.0, 3.2)
        for row, m in enumerate(references):
            style = ("-", "--", ":", "-.")[row % 4]
            ax.plot(offsets[row], similarity[row], style, label=f"from position {m}")
        ax.set_xlabel("offset n - m")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.set_title(title or "")
        return fig
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Scatter(
                x=offsets[row],
                y=np.round(similarity[row], 4),
                mode="lines",
                line={"dash": ("solid", "dash", "dot", "dashdot")[row % 4], "width": 2},
                name=f"from position {m}",
                hovertemplate=f"m = {m}, offset %{{x}}: %{{y:.3f}}<extra></extra>",
            )
            for row, m in enumerate(references)
        ]
    )
    fig.update_xaxes(title_text="offset n − m", **_whole_ticks(int(np.ptp(offsets)) + 1))
    fig.update_yaxes(title_text=label)
    return _finish(fig, title, height=360)


def _whole_ticks(count: int) -> dict:
    """Plotly axis settings for an axis of `count` whole numbers (positions, dimensions,
    offsets): on a short axis plotly would put ticks at -0.5, 0.5, ..., which do not exist.
    Long axes keep plotly's own (whole-numbered) ticks."""
    if count > 20:
        return {}
    return {"tick0": 0, "dtick": 1 if count <= 10 else 2}


def _axes(ax, width_in: float, height_in: float):
    if ax is not None:
        return ax.figure, ax
    fig = common.new_matplotlib_figure(width_in, height_in)
    return fig, fig.add_subplot()


def _finish(fig, title, height: int):
    fig.update_layout(
        title={"text": title} if title else None,
        width=760,
        height=height,
        margin={"l": 60, "r": 20, "t": 50 if title else 20, "b": 50},
        template="plotly_white",
    )
    return fig
