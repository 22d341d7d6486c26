"""Chapter 11: head pruning, and why zeroed weights are not a smaller model.

Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", put a gate xi_h in
front of every head's share of a layer's output,

    MHAtt(x) = sum_h xi_h Att_h(x),   xi_h = 1 in the trained model,

where Att_h(x) is head h's slice of the merged heads times its Dh columns of `out_proj`. Setting
xi_h = 0 removes the head (`tfm_edu.analysis.ablation.ablate_heads`); the derivative at xi = 1
estimates, to first order (a Taylor expansion, as in Molchanov et al., 2017), how much the loss
would change without it. Their importance score (section 4.1) averages its size over the data,

    I_h = E_x |dL(x) / dxi_h|,

which one backward pass gives for every head at once, where switching heads off one by one
(`single_head_ablations`) needs one evaluation per head. They normalise each layer's scores by
their l2 norm, and prune the least important heads first: many can go with little loss.

Switching a head off costs as much as keeping it; *pruning* it deletes its Dh rows of q_proj,
k_proj and v_proj (weights and biases) and its Dh columns of out_proj.weight, 4 Dh D + 3 Dh
parameters per head with biases (out_proj's bias belongs to no head and stays), and the matrix
products shrink with them (`prune_heads`). The outputs equal the gated model's, up to rounding.

Magnitude pruning (`magnitude_prune`) is the other kind: it zeroes the smallest weights of every
Linear wherever they are. The zeros are stored like any other number and a dense matrix product
multiplies them all the same, so without sparse kernels neither the bytes nor the time fall;
`count_parameters`, `count_zeros` and `parameter_bytes` show it, `python -m tfm_edu.bench prune`
times it.

Keys of layers are those of `tfm_edu.analysis.ablation.attention_layers` (the layer index for
one stack of self-attention); heads count from 0.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from tfm_edu.analysis.ablation import Key, ablate_heads, attention_layers, resolve_heads
from tfm_edu.attention import MultiHeadAttention

__all__ = [
    "head_gates",
    "head_importance",
    "all_heads",
    "importance_order",
    "group_heads",
    "prune_heads",
    "CurvePoint",
    "pruning_curve",
    "magnitude_prune",
    "count_parameters",
    "count_zeros",
    "parameter_bytes",
]


@contextmanager
def head_gates(model: nn.Module) -> Iterator[dict[Key, Tensor]]:
    """Michel et al.'s gates: xi_h = 1 multiplying each head's output, inside a `with` block.

    Each gate multiplies its head's slice of the merged heads just before `out_proj` (a forward
    pre-hook, removed on exit, also when the block raises); no weight changes. With every gate
    at 1 the outputs are unchanged; a gate at 0 is `ablate_heads` for that head. After a
    backward pass, `gates[key].grad` holds dL/dxi for that layer's heads.

    Example: `with head_gates(model) as gates: model(x).loss.backward()`, then
    `gates[0].grad`; or `with torch.no_grad(): gates[1][2] = 0` to switch layer 1's head 2 off.

    Args:
        model: a model built from `tfm_edu.attention.MultiHeadAttention`.

    Yields:
        {layer key: (H,) tensor of ones, requires_grad}, keys as in `attention_layers(model)`,
        on the device and dtype of each layer's `out_proj`.
    """
    gates, handles = {}, []
    try:
        for key, module in attention_layers(model).items():
            weight = module.out_proj.weight
            gate = torch.ones(
                module.num_heads, dtype=weight.dtype, device=weight.device, requires_grad=True
            )  # (H,)
            hook = _scale_heads(gate, module.head_dim)
            handles.append(module.out_proj.register_forward_pre_hook(hook))
            gates[key] = gate
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def _scale_heads(gate: Tensor, head_dim: int) -> Callable:
    def scale(_module: nn.Module, args: tuple) -> tuple:
        merged, *rest = args  # (B, T, H*Dh): the merged heads, before out_proj
        heads = merged.unflatten(-1, (gate.shape[0], head_dim))  # (B, T, H, Dh)
        return ((heads * gate[:, None]).flatten(-2), *rest)  # (B, T, H*Dh)

    return scale


def head_importance(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], Tensor],
    *,
    normalize: bool = True,
) -> Tensor:
    """Every head's importance I_h = E_x |dL(x)/dxi_h| (Michel et al., 2019, section 4.1).

    How the expectation is approximated: for each batch, the gradient of its loss (as
    `loss_fn` returns it, usually the mean over the batch) with respect to the gates, in
    absolute value, averaged over the batches. With batches of one example this is exactly
    the mean over examples of |dL(x)/dxi_h|; with larger batches the examples' gradients are
    averaged before the absolute value, so opposite signs within a batch cancel (cheaper; the
    per-batch implementations, e.g. Hugging Face's "bertology" example, do this). The model runs
    in eval mode (no dropout) and is put back as it was; only the gates get gradients.

    Args:
        model: a model built from `MultiHeadAttention`, the same number of heads per layer.
        batches: an iterable of batches, each handed to `loss_fn` as it is (one pass).
        loss_fn: `loss_fn(model, batch) -> scalar loss`.
        normalize: divide each layer's scores by their l2 norm, as the paper does (its layers
            then compare on one scale); False gives the raw averages.

    Returns:
        (L, H) importance, rows in the order of `attention_layers(model)`; >= 0.
    """
    layers = attention_layers(model)
    counts = {module.num_heads for module in layers.values()}
    if len(counts) != 1:
        raise ValueError(f"the layers have different numbers of heads {sorted(counts)}")
    was_training = model.training
    model.eval()
    total, seen = torch.zeros(len(layers), counts.pop()), 0  # (L, H)
    try:
        with head_gates(model) as gates:
            leaves = list(gates.values())
            for batch in batches:
                loss = loss_fn(model, batch)
                if not isinstance(loss, Tensor) or loss.dim() != 0:
                    shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss)
                    raise ValueError(f"loss_fn must return a scalar tensor, got {shape}")
                grads = torch.autograd.grad(loss, leaves, allow_unused=True)  # L x (H,)
                for layer, grad in enumerate(grads):  # None: this loss does not use that layer
                    if grad is not None:
                        total[layer] += grad.detach().abs().float().cpu()  # (H,)
                seen += 1
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("batches is empty: no example to measure importance on")
    importance = total / seen  # (L, H)
    if normalize:
        importance = importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-20)  # (L, H)
    return importance


def all_heads(model: nn.Module) -> list[tuple[Key, int]]:
    """Every (layer key, head) of `model`, layer by layer, heads in order."""
    layers = attention_layers(model)
    return [(key, head) for key, module in layers.items() for head in range(module.num_heads)]


def importance_order(model: nn.Module, importance: Tensor) -> list[tuple[Key, int]]:
    """The heads from least to most important (ties: earlier layer, then lower head first).

    Args:
        model: the model `importance` was measured on.
        importance: (L, H), e.g. from `head_importance`.

    Returns:
        [(layer key, head), ...], all L * H heads, the order `pruning_curve` removes them in.
    """
    heads = all_heads(model)
    layers = attention_layers(model)
    scores = torch.as_tensor(importance)
    if scores.dim() != 2 or scores.numel() != len(heads) or scores.shape[0] != len(layers):
        raise ValueError(
            f"importance must be (L, H) for this model's {len(layers)} layers and {len(heads)} "
            f"heads, got {tuple(scores.shape)}"
        )
    ranks = torch.argsort(scores.flatten(), stable=True)  # (L*H,): least important first
    return [heads[int(i)] for i in ranks]


def group_heads(pairs: Iterable[tuple[Key, int]]) -> dict[Key, list[int]]:
    """[(layer key, head), ...] -> {layer key: [head, ...]}, what `prune_heads` and
    `ablate_heads` take (layers in order of first appearance)."""
    grouped: dict[Key, list[int]] = {}
    for pair in pairs:
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise TypeError(f"expected (layer key, head) pairs, got {pair!r}")
        grouped.setdefault(pair[0], []).append(pair[1])
    return grouped


def prune_heads(model: nn.Module, heads: Mapping[Key, Iterable[int]]) -> nn.Module:
    """A copy of `model` without the given heads: their parameters are really removed.

    Each pruned layer keeps the rows of q_proj, k_proj and v_proj (weights and biases) and the
    columns of out_proj.weight of its remaining heads, in order; `num_heads` drops with them,
    `head_dim` stays. A layer may lose every head (`num_heads` = 0: it adds out_proj's bias).
    The copy's outputs equal `model`'s with those heads ablated, up to rounding (its matrix
    products are smaller, so they add in another order); `model` is left untouched.

    Args:
        model: a model built from `MultiHeadAttention` (not grouped-query attention).
        heads: {layer key: [head, ...]}, keys as in `attention_layers(model)`.

    Returns:
        The pruned deep copy, in `model`'s mode; its parameters fall by 4 Dh D + 3 Dh per head
        (4 Dh D without biases).
    """
    resolved = resolve_heads(model, heads)
    for key, (module, indices) in resolved.items():
        if indices and module.num_kv_heads != module.num_heads:
            raise ValueError(
                f"layer {key!r} shares keys and values between heads (num_heads="
                f"{module.num_heads}, num_kv_heads={module.num_kv_heads}): pruning one query "
                "head of grouped-query attention is not supported"
            )
    pruned = copy.deepcopy(model)
    layers = attention_layers(pruned)
    for key, (_, indices) in resolved.items():
        if indices:
            _remove_heads(layers[key], set(indices))
    return pruned


@torch.no_grad()
def _remove_heads(module: MultiHeadAttention, removed: set[int]) -> None:
    kept = torch.tensor([h for h in range(module.num_heads) if h not in removed], dtype=torch.long)
    dh = module.head_dim
    rows = (kept[:, None] * dh + torch.arange(dh)).flatten()  # (H'*Dh,): the kept heads' slices
    rows = rows.to(module.q_proj.weight.device)
    for projection in (module.q_proj, module.k_proj, module.v_proj):
        _keep(projection, rows, dim=0)  # weight (H'*Dh, D), bias (H'*Dh,)
    _keep(module.out_proj, rows, dim=1)  # weight (D, H'*Dh), bias (D,) unchanged
    module.num_heads = len(kept)


def _keep(linear: nn.Linear, index: Tensor, *, dim: int) -> None:
    """Keep `index` of a Linear's outputs (dim 0) or inputs (dim 1), in new, smaller storage."""
    weight = linear.weight
    linear.weight = nn.Parameter(weight.index_select(dim, index), weight.requires_grad)
    if dim == 0 and linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias[index], linear.bias.requires_grad)
    linear.out_features, linear.in_features = linear.weight.shape


class CurvePoint(NamedTuple):
    """One point of a pruning curve: the score with the first `heads_removed` heads off."""

    heads_removed: int
    score: float


def pruning_curve(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    order: Sequence[tuple[Key, int]],
    *,
    steps: int | None = None,
) -> list[CurvePoint]:
    """`evaluate(model)` as heads are switched off one after another in `order`.

    The heads are ablated (gates at zero, `ablate_heads`), not pruned: the same numbers up to
    rounding (`prune_heads`), without copying the model at every point.

    Args:
        model: a model built from `MultiHeadAttention`.
        evaluate: runs the model it is given and returns a number (an accuracy, a loss).
        order: (layer key, head) pairs, each at most once, e.g. `importance_order(...)` or a
            shuffle of `all_heads(model)`; give all heads to go down to none.
        steps: measure after every `steps` heads (default 1: after each); 0 and len(order)
            heads removed are always measured.

    Returns:
        [CurvePoint(heads_removed, score), ...] from 0 to len(order) heads removed.
    """
    order = list(order)
    grouped = group_heads(order)
    resolve_heads(model, grouped)  # unknown layers or heads: a clear error before any work
    if len(set(order)) != len(order):
        repeated = sorted({pair for pair in order if order.count(pair) > 1}, key=str)
        raise ValueError(f"each head may be removed once, got {repeated} more than once")
    step = 1 if steps is None else steps
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    points = []
    for count in sorted({*range(0, len(order), step), len(order)}):
        with ablate_heads(model, group_heads(order[:count])):
            points.append(CurvePoint(count, float(evaluate(model))))
    return points


