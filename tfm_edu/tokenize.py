"""Turning text into integer ids and back.

- `CharTokenizer`: one id per character, plus special tokens. Small vocabularies and no
  out-of-vocabulary words make it ideal for toy tasks such as translating date formats.
- `WordPiece` (chapter 7): BERT's sub-word tokenizer, reading a real `vocab.txt`; `split_word`
  is its greedy longest-match split of one word.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["CharTokenizer", "UnknownCharactersWarning", "WordPiece", "Encoding", "split_word"]


class CharTokenizer:
    """Characters <-> ids. Ids 0-3 are the specials [PAD], [BOS], [EOS], [UNK]."""

    specials = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str], *, unknown: str = "error") -> None:
        """
        Args:
            chars: the alphabet; duplicates are dropped, order is kept (so ids are stable).
            unknown: what `encode` does by default with a character outside the alphabet:
                "error" (raise ValueError naming it) or "unk" (map it to [UNK] and warn once
                per call with an `UnknownCharactersWarning` naming the characters).
        """
        alphabet = list(dict.fromkeys(chars))
        if any(len(c) != 1 for c in alphabet):
            raise ValueError("CharTokenizer takes single characters")
        _check_unknown(unknown)
        self.unknown = unknown
        self.itos: list[str] = [*self.specials, *alphabet]
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def unknown_chars(self, text: str) -> list[str]:
        """The characters of `text` outside the alphabet (sorted, each once)."""
        return sorted({c for c in text if c not in self.stoi or self.stoi[c] < len(self.specials)})

    def encode(
        self,
        text: str,
        add_bos: bool = False,
        add_eos: bool = False,
        unknown: str | None = None,
    ) -> list[int]:
        """text -> ids.

        Args:
            unknown: "error" raises ValueError listing characters outside the alphabet;
                "unk" maps each of them to [UNK] with an `UnknownCharactersWarning`;
                "unk-quiet" does the same without the warning (for callers that say it
                themselves); None uses the tokenizer's own setting.
        """
        unknown = self.unknown if unknown is None else unknown
        _check_unknown(unknown, quiet_allowed=True)
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        bad = self.unknown_chars(text)
        if bad and unknown == "error":
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise ValueError(f"characters outside the vocabulary: {bad!r} in {shown!r}")
        if bad and unknown == "unk":
            count = sum(c in bad for c in text)
            warnings.warn(
                f"{count} character(s) outside the vocabulary read as [UNK]: {bad!r}",
                UnknownCharactersWarning,
                stacklevel=2,
            )
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
        unknown: str | None = None,
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
        state = {"type": "CharTokenizer", "chars": "".join(self.itos[len(self.specials) :])}
        if self.unknown != "error":
            state["unknown"] = self.unknown
        return state

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        if state.get("type") != "CharTokenizer" or "chars" not in state:
            raise ValueError(f"not a CharTokenizer description: {state!r}")
        return cls(state["chars"], unknown=state.get("unknown", "error"))


class UnknownCharactersWarning(UserWarning):
    """Text held characters outside a `CharTokenizer`'s alphabet; they were read as [UNK]."""


def _check_unknown(unknown: str, quiet_allowed: bool = False) -> None:
    allowed = ("error", "unk", "unk-quiet") if quiet_allowed else ("error", "unk")
    if unknown not in allowed:
        raise ValueError(f"unknown must be one of {allowed}, got {unknown!r}")


# ---------------------------------------------------------------------------------------------
# WordPiece: BERT's tokenizer (Devlin et al., 2019, section 3; Wu et al., 2016, section 4.1)
# ---------------------------------------------------------------------------------------------

# The CJK Unified Ideographs blocks: BERT puts spaces around each such character, so Chinese and
# Japanese kanji are tokenized one character at a time (Hiragana, Katakana, Hangul are not here).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


# Special tokens typed in a text are matched before any normalisation, as Hugging Face does.
_SPECIAL_PATTERN = re.compile(
    r"(\[(?:PAD|UNK|CLS|SEP|MASK)\])|(?:(?!\[(?:PAD|UNK|CLS|SEP|MASK)\]).)+", re.S
)


@dataclass(frozen=True)
class Encoding:
    """One tokenized text (or text pair), ready for a BERT."""

    ids: list[int]  # token ids, with [CLS]/[SEP]
    tokens: list[str]  # the same tokens as strings
    offsets: list[tuple[int, int]]  # (start, end) of each token in its input text; (0, 0) = special
    type_ids: list[int]  # segment of each token: 0 = first text, 1 = second text
    truncated: bool = False  # True if tokens were dropped to fit max_length


