"""Chapter 5's data: dates written the way people write them, paired with their ISO 8601 form.

    "3rd of March 1998"        -> "1998-03-03"
    "TUESDAY, MARCH 3, 1998"   -> "1998-03-03"
    "03.03.1998"               -> "1998-03-03"   (day first, as in most of Europe)

A small translation task (the idea comes from the date-normalisation exercise of Andrew Ng's
deep-learning course) that a Transformer learns in about a minute on a laptop CPU, and whose
cross-attention is easy to read: the "1998" of the output should look at the "1998" of the input,
the "03" of the month at "March".

Every date from 1900-01-01 to 2099-12-31 can appear. Years always have four digits: "03/03/98"
could be 1898, 1998 or 2098, and no model can learn what the data does not say.

The splits are made of *dates*, not sentences: the dates are shuffled with the seed and cut into
test, validation and training dates, so a test date never appears in training, in any style.
`date_tokenizer`, `encode_pairs` and `batches` turn the pairs into a model's (B, L) ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import torch
from torch import Tensor

from tfm_edu.tokenize import CharTokenizer

__all__ = [
    "FIRST_DATE",
    "LAST_DATE",
    "MONTHS",
    "WEEKDAYS",
    "STYLES",
    "ALPHABET",
    "all_dates",
    "to_iso",
    "format_date",
    "random_example",
    "DateSplits",
    "make_splits",
    "date_tokenizer",
    "encode_pairs",
    "batches",
]

FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2099, 12, 31)
# Written out rather than taken from `calendar`, whose names follow the machine's locale.
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _day(d: date, rng: random.Random) -> str:
    """The day of the month, sometimes zero-padded ("3" or "03")."""
    return f"{d.day:02d}" if rng.random() < 0.2 else str(d.day)


def _comma(rng: random.Random) -> str:
    """A comma, usually followed by a space; people also forget either."""
    return rng.choice([", ", ", ", ", ", ",", " "])


# style name -> function(date, rng) -> words joined by single spaces (spacing is varied later).
STYLES: dict[str, Callable[[date, random.Random], str]] = {
    "day month year": lambda d, r: f"{_day(d, r)} {MONTHS[d.month - 1]} {d.year}",
    "month day, year": lambda d, r: f"{MONTHS[d.month - 1]} {d.day}{_comma(r)}{d.year}",
    "mon day year": lambda d, r: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    "day mon year": lambda d, r: f"{_day(d, r)} {MONTHS[d.month - 1][:3]} {d.year}",
    "ordinal of month year": lambda d, r: f"{_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    "month ordinal, year": lambda d, r: (
        f"{MONTHS[d.month - 1]} {_ordinal(d.day)}{_comma(r)}{d.year}"
    ),
    "weekday, month day, year": lambda d, r: (
        f"{WEEKDAYS[d.weekday()]}{_comma(r)}{MONTHS[d.month - 1]} {d.day}{_comma(r)}{d.year}"
    ),
    "wkd day mon year": lambda d, r: (
        f"{WEEKDAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}"
    ),
    "dd.mm.yyyy": lambda d, r: (
        f"{d.day:02d}.{d.month:02d}.{d.year}"
        if r.random() < 0.65
        else f"{d.day}.{d.month}.{d.year}"
    ),
    "yyyy/mm/dd": lambda d, r: (
        f"{d.year}/{d.month:02d}/{d.day:02d}"
        if r.random() < 0.65
        else f"{d.year}/{d.month}/{d.day}"
    ),
}

# Every character a generated date can contain (the translator's vocabulary is built from it).
ALPHABET = " ,./-0123456789" + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def all_dates() -> list[date]:
    """Every date from FIRST_DATE to LAST_DATE, in order (73,049 of them)."""
    days = (LAST_DATE - FIRST_DATE).days + 1
    return [FIRST_DATE + timedelta(days=i) for i in range(days)]


def to_iso(d: date) -> str:
    """The target: "YYYY-MM-DD"."""
    return d.isoformat()


def format_date(d: date, style: str, rng: random.Random) -> str:
    """Write `d` in one of the STYLES, with random letter case and spacing.

    Args:
        d: a date between FIRST_DATE and LAST_DATE.
        style: a key of STYLES.
        rng: the random source (choices of case, spacing, padding).

    Returns:
        The text, e.g. "tuesday,  march 3,1998".
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {list(STYLES)}")
    if not FIRST_DATE <= d <= LAST_DATE:
        raise ValueError(f"date {d} is outside {FIRST_DATE} ... {LAST_DATE}")
    text = STYLES[style](d, rng)
    case = rng.random()
    if case < 0.2:
        text = text.lower()
    elif case < 0.35:
        text = text.upper()
    if rng.random() < 0.15:  # a double space somewhere, as typed in a hurry
        words = text.split(" ")
        if len(words) > 1:
            gap = rng.randrange(len(words) - 1)
            text = " ".join(words[: gap + 1]) + "  " + " ".join(words[gap + 1 :])
    return text


