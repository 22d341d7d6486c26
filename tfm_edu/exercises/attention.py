"""Checks for chapters 1-2: softmax, scaled dot-product attention, masks, splitting heads.

Each `check_<thing>(fn)` runs the learner's `fn` on a few seeded inputs against the course's
reference (`tfm_edu.numpy_attention`, or the view/transpose of Vaswani et al., 2017, section
3.2.2 for heads) and returns a `CheckResult`; the `Mistake`s below are the slips learners really
make, each with the hint that fixes it. Chapter 1's checks use NumPy only; the heads checks
(chapter 2) import torch when called.
"""

from __future__ import annotations

import numpy as np

from tfm_edu import numpy_attention as npa
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function

__all__ = [
    "check_softmax",
    "check_scaled_dot_product_attention",
    "check_causal_mask",
    "check_split_heads",
    "check_merge_heads",
]

# ---------------------------------------------------------------- softmax


def check_softmax(fn) -> CheckResult:
    """Check `fn(x, axis=-1)`: a stable NumPy softmax along `axis`."""
    rng = np.random.default_rng(1)
    large = rng.normal(size=(2, 5)) + np.array([[1000.0], [0.0]])  # one row near 1000, one near 0
    cases = [
        Case((rng.normal(size=(4, 4)),)),  # square: a missing keepdims gives numbers, not an error
        Case((rng.normal(size=(3, 5)),), {"axis": -1}),
        Case((rng.normal(size=(5, 3)),), {"axis": 0}),
        Case((rng.normal(size=(2, 3, 4)),), {"axis": 1}),
        Case((rng.normal(size=(6,)),)),
        Case((large,), label="large logits near 1000"),
    ]
    keepdims = (
        "sum with keepdims=True: x.sum(axis=axis) drops the axis, so the division lines up the "
        "sums with the wrong entries (or fails to broadcast)."
    )
    mistakes = [
        Mistake(
            "exp(1000) overflows to inf, and inf / inf is NaN. Subtract the maximum along `axis` "
            "first: softmax(x) = softmax(x - max(x)) and the largest exponent becomes exp(0) = 1.",
            _softmax_without_max,
        ),
        Mistake(
            "you subtract the maximum of the whole array: a row far below it underflows to "
            "exp(-1000) = 0 everywhere and becomes 0 / 0. Take the maximum along `axis` "
            "(keepdims=True), one per row.",
            _softmax_global_max,
        ),
        Mistake(keepdims, _softmax_no_keepdims_sum),
        Mistake(keepdims, _softmax_no_keepdims),
        Mistake(
            "you divide by the sum of the whole array, so the entries of each slice along `axis` "
            "do not sum to 1: use np.sum(e, axis=axis, keepdims=True).",
            _softmax_sum_all,
        ),
        Mistake(
            "use the `axis` argument: with axis=0 each column must sum to 1, not each row.",
            _softmax_last_axis_only,
        ),
        Mistake(
            "exponentiate before normalising: softmax is exp(x) / sum(exp(x)), not x / sum(x) "
            "(which can be negative or divide by zero).",
            _softmax_without_exp,
        ),
    ]
    return check_function("softmax", fn, npa.softmax, cases, mistakes)


def _softmax_without_max(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_global_max(x, axis=-1):
    e = np.exp(x - np.max(x))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_no_keepdims_sum(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis)


def _softmax_no_keepdims(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis))
    return e / e.sum(axis=axis)