class WordPiece:
    """BERT's tokenizer: basic clean-up and splitting, then greedy longest-match sub-words.

    Two stages, as in Google's original `tokenization.py` and Hugging Face `tokenizers`:

    1. basic tokenizer: drop control characters, turn every whitespace into a space, put spaces
       around CJK ideographs, (optionally) strip accents (NFD, drop combining marks) and
       lower-case, then split on whitespace and make each punctuation character its own word;
    2. WordPiece: split each word greedily into the longest vocabulary pieces from the left; pieces
       after the first carry the "##" prefix. A word that cannot be covered, or is longer than
       `max_chars_per_word` characters, becomes a single [UNK].
    """

    def __init__(
        self,
        vocab: Sequence[str],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        max_chars_per_word: int = 100,
    ) -> None:
        """
        Args:
            vocab: the tokens, id = position (as the lines of BERT's `vocab.txt`); must contain
                [PAD], [UNK], [CLS], [SEP] and [MASK].
            lowercase: lower-case the text (an "uncased" model).
            strip_accents: drop accents; None = do it when lower-casing (BERT's rule).
            max_chars_per_word: longer words become [UNK] without being split.
        """
        self.itos: list[str] = list(vocab)
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("the vocabulary has duplicate tokens")
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in self.stoi]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.max_chars_per_word = max_chars_per_word
        self.pad_id, self.unk_id = self.stoi["[PAD]"], self.stoi["[UNK]"]
        self.cls_id, self.sep_id = self.stoi["[CLS]"], self.stoi["[SEP]"]
        self.mask_id = self.stoi["[MASK]"]
        self.special_ids = frozenset(
            self.stoi[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
        )

    @classmethod
    def from_file(cls, path: str | Path, **options) -> WordPiece:
        """Read a `vocab.txt` (one token per line, id = line number)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: vocabulary file not found")
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the file ends with a newline
        return cls([line.rstrip("\r") for line in lines], **options)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        """text -> WordPiece tokens, without [CLS]/[SEP]."""
        return [token for token, _ in self._pieces(text)]

    def encode(self, text: str, pair: str | None = None) -> list[int]:
        """text (and optionally a second text) -> ids: [CLS] text [SEP] (pair [SEP]), no padding."""
        return self.encoding(text, pair).ids

    def encoding(
        self, text: str, pair: str | None = None, max_length: int | None = None
    ) -> Encoding:
        """Tokenize one text or a pair, with offsets into the original texts and segment ids.

        Args:
            text: the first (or only) text.
            pair: an optional second text (BERT's sentence B), after the first [SEP].
            max_length: keep at most this many tokens, specials included, by dropping tokens
                from the end of the longer text first (`Encoding.truncated` says if it happened).
        """
        first = self._pieces(text)
        second = self._pieces(pair) if pair is not None else None
        specials = 2 if second is None else 3
        truncated = False
        if max_length is not None:
            if max_length < specials + 1:
                raise ValueError(f"max_length={max_length} leaves no room for text tokens")
            while len(first) + len(second or []) + specials > max_length:
                truncated = True
                if second and len(second) > len(first):
                    second.pop()
                else:
                    first.pop()
        tokens, offsets, type_ids = ["[CLS]"], [(0, 0)], [0]
        for segment, pieces in enumerate([first] if second is None else [first, second]):
            tokens += [token for token, _ in pieces] + ["[SEP]"]
            offsets += [span for _, span in pieces] + [(0, 0)]
            type_ids += [segment] * (len(pieces) + 1)
        ids = [self.stoi[token] for token in tokens]
        return Encoding(ids, tokens, offsets, type_ids, truncated)

    def batch_encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> dict[str, Tensor]:
        """Several texts (or pairs) -> a padded batch, ready for `model(**batch)`.

        Returns:
            {"input_ids": (B, T) int64, "attention_mask": (B, T) bool (True = real token),
             "token_type_ids": (B, T) int64}, right-padded with [PAD] to the longest.
        """
        if isinstance(texts, str):
            raise ValueError("batch_encode takes a list of texts; use encode() for one text")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        encodings = [
            self.encoding(t, None if pairs is None else pairs[i], max_length)
            for i, t in enumerate(texts)
        ]
        longest = max((len(e.ids) for e in encodings), default=0)
        input_ids = torch.full((len(encodings), longest), self.pad_id, dtype=torch.long)  # (B, T)
        token_type_ids = torch.zeros((len(encodings), longest), dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(encodings), longest), dtype=torch.bool)  # (B, T)
        for row, e in enumerate(encodings):
            input_ids[row, : len(e.ids)] = torch.tensor(e.ids)
            token_type_ids[row, : len(e.ids)] = torch.tensor(e.type_ids)
            attention_mask[row, : len(e.ids)] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """ids -> text: "##" pieces are glued to the previous token (accents and case stay lost)."""
        words: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary (size {len(self.itos)})")
            if skip_special and i in self.special_ids and i != self.unk_id:
                continue
            token = self.itos[i]
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)

    def normalize(self, text: str) -> tuple[str, list[int]]:
        """BERT's clean-up of `text`, and for each output character the index it came from."""
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        chars: list[str] = []
        origins: list[int] = []
        for index, char in enumerate(text):
            if char in "\x00\ufffd" or _is_control(char):
                continue  # invisible control characters are dropped
            if char.isspace():
                out = " "
            else:
                # CJK ideographs become words of their own; they still go through NFD below.
                out = f" {char} " if _is_cjk(char) else char
                if self.strip_accents:  # NFD splits "é" into "e" + U+0301, then drop the mark
                    out = "".join(
                        c
                        for c in unicodedata.normalize("NFD", out)
                        if unicodedata.category(c) != "Mn"
                    )
                if self.lowercase:
                    out = out.lower()
            chars.extend(out)
            origins.extend([index] * len(out))
        return "".join(chars), origins

    def _pieces(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """text -> [(token, (start, end) in text)]. Special tokens written in the text, such as
        "[MASK]", are kept whole (so "the [MASK] was good" works)."""
        if not isinstance(text, str):
            raise ValueError(f"expected a string, got {type(text).__name__}")
        pieces = []
        for chunk in _SPECIAL_PATTERN.finditer(text):
            if chunk.group(1):  # a special token
                pieces.append((chunk.group(1), chunk.span()))
                continue
            normalized, origins = self.normalize(chunk.group(0))
            origins = [chunk.start() + i for i in origins]  # indices into the whole text
            for start, end in _split_words(normalized):
                pieces.extend(self._wordpiece(normalized, origins, start, end))
        return pieces

    def _wordpiece(self, normalized: str, origins: list[int], start: int, end: int):
        """normalized[start:end] -> [(piece, (start, end) in the original text)]."""
        pieces = split_word(normalized[start:end], self.stoi, self.max_chars_per_word)
        if pieces == ["[UNK]"]:
            return [("[UNK]", (origins[start], origins[end - 1] + 1))]
        spans, begin = [], start
        for piece in pieces:
            stop = begin + len(piece.removeprefix("##"))
            spans.append((piece, (origins[begin], origins[stop - 1] + 1)))
            begin = stop
        return spans

    def to_dict(self) -> dict:
        """A JSON-able description (stored in checkpoint cards)."""
        return {
            "type": "WordPiece",
            "vocab": self.itos,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
        }

    @classmethod
    def from_dict(cls, state: dict) -> WordPiece:
        if state.get("type") != "WordPiece" or "vocab" not in state:
            raise ValueError(f"not a WordPiece description: {str(state)[:80]!r}")
        return cls(state["vocab"], state["lowercase"], state["strip_accents"])


def split_word(word: str, vocab: Container[str], max_chars: int = 100) -> list[str]:
    """WordPiece's greedy longest-match-first split of one (normalised) word.

    Take the longest piece of the rest of the word that is in the vocabulary, from the left;
    pieces after the first carry the "##" prefix. If some part cannot be covered, or the word has
    more than `max_chars` characters, the whole word becomes ["[UNK]"].

    >>> split_word("unaffable", {"un", "##aff", "##able"})
    ['un', '##aff', '##able']
    """
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces, begin = [], 0
    while begin < len(word):
        stop = len(word)
        while stop > begin:  # shrink the candidate from the right until it is in the vocab
            piece = word[begin:stop] if begin == 0 else "##" + word[begin:stop]
            if piece in vocab:
                break
            stop -= 1
        if stop == begin:
            return ["[UNK]"]  # one uncoverable piece makes the whole word unknown
        pieces.append(piece)
        begin = stop
    return pieces


def _is_control(char: str) -> bool:
    """Unicode "other" characters (Cc, Cf, Cn, Co, Cs), except tab and newlines."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    """ASCII symbols ($, +, <, ^, `...) count as punctuation for BERT, as do Unicode P* classes."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _split_words(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word: split on spaces, and each punctuation character alone."""
    spans, start = [], None
    for i, char in enumerate(text):
        if char == " " or _is_punctuation(char):
            if start is not None:
                spans.append((start, i))
                start = None
            if char != " ":
                spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans
