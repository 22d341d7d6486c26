"""Chapter 7's parameter-count check: a right formula passes, the stub is "not done", and each
typical slip, written as a learner would, gets its hint."""

from __future__ import annotations

import pytest
import torch
from exercise_helpers import assert_hint, stub

from tfm_edu.exercises import params as checks
from tfm_edu.models.bert import BERT, BERTConfig, BERTForMaskedLM


def learner(config, masked_lm=False):
    """A correct answer, written from the architecture (not from the package's code)."""
    d, v = config.d_model, config.vocab_size
    layer_norm = 2 * d  # gamma and beta
    embeddings = (v + config.max_positions + config.type_vocab_size) * d + layer_norm
    attention = 4 * (d * d + d)  # q, k, v and output projections, with biases
    feed_forward = (d * config.d_ff + config.d_ff) + (config.d_ff * d + d)
    per_layer = attention + feed_forward + 2 * layer_norm
    total = embeddings + config.num_layers * per_layer
    if masked_lm:
        total += (d * d + d) + layer_norm + v  # transform, its LayerNorm, the output bias
    return total


def test_a_correct_formula_passes():
    result = checks.check_count_parameters(learner)
    assert result.passed, result.message
    assert "8 test cases" in result.message


def test_the_reference_counts_the_real_models():
    for config in (BERTConfig(), BERTConfig(num_layers=3, d_ff=100, type_vocab_size=1)):
        torch.manual_seed(0)
        assert checks.count_parameters(config) == sum(p.numel() for p in BERT(config).parameters())
        mlm = BERTForMaskedLM(config)
        assert checks.count_parameters(config, masked_lm=True) == sum(
            p.numel() for p in mlm.parameters()
        )
    assert checks.count_parameters(BERTConfig.minilm_l6()) == 22_565_376  # the loaded MiniLM


def test_the_stub_is_not_done():
    result = checks.check_count_parameters(stub)
    assert result.status == "not done" and "my_count_parameters" in result.message


def test_building_the_model_is_not_forbidden_but_a_wrong_number_fails():
    def off_by_one(config, masked_lm=False):
        return learner(config, masked_lm) + 1

    result = checks.check_count_parameters(off_by_one)
    assert result.status == "failed" and "case 1 of 8" in result.message
    assert "your count is 108,225, the model has 108,224 (1 more)" in result.message


def no_biases(config, masked_lm=False):
    d, v, f = config.d_model, config.vocab_size, config.d_ff
    total = (v + config.max_positions + config.type_vocab_size) * d + 2 * d
    total += config.num_layers * (4 * d * d + 2 * d * f + 4 * d)
    if masked_lm:
        total += d * d + 2 * d
    return total


def layer_norm_one_vector(config, masked_lm=False):
    d = config.d_model
    norms = 2 * config.num_layers + 1 + (1 if masked_lm else 0)
    return learner(config, masked_lm) - norms * d  # only gamma


def no_positions(config, masked_lm=False):
    return learner(config, masked_lm) - config.max_positions * config.d_model


def no_segments(config, masked_lm=False):
    return learner(config, masked_lm) - config.type_vocab_size * config.d_model


def tied_counted_twice(config, masked_lm=False):
    extra = config.vocab_size * config.d_model if masked_lm else 0
    return learner(config, masked_lm) + extra  # a new (V, D) output matrix


def with_pooler(config, masked_lm=False):
    d = config.d_model
    return learner(config, masked_lm) + d * d + d


def per_head_matrices(config, masked_lm=False):
    d, h = config.d_model, config.num_heads
    return learner(config, masked_lm) + config.num_layers * 4 * (h - 1) * d * d


def three_projections(config, masked_lm=False):
    d = config.d_model
    return learner(config, masked_lm) - config.num_layers * (d * d + d)


def one_layer(config, masked_lm=False):
    d, f = config.d_model, config.d_ff
    per_layer = 4 * (d * d + d) + 2 * d * f + f + d + 4 * d
    return learner(config, masked_lm) - (config.num_layers - 1) * per_layer


@pytest.mark.parametrize(
    ("wrong", "fragment"),
    [
        (no_biases, "has a bias as well as its matrix"),
        (layer_norm_one_vector, "two vectors of D numbers"),
        (no_positions, "position embeddings are missing"),
        (no_segments, "segment (token-type) embeddings are missing"),
        (tied_counted_twice, "tied weights"),
        (with_pooler, "no pooler"),
        (per_head_matrices, "the heads share the projections"),
        (three_projections, "four projections"),
        (one_layer, "multiply one layer's count by num_layers"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_typical_slips_get_their_hint(wrong, fragment):
    assert_hint(checks.check_count_parameters(wrong), fragment)


@pytest.mark.parametrize(
    ("slip", "fragment"),
    [
        ({"norm_vectors": 0}, "the LayerNorms are missing"),
        ({"embedding_norm": False}, "a LayerNorm of their own"),
        ({"decoder_bias": False}, "a bias of its own"),
        ({"ffn_width": "d_model"}, "widens to d_ff"),
    ],
)
def test_every_listed_mistake_is_told_apart(slip, fragment):
    assert_hint(checks.check_count_parameters(checks._variant(**slip)), fragment)
