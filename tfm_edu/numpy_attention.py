"""Chapter 1 in code: attention with nothing but NumPy.

Scaled dot-product attention (Vaswani et al., 2017, "Attention Is All You Need", eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Mask convention, shared by the whole course and by PyTorch's `scaled_dot_product_attention`: a
boolean array where True means "this query may attend to this key", broadcastable to
(..., T, S). A query row whose keys are *all* masked has nothing to attend to; we define its
weights as all zeros and its output as the zero vector (no NaN), and say so in the docstrings.

Shapes: T queries, S keys, d_k key width, d_v value width, H heads, D model width.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "softmax",
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "split_heads",
    "merge_heads",
    "multi_head_attention",
]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along `axis`, stable for large logits.

    Subtracting the maximum first leaves the result unchanged (softmax(x) = softmax(x - c)) but
    keeps `exp` from overflowing: `softmax([1000, 1001])` is `[0.269, 0.731]`, not NaN.

    Args:
        x: any real array.
        axis: the axis that sums to 1.

    Returns:
        An array of x's shape, non-negative, summing to 1 along `axis`.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("softmax needs at least one axis, got a scalar")
    shifted = x - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def scaled_dot_product_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """softmax(q k^T / sqrt(d_k)) v, returning the weights too.

    Args:
        q: queries (..., T, d_k).
        k: keys (..., S, d_k).
        v: values (..., S, d_v).
        mask: optional bool, broadcastable to (..., T, S); True = may attend.

    Returns:
        out: (..., T, d_v).
        weights: (..., T, S); each row sums to 1, except a fully masked row, which is all zeros
            (and its output row is zeros).
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    _check_qkv(q, k, v)
    d_k = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(d_k)  # (..., T, S)
    if mask is None:
        weights = softmax(scores, axis=-1)  # (..., T, S)
    else:
        mask = _check_mask(mask, scores.shape)
        weights = _masked_softmax(scores, mask)  # (..., T, S)
    return weights @ v, weights  # (..., T, d_v), (..., T, S)


def causal_mask(t: int) -> np.ndarray:
    """(t, t) bool, True on and below the diagonal: query i may attend to keys 0..i."""
    if not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"causal_mask needs a positive length, got {t!r}")
    return np.tril(np.ones((t, t), dtype=bool))


def padding_mask(lengths, t: int) -> np.ndarray:
    """(B, 1, t) bool, True where the key position is a real token (position < length).

    The middle axis of size 1 broadcasts over queries, so the result can be passed as `mask`
    for attention scores of shape (B, T, t); add an axis for heads: `mask[:, None]`.

    Args:
        lengths: (B,) true lengths, each in 0..t.
        t: padded length.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {lengths.shape}")
    if np.any(lengths < 0) or np.any(lengths > t):
        raise ValueError(f"every length must be in 0..{t}, got {lengths.tolist()}")
    return (np.arange(t)[None, :] < lengths[:, None])[:, None, :]  # (B, 1, t)


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(..., L, D) -> (..., H, L, Dh): head h owns the slice x[..., h*Dh:(h+1)*Dh].

    The last axis is cut into H pieces of Dh = D / H, then the head axis is moved in front of
    the length axis so that each head is a separate (L, Dh) sequence.
    """
    x = np.asarray(x)
    if x.ndim < 2 or not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        raise ValueError(f"need x (..., L, D) and num_heads >= 1, got {x.shape} and {num_heads!r}")
    if x.shape[-1] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide D={x.shape[-1]} of x {x.shape}")
    heads = x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)  # (..., L, H, Dh)
    return np.swapaxes(heads, -2, -3)  # (..., H, L, Dh)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(..., H, L, Dh) -> (..., L, H*Dh), the inverse of `split_heads`."""
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"x must be (..., H, L, Dh), got shape {x.shape}")
    *lead, H, L, Dh = x.shape
    return np.swapaxes(x, -2, -3).reshape(*lead, L, H * Dh)  # (..., L, D)


def multi_head_attention(
    x_q: np.ndarray,
    x_kv: np.ndarray,
    w_q: np.ndarray,
    w_k: np.ndarray,
    w_v: np.ndarray,
    w_o: np.ndarray,
    num_heads: int,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head attention: project, split into heads, attend per head, merge, project.

    Weights multiply from the right, as in the paper (Q = X W^Q). A PyTorch `nn.Linear` stores
    its weight as (out, in), so `w_q = linear.weight.T`.

    Args:
        x_q: (..., T, D) the sequence that asks (queries).
        x_kv: (..., S, D) the sequence that answers (keys and values); pass x_q for self-attention.
        w_q, w_k, w_v, w_o: (D, D) each.
        num_heads: H, must divide D; each head works in Dh = D / H dimensions.
        mask: optional bool broadcastable to (..., H, T, S) (e.g. (T, S)); True = may attend.

    Returns:
        out: (..., T, D).
        weights: (..., H, T, S), one attention map per head.
    """
    x_q, x_kv = np.asarray(x_q), np.asarray(x_kv)
    if x_q.ndim < 2 or x_kv.ndim < 2 or x_q.shape[-1] != x_kv.shape[-1]:
        raise ValueError(
            f"x_q (..., T, D) and x_kv (..., S, D) must share D, got {x_q.shape} and {x_kv.shape}"
        )
    d_model = x_q.shape[-1]
    for name, w in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v), ("w_o", w_o)):
        if np.shape(w) != (d_model, d_model):
            raise ValueError(f"{name} must be (D, D) = ({d_model}, {d_model}), got {np.shape(w)}")
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1 or d_model % num_heads:
        raise ValueError(f"num_heads must divide D={d_model}, got {num_heads!r}")
    q = split_heads(x_q @ w_q, num_heads)  # (..., H, T, Dh)
    k = split_heads(x_kv @ w_k, num_heads)  # (..., H, S, Dh)
    v = split_heads(x_kv @ w_v, num_heads)  # (..., H, S, Dh)
    heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (..., H, T, Dh), (..., H, T, S)
    return merge_heads(heads) @ w_o, weights  # (..., T, D), (..., H, T, S)


def _masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax over the allowed entries only; a row with none allowed becomes all zeros."""
    allowed = np.broadcast_to(mask, scores.shape)
    row_max = np.max(np.where(allowed, scores, -np.inf), axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # fully masked rows: any finite shift
    exp = np.where(allowed, np.exp(np.where(allowed, scores, 0.0) - row_max), 0.0)
    total = np.sum(exp, axis=-1, keepdims=True)
    return exp / np.where(total == 0, 1.0, total)


def _check_qkv(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            "q, k, v need at least 2 axes (..., length, width), "
            f"got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q (..., T, d_k) and k (..., S, d_k) must share d_k, got {q.shape} and {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k (..., S, d_k) and v (..., S, d_v) must share S, got {k.shape} and {v.shape}"
        )
    try:
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"leading (batch/head) axes of q {q.shape}, k {k.shape}, v {v.shape} do not broadcast"
        ) from None


def _check_mask(mask, scores_shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {mask.dtype}")
    try:
        shape = np.broadcast_shapes(mask.shape, scores_shape)
    except ValueError:
        shape = None
    if shape != tuple(scores_shape):
        raise ValueError(
            f"mask of shape {mask.shape} does not broadcast to the scores' shape "
            f"{tuple(scores_shape)} (..., T, S)"
        )
    return mask