def magnitude_prune(model: nn.Module, amount: float) -> nn.Module:
    """A copy whose every nn.Linear weight loses its smallest `amount` share to zeros.

    `torch.nn.utils.prune.l1_unstructured` picks, in each Linear separately, the
    round(amount x size) weights of smallest absolute value and zeroes them; `prune.remove`
    then bakes the zeros into the weight (no mask or hook is left). Biases are untouched. The
    copy has exactly as many parameters and bytes as `model` (`count_parameters`,
    `parameter_bytes`), only more zeros (`count_zeros`). A weight tied to an embedding (GPT's
    lm_head) is zeroed in the embedding too.

    Args:
        model: any module.
        amount: the share of each Linear's weights to zero, in [0, 1].

    Returns:
        The pruned deep copy; `model` is left untouched.
    """
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount <= 1:
        raise ValueError(f"amount must be a share in [0, 1], got {amount!r}")
    pruned = copy.deepcopy(model)
    for module in pruned.modules():
        if isinstance(module, nn.Linear) and module.weight.numel():
            # float(): an int amount would mean a number of weights to prune, not a share
            prune.l1_unstructured(module, "weight", amount=float(amount))
            prune.remove(module, "weight")
    return pruned


def count_parameters(model: nn.Module) -> int:
    """Numbers stored in `model`'s parameters (a tied weight counted once), zeros included."""
    return sum(p.numel() for p in model.parameters())


def count_zeros(model: nn.Module) -> int:
    """How many of `model`'s parameter entries are exactly zero (a tied weight counted once)."""
    return sum(int((p == 0).sum()) for p in model.parameters())


def parameter_bytes(model: nn.Module) -> int:
    """Bytes `model`'s parameters occupy (dense storage: a zero costs what any number costs)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
