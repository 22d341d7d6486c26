"""tfm_edu.data.dates: each style reads back to its date; splits are deterministic, disjoint."""

from __future__ import annotations

import random
import re
from datetime import date

import pytest

from tfm_edu.data.dates import (
    ALPHABET,
    FIRST_DATE,
    LAST_DATE,
    MONTHS,
    STYLES,
    WEEKDAYS,
    all_dates,
    format_date,
    make_splits,
)

TRICKY = [date(1998, 3, 3), date(1900, 1, 1), date(2099, 12, 31), date(2000, 2, 29)]


def _parse(text: str) -> date:
    """An independent reader of the generated styles (case- and spacing-insensitive)."""
    words = re.findall(r"[a-z]+|\d+", text.lower())
    months = [m.lower() for m in MONTHS]
    names = [w for w in words if w.isalpha() and w not in ("st", "nd", "rd", "th", "of")]
    numbers = [int(w) for w in words if w.isdigit()]
    month_names = [n for n in names if n[:3] in [m[:3] for m in months]]
    if month_names:
        month = [m[:3] for m in months].index(month_names[-1][:3]) + 1
        day, year = numbers
    elif numbers[0] >= 1000:
        year, month, day = numbers  # yyyy/mm/dd
    else:
        day, month, year = numbers  # dd.mm.yyyy
    return date(year, month, day)


@pytest.mark.parametrize("style", list(STYLES))
def test_every_style_reads_back_to_its_date(style):
    rng = random.Random(0)
    for d in TRICKY + random.Random(1).sample(all_dates(), 200):
        text = format_date(d, style, rng)
        assert _parse(text) == d, (style, text)
        assert set(text) <= set(ALPHABET), text
        assert str(d.year) in text  # always four digits


def test_examples_from_the_issue():
    rng = random.Random(0)
    d = date(1998, 3, 3)
    seen = {
        format_date(d, style, rng).lower().replace("  ", " ") for style in STYLES for _ in range(30)
    }
    for example in ["3 march 1998", "march 3, 1998", "mar 3 1998", "3rd of march 1998",
                    "tuesday, march 3, 1998", "03.03.1998", "1998/03/03"]:  # fmt: skip
        assert example in seen


def test_case_and_spacing_vary():
    splits = make_splits(0, num_train=3000, num_val=0, num_test=0)
    texts = [text for text, _ in splits.train]
    assert any(t.isupper() for t in texts if any(c.isalpha() for c in t))
    assert any(t.islower() for t in texts if any(c.isalpha() for c in t))
    assert any("  " in t for t in texts)
    assert any(",1" in t or ",2" in t for t in texts)  # a comma without its space


def test_weekday_is_right():
    rng = random.Random(0)
    text = format_date(date(1998, 3, 3), "weekday, month day, year", rng)
    assert text.lower().startswith("tuesday")
    assert WEEKDAYS[date(2099, 12, 31).weekday()] == "Thursday"


def test_range_and_bad_style():
    assert all_dates()[0] == FIRST_DATE and all_dates()[-1] == LAST_DATE
    assert len(all_dates()) == 73_049
    with pytest.raises(ValueError, match="unknown style"):
        format_date(FIRST_DATE, "dd/mm/yy", random.Random(0))
    with pytest.raises(ValueError, match="outside"):
        format_date(date(1899, 12, 31), "yyyy/mm/dd", random.Random(0))


def test_splits_are_deterministic_and_disjoint():
    a = make_splits(3, num_train=2000, num_val=300, num_test=400)
    b = make_splits(3, num_train=2000, num_val=300, num_test=400)
    c = make_splits(4, num_train=2000, num_val=300, num_test=400)
    assert a == b and a.test != c.test
    dates = {name: {iso for _, iso in getattr(a, name)} for name in ("train", "val", "test")}
    assert len(dates["test"]) == 400 and len(dates["val"]) == 300  # one example per date
    assert not dates["test"] & dates["train"]
    assert not dates["val"] & dates["train"]
    assert not dates["val"] & dates["test"]
    for text, iso in a.test[:100]:
        assert _parse(text).isoformat() == iso


def test_split_sizes_are_checked():
    with pytest.raises(ValueError, match="num_val"):
        make_splits(0, num_train=10, num_val=40_000, num_test=40_000)
