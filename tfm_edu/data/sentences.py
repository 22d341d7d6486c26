"""Chapter 6's data: English-like sentences from a small grammar that has real structure.

    sentence := clause "." | clause "and" clause "." | clause "but" clause "."
    clause   := "the" noun [preposition "the" noun] verb ["not" | "never"] [intensifier] adjective

- Subject-verb agreement across an intervening phrase: "the actor in the scenes *was* ..." (the
  verb agrees with "actor", not with the nearer "scenes").
- Negation flips a clause: "not bad" is positive, "never funny" negative.
- Contrast: "A but B" joins clauses of opposite sentiment and means B ("good but boring" is
  negative); "A and B" joins clauses of the same sentiment.
- Intensifiers ("very", "really", ...) change nothing about the label.

Every clause is negated with probability 1/2 and the two orders of a contrast are equally likely,
so each word is as common in positive as in negative sentences: a bag-of-words classifier cannot
tell "not bad" from "bad, not" nor "good but dull" from "dull but good". A Transformer can, because
it sees the order. The same grammar, with rarer negation, feeds masked-language-model
pretraining: guessing a hidden verb ("the actor in the scenes [MASK] good") needs the subject,
which is the kind of structure fine-tuning later builds on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tfm_edu.tokenize import WordPiece

__all__ = [
    "NOUNS",
    "POSITIVE",
    "NEGATIVE",
    "INTENSIFIERS",
    "NEGATORS",
    "PREPOSITIONS",
    "Sentence",
    "vocabulary",
    "tokenizer",
    "make_sentence",
    "mlm_corpus",
    "sentiment_splits",
    "agreement_probes",
    "polarity_probes",
]

NOUNS = {  # singular -> plural
    "movie": "movies",
    "film": "films",
    "plot": "plots",
    "actor": "actors",
    "story": "stories",
    "ending": "endings",
    "song": "songs",
    "scene": "scenes",
    "director": "directors",
    "character": "characters",
}
POSITIVE = ("good", "great", "brilliant", "charming", "clever", "funny", "moving", "wonderful")
NEGATIVE = ("bad", "boring", "dull", "awful", "weak", "silly", "clumsy", "terrible")
INTENSIFIERS = ("very", "really", "truly", "quite", "so", "extremely")
NEGATORS = ("not", "never")
PREPOSITIONS = ("in", "with", "of", "about")
VERBS = {("past", False): "was", ("past", True): "were", ("now", False): "is", ("now", True): "are"}
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Sentence:
    """One generated sentence and what the grammar knows about it."""

    text: str
    label: int  # sentiment: 1 = positive, 0 = negative
    kind: str  # "single", "and" or "but"
    negations: int  # how many clauses are negated (0, 1 or 2)


def vocabulary() -> list[str]:
    """All tokens: the 5 specials, then every word of the grammar (a fixed order, so fixed ids)."""
    words = ["the", ".", "and", "but", *PREPOSITIONS, *NEGATORS, *INTENSIFIERS, *VERBS.values()]
    for singular, plural in NOUNS.items():
        words += [singular, plural]
    return [*SPECIALS, *words, *POSITIVE, *NEGATIVE]


def tokenizer() -> WordPiece:
    """A WordPiece tokenizer over the grammar's words (each word is one token; others -> [UNK])."""
    return WordPiece(vocabulary(), lowercase=True)


def _clause(rng: random.Random, positive: bool, negate: bool) -> str:
    """One clause whose sentiment is `positive` (after the negation, if any)."""
    plural = rng.random() < 0.5
    noun = rng.choice(list(NOUNS))
    words = ["the", NOUNS[noun] if plural else noun]
    if rng.random() < 0.5:  # an intervening phrase whose noun often has the other number
        inner = rng.choice(list(NOUNS))
        words += [rng.choice(PREPOSITIONS), "the", NOUNS[inner] if rng.random() < 0.5 else inner]
    words.append(VERBS[(rng.choice(("past", "now")), plural)])
    if negate:
        words.append(rng.choice(NEGATORS))
    if rng.random() < 0.4:
        words.append(rng.choice(INTENSIFIERS))
    adjective_positive = positive != negate  # "not" + negative adjective = positive clause
    words.append(rng.choice(POSITIVE if adjective_positive else NEGATIVE))
    return " ".join(words)


