"""Chapters 6-7: head ablation, the intervention that tests what an attention map suggests.

A map shows where a head *looks*; switching the head off and measuring what changes shows
whether the model *uses* it (Michel et al., 2019, "Are Sixteen Heads Really Better than One?";
Clark et al., 2019). Head h of a `MultiHeadAttention` writes into the slice
`[h * Dh, (h + 1) * Dh)` of the merged heads, just before `out_proj`; ablating it sets that
slice to zero, so the head adds nothing to the residual stream (`out_proj`'s bias stays, as it
belongs to no head). This equals zeroing those Dh columns of `out_proj.weight`, which the tests
check, but changes no weight: a forward pre-hook on `out_proj` does it and is removed on exit.

Which attention is which (the keys of `attention_layers` and `ablate_heads`):

- a model with one stack of self-attention (BERT, MiniLM, ViT, a GPT): the layer index,
  `0 ... L-1`, as in `outputs.attentions[layer]`;
- the encoder-decoder of chapter 5: `"encoder 0"` ... (encoder self-attention),
  `"decoder self 0"` ... (masked decoder self-attention) and `"cross 0"` ... (cross-attention,
  the names of `Translator.cross_attention`).

Modules are found by type, in the order of `model.named_modules()`, so a new model built from
`tfm_edu.attention.MultiHeadAttention` needs no change here.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from tfm_edu.attention import MultiHeadAttention

__all__ = ["attention_layers", "resolve_heads", "ablate_heads", "single_head_ablations"]

Key = int | str

_INDEXED = re.compile(r"^(?P<stack>.*)\.(?P<index>\d+)\.(?P<attr>[A-Za-z_]\w*)$")


def attention_layers(model: nn.Module) -> dict[Key, MultiHeadAttention]:
    """Every `MultiHeadAttention` of `model`, in layer order, under the key `ablate_heads` takes.

    Args:
        model: any module holding `tfm_edu.attention.MultiHeadAttention`s.

    Returns:
        {key: module}: ints 0..L-1 for a single stack of self-attention; for the encoder-decoder
        "encoder i", "decoder self i" and "cross i" (see the module docstring).
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} holds no tfm_edu.attention.MultiHeadAttention: "
            "there are no heads to ablate"
        )
    parsed = []
    for position, (name, module) in enumerate(found):
        match = _INDEXED.match(name)
        if match:
            parsed.append((match["stack"], match["attr"], int(match["index"]), module))
        else:  # not inside a numbered list of layers: number it by its place in the model
            parsed.append(("", name, position, module))
    kinds = list(dict.fromkeys((stack, attr) for stack, attr, _, _ in parsed))
    if len(kinds) == 1:
        return {index: module for _, _, index, module in parsed}
    return {f"{_label(stack, attr)} {index}": module for stack, attr, index, module in parsed}


def _label(stack: str, attr: str) -> str:
    top = stack.split(".")[0]
    if "cross" in attr:
        return "cross"
    if top == "encoder":
        return "encoder"
    if top == "decoder":
        return "decoder self"
    return f"{stack}.{attr}" if stack else attr


