"""PyTorch attention: agreement NumPy <-> ours <-> nn.MultiheadAttention <-> SDPA, and errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tfm_edu import numpy_attention as npa
from tfm_edu.attention import (
    MultiHeadAttention,
    merge_heads,
    scaled_dot_product_attention,
    set_fused,
    split_heads,
)
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
    ours = MultiHeadAttention(d_model=D, num_heads=H, bias=False).to(dtype).eval()
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
    module = MultiHeadAttention(d_model=8, num_heads=2, bias=False).eval()
    x = torch.randn(1, 3, 8)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    with torch.no_grad():
        out, weights = module(x, x, x, mask)
        fused_out, _ = set_fused(module)(x, x, x, mask, return_attention=False)
    assert torch.isfinite(out).all() and torch.isfinite(fused_out).all()
    assert torch.all(weights[:, :, 1] == 0)
    torch.testing.assert_close(fused_out, out)


def test_padding_mask_from_numpy_helper_works_in_torch():
    torch.manual_seed(1)
    module = MultiHeadAttention(d_model=8, num_heads=2).eval()
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
    module = MultiHeadAttention(d_model=8, num_heads=2).eval()
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
    module = MultiHeadAttention(d_model=12, num_heads=3).eval()
    x = torch.randn(2, 6, 12)
    perm = torch.randperm(6)
    with torch.no_grad():
        out, _ = module(x, x, x)
        out_p, _ = module(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm])


def test_gradients_flow_and_dropout_only_in_training():
    torch.manual_seed(4)
    module = MultiHeadAttention(d_model=8, num_heads=2, dropout=0.5)
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
    module = MultiHeadAttention(d_model=8, num_heads=2).to(torch.float64)
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
    module = MultiHeadAttention(d_model=8, num_heads=2)
    with pytest.raises(ValueError, match=message):
        module(torch.randn(q_shape), torch.randn(k_shape), torch.randn(k_shape))


def test_bad_construction_and_masks():
    with pytest.raises(ValueError, match="num_heads=3 must divide d_model=8"):
        MultiHeadAttention(d_model=8, num_heads=3)
    module = MultiHeadAttention(d_model=8, num_heads=2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="boolean"):
        module(x, x, x, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(4, 4\) does not broadcast"):
        module(x, x, x, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"share d_k.*\(2, 3\).*\(2, 4\)"):
        scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 4), torch.ones(2, 4))


def test_reference_copy_refuses_mismatches():
    with pytest.raises(ValueError, match="shape mismatch"):
        copy_attention_to_torch(
            MultiHeadAttention(d_model=8, num_heads=2), nn.MultiheadAttention(8, 4)
        )
    with pytest.raises(ValueError, match="bias"):
        copy_attention_to_torch(
            MultiHeadAttention(d_model=8, num_heads=2, bias=True),
            nn.MultiheadAttention(8, 2, bias=False),
        )


@pytest.mark.parametrize("fused", [False, True])
def test_return_attention_false_gives_no_weights_on_either_path(fused):
    torch.manual_seed(5)
    module = MultiHeadAttention(d_model=8, num_heads=2, fused=fused).eval()
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        out, weights = module(x, x, x, return_attention=False)
        out_with, weights_with = module(x, x, x)  # the default asks for the weights
    assert weights is None
    assert weights_with.shape == (2, 2, 3, 3)
    torch.testing.assert_close(out, out_with)


@settings(max_examples=20, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    L=st.integers(1, 5),
    heads=st.sampled_from([(1, 4), (2, 3), (4, 2)]),  # (H, Dh)
    seed=st.integers(0, 2**31 - 1),
)
def test_split_and_merge_heads_numpy_and_torch_agree(lead, L, heads, seed):
    H, Dh = heads
    x = np.random.default_rng(seed).normal(size=(*lead, L, H * Dh))  # (..., L, D)
    ours = split_heads(torch.from_numpy(x), H)  # (..., H, L, Dh)
    theirs = npa.split_heads(x, H)
    assert ours.shape == theirs.shape == (*lead, H, L, Dh)
    np.testing.assert_array_equal(ours.numpy(), theirs)
    for h in range(H):  # head h is the slice h*Dh:(h+1)*Dh of every token, said independently
        np.testing.assert_array_equal(theirs[..., h, :, :], x[..., h * Dh : (h + 1) * Dh])
    np.testing.assert_array_equal(merge_heads(ours).numpy(), x)
    np.testing.assert_array_equal(npa.merge_heads(theirs), x)


def test_split_heads_is_not_a_plain_view_and_names_bad_shapes():
    x = torch.arange(3 * 4.0).view(1, 3, 4)  # (B=1, L=3, D=4)
    heads = split_heads(x, 2)  # (1, 2, 3, 2)
    assert heads[0, 1].tolist() == [[2.0, 3.0], [6.0, 7.0], [10.0, 11.0]]
    assert not torch.equal(heads, x.view(1, 2, 3, 2))  # the tempting view mixes tokens
    with pytest.raises(ValueError, match=r"num_heads=3 dividing D, got \(1, 3, 4\)"):
        split_heads(x, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, L, Dh\)"):
        merge_heads(torch.ones(3, 4))
    with pytest.raises(ValueError, match="must divide D=4"):
        npa.split_heads(x.numpy(), 3)


def test_masked_gradients_match_nn_multihead_attention():
    torch.manual_seed(6)
    B, T, D, H = 2, 5, 8, 2
    ours = MultiHeadAttention(d_model=D, num_heads=H).to(torch.float64)
    theirs = nn.MultiheadAttention(D, H, batch_first=True).to(torch.float64)
    copy_attention_to_torch(ours, theirs)
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = torch.ones(T, T, dtype=torch.bool).tril()  # (T, S) causal
    mask = mask & (torch.arange(T) < torch.tensor([3, 5])[:, None])[:, None, None, :]  # padding
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, weights = ours(x_ours, x_ours, x_ours, mask)
    (out.square().sum() + weights.square().sum()).backward()
    # nn.MHA's attn_mask per head: (B*H, T, S), True = blocked
    blocked = to_torch_mask(mask.expand(B, H, T, T).reshape(B * H, T, T))
    ref_out, ref_weights = theirs(
        x_theirs, x_theirs, x_theirs, attn_mask=blocked, average_attn_weights=False
    )
    (ref_out.square().sum() + ref_weights.square().sum()).backward()
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad)
    q_grad = theirs.in_proj_weight.grad[:D]  # the q rows of nn.MHA's packed (3D, D) weight
    torch.testing.assert_close(ours.q_proj.weight.grad, q_grad)


def test_fully_masked_rows_give_finite_gradients():
    torch.manual_seed(7)
    module = MultiHeadAttention(d_model=8, num_heads=2)
    x = torch.randn(1, 3, 8, requires_grad=True)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, weights = module(x, x, x, mask)
    (out.sum() + weights.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_heads_reach_the_matmuls_in_head_major_layout_without_a_transposing_copy():
    """The explicit path copies q, k and v once each into (B, H, L, Dh) and merges once: no
    copy of k^T (B, H, Dh, S), which is what `matmul` makes from a transposed strided view."""
    from torch.profiler import profile

    B, T, D, H = 2, 6, 8, 2  # T != Dh, so (B, H, T, Dh) and (B, H, Dh, T) differ
    module = MultiHeadAttention(d_model=D, num_heads=H, bias=False).eval()
    x = torch.randn(B, T, D)
    with torch.no_grad(), profile(record_shapes=True) as prof:
        module(x, x, x)
    copies = [
        tuple(e.input_shapes[0])
        for e in prof.events()
        if e.name == "aten::copy_" and e.input_shapes and len(e.input_shapes[0]) == 4
    ]
    assert sorted(copies) == sorted([(B, H, T, D // H)] * 3 + [(B, T, H, D // H)])
    softmax_inputs = [e.input_shapes[0] for e in prof.events() if e.name == "aten::_softmax"]
    assert softmax_inputs == [[B, H, T, T]]
