"""Chapter 11's exercise checks pass correct attempts written independently here and name the
typical slips in their hints."""

from __future__ import annotations

import math

import numpy as np
import torch
from exercise_helpers import assert_hint, stub

from tfm_edu.exercises.efficiency import (
    check_head_importance,
    check_online_softmax_update,
    check_quantize_per_channel,
)

# ------------------------------------------------------------------ the online-softmax update


def update_by_hand(m, s, block):
    """A learner's update with log-sum-exp: log l_new = logaddexp(m + log l, lse(block))."""
    finite = [x for x in block if x != -math.inf]
    if not finite:
        return m, s
    new_max = max([m, *finite])
    total = s * math.exp(m - new_max) if s else 0.0
    return new_max, total + sum(math.exp(x - new_max) for x in finite)


def test_online_softmax_check_passes_a_correct_update_and_waits_for_a_stub():
    assert check_online_softmax_update(update_by_hand).passed
    assert check_online_softmax_update(stub).status == "not done"


def test_online_softmax_check_names_the_missing_rescale_and_the_overflow():
    def no_rescale(m, s, block):
        new_max = max(m, float(np.max(block)))
        return new_max, s + float(np.sum(np.exp(np.asarray(block) - new_max)))

    assert_hint(check_online_softmax_update(no_rescale), "multiply it by exp(old max - new max)")

    def no_max(m, s, block):
        with np.errstate(over="ignore"):
            return max(m, float(np.max(block))), s + float(np.sum(np.exp(block)))

    assert_hint(check_online_softmax_update(no_max), "subtract the running max inside exp")


# ------------------------------------------------------------------ per-channel int8


def quantise_by_hand(weight):
    """A learner's quantiser with a loop over rows, zero rows given a step of 0.5."""
    rows, scales = [], []
    for row in weight:
        top = float(row.abs().max())
        scale = top / 127 if top > 0 else 0.5
        rows.append(torch.round(row / scale))
        scales.append(scale)
    return torch.stack(rows).to(torch.int8), torch.tensor(scales, dtype=weight.dtype)


def test_quantise_check_passes_a_correct_quantiser_and_waits_for_a_stub():
    assert check_quantize_per_channel(quantise_by_hand).passed
    assert check_quantize_per_channel(stub).status == "not done"


def test_quantise_check_names_one_scale_for_all_rows_and_truncation():
    def per_tensor(weight):
        scale = weight.abs().max() / 127
        q = torch.round(weight / scale).to(torch.int8)
        return q, torch.full((weight.shape[0],), float(scale))

    assert_hint(check_quantize_per_channel(per_tensor), "one scale per output row")

    def truncated(weight):
        q, scale = quantise_by_hand(weight)
        return (weight / scale[:, None]).trunc().to(torch.int8), scale

    assert_hint(check_quantize_per_channel(truncated), "round to the nearest integer")


# ------------------------------------------------------------------ head importance


def importance_by_hand(model, input_ids, attention_mask, targets):
    """A learner's gates as hooks written here, independent of tfm_edu.efficiency.pruning."""
    from tfm_edu.analysis.ablation import attention_layers

    layers = attention_layers(model)
    gates = [torch.ones(m.num_heads, requires_grad=True) for m in layers.values()]
    handles = []
    for gate, module in zip(gates, layers.values(), strict=True):

        def hook(_module, args, gate=gate, dh=module.head_dim):
            merged = args[0]  # (B, T, H*Dh)
            return (merged * gate.repeat_interleave(dh),)

        handles.append(module.out_proj.register_forward_pre_hook(hook))
    try:
        loss = model(input_ids, attention_mask, targets=targets).loss
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad()
    return torch.stack([gate.grad.abs() for gate in gates])  # (L, H)


def test_importance_check_passes_independent_gates_and_waits_for_a_stub():
    assert check_head_importance(importance_by_hand).passed
    assert check_head_importance(stub).status == "not done"


def test_importance_check_names_the_missing_absolute_value():
    def signed(model, input_ids, attention_mask, targets):
        return importance_by_hand(model, input_ids, attention_mask, targets) * torch.tensor(
            [[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 1.0]]
        )

    result = check_head_importance(signed)
    assert not result.passed
