"""Checks for chapter 11: the online-softmax update, per-channel int8 quantisation, and a head's
importance from the gradient of its gate.

The references are the package's own (`tfm_edu.efficiency.tiled.online_softmax_update`,
`tfm_edu.efficiency.quantize.quantize_per_channel` / `dequantize`,
`tfm_edu.efficiency.pruning.head_gates`), each tested elsewhere against a formula written out
independently: the online update against the softmax of the whole stream, the quantiser against
its half-a-step error bound, the gates against switching heads off.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from tfm_edu.efficiency.pruning import head_gates, head_importance
from tfm_edu.efficiency.quantize import dequantize, quantize_per_channel
from tfm_edu.efficiency.tiled import online_softmax_update
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function, graded
from tfm_edu.models.bert import BERTConfig, BERTForSequenceClassification

__all__ = ["check_online_softmax_update", "check_quantize_per_channel", "check_head_importance"]


# ------------------------------------------------------------------ the online-softmax update


def _stream_state(scores: np.ndarray) -> tuple[float, float]:
    """The running (max, sum) after the whole of `scores`, by the package's update."""
    m, s = -np.inf, 0.0
    for x in scores:
        m, s = online_softmax_update(m, s, np.array([x]))
    return m, s


@graded
def check_online_softmax_update(fn) -> CheckResult:
    """Check `fn(running_max, running_sum, block (n,)) -> (new_max, new_sum)`: the running max
    and the running sum of exp(score - running max) after one more block of scores."""
    rng = np.random.default_rng(11)

    def case(seen, block, label):
        m, s = _stream_state(np.asarray(seen, dtype=float))
        return Case((m, s, np.asarray(block, dtype=float)), label=label)

    cases = [
        case([], rng.normal(size=4), "the first block (running max -inf, sum 0)"),
        case(rng.normal(size=5), rng.normal(size=3) + 3.0, "a block with a new, larger max"),
        case(rng.normal(size=5) + 3.0, rng.normal(size=3), "a block below the running max"),
        case(rng.normal(size=3) * 400, rng.normal(size=6) * 400 + 800, "scores near 1000"),
        case(rng.normal(size=4), [-np.inf, -np.inf], "a block that is all -inf (masked)"),
        case([], [-np.inf, 0.5, -np.inf], "a masked first entry"),
    ]

    def no_rescale(m, s, block):  # the old sum is kept as if the max had not moved
        new_max = max(m, float(np.max(block)))
        return new_max, s + float(np.sum(np.exp(block - new_max)))

    def no_max(m, s, block):  # plain exponentials: overflow past about 709
        return max(m, float(np.max(block))), s + float(np.sum(np.exp(block)))

    def block_max_only(m, s, block):  # the new block's max replaces the running one
        block_max = float(np.max(block))
        return block_max, s * np.exp(m - block_max) + float(np.sum(np.exp(block - block_max)))

    def inverted_rescale(m, s, block):
        new_max = max(m, float(np.max(block)))
        return new_max, s * np.exp(new_max - m) + float(np.sum(np.exp(block - new_max)))

    mistakes = [
        Mistake(
            "when the max grows, the old sum was counted against the old max: multiply it by "
            "exp(old max - new max) before adding the new block's terms.",
            no_rescale,
        ),
        Mistake(
            "subtract the running max inside exp: exp of a score near 1000 overflows to inf.",
            no_max,
        ),
        Mistake(
            "the new max is the larger of the running max and the block's max, not the block's "
            "max alone (a block may lie entirely below what came before).",
            block_max_only,
        ),
        Mistake(
            "the rescaling factor is exp(old max - new max), at most 1; yours is its inverse.",
            inverted_rescale,
        ),
    ]
    result = check_function(
        "online_softmax_update",
        fn,
        online_softmax_update,
        cases,
        mistakes,
        atol=1e-9,
        rtol=1e-9,
        output_names=("new_max", "new_sum"),
    )
    if result.passed:
        return CheckResult(
            result.name,
            "passed",
            f"✓ online_softmax_update: matches tfm_edu.efficiency.tiled.online_softmax_update "
            f"on {len(cases)} streams, masked blocks and scores near 1000 included",
        )
    return result


# ------------------------------------------------------------------ per-channel int8


def _round_trip(fn):
    """The learner's quantiser followed by the package's dequantiser (which refuses codes that
    are not int8, naming their dtype)."""

    def run(weight):
        q, scale = fn(weight)
        return dequantize(q, scale)

    return run


