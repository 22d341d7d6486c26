"""tfm_edu.models.bert: structure, an independent functional re-implementation, padding,
the masking rule, heads and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tfm_edu.attention import set_fused
from tfm_edu.checkpoints import load_card, load_weights, save_checkpoint
from tfm_edu.layers import EncoderLayer
from tfm_edu.models.bert import (
    BERT,
    IGNORE_INDEX,
    BERTConfig,
    BERTForMaskedLM,
    BERTForSequenceClassification,
    apply_mask_rule,
    mask_tokens,
    mean_pool,
)

CONFIG = BERTConfig(vocab_size=30, d_model=16, num_layers=2, num_heads=4, d_ff=32, max_positions=12)


def _model(cls=BERT, **kwargs):
    torch.manual_seed(0)
    return cls(CONFIG, **kwargs).eval()


def _reference_bert(state: dict, config: BERTConfig, ids, types, real):
    """BERT written out from the paper with plain tensor operations, reading our state dict."""

    def norm(x, name):
        return F.layer_norm(
            x, (config.d_model,), state[f"{name}.weight"], state[f"{name}.bias"],
            config.layer_norm_eps,
        )  # fmt: skip

    def linear(x, name):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    B, T = ids.shape
    H, Dh = config.num_heads, config.d_model // config.num_heads
    x = (
        state["embeddings.token_embedding.weight"][ids]
        + state["embeddings.segment_embedding.weight"][types]
        + state["embeddings.position_embedding.embedding.weight"][:T]
    )
    x = norm(x, "embeddings.norm")
    maps = []
    for i in range(config.num_layers):
        p = f"encoder.layers.{i}"

        def heads(x, proj, p=p):
            return linear(x, f"{p}.self_attn.{proj}").view(B, T, H, Dh).transpose(1, 2)

        scores = heads(x, "q_proj") @ heads(x, "k_proj").transpose(-1, -2) / math.sqrt(Dh)
        scores = scores + torch.where(real[:, None, None, :], 0.0, -1e9)
        weights = scores.softmax(-1)
        maps.append(weights)
        context = (weights @ heads(x, "v_proj")).transpose(1, 2).reshape(B, T, -1)
        x = norm(x + linear(context, f"{p}.self_attn.out_proj"), f"{p}.norm1")
        hidden = F.gelu(linear(x, f"{p}.feed_forward.linear1"))  # exact erf GELU
        x = norm(x + linear(hidden, f"{p}.feed_forward.linear2"), f"{p}.norm2")
    return x, maps


def _batch():
    ids = torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3], [2, 12, 13, 3, 0, 0, 0, 0]])  # (2, 8)
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1], [0] * 8])
    real = ids != 0
    return ids, types, real


def test_built_from_the_shared_encoder_layer_post_ln_gelu():
    model = _model()
    layers = list(model.encoder.layers)
    assert len(layers) == CONFIG.num_layers
    assert all(type(layer) is EncoderLayer and not layer.norm_first for layer in layers)
    activation = layers[0].feed_forward.activation
    assert isinstance(activation, torch.nn.GELU) and activation.approximate == "none"
    assert layers[0].norm1.eps == CONFIG.layer_norm_eps == 1e-12


def test_parameter_counts_are_pinned():
    def count(model):
        return sum(p.numel() for p in model.parameters())  # tied weights count once

    assert count(BERT(BERTConfig.minilm_l6())) == 22_565_376  # 22,713,216 minus the pooler
    tiny = BERTConfig()  # chapter 6's tiny BERT is the default
    embeddings = 61 * 64 + 64 * 64 + 2 * 64 + 2 * 64  # tokens, positions, segments, LayerNorm
    layer = 4 * (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64) + 2 * 2 * 64
    assert count(BERT(tiny)) == embeddings + 2 * layer == 108_224
    assert count(BERTForMaskedLM(tiny)) == 108_224 + 64 * 64 + 64 + 2 * 64 + 61  # no 2nd (V, D)
    assert count(BERTForSequenceClassification(tiny)) == 108_224 + 64 * 2 + 2


def test_matches_an_independent_functional_bert():
    model = _model()
    ids, types, real = _batch()
    with torch.no_grad():
        out = model(ids, real, types, return_attention=True)
        expected, maps = _reference_bert(model.state_dict(), CONFIG, ids, types, real)
    rows = real  # padded query rows are not compared (they are never used)
    torch.testing.assert_close(out.last_hidden_state[rows], expected[rows], atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(out.attentions, maps, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_attention_shapes_rows_and_padding():
    model = _model()
    ids, types, real = _batch()
    with torch.no_grad():
        out = model(ids, real, types, return_attention=True)
    assert out.last_hidden_state.shape == (2, 8, CONFIG.d_model)
    assert len(out.attentions) == CONFIG.num_layers
    for weights in out.attentions:
        assert weights.shape == (2, CONFIG.num_heads, 8, 8)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, CONFIG.num_heads, 8))
        assert weights[1, :, :, 4:].abs().max() == 0  # nobody attends to padding
    assert model(ids, real).attentions == ()  # not asked: an empty tuple


def test_padding_does_not_change_the_real_tokens():
    model = _model()
    ids, _, real = _batch()
    with torch.no_grad():
        alone = model(ids[1:, :4]).last_hidden_state  # (1, 4, D), no padding at all
        padded = model(ids[1:], real[1:]).last_hidden_state[:, :4]
    torch.testing.assert_close(padded, alone, atol=1e-6, rtol=1e-5)


def test_fused_path_agrees():
    model = _model()
    ids, types, real = _batch()
    with torch.no_grad():
        explicit = model(ids, real, types).last_hidden_state
        set_fused(model, True)
        fused = model(ids, real, types).last_hidden_state
    torch.testing.assert_close(fused[real], explicit[real], atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_named():
    model = _model()
    with pytest.raises(ValueError, match="max_positions=12"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        model(torch.tensor([[1, 30]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="type_vocab_size"):
        model(torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.tensor([[0, 1, 2]]))


def test_mean_pool_ignores_padding():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)  # (B=2, T=3, D=2)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        mean_pool(hidden, mask[:, :2])


def test_mask_rule_on_chosen_draws():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3]])
    maskable = torch.tensor([[False, True, True, True, True, False]])
    select = torch.tensor([[0.0, 0.1, 0.1, 0.1, 0.5, 0.0]])  # 10..12 chosen; 13 not; specials no
    replace = torch.tensor([[0.0, 0.5, 0.85, 0.95, 0.0, 0.0]])  # mask, random, keep
    random_ids = torch.full((1, 6), 20)
    inputs, labels = apply_mask_rule(ids, maskable, select, replace, random_ids, mask_id=4)
    assert inputs.tolist() == [[2, 4, 20, 12, 13, 3]]
    assert labels.tolist() == [[IGNORE_INDEX, 10, 11, 12, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="shaped like"):
        apply_mask_rule(ids, maskable[:, :3], select, replace, random_ids, mask_id=4)


def test_mask_tokens_proportions():
    ids = torch.randint(5, 30, (400, 50), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    pool = torch.arange(5, 30)
    generator = torch.Generator().manual_seed(1)
    inputs, labels = mask_tokens(ids, maskable, 4, pool, generator=generator)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 0].any()
    assert abs(chosen.float().mean().item() - 0.15 * 49 / 50) < 0.01
    masked = (inputs == 4)[chosen].float().mean().item()
    kept = (inputs == ids)[chosen].float().mean().item()  # includes random draws of the same id
    assert abs(masked - 0.8) < 0.03 and abs(kept - (0.1 + 0.1 / 25)) < 0.02
    assert (inputs[~chosen] == ids[~chosen]).all()


def test_masked_lm_loss_counts_only_the_chosen_tokens():
    model = _model(BERTForMaskedLM)
    ids, types, real = _batch()
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 1], labels[0, 5], labels[1, 2] = 7, 29, 13  # three chosen tokens
    out = model(ids, real, types, targets=labels)
    # Written out: the mean of -log softmax(logits)[target] over the chosen places only.
    chosen = [(0, 1, 7), (0, 5, 29), (1, 2, 13)]
    expected = -sum(out.logits[b, t].log_softmax(-1)[v] for b, t, v in chosen) / len(chosen)
    torch.testing.assert_close(out.loss, expected)
    assert out.loss.requires_grad


def test_masked_lm_loss_is_zero_with_a_gradient_when_nothing_is_chosen():
    model = _model(BERTForMaskedLM)
    ids, types, real = _batch()
    out = model(ids, real, types, targets=torch.full_like(ids, IGNORE_INDEX))
    assert out.loss.item() == 0.0
    out.loss.backward()  # still part of the graph: a batch without choices does not crash
    grad = model.bert.embeddings.token_embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert model(ids, real, types).loss is None  # no targets, no loss


def test_classification_loss_is_the_cross_entropy_of_its_logits():
    model = _model(BERTForSequenceClassification, num_labels=3)
    ids, types, real = _batch()
    targets = torch.tensor([2, 0])
    out = model(ids, real, types, targets=targets)
    log_p = out.logits.log_softmax(-1)  # (B, 3)
    torch.testing.assert_close(out.loss, -(log_p[0, 2] + log_p[1, 0]) / 2)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, targets))


def test_masked_lm_targets_of_the_wrong_shape_are_named():
    ids, types, real = _batch()  # (2, 8)
    with pytest.raises(ValueError, match=r"\(B, T\) = \(2, 8\), got \(2, 7\)"):
        _model(BERTForMaskedLM)(ids, real, types, targets=torch.zeros(2, 7, dtype=torch.long))


def test_classification_targets_of_the_wrong_shape_are_named():
    ids, types, real = _batch()  # (2, 8): the targets must be (2,), one class per sequence
    with pytest.raises(ValueError, match=r"\(2, 8\)"):
        _model(BERTForSequenceClassification)(ids, real, types, targets=torch.zeros_like(ids))


def test_default_config_is_the_shipped_tiny_bert_and_its_tokenizer():
    from tfm_edu.data import sentences

    assert BERTConfig() == BERTConfig(**load_card("bert_tiny_mlm")["config"])
    assert BERTConfig().vocab_size == sentences.tokenizer().vocab_size == 61


def test_heads_and_tied_checkpoint_round_trip(tmp_path):
    mlm = _model(BERTForMaskedLM)
    assert mlm.mlm_head.decoder.weight is mlm.bert.embeddings.token_embedding.weight
    ids, types, real = _batch()
    with torch.no_grad():
        logits = mlm(ids, real, types).logits
    assert logits.shape == (2, 8, CONFIG.vocab_size)
    save_checkpoint(mlm, tmp_path / "mlm", CONFIG, command="test")
    again = load_weights(BERTForMaskedLM(CONFIG), tmp_path / "mlm").eval()
    assert again.mlm_head.decoder.weight is again.bert.embeddings.token_embedding.weight
    with torch.no_grad():
        torch.testing.assert_close(again(ids, real, types).logits, logits)
    for pooling in ("cls", "mean"):
        classifier = _model(BERTForSequenceClassification, num_labels=3, pooling=pooling)
        with torch.no_grad():
            assert classifier(ids, real, types).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="pooling"):
        BERTForSequenceClassification(CONFIG, pooling="max")
