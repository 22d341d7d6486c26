"""Checks for chapters 6-7: BERT's masking rule, classification metrics, WordPiece, mean pooling.

Each `check_<thing>(fn)` runs the learner's `fn` on seeded inputs against the package's own
implementation (`tfm_edu.models.bert.apply_mask_rule` and `mean_pool`,
`tfm_edu.analysis.classification_metrics`, `tfm_edu.tokenize.split_word`) and names the usual slip
when the learner's output matches it (Devlin et al., 2019, section 3.1 and appendix A.1 for the
masking rule; Wu et al., 2016, section 4.1 for WordPiece; Reimers & Gurevych, 2019 for pooling).
"""

from __future__ import annotations

import numpy as np

from tfm_edu.analysis.metrics import classification_metrics
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function, graded
from tfm_edu.models.bert import IGNORE_INDEX, apply_mask_rule, mean_pool
from tfm_edu.tokenize import split_word

__all__ = [
    "check_mask_rule",
    "check_precision_recall_f1",
    "check_wordpiece",
    "check_mean_pool",
]

# ---------------------------------------------------------------- chapter 6: the masking rule


def _mask_cases():
    import torch

    rng = np.random.default_rng(6)
    cases = []
    for B, T in ((2, 12), (3, 20), (1, 40)):
        ids = torch.from_numpy(rng.integers(5, 50, size=(B, T)))  # (B, T) ordinary tokens
        ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
        maskable = (ids != 2) & (ids != 3)
        select = torch.from_numpy(rng.random((B, T)))  # (B, T)
        select[:, 0] = 0.0  # [CLS] would be chosen if maskable were ignored
        replace = torch.from_numpy(rng.random((B, T)))
        random_ids = torch.from_numpy(rng.integers(5, 50, size=(B, T)))
        cases.append(Case((ids, maskable, select, replace, random_ids, 4), {"mask_prob": 0.3}))
    return cases


def _mask_variant(
    always_mask=False, label_all=False, ignore_maskable=False, labels_from_inputs=False,
    swap=False, select_above=False,
):  # fmt: skip
    """A typical wrong masking rule (each flag is one slip)."""
    import torch

    def wrong(input_ids, maskable, select_draw, replace_draw, random_ids, mask_id, mask_prob=0.15):
        allowed = torch.ones_like(maskable) if ignore_maskable else maskable
        drawn = (select_draw >= mask_prob) if select_above else (select_draw < mask_prob)
        chosen = allowed & drawn
        first, middle = chosen & (replace_draw < 0.8), chosen & (replace_draw >= 0.8)
        middle = middle & (replace_draw < 0.9)
        to_mask, to_random = (middle, first) if swap else (first, middle)
        if always_mask:
            to_mask, to_random = chosen, torch.zeros_like(chosen)
        inputs = torch.where(to_mask, mask_id, input_ids)
        inputs = torch.where(to_random, random_ids, inputs)
        source = inputs if labels_from_inputs else input_ids
        labels = source.clone() if label_all else torch.where(chosen, source, IGNORE_INDEX)
        return inputs, labels

    return wrong


@graded
def check_mask_rule(fn) -> CheckResult:
    """Check `fn(input_ids, maskable, select_draw, replace_draw, random_ids, mask_id,
    mask_prob=0.15) -> (inputs, labels)`."""
    mistakes = [
        Mistake(
            "a chosen token is not always [MASK]: 80% become [MASK] (replace_draw < 0.8), 10% a "
            "random token (0.8 <= replace_draw < 0.9) and 10% stay as they are.",
            _mask_variant(always_mask=True),
        ),
        Mistake(
            "labels must be -100 (ignored by the loss) wherever the token was *not* chosen: "
            "the model is only graded on the tokens it had to reconstruct.",
            _mask_variant(label_all=True),
        ),
        Mistake(
            "[CLS] and [SEP] (maskable == False) must never be chosen: combine `maskable & "
            "(select_draw < mask_prob)`.",
            _mask_variant(ignore_maskable=True),
        ),
        Mistake(
            "the labels are the *original* ids (input_ids), not the corrupted inputs: the model "
            "must predict what was there before masking.",
            _mask_variant(labels_from_inputs=True),
        ),
        Mistake(
            "[MASK] and random are swapped: [MASK] when replace_draw < 0.8 (80%), a random token "
            "when 0.8 <= replace_draw < 0.9 (10%), unchanged otherwise.",
            _mask_variant(swap=True),
        ),
        Mistake(
            "a token is chosen when select_draw < mask_prob (probability mask_prob), not >=.",
            _mask_variant(select_above=True),
        ),
    ]
    return check_function(
        "mask_rule", fn, apply_mask_rule, _mask_cases(), mistakes, output_names=("inputs", "labels")
    )


# ---------------------------------------------------------------- chapter 6: metrics


def _precision_recall_f1(labels, predicted):
    """The package's `classification_metrics` (scikit-learn's) for 0/1 predictions."""
    metrics = classification_metrics(labels, predicted)
    return metrics["precision"], metrics["recall"], metrics["f1"]


@graded
def check_precision_recall_f1(fn) -> CheckResult:
    """Check `fn(labels, predicted) -> (precision, recall, f1)` for 0/1 NumPy arrays."""
    rng = np.random.default_rng(7)
    cases = [Case((rng.integers(0, 2, n), rng.integers(0, 2, n))) for n in (10, 25, 40)]
    skewed = rng.integers(0, 2, 30)
    cases.append(Case((skewed, np.where(rng.random(30) < 0.8, skewed, 1)), label="many positives"))
    cases.append(Case((np.array([1, 0, 1, 0]), np.zeros(4, dtype=int)), label="no positives"))

    def swapped(labels, predicted):
        p, r, f = _precision_recall_f1(labels, predicted)
        return r, p, f

    def arithmetic(labels, predicted):
        p, r, _ = _precision_recall_f1(labels, predicted)
        return p, r, (p + r) / 2

    def accuracy_as_precision(labels, predicted):
        _, r, _ = _precision_recall_f1(labels, predicted)
        p = float(np.mean(np.asarray(labels) == np.asarray(predicted)))
        return p, r, 2 * p * r / (p + r) if p + r else 0.0

    mistakes = [
        Mistake(
            "precision and recall are swapped: precision = TP / (predicted positives), "
            "recall = TP / (actual positives).",
            swapped,
        ),
        Mistake(
            "F1 is the *harmonic* mean 2PR / (P + R), not (P + R) / 2: it stays low unless both "
            "are high.",
            arithmetic,
        ),
        Mistake(
            "precision is TP / (TP + FP), the share of predicted positives that are right, not "
            "the accuracy over all examples.",
            accuracy_as_precision,
        ),
    ]
    return check_function(
        "precision_recall_f1",
        fn,
        _precision_recall_f1,
        cases,
        mistakes,
        output_names=("precision", "recall", "f1"),
    )


# ---------------------------------------------------------------- chapter 7: WordPiece

_VOCAB = frozenset(
    ["un", "##aff", "##able", "##a", "##ab", "aff", "hug", "##s", "##ging", "##gi", "play"]
    + ["##ing", "##in", "##g", "p", "##l", "##a", "##y", "x", "##x", "the"]
)
_PIECE_IDS = {piece: i for i, piece in enumerate(sorted(_VOCAB | {"[UNK]"}))}


def _pieces_as_ids(pieces) -> np.ndarray:
    """The checks compare arrays: each piece -> its id (-1 for a string not in the vocabulary)."""
    if isinstance(pieces, str) or not isinstance(pieces, (list, tuple)):
        return pieces  # let the harness report the wrong type
    return np.array([_PIECE_IDS.get(p, -1) for p in pieces], dtype=np.int64)


