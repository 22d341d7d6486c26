"""Chapter 9 in code: GPT, a decoder-only language model (Radford et al., 2018 and 2019).

A GPT reads a sequence of tokens and predicts, at every position, the next one. It is the
decoder of chapter 5 without an encoder to listen to: no cross-attention, only *causal*
self-attention (position t reads positions 0..t) and a feed-forward. A layer without
cross-attention is exactly chapter 4's `EncoderLayer` run with a causal mask, so the stack here
is a pre-LN `tfm_edu.layers.Encoder` (GELU, as in GPT-2) with that mask, and one GPT block equals
`nn.TransformerEncoderLayer(norm_first=True)` with a causal mask.

Around the stack:
- token embeddings plus *learned* position embeddings (one vector per position up to
  `block_size`, as in GPT-2), then a final LayerNorm after the last pre-LN block;
- a language-model head that is the token embedding matrix itself (**tied**, Press & Wolf,
  2017): the logit of token v is the dot product of the final state with v's own embedding.
  One V x D matrix instead of two, and the same notion of "similar tokens" at both ends;
- GPT-2's initialisation: N(0, 0.02) weights and zero biases, and the residual branches' output
  projections scaled by 1/sqrt(2 * num_layers), so the residual stream's variance does not grow
  with depth. Logits then start near 0, and the loss near ln V.

`forward(ids, targets)` also returns the causal LM loss: cross-entropy between the logits at
position t and the token at t + 1 (the caller shifts: targets are the ids moved left by one).
`forward(ids, cache=model.empty_cache())` keeps every layer's keys and values (`KVCache`) so
that generation (`tfm_edu.decode.generate`) feeds one new token per step at position
`cache.length`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu.attention import KVCache, causal_mask
from tfm_edu.layers import Encoder
from tfm_edu.positional import LearnedPositionalEmbedding

__all__ = ["GPTConfig", "GPTOutput", "GPT", "language_model_loss"]


@dataclass(frozen=True, kw_only=True)
class GPTConfig:
    """Sizes of a GPT. The defaults are chapter 9's shipped character model (`char_gpt()`)."""

    vocab_size: int = 107  # V: the help texts' 103 characters + [PAD], [BOS], [EOS], [UNK]
    block_size: int = 256  # the longest context, in tokens (rows of the position table)
    num_layers: int = 4  # pre-LN blocks
    num_heads: int = 4  # H, attention heads per block; must divide d_model
    d_model: int = 128  # D, the width of every token vector
    d_ff: int = 512  # hidden width of each block's feed-forward (4 D, as in GPT-2)
    dropout: float = 0.0  # on embeddings, attention weights and residual branches (training)
    layer_norm_eps: float = 1e-5  # LayerNorm's epsilon, as in PyTorch and GPT-2
    num_kv_heads: int | None = None  # heads of keys/values; None = num_heads (ch. 11: GQA)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "num_layers", "num_heads", "d_model", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model}")
        kv = self.num_kv_heads
        if kv is not None and (not isinstance(kv, int) or kv < 1 or self.num_heads % kv):
            raise ValueError(f"num_kv_heads={kv!r} must be a positive int dividing num_heads")

    @property
    def head_dim(self) -> int:
        """Dh = D / H."""
        return self.d_model // self.num_heads

    @classmethod
    def char_gpt(cls) -> GPTConfig:
        """Chapter 9's shipped model: 4 layers, 4 heads, D = 128, 256 characters of context."""
        return cls()

    @classmethod
    def nanogpt_cpu(cls, vocab_size: int = 107) -> GPTConfig:
        """nanoGPT's "CPU" settings for character Shakespeare (4 layers, 4 heads, D = 128,
        block 64), the baseline that chapter 9's recipe trains for the same time as ours."""
        return cls(vocab_size=vocab_size, block_size=64)

    @classmethod
    def tiny(cls, vocab_size: int = 107) -> GPTConfig:
        """A very small model (D = 16, 2 layers, 32 positions) for demonstrations and tests."""
        return cls(vocab_size=vocab_size, block_size=32, num_layers=2, num_heads=2, d_model=16,
                   d_ff=64)  # fmt: skip

    @classmethod
    def gpt2_small(cls) -> GPTConfig:
        """GPT-2 small (124M parameters): 50,257 BPE tokens, 1,024 positions, 12 x 12 heads,
        D = 768. Only for counting: the course never downloads its weights."""
        return cls(vocab_size=50257, block_size=1024, num_layers=12, num_heads=12, d_model=768,
                   d_ff=3072)  # fmt: skip