def make_sentence(
    rng: random.Random,
    kind: str | None = None,
    label: int | None = None,
    negation_rate: float = 0.5,
) -> Sentence:
    """Draw one sentence; `kind` and `label` are chosen at random unless given.

    Args:
        negation_rate: probability that each clause is negated. At 0.5 (the sentiment data) no
            word says anything about the label on its own.
    """
    kind = kind or rng.choice(("single", "and", "but"))
    if kind not in ("single", "and", "but"):
        raise ValueError(f"kind must be 'single', 'and' or 'but', got {kind!r}")
    label = rng.randrange(2) if label is None else label
    first_negated, second_negated = rng.random() < negation_rate, rng.random() < negation_rate
    if kind == "single":
        text = _clause(rng, bool(label), first_negated)
        negations = int(first_negated)
    else:
        # "and": both clauses share the label; "but": the first has the opposite sentiment.
        first_positive = bool(label) if kind == "and" else not label
        first = _clause(rng, first_positive, first_negated)
        second = _clause(rng, bool(label), second_negated)
        text = f"{first} {kind} {second}"
        negations = int(first_negated) + int(second_negated)
    return Sentence(f"{text} .", label, kind, negations)


def mlm_corpus(size: int, seed: int = 0, negation_rate: float = 0.2) -> list[str]:
    """`size` unlabelled sentences for masked-language-model pretraining.

    Negation is rarer here (0.2 per clause) than in the sentiment data, as in real text. That
    matters: with negation at 0.5, "A and B" would join two adjectives of the same class exactly
    as often as of opposite classes, and nothing in the corpus would reveal which adjectives
    belong together.
    """
    rng = random.Random(seed)
    return [make_sentence(rng, negation_rate=negation_rate).text for _ in range(size)]


def sentiment_splits(
    train: int = 1000, valid: int = 500, test: int = 2000, seed: int = 1
) -> dict[str, list[Sentence]]:
    """Labelled sentences in three disjoint splits (no text appears in two), balanced labels.

    The default training split is small on purpose: with few labels, what pretraining learned
    from unlabelled text is what makes the difference.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[Sentence]] = {}
    for name, size in (("train", train), ("valid", valid), ("test", test)):
        rows: list[Sentence] = []
        while len(rows) < size:
            sentence = make_sentence(rng, label=len(rows) % 2)  # alternate: balanced
            if sentence.text not in seen:
                seen.add(sentence.text)
                rows.append(sentence)
        splits[name] = rows
    return splits


def agreement_probes(size: int = 200, seed: int = 2) -> list[tuple[str, bool]]:
    """(sentence with its verb replaced by [MASK], True if the subject is plural).

    Every probe has an intervening phrase whose noun has the *other* number ("the actor in the
    scenes [MASK] good ."), so a model that agrees with the nearest noun gets it wrong.
    """
    rng = random.Random(seed)
    probes = []
    for _ in range(size):
        plural = rng.random() < 0.5
        subject, inner = rng.choice(list(NOUNS)), rng.choice(list(NOUNS))
        words = [
            "the",
            NOUNS[subject] if plural else subject,
            rng.choice(PREPOSITIONS),
            "the",
            inner if plural else NOUNS[inner],  # the attractor has the other number
            "[MASK]",
            rng.choice(POSITIVE + NEGATIVE),
            ".",
        ]
        probes.append((" ".join(words), plural))
    return probes


def polarity_probes(size: int = 200, seed: int = 3) -> list[tuple[str, bool]]:
    """(two-clause sentence with its last adjective replaced by [MASK], True if that adjective
    must be positive), without negations: "the plot was dull but the songs were [MASK] ." -> True.

    A model that knows which adjectives go together, and what "and" and "but" mean, gets these
    right; one that treats all adjectives alike scores 50%.
    """
    rng = random.Random(seed)
    probes = []
    for _ in range(size):
        sentence = make_sentence(rng, kind=rng.choice(("and", "but")), negation_rate=0.0)
        words = sentence.text.split()
        probes.append((" ".join([*words[:-2], "[MASK]", "."]), words[-2] in POSITIVE))
    return probes
