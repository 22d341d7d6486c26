"""Chapter 9's text: the interactive help texts of the Python standard library.

Every Python ships them: `pydoc_data.topics.topics` holds the text that `help("assert")`,
`help("for")` and the other 79 keyword and topic pages print (about 465,000 characters of real
English and Python, under the PSF licence). We read them from the learner's own Python at run
time and never store them.

- `help_texts()`: the corpus, `"\\n\\n".join(topics[k] for k in sorted(topics))`;
- `describe(text)`: its size, distinct characters, sha256 and the Python it came from, so a card
  can say exactly what a model was trained on (the texts change a little between versions);
- `split(text)`: the first 90 % of the characters for training, the last 10 % for validation
  (nanoGPT's convention for character data);
- `char_tokenizer(text)`: one id per distinct character, unknown characters read as [UNK];
- `random_windows` / `batches`: random (input, next-character) windows for training;
- `eval_windows`: the whole validation text cut into consecutive windows, every character
  predicted exactly once, for a validation loss that does not depend on a random draw.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from tfm_edu.tokenize import CharTokenizer

__all__ = [
    "TRAIN_FRACTION",
    "CorpusInfo",
    "help_texts",
    "describe",
    "split",
    "char_tokenizer",
    "encode",
    "random_windows",
    "batches",
    "eval_windows",
]

TRAIN_FRACTION = 0.9  # the first 90 % of the characters train, the last 10 % validate


@dataclass(frozen=True)
class CorpusInfo:
    """What a text is, in a few numbers a checkpoint card can store."""

    characters: int  # its length
    distinct: int  # how many different characters it uses
    sha256: str  # of its UTF-8 bytes: two corpora are the same text exactly when these agree
    python: str  # the Python version that supplied it, e.g. "3.11.7"


def help_texts() -> str:
    """The standard library's interactive help texts, joined in the order of their names."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def describe(text: str) -> CorpusInfo:
    """Length, distinct characters, sha256 and this Python's version, for `text`."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return CorpusInfo(len(text), len(set(text)), digest, platform.python_version())


def split(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """(train, val): the first `train_fraction` of the characters, then the rest."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]


def char_tokenizer(text: str) -> CharTokenizer:
    """A tokenizer with one id per distinct character of `text` (sorted), after the 4 specials.

    A character it has not seen (the help texts of another Python may have a few) is read as
    [UNK], with an `UnknownCharactersWarning` that names it.
    """
    return CharTokenizer(sorted(set(text)), unknown="unk")


def encode(text: str, tokenizer: CharTokenizer) -> Tensor:
    """A whole text -> (N,) int64 ids (unknown characters -> [UNK], with a warning)."""
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)  # (N,)


def random_windows(
    ids: Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """A batch of windows at random places in `ids`, each with its next characters.

    Args:
        ids: (N,) the encoded text, N > block_size.
        block_size: T, the length of each window.
        batch_size: B, how many windows.
        generator: for reproducible draws.

    Returns:
        inputs (B, T) = ids[s : s + T] and targets (B, T) = ids[s + 1 : s + T + 1]: position t
        of a window is scored on the character that follows it.
    """
    _check_ids(ids, block_size)
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = starts[:, None] + torch.arange(block_size)  # (B, T)
    return ids[offsets], ids[offsets + 1]  # (B, T), (B, T)


def batches(
    ids: Tensor, block_size: int, batch_size: int, seed: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless `random_windows` batches from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield random_windows(ids, block_size, batch_size, generator)


def eval_windows(ids: Tensor, block_size: int) -> list[tuple[Tensor, Tensor]]:
    """Cut `ids` into consecutive windows so that every character after the first is predicted
    exactly once (the first character of each window starts with no context).

    Args:
        ids: (N,) the encoded validation text.
        block_size: T, the window length (the model's context).

    Returns:
        A list of (inputs, targets) pairs: one (W, T) pair of the full windows, then, if N - 1
        is not a multiple of T, one (1, T') pair of what is left. Together they predict the
        N - 1 characters ids[1:].
    """
    _check_ids(ids, block_size)
    inputs, targets = ids[:-1], ids[1:]  # (N - 1,) each
    full = (len(inputs) // block_size) * block_size
    windows = [(inputs[:full].view(-1, block_size), targets[:full].view(-1, block_size))]
    if full < len(inputs):
        windows.append((inputs[full:][None], targets[full:][None]))  # (1, T')
    return windows


def _check_ids(ids: Tensor, block_size: int) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        raise ValueError(f"ids must be a (N,) int64 tensor, got {getattr(ids, 'shape', ids)!r}")
    if not isinstance(block_size, int) or not 1 <= block_size < len(ids):
        raise ValueError(f"need 1 <= block_size < N = {len(ids)}, got {block_size!r}")
