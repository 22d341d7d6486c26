"""Checks for chapter 3: the sinusoidal table and rotary position embeddings (RoPE).

References: `tfm_edu.positional` (Vaswani et al., 2017, section 3.5, for the sinusoidal table;
Su et al., 2021, "RoFormer", for RoPE). The course's conventions, which the hints spell out:
sine and cosine interleaved (even columns sin, odd columns cos, one frequency per pair), and RoPE
rotating interleaved pairs (x[2i], x[2i+1]) by +angle, as in the RoFormer paper.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from tfm_edu import positional
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function, graded

__all__ = ["check_sinusoidal_encoding", "check_apply_rotary"]

# ------------------------------------------------------------------ sinusoidal table


@graded
def check_sinusoidal_encoding(fn) -> CheckResult:
    """Check `fn(n_positions, d_model, base=10000.0) -> (n_positions, d_model)` NumPy array.

    Every case has an even d_model (as in the paper); a float32 table is accepted.
    """
    cases = [
        Case((6, 8)),
        Case((10, 4)),
        Case((5, 16), {"base": 100.0}),
        Case((1, 6)),
        Case((50, 32)),
    ]
    summed = (
        "sine and cosine go in *separate* columns: column 2i holds sin(pos / base^(2i/d)) and "
        "column 2i+1 holds cos of the same angle. Summing them into one value (a formula some "
        "tutorials repeat) loses information: sin(a) + cos(a) = sqrt(2) sin(a + pi/4) is one "
        "wave, and different positions collide."
    )
    mistakes = [  # the summed formula, with each of the exponents that tutorials write
        *(Mistake(summed, partial(_summed_table, exponent=e)) for e in ("pair", "2j", "j")),
        Mistake(
            "sin and cos are swapped: the paper puts sin in the even columns (0, 2, 4, ...) and "
            "cos in the odd ones, so row 0 reads 0, 1, 0, 1, ...",
            lambda n, d, base=10000.0: _table(n, d, base, layout="cos-sin"),
        ),
        Mistake(
            "your table puts all the sines first and all the cosines after, [sin | cos]. That is "
            "a valid variant (some libraries use it), but the paper and this course interleave "
            "them: PE[:, 0::2] = sin, PE[:, 1::2] = cos. Mixing the two layouts is a silent bug: "
            "weights trained on one read the wrong columns of the other.",
            lambda n, d, base=10000.0: _table(n, d, base, layout="halves"),
        ),
        Mistake(
            "the exponent is 2i / d_model, where i counts the (sin, cos) *pairs*: use "
            "np.arange(0, d_model, 2) / d_model, not np.arange(d_model // 2) / d_model.",
            lambda n, d, base=10000.0: _table(n, d, base, exponents=np.arange(d // 2) / d),
        ),
        Mistake(
            "the exponent uses the column index j (j / d_model) where it needs the pair's 2i / "
            "d_model: each (sin, cos) pair shares one frequency, so column 2i+1 uses the same "
            "exponent 2i / d_model as column 2i, not (2i+1) / d_model.",
            _table_exponent_per_column,
        ),
        Mistake(
            "the exponent is 2i / d_model with i the *pair* (i = j // 2 for column j); yours "
            "doubles the column index (2j / d_model), so the frequencies fall twice as fast and "
            "the sine and cosine of a pair no longer share one. Loop over pairs, or use "
            "np.arange(0, d_model, 2) / d_model.",
            partial(_table_exponent_per_column, scale=2),
        ),
        Mistake(
            "divide the position by base^(2i/d_model): the exponent is negative, so the "
            "frequencies fall (wavelengths grow) from the first columns to the last.",
            lambda n, d, base=10000.0: _table(n, d, 1.0 / base),
        ),
        Mistake(
            "use the `base` argument instead of a hard-coded 10000.",
            lambda n, d, base=10000.0: _table(n, d, 10000.0),
        ),
        Mistake(
            "positions start at 0: row 0 is sin(0) = 0, cos(0) = 1, i.e. 0, 1, 0, 1, ...",
            lambda n, d, base=10000.0: _table(n, d, base, first_position=1),
        ),
        Mistake(
            "return the table itself, (n_positions, d_model), without a batch axis in front: "
            "broadcasting adds it when the table meets a (B, T, D) batch.",
            lambda n, d, base=10000.0: _table(n, d, base)[None],
        ),
    ]
    return check_function(
        _name(fn, "sinusoidal_encoding"),
        fn,
        positional.sinusoidal_encoding,
        cases,
        mistakes,
        atol=1e-4,  # float32 angles up to 50 are off by ~5e-6: accept a float32 table
        rtol=1e-4,
    )


def _table(n, d, base, layout="paper", exponents=None, first_position=0):
    """Sinusoidal tables laid out right or wrong, for the mistakes (d even)."""
    exponents = np.arange(0, d, 2) / d if exponents is None else exponents  # (D/2,)
    angles = np.arange(first_position, first_position + n)[:, None] / base**exponents  # (N, D/2)
    sin, cos = np.sin(angles), np.cos(angles)  # (N, D/2) each
    if layout == "halves":
        return np.concatenate([sin, cos], axis=-1)  # (N, D)
    first, second = (cos, sin) if layout == "cos-sin" else (sin, cos)
    return np.stack([first, second], axis=-1).reshape(n, d)  # (N, D) interleaved


def _summed_table(n, d, base=10000.0, exponent="pair"):
    """sin + cos in every column j, at the pair's, 2j/d's or j/d's frequency."""
    columns = np.arange(d)  # (D,)
    powers = {"pair": columns // 2 * 2 / d, "2j": 2 * columns / d, "j": columns / d}[exponent]
    angles = np.arange(n)[:, None] / base ** powers[None, :]  # (N, D)
    return np.sin(angles) + np.cos(angles)  # (N, D)


def _table_exponent_per_column(n, d, base=10000.0, scale=1):
    """sin / cos by column parity, each column j at exponent scale * j / d (right: 2 * (j // 2))."""
    angles = np.arange(n)[:, None] / base ** (scale * np.arange(d) / d)  # (N, D)
    table = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return table  # (N, D)


# ------------------------------------------------------------------ applying RoPE


@graded
def check_apply_rotary(fn) -> CheckResult:
    """Check `fn(x (..., T, Dh), angles (T, Dh/2)) -> (..., T, Dh)` in torch.

    Same signature as `tfm_edu.positional.apply_rotary`: each interleaved pair
    (x[..., 2i], x[..., 2i+1]) at position t turns by angles[t, i].
    """
    rng = np.random.default_rng(5)
    setups = [  # (shape of x, first position, base)
        ((5, 8), 0, 10000.0),
        ((2, 3, 6, 4), 0, 10000.0),
        ((2, 7, 8), 10, 10000.0),
        ((1, 2, 4, 16), 3, 100.0),
    ]
    cases = []
    for shape, start, base in setups:
        x = torch.from_numpy(rng.normal(size=shape))  # (..., T, Dh) float64
        positions = torch.arange(start, start + shape[-2])  # (T,)
        angles = positional.rotary_angles(positions, shape[-1], base, torch.float64)  # (T, Dh/2)
        cases.append(Case((x, angles)))
    mistakes = [
        Mistake(
            "you rotate the wrong way: the pair (a, b) becomes (a cos - b sin, a sin + b cos), a "
            "turn by +angle. (The opposite turn keeps the relative-position property too, but it "
            "is not the paper's convention, so weights trained one way break the other.)",
            lambda x, angles: positional.apply_rotary(x, -angles),
        ),
        Mistake(
            "you pair dimension i with i + Dh/2 (the 'rotate_half' layout of GPT-NeoX and "
            "Hugging Face's LLaMA). Both conventions work if used consistently, but this course "
            "follows the RoFormer paper: interleaved pairs (x[2i], x[2i+1]), even = x[..., 0::2], "
            "odd = x[..., 1::2].",
            _rotary_halves,
        ),
        Mistake(
            "put each rotated pair back in place, at (2i, 2i+1): torch.stack((new_even, new_odd), "
            "dim=-1).flatten(-2). torch.cat puts all the even results first.",
            _rotary_concatenated,
        ),
        Mistake(
            "the pair (2i, 2i+1) shares angle i: expand the angles with "
            "angles.repeat_interleave(2, dim=-1) ([a0, a0, a1, a1, ...]), not .repeat or torch.cat "
            "([a0, a1, ..., a0, a1, ...]).",
            _rotary_tiled_angles,
        ),
    ]
    return check_function(_name(fn, "apply_rotary"), fn, positional.apply_rotary, cases, mistakes)


def _name(fn, default: str) -> str:
    """The learner's name for the function (e.g. `my_apply_rotary`), for the verdict."""
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else default


def _rotary_halves(x, angles):
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]  # (..., T, Dh/2) each
    cos, sin = angles.cos(), angles.sin()  # (T, Dh/2) each
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


def _rotary_concatenated(x, angles):
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, Dh/2) each
    cos, sin = angles.cos(), angles.sin()  # (T, Dh/2) each
    return torch.cat((even * cos - odd * sin, even * sin + odd * cos), dim=-1)


def _rotary_tiled_angles(x, angles):
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (T, Dh) tiled
    swapped = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)  # (..., T, Dh)
    return x * cos + swapped * sin