@dataclass
class GPTOutput:
    """What `GPT.forward` returns."""

    logits: Tensor  # (B, T, V) scores for the next token at each position
    loss: Tensor | None = None  # scalar mean cross-entropy per token, when targets were given
    attentions: tuple[Tensor, ...] = ()  # per layer (B, H, T, S), empty unless asked
    cache: KVCache | None = None  # the cache passed in, now holding these positions too


def language_model_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of next-token predictions, in nats per token.

    Args:
        logits: (B, T, V) the model's scores at each position.
        targets: (B, T) the token that follows each position (ids shifted left by one);
            positions whose target is `ignore_index` are left out of the mean.

    Returns:
        A scalar; ln V for a model that knows nothing (uniform predictions).
    """
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must be (B, T) = {tuple(logits.shape[:2])} to match the logits "
            f"(B, T, V) = {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index
    )  # mean over the B * T positions


class GPT(nn.Module):
    """Token + learned position embeddings, a causal pre-LN stack, a tied LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = LearnedPositionalEmbedding(
            max_positions=c.block_size, d_model=c.d_model
        )
        self.dropout = nn.Dropout(c.dropout)
        # A decoder-only block has no cross-attention: it *is* an encoder layer with a causal
        # mask. Pre-LN, so the stack ends with the final LayerNorm.
        self.blocks = Encoder(
            num_layers=c.num_layers,
            d_model=c.d_model,
            num_heads=c.num_heads,
            d_ff=c.d_ff,
            dropout=c.dropout,
            activation="gelu",
            norm_first=True,
            layer_norm_eps=c.layer_norm_eps,
            num_kv_heads=c.num_kv_heads,
        )
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied: one (V, D) matrix
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """GPT-2's initialisation (see the module docstring)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for layer in self.blocks.layers:
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.feed_forward.linear2.weight, std=residual_std)

    def empty_cache(self) -> KVCache:
        """A `KVCache` with one empty slot per layer, for `forward(..., cache=...)`."""
        return KVCache(self.config.num_layers)

    def forward(
        self,
        ids: Tensor,
        targets: Tensor | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
        *,
        position_offset: int = 0,
    ) -> GPTOutput:
        """
        Args:
            ids: (B, T) token ids. With a cache they are the T *new* tokens, at positions
                cache.length .. cache.length + T - 1.
            targets: optional (B, T) next tokens (ids shifted left by one); -100 = ignore.
            return_attention: also return every layer's attention weights.
            cache: a `KVCache` from `empty_cache()` (or a previous call), extended in place.
            position_offset: without a cache, read the position vectors from this row of the
                table on (a window of T tokens at positions offset .. offset + T - 1). Chapter
                9's recipe uses it to train every row of the table with short windows.

        Returns:
            GPTOutput with logits (B, T, V), the loss when targets are given, attentions
            ((B, H, T, S) per layer, S = cached + T) when asked, and the cache.
        """
        if cache is not None and position_offset:
            raise ValueError("position_offset is for calls without a cache (it uses cache.length)")
        offset = position_offset if cache is None else cache.length
        self._check_ids(ids, offset)
        x = self.token_embedding(ids)  # (B, T, D)
        x = self.dropout(self.position_embedding(x, offset))  # (B, T, D): + positions offset..
        # Keys: the cached positions, then these T. Query i is the (S - T + i)-th key and may
        # read keys 0 .. S - T + i; a single new token reads every key: no mask needed.
        T, S = ids.shape[1], (0 if cache is None else cache.length) + ids.shape[1]
        mask = causal_mask(T, S, device=ids.device) if T > 1 else None  # (T, S)
        x, attentions = self.blocks(x, mask, return_attention, cache)  # (B, T, D), final norm
        logits = self.lm_head(x)  # (B, T, V)
        loss = None if targets is None else language_model_loss(logits, targets)
        return GPTOutput(logits, loss, attentions, cache)

    def _check_ids(self, ids: Tensor, offset: int) -> None:
        c = self.config
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[1] == 0:
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"ids must be (B, T) with T >= 1, got {shape}")
        if ids.dtype != torch.long:
            raise ValueError(f"ids must hold token ids (int64), got dtype {ids.dtype}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"position_offset must be a non-negative int, got {offset!r}")
        if offset + ids.shape[1] > c.block_size:
            cached = f" after {offset} earlier positions" if offset else ""
            raise ValueError(
                f"{ids.shape[1]} tokens{cached} exceed the block size {c.block_size}: crop the "
                "context to its last block_size tokens (tfm_edu.decode.generate does)"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
            raise ValueError(
                f"token ids must lie in 0..{c.vocab_size - 1}, got {int(ids.min())}.."
                f"{int(ids.max())}"
            )