def _softmax_sum_all(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum()


def _softmax_last_axis_only(x, axis=-1):
    return npa.softmax(x, axis=-1)


def _softmax_without_exp(x, axis=-1):
    return x / np.sum(x, axis=axis, keepdims=True)


# ------------------------------------------------------ scaled dot-product attention


def check_scaled_dot_product_attention(fn) -> CheckResult:
    """Check `fn(q, k, v, mask=None) -> (out, weights)` in NumPy; mask: True = may attend."""
    rng = np.random.default_rng(2)

    def qkv(lead, t, s, d_k, d_v):
        return tuple(rng.normal(size=(*lead, n, d)) for n, d in ((t, d_k), (s, d_k), (s, d_v)))

    random_mask = np.array([[1, 0, 1, 1, 0], [0, 1, 0, 1, 1], [1, 1, 0, 0, 1]], dtype=bool)
    padding = npa.padding_mask(np.array([3, 4]), 5)[:, None]  # (B, 1, 1, S)
    cases = [
        Case(qkv((), 3, 4, 4, 2)),  # S == d_k, so q @ k (no transpose) runs and gives numbers
        Case(qkv((2,), 3, 6, 5, 4)),
        Case(qkv((2,), 3, 5, 4, 3), {"mask": random_mask}, label="mask (T, S)"),
        Case(qkv((2, 2), 4, 5, 6, 3), {"mask": padding}, label="padding mask (B, 1, 1, S)"),
        Case(qkv((), 4, 4, 8, 3), {"mask": npa.causal_mask(4)}, label="causal mask"),
    ]
    mistakes = [
        Mistake(
            "divide the scores by sqrt(d_k): without it, large dot products push the softmax "
            "towards one-hot weights.",
            lambda q, k, v, mask=None: _attend(q, k, v, mask, scale=1.0),
        ),
        Mistake(
            "divide by sqrt(d_k), not d_k: the scale keeps the scores' variance near 1 and the "
            "variance of a dot product of d_k unit terms is d_k.",
            lambda q, k, v, mask=None: _attend(q, k, v, mask, scale=1.0 / q.shape[-1]),
        ),
        Mistake(
            "normalise each query's row over the keys, the last axis: softmax(scores, axis=-1). "
            "Your weights sum to 1 down each column (over the queries).",
            lambda q, k, v, mask=None: _attend(q, k, v, mask, axis=-2),
        ),
        Mistake(
            "the mask is inverted: True means 'may attend', so keep the scores where mask is "
            "True and put -inf where it is False: np.where(mask, scores, -np.inf).",
            lambda q, k, v, mask=None: _attend(q, k, v, None if mask is None else ~mask),
        ),
        Mistake(
            "the mask is ignored: set the scores to -inf where mask is False, before the softmax.",
            lambda q, k, v, mask=None: _attend(q, k, v, None),
        ),
        Mistake(
            "mask the scores before the softmax: zeroing weights afterwards leaves rows that no "
            "longer sum to 1.",
            _attention_mask_after_softmax,
        ),
        Mistake(
            "multiplying the scores by the mask makes blocked scores 0, and exp(0) = 1 still gets "
            "weight: put -inf there instead, np.where(mask, scores, -np.inf).",
            _attention_mask_multiplied,
        ),
        Mistake(
            "the mask only broadcasts to the scores' shape, so boolean indexing scores[~mask] "
            "fails: use np.where(mask, scores, -np.inf), which broadcasts.",
            _attention_mask_indexing,
        ),
        Mistake(
            "transpose the keys: scores = q @ k^T, i.e. q @ np.swapaxes(k, -1, -2), so that "
            "scores has shape (..., T, S).",
            _attention_no_transpose,
        ),
        Mistake(
            "k.T reverses *all* axes of a batched array: transpose only the last two, "
            "np.swapaxes(k, -1, -2).",
            _attention_full_transpose,
        ),
        Mistake(
            "return (out, weights) in that order.",
            lambda q, k, v, mask=None: npa.scaled_dot_product_attention(q, k, v, mask)[::-1],
        ),
    ]
    return check_function(
        "scaled_dot_product_attention",
        fn,
        npa.scaled_dot_product_attention,
        cases,
        mistakes,
        output_names=("out", "weights"),
    )


def _attend(q, k, v, mask, scale=None, axis=-1):
    """A configurable attention for the mistakes; scale defaults to 1/sqrt(d_k)."""
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ np.swapaxes(k, -1, -2) * scale  # (..., T, S)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)  # (..., T, S)
    weights = npa.softmax(scores, axis=axis)  # (..., T, S)
    return weights @ v, weights


def _attention_mask_after_softmax(q, k, v, mask=None):
    weights = npa.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))  # (..., T, S)
    weights = weights if mask is None else weights * mask
    return weights @ v, weights


def _attention_mask_multiplied(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., T, S)
    weights = npa.softmax(scores if mask is None else scores * mask)
    return weights @ v, weights


def _attention_mask_indexing(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., T, S)
    if mask is not None:
        scores[~mask] = -np.inf
    weights = npa.softmax(scores)
    return weights @ v, weights


def _attention_no_transpose(q, k, v, mask=None):
    weights = npa.softmax(q @ k / np.sqrt(q.shape[-1]))
    return weights @ v, weights


def _attention_full_transpose(q, k, v, mask=None):
    scores = q @ k.T / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = npa.softmax(scores)
    return weights @ v, weights


# ------------------------------------------------------------------ causal mask


def check_causal_mask(fn) -> CheckResult:
    """Check `fn(t) -> (t, t)` bool, True where query i may attend to key j (j <= i)."""
    cases = [Case((4,)), Case((1,)), Case((3,)), Case((6,))]
    mistakes = [
        Mistake(
            "your mask lets each token see the future: query i (row) may attend to keys j <= i, "
            "on and *below* the diagonal: np.tril, not np.triu.",
            lambda t: np.triu(np.ones((t, t), dtype=bool)),
        ),
        Mistake(
            "you marked the *blocked* positions (nn.MultiheadAttention's convention). In this "
            "course True means 'may attend': np.tril(np.ones((t, t), dtype=bool)).",
            lambda t: np.triu(np.ones((t, t), dtype=bool), k=1),
        ),
        Mistake(
            "a token may attend to itself: keep the diagonal (np.tril with k=0, the default).",
            lambda t: np.tril(np.ones((t, t), dtype=bool), k=-1),
        ),
        Mistake(
            "the values are right but attention masks are boolean: "
            "np.tril(np.ones((t, t), dtype=bool)).",
            lambda t: np.tril(np.ones((t, t))),
        ),
    ]
    return check_function("causal_mask", fn, npa.causal_mask, cases, mistakes)


