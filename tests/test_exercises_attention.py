"""Chapter 1-2 checks: accept correct code, reject the slips learners make with the right hint.

The wrong implementations here are written the way a learner would write them, independently
of the `Mistake`s inside the checks, so a test fails if a hint stops firing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from einops import rearrange
from exercise_helpers import assert_hint, stub
from torch import nn

from tfm_edu import numpy_attention as npa
from tfm_edu.attention import MultiHeadAttention as PackageMultiHeadAttention
from tfm_edu.exercises.attention import (
    check_causal_mask,
    check_multi_head_attention_module,
    check_scaled_dot_product_attention,
    check_softmax,
)

# ---------------------------------------------------------------- softmax


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_naive(x, axis=-1):
    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)


def softmax_global_max(x, axis=-1):
    e = np.exp(x - x.max())
    return e / e.sum(axis=axis, keepdims=True)


def softmax_no_keepdims(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis)


def softmax_sum_all(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e)


def softmax_rows_only(x, axis=-1):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_columns(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=0, keepdims=True)  # the slip notebook 00 shows


def softmax_no_exp(x, axis=-1):
    return x / x.sum(axis=axis, keepdims=True)


def test_softmax_accepts_correct_code():
    assert check_softmax(softmax).passed
    assert check_softmax(npa.softmax).passed
    assert check_softmax(lambda x, axis=-1: torch.softmax(torch.from_numpy(x), axis).numpy())


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (softmax_naive, "exp(1000) overflows to inf"),
        (softmax_global_max, "you subtract the maximum of the whole array"),
        (softmax_no_keepdims, "sum with keepdims=True"),
        (softmax_sum_all, "you divide by the sum of the whole array"),
        (softmax_rows_only, "use the `axis` argument"),
        (softmax_columns, "you normalise along the wrong axis"),
        (softmax_no_exp, "exponentiate before normalising"),
    ],
)
def test_softmax_rejects_typical_mistakes(wrong, hint):
    assert_hint(check_softmax(wrong), hint)


def test_softmax_nan_is_reported_on_the_large_logits():
    message = check_softmax(softmax_naive).message
    assert "your output contains NaN on case 6 of 6 (large logits near 1000: x (2, 5))" in message


def test_softmax_stub_is_not_done():
    assert check_softmax(stub).status == "not done"


# ------------------------------------------------------ scaled dot-product attention


def attention(q, k, v, mask=None, scale=None, fill=-np.inf, axis=-1):
    scores = q @ np.swapaxes(k, -1, -2) / (np.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = np.where(mask, scores, fill)
    weights = softmax(scores, axis=axis)
    return weights @ v, weights


def attention_no_scale(q, k, v, mask=None):
    return attention(q, k, v, mask, scale=1.0)


def attention_by_d_k(q, k, v, mask=None):
    return attention(q, k, v, mask, scale=q.shape[-1])


def attention_query_axis(q, k, v, mask=None):
    return attention(q, k, v, mask, axis=-2)


def attention_inverted_mask(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask * -1e9  # treats True as blocked
    weights = softmax(scores)
    return weights @ v, weights


def attention_ignores_mask(q, k, v, mask=None):
    return attention(q, k, v)


def attention_masks_weights(q, k, v, mask=None):
    weights = softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))
    if mask is not None:
        weights = np.where(mask, weights, 0.0)
    return weights @ v, weights


def attention_multiplies_mask(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores * mask
    weights = softmax(scores)
    return weights @ v, weights


def attention_boolean_index(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores[mask == False] = -np.inf  # noqa: E712 -- the way learners write it
    weights = softmax(scores)
    return weights @ v, weights


def attention_no_transpose(q, k, v, mask=None):
    weights = softmax(q @ k / np.sqrt(q.shape[-1]))
    return weights @ v, weights


def attention_dot_T(q, k, v, mask=None):
    scores = np.matmul(q, k.T) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = softmax(scores)
    return weights @ v, weights


def attention_swapped_outputs(q, k, v, mask=None):
    out, weights = attention(q, k, v, mask)
    return weights, out


def test_attention_accepts_correct_code():
    assert check_scaled_dot_product_attention(attention).passed
    assert check_scaled_dot_product_attention(npa.scaled_dot_product_attention).passed
    # -1e9 instead of -inf is fine: no check case masks a whole row
    assert check_scaled_dot_product_attention(
        lambda q, k, v, mask=None: attention(q, k, v, mask, fill=-1e9)
    ).passed


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (attention_no_scale, "divide the scores by sqrt(d_k)"),
        (attention_by_d_k, "divide by sqrt(d_k), not d_k"),
        (attention_query_axis, "normalise each query's row over the keys"),
        (attention_inverted_mask, "the mask is inverted"),
        (attention_ignores_mask, "the mask is ignored"),
        (attention_masks_weights, "mask the scores before the softmax"),
        (attention_multiplies_mask, "multiplying the scores by the mask"),
        (attention_boolean_index, "boolean indexing scores[~mask] fails"),
        (attention_no_transpose, "transpose the keys"),
        (attention_dot_T, "k.T reverses *all* axes"),
        (attention_swapped_outputs, "return (out, weights) in that order"),
    ],
)
def test_attention_rejects_typical_mistakes(wrong, hint):
    assert_hint(check_scaled_dot_product_attention(wrong), hint)


def test_attention_stub_and_unfinished_softmax():
    assert check_scaled_dot_product_attention(stub).status == "not done"

    def my_softmax(x, axis=-1):
        raise NotImplementedError

    def scaled_dot_product_attention(q, k, v, mask=None):
        weights = my_softmax(q @ np.swapaxes(k, -1, -2))
        return weights @ v, weights

    result = check_scaled_dot_product_attention(scaled_dot_product_attention)
    assert result.status == "not done" and "calls `my_softmax`" in result.message


# ------------------------------------------------------------------ causal mask


def test_causal_mask_accepts_correct_code():
    assert check_causal_mask(npa.causal_mask).passed
    assert check_causal_mask(lambda t: np.arange(t)[:, None] >= np.arange(t)[None, :]).passed
    assert check_causal_mask(lambda t: ~np.triu(np.ones((t, t), dtype=bool), k=1)).passed


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda t: np.arange(t)[:, None] <= np.arange(t)[None, :], "see the future"),
        (lambda t: np.triu(np.ones((t, t)), 1).astype(bool), "you marked the *blocked*"),
        (lambda t: np.arange(t)[:, None] > np.arange(t)[None, :], "attend to itself"),
        (lambda t: np.tril(np.ones((t, t))), "attention masks are boolean"),
    ],
)
def test_causal_mask_rejects_typical_mistakes(wrong, hint):
    assert_hint(check_causal_mask(wrong), hint)


def test_causal_mask_other_dtypes_and_stub():
    result = check_causal_mask(lambda t: np.tril(np.ones((t, t), dtype=int)))
    assert "expected a bool array, got dtype int64" in result.message
    assert check_causal_mask(stub).status == "not done"


# --------------------------------------------------- a whole MultiHeadAttention module


class MyMultiHeadAttention(nn.Module):
    """A learner's module, as chapter 2's "Your turn" asks; `slip` switches on one mistake."""

    slip = None

    def __init__(self, *, d_model, num_heads):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        if self.slip == "detached":
            with torch.no_grad():
                return self.attend(query, key, value, mask)
        return self.attend(query, key, value, mask)

    def attend(self, query, key, value, mask):
        B, T, D = query.shape
        H, Dh, slip = self.num_heads, self.head_dim, self.slip
        if slip == "self only":
            key = value = query

        def split(x):
            if slip == "split view":
                return x.view(B, H, x.shape[1], Dh)
            return x.view(B, x.shape[1], H, Dh).transpose(1, 2)

        q = split(self.q_proj(query))
        k = split(self.k_proj(key))
        v = split(self.v_proj(key if slip == "value from key" else value))
        scores = q @ k.transpose(-2, -1)
        if slip != "no scale":
            scores = scores / math.sqrt(D if slip == "d_model scale" else Dh)
        if mask is not None and slip != "mask ignored":
            scores = scores.masked_fill(mask if slip == "mask inverted" else mask == 0, -1e9)
        weights = scores.softmax(dim=-2 if slip == "query axis" else -1)
        heads = weights @ v
        if slip == "merge reshape":
            merged = heads.reshape(B, T, D)
        else:
            merged = heads.transpose(1, 2).reshape(B, T, D)
        out = merged if slip == "no out_proj" else self.out_proj(merged)
        return out, weights.mean(dim=1) if slip == "averaged" else weights


class EinopsAttention(nn.Module):
    """Another correct learner: einops for the heads, torch.where for the mask."""

    def __init__(self, *, d_model, num_heads):
        super().__init__()
        self.h = num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nn.Linear(d_model, d_model) for _ in range(4)
        )

    def forward(self, query, key, value, mask=None):
        q, k, v = (
            rearrange(proj(x), "b t (h d) -> b h t d", h=self.h)
            for proj, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value))
        )
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = torch.where(mask, scores, torch.tensor(float("-inf")))
        weights = scores.softmax(-1)
        return self.out_proj(rearrange(weights @ v, "b h t d -> b t (h d)")), weights


def with_slip(slip):
    return type("MyMultiHeadAttention", (MyMultiHeadAttention,), {"slip": slip})


def test_module_check_accepts_correct_modules():
    for cls in (MyMultiHeadAttention, EinopsAttention, PackageMultiHeadAttention):
        result = check_multi_head_attention_module(cls)
        assert result.passed, result.message
    assert "torch.nn.MultiheadAttention" in result.message


def test_module_check_references_agree():
    """The check's two references, ours and PyTorch's nn.MultiheadAttention, agree on its cases."""
    from tfm_edu.exercises.attention import _module_cases, _run_module, _run_torch_module

    cases = _module_cases()
    assert any(case.args[1].shape[1] != case.args[0].shape[1] for case in cases)  # S != T
    assert any(case.args[1] is not case.args[2] for case in cases)  # key != value
    for case in cases:
        ours = _run_module(PackageMultiHeadAttention, *case.args, **case.kwargs)
        theirs = _run_torch_module(*case.args, **case.kwargs)
        (B, T, _), S, H = case.args[0].shape, case.args[1].shape[1], case.args[3]
        assert theirs[1].shape == ours[1].shape == (B, H, T, S)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("slip", "hint"),
    [
        ("no scale", "divide the scores by sqrt(head_dim)"),
        ("d_model scale", "not 1 / sqrt(d_model)"),
        ("split view", ".view(B, H, T, Dh) has the right shape but mixes tokens"),
        ("merge reshape", "merge heads with .transpose(1, 2).reshape(B, T, D)"),
        ("query axis", "softmax over the keys"),
        ("mask inverted", "the mask is inverted"),
        ("mask ignored", "the mask is ignored"),
        ("self only", "project the keys and values from the `key` and `value`"),
        ("value from key", "not self.v_proj(key)"),
        ("no out_proj", "finish with the output projection"),
        ("averaged", "return one attention map per head, (B, H, T, S), not their average"),
        ("detached", "no gradient flows back"),
    ],
)
def test_module_check_rejects_typical_mistakes(slip, hint):
    assert_hint(check_multi_head_attention_module(with_slip(slip)), hint)


def test_module_check_not_done_and_missing_projections():
    class MyMultiHeadAttention(nn.Module):  # the notebook's stub
        def __init__(self, *, d_model, num_heads):
            super().__init__()
            self.num_heads = num_heads
            self.q_proj = nn.Linear(d_model, d_model)
            self.k_proj = nn.Linear(d_model, d_model)
            self.v_proj = nn.Linear(d_model, d_model)
            self.out_proj = nn.Linear(d_model, d_model)

        def forward(self, query, key, value, mask=None):
            raise NotImplementedError

    result = check_multi_head_attention_module(MyMultiHeadAttention)
    assert result.status == "not done"
    assert "`MyMultiHeadAttention.forward` still raises NotImplementedError" in result.message

    class Unbuilt(nn.Module):
        def __init__(self, *, d_model, num_heads):
            raise NotImplementedError

    assert check_multi_head_attention_module(Unbuilt).status == "not done"

    class Renamed(nn.Module):
        def __init__(self, *, d_model, num_heads):
            super().__init__()
            self.w_q = nn.Linear(d_model, d_model)

    result = check_multi_head_attention_module(Renamed)
    assert "missing or not nn.Linear: q_proj, k_proj, v_proj, out_proj" in result.message


def test_checks_are_deterministic_and_leave_global_rngs_alone():
    np.random.seed(0)  # noqa: NPY002 -- the global state a notebook's later cells rely on
    torch.manual_seed(0)
    before = np.random.random(), torch.rand(1)  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    torch.manual_seed(0)
    first = [check(wrong).message for check, wrong in WRONG_ONES]
    after = np.random.random(), torch.rand(1)  # noqa: NPY002
    assert before == after
    assert first == [check(wrong).message for check, wrong in WRONG_ONES]


WRONG_ONES = [
    (check_softmax, softmax_naive),
    (check_scaled_dot_product_attention, attention_no_scale),
    (check_causal_mask, lambda t: np.tril(np.ones((t, t)))),
    (check_multi_head_attention_module, with_slip("no scale")),
    (check_multi_head_attention_module, MyMultiHeadAttention),
]
