"""Chapter 11: what the KV cache costs in memory, and grouped-query attention as the fix.

Chapter 9's cache keeps, for every layer, the keys and values of every position generated so
far, so each new token costs one position's work instead of the whole prefix's. The price is
memory that grows with the text:

    bytes per token    = 2 (keys and values) x layers x H_kv x Dh x bytes per number
    bytes per sequence = bytes per token x tokens in the context x sequences in the batch

With ordinary multi-head attention H_kv = H, so H_kv x Dh = D: a 7B model in float16 keeps half
a megabyte per token, two gigabytes for one 4,096-token conversation, and the cache, not the
weights, decides how many users one GPU can serve. Multi-query attention (Shazeer, 2019, "Fast
Transformer Decoding: One Write-Head is All You Need") keeps one head of keys and values for all
the query heads; grouped-query attention (Ainslie et al., 2023, "GQA") keeps a few, each shared
by a group of query heads (`MultiHeadAttention(num_kv_heads=...)`). The cache shrinks by H / H_kv;
the queries, and so the number of attention patterns, stay as they were.

`kv_cache_bytes` is the formula; `KV_CACHE_MODELS` the published shapes of a few models, from
ours to 7B-sized; `kv_cache_table` the table of both; `measured_cache_bytes` fills a real
`KVCache` in a GPT and counts its bytes, so the formula is checked against the tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tfm_edu.models.bert import BERTConfig
from tfm_edu.models.gpt import GPTConfig

__all__ = [
    "CacheShape",
    "KV_CACHE_MODELS",
    "kv_cache_bytes",
    "kv_cache_table",
    "measured_cache_bytes",
]


@dataclass(frozen=True, kw_only=True)
class CacheShape:
    """What sets a model's KV cache size: its attention shape, context and number format."""

    name: str  # what the row is called in the table
    num_layers: int  # layers with self-attention, each caching its own keys and values
    num_heads: int  # H, query heads per layer
    num_kv_heads: int  # H_kv, key/value heads per layer (H for multi-head attention)
    head_dim: int  # Dh, the width of one head
    context: int  # the longest sequence the model reads (its block size)
    bytes_per_number: int  # 4 for float32, 2 for float16/bfloat16
    parameters: float  # all weights, for comparing the cache with the model itself

    @property
    def bytes_per_token(self) -> int:
        return kv_cache_bytes(
            num_layers=self.num_layers, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
            bytes_per_number=self.bytes_per_number,
        )  # fmt: skip


def kv_cache_bytes(
    *,
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    tokens: int = 1,
    batch: int = 1,
    bytes_per_number: int = 4,
) -> int:
    """Bytes of keys and values a KV cache holds: 2 x L x H_kv x Dh x tokens x batch x bytes.

    Args:
        num_layers: L, layers with (self-)attention.
        num_kv_heads: H_kv, heads of keys and values per layer (H without grouping).
        head_dim: Dh.
        tokens: positions cached per sequence.
        batch: sequences cached side by side.
        bytes_per_number: 4 (float32), 2 (float16 / bfloat16), 1 (int8).
    """
    sizes = dict(num_layers=num_layers, num_kv_heads=num_kv_heads, head_dim=head_dim,
                 tokens=tokens, batch=batch, bytes_per_number=bytes_per_number)  # fmt: skip
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return 2 * num_layers * num_kv_heads * head_dim * tokens * batch * bytes_per_number


def _from_gpt(name: str, config: GPTConfig, parameters: float, bytes_per_number: int = 4):
    return CacheShape(
        name=name, num_layers=config.num_layers, num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads or config.num_heads, head_dim=config.head_dim,
        context=config.block_size, bytes_per_number=bytes_per_number, parameters=parameters,
    )  # fmt: skip


_MINILM = BERTConfig.minilm_l6()

# Shapes from our configs (the first three; their parameter counts are those of our models, which
# a test rebuilds) and from the released configs (the 7B ones, published rounded counts); the
# course downloads none of these models.
KV_CACHE_MODELS: tuple[CacheShape, ...] = (
    _from_gpt("our char GPT (ch. 9), float32", GPTConfig.char_gpt(), 839_808),
    CacheShape(
        name="MiniLM-sized (6 x 12 heads, D 384), float32",
        num_layers=_MINILM.num_layers,
        num_heads=_MINILM.num_heads,
        num_kv_heads=_MINILM.num_heads,
        head_dim=_MINILM.d_model // _MINILM.num_heads,
        context=_MINILM.max_positions,
        bytes_per_number=4,
        parameters=22_565_376,
    ),
    _from_gpt("GPT-2 small, float32", GPTConfig.gpt2_small(), 124_439_808),
    CacheShape(
        name="7B, multi-head (Llama 2 7B), float16",
        num_layers=32,
        num_heads=32,
        num_kv_heads=32,
        head_dim=128,
        context=4096,
        bytes_per_number=2,
        parameters=6.7e9,
    ),
    CacheShape(
        name="7B, grouped 8 kv heads (Mistral 7B), float16",
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        context=4096,
        bytes_per_number=2,
        parameters=7.2e9,
    ),
)


def kv_cache_table(models: tuple[CacheShape, ...] = KV_CACHE_MODELS) -> list[dict[str, object]]:
    """One row per model: its cache per token and per full context, and the weights' bytes.

    Returns:
        dicts with model, layers, heads, kv heads, head dim, bytes/token, context,
        bytes/sequence (one full context) and weights bytes (parameters x bytes per number).
    """
    return [
        {
            "model": m.name,
            "layers": m.num_layers,
            "heads": m.num_heads,
            "kv heads": m.num_kv_heads,
            "head dim": m.head_dim,
            "bytes/token": m.bytes_per_token,
            "context": m.context,
            "bytes/sequence": m.bytes_per_token * m.context,
            "weights bytes": int(m.parameters * m.bytes_per_number),
        }
        for m in models
    ]


@torch.no_grad()
def measured_cache_bytes(model: nn.Module, tokens: int, *, batch: int = 1, seed: int = 0) -> int:
    """Fill a GPT's `KVCache` with `tokens` random positions and count the bytes it holds.

    Args:
        model: a `tfm_edu.models.gpt.GPT` (anything with `empty_cache()`, a `.config` with
            `vocab_size` and `block_size`, and `forward(ids, cache=...)`).
        tokens: positions to cache, 1 .. block_size.
        batch: sequences side by side.

    Returns:
        `KVCache.nbytes` after one forward pass over (batch, tokens) ids.
    """
    config = model.config
    if not isinstance(tokens, int) or not 1 <= tokens <= config.block_size:
        raise ValueError(f"tokens must be an int in 1..{config.block_size}, got {tokens!r}")
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = torch.randint(config.vocab_size, (batch, tokens), generator=generator)  # (B, T)
    cache = model.empty_cache()
    model.eval()(ids.to(device), cache=cache)
    return cache.nbytes
