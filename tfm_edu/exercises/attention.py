"""Checks for chapters 1-2: softmax, scaled dot-product attention, masks, a whole MHA module.

Each `check_<thing>(fn)` runs the learner's `fn` on a few seeded inputs against the course's
reference (`tfm_edu.numpy_attention`; for chapter 2's whole module, `tfm_edu.attention` and
PyTorch's `nn.MultiheadAttention`, Vaswani et al., 2017, section 3.2.2) and returns a
`CheckResult`; the `Mistake`s below are the slips learners really make, each with the hint that
fixes it. Chapter 1's checks use NumPy only; chapter 2's imports torch when called.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tfm_edu import numpy_attention as npa
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, check_function, graded

__all__ = [
    "check_softmax",
    "check_scaled_dot_product_attention",
    "check_causal_mask",
    "check_multi_head_attention_module",
]

# ---------------------------------------------------------------- softmax


@graded
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
            "you normalise along the wrong axis: each slice along `axis` (the last one by "
            "default, i.e. each row here) must sum to 1. Use axis=axis in both the max and the "
            "sum, e.g. np.sum(e, axis=axis, keepdims=True).",
            _softmax_first_axis,
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


def _softmax_first_axis(x, axis=-1):
    return npa.softmax(x, axis=0)


def _softmax_without_exp(x, axis=-1):
    return x / np.sum(x, axis=axis, keepdims=True)


# ------------------------------------------------------ scaled dot-product attention


@graded
def check_scaled_dot_product_attention(fn) -> CheckResult:
    """Check `fn(q, k, v, mask=None) -> (out, weights)` in NumPy; mask: True = may attend."""
    rng = np.random.default_rng(2)

    def qkv(lead, t, s, d_k, d_v):
        return tuple(rng.normal(size=(*lead, n, d)) for n, d in ((t, d_k), (s, d_k), (s, d_v)))

    # The first masks leave every row something to attend to even when inverted, so a learner's
    # -1e9 and our -inf agree; only the last (causal) case has an empty row once inverted.
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


@graded
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


# --------------------------------------------------- a whole MultiHeadAttention module (torch)

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
_MODULE_SLIPS = {  # slip -> hint, for the mistakes of check_multi_head_attention_module
    "no scale": "divide the scores by sqrt(head_dim), the width of one head (d_k = D / H).",
    "d_model scale": "scale by 1 / sqrt(head_dim), not 1 / sqrt(d_model): each head's dot "
    "products sum head_dim terms, so their variance grows with head_dim, not with d_model.",
    "split without transpose": "split heads with .view(B, T, H, Dh).transpose(1, 2): "
    ".view(B, H, T, Dh) has the right shape but mixes tokens between heads.",
    "merge without transpose": "merge heads with .transpose(1, 2).reshape(B, T, D): reshaping "
    "(B, H, T, Dh) straight to (B, T, D) has the right shape but mixes tokens.",
    "query axis": "softmax over the keys (dim=-1): each query's weights must sum to 1.",
    "mask inverted": "the mask is inverted: True means 'may attend' (nn.MultiheadAttention's "
    "masks mean the opposite), so fill -inf where the mask is False: "
    "scores.masked_fill(~mask, float('-inf')).",
    "mask ignored": "the mask is ignored: fill the scores with -inf where mask is False, "
    "before the softmax.",
    "self only": "project the keys and values from the `key` and `value` arguments, not from "
    "`query`: in cross-attention they come from another sequence (S tokens, not T).",
    "value from key": "project the values from the `value` argument: v = self.v_proj(value), "
    "not self.v_proj(key).",
    "no out_proj": "finish with the output projection: return self.out_proj(merged).",
    "averaged weights": "return one attention map per head, (B, H, T, S), not their average "
    "(B, T, S) (nn.MultiheadAttention averages by default; this course keeps every head).",
}
_GRADIENT_HINT = (
    "the outputs are right but no gradient flows back through them: inside `forward`, do not "
    "use torch.no_grad(), .detach(), .data, .item() or NumPy, or the module cannot be trained."
)
_GRADIENTS = ("query", "key", "value", *(f"{p}.weight" for p in _PROJECTIONS))


@graded
def check_multi_head_attention_module(cls) -> CheckResult:
    """Check a learner's class `cls(d_model=..., num_heads=...)`: an `nn.Module` with `q_proj`,
    `k_proj`, `v_proj`, `out_proj` (each `nn.Linear(d_model, d_model)`, with bias) and
    `forward(query, key, value, mask=None) -> (out (B, T, D), weights (B, H, T, S))`.

    The check gives those four projections seeded weights and compares, in eval mode, the
    learner's outputs with `tfm_edu.attention.MultiHeadAttention` and with PyTorch's own
    `nn.MultiheadAttention` given the same weights (packed into its `in_proj_weight`, its mask
    inverted: True = blocked there, per-head weights with `average_attn_weights=False`), then
    the gradients with respect to the inputs and the projections' weights. The cases include
    cross-attention (key and value differ from the query, S != T), a padding and a causal mask.
    Building modules draws from torch's global RNG: the check restores it afterwards.

    Args:
        cls: the learner's class (not an instance).

    Returns:
        A `CheckResult`; this function never raises.
    """
    import torch

    from tfm_edu.attention import MultiHeadAttention

    name = getattr(cls, "__name__", "MultiHeadAttention")
    with torch.random.fork_rng(devices=[]):
        missing = _missing_projections(cls)
        if missing:
            return CheckResult(
                name,
                "failed",
                f"✗ {name}: the check needs {', '.join(_PROJECTIONS)} as nn.Linear(d_model, "
                "d_model) attributes, to give them the reference's weights; missing or not "
                f"nn.Linear: {', '.join(missing)}.",
            )
        cases = _module_cases()
        mistakes = [
            Mistake(hint, partial(_multi_head_with_slip, slip=slip))
            for slip, hint in _MODULE_SLIPS.items()
        ]
        learner = partial(_run_module, cls)
        settings = {"atol": 1e-5, "rtol": 1e-4, "output_names": ("out", "weights")}
        references = [
            ("tfm_edu's MultiHeadAttention", partial(_run_module, MultiHeadAttention)),
            ("nn.MultiheadAttention", _run_torch_module),
        ]
        result = check_against(name, learner, references, cases, mistakes, passed="", **settings)
        if not result.passed:
            return result
        result = check_function(
            name,
            partial(_module_gradients, cls),
            partial(_module_gradients, MultiHeadAttention),
            cases,
            [Mistake(_GRADIENT_HINT, _no_gradients)],
            atol=1e-4,
            rtol=1e-3,
            output_names=tuple(f"gradient for {g}" for g in _GRADIENTS),
        )
        if not result.passed:
            return result
        return CheckResult(
            name,
            "passed",
            f"✓ {name}: matches tfm_edu's MultiHeadAttention and torch.nn.MultiheadAttention "
            f"on {len(cases)} test cases\n  (outputs, per-head weights and gradients)",
        )


def _normal(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


def _module_cases() -> list[Case]:
    """Seeded (query, key, value, H) cases: self-attention, cross-attention (S != T), masks."""
    import torch

    rng = np.random.default_rng(6)
    setups = [  # (B, T, S, D, H, mask, self-attention?, label)
        (2, 4, 5, 12, 3, None, False, "cross-attention, S != T"),
        (1, 3, 3, 8, 2, None, True, "self-attention"),
        # the padding mask, even inverted, blocks no whole row
        (2, 3, 5, 8, 4, npa.padding_mask(np.array([3, 4]), 5)[:, None], False, "padding mask"),
        (1, 4, 4, 8, 2, npa.causal_mask(4), True, "causal mask"),
        (2, 2, 6, 16, 4, None, False, "cross-attention, S > T"),
    ]
    cases = []
    for B, T, S, D, H, mask, self_attention, label in setups:
        shapes = ((B, T, D), (B, S, D), (B, S, D))
        query, key, value = (torch.from_numpy(_normal(rng, shape)) for shape in shapes)
        if self_attention:
            key = value = query
        mask = None if mask is None else torch.from_numpy(mask)
        cases.append(Case((query, key, value, H), {"mask": mask}, label=label))
    return cases


def _missing_projections(cls) -> list[str]:
    """Projections the check cannot load; [] also when building fails (the check reports it)."""
    from torch import nn

    try:
        module = cls(d_model=8, num_heads=2)
    except Exception:
        return []
    return [p for p in _PROJECTIONS if not isinstance(getattr(module, p, None), nn.Linear)]


def _projection_weights(d_model):
    """Seeded (weight (D, D), bias (D,)) float32 tensors for q, k, v and out, in that order."""
    import torch

    rng = np.random.default_rng(d_model)
    return [
        (
            torch.from_numpy(_normal(rng, (d_model, d_model)) / np.float32(np.sqrt(d_model))),
            torch.from_numpy(_normal(rng, (d_model,)) * np.float32(0.1)),
        )
        for _ in _PROJECTIONS
    ]


def _build(cls, d_model, num_heads):
    """cls(d_model=D, num_heads=H) in eval mode, its four projections given the seeded weights."""
    import torch

    module = cls(d_model=d_model, num_heads=num_heads).eval()
    with torch.no_grad():
        for projection, (weight, bias) in zip(
            _PROJECTIONS, _projection_weights(d_model), strict=True
        ):
            getattr(module, projection).weight.copy_(weight)
            getattr(module, projection).bias.copy_(bias)
    return module


def _run_module(cls, query, key, value, num_heads, mask=None):
    """Build cls with the seeded weights and run it, without tracking gradients."""
    import torch

    module = _build(cls, query.shape[-1], num_heads)
    with torch.no_grad():
        return module(query, key, value, mask=mask)


def _run_torch_module(query, key, value, num_heads, mask=None):
    """PyTorch's `nn.MultiheadAttention` with the same seeded weights and per-head weights."""
    import torch
    from torch import nn

    from tfm_edu.attention import MultiHeadAttention
    from tfm_edu.reference import copy_attention_to_torch, to_torch_mask

    B, T, D = query.shape
    S = key.shape[1]
    theirs = nn.MultiheadAttention(D, num_heads, batch_first=True).eval()
    copy_attention_to_torch(_build(MultiHeadAttention, D, num_heads), theirs)
    blocked = None
    if mask is not None:  # theirs wants True = blocked, one (T, S) mask per (batch, head)
        blocked = to_torch_mask(mask.expand(B, num_heads, T, S).reshape(B * num_heads, T, S))
    with torch.no_grad():
        out, weights = theirs(
            query, key, value, attn_mask=blocked, need_weights=True, average_attn_weights=False
        )
    return out, weights  # (B, T, D), (B, H, T, S)