@contextmanager
def ablate_heads(model: nn.Module, heads: Mapping[Key, Iterable[int]]) -> Iterator[nn.Module]:
    """Switch heads off inside a `with` block; the model is exactly as before on exit.

    Example: `with ablate_heads(model, {1: [0]}): logits = model(ids).logits` runs the model
    with layer 1's head 0 giving zeros. The hooks are removed on exit, also when the block
    raises; no weight is ever changed.

    Args:
        model: a model built from `tfm_edu.attention.MultiHeadAttention`.
        heads: {layer key: [head, ...]}, keys as in `attention_layers(model)`; heads count
            from 0. An empty mapping (or empty lists) ablates nothing.

    Yields:
        the model itself.
    """
    handles = []
    try:
        for module, indices in resolve_heads(model, heads).values():
            if indices:
                keep = torch.ones(module.num_heads, dtype=torch.bool)
                keep[indices] = False  # (H,)
                keep = keep.repeat_interleave(module.head_dim)  # (D,): False on ablated slices
                handles.append(module.out_proj.register_forward_pre_hook(_gate(keep)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def resolve_heads(
    model: nn.Module, heads: Mapping[Key, Iterable[int]]
) -> dict[Key, tuple[MultiHeadAttention, list[int]]]:
    """Check a {layer key: [head, ...]} mapping against `model` (what `ablate_heads` and
    `tfm_edu.efficiency.pruning.prune_heads` take), with errors naming the valid keys and heads.

    Returns:
        {key: (that layer's MultiHeadAttention, [head, ...])}, keys as in `attention_layers`
        (NumPy integers become ints), heads in the order given.
    """
    layers = attention_layers(model)
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be a mapping {{layer: [head, ...]}}, got {type(heads)}")
    resolved: dict[Key, tuple[MultiHeadAttention, list[int]]] = {}
    for key, chosen in heads.items():
        module = _layer(layers, key)
        key = int(key) if isinstance(key, np.integer) else key
        resolved.setdefault(key, (module, []))[1].extend(_heads(module, key, chosen))
    return resolved


def _gate(keep: Tensor) -> Callable:
    def zero_heads(_module: nn.Module, args: tuple) -> tuple:
        merged, *rest = args  # (B, T, D): the merged heads, before out_proj
        mask = keep.to(merged.device)  # (D,)
        return (torch.where(mask, merged, torch.zeros((), dtype=merged.dtype)), *rest)

    return zero_heads


def _layer(layers: dict[Key, MultiHeadAttention], key: Key) -> MultiHeadAttention:
    if isinstance(key, bool) or not isinstance(key, int | str | np.integer):
        raise TypeError(f"layer keys are ints or names, got {key!r}; valid keys: {list(layers)}")
    if isinstance(key, np.integer):
        key = int(key)
    if key not in layers:
        raise KeyError(f"no attention layer {key!r} in this model; valid keys: {list(layers)}")
    return layers[key]


def _heads(module: MultiHeadAttention, key: Key, chosen: Iterable[int]) -> list[int]:
    if isinstance(chosen, int | np.integer):
        raise TypeError(f"give a list of heads for layer {key!r}, e.g. {{{key!r}: [{chosen}]}}")
    indices = []
    for head in chosen:
        try:
            head = operator.index(head)
        except TypeError:
            raise TypeError(f"head indices are ints, got {head!r} for layer {key!r}") from None
        if not 0 <= head < module.num_heads:
            raise IndexError(f"layer {key!r} has heads 0..{module.num_heads - 1}, got head {head}")
        indices.append(head)
    return indices


def single_head_ablations(model: nn.Module, score: Callable[[nn.Module], object]) -> np.ndarray:
    """`score(model)` with each head switched off in turn: every single-head ablation's effect.

    Args:
        model: as for `ablate_heads`; every attention layer must have the same number of heads.
        score: runs the model it is given and returns a number (an accuracy, a loss, a
            similarity) or a fixed-length sequence of numbers; called once per head, inside
            `ablate_heads`.

    Returns:
        (L, H) scores, or (L, H, K) for K numbers per call; rows in the order of
        `attention_layers(model)`.
    """
    layers = attention_layers(model)
    counts = {module.num_heads for module in layers.values()}
    if len(counts) != 1:
        raise ValueError(f"the layers have different numbers of heads {sorted(counts)}")
    (num_heads,) = counts
    scores = []
    for key in layers:
        for head in range(num_heads):
            with ablate_heads(model, {key: [head]}):
                scores.append(np.asarray(score(model), dtype=float))
    return np.stack(scores).reshape(len(layers), num_heads, *scores[0].shape)  # (L, H, ...)