def random_example(d: date, rng: random.Random) -> tuple[str, str]:
    """(text in a random style, ISO target) for the date `d`."""
    return format_date(d, rng.choice(list(STYLES)), rng), to_iso(d)


@dataclass(frozen=True)
class DateSplits:
    """Training, validation and test pairs (text, ISO); the three sets of dates are disjoint."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    seed: int


def make_splits(
    seed: int = 0, num_train: int = 60_000, num_val: int = 1_000, num_test: int = 2_000
) -> DateSplits:
    """Cut the 73,049 dates into disjoint test / validation / training dates, then write examples.

    Test and validation have one example per date (each date once, in a random style); training
    examples draw their dates, with replacement, from the remaining ~70,000 training dates.

    Args:
        seed: the same seed always gives the same splits and the same sentences.
        num_train, num_val, num_test: number of (text, ISO) pairs in each split.

    Returns:
        DateSplits.
    """
    dates = all_dates()
    if min(num_train, num_val, num_test) < 0 or num_val + num_test >= len(dates):
        raise ValueError(
            f"need non-negative sizes and num_val + num_test < {len(dates)}, "
            f"got num_train={num_train}, num_val={num_val}, num_test={num_test}"
        )
    rng = random.Random(seed)
    rng.shuffle(dates)
    test_dates = dates[:num_test]
    val_dates = dates[num_test : num_test + num_val]
    train_dates = dates[num_test + num_val :]
    test = [random_example(d, rng) for d in test_dates]
    val = [random_example(d, rng) for d in val_dates]
    train = [random_example(rng.choice(train_dates), rng) for _ in range(num_train)]
    return DateSplits(train=train, val=val, test=test, seed=seed)


def date_tokenizer() -> CharTokenizer:
    """Characters of every generated date (and of the ISO answers)."""
    return CharTokenizer(ALPHABET)


def encode_pairs(
    pairs: Sequence[tuple[str, str]], tokenizer: CharTokenizer
) -> tuple[Tensor, Tensor]:
    """[(text, iso), ...] -> source (N, S) ids and target (N, T+2) ids = [BOS] iso [EOS]."""
    source = tokenizer.batch_encode([text for text, _ in pairs])  # (N, S)
    target = tokenizer.batch_encode([iso for _, iso in pairs], add_bos=True, add_eos=True)
    return source, target  # (N, S), (N, T + 2)


def batches(
    source: Tensor, target: Tensor, batch_size: int, seed: int = 0, pad_id: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches (source (B, S_b), target (B, T)), trimmed to the batch's longest.

    Bucketing by length: each pool of 32 batches is sorted by source length before it is cut,
    so a batch holds texts of similar length and little compute is spent on padding (dates run
    from 8 to 30 characters). The batches of a pool are then served in random order.
    """
    if len(source) < batch_size or len(source) != len(target):
        raise ValueError(
            f"need as many sources as targets and at least batch_size={batch_size} of them, "
            f"got {len(source)} sources and {len(target)} targets"
        )
    generator = torch.Generator().manual_seed(seed)
    lengths = (source != pad_id).sum(dim=1)  # (N,)
    pool = 32 * batch_size
    while True:
        order = torch.randperm(len(source), generator=generator)  # (N,)
        for pool_start in range(0, len(order) - batch_size + 1, pool):
            rows = order[pool_start : pool_start + pool]  # (P,)
            rows = rows[lengths[rows].argsort(stable=True)]  # (P,) shortest first
            starts = range(0, len(rows) - batch_size + 1, batch_size)
            for i in torch.randperm(len(starts), generator=generator).tolist():
                batch = rows[starts[i] : starts[i] + batch_size]  # (B,)
                longest = int(lengths[batch].max())
                yield source[batch, :longest], target[batch]  # (B, S_b), (B, T)