def _shortest_first(word, vocab, max_chars=100):
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = start + 1
        while end <= len(word):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end += 1
        if end > len(word):
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _no_prefix(word, vocab, max_chars=100):
    return split_word(word, {p.removeprefix("##") for p in vocab}, max_chars)


def _partial_unk(word, vocab, max_chars=100):
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return [*pieces, "[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


@graded
def check_wordpiece(fn) -> CheckResult:
    """Check `fn(word, vocab, max_chars=100) -> list of pieces` (greedy longest match first)."""
    words = ["unaffable", "hugging", "hugs", "playing", "play", "the", "unaffablez"]
    cases = [Case((w, set(_VOCAB))) for w in words]
    cases.append(Case(("xxxxxx", set(_VOCAB)), {"max_chars": 5}, label="longer than max_chars"))

    def check(word, vocab, max_chars=100):
        return _pieces_as_ids(fn(word, vocab, max_chars=max_chars))

    check.__name__ = "wordpiece"

    def reference(word, vocab, max_chars=100):
        return _pieces_as_ids(split_word(word, vocab, max_chars))

    def as_ids(wrong):
        return lambda word, vocab, max_chars=100: _pieces_as_ids(wrong(word, vocab, max_chars))

    mistakes = [
        Mistake(
            "take the *longest* piece in the vocabulary at each step: start with the whole rest "
            'of the word and shrink it from the right ("unaffable" -> un, ##aff, ##able).',
            as_ids(_shortest_first),
        ),
        Mistake(
            'pieces after the first start with "##" ("##able", not "able"): look up '
            '"##" + word[start:end] when start > 0.',
            as_ids(_no_prefix),
        ),
        Mistake(
            "when some part of the word cannot be matched, the *whole word* becomes one [UNK]; "
            "do not keep the pieces found before.",
            as_ids(_partial_unk),
        ),
        Mistake(
            "a word longer than max_chars becomes [UNK] without being split.",
            as_ids(lambda word, vocab, max_chars=100: split_word(word, vocab)),
        ),
    ]
    return check_function("wordpiece", check, reference, cases, mistakes)


# ---------------------------------------------------------------- chapter 7: mean pooling


@graded
def check_mean_pool(fn) -> CheckResult:
    """Check `fn(hidden (B, T, D), attention_mask (B, T)) -> (B, D)`, ignoring padding."""
    import torch

    rng = np.random.default_rng(8)
    cases = []
    for lengths, T, D in (([3, 5], 5, 4), ([1, 4, 2], 6, 3), ([7], 7, 2)):
        hidden = torch.from_numpy(rng.normal(size=(len(lengths), T, D)).astype(np.float32))
        mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) bool
        cases.append(Case((hidden, mask)))

    def plain_mean(hidden, attention_mask):
        return hidden.mean(dim=1)

    def masked_sum(hidden, attention_mask):
        return (hidden * attention_mask.unsqueeze(-1)).sum(dim=1)

    def divided_by_length(hidden, attention_mask):
        return (hidden * attention_mask.unsqueeze(-1)).sum(dim=1) / hidden.shape[1]

    mistakes = [
        Mistake(
            "hidden.mean(dim=1) averages the padding vectors too: multiply by the mask "
            "(attention_mask.unsqueeze(-1)) before summing, and divide by the number of real "
            "tokens.",
            plain_mean,
        ),
        Mistake(
            "divide the masked sum by the number of real tokens, attention_mask.sum(dim=1, "
            "keepdim=True): a sum grows with the sentence's length.",
            masked_sum,
        ),
        Mistake(
            "divide by the number of *real* tokens of each sentence, attention_mask.sum(dim=1, "
            "keepdim=True), not by the padded length T.",
            divided_by_length,
        ),
    ]
    return check_function("mean_pool", fn, mean_pool, cases, mistakes)
