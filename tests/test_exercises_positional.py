"""Chapter 3 checks: sinusoidal table, applying RoPE.

Correct and wrong implementations are written the way a learner would, independently of the
`Mistake`s inside the checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_helpers import assert_hint, stub

from tfm_edu import positional
from tfm_edu.exercises.positional import (
    check_apply_rotary,
    check_sinusoidal_encoding,
)

# ------------------------------------------------------------------ sinusoidal table


def table(n_positions, d_model, base=10000.0, exponent=None, first=0, sin=np.sin, cos=np.cos):
    position = np.arange(first, first + n_positions)[:, None]  # (N, 1)
    exponent = np.arange(0, d_model, 2) / d_model if exponent is None else exponent
    angle = position / base**exponent  # (N, D/2)
    pe = np.zeros((n_positions, d_model))
    pe[:, 0::2] = sin(angle)
    pe[:, 1::2] = cos(angle)
    return pe


def table_torch_float32(n_positions, d_model, base=10000.0):
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(base) / d_model))
    pe = torch.zeros(n_positions, d_model)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.numpy()


def table_summed_loop(n_positions, d_model, base=10000.0):
    pe = np.zeros((n_positions, d_model))
    for pos in range(n_positions):
        for i in range(d_model):
            angle = pos / base ** (2 * i / d_model)
            pe[pos, i] = math.sin(angle) + math.cos(angle)
    return pe


def table_summed_pairs(n_positions, d_model, base=10000.0):
    pe = table(n_positions, d_model, base)
    summed = pe[:, 0::2] + pe[:, 1::2]
    return np.repeat(summed, 2, axis=1)


def table_halves(n_positions, d_model, base=10000.0):
    pe = table(n_positions, d_model, base)
    return np.concatenate([pe[:, 0::2], pe[:, 1::2]], axis=1)


def table_exponent_per_column(n_positions, d_model, base=10000.0):
    pe = np.zeros((n_positions, d_model))
    for pos in range(n_positions):
        for j in range(d_model):
            angle = pos / base ** (j / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def table_loop_doubled_exponent(n_positions, d_model, base=10000.0):
    pe = np.zeros((n_positions, d_model))
    for pos in range(n_positions):
        for i in range(0, d_model, 2):  # i already steps by 2, and is doubled again
            pe[pos, i] = math.sin(pos / base ** (2 * i / d_model))
            pe[pos, i + 1] = math.cos(pos / base ** (2 * (i + 1) / d_model))
    return pe


def test_sinusoidal_accepts_correct_code():
    assert check_sinusoidal_encoding(table).passed
    assert check_sinusoidal_encoding(positional.sinusoidal_encoding).passed
    assert check_sinusoidal_encoding(table_torch_float32).passed  # float32 is close enough


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (table_summed_loop, "Summing them into one value"),
        (table_summed_pairs, "Summing them into one value"),
        (lambda n, d, base=1e4: table(n, d, base, sin=np.cos, cos=np.sin), "sin and cos are swap"),
        (table_halves, "That is a valid variant"),
        (lambda n, d, base=1e4: table(n, d, base, np.arange(d // 2) / d), "counts the (sin, cos)"),
        (table_exponent_per_column, "uses the column index j"),
        (table_loop_doubled_exponent, "doubles the column index"),
        (lambda n, d, base=1e4: table(n, d, base, -np.arange(0, d, 2) / d), "exponent is negati"),
        (lambda n, d, base=1e4: table(n, d), "use the `base` argument"),
        (lambda n, d, base=1e4: table(n, d, base, first=1), "positions start at 0"),
        (lambda n, d, base=1e4: table(n, d, base)[np.newaxis], "without a batch axis"),
    ],
)
def test_sinusoidal_rejects_typical_mistakes(wrong, hint):
    assert_hint(check_sinusoidal_encoding(wrong), hint)


def test_sinusoidal_wants_numpy_and_stub_is_not_done():
    result = check_sinusoidal_encoding(lambda n, d, base=1e4: torch.from_numpy(table(n, d, base)))
    assert "expected a NumPy array, got a torch.Tensor" in result.message
    assert check_sinusoidal_encoding(stub).status == "not done"


def test_verdicts_use_the_learners_name():
    def my_sinusoidal_encoding(n_positions, d_model, base=10000.0):
        return table(n_positions, d_model, base)

    assert check_sinusoidal_encoding(my_sinusoidal_encoding).message.startswith(
        "✓ my_sinusoidal_encoding"
    )
    assert check_apply_rotary(rotate).message.startswith("✓ rotate")


# ------------------------------------------------------------------ applying RoPE


def rotate(x, angles, sign=1.0):
    cos, sin = torch.cos(angles), sign * torch.sin(angles)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def rotate_half_style(x, angles):
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def rotate_concatenated(x, angles):
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., ::2], x[..., 1::2]
    return torch.cat([even * cos - odd * sin, even * sin + odd * cos], dim=-1)


def rotate_tiled_angles(x, angles):
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    rotated = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return x * cos + rotated * sin


def rotate_complex(x, angles):
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def test_apply_rotary_accepts_correct_code():
    assert check_apply_rotary(rotate).passed
    assert check_apply_rotary(rotate_complex).passed
    assert check_apply_rotary(positional.apply_rotary).passed


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda x, a: rotate(x, a, sign=-1.0), "you rotate the wrong way"),
        (rotate_half_style, "'rotate_half' layout"),
        (rotate_concatenated, "put each rotated pair back in place"),
        (rotate_tiled_angles, "shares angle i"),
    ],
)
def test_apply_rotary_rejects_typical_mistakes(wrong, hint):
    assert_hint(check_apply_rotary(wrong), hint)


def test_apply_rotary_stub_is_not_done():
    assert check_apply_rotary(stub).status == "not done"
