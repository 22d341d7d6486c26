"""Chapter 11 in code: what one attention call costs on paper, and reading costs off a log-log plot.

Work: attention is two matrix products, q k^T and weights @ v, each T * S * Dh multiply-adds per
head (Vaswani et al., 2017, table 1: O(n^2 d) per layer). Memory: the explicit path stores the
(T, S) scores and weights, so its memory grows like its work, with T^2; a tiled path
(FlashAttention, Dao et al., 2022; `tfm_edu.efficiency.tiled`) does the same work but holds one
(Bq, Bk) tile at a time, so its memory grows only with the output, like T. These formulas say what
to expect; `tfm_edu.efficiency.memory` measures what actually happens, and
`python -m tfm_edu.bench scaling` puts the two side by side.

A cost that grows like T^p is a straight line of slope p on log-log axes; `loglog_slope` fits it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COST_PATHS", "attention_flops", "attention_memory", "loglog_slope", "describe_slopes"]

COST_PATHS = ("explicit", "sdpa", "tiled")  # the paths attention_memory knows


def attention_flops(batch: int, heads: int, queries: int, keys: int, head_dim: int) -> int:
    """Floating-point operations of one attention call's two matrix products.

    Counted: q k^T and weights @ v, each B*H*T*S*Dh multiply-adds (values as wide as the keys,
    Dv = Dh), a multiply-add counted as 2 FLOPs: 4 * B * H * T * S * Dh in all. Not counted: the
    1/sqrt(Dh) scale (B*H*T*Dh) and the softmax (a few operations per score, B*H*T*S each), about
    1/Dh of the total; nor the work a causal mask lets a tiled kernel skip (a full count).

    Args:
        batch, heads, queries, keys, head_dim: B, H, T, S, Dh (positive ints).

    Returns:
        FLOPs, an int.
    """
    _check_sizes(batch=batch, heads=heads, queries=queries, keys=keys, head_dim=head_dim)
    return 4 * batch * heads * queries * keys * head_dim


def attention_memory(
    batch: int,
    heads: int,
    queries: int,
    keys: int,
    head_dim: int,
    *,
    path: str,
    block_size: int = 128,
    dtype_bytes: int = 4,
) -> int:
    """Bytes of the largest intermediates one attention call holds at once, plus its output.

    Every path writes the (B, H, T, Dh) output. On top of it:
    - "explicit": the scores and the weights, both (B, H, T, S), alive together while the
      weights are computed and multiplied by v;
    - "tiled": per query block, 3 (B, H, Bq, Bk) tiles (scores, scores - m, their exp), the
      scaled (B, H, Bq, Dh) queries, 3 (B, H, Bq, Dh) accumulator temporaries (old, new,
      weights @ v) and 4 (B, H, Bq, 1) running statistics, with Bq = min(block_size, T) and
      Bk = min(block_size, S);
    - "sdpa": assumed to be a fused kernel that tiles like "tiled" (PyTorch's flash-attention
      kernels on CPUs and GPUs, and the memory-efficient one, do; they choose their own tile
      sizes). If PyTorch falls back to its math kernel, the explicit formula applies instead:
      the measurement tells.

    Inputs (q, k, v, a mask) are not counted: they exist before the call.

    Args:
        batch, heads, queries, keys, head_dim: B, H, T, S, Dh (positive ints).
        path: "explicit", "sdpa" or "tiled".
        block_size: the tile's rows and columns for "tiled" and "sdpa".
        dtype_bytes: bytes per number (4 for float32).

    Returns:
        bytes, an int.
    """
    _check_sizes(
        batch=batch, heads=heads, queries=queries, keys=keys, head_dim=head_dim,
        block_size=block_size, dtype_bytes=dtype_bytes,
    )  # fmt: skip
    if path not in COST_PATHS:
        raise ValueError(f"path must be one of {COST_PATHS}, got {path!r}")
    bh = batch * heads
    output = bh * queries * head_dim  # (B, H, T, Dh)
    if path == "explicit":
        numbers = output + 2 * bh * queries * keys  # + scores and weights, (B, H, T, S) each
    else:
        rows, cols = min(block_size, queries), min(block_size, keys)
        tiles = 3 * bh * rows * cols  # (B, H, Bq, Bk) each
        block = 4 * bh * rows * head_dim + 4 * bh * rows  # (B, H, Bq, Dh) and (B, H, Bq, 1)
        numbers = output + tiles + block
    return numbers * dtype_bytes


def loglog_slope(x, y, *, min_x: float | None = None) -> float:
    """The slope p of the straight line through log(y) against log(x): y grows like x^p.

    Args:
        x: positive sizes (e.g. sequence lengths).
        y: positive costs of the same length (seconds, bytes).
        min_x: fit only the points with x >= min_x (small sizes are dominated by fixed costs).

    Returns:
        p, from a least-squares fit (`np.polyfit`, degree 1) over at least two distinct sizes.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ys.shape:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {xs.shape} and {ys.shape}")
    if min_x is not None:
        xs, ys = xs[xs >= min_x], ys[xs >= min_x]
    if np.unique(xs).size < 2:
        raise ValueError(f"need at least two distinct sizes to fit a slope, got {xs.tolist()}")
    if (xs <= 0).any() or (ys <= 0).any():
        raise ValueError(f"log-log needs positive values, got x {xs.tolist()}, y {ys.tolist()}")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def describe_slopes(time_slopes: dict[str, float], memory_slopes: dict[str, float]) -> str:
    """One line reading fitted slopes: e.g. 'explicit: time ~ T^1.9, memory ~ T^2.0; ...',
    followed by what they say, decided from the numbers (1 = linear, 2 = quadratic).

    Args:
        time_slopes: path -> slope of time against T.
        memory_slopes: path -> slope of peak memory against T (may be empty).
    """
    parts = []
    for path, slope in time_slopes.items():
        memory = memory_slopes.get(path)
        parts.append(
            f"{path}: time ~ T^{slope:.1f}"
            + ("" if memory is None else f", memory ~ T^{memory:.1f}")
        )
    line = "; ".join(parts)
    quadratic_time = [p for p, s in time_slopes.items() if s >= 1.6]
    if quadratic_time:
        line += f"\n-> time grows about quadratically for {', '.join(quadratic_time)}"
        every = len(quadratic_time) == len(time_slopes) > 1
        line += " (every exact path does the same T x S work)" if every else ""
    square = [p for p, s in memory_slopes.items() if s >= 1.6]
    linear = [p for p, s in memory_slopes.items() if s <= 1.3]
    if square:
        line += f"\n-> memory grows like T^2 for {', '.join(square)}: the (T, S) matrix is stored"
    if linear:
        line += (
            f"\n-> memory grows at most like T for {', '.join(linear)}: only the output and "
            "fixed-size tiles, never the (T, S) matrix"
        )
    return line


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
