"""tfm_edu.models.seq2seq: shapes, masks, tied weights, decoding hooks, Translator inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tfm_edu import decode
from tfm_edu.models.seq2seq import (
    Seq2SeqConfig,
    Seq2SeqTransformer,
    Translator,
    teacher_forcing,
)
from tfm_edu.tokenize import CharTokenizer

TOKENIZER = CharTokenizer("abc0123 -")
B, S, T = 3, 6, 4


def _model(**changes) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    config = Seq2SeqConfig.tiny(TOKENIZER.vocab_size)
    config = Seq2SeqConfig(**{**config.__dict__, "max_source_len": 12, "max_target_len": 8,
                              **changes})  # fmt: skip
    return Seq2SeqTransformer(config).eval()


def _inputs():
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(4, TOKENIZER.vocab_size, (B, S), generator=generator)  # (B, S)
    source[1, 4:] = TOKENIZER.pad_id  # a shorter source
    target = torch.randint(4, TOKENIZER.vocab_size, (B, T), generator=generator)  # (B, T)
    target[:, 0] = TOKENIZER.bos_id
    return source, target


def test_shapes_and_attention_maps():
    model = _model()
    source, target = _inputs()
    out = model(source, target, return_attention=True)
    V, H = TOKENIZER.vocab_size, model.config.num_heads
    assert out.logits.shape == (B, T, V)
    assert [m.shape for m in out.encoder_attentions] == [(B, H, S, S)]
    assert [m.shape for m in out.decoder_attentions] == [(B, H, T, T)]
    assert [m.shape for m in out.cross_attentions] == [(B, H, T, S)]
    assert (out.cross_attentions[0][1, :, :, 4:] == 0).all()  # padding gets no attention
    assert isinstance(out.encoder_attentions, tuple) and isinstance(out.cross_attentions, tuple)
    plain = model(source, target)  # not asked: empty tuples
    assert plain.encoder_attentions == plain.decoder_attentions == plain.cross_attentions == ()


def test_parameter_count_and_tied_embeddings():
    model = _model()
    assert model.output.weight is model.embedding.weight
    D, FF, V = 16, 32, TOKENIZER.vocab_size
    attention, feed_forward = 4 * (D * D + D), 2 * D * FF + FF + D
    encoder = attention + feed_forward + 2 * 2 * D + 2 * D  # + final pre-LN norm
    decoder = 2 * attention + feed_forward + 3 * 2 * D + 2 * D
    assert sum(p.numel() for p in model.parameters()) == V * D + encoder + decoder


def test_the_causal_mask_hides_later_target_tokens():
    source, target = _inputs()
    changed = target.clone()
    changed[:, 2:] = (changed[:, 2:] + 1) % TOKENIZER.vocab_size
    model = _model()
    before, after = model(source, target).logits, model(source, changed).logits
    torch.testing.assert_close(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2:], after[:, 2:])
    cheater = _model(causal=False)  # chapter 5's leak: the future reaches the past
    assert not torch.allclose(cheater(source, target).logits[:, :2],
                              cheater(source, changed).logits[:, :2])  # fmt: skip


def test_source_padding_changes_nothing():
    model = _model()
    source, target = _inputs()
    padded = torch.cat([source, torch.zeros(B, 3, dtype=torch.long)], dim=1)  # (B, S + 3)
    torch.testing.assert_close(model(source, target).logits, model(padded, target).logits)


def test_step_is_the_last_position_of_forward():
    model = _model()
    source, target = _inputs()
    logits, state = model.step(target, model.start_state(source))
    torch.testing.assert_close(logits, model(source, target).logits[:, -1])
    assert state["memory"].shape == (B, S, model.config.d_model)


def test_decoders_run_on_the_model():
    model = _model()
    source, _ = _inputs()
    prompt = torch.full((B, 1), TOKENIZER.bos_id)
    state = model.start_state(source)
    g = decode.greedy(model.step, prompt, state, max_new_tokens=7, eos_id=TOKENIZER.eos_id)
    b1 = decode.beam_search(model.step, prompt, state, beam_size=1, max_new_tokens=7,
                            eos_id=TOKENIZER.eos_id)  # fmt: skip
    b3 = decode.beam_search(model.step, prompt, state, beam_size=3, max_new_tokens=7,
                            eos_id=TOKENIZER.eos_id)  # fmt: skip
    assert torch.equal(g.tokens, b1.tokens)
    assert (b3.score() >= g.score() - 1e-6).all()


def test_bad_shapes_are_named():
    model = _model()
    source, target = _inputs()
    with pytest.raises(ValueError, match="source has length 13"):
        model(torch.ones(B, 13, dtype=torch.long), target)
    with pytest.raises(ValueError, match="int64"):
        model(source.float(), target)
    with pytest.raises(ValueError, match="disagree on B"):
        model(source[:2], target)


def test_translator_input_rules():
    translator = Translator(_model(), TOKENIZER)
    assert translator.translate([]) == []
    out = translator.translate(["  ab 12 ", "c-3"], beam_size=2)  # untrained: any string
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    with pytest.raises(ValueError, match="text 1 is empty"):
        translator.translate(["ab", "   "])
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['!', 'z'\]"):
        translator.translate(["ab!z"])
    with pytest.raises(ValueError, match="13 characters, more than the 12"):
        translator.translate(["a" * 13])
    with pytest.raises(ValueError, match="list of strings"):
        translator.translate("ab")
    with pytest.raises(ValueError, match="tokenizer has"):
        Translator(_model(), CharTokenizer("ab"))


def test_translator_hypotheses_are_ranked():
    translator = Translator(_model(), TOKENIZER)
    hypotheses = translator.hypotheses("ab 12", beam_size=3)
    assert len(hypotheses) == 3
    assert [s for _, s in hypotheses] == sorted((s for _, s in hypotheses), reverse=True)
    assert hypotheses[0][0] == translator.translate(["ab 12"], beam_size=3)[0]


def test_translator_cross_attention_for_the_widgets():
    pytest.importorskip("tfm_edu.viz")
    maps = Translator(_model(), TOKENIZER).cross_attention(" ab 12")
    assert maps.key_tokens == list("ab 12")
    assert maps.layer_names == ["cross 0"]  # 0-based, as everywhere
    assert maps.attentions.shape == (1, 2, len(maps.query_tokens), 5)
    assert abs(maps.attentions.sum(-1) - 1).max() < 1e-5


def test_training_batches_are_bucketed_trimmed_and_complete():
    from tfm_edu.data.dates import batches, date_tokenizer, encode_pairs, make_splits

    pairs = make_splits(0, num_train=640, num_val=0, num_test=0).train
    source, target = encode_pairs(pairs, date_tokenizer())
    stream = batches(source, target, batch_size=32, seed=0)
    epoch = [next(stream) for _ in range(20)]  # 640 / 32 batches: one pass over the data
    seen = sorted(tuple(t.tolist()) for _, tgt in epoch for t in tgt)
    assert seen == sorted(tuple(t.tolist()) for t in target)  # every example exactly once
    for src, _ in epoch:
        lengths = (src != 0).sum(dim=1)
        assert lengths.max() == src.shape[1]  # trimmed to the longest in the batch
        assert lengths.max() - lengths.min() <= 6  # bucketed: similar lengths together
    with pytest.raises(ValueError, match="batch_size=32"):
        next(batches(source[:10], target[:10], batch_size=32))


def test_teacher_forcing_splits_bos_answer_eos():
    target = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])  # [BOS] y [EOS] [PAD]..
    decoder_input, targets = teacher_forcing(target)
    assert decoder_input.tolist() == [[1, 5, 6, 7], [1, 8, 2, 0]]  # reads [BOS] y
    assert targets.tolist() == [[5, 6, 7, 2], [8, 2, 0, 0]]  # predicts y [EOS]
    with pytest.raises(ValueError, match=r"\(B, T \+ 1\).*got \(5,\)"):
        teacher_forcing(target[0])
    with pytest.raises(ValueError, match="T >= 1"):
        teacher_forcing(target[:, :1])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_loss_is_cross_entropy_over_the_real_target_tokens(label_smoothing):
    model = _model()
    source, decoder_input = _inputs()
    targets = torch.roll(decoder_input, -1, dims=1)
    targets[:, -1] = TOKENIZER.eos_id
    targets[2, 2:] = TOKENIZER.pad_id  # a shorter answer: its padding is not scored
    assert TOKENIZER.pad_id == model.config.pad_id == 0
    out = model(source, decoder_input, targets, label_smoothing=label_smoothing)
    real = targets != 0  # (B, T)
    expected = F.cross_entropy(
        out.logits[real], targets[real], label_smoothing=label_smoothing
    )  # only the real tokens, picked out by hand
    torch.testing.assert_close(out.loss, expected)
    if label_smoothing == 0.0:  # and once more, written out
        log_p = out.logits.log_softmax(-1)  # (B, T, V)
        picked = [log_p[b, t, targets[b, t]] for b, t in real.nonzero().tolist()]
        torch.testing.assert_close(out.loss, -torch.stack(picked).mean())
    assert model(source, decoder_input).loss is None
    with pytest.raises(ValueError, match=r"\(3, 4\).*got \(3, 3\)"):
        model(source, decoder_input, targets[:, :3])


def test_default_config_is_the_shipped_date_translator():
    from tfm_edu.checkpoints import load_card
    from tfm_edu.data.dates import date_tokenizer

    assert Seq2SeqConfig() == Seq2SeqConfig(**load_card("date_translator")["config"])
    assert Seq2SeqConfig().vocab_size == date_tokenizer().vocab_size
    assert Seq2SeqConfig.tiny().d_model == 16
