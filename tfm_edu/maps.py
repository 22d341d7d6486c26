"""Attention maps as plain data: every layer's and head's weights for one input, with its tokens.

The one format that models hand to the analysis and drawing code. NumPy only: this module imports
nothing from `tfm_edu` (nor torch), so every layer of the package may use it.

A model's attention weights (Vaswani et al., 2017, eq. 1: softmax(Q K^T / sqrt(d_k))) come out
in many shapes: one (T, S) map, one (H, T, S) stack per layer, a list of per-layer (1, H, T, S)
tensors from a batch of one... `as_attention_maps` turns each of them into one `AttentionMaps`,
whose `attentions` is always a NumPy array (L, H, T, S), so the drawing code has one shape to
handle. Models and `tfm_edu.analysis` produce `AttentionMaps`; `tfm_edu.viz` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AttentionMaps", "as_attention_maps", "stack_layers", "to_numpy"]


def to_numpy(x, name: str = "array") -> np.ndarray:
    """A float64 NumPy copy of an array-like or a torch tensor (detached, moved to the CPU).

    Torch is not imported here: anything with `.detach()` is treated as a tensor.
    """
    if hasattr(x, "detach"):  # a torch tensor, on any device, maybe requiring grad
        x = x.detach().cpu().float().numpy()
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a numeric array or tensor, got {type(x).__name__}: {error}"
        ) from None


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """Attention weights of one input, for every layer and head, with the tokens they refer to."""

    query_tokens: list[str]  # T tokens, one per query (row of each map)
    attentions: np.ndarray  # (L, H, T, S) weights; each row normally sums to 1
    key_tokens: list[str] | None = None  # S tokens, one per key; None = self-attention (S = T)
    layer_names: list[str] | None = None  # L names; None = "layer 0" ... "layer L-1"
    notice: str | None = None  # a note the widget shows, e.g. "truncated to 128 tokens"

    def __post_init__(self) -> None:
        attentions = to_numpy(self.attentions, "attentions")
        object.__setattr__(self, "attentions", attentions)
        object.__setattr__(self, "query_tokens", [str(t) for t in self.query_tokens])
        if self.key_tokens is not None:
            object.__setattr__(self, "key_tokens", [str(t) for t in self.key_tokens])
        if self.layer_names is not None:
            object.__setattr__(self, "layer_names", [str(n) for n in self.layer_names])
        if attentions.ndim != 4:
            raise ValueError(
                f"attentions must be (L, H, T, S), got shape {attentions.shape}; "
                "use as_attention_maps() to convert (T, S), (H, T, S) or per-layer lists"
            )
        L, _, T, S = attentions.shape
        if len(self.query_tokens) != T:
            raise ValueError(
                f"{len(self.query_tokens)} query tokens but attentions {attentions.shape} "
                f"(L, H, T, S) has T={T}"
            )
        if len(self.keys) != S:
            which = "key tokens" if self.key_tokens is not None else "tokens (self-attention)"
            raise ValueError(
                f"{len(self.keys)} {which} but attentions {attentions.shape} (L, H, T, S) has S={S}"
            )
        if self.layer_names is not None and len(self.layer_names) != L:
            raise ValueError(
                f"{len(self.layer_names)} layer names but attentions {attentions.shape} has L={L}"
            )

    @property
    def keys(self) -> list[str]:
        """The S key tokens (the query tokens for self-attention)."""
        return self.query_tokens if self.key_tokens is None else self.key_tokens

    @property
    def names(self) -> list[str]:
        """One display name per layer."""
        if self.layer_names is not None:
            return self.layer_names
        return [f"layer {i}" for i in range(self.attentions.shape[0])]

    @property
    def num_layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def num_heads(self) -> int:
        return self.attentions.shape[1]


def as_attention_maps(result) -> AttentionMaps:
    """Normalise what a model callable returns into an `AttentionMaps`.

    Args:
        result: an `AttentionMaps`, or a pair `(tokens, attentions)` where `tokens` is a list
            of T strings and `attentions` is one of
            - an array or tensor (T, S), (H, T, S) or (L, H, T, S);
            - a list/tuple with one (H, T, S) or (1, H, T, S) array or tensor per layer
              (what `Encoder(..., return_attention=True)` gives for a batch of one).

    Returns:
        AttentionMaps with attentions (L, H, T, S) as float64 NumPy.

    Raises:
        ValueError naming what was received when it is none of the above.
    """
    if isinstance(result, AttentionMaps):
        return result
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ValueError(
            "the model must return AttentionMaps or a pair (tokens, attentions), "
            f"got {_describe(result)}"
        )
    tokens, attentions = result
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"tokens must be a list of strings, got {_describe(tokens)}")
    return AttentionMaps(list(tokens), stack_layers(attentions))


def stack_layers(attentions) -> np.ndarray:
    """(T, S), (H, T, S), (L, H, T, S) or a per-layer list -> (L, H, T, S) float64."""
    if isinstance(attentions, (list, tuple)):
        if not attentions:
            raise ValueError("attentions is an empty list: expected one (H, T, S) map per layer")
        layers = []
        for index, layer in enumerate(attentions):
            layer = to_numpy(layer, f"attentions[{index}]")
            if layer.ndim == 4 and layer.shape[0] == 1:
                layer = layer[0]  # (H, T, S): a batch of one sentence
            if layer.ndim != 3:
                raise ValueError(
                    f"attentions[{index}] must be (H, T, S) or (1, H, T, S) (one sentence), "
                    f"got shape {layer.shape}"
                )
            if layers and layer.shape != layers[0].shape:
                raise ValueError(
                    f"every layer must have the same (H, T, S): attentions[0] is "
                    f"{layers[0].shape}, attentions[{index}] is {layer.shape}"
                )
            layers.append(layer)
        return np.stack(layers)  # (L, H, T, S)
    array = to_numpy(attentions, "attentions")
    if array.ndim == 2:
        return array[None, None]  # (1, 1, T, S)
    if array.ndim == 3:
        return array[None]  # (1, H, T, S)
    if array.ndim == 4:
        return array  # (L, H, T, S)
    raise ValueError(
        f"attentions must be (T, S), (H, T, S), (L, H, T, S) or a list of per-layer (H, T, S), "
        f"got shape {array.shape}"
    )


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return type(value).__name__