@graded
def check_quantize_per_channel(fn) -> CheckResult:
    """Check `fn(weight (out, in)) -> (q int8 (out, in), scale (out,))`: symmetric int8, one
    scale per output row, scale = max |w| of the row / 127, q = round(w / scale)."""
    g = torch.Generator().manual_seed(12)

    def case(weight, label):
        return Case((weight,), label=label)

    outlier = torch.randn(6, 8, generator=g) * 0.05
    outlier[2] *= 40.0  # one row with large weights, as real layers have
    zero = torch.randn(4, 5, generator=g)
    zero[1] = 0.0
    cases = [
        case(torch.randn(3, 4, generator=g), "a 3 x 4 matrix"),
        case(outlier, "one row 40x larger than the others"),
        case(zero, "a row of zeros"),
        case(torch.tensor([[0.5, -1.27, 0.01]]), "one row: max |w| = 1.27, so the step is 0.01"),
    ]

    def reference(weight):
        return quantize_per_channel(weight)

    def per_tensor(weight):
        scale = weight.abs().max() / 127
        q = torch.round(weight / scale).clamp(-127, 127).to(torch.int8)
        return q, scale.expand(weight.shape[0]).clone()

    def truncated(weight):
        q, scale = quantize_per_channel(weight)
        safe = torch.where(scale > 0, scale, 1.0)
        return (weight / safe[:, None]).trunc().to(torch.int8), scale

    def by_column(weight):
        scale = weight.abs().amax(dim=0) / 127  # (in,): one per input column
        return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale

    def range_128(weight):
        scale = weight.abs().amax(dim=1) / 128
        safe = torch.where(scale > 0, scale, 1.0)
        return torch.round(weight / safe[:, None]).clamp(-128, 127).to(torch.int8), scale

    def unsafe_zero(weight):
        scale = weight.abs().amax(dim=1) / 127
        return torch.round(weight / scale[:, None]).to(torch.int8), scale

    mistakes = [
        Mistake(
            "one scale per output row: take the max of |w| along each row (dim=1), not over the "
            "whole matrix; a single large row then no longer coarsens every other row's steps.",
            per_tensor,
        ),
        Mistake("round to the nearest integer (torch.round), not towards zero.", truncated),
        Mistake("the scale is per output row, (out,): reduce over dim=1, the inputs.", by_column),
        Mistake(
            "symmetric int8 uses -127..127 with scale = max|w| / 127, so +max and -max are both "
            "exact.",
            range_128,
        ),
        Mistake(
            "a row of zeros has max |w| = 0: give it a scale that is not zero (e.g. 1.0), or "
            "w / scale is 0 / 0.",
            unsafe_zero,
        ),
    ]
    quantised = check_function(
        "quantize_per_channel",
        _round_trip(fn),
        _round_trip(reference),
        cases,
        [Mistake(m.hint, _round_trip(m.wrong)) for m in mistakes],
        atol=1e-6,
        rtol=1e-5,
        output_names=("dequantize(q, scale)",),
    )
    if not quantised.passed:
        return quantised
    codes = check_function(  # a zero row's scale is free (any step stores zeros): left out here
        "quantize_per_channel",
        fn,
        reference,
        [case for case in cases if "zeros" not in case.label],
        mistakes,
        atol=1e-6,
        rtol=1e-5,
        output_names=("q", "scale"),
    )
    if codes.passed:
        return CheckResult(
            "quantize_per_channel",
            "passed",
            "✓ quantize_per_channel: same int8 codes and scales as "
            "tfm_edu.efficiency.quantize.quantize_per_channel on "
            f"{len(cases)} matrices, an outlier row and a zero row included",
        )
    return codes


# ------------------------------------------------------------------ head importance


@lru_cache(maxsize=1)
def _tiny_classifier() -> BERTForSequenceClassification:
    torch.manual_seed(13)
    config = BERTConfig(vocab_size=30, d_model=16, num_layers=2, num_heads=4, d_ff=32)
    return BERTForSequenceClassification(config, num_labels=2).eval()


def _package_importance(model, input_ids, attention_mask, targets):
    def loss_fn(m, batch):
        return m(batch[0], batch[1], targets=batch[2]).loss

    return head_importance(model, [(input_ids, attention_mask, targets)], loss_fn, normalize=False)


@graded
def check_head_importance(fn) -> CheckResult:
    """Check `fn(model, input_ids (B, T), attention_mask (B, T), targets (B,)) -> (L, H)`: the
    absolute gradient of the classification loss with respect to each head's gate (Michel et
    al., 2019), for one batch, the model in eval mode, without normalising."""
    g = torch.Generator().manual_seed(14)

    def case(batch, length, label):
        ids = torch.randint(4, 30, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # the first sentence is padded
        targets = torch.randint(2, (batch,), generator=g)
        return Case((_tiny_classifier(), ids, mask, targets), label=label)

    cases = [case(4, 7, "four sentences, one padded"), case(1, 5, "one sentence")]

    def signed(model, input_ids, attention_mask, targets):
        with head_gates(model) as gates:
            loss = model(input_ids, attention_mask, targets=targets).loss
            grads = torch.autograd.grad(loss, list(gates.values()))
        return torch.stack(grads)  # (L, H)

    def normalised(model, input_ids, attention_mask, targets):
        importance = _package_importance(model, input_ids, attention_mask, targets)
        return importance / importance.norm(dim=1, keepdim=True)

    def gate_values(model, input_ids, attention_mask, targets):
        with head_gates(model) as gates:
            return torch.stack([gate.detach() for gate in gates.values()])

    mistakes = [
        Mistake(
            "take the absolute value of the gradient: a head whose removal would raise the loss "
            "and one whose removal would lower it both matter (Michel et al.'s |dL/dxi_h|).",
            signed,
        ),
        Mistake(
            "return the raw |dL/dxi_h| here; the per-layer normalisation comes afterwards.",
            normalised,
        ),
        Mistake(
            "return the gates' gradients (gates[key].grad after loss.backward(), or "
            "torch.autograd.grad(loss, gates)), not the gates themselves, which are all ones.",
            gate_values,
        ),
    ]
    result = check_function(
        "head_importance",
        fn,
        _package_importance,
        cases,
        mistakes,
        atol=1e-6,
        rtol=1e-4,
    )
    if result.passed:
        return CheckResult(
            result.name,
            "passed",
            "✓ head_importance: the same |dL/dxi| as tfm_edu.efficiency.pruning.head_importance "
            f"on {len(cases)} batches of a 2-layer, 4-head BERT classifier",
        )
    return result
