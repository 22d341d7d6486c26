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

Chapter 10 reads the same texts as English sentences (`sentences`, `sentence_split`: the
sentences of the last 10 % of the characters are held out, as the characters are in chapter 9),
and can mix in the course's grammar sentences (`mix_grammar`), for a teacher to embed and a
student to imitate. The help texts alone give only ~1,300 training sentences, so chapter 10 also
reads the docstrings of the standard library's own modules, classes and functions
(`docstring_sentences`: parsed with `ast` from the learner's .py files, never imported, never
stored), split by module so that held-out sentences come from modules the student never saw
(`module_bucket`, `docstring_split`); `distill_sentences` combines both sources with a card-ready
description of what was read.
"""

from __future__ import annotations

import ast
import hashlib
import platform
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from tfm_edu.data.sentences import make_sentence
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
    "SENTENCE_WORDS",
    "sentence_spans",
    "sentences",
    "sentence_split",
    "mix_grammar",
    "DOCSTRING_SKIP",
    "HELD_OUT_BUCKETS",
    "VALIDATION_BUCKETS",
    "docstring_sentences",
    "module_bucket",
    "docstring_split",
    "DistillSentences",
    "distill_sentences",
]

TRAIN_FRACTION = 0.9  # the first 90 % of the characters train, the last 10 % validate
SENTENCE_WORDS = (5, 50)  # a kept sentence has this many words, bounds included
_PARAGRAPH = re.compile(r"[^\n]+(?:\n[^\n]+)*")  # lines up to a blank line
_BULLET = re.compile(r"^( *)([*-]|\d+\.) ")  # "  * item", "- item", "1. item"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(]?[A-Z])")  # ". " before a capital letter
_FOOTNOTE = re.compile(r" ?\[\d+\]")  # "[4]"
DOCSTRING_SKIP = ("test", "tests", "idlelib", "lib2to3", "site-packages")  # folders not read
HELD_OUT_BUCKETS = 10  # modules with module_bucket < 10 (of 100) are held out for testing
VALIDATION_BUCKETS = 5  # the next 5 buckets validate (choices made while training)
_PROSE = set(" ,.;:'\"“”’()-*")  # besides letters, what English prose is made of (*emphasis*)


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


def sentence_spans(text: str | None = None) -> list[tuple[int, int, str]]:
    """The English sentences of the help texts, with where their paragraph lies in the text.

    The rule, deterministic:
    1. paragraphs are runs of non-blank lines;
    2. code, grammar rules and tables are indented (by 3 spaces or more, or unevenly), so a
       paragraph is kept only if all its lines start at one column (a list item's continuation
       lines at its text's column), and its bullet ("* ", "- ", "1. ") is dropped;
    3. its lines are joined, footnote marks ("[4]") removed, and it is cut after ".", "!" or "?"
       followed by a space and a capital letter;
    4. a sentence is kept if it starts with a capital letter, ends with ".", has
       `SENTENCE_WORDS` (5 to 50) words, and at least 90 % of its characters are letters,
       spaces, ordinary punctuation (, . ; : ' " ( ) -) or the "*" of *emphasis*: this drops
       sentences made mostly of inline code;
    5. only its first occurrence is kept (some help pages repeat others).

    Args:
        text: the help texts (default: `help_texts()`).

    Returns:
        [(start, end, sentence)], in the order of the text; start and end are the character
        offsets of the paragraph it comes from.
    """
    text = help_texts() if text is None else text
    spans, seen = [], set()
    low, high = SENTENCE_WORDS
    for match in _PARAGRAPH.finditer(text):
        lines = match.group().split("\n")
        bullet = _BULLET.match(lines[0])
        column = len(bullet.group(0)) if bullet else len(lines[0]) - len(lines[0].lstrip(" "))
        indents = {len(line) - len(line.lstrip(" ")) for line in lines[1:]}
        if (bullet is None and column >= 3) or indents - {column}:
            continue  # code, a grammar rule or a table
        paragraph = " ".join(line.strip() for line in lines)
        if bullet:
            paragraph = paragraph[len(bullet.group(0).strip()) + 1 :]
        paragraph = " ".join(_FOOTNOTE.sub("", paragraph).split())
        for sentence in _SENTENCE_END.split(paragraph):
            prose = sum(c.isalpha() or c in _PROSE for c in sentence)
            if (
                low <= len(sentence.split()) <= high
                and sentence[0].isupper()
                and sentence.endswith(".")
                and prose >= 0.9 * len(sentence)
                and sentence not in seen
            ):
                seen.add(sentence)
                spans.append((match.start(), match.end(), sentence))
    return spans


def sentences(text: str | None = None) -> list[str]:
    """All the English sentences of the help texts (see `sentence_spans` for the rule)."""
    return [sentence for _, _, sentence in sentence_spans(text)]


def sentence_split(
    text: str | None = None, train_fraction: float = TRAIN_FRACTION
) -> tuple[list[str], list[str]]:
    """(train, held_out) sentences, following `split`'s cut of the characters: a sentence whose
    paragraph ends before the cut trains, one whose paragraph starts at or after it is held out,
    and the paragraph that straddles the cut is left out of both."""
    text = help_texts() if text is None else text
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    cut = int(len(text) * train_fraction)
    spans = sentence_spans(text)
    train = [sentence for _, end, sentence in spans if end <= cut]
    held_out = [sentence for start, _, sentence in spans if start >= cut]
    return train, held_out


def mix_grammar(texts: list[str], count: int, *, seed: int = 0) -> list[str]:
    """`texts` with `count` sentences of the course's grammar (`tfm_edu.data.sentences`, e.g.
    "the plot was not very dull .") inserted at random places; the order of `texts` is kept.

    Args:
        texts: sentences (e.g. `sentence_split()[0]`).
        count: how many grammar sentences to add (0: `texts` unchanged).
        seed: the grammar's draws and the places.

    Returns:
        A new list of len(texts) + count sentences.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    rng = random.Random(seed)
    grammar = [make_sentence(rng).text for _ in range(count)]
    mixed = list(texts)
    for sentence in grammar:
        mixed.insert(rng.randrange(len(mixed) + 1), sentence)
    return mixed


# --- the standard library's docstrings -----------------------------------------------------------


def docstring_sentences(root: str | Path | None = None) -> dict[str, list[str]]:
    """The English sentences of the docstrings in the .py files under `root`, per module.

    Every .py file under `root` (sorted by path; none under a `DOCSTRING_SKIP` folder) is parsed
    with `ast`, never imported; a file that cannot be read or parsed is skipped. The docstrings of
    the module and of its classes and functions (`ast.get_docstring`, which removes their common
    indentation, in `ast.walk` order) are cut into sentences by `sentence_spans`' rule, and a
    sentence is kept only the first time it is seen in any module.

    Args:
        root: a folder of Python sources (default: this Python's standard library,
            `sysconfig.get_paths()["stdlib"]`).

    Returns:
        {module path relative to `root`, "/"-separated: [sentences]}, only modules with at least
        one sentence, in sorted order; empty if `root` holds no readable .py file (e.g. a Python
        that ships only .pyc files).
    """
    root = Path(sysconfig.get_paths()["stdlib"] if root is None else root)
    files = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if not set(DOCSTRING_SKIP) & set(path.relative_to(root).parts[:-1])
    )
    seen, modules = set(), {}
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for name in files:
        try:
            tree = ast.parse((root / name).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):  # unreadable, not UTF-8, or not Python 3
            continue
        kept = []
        for node in ast.walk(tree):
            docstring = ast.get_docstring(node) if isinstance(node, kinds) else None
            for sentence in sentences(docstring) if docstring else []:
                if sentence not in seen:
                    seen.add(sentence)
                    kept.append(sentence)
        if kept:
            modules[name] = kept
    return modules


