"""Turning text into integer ids and back.

- `CharTokenizer`: one id per character, plus special tokens. Small vocabularies and no
  out-of-vocabulary words make it ideal for toy tasks such as translating date formats.
- `WordPiece` (chapter 7): BERT's sub-word tokenizer, reading a real `vocab.txt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["CharTokenizer"]


class CharTokenizer:
    """Characters <-> ids. Ids 0-3 are the specials [PAD], [BOS], [EOS], [UNK]."""

    specials = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str]) -> None:
        """chars: the alphabet; duplicates are dropped, order is kept (so ids are stable)."""
        alphabet = list(dict.fromkeys(chars))
        if any(len(c) != 1 for c in alphabet):
            raise ValueError("CharTokenizer takes single characters")
        self.itos: list[str] = [*self.specials, *alphabet]
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def unknown_chars(self, text: str) -> list[str]:
        """The characters of `text` outside the alphabet (sorted, each once)."""
        return sorted({c for c in text if c not in self.stoi or self.stoi[c] < len(self.specials)})

    def encode(
        self, text: str, add_bos: bool = False, add_eos: bool = False, unknown: str = "error"
    ) -> list[int]:
        """text -> ids.

        Args:
            unknown: "error" raises ValueError listing characters outside the alphabet;
                "unk" maps each of them to [UNK].
        """
        if unknown not in ("error", "unk"):
            raise ValueError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        bad = self.unknown_chars(text)
        if bad and unknown == "error":
            raise ValueError(f"characters outside the vocabulary: {bad!r} in {text!r}")
        ids = [self.stoi.get(c, self.unk_id) if c not in bad else self.unk_id for c in text]
        return [self.bos_id] * add_bos + ids + [self.eos_id] * add_eos

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """ids -> text, dropping specials (and everything after [EOS] when `stop_at_eos`)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            if i >= len(self.specials):
                out.append(self.itos[i])
        return "".join(out)

    def batch_encode(
        self,
        texts: Sequence[str],
        add_bos: bool = False,
        add_eos: bool = False,
        unknown: str = "error",
    ) -> Tensor:
        """A list of strings -> (B, T) int64, right-padded with [PAD] to the longest."""
        encoded = [self.encode(t, add_bos, add_eos, unknown) for t in texts]
        longest = max((len(e) for e in encoded), default=0)
        batch = torch.full((len(encoded), longest), self.pad_id, dtype=torch.long)  # (B, T)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

    def to_dict(self) -> dict:
        """A JSON-able description (stored in checkpoint cards)."""
        return {"type": "CharTokenizer", "chars": "".join(self.itos[len(self.specials) :])}

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        if state.get("type") != "CharTokenizer" or "chars" not in state:
            raise ValueError(f"not a CharTokenizer description: {state!r}")
        return cls(state["chars"])
