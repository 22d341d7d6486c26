"""Chapters 6-7 checks: right answers pass, stubs are "not done", typical slips get their hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfm_edu.exercises import bert as checks


def _stub(*args, **kwargs):
    raise NotImplementedError


def test_mask_rule():
    from tfm_edu.models.bert import apply_mask_rule

    assert checks.check_mask_rule(apply_mask_rule).passed
    assert "not done" in repr(checks.check_mask_rule(_stub))

    def learner(
        input_ids, maskable, select_draw, replace_draw, random_ids, mask_id, mask_prob=0.15
    ):
        chosen = maskable & (select_draw < mask_prob)
        inputs = torch.where(chosen, mask_id, input_ids)  # always [MASK]
        return inputs, torch.where(chosen, input_ids, -100)

    result = checks.check_mask_rule(learner)
    assert not result.passed and "80%" in repr(result)


@pytest.mark.parametrize(
    "flag, words",
    [
        ("label_all", "-100"),
        ("ignore_maskable", "[CLS]"),
        ("labels_from_inputs", "original"),
        ("swap", "swapped"),
        ("select_above", "not >="),
    ],
)
def test_mask_rule_hints(flag, words):
    result = checks.check_mask_rule(checks._mask_variant(**{flag: True}))
    assert not result.passed and words in repr(result), repr(result)


def test_precision_recall_f1():
    assert checks.check_precision_recall_f1(checks._precision_recall_f1).passed

    def arithmetic(labels, predicted):
        tp = np.sum((labels == 1) & (predicted == 1))
        p = tp / max(np.sum(predicted == 1), 1)
        r = tp / max(np.sum(labels == 1), 1)
        return float(p), float(r), float((p + r) / 2)

    result = checks.check_precision_recall_f1(arithmetic)
    assert "harmonic" in repr(result)

    def divides_by_zero(labels, predicted):
        tp = np.sum((labels == 1) & (predicted == 1))
        with np.errstate(all="ignore"):
            p = tp / np.sum(predicted == 1)
        r = tp / np.sum(labels == 1)
        return float(p), float(r), float(2 * p * r / (p + r))

    assert "NaN" in repr(checks.check_precision_recall_f1(divides_by_zero))


def _wordpiece(word, vocab, max_chars=100):
    """A learner's correct answer, written independently of the package's `split_word`."""
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces = []
    rest = word
    while rest:
        prefix = "##" if pieces else ""
        for end in range(len(rest), 0, -1):
            if prefix + rest[:end] in vocab:
                pieces.append(prefix + rest[:end])
                rest = rest[end:]
                break
        else:
            return ["[UNK]"]
    return pieces


def test_wordpiece():
    from tfm_edu.tokenize import split_word

    assert checks.check_wordpiece(_wordpiece).passed
    assert checks.check_wordpiece(split_word).passed
    assert "not done" in repr(checks.check_wordpiece(_stub))
    for wrong, words in (
        (checks._shortest_first, "longest"),
        (checks._no_prefix, '"##"'),
        (checks._partial_unk, "whole word"),
    ):
        result = checks.check_wordpiece(wrong)
        assert not result.passed and words in repr(result), repr(result)


def test_wordpiece_reference_agrees_with_the_package_tokenizer():
    from tfm_edu.tokenize import WordPiece

    tokenizer = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(checks._VOCAB)])
    for word in ("unaffable", "hugging", "playing", "unaffablez", "the"):
        assert _wordpiece(word, checks._VOCAB) == tokenizer.tokenize(word)


def test_mean_pool():
    from tfm_edu.models.bert import mean_pool

    assert checks.check_mean_pool(mean_pool).passed
    assert "not done" in repr(checks.check_mean_pool(_stub))
    result = checks.check_mean_pool(lambda hidden, attention_mask: hidden.mean(dim=1))
    assert not result.passed and "padding" in repr(result)
