"""Chapter 5: when is the date translator's output worth reading?

A seq2seq model always writes *something*: given "a" or "3/4/1998" (a style it never saw), the
date translator still writes ten confident characters. `reads_as_date` says whether a text is
written in one of the styles of `tfm_edu.data.dates.STYLES` (the only inputs the model was
trained on); `date_output_note` turns that, and whether the output is a real ISO date, into the
note the attention explorer shows above the map.
"""

from __future__ import annotations

import re
from datetime import date

from tfm_edu.data.dates import FIRST_DATE, LAST_DATE, MONTHS, WEEKDAYS

__all__ = ["date_output_note", "reads_as_date", "valid_iso_date"]

_MONTH = "(?:" + "|".join(sorted({*MONTHS, *(m[:3] for m in MONTHS)}, key=len, reverse=True)) + ")"
_WEEKDAY = "(?:" + "|".join(sorted({*WEEKDAYS, *(d[:3] for d in WEEKDAYS)}, key=len, reverse=True))
_WEEKDAY += ")"
_DAY, _ORDINAL, _YEAR = r"\d{1,2}", r"\d{1,2}(?:st|nd|rd|th)", r"\d{4}"
_COMMA = r"(?:\s*,\s*|\s+)"
# One pattern per family of STYLES (spaces may be doubled, as in the training data).
_STYLE_PATTERNS = [
    rf"{_DAY}\s+{_MONTH}\s+{_YEAR}",  # 3 March 1998, 3 Mar 1998
    rf"{_MONTH}\s+{_DAY}{_COMMA}{_YEAR}",  # March 3, 1998; Mar 3 1998
    rf"{_ORDINAL}\s+of\s+{_MONTH}\s+{_YEAR}",  # 3rd of March 1998
    rf"{_MONTH}\s+{_ORDINAL}{_COMMA}{_YEAR}",  # March 3rd, 1998
    rf"{_WEEKDAY}{_COMMA}{_MONTH}\s+{_DAY}{_COMMA}{_YEAR}",  # Tuesday, March 3, 1998
    rf"{_WEEKDAY}\s+{_DAY}\s+{_MONTH}\s+{_YEAR}",  # Tue 3 Mar 1998
    r"\d{1,2}\.\d{1,2}\.\d{4}",  # 03.03.1998
    r"\d{4}/\d{1,2}/\d{1,2}",  # 1998/03/03
]
_STYLES_RE = re.compile("|".join(f"(?:{p})" for p in _STYLE_PATTERNS), re.IGNORECASE)


def reads_as_date(text: str) -> bool:
    """True when `text` is written in one of the styles the translator was trained on.

    Args:
        text: what the learner typed, e.g. "3rd of March 1998".

    Returns:
        Whether the whole text (surrounding spaces aside) matches a training style, with a
        four-digit year from FIRST_DATE's to LAST_DATE's.
    """
    text = text.strip()
    if not _STYLES_RE.fullmatch(text):
        return False
    years = [int(y) for y in re.findall(r"\d{4}", text)]
    return bool(years) and FIRST_DATE.year <= years[0] <= LAST_DATE.year


def valid_iso_date(text: str) -> bool:
    """True for a real calendar date written YYYY-MM-DD ("1999-02-31" and "2003-03-0" are not)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def date_output_note(text: str, maps) -> str | None:
    """The explorer's note for one translation, or None when input and output look fine.

    Args:
        text: the input the learner typed.
        maps: the translator's `AttentionMaps` for it (`Translator.cross_attention`); its query
            tokens are the output characters, with [EOS] at the end.

    Returns:
        A sentence saying that the output is made up (input in no trained style) or that it
        is not a real date; None otherwise.
    """
    output = "".join(t for t in maps.query_tokens if not (t.startswith("[") and t.endswith("]")))
    if not reads_as_date(text):
        return (
            f"The model always writes a date. This input is not written in any of the styles it "
            f'was trained on, so its output "{output}" is made up.'
        )
    if not valid_iso_date(output):
        return (
            f'The output "{output}" is not a real date: the model learned to copy digits, not '
            "the calendar."
        )
    return None
