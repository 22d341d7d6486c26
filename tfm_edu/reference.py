"""Bridges to PyTorch's own modules, used to *prove* our from-scratch modules right.

Each function copies our weights into the corresponding PyTorch module (so both compute the
same function) and takes care of the one convention that differs: PyTorch's
`nn.MultiheadAttention` packs q, k, v into one `in_proj_weight` (3D, D), and its masks use
True = *blocked*, the opposite of ours (True = may attend).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tfm_edu.attention import MultiHeadAttention
from tfm_edu.layers import DecoderLayer, EncoderLayer, FeedForward

__all__ = [
    "copy_attention_to_torch",
    "copy_encoder_layer_to_torch",
    "copy_decoder_layer_to_torch",
    "to_torch_mask",
]


@torch.no_grad()
def copy_attention_to_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy q/k/v/out projections into `nn.MultiheadAttention` (same D, H and bias setting)."""
    if (theirs.embed_dim, theirs.num_heads) != (ours.d_model, ours.num_heads):
        raise ValueError(
            f"shape mismatch: ours (d_model={ours.d_model}, num_heads={ours.num_heads}) vs "
            f"theirs (embed_dim={theirs.embed_dim}, num_heads={theirs.num_heads})"
        )
    if (theirs.in_proj_bias is None) != (ours.q_proj.bias is None):
        raise ValueError(
            "one module has biases and the other has not: build both with the same bias"
        )
    projections = (ours.q_proj, ours.k_proj, ours.v_proj)
    theirs.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))  # (3D, D)
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    if theirs.in_proj_bias is not None:
        theirs.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))  # (3D,)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)


@torch.no_grad()
def copy_encoder_layer_to_torch(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    """Copy every weight of our `EncoderLayer` into `nn.TransformerEncoderLayer`."""
    _check_norm_first(ours, theirs)
    copy_attention_to_torch(ours.self_attn, theirs.self_attn)
    _copy_feed_forward(ours.feed_forward, theirs)
    for name in ("norm1", "norm2"):
        getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())


@torch.no_grad()
def copy_decoder_layer_to_torch(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    """Copy every weight of our `DecoderLayer` into `nn.TransformerDecoderLayer`."""
    _check_norm_first(ours, theirs)
    copy_attention_to_torch(ours.self_attn, theirs.self_attn)
    copy_attention_to_torch(ours.cross_attn, theirs.multihead_attn)
    _copy_feed_forward(ours.feed_forward, theirs)
    for name in ("norm1", "norm2", "norm3"):
        getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())


def to_torch_mask(mask: Tensor) -> Tensor:
    """Our mask (True = may attend) -> `nn.MultiheadAttention`'s `attn_mask` (True = blocked)."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    return ~mask


def _copy_feed_forward(ours: FeedForward, theirs: nn.Module) -> None:
    theirs.linear1.load_state_dict(ours.linear1.state_dict())
    theirs.linear2.load_state_dict(ours.linear2.state_dict())


def _check_norm_first(ours: nn.Module, theirs: nn.Module) -> None:
    if ours.norm_first != theirs.norm_first:
        raise ValueError(
            f"norm_first differs: ours {ours.norm_first}, theirs {theirs.norm_first}; "
            "the two would compute different functions"
        )