def module_bucket(module: str) -> int:
    """A module's bucket in 0..99: the first 8 bytes of the sha256 of its path, mod 100.

    The same on every machine and every run (unlike `hash`), and independent of which other
    modules exist, so a module is held out on every Python that has it.
    """
    return int.from_bytes(hashlib.sha256(module.encode("utf-8")).digest()[:8], "big") % 100


def docstring_split(
    modules: dict[str, list[str]] | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, held_out) docstring sentences, split by module (`module_bucket`):
    buckets below `HELD_OUT_BUCKETS` are held out, the next `VALIDATION_BUCKETS` validate, the
    rest train. No module gives sentences to two parts.

    Args:
        modules: `docstring_sentences()`'s output (default: read it now).
    """
    modules = docstring_sentences() if modules is None else modules
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for name, kept in modules.items():
        bucket = module_bucket(name)
        validation_end = HELD_OUT_BUCKETS + VALIDATION_BUCKETS
        part = 2 if bucket < HELD_OUT_BUCKETS else 1 if bucket < validation_end else 0
        parts[part].extend(kept)
    return parts


@dataclass(frozen=True)
class DistillSentences:
    """Chapter 10's sentences: what trains, validates and tests the student, and their origin."""

    train: list[str]  # help-text and docstring training sentences
    validation: list[str]  # for choices made while training (which arm to ship)
    held_out: list[str]  # for the card's metrics only: text the student never saw
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> part -> count
    sha256: str = ""  # of the three lists (a change of any sentence changes it)
    python: str = ""  # the Python version that supplied the texts


