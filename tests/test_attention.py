"""PyTorch attention: agreement NumPy <-> ours <-> nn.MultiheadAttention <-> SDPA, and errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tfm_edu import numpy_attention as npa
from tfm_edu.attention import MultiHeadAttention, scaled_dot_product_attention, set_fused
from tfm_edu.reference import copy_attention_to_torch, to_torch_mask

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _numpy_weights(module: MultiHeadAttention) -> list[np.ndarray]:
    """nn.Linear stores (out, in); the NumPy version multiplies from the right: W = weight.T."""
    projections = (module.q_proj, module.k_proj, module.v_proj, module.out_proj)
    return [p.weight.detach().T.numpy() for p in projections]


shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 6),  # T
    st.integers(1, 6),  # S
    st.sampled_from([(4, 1), (4, 2), (6, 3), (8, 4), (12, 2)]),  # (D, H)
)


@settings(max_examples=30, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
    masked=st.booleans(),
)
def test_four_implementations_agree(shape, dtype, seed, masked):
    B, T, S, (D, H) = shape
    torch.manual_seed(seed)
    ours = MultiHeadAttention(D, H, bias=False).to(dtype).eval()
    theirs = nn.MultiheadAttention(D, H, bias=False, batch_first=True).to(dtype).eval()
    copy_attention_to_torch(ours, theirs)
    query, memory = torch.randn(B, T, D, dtype=dtype), torch.randn(B, S, D, dtype=dtype)
    mask = None
    if masked:
        mask = torch.rand(T, S) < 0.6
        mask[:, 0] = True  # nn.MultiheadAttention returns NaN for fully masked rows
    tol = TOLERANCE[dtype]

    with torch.no_grad():
        out, weights = ours(query, memory, memory, mask=mask)
        ref_out, ref_weights = theirs(
            query,
            memory,
            memory,
            attn_mask=None if mask is None else to_torch_mask(mask),
            average_attn_weights=False,
        )
        fused_out, no_weights = set_fused(ours, True)(query, memory, memory, mask, False)
        set_fused(ours, False)
    assert out.shape == (B, T, D) and weights.shape == (B, H, T, S)
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=tol)
    torch.testing.assert_close(weights, ref_weights, atol=tol, rtol=tol)
    torch.testing.assert_close(fused_out, out, atol=tol, rtol=tol)
    assert no_weights is None

    np_out, np_weights = npa.multi_head_attention(
        query.numpy(),
        memory.numpy(),
        *_numpy_weights(ours),
        H,
        None if mask is None else mask.numpy(),
    )
    np.testing.assert_allclose(np_out, out.numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(np_weights, weights.numpy(), atol=tol, rtol=tol)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 6)),
    seed=st.integers(0, 2**31 - 1),
)
def test_sdpa_matches_torch_and_rows_sum_to_one(shape, seed):
    B, T, S, d = shape
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, 2, n, d, generator=g, dtype=torch.float64) for n in (T, S, S))
    mask = torch.rand(B, 1, T, S, generator=g) < 0.5
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    allowed_rows = mask.any(-1).expand(B, 2, T)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[allowed_rows], ref[allowed_rows], atol=1e-10, rtol=1e-10)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[allowed_rows], torch.ones_like(sums[allowed_rows]))
    assert torch.all(weights.masked_select(~mask) == 0)
    assert torch.all(out[~allowed_rows] == 0) and torch.isfinite(out).all()


def test_fully_masked_rows_are_zero_on_both_paths():
    torch.manual_seed(0)
    module = MultiHeadAttention(8, 2, bias=False).eval()
    x = torch.randn(1, 3, 8)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    with torch.no_grad():
        out, weights = module(x, x, x, mask)
        fused_out, _ = set_fused(module)(x, x, x, mask, need_weights=False)
    assert torch.isfinite(out).all() and torch.isfinite(fused_out).all()
    assert torch.all(weights[:, :, 1] == 0)
    torch.testing.assert_close(fused_out, out)


def test_padding_mask_from_numpy_helper_works_in_torch():
    torch.manual_seed(1)
    module = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    mask = torch.from_numpy(npa.padding_mask([2, 4], 4))[:, None]  # (B, 1, 1, S)
    with torch.no_grad():
        out, weights = module(x, x, x, mask)
        x2 = x.clone()
        x2[0, 2:] = 42.0  # padded positions: their contents must not matter to real tokens
        out2, _ = module(x2, x2, x2, mask)
    assert torch.all(weights[0, :, :, 2:] == 0)
    torch.testing.assert_close(out[0, :2], out2[0, :2])


def test_causal_mask_stops_information_from_the_future():
    torch.manual_seed(2)
    module = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.from_numpy(npa.causal_mask(5))
    with torch.no_grad():
        out, weights = module(x, x, x, mask)
        x2 = x.clone()
        x2[0, 4] = torch.randn(8)
        out2, _ = module(x2, x2, x2, mask)
    torch.testing.assert_close(out[0, :4], out2[0, :4])
    assert torch.all(torch.triu(weights[0, 0], diagonal=1) == 0)


def test_permutation_equivariance_in_torch():
    torch.manual_seed(3)
    module = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, 6, 12)
    perm = torch.randperm(6)
    with torch.no_grad():
        out, _ = module(x, x, x)
        out_p, _ = module(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm])


def test_gradients_flow_and_dropout_only_in_training():
    torch.manual_seed(4)
    module = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 3, 8, requires_grad=True)
    out_train, _ = module(x, x, x)
    out_train.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    module.eval()
    with torch.no_grad():
        a, _ = module(x, x, x)
        b, _ = module(x, x, x)
    torch.testing.assert_close(a, b)


def test_module_follows_its_device_and_dtype():
    module = MultiHeadAttention(8, 2).to(torch.float64)
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    out, weights = module(x, x, x)
    assert out.dtype == weights.dtype == torch.float64
    assert out.device == x.device


@pytest.mark.parametrize(
    ("q_shape", "k_shape", "message"),
    [
        ((2, 3, 8), (2, 4, 6), r"key must be \(B, L, D\) with D=8, got \(2, 4, 6\)"),
        ((3, 8), (3, 8), r"query must be \(B, L, D\) with D=8, got \(3, 8\)"),
        ((2, 3, 8), (1, 4, 8), r"disagree on B or S"),
    ],
)
def test_module_names_bad_shapes(q_shape, k_shape, message):
    module = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=message):
        module(torch.randn(q_shape), torch.randn(k_shape), torch.randn(k_shape))


def test_bad_construction_and_masks():
    with pytest.raises(ValueError, match="num_heads=3 must divide d_model=8"):
        MultiHeadAttention(8, 3)
    module = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="boolean"):
        module(x, x, x, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(4, 4\) does not broadcast"):
        module(x, x, x, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"share d_k.*\(2, 3\).*\(2, 4\)"):
        scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 4), torch.ones(2, 4))


def test_reference_copy_refuses_mismatches():
    with pytest.raises(ValueError, match="shape mismatch"):
        copy_attention_to_torch(MultiHeadAttention(8, 2), nn.MultiheadAttention(8, 4))
    with pytest.raises(ValueError, match="bias"):
        copy_attention_to_torch(
            MultiHeadAttention(8, 2, bias=True), nn.MultiheadAttention(8, 2, bias=False)
        )