def _module_gradients(cls, query, key, value, num_heads, mask=None):
    """Gradients of a fixed weighted sum of the output, for the inputs and the projections."""
    import torch

    module = _build(cls, query.shape[-1], num_heads)
    inputs = [x.clone().requires_grad_(True) for x in (query, key, value)]
    if key is query:  # self-attention: one tensor, as the learner would pass it
        inputs[1] = inputs[2] = inputs[0]
    params = [getattr(module, p).weight for p in _PROJECTIONS]
    out = module(*inputs, mask=mask)[0]  # (B, T, D)
    direction = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)  # (B, T, D)
    leaves = [inputs[0], inputs[1], inputs[2], *params]
    if not out.requires_grad:
        return tuple(torch.zeros_like(x) for x in leaves)
    grads = torch.autograd.grad((out * direction).sum(), leaves, allow_unused=True)
    return tuple(
        torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads, strict=True)
    )


def _no_gradients(query, key, value, num_heads, mask=None):
    """What a forward under torch.no_grad() gives the gradient check: zeros everywhere."""
    import torch

    D = query.shape[-1]
    return tuple(torch.zeros_like(x) for x in (query, key, value)) + tuple(
        torch.zeros(D, D) for _ in _PROJECTIONS
    )


def _multi_head_with_slip(query, key, value, num_heads, mask=None, slip=None):
    """Multi-head attention with the seeded weights and one typical slip, for the mistakes."""
    import torch

    B, T, D = query.shape
    H, Dh = num_heads, D // num_heads
    (w_q, b_q), (w_k, b_k), (w_v, b_v), (w_o, b_o) = _projection_weights(D)
    if slip == "self only":
        key = value = query
    value_source = key if slip == "value from key" else value
    q, k, v = query @ w_q.T + b_q, key @ w_k.T + b_k, value_source @ w_v.T + b_v  # (B, T|S, D)

    def split(x):  # (B, L, D) -> (B, H, L, Dh)
        if slip == "split without transpose":
            return x.reshape(B, H, x.shape[1], Dh)
        return x.view(B, x.shape[1], H, Dh).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)  # (B, H, T, Dh), (B, H, S, Dh) x 2
    scale = {"no scale": 1.0, "d_model scale": D**-0.5}.get(slip, Dh**-0.5)
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, S)
    if mask is not None and slip != "mask ignored":
        scores = scores.masked_fill(mask if slip == "mask inverted" else ~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2 if slip == "query axis" else -1)  # (B, H, T, S)
    heads = weights @ v  # (B, H, T, Dh)
    if slip == "merge without transpose":
        merged = heads.reshape(B, T, D)  # (B, T, D), tokens mixed
    else:
        merged = heads.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
    out = merged if slip == "no out_proj" else merged @ w_o.T + b_o  # (B, T, D)
    return out, weights.mean(dim=1) if slip == "averaged weights" else weights