def distill_sentences(
    *,
    max_train: int | None = None,
    max_validation: int = 300,
    max_held_out: int = 500,
    root: str | Path | None = None,
) -> DistillSentences:
    """The help texts' sentences (`sentence_split`: 90 % / 10 % of the characters) with the
    docstrings' (`docstring_split`, by module), deduplicated across the two sources.

    A sentence held out is removed from training and validation, one that trains is removed
    from validation. Each part is capped by keeping all the help texts' sentences and then the
    docstring sentences with the smallest sha256 (a fixed sample, in their original order), so
    that the part has at most `max_train`, `max_validation` or `max_held_out` sentences (a
    `max_train` below the help texts' count keeps their first `max_train`). If no
    docstrings can be read (sources missing), a notice is printed and the last 10 % of the help
    texts' training sentences validate instead.

    Args:
        max_train: the most training sentences (None: all, about 11,000 on Python 3.11).
        max_validation: the most validation sentences.
        max_held_out: the most held-out sentences (the help texts' are always all kept).
        root: the source folder for `docstring_sentences` (default: the standard library).
    """
    help_train, help_held_out = sentence_split()
    modules = docstring_sentences(root)
    doc_train, doc_validation, doc_held_out = docstring_split(modules)
    if not modules:
        print("no standard-library sources (.py) found: training on the help texts only")
        cut = int(len(help_train) * TRAIN_FRACTION)
        help_train, doc_validation = help_train[:cut], help_train[cut:]
    doc_held_out = _sample(doc_held_out, max_held_out - len(help_held_out))
    known = set(help_held_out)
    held_out = help_held_out + [s for s in doc_held_out if s not in known]
    held = set(held_out)
    help_train = [s for s in help_train if s not in held]
    known = set(help_train)
    doc_train = [s for s in doc_train if s not in held and s not in known]
    trained = set(help_train) | set(doc_train)
    validation = [s for s in doc_validation if s not in held and s not in trained]
    validation = _sample(validation, max_validation)
    if max_train is not None:  # the help texts' sentences first, then a sample of the rest
        help_train = help_train[:max_train]
        doc_train = _sample(doc_train, max_train - len(help_train))
    counts = {
        "help_texts": {"train": len(help_train), "held_out": len(help_held_out)},
        "docstrings": {
            "modules": len(modules),
            "train": len(doc_train),
            "validation": len(validation),
            "held_out": len(held_out) - len(help_held_out),
        },
    }
    digest = hashlib.sha256()
    for part in (help_train + doc_train, validation, held_out):
        digest.update("\n".join(part).encode("utf-8") + b"\0")
    return DistillSentences(
        help_train + doc_train, validation, held_out, counts, digest.hexdigest(),
        platform.python_version(),
    )  # fmt: skip


def _sample(texts: list[str], count: int | None) -> list[str]:
    """The `count` texts with the smallest sha256, in their original order (all if fewer)."""
    if count is None or len(texts) <= max(count, 0):
        return texts
    chosen = sorted(texts, key=lambda t: hashlib.sha256(t.encode("utf-8")).digest())[
        : max(count, 0)
    ]
    chosen = set(chosen)
    return [text for text in texts if text in chosen]
