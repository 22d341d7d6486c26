"""tfm_edu.data.sentences: the grammar's labels, agreement, splits, and why bag-of-words fails."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tfm_edu.analysis.metrics import classification_metrics
from tfm_edu.analysis.sentiment import bag_of_words_probabilities
from tfm_edu.data import sentences as S

PLURALS = set(S.NOUNS.values())


def _clause_positive(words: list[str]) -> bool:
    """Independent reading of one clause: adjective polarity, flipped by a negator."""
    adjective_positive = words[-1] in S.POSITIVE
    assert adjective_positive or words[-1] in S.NEGATIVE, words
    return adjective_positive != any(w in S.NEGATORS for w in words)


def _expected_label(text: str) -> int:
    words = text.split()
    assert words[-1] == "."
    words = words[:-1]
    for connective in ("but", "and"):
        if connective in words:
            i = words.index(connective)
            first, second = _clause_positive(words[:i]), _clause_positive(words[i + 1 :])
            assert (first == second) == (connective == "and"), text  # the connective's meaning
            return int(second)
    return int(_clause_positive(words))


def test_labels_follow_negation_and_contrast():
    rng = random.Random(0)
    for _ in range(2000):
        sentence = S.make_sentence(rng)
        assert sentence.label == _expected_label(sentence.text), sentence


def _clauses(text: str) -> list[list[str]]:
    words = text.split()[:-1]  # drop the final "."
    for connective in ("and", "but"):
        if connective in words:
            i = words.index(connective)
            return [words[:i], words[i + 1 :]]
    return [words]


def test_every_verb_agrees_with_its_subject_not_the_nearer_noun():
    rng = random.Random(1)
    verbs = {"was": False, "is": False, "were": True, "are": True}
    attractors = 0
    for _ in range(1000):
        for clause in _clauses(S.make_sentence(rng).text):
            assert clause[0] == "the"
            subject, verb = clause[1], next(w for w in clause if w in verbs)
            assert verbs[verb] == (subject in PLURALS), clause
            if clause[2] in S.PREPOSITIONS:  # "the actor in the scenes was ..."
                attractors += (clause[4] in PLURALS) != (subject in PLURALS)
    assert attractors > 300  # plenty of nearer nouns with the other number


def test_splits_are_disjoint_balanced_and_tokenize_without_unknowns():
    splits = S.sentiment_splits(train=300, valid=100, test=300)
    texts = [{r.text for r in rows} for rows in splits.values()]
    assert [len(t) for t in texts] == [300, 100, 300]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert all(sum(r.label for r in rows) == len(rows) // 2 for rows in splits.values())
    tokenizer = S.tokenizer()
    for rows in splits.values():
        for row in rows:
            assert tokenizer.unk_id not in tokenizer.encode(row.text)
    assert S.vocabulary()[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert S.sentiment_splits(train=50, valid=0, test=0) == S.sentiment_splits(
        train=50, valid=0, test=0
    )


def test_every_word_is_as_positive_as_negative():
    rows = S.sentiment_splits(train=6000, valid=0, test=0)["train"]
    counts: dict[str, list[int]] = {}
    for row in rows:
        for word in set(row.text.split()):
            counts.setdefault(word, [0, 0])[row.label] += 1
    for word, (negative, positive) in counts.items():
        assert abs(positive - negative) / (positive + negative) < 0.1, (word, negative, positive)


def test_bag_of_words_cannot_do_better_than_chance():
    splits = S.sentiment_splits(train=1000, valid=0, test=1000)
    probabilities = bag_of_words_probabilities(splits["train"], [r.text for r in splits["test"]])
    metrics = classification_metrics([r.label for r in splits["test"]], probabilities)
    assert metrics["accuracy"] < 0.6 and metrics["roc_auc"] < 0.6
    assert np.array(metrics["confusion"]).sum() == 1000


def test_agreement_probes_have_an_attractor_of_the_other_number():
    for text, plural in S.agreement_probes(100):
        words = text.split()
        assert words[5] == "[MASK]"
        assert (words[1] in PLURALS) == plural != (words[4] in PLURALS)


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        S.make_sentence(random.Random(0), kind="or")
