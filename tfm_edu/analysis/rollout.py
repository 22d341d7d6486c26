"""Where does a Vision Transformer look? Attention rollout and per-head [CLS] attention.

One layer's attention map says which tokens a token *reads* in that layer, but after the first
layer a token is already a mixture of others, so a deep layer's map alone says little about the
input. Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers")
follows the mixing through the whole stack:

1. fuse each layer's heads (their mean),
2. optionally drop the weakest links (`discard_ratio`, from Gildenblat's vit-explain; it sharpens
   the maps by ignoring the many tiny weights),
3. add the identity for the residual connection, which carries each token forward unchanged:
   A' = 0.5 A + 0.5 I, and re-normalise the rows to sum to 1,
4. multiply through the layers: rollout = A'_L ... A'_2 A'_1.

Row 0 of the result (the [CLS] token's) over the patch columns is the map drawn over the image.
Rollout is a heuristic: it ignores the feed-forward layers and the values' sizes, so read its
maps as "where information could have flowed from", not as an explanation of the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads on first use, so importing the views stays light (chapter 1)
    import torch
    from torch import Tensor

__all__ = ["attention_rollout", "cls_attention"]


def attention_rollout(
    attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray,
    discard_ratio: float = 0.0,
    head_fusion: str = "mean",
    residual: bool = True,
) -> Tensor | np.ndarray:
    """How much each token's final state draws on each input token, through all the layers.

    Args:
        attentions: one map per layer, first layer first: a list of (B, H, T, T) or (H, T, T)
            tensors or arrays (e.g. `ViT(..., return_attention=True).attentions`), or one stacked
            (L, B, H, T, T) or (L, H, T, T) array.
        discard_ratio: in [0, 1); in each row of each fused layer map, this fraction of the
            smallest weights is set to zero before the identity is added.
        head_fusion: "mean", "max" or "min" over the H heads.
        residual: add the identity for the residual connection (the method); False multiplies
            the raw attention maps (with one layer and no discarding this is the mean head map).

    Returns:
        (B, T, T) (or (T, T) for unbatched input), rows sum to 1; a NumPy array if the input was
        NumPy, else a tensor. Row 0 is the [CLS] token's.
    """
    import torch

    layers, numpy_in, batched, dtype = _stack(attentions)  # (L, B, H, T, T)
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    L, B, _, T, _ = layers.shape
    identity = torch.eye(T, dtype=layers.dtype)  # (T, T)
    rollout = identity.expand(B, T, T)  # (B, T, T)
    for attention in layers:
        fused = fuse[head_fusion](attention)  # (B, T, T)
        dropped = int(discard_ratio * T)
        if dropped:
            smallest = fused.argsort(dim=-1)[..., :dropped]  # (B, T, dropped)
            fused = fused.scatter(-1, smallest, 0.0)  # (B, T, T)
        if residual:
            fused = 0.5 * fused + 0.5 * identity  # (B, T, T)
        fused = fused / fused.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, T, T)
        rollout = fused @ rollout  # (B, T, T): this layer's mixing applied after the earlier ones
    result = (rollout if batched else rollout[0]).to(dtype)  # (B, T, T) or (T, T)
    return result.numpy() if numpy_in else result


def cls_attention(attentions: Sequence[Tensor | np.ndarray] | Tensor | np.ndarray) -> np.ndarray:
    """What the [CLS] token (token 0) reads from each patch, per layer and head.

    Args:
        attentions: as for `attention_rollout`, for one image (L of (H, T, T), or (L, H, T, T)),
            or a batch (L of (B, H, T, T)).

    Returns:
        (L, H, P) or (L, B, H, P) NumPy array with P = T - 1 patches: row 0 of each map without
        its first column (what [CLS] takes from itself), so it need not sum to 1.
    """
    layers, _, batched, _ = _stack(attentions)  # (L, B, H, T, T)
    maps = layers[:, :, :, 0, 1:].numpy()  # (L, B, H, P)
    return maps if batched else maps[:, 0]  # (L, B, H, P) or (L, H, P)


def _stack(attentions) -> tuple[Tensor, bool, bool, torch.dtype]:
    """(L, B, H, T, T) float64 tensor; whether the input was NumPy, batched; its dtype."""
    import torch

    if isinstance(attentions, (torch.Tensor, np.ndarray)):
        numpy_in = isinstance(attentions, np.ndarray)
        layers = torch.as_tensor(attentions).detach().cpu()
        if layers.dim() not in (4, 5):
            raise ValueError(
                "stacked attentions must be (L, B, H, T, T) or (L, H, T, T), "
                f"got shape {tuple(layers.shape)}"
            )
        batched = layers.dim() == 5
    else:
        items = list(attentions)
        if not items:
            raise ValueError("attentions is empty: pass one (B, H, T, T) map per layer")
        numpy_in = all(isinstance(a, np.ndarray) for a in items)
        shapes = {tuple(a.shape) for a in items}
        if len(shapes) != 1 or len(next(iter(shapes))) not in (3, 4):
            raise ValueError(
                "every layer's map must have the same shape, (B, H, T, T) or (H, T, T); "
                f"got {sorted(shapes)}"
            )
        layers = torch.stack([torch.as_tensor(a).detach().cpu() for a in items])  # (L, ...)
        batched = layers.dim() == 5
    if not batched:
        layers = layers.unsqueeze(1)  # (L, 1, H, T, T)
    if layers.shape[-1] != layers.shape[-2]:
        raise ValueError(
            f"self-attention maps must be square (..., T, T), got {tuple(layers.shape)}"
        )
    if not layers.is_floating_point():
        raise ValueError(f"attention maps must be floating point, got {layers.dtype}")
    return layers.double(), numpy_in, batched, layers.dtype  # (L, B, H, T, T)
