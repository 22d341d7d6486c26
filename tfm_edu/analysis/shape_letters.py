"""Shapes in the course's letters: (2, 4, 6, 9) -> "(B, H, T, S)".

One shape vocabulary for the whole course (STYLE.md): B batch, T query length, S key length,
P patches, D model width, H heads, Dh head width, d_ff feed-forward width, V vocabulary, N
classes, p²C the numbers in one flattened patch. An axis is read by where it sits, in the
layouts our models use: batch first, then heads, lengths (T, S, P) in the middle, widths last,
so a ViT with P = H = 4 still reads (B, P, D) and (B, H, T, T). Two letters that could stand at
the same place with the same number (T = S, or T = Dh in (B, H, T, ·)) cannot be told apart:
both are written, "T|S", and `ambiguity_notes` says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

__all__ = ["LENGTHS", "WIDTHS", "shape_symbols", "ambiguity_notes"]

LENGTHS = ("T", "S", "P")  # letters that count tokens: they sit between B and a width
WIDTHS = ("D", "d_ff", "V", "N", "p²C")  # letters that measure one token: they come last


def shape_symbols(shape: tuple[int, ...], letters: dict[str, int]) -> str:
    """Write a shape in the course's letters, reading each axis by its position.

    Args:
        shape: e.g. (2, 4, 6, 9).
        letters: {letter: size}, e.g. {"B": 2, "H": 4, "T": 6, "S": 9, ...}.

    Returns:
        e.g. "(B, H, T, S)". Where two letters of one kind share the number, both: "(B, T|S, D)";
        a number no letter has stays a number.
    """
    shape = tuple(int(n) for n in shape)
    matches = [p for p in _patterns(letters, len(shape)) if _fits(p, shape, letters)]
    axes = []
    for i, n in enumerate(shape):
        names = list(dict.fromkeys(p[i] for p in matches))
        if not matches:  # not a pattern of the course: any letter with that number
            names = [k for k, v in letters.items() if v == n and v != 1] or [str(n)]
        axes.append("|".join(names))
    return "(" + ", ".join(axes) + (",)" if len(axes) == 1 else ")")


def _patterns(letters: dict[str, int], rank: int) -> list[tuple[str, ...]]:
    L = [x for x in LENGTHS if x in letters] + ["1"]
    W = [x for x in WIDTHS if x in letters]
    by_rank = {
        1: [(x,) for x in L],
        2: [("B", x) for x in L + W] + list(itertools.product(L, L + W)),
        3: [("B", x, w) for x in L for w in W],
        4: [("B", "H", x, y) for x in L for y in [*L, "Dh"]]
        + [("B", "1", "1", x) for x in L] + [("B", "C", "img", "img")],
    }  # fmt: skip
    return by_rank.get(rank, [])


def _fits(pattern: tuple[str, ...], shape: tuple[int, ...], letters: dict[str, int]) -> bool:
    return all(
        n == (1 if p == "1" else letters.get(p, -1)) for p, n in zip(pattern, shape, strict=True)
    )


def ambiguity_notes(symbols: Iterable[str], letters: dict[str, int]) -> list[str]:
    """One note per group of letters that had to be written together, e.g. "T|S".

    Args:
        symbols: shapes as `shape_symbols` wrote them, e.g. ["(B, H, T|S, T|S)", ...].
        letters: the {letter: size} they were written with.
    """
    shown = {axis for s in symbols for axis in s.strip("(,)").split(", ") if "|" in axis}
    notes = []
    for axis in sorted(shown):
        names = axis.split("|")
        value = letters.get(names[0], 1)
        notes.append(
            f"{' = '.join(names)} = {value}: where either could stand, the table cannot tell "
            f"them apart and writes {axis}; give them different numbers to see which is which."
        )
    return notes
