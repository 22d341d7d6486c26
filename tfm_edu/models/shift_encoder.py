"""Chapter 3's experiment in code: one small encoder, four ways of telling it where tokens are.

The task (`tfm_edu.data.toy.shift_task`): the answer at position i is the input symbol at
position i - shift. Without positions an encoder cannot do it (attention is
permutation-equivariant); with them it must learn "look `shift` places back". The question is
what happens on sequences *longer than any seen in training*:

- "sinusoidal" (Vaswani et al., 2017): the fixed table is added to the tokens; positions beyond
  the training lengths have codes, but codes the model never saw;
- "learned" (BERT, GPT-2): one trained vector per position; the rows past the training lengths
  exist (the table is `max_positions` long) but were never updated: they hold their random
  initialisation;
- "rope" (Su et al., 2021): queries and keys are rotated by their position inside every
  attention layer (`RotarySelfAttention`), so a score depends on the offset between two tokens
  only, and "3 places back" means the same thing at position 5 and at position 100;
- "none": the control, which cannot tell positions apart at all.

`ShiftEncoder.forward(tokens, targets)` returns the logits and, with targets, the cross-entropy
over the positions that have an answer (its own loss, like every model of the course).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu.attention import (
    LayerCache,
    MultiHeadAttention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from tfm_edu.layers import Encoder
from tfm_edu.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

__all__ = [
    "POSITIONS",
    "ShiftEncoderConfig",
    "ShiftEncoderOutput",
    "RotarySelfAttention",
    "ShiftEncoder",
]

POSITIONS = ("none", "sinusoidal", "learned", "rope")
IGNORE_INDEX = -100  # targets without an answer (the same value as tfm_edu.data.toy's)


@dataclass(frozen=True, kw_only=True)
class ShiftEncoderConfig:
    """Sizes of a `ShiftEncoder`; the defaults are chapter 3's shipped models."""

    position: str = "rope"  # how positions enter: one of POSITIONS
    vocab_size: int = 10  # V, input symbols and output classes
    d_model: int = 32  # D, the width of every token
    num_layers: int = 2  # pre-LN encoder layers
    num_heads: int = 2  # H, attention heads per layer; must divide d_model
    d_ff: int = 64  # hidden width of each layer's feed-forward
    max_positions: int = 128  # rows of the sinusoidal / learned table (the longest input)
    rope_base: float = 10000.0  # RoPE's wavelength base

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model}")
        if self.position == "rope" and (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"RoPE rotates pairs: head_dim = d_model / num_heads = "
                f"{self.d_model // self.num_heads} must be even"
            )

    @classmethod
    def tiny(cls, position: str = "rope") -> ShiftEncoderConfig:
        """A very small model (D = 8, 1 layer) for tests."""
        return cls(position=position, d_model=8, num_layers=1, num_heads=2, d_ff=16)


@dataclass
class ShiftEncoderOutput:
    """What `ShiftEncoder.forward` returns."""

    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None  # scalar cross-entropy over positions with an answer
    attentions: tuple[Tensor, ...] = ()  # per layer (B, H, T, T), empty unless asked


class RotarySelfAttention(MultiHeadAttention):
    """`MultiHeadAttention` whose queries and keys are rotated by their positions (RoPE).

    The same projections (`q_proj`, `k_proj`, `v_proj`, `out_proj`) as its parent; the only
    new line rotates q and k after `split_heads`. Values are not rotated: RoPE changes *which*
    tokens attend to which, not what they carry.
    """

    def __init__(self, *, d_model: int, num_heads: int, base: float = 10000.0) -> None:
        super().__init__(d_model=d_model, num_heads=num_heads)
        self.rotary = RotaryEmbedding(head_dim=d_model // num_heads, base=base)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        return_attention: bool = True,
        cache: LayerCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Self-attention: query, key, value (B, T, D), token t at position t -> out (B, T, D),
        weights (B, H, T, S) (or None). With a `LayerCache` (chapter 9's KV cache) the T tokens
        sit at positions cache.length onwards and attend to the S - T cached ones too; keys are
        cached already rotated."""
        self._check_inputs(query, key, value)
        if query.shape[1] != key.shape[1]:
            raise ValueError(
                "rotary self-attention places query t and key t at the same position t: "
                f"query (B, T, D) {tuple(query.shape)} and key {tuple(key.shape)} differ in T"
            )
        offset = 0 if cache is None else cache.length
        q = self.rotary(split_heads(self.q_proj(query), self.num_heads), offset)  # (B, H, T, Dh)
        k = self.rotary(split_heads(self.k_proj(key), self.num_heads), offset)  # (B, H, T, Dh)
        v = split_heads(self.v_proj(value), self.num_heads)  # (B, H, T, Dh)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, S, Dh) each
        heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, Dh)
        out = self.out_proj(merge_heads(heads))  # (B, T, D)
        return out, weights if return_attention else None


class ShiftEncoder(nn.Module):
    """Token embedding (+ positions) -> pre-LN encoder -> one symbol per position."""

    def __init__(self, config: ShiftEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        if c.position == "sinusoidal":
            self.positions = SinusoidalPositionalEncoding(
                d_model=c.d_model, max_positions=c.max_positions
            )
        elif c.position == "learned":
            self.positions = LearnedPositionalEmbedding(
                max_positions=c.max_positions, d_model=c.d_model
            )
        else:  # "rope" acts inside attention; "none" adds nothing
            self.positions = nn.Identity()
        self.encoder = Encoder(
            num_layers=c.num_layers,
            d_model=c.d_model,
            num_heads=c.num_heads,
            d_ff=c.d_ff,
            activation="gelu",
            norm_first=True,
        )
        if c.position == "rope":  # the same layers, with RoPE's attention in place of the plain one
            for layer in self.encoder.layers:
                layer.self_attn = RotarySelfAttention(
                    d_model=c.d_model, num_heads=c.num_heads, base=c.rope_base
                )
        self.head = nn.Linear(c.d_model, c.vocab_size)

    def forward(
        self, tokens: Tensor, targets: Tensor | None = None, *, return_attention: bool = False
    ) -> ShiftEncoderOutput:
        """
        Args:
            tokens: (B, T) symbol ids in 0..V-1 (a NumPy array works); T <= max_positions for
                the sinusoidal and learned models.
            targets: optional (B, T) symbol ids, `IGNORE_INDEX` where there is no answer.
            return_attention: also return every layer's attention weights.

        Returns:
            ShiftEncoderOutput: logits (B, T, V), the loss when targets are given, and, if
            asked, one (B, H, T, T) attention map per layer.
        """
        device = self.head.weight.device
        tokens = torch.as_tensor(tokens, device=device)  # (B, T)
        c = self.config
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"tokens must be (B, T) integers, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= c.vocab_size):
            raise ValueError(f"tokens must lie in 0..{c.vocab_size - 1}")
        if c.position in ("sinusoidal", "learned") and tokens.shape[1] > c.max_positions:
            raise ValueError(
                f"length {tokens.shape[1]} is longer than the {c.position} table "
                f"(max_positions={c.max_positions})"
            )
        x = self.positions(self.token_embedding(tokens))  # (B, T, D)
        x, attentions = self.encoder(x, return_attention=return_attention)  # (B, T, D)
        logits = self.head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            targets = torch.as_tensor(targets, device=device)  # (B, T)
            if targets.shape != tokens.shape:
                raise ValueError(
                    f"targets {tuple(targets.shape)} must match tokens {tuple(tokens.shape)}"
                )
            loss = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX
            )
        return ShiftEncoderOutput(logits, loss, attentions)
