"""Chapter 1's NumPy attention: invariants, masks, and agreement with PyTorch's SDPA."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tfm_edu import numpy_attention as npa


def test_softmax_is_stable_for_large_logits():
    out = npa.softmax(np.array([1000.0, 1001.0, 1002.0]))
    expected = np.exp([-2.0, -1.0, 0.0]) / np.exp([-2.0, -1.0, 0.0]).sum()
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_softmax_matches_torch_along_each_axis():
    x = np.random.default_rng(0).normal(size=(3, 4, 5)) * 10
    for axis in (0, 1, 2, -1):
        ours = npa.softmax(x, axis=axis)
        theirs = torch.softmax(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
        np.testing.assert_allclose(ours.sum(axis=axis), 1.0, atol=1e-12)


def test_softmax_rejects_scalar():
    with pytest.raises(ValueError, match="scalar"):
        npa.softmax(np.float64(3.0))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    t=st.integers(1, 7),
    s=st.integers(1, 7),
    d_k=st.integers(1, 9),
    d_v=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
    masked=st.booleans(),
)
def test_attention_matches_torch_sdpa_float64(batch, t, s, d_k, d_v, seed, masked):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(batch, t, d_k)), rng.normal(size=(batch, s, d_k))
    v = rng.normal(size=(batch, s, d_v))
    mask = rng.random((batch, t, s)) < 0.7 if masked else None
    if mask is not None:
        mask[..., 0] = True  # keep every row attendable: SDPA's fully-masked rows differ by design
    out, weights = npa.scaled_dot_product_attention(q, k, v, mask)
    as_t = [torch.from_numpy(a) for a in (q, k, v)]
    ref = F.scaled_dot_product_attention(
        *as_t, attn_mask=None if mask is None else torch.from_numpy(mask)
    )
    assert out.shape == (batch, t, d_v) and weights.shape == (batch, t, s)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-10)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-12)
    if mask is not None:
        assert np.all(weights[~mask] == 0.0)


def test_fully_masked_row_gives_zeros_not_nan():
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out, weights = npa.scaled_dot_product_attention(q, k, v, mask)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(weights))
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_allclose(weights[[0, 2]].sum(-1), 1.0)


def test_scale_is_one_over_sqrt_dk():
    # with q = k = e_0 * a, the score of the matching key is a^2 / sqrt(d_k)
    d_k = 16
    q = np.zeros((1, d_k))
    q[0, 0] = 2.0
    k = np.zeros((2, d_k))
    k[0, 0] = 2.0
    _, weights = npa.scaled_dot_product_attention(q, k, np.eye(2))
    score = 4.0 / np.sqrt(d_k)
    np.testing.assert_allclose(weights[0, 0], np.exp(score) / (np.exp(score) + 1.0))


def test_causal_mask_forbids_the_future():
    mask = npa.causal_mask(4)
    assert mask.dtype == bool and mask.shape == (4, 4)
    assert not np.any(np.triu(mask, k=1)) and np.all(np.diag(mask))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3))
    out, weights = npa.scaled_dot_product_attention(x, x, x, mask)
    assert np.all(np.triu(weights, k=1) == 0)
    x2 = x.copy()
    x2[3] += 5.0  # changing the last token must not change earlier outputs
    out2, _ = npa.scaled_dot_product_attention(x2, x2, x2, mask)
    np.testing.assert_allclose(out[:3], out2[:3])


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_causal_mask_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="positive length"):
        npa.causal_mask(bad)


def test_padding_mask_marks_real_tokens():
    mask = npa.padding_mask([2, 0, 3], 3)
    assert mask.shape == (3, 1, 3)
    np.testing.assert_array_equal(mask[:, 0], [[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="0..3"):
        npa.padding_mask([4], 3)
    with pytest.raises(ValueError, match="1-D"):
        npa.padding_mask([[1]], 3)


def test_padding_mask_hides_padded_keys():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 3))
    mask = npa.padding_mask([2, 4], 4)
    out, weights = npa.scaled_dot_product_attention(x, x, x, mask)
    assert np.all(weights[0, :, 2:] == 0)
    # the padded keys' contents do not matter
    x2 = x.copy()
    x2[0, 2:] = 100.0
    out2, _ = npa.scaled_dot_product_attention(x2[:, :, :], x2, x2, mask)
    np.testing.assert_allclose(out[0, :2], out2[0, :2])


@pytest.mark.parametrize(
    ("q", "k", "v", "message"),
    [
        ((3, 4), (5, 3), (5, 2), r"share d_k.*\(3, 4\).*\(5, 3\)"),
        ((3, 4), (5, 4), (6, 2), r"share S.*\(5, 4\).*\(6, 2\)"),
        ((4,), (5, 4), (5, 2), "at least 2 axes"),
        ((2, 3, 4), (3, 5, 4), (3, 5, 2), "do not broadcast"),
    ],
)
def test_attention_names_bad_shapes(q, k, v, message):
    with pytest.raises(ValueError, match=message):
        npa.scaled_dot_product_attention(np.ones(q), np.ones(k), np.ones(v))


def test_attention_rejects_bad_masks():
    q = np.ones((3, 4))
    with pytest.raises(ValueError, match="boolean"):
        npa.scaled_dot_product_attention(q, q, q, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\) does not broadcast.*\(3, 3\)"):
        npa.scaled_dot_product_attention(q, q, q, np.ones((2, 3), dtype=bool))


def test_permutation_equivariance_without_positions():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 8))
    w = [rng.normal(size=(8, 8)) / 3 for _ in range(4)]
    perm = rng.permutation(6)
    out, weights = npa.multi_head_attention(x, x, *w, num_heads=2)
    out_p, weights_p = npa.multi_head_attention(x[perm], x[perm], *w, num_heads=2)
    np.testing.assert_allclose(out_p, out[perm], atol=1e-12)
    np.testing.assert_allclose(weights_p, weights[:, perm][:, :, perm], atol=1e-12)


def test_multi_head_is_heads_of_single_head_attention():
    """Independent check: loop over heads by hand and concatenate."""
    rng = np.random.default_rng(5)
    x_q, x_kv = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    w_q, w_k, w_v, w_o = (rng.normal(size=(8, 8)) for _ in range(4))
    out, weights = npa.multi_head_attention(x_q, x_kv, w_q, w_k, w_v, w_o, num_heads=4)
    heads = []
    for h in range(4):
        cols = slice(2 * h, 2 * h + 2)
        q, k, v = x_q @ w_q[:, cols], x_kv @ w_k[:, cols], x_kv @ w_v[:, cols]
        scores = q @ k.T / np.sqrt(2)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_allclose(weights[h], p, atol=1e-12)
        heads.append(p @ v)
    np.testing.assert_allclose(out, np.concatenate(heads, -1) @ w_o, atol=1e-10)


def test_multi_head_attention_rejects_bad_arguments():
    x = np.ones((3, 8))
    w = np.eye(8)
    with pytest.raises(ValueError, match="num_heads must divide D=8"):
        npa.multi_head_attention(x, x, w, w, w, w, num_heads=3)
    with pytest.raises(ValueError, match=r"w_k must be \(D, D\) = \(8, 8\), got \(8, 4\)"):
        npa.multi_head_attention(x, x, w, np.ones((8, 4)), w, w, num_heads=2)
    with pytest.raises(ValueError, match="must share D"):
        npa.multi_head_attention(x, np.ones((3, 6)), w, w, w, w, num_heads=2)