# ------------------------------------------------------------ splitting heads (torch)


def _split_heads(x, num_heads):
    """(B, T, D) -> (B, H, T, Dh): head h owns the slice x[..., h*Dh:(h+1)*Dh]."""
    B, T, D = x.shape
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, H, T, Dh)


def _merge_heads(x):
    """(B, H, T, Dh) -> (B, T, H*Dh), the inverse of `_split_heads`."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, D)


def _tensors(shapes, seed):
    """Seeded float32 tensors of the given shapes (NumPy's generator, so every run agrees)."""
    import torch  # chapter 2 onwards: chapter 1 never pays for importing torch

    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.normal(size=shape).astype(np.float32)) for shape in shapes]


def check_split_heads(fn) -> CheckResult:
    """Check `fn(x, num_heads)`: torch (B, T, D) -> (B, H, T, Dh) with Dh = D / H."""
    # (B, T, D) and H, with H > 1 and T != H so that wrong layouts cannot coincide.
    setups = [((2, 5, 12), 3), ((1, 4, 8), 2), ((3, 2, 12), 4), ((2, 6, 8), 4)]
    tensors = _tensors([shape for shape, _ in setups], seed=3)
    cases = [Case((x, h)) for x, (_, h) in zip(tensors, setups, strict=True)]
    mistakes = [
        Mistake(
            "right shape, wrong content: x.view(B, H, T, Dh) cuts the memory of (T, D) into H "
            "blocks of T*Dh numbers, mixing tokens. Split the last axis first, "
            "x.view(B, T, H, Dh), then swap the T and H axes with .transpose(1, 2).",
            lambda x, num_heads: x.reshape(x.shape[0], num_heads, x.shape[1], -1),
        ),
        Mistake(
            "head h must own the contiguous slice x[..., h*Dh:(h+1)*Dh]: view the last axis as "
            "(H, Dh), not (Dh, H), i.e. x.view(B, T, H, Dh).transpose(1, 2).",
            lambda x, num_heads: x.reshape(*x.shape[:2], -1, num_heads).permute(0, 3, 1, 2),
        ),
        Mistake(
            "after x.view(B, T, H, Dh), swap the T and H axes: .transpose(1, 2) gives "
            "(B, H, T, Dh).",
            lambda x, num_heads: x.reshape(*x.shape[:2], num_heads, -1),
        ),
        Mistake(
            "you swapped the wrong axes: after x.view(B, T, H, Dh), .transpose(1, 2) swaps T "
            "and H to give (B, H, T, Dh).",
            lambda x, num_heads: x.reshape(*x.shape[:2], num_heads, -1).transpose(2, 3),
        ),
    ]
    return check_function("split_heads", fn, _split_heads, cases, mistakes)


def check_merge_heads(fn) -> CheckResult:
    """Check `fn(x)`: torch (B, H, T, Dh) -> (B, T, H*Dh), undoing `split_heads`."""
    shapes = [(2, 3, 5, 4), (1, 2, 4, 3), (3, 4, 2, 3), (2, 2, 6, 5)]  # (B, H, T, Dh), H, T > 1
    cases = [Case((x,)) for x in _tensors(shapes, seed=4)]
    mistakes = [
        Mistake(
            "right shape, wrong content: reshaping (B, H, T, Dh) straight to (B, T, D) mixes "
            "tokens. Bring T next to B first: x.transpose(1, 2).reshape(B, T, H * Dh).",
            lambda x: x.reshape(x.shape[0], x.shape[2], -1),
        ),
        Mistake(
            "after .transpose(1, 2) the tensor is no longer contiguous in memory, so .view "
            "cannot flatten it: use .reshape(B, T, H * Dh), or .contiguous().view(...).",
            lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1),
        ),
        Mistake(
            "head h's Dh values must land in the slice [h*Dh:(h+1)*Dh]: flatten (H, Dh) in that "
            "order, x.transpose(1, 2).reshape(B, T, H * Dh), not (Dh, H).",
            lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
        ),
        Mistake(
            "then flatten the last two axes: x.transpose(1, 2) is (B, T, H, Dh); "
            ".reshape(B, T, H * Dh) gives (B, T, D).",
            lambda x: x.transpose(1, 2),
        ),
    ]
    return check_function("merge_heads", fn, _merge_heads, cases, mistakes)
