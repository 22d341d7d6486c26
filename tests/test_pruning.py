"""tfm_edu.efficiency.pruning: gates, importance, real head pruning, magnitude pruning, curves."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tfm_edu.analysis.ablation import ablate_heads, attention_layers
from tfm_edu.attention import MultiHeadAttention
from tfm_edu.data import digits
from tfm_edu.efficiency.pruning import (
    CurvePoint,
    all_heads,
    count_parameters,
    count_zeros,
    group_heads,
    head_gates,
    head_importance,
    importance_order,
    magnitude_prune,
    parameter_bytes,
    prune_heads,
    pruning_curve,
)
from tfm_edu.models.bert import BERTConfig, BERTForSequenceClassification
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.pretrained import digits_vit, tiny_bert_sentiment


def _bert():
    model, tokenizer = tiny_bert_sentiment()
    batch = tokenizer.batch_encode(["the film was not good", "the actors are great but dull"])
    return model, lambda m: m(batch["input_ids"], batch["attention_mask"]).logits  # (2, 2)


def _vit():
    images = digits.load("test")[0][:6]  # (6, 1, 8, 8)
    return digits_vit(), lambda m: m(images).logits  # (6, 10)


def _gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=13, block_size=16, num_layers=3, num_heads=4, d_model=32, d_ff=64)
    ids = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(1))
    return GPT(config).eval(), lambda m: m(ids).logits  # (2, 10, 13)


MODELS = {"bert_sentiment": _bert, "digits_vit": _vit, "gpt": _gpt}
# some heads of one layer, and every head of the last layer
HEADS = {
    "bert_sentiment": {0: [1, 3], 1: [0, 1, 2, 3]},
    "digits_vit": {0: [2], 3: [0, 1, 2, 3]},
    "gpt": {0: [0, 3], 1: [2], 2: [0, 1, 2, 3]},
}


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
def test_gates_at_one_change_nothing_at_zero_equal_ablation_and_leave_no_hook(name):
    model, run = MODELS[name]()
    heads = HEADS[name]
    with torch.no_grad():
        before = run(model)
        with head_gates(model) as gates:
            assert list(gates) == list(attention_layers(model))
            assert all(
                g.shape == (4,) and g.requires_grad and bool((g == 1).all()) for g in gates.values()
            )
            assert torch.equal(run(model), before)  # x * 1 is x, bit for bit
            for key, chosen in heads.items():
                gates[key][chosen] = 0
            gated = run(model)
        with ablate_heads(model, heads):
            ablated = run(model)
        assert torch.equal(run(model), before)
    torch.testing.assert_close(gated, ablated, rtol=0, atol=1e-6)
    assert not torch.allclose(gated, before, atol=1e-3)
    assert _no_hooks(model)


def test_gates_are_removed_when_the_block_raises():
    model, _ = _gpt()
    with pytest.raises(RuntimeError, match="inside"), head_gates(model):
        raise RuntimeError("inside")
    assert _no_hooks(model)


@pytest.mark.parametrize("name", MODELS)
def test_prune_heads_equals_gated_and_ablated_and_removes_exactly_those_parameters(name):
    model, run = MODELS[name]()
    heads = HEADS[name]
    original = copy.deepcopy(model.state_dict())
    pruned = prune_heads(model, heads)
    with torch.no_grad():
        with ablate_heads(model, heads):
            ablated = run(model)
        with head_gates(model) as gates:
            for key, chosen in heads.items():
                gates[key][chosen] = 0
            gated = run(model)
        ours = run(pruned)
    torch.testing.assert_close(ours, ablated, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, gated, rtol=1e-5, atol=1e-5)
    # per head: Dh rows of q, k, v (weights D each, biases 1 each) and Dh columns of out_proj
    module = attention_layers(model)[0]
    D, Dh = module.d_model, module.head_dim
    removed = sum(len(h) for h in heads.values())
    assert count_parameters(model) - count_parameters(pruned) == removed * (4 * Dh * D + 3 * Dh)
    assert parameter_bytes(model) - parameter_bytes(pruned) == 4 * removed * (4 * Dh * D + 3 * Dh)
    for key, layer in attention_layers(pruned).items():
        kept = 4 - len(heads.get(key, []))
        assert (layer.num_heads, layer.num_kv_heads, layer.head_dim) == (kept, kept, Dh)
        assert layer.q_proj.weight.shape == layer.v_proj.weight.shape == (kept * Dh, D)
        assert layer.out_proj.weight.shape == (D, kept * Dh) and layer.out_proj.bias.shape == (D,)
    # the original is untouched, and the copy keeps what it kept
    assert all(m.num_heads == 4 for m in attention_layers(model).values())
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in original.items())
    key, chosen = next(iter(heads.items()))
    keep = [h for h in range(4) if h not in chosen][0]
    big, small = attention_layers(model)[key], attention_layers(pruned)[key]
    row = [h for h in range(4) if h not in chosen].index(keep)
    assert torch.equal(
        small.k_proj.weight[row * Dh : (row + 1) * Dh],
        big.k_proj.weight[keep * Dh : (keep + 1) * Dh],
    )
    assert _no_hooks(pruned) and pruned.training == model.training


def test_a_layer_without_heads_adds_only_the_bias_and_returns_empty_weights():
    model, run = _gpt()
    pruned = prune_heads(model, {1: range(4)})
    layer = attention_layers(pruned)[1]
    assert layer.num_heads == 0 and layer.q_proj.weight.shape == (0, 32)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        out, weights = layer(x, x, x)
    torch.testing.assert_close(out, layer.out_proj.bias.expand(2, 5, 32))
    assert weights.shape == (2, 0, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(run(pruned), _ablated(model, run, {1: [0, 1, 2, 3]}))
    everything = prune_heads(model, group_heads(all_heads(model)))
    assert count_parameters(model) - count_parameters(everything) == 12 * (4 * 8 * 32 + 3 * 8)


def _ablated(model, run, heads):
    with torch.no_grad(), ablate_heads(model, heads):
        return run(model)


def test_prune_heads_names_bad_layers_and_heads():
    model, _ = _gpt()
    with pytest.raises(KeyError, match=r"valid keys: \[0, 1, 2\]"):
        prune_heads(model, {3: [0]})
    with pytest.raises(IndexError, match=r"heads 0\.\.3, got head 4"):
        prune_heads(model, {0: [4]})
    with pytest.raises(TypeError, match="mapping"):
        prune_heads(model, [(0, 1)])
    with pytest.raises(TypeError, match="list of heads"):
        prune_heads(model, {0: 1})
    grouped = nn.ModuleList([MultiHeadAttention(d_model=8, num_heads=4, num_kv_heads=2)])
    with pytest.raises(ValueError, match="grouped-query"):
        prune_heads(grouped, {0: [1]})
    assert prune_heads(grouped, {0: []}) is not grouped  # nothing to remove: a plain copy


def _tiny_classifier():
    torch.manual_seed(0)
    config = BERTConfig(vocab_size=20, d_model=12, num_layers=2, num_heads=3, d_ff=16, dropout=0.0)
    model = BERTForSequenceClassification(config).double()
    generator = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randint(1, 20, (n, 6), generator=generator),
            torch.randint(0, 2, (n,), generator=generator),
        )
        for n in (1, 1, 3)
    ]
    return model, batches


def _loss(model, batch):
    ids, labels = batch
    return model(ids, targets=labels).loss


def test_importance_is_the_mean_absolute_gradient_checked_by_finite_differences():
    model, batches = _tiny_classifier()
    model.train()  # head_importance measures in eval mode and puts the mode back
    raw = head_importance(model, batches, _loss, normalize=False)
    assert model.training
    model.eval()
    # dL/dxi_h: scaling head h's Dh columns of out_proj by xi is the gate (out_proj is linear)
    eps, expected = 1e-6, torch.zeros(2, 3, dtype=torch.float64)
    for layer, module in attention_layers(model).items():
        for head in range(3):
            columns = slice(head * module.head_dim, (head + 1) * module.head_dim)
            for batch in batches:
                losses = []
                for xi in (1 + eps, 1 - eps):
                    scaled = copy.deepcopy(model)
                    with torch.no_grad():
                        attention_layers(scaled)[layer].out_proj.weight[:, columns] *= xi
                        losses.append(float(_loss(scaled, batch)))
                expected[layer, head] += abs(losses[0] - losses[1]) / (2 * eps) / len(batches)
    torch.testing.assert_close(raw.double(), expected, rtol=1e-4, atol=1e-8)
    normalised = head_importance(model, batches, _loss)
    torch.testing.assert_close(normalised.double(), expected / expected.norm(dim=1, keepdim=True))
    torch.testing.assert_close(normalised.norm(dim=1), torch.ones(2))
    assert all(p.grad is None for p in model.parameters())  # only the gates got gradients


def test_importance_per_batch_takes_the_absolute_value_after_the_batch_mean():
    model, batches = _tiny_classifier()
    ids = torch.cat([batches[0][0], batches[1][0]])  # the two one-example batches as one batch
    labels = torch.cat([batches[0][1], batches[1][1]])
    singles = head_importance(model, batches[:2], _loss, normalize=False)
    together = head_importance(model, [(ids, labels)], _loss, normalize=False)
    assert bool((together <= singles + 1e-12).all())  # |mean of gradients| <= mean of |gradients|


def test_importance_checks_its_inputs():
    model, batches = _tiny_classifier()
    with pytest.raises(ValueError, match="batches is empty"):
        head_importance(model, [], _loss)
    with pytest.raises(ValueError, match="scalar tensor"):
        head_importance(model, batches, lambda m, b: m(b[0]).logits)
    assert _no_hooks(model)
    pruned = prune_heads(model, {0: [0]})
    with pytest.raises(ValueError, match=r"different numbers of heads \[2, 3\]"):
        head_importance(pruned, batches, _loss)


def test_importance_order_goes_from_least_to_most_important():
    model, _ = _gpt()
    importance = torch.tensor([[0.5, 0.1, 0.9, 0.3], [0.2, 0.8, 0.1, 0.7], [1.0, 0.0, 0.6, 0.4]])
    order = importance_order(model, importance)
    assert order[:4] == [(2, 1), (0, 1), (1, 2), (1, 0)]  # ties (0.1): the earlier layer first
    assert sorted(order) == sorted(all_heads(model)) and len(order) == 12
    with pytest.raises(ValueError, match=r"\(L, H\) for this model's 3 layers and 12 heads"):
        importance_order(model, torch.ones(4, 3))
    assert group_heads([(1, 2), (0, 1), (1, 0)]) == {1: [2, 0], 0: [1]}
    with pytest.raises(TypeError, match="pairs"):
        group_heads([3])


def test_pruning_curve_switches_heads_off_in_order_and_measures_each_step():
    model, run = _gpt()
    reference = run(model).detach()

    def evaluate(m):
        with torch.no_grad():
            return float((run(m) - reference).abs().mean())

    order = all_heads(model)[::-1]
    curve = pruning_curve(model, evaluate, order, steps=5)
    assert [p.heads_removed for p in curve] == [0, 5, 10, 12]
    assert curve[0] == CurvePoint(0, 0.0)
    for point in curve[1:]:
        really = prune_heads(model, group_heads(order[: point.heads_removed]))
        assert point.score == pytest.approx(evaluate(really), rel=1e-4)
    assert [p.heads_removed for p in pruning_curve(model, evaluate, order[:3])] == [0, 1, 2, 3]
    assert _no_hooks(model)
    with pytest.raises(ValueError, match=r"more than once"):
        pruning_curve(model, evaluate, [(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="steps must be a positive int"):
        pruning_curve(model, evaluate, order, steps=0)
    with pytest.raises(IndexError, match="got head 9"):
        pruning_curve(model, evaluate, [(0, 9)])


def test_magnitude_prune_zeroes_the_smallest_weights_but_keeps_every_parameter():
    model, run = _gpt()
    pruned = magnitude_prune(model, 0.3)
    assert count_parameters(pruned) == count_parameters(model)
    assert parameter_bytes(pruned) == parameter_bytes(model)
    names = sorted(n for n, _ in model.named_parameters())
    assert sorted(n for n, _ in pruned.named_parameters()) == names  # no weight_orig is left
    assert all("mask" not in n for n, _ in pruned.named_buffers()) and _no_hooks(pruned)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    pruned_modules = dict(pruned.named_modules())
    for name, original in linears:
        before, after = original.weight, pruned_modules[name].weight
        zeroed = after == 0
        assert int(zeroed.sum()) == round(0.3 * before.numel()) + int((before == 0).sum())
        assert before.abs()[zeroed].max() <= before.abs()[~zeroed].min()  # the smallest went
        assert torch.equal(after[~zeroed], before[~zeroed])
    assert count_zeros(pruned) > count_zeros(model)
    assert count_zeros(model) == sum(int((p == 0).sum()) for p in model.parameters())
    assert count_zeros(magnitude_prune(model, 0)) == count_zeros(model)
    assert pruned.lm_head.weight is pruned.token_embedding.weight  # still tied
    assert not torch.equal(run(pruned), run(model))
    with pytest.raises(ValueError, match=r"share in \[0, 1\]"):
        magnitude_prune(model, 1.5)
    with pytest.raises(ValueError, match=r"share in \[0, 1\]"):
        magnitude_prune(model, True)


def test_a_pruned_gpt_generates_the_same_with_and_without_its_kv_cache():
    from tfm_edu.decode import generate

    model, _ = _gpt()
    pruned = prune_heads(model, HEADS["gpt"])  # layer 2 keeps no head at all
    prompt = torch.tensor([[1, 2, 3]])  # (1, 3)
    cached = generate(pruned, prompt, 10, greedy=True, use_cache=True)  # (1, 13)
    uncached = generate(pruned, prompt, 10, greedy=True, use_cache=False)
    assert torch.equal(cached, uncached)
    cache = pruned.empty_cache()
    pruned(prompt, cache=cache)
    assert cache.length == 3 and cache[2].keys.shape == (1, 0, 3, 8)  # (B, H=0, S, Dh)
