"""Chapter 11 in code: attention without the (T, S) matrix, one tile at a time.

The explicit path (`tfm_edu.attention.scaled_dot_product_attention`) computes every score, keeps
the (B, H, T, S) scores and weights, then multiplies by v: memory grows with T * S. Yet each query
only needs two numbers about its row of scores to normalise it: the row's maximum m (for a stable
exp) and the sum l of exp(score - m). The *online softmax* (Milakov & Gimelshein, 2018, "Online
normalizer calculation for softmax") keeps both as the scores stream past, block by block: when a
block raises the maximum from m_old to m_new, the sum so far was measured against the wrong
maximum, and multiplying it by exp(m_old - m_new) puts it right,

    m_new = max(m_old, max(block))
    l_new = l_old * exp(m_old - m_new) + sum(exp(block - m_new)).

FlashAttention (Dao et al., 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with
IO-Awareness") applies the same rescaling to the *output*: for each block of queries it walks over
the blocks of keys, adds exp(scores - m) @ v to an unnormalised accumulator (rescaled like l
whenever m grows), and divides by l once at the end. Only a (Bq, Bk) tile of scores exists at any
time; the result is exact, not an approximation. `tiled_attention` follows the loop order of
FlashAttention-2 (Dao, 2023): queries outside, keys inside, so each query block's running
statistics stay local. It is written for reading, in PyTorch: the speed of the real kernels comes
from keeping the tile in on-chip memory, which Python cannot do; what it shows is the memory.

`online_softmax_update` and `streaming_softmax` are the same idea in NumPy on one row of scores:
the reference for the chapter's "write the online-softmax update" exercise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tfm_edu.attention import _check_mask, _check_qkv

__all__ = ["online_softmax_update", "streaming_softmax", "tiled_attention"]


def online_softmax_update(running_max: float, running_sum: float, block) -> tuple[float, float]:
    """Fold one block of scores into the running maximum and normaliser of a softmax.

    Args:
        running_max: m, the largest score seen so far (-inf before the first block).
        running_sum: l, the sum of exp(score - m) over the scores seen so far (0.0 at first).
        block: 1-D array of the next scores; -inf entries (blocked keys) add nothing.

    Returns:
        (new_max, new_sum) as floats. A block of only -inf entries, or an empty one, leaves the
        state unchanged.
    """
    block = np.asarray(block, dtype=np.float64)
    if block.ndim != 1:
        raise ValueError(f"block must be a 1-D array of scores, got shape {block.shape}")
    new_max = max(running_max, float(block.max(initial=-np.inf)))
    if new_max == -np.inf:  # nothing but -inf so far: every weight is still 0, no NaN from -inf+inf
        return running_max, running_sum
    # The old sum was taken against running_max: rescale it to new_max (exp(-inf) = 0 at first).
    new_sum = running_sum * math.exp(running_max - new_max) + float(np.exp(block - new_max).sum())
    return new_max, new_sum


def streaming_softmax(scores, block_size: int) -> np.ndarray:
    """Softmax of a 1-D array from one pass over its blocks (max and normaliser), then exp(x-m)/l.

    Args:
        scores: (S,) real scores; -inf = blocked.
        block_size: how many scores arrive at a time (>= 1).

    Returns:
        (S,) float64 weights, equal to softmax(scores); all zeros when every score is -inf (a
        query with nothing to attend to, as everywhere in the course).
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"scores must be 1-D (S,), got shape {x.shape}")
    _check_block_size(block_size)
    running_max, running_sum = -np.inf, 0.0
    for start in range(0, x.shape[0], block_size):
        running_max, running_sum = online_softmax_update(
            running_max, running_sum, x[start : start + block_size]
        )
    if running_sum == 0.0:
        return np.zeros_like(x)
    return np.exp(x - running_max) / running_sum


