"""Positional encodings: the paper's formula, learned embeddings, and RoPE's relative property."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tfm_edu.attention import MultiHeadAttention
from tfm_edu.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    rotary_angles,
    sinusoidal_encoding,
)


def test_sinusoidal_matches_the_paper_entry_by_entry():
    n, d, base = 7, 6, 10000.0
    table = sinusoidal_encoding(n, d, base)
    for pos in range(n):
        for i in range(d // 2):
            angle = pos / base ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-12)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoidal_odd_width_ends_with_sine():
    table = sinusoidal_encoding(4, 5)
    assert table.shape == (4, 5)
    np.testing.assert_allclose(table[:, 4], np.sin(np.arange(4) / 10000 ** (4 / 5)))


def test_sinusoidal_positions_are_distinct_and_bounded():
    table = sinusoidal_encoding(200, 32)
    assert np.all(np.abs(table) <= 1)
    distances = np.linalg.norm(table[:, None] - table[None], axis=-1)
    assert np.all(distances[~np.eye(200, dtype=bool)] > 1e-3)


def test_sinusoidal_relative_shift_is_a_linear_map():
    """PE(pos + k) = M_k PE(pos) for a fixed rotation M_k: the paper's motivation."""
    d, k = 8, 3
    table = sinusoidal_encoding(50, d)
    inv_freq = 10000 ** (-np.arange(0, d, 2) / d)
    rotation = np.zeros((d, d))
    for i, w in enumerate(inv_freq):
        c, s = np.cos(k * w), np.sin(k * w)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, -s], [s, c]]
    np.testing.assert_allclose(table[k:], table[:-k] @ rotation, atol=1e-10)


@pytest.mark.parametrize(("n", "d", "base"), [(0, 4, 1e4), (4, 0, 1e4), (4, 4, 1.0)])
def test_sinusoidal_rejects_bad_sizes(n, d, base):
    with pytest.raises(ValueError):
        sinusoidal_encoding(n, d, base)


def test_sinusoidal_module_adds_the_numpy_table():
    module = SinusoidalPositionalEncoding(d_model=6, max_positions=10)
    x = torch.zeros(2, 4, 6)
    expected = torch.from_numpy(sinusoidal_encoding(4, 6)).float()
    torch.testing.assert_close(module(x), expected.expand(2, 4, 6))
    assert not list(module.parameters())
    with pytest.raises(ValueError, match="longer than max_positions=10"):
        module(torch.zeros(1, 11, 6))
    with pytest.raises(ValueError, match=r"expected \(B, T, D\) with D=6, got \(1, 3, 5\)"):
        module(torch.zeros(1, 3, 5))


def test_learned_embedding_adds_one_vector_per_position():
    torch.manual_seed(0)
    module = LearnedPositionalEmbedding(max_positions=8, d_model=4)
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(module(x) - x, module.embedding.weight[:5].expand(3, 5, 4))
    with pytest.raises(ValueError, match="longer than max_positions=8"):
        module(torch.randn(1, 9, 4))


def test_positions_break_permutation_equivariance():
    torch.manual_seed(1)
    attention = MultiHeadAttention(d_model=8, num_heads=2).eval()
    encode = SinusoidalPositionalEncoding(d_model=8, max_positions=16)
    x = torch.randn(1, 6, 8)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    with torch.no_grad():
        without, _ = attention(x, x, x)
        without_p, _ = attention(x[:, perm], x[:, perm], x[:, perm])
        xp, xpp = encode(x), encode(x[:, perm])
        with_pos, _ = attention(xp, xp, xp)
        with_pos_p, _ = attention(xpp, xpp, xpp)
    torch.testing.assert_close(without_p, without[:, perm])
    assert not torch.allclose(with_pos_p, with_pos[:, perm], atol=1e-3)


def test_apply_rotary_matches_complex_multiplication():
    """RoFormer: treat each (even, odd) pair as a complex number and multiply by e^{i m theta}."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    angles = rotary_angles(torch.arange(5), 8).double()
    rotated = apply_rotary(x, angles)
    as_complex = torch.view_as_complex(x.reshape(2, 5, 4, 2).contiguous())
    expected = torch.view_as_real(as_complex * torch.polar(torch.ones_like(angles), angles))
    torch.testing.assert_close(rotated, expected.reshape(2, 5, 8))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(0, 60), n=st.integers(0, 60), shift=st.integers(1, 40), seed=st.integers(0, 999)
)
def test_rope_scores_depend_only_on_the_offset(m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (
        torch.randn(16, generator=g, dtype=torch.float64),
        torch.randn(16, generator=g, dtype=torch.float64),
    )
    rope = RotaryEmbedding(head_dim=16)

    def score(pos_q: int, pos_k: int) -> torch.Tensor:
        rq = rope(q.expand(1, 1, 16), offset=pos_q)[0, 0]
        rk = rope(k.expand(1, 1, 16), offset=pos_k)[0, 0]
        return rq @ rk

    torch.testing.assert_close(score(m, n), score(m + shift, n + shift), atol=1e-8, rtol=1e-8)


def test_rope_position_zero_is_identity_and_rejects_odd_widths():
    x = torch.randn(1, 1, 6)
    torch.testing.assert_close(RotaryEmbedding(head_dim=6)(x), x)
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(head_dim=5)
    with pytest.raises(ValueError, match="even"):
        rotary_angles(torch.arange(3), 7)
    with pytest.raises(ValueError, match="disagree"):
        apply_rotary(torch.randn(3, 8), rotary_angles(torch.arange(4), 8))
