"""Chapter 3 in code: telling attention where each token is.

Attention alone is permutation-equivariant: shuffle the tokens and the outputs shuffle the same
way. Three ways to break that symmetry:

- sinusoidal encodings (Vaswani et al., 2017, section 3.5), added to the embeddings:
      PE[pos, 2i]   = sin(pos / base^(2i / d_model))
      PE[pos, 2i+1] = cos(pos / base^(2i / d_model))
  sine and cosine sit in *separate* dimensions, interleaved. (Summing them into one value, as
  some tutorials write, loses information: chapter 3 shows positions that then collide.)
- learned positional embeddings (BERT, GPT-2, ViT): one trained vector per position;
- rotary position embeddings, RoPE (Su et al., 2021, "RoFormer"): rotate each (even, odd) pair
  of query/key dimensions by pos * theta_i, so that q_m . k_n depends only on the offset m - n.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "rotary_angles",
    "apply_rotary",
    "RotaryEmbedding",
]


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The paper's sinusoidal table, interleaved sin/cos, in NumPy.

    Args:
        n_positions: how many positions (rows), >= 1.
        d_model: width of each encoding, >= 1 (an odd width ends with a sine column).
        base: the wavelength base; wavelengths run from 2*pi to base*2*pi.

    Returns:
        (n_positions, d_model) float64.
    """
    _check_sizes(n_positions, d_model, base)
    positions = np.arange(n_positions)[:, None]  # (N, 1)
    inv_freq = base ** (-np.arange(0, d_model, 2) / d_model)  # (ceil(D/2),)
    angles = positions * inv_freq  # (N, ceil(D/2))
    table = np.empty((n_positions, d_model))
    table[:, 0::2] = np.sin(angles)  # even dimensions: sine
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])  # odd dimensions: cosine
    return table  # (N, D)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to a (B, T, D) input (no parameters)."""

    def __init__(self, *, d_model: int, max_positions: int = 512, base: float = 10000.0) -> None:
        super().__init__()
        table = torch.from_numpy(sinusoidal_encoding(max_positions, d_model, base))
        self.register_buffer("table", table.float(), persistent=False)  # (max_positions, D)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> x + PE[:T], (B, T, D)."""
        _check_sequence(x, self.table.shape[0], self.table.shape[1])
        return x + self.table[: x.shape[1]].to(x.dtype)  # (B, T, D)


class LearnedPositionalEmbedding(nn.Module):
    """Adds one trained vector per position to a (B, T, D) input."""

    def __init__(self, *, max_positions: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_positions, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (B, T, D) at positions offset..offset+T-1 -> x + E[offset..offset+T-1], (B, T, D).

        (`offset` is how many positions came before: chapter 9's KV cache feeds one new token
        at a time, at position offset.)
        """
        _check_sequence(x, self.embedding.num_embeddings, self.embedding.embedding_dim, offset)
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)  # (T,)
        return x + self.embedding(positions)  # (B, T, D)


def rotary_angles(
    positions: Tensor, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The rotation angle of each (even, odd) pair at each position: pos * base^(-2i/head_dim).

    Args:
        positions: (T,) integer or float positions.
        head_dim: Dh, even.
        dtype: of the result (computed in float64 first, so float64 inputs stay exact).

    Returns:
        (T, Dh/2) angles in radians on `positions`' device.
    """
    if head_dim % 2:
        raise ValueError(
            f"rotary embeddings rotate pairs of dimensions: head_dim must be even, got {head_dim}"
        )
    _check_sizes(1, head_dim, base)
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float64)
    inv_freq = base ** (-exponents / head_dim)  # (Dh/2,)
    return (positions.double()[:, None] * inv_freq[None, :]).to(dtype)  # (T, Dh/2)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each (even, odd) pair of x's last axis by its angle.

    Args:
        x: (..., T, Dh) queries or keys.
        angles: (T, Dh/2) from `rotary_angles`.

    Returns:
        (..., T, Dh), the same norm as x at each position.
    """
    if x.shape[-1] != 2 * angles.shape[-1] or x.shape[-2] != angles.shape[-2]:
        raise ValueError(
            "x (..., T, Dh) and angles (T, Dh/2) disagree: "
            f"{tuple(x.shape)} vs {tuple(angles.shape)}"
        )
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (T, Dh/2) each
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, Dh/2) each
    rotated = torch.stack(
        (even * cos - odd * sin, even * sin + odd * cos), dim=-1
    )  # (..., T, Dh/2, 2)
    return rotated.flatten(-2)  # (..., T, Dh)


class RotaryEmbedding(nn.Module):
    """RoPE as a module: rotates queries and keys (B, H, T, Dh) by their positions."""

    def __init__(self, *, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        self.head_dim = head_dim
        self.base = base

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (..., T, Dh) at positions offset..offset+T-1 -> rotated (..., T, Dh)."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected (..., T, {self.head_dim}), got {tuple(x.shape)}")
        positions = torch.arange(offset, offset + x.shape[-2], device=x.device)  # (T,)
        angles = rotary_angles(positions, self.head_dim, self.base, x.dtype)  # (T, Dh/2)
        return apply_rotary(x, angles)  # (..., T, Dh)


def _check_sizes(n_positions: int, d_model: int, base: float) -> None:
    if not isinstance(n_positions, (int, np.integer)) or n_positions < 1:
        raise ValueError(f"n_positions must be a positive int, got {n_positions!r}")
    if not isinstance(d_model, (int, np.integer)) or d_model < 1:
        raise ValueError(f"d_model must be a positive int, got {d_model!r}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")


def _check_sequence(x: Tensor, max_positions: int, d_model: int, offset: int = 0) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"expected (B, T, D) with D={d_model}, got {tuple(x.shape)}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    if offset + x.shape[1] > max_positions:
        after = f" after {offset} earlier positions" if offset else ""
        raise ValueError(
            f"sequence of length {x.shape[1]}{after} is longer than max_positions={max_positions}"
        )