def tiled_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, block_size: int = 128
) -> Tensor:
    """softmax(q k^T / sqrt(D)) v computed tile by tile, never holding the (T, S) scores.

    Args:
        q: (B, H, T, D) queries.
        k: (B, H, S, D) keys.
        v: (B, H, S, Dv) values.
        mask: optional bool broadcastable to (B, H, T, S), True = may attend: e.g. a causal
            (T, S) or a padding (B, 1, 1, S) mask. A tile of keys that no query of the block may
            attend to is skipped (a causal mask skips about half of them).
        block_size: rows per query block and per key block (>= 1).

    Returns:
        out: (B, H, T, Dv), equal to the explicit path's output (fully masked query rows are
        zeros). No weights: never having them is the point.
    """
    _check_inputs(q, k, v, block_size)
    B, H, T, D = q.shape
    S, Dv = k.shape[-2], v.shape[-1]
    if mask is not None:
        _check_mask(mask, (B, H, T, S))
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, H|1, T|1, S|1)
    scale = 1.0 / math.sqrt(D)  # the explicit path's: a Python float keeps q's dtype
    out = q.new_empty(B, H, T, Dv)  # (B, H, T, Dv)
    for i0 in range(0, T, block_size):
        i1 = min(i0 + block_size, T)
        q_block = q[:, :, i0:i1] * scale  # (B, H, Bq, D)
        row_mask = None if mask is None else _slice(mask, -2, i0, i1)  # (B|1, H|1, Bq|1, S|1)
        running_max = q.new_full((B, H, i1 - i0, 1), -math.inf)  # (B, H, Bq, 1) m
        running_sum = q.new_zeros(B, H, i1 - i0, 1)  # (B, H, Bq, 1) l
        acc = q.new_zeros(B, H, i1 - i0, Dv)  # (B, H, Bq, Dv): sum of exp(s - m) v, unnormalised
        for j0 in range(0, S, block_size):
            j1 = min(j0 + block_size, S)
            tile_mask = None if row_mask is None else _slice(row_mask, -1, j0, j1)
            if tile_mask is not None and not bool(tile_mask.any()):
                continue  # no query here may read these keys: skip the work
            scores = q_block @ k[:, :, j0:j1].transpose(-2, -1)  # (B, H, Bq, Bk)
            if tile_mask is not None:
                scores = torch.where(tile_mask, scores, -math.inf)  # (B, H, Bq, Bk)
            # The shift is a constant for the softmax (any value gives the same result), so no
            # gradient needs to flow through it.
            new_max = torch.maximum(running_max, scores.detach().amax(dim=-1, keepdim=True))
            # A row that has seen only blocked keys has max -inf: shift it by 0 instead, so that
            # its exp(-inf - 0) = 0 and not exp(-inf + inf) = NaN.
            shift = torch.where(new_max == -math.inf, 0.0, new_max)  # (B, H, Bq, 1)
            weights = torch.exp(scores - shift)  # (B, H, Bq, Bk), unnormalised
            rescale = torch.exp(running_max - shift)  # (B, H, Bq, 1): old sums were against m_old
            running_sum = rescale * running_sum + weights.sum(dim=-1, keepdim=True)  # (B, H, Bq, 1)
            acc = rescale * acc + weights @ v[:, :, j0:j1]  # (B, H, Bq, Dv)
            running_max = new_max  # (B, H, Bq, 1)
        # A fully masked row has l = 0 and acc = 0: divide by 1 there, giving zeros (and no NaN
        # in the gradient, which torch.where on acc / l would still carry).
        out[:, :, i0:i1] = acc / torch.where(running_sum > 0, running_sum, 1.0)  # (B, H, Bq, Dv)
    return out


def _slice(mask: Tensor, axis: int, start: int, stop: int) -> Tensor:
    """mask's [start:stop] along `axis`, unless that axis has size 1 and broadcasts."""
    if mask.shape[axis] == 1:
        return mask
    return mask.narrow(axis, start, stop - start)


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, block_size: int) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q (B, H, T, D), k (B, H, S, D) and v (B, H, S, Dv) must have 4 axes, "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    _check_qkv(q, k, v)
    if not q.shape[:2] == k.shape[:2] == v.shape[:2]:
        raise ValueError(
            "q (B, H, T, D), k (B, H, S, D) and v (B, H, S, Dv) must share B and H, "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] < 1:
        raise ValueError(f"q (B, H, T, D) needs D >= 1, got {tuple(q.shape)}")
    if not q.is_floating_point() or not q.dtype == k.dtype == v.dtype:
        raise ValueError(
            f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    _check_block_size(block_size)
