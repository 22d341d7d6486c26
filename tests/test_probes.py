"""tfm_edu.analysis.probes: BERT -> AttentionMaps adapters, attention_to, head statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfm_edu.analysis.probes import (
    attention_to,
    bert_attention,
    bert_attention_maps,
    head_statistics,
)
from tfm_edu.data import sentences
from tfm_edu.maps import AttentionMaps
from tfm_edu.models.bert import BERTConfig, BERTForSequenceClassification


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tokenizer = sentences.tokenizer()
    config = BERTConfig(vocab_size=tokenizer.vocab_size)
    return BERTForSequenceClassification(config).eval(), tokenizer


def test_maps_of_a_sentence(tiny):
    model, tokenizer = tiny
    maps = bert_attention(model, tokenizer)("the movie was not bad .")
    assert isinstance(maps, AttentionMaps)
    assert maps.query_tokens == ["[CLS]", "the", "movie", "was", "not", "bad", ".", "[SEP]"]
    assert maps.attentions.shape == (2, 4, 8, 8) and maps.notice is None
    np.testing.assert_allclose(maps.attentions.sum(-1), 1.0, atol=1e-6)
    assert maps.names == ["layer 0", "layer 1"]


def test_long_input_is_truncated_with_a_notice(tiny):
    model, tokenizer = tiny
    maps = bert_attention_maps(model, tokenizer, "the movie was good . " * 30, max_tokens=128)
    assert maps.attentions.shape[-1] == 64  # the tiny model's max_positions wins
    assert maps.notice == "truncated to 64 tokens (the input has 152)"


def test_pair_maps_and_the_a_to_b_block(tiny):
    model, tokenizer = tiny
    full = bert_attention_maps(model, tokenizer, "the plot was dull", "the songs were good")
    assert full.query_tokens.count("[SEP]") == 2 and full.key_tokens is None
    block = bert_attention_maps(
        model, tokenizer, "the plot was dull", "the songs were good", a_to_b=True
    )
    assert block.query_tokens == ["[CLS]", "the", "plot", "was", "dull", "[SEP]"]
    assert block.key_tokens == ["the", "songs", "were", "good", "[SEP]"]
    np.testing.assert_allclose(block.attentions, full.attentions[:, :, :6, 6:])
    assert "sentence B" in block.notice
    with pytest.raises(ValueError, match="pair"):
        bert_attention_maps(model, tokenizer, "the plot was dull", a_to_b=True)


def test_attention_to_averages_the_word_pieces(tiny):
    model, tokenizer = tiny
    report = attention_to("The movie was NOT bad .", "not", model, tokenizer)
    assert report.word_positions == [4]
    assert report.weights.shape == (2, 4, 8)
    token, weight = report.top(1, 2)
    assert token in report.tokens and weight == report.weights[1, 2].max()
    assert "layer 1" in repr(report) and "head 3" in repr(report)
    second = attention_to("the plot was good and the plot was dull .", "plot", model, tokenizer, 2)
    assert second.word_positions == [7]
    with pytest.raises(ValueError, match="occurs 0 time"):
        attention_to("the movie was not bad", "no", model, tokenizer)  # whole words only


def test_head_statistics_on_hand_made_maps():
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    previous = np.zeros((5, 5))
    for t in range(1, 5):
        previous[t, t - 1] = 1.0
    previous[0, 0] = 1.0
    to_cls = np.zeros((5, 5))
    to_cls[:, 0] = 1.0
    maps = AttentionMaps(tokens, np.stack([previous, to_cls])[None])  # (1, 2, 5, 5)
    stats = head_statistics(maps)
    np.testing.assert_allclose(stats["previous"], [[1.0, 0.0]])
    np.testing.assert_allclose(stats["cls"], [[1 / 3, 1.0]])  # "a" looks back at [CLS]
    np.testing.assert_allclose(stats["sep"], [[0.0, 0.0]])
    np.testing.assert_allclose(stats["next"], [[0.0, 0.0]])


def test_norm_weighted_maps_match_a_slot_by_slot_computation(tiny):
    """f_h(x_j): put key j's head-h value in head h's slot of a zero vector, apply out_proj."""
    from tfm_edu.analysis.probes import norm_weighted_maps

    model, tokenizer = tiny
    text = "the movie was not bad ."
    maps = norm_weighted_maps(model, tokenizer, text)
    np.testing.assert_allclose(maps.attentions.sum(-1), 1.0, atol=1e-6)
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        x = model.bert.embeddings(ids, torch.zeros_like(ids))[0]  # (T, D): layer 0's input
        weights = bert_attention_maps(model, tokenizer, text).attentions[0]  # (H, T, T)
        attention = model.bert.encoder.layers[0].self_attn
        values = attention.v_proj(x)  # (T, D)
        H, Dh = attention.num_heads, attention.head_dim
        norms = np.zeros((H, len(x)))
        for h in range(H):
            for j in range(len(x)):
                slot = torch.zeros(attention.d_model)
                slot[h * Dh : (h + 1) * Dh] = values[j, h * Dh : (h + 1) * Dh]
                sent = attention.out_proj(slot) - attention.out_proj.bias  # (D,)
                norms[h, j] = sent.norm().item()
    expected = weights * norms[:, None, :]
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(maps.attentions[0], expected, atol=1e-5)


def test_exclude_special_rescales_the_ordinary_tokens(tiny):
    model, tokenizer = tiny
    raw = attention_to("the movie was not bad .", "not", model, tokenizer)
    kept = attention_to("the movie was not bad .", "not", model, tokenizer, exclude_special=True)
    special = [i for i, t in enumerate(raw.tokens) if t in ("[CLS]", "[SEP]")]
    assert special == [0, len(raw.tokens) - 1]
    np.testing.assert_allclose(kept.weights[..., special], 0.0)
    np.testing.assert_allclose(kept.weights.sum(-1), 1.0, atol=1e-6)
    ordinary = raw.weights[..., 1:-1]  # (L, H, T - 2)
    np.testing.assert_allclose(
        kept.weights[..., 1:-1], ordinary / ordinary.sum(-1, keepdims=True), rtol=1e-5
    )
    tops = {kept.top(l, h)[0] for l in range(2) for h in range(4)}
    assert not tops & {"[CLS]", "[SEP]"}
    assert "left out" in repr(kept) and "left out" not in repr(raw)


def test_without_special_on_hand_made_rows():
    from tfm_edu.analysis.probes import without_special

    rows = np.array([[0.5, 0.2, 0.2, 0.1], [0.0, 0.3, 0.1, 0.6]])  # (2, T=4)
    out = without_special(rows, ["[CLS]", "a", "b", "[SEP]"])
    np.testing.assert_allclose(out, [[0, 0.5, 0.5, 0], [0, 0.75, 0.25, 0]])
    with pytest.raises(ValueError, match="no tokens left"):
        without_special(rows[:, [0, 3]], ["[CLS]", "[SEP]"])


def test_compare_attention_in_padded_batches_matches_one_sentence_at_a_time(tiny):
    from tfm_edu.analysis.probes import compare_attention

    model, tokenizer = tiny
    items = [
        ("the actor in the scenes was good .", "was", "actor", "scenes"),
        ("the plot was dull and the songs were very good .", "were", "songs", "plot"),
        ("the movies about the director were not funny .", "were", "movies", "director"),
    ]
    for exclude in (True, False):
        result = compare_attention(
            items, model, tokenizer, exclude_special=exclude, batch_size=2
        )  # padding in both batches
        assert result.target.shape == result.control.shape == (3, 2, 4)
        for n, (sentence, word, target, control) in enumerate(items):
            one = attention_to(sentence, word, model, tokenizer, exclude_special=exclude)
            np.testing.assert_allclose(
                result.target[n], one.weights[..., one.tokens.index(target)], atol=1e-5
            )
            np.testing.assert_allclose(
                result.control[n], one.weights[..., one.tokens.index(control)], atol=1e-5
            )
    with pytest.raises(ValueError, match="occurs 0 time"):
        compare_attention([("the plot was dull .", "was", "movie", "plot")], model, tokenizer)


def test_preference_counts_sentences_won_by_more_than_the_margin():
    from tfm_edu.analysis.probes import AttentionComparison

    target = np.array([[[0.5, 0.1]], [[0.5, 0.2]], [[0.3, 0.2]], [[0.1, 0.2]]])  # (N=4, L=1, H=2)
    control = np.array([[[0.1, 0.1]], [[0.2, 0.1]], [[0.295, 0.4]], [[0.4, 0.2]]])
    result = AttentionComparison([("s", "w", "t", "c")] * 4, target, control, 0.01, True)
    np.testing.assert_allclose(result.preference, [[0.5, 0.25]])  # a 0.005 lead is a tie
    np.testing.assert_allclose(result.reverse_preference, [[0.25, 0.25]])
    assert result.heads(0.5) == [(0, 0)] and result.heads(0.2) == [(0, 0), (0, 1)]
    assert result.heads(0.9) == []


def test_compare_attention_runs_each_sentence_once_and_slices(tiny, monkeypatch):
    from tfm_edu.analysis.probes import compare_attention

    model, tokenizer = tiny
    sentence = "the actor in the scenes was good ."
    items = [(sentence, "was", "actor", "scenes"), (sentence, "good", "actor", "scenes")]
    calls = []
    forward = model.bert.forward
    monkeypatch.setattr(model.bert, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    both = compare_attention(items, model, tokenizer)
    assert len(calls) == 1 and len(both) == 2
    second = both[1:]
    assert second.items == items[1:] and second.target.shape == (1, 2, 4)
    alone = compare_attention(items[1:], model, tokenizer)
    np.testing.assert_allclose(second.target, alone.target, atol=1e-6)
    np.testing.assert_allclose(second.control, alone.control, atol=1e-6)
    with pytest.raises(TypeError, match="slice"):
        both[0]
