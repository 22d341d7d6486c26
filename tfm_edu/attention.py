"""Chapter 2 in code: scaled dot-product and multi-head attention in PyTorch.

The same mathematics as `tfm_edu.numpy_attention` (Vaswani et al., 2017, sections 3.2.1-3.2.2),
batched, differentiable and device-agnostic: every tensor stays on the device its inputs are on.

Mask convention: bool, True = may attend, broadcastable to (B, H, T, S), as for
`torch.nn.functional.scaled_dot_product_attention`. (`nn.MultiheadAttention`'s `attn_mask` and
`key_padding_mask` use the opposite meaning: True = blocked; `tfm_edu.reference` converts.)
A fully masked query row gets zero weights and a zero output, never NaN.

The explicit path (softmax written out, weights returned) is the default because the weights are
what the course looks at. `MultiHeadAttention(fused=True)` calls PyTorch's fused kernel instead
whenever the weights are not requested; `tfm_edu.bench` measures the difference.

Speed on the explicit path is mostly memory layout: each head's (L, Dh) block is made contiguous
once, so the two batched matmuls read their operands as they are and softmax runs over the last,
contiguous axis of a contiguous (B, H, T, S) tensor; the 1/sqrt(d_k) scale multiplies q, the
smaller tensor. `python -m tfm_edu.bench attention` compares it with `nn.MultiheadAttention`.

`return_attention` is the one flag, from here up through the layers to every model, that asks
for the weights.

`KVCache` (chapter 9) keeps every layer's keys and values from one call to the next, so a model
that generates one token at a time computes each position's keys and values once: pass a layer's
`LayerCache` as `MultiHeadAttention(..., cache=...)` and the new keys and values are appended to
the stored ones before attending. The caller builds the mask for the new queries against all
keys (`causal_mask(T, S)`: the new queries are the *last* T of S positions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "scaled_dot_product_attention",
    "split_heads",
    "merge_heads",
    "causal_mask",
    "MultiHeadAttention",
    "LayerCache",
    "KVCache",
    "set_fused",
]


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k)) v with the softmax written out, returning the weights.

    Args:
        q: (..., T, d_k) queries.
        k: (..., S, d_k) keys.
        v: (..., S, d_v) values.
        mask: optional bool broadcastable to (..., T, S); True = may attend.
        dropout_p: dropout on the weights before they multiply v (pass 0.0 in eval mode).

    Returns:
        out: (..., T, d_v).
        weights: (..., T, S), before dropout; rows sum to 1, fully masked rows are zeros.
    """
    _check_qkv(q, k, v)
    # Scale q (T x d_k numbers) rather than the scores (T x S); a Python float keeps q's dtype.
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (..., T, S)
    if mask is not None:
        _check_mask(mask, scores.shape)
        # (torch.where is one pass over the scores; masked_fill(~mask, ...) is about 2x slower on
        # a CPU: it clones first, and its broadcast kernel is slower.)
        scores = torch.where(mask, scores, float("-inf"))  # (..., T, S): blocked -> -inf
    weights = torch.softmax(scores, dim=-1)  # (..., T, S)
    if mask is not None:
        # A row of -inf softmaxes to NaN; such a query has nothing to attend to: give it zeros.
        # (Checked on the mask's own small shape; most masks, causal ones included, leave every
        # query a key, and then the pass over the (..., T, S) weights is skipped.)
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T, 1)
        if not bool(has_key.all()):
            weights = torch.where(has_key, weights, 0.0)  # (..., T, S)
    attended = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return attended @ v, weights  # (..., T, d_v), (..., T, S)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., L, D) -> (..., H, L, Dh): head h owns the slice x[..., h*Dh:(h+1)*Dh].

    View the last axis as (H, Dh), then swap the length and head axes. (A plain
    `x.view(B, H, L, Dh)` has the right shape but cuts the memory in the wrong place, mixing
    tokens between heads.)
    """
    if x.dim() < 2 or x.shape[-1] % num_heads:
        raise ValueError(
            f"x must be (..., L, D) with num_heads={num_heads} dividing D, got {tuple(x.shape)}"
        )
    heads = x.view(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)  # (..., L, H, Dh)
    return heads.transpose(-3, -2)  # (..., H, L, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(..., H, L, Dh) -> (..., L, H*Dh), the inverse of `split_heads`."""
    if x.dim() < 3:
        raise ValueError(f"x must be (..., H, L, Dh), got {tuple(x.shape)}")
    *lead, H, L, Dh = x.shape
    # After the transpose the memory is no longer in order: reshape copies where view cannot.
    return x.transpose(-3, -2).reshape(*lead, L, H * Dh)  # (..., L, D)


def causal_mask(num_queries: int, num_keys: int | None = None, device=None) -> Tensor:
    """Which keys each query may attend to when the queries are the *last* T of S positions.

    Query i sits at position S - T + i and may read keys 0 .. S - T + i. With T = S (a whole
    sequence) this is the familiar lower triangle; with T = 1 (one new token after S - 1 cached
    ones) it is a single row of Trues. (Aligning the triangle to the top left instead, as
    `torch.ones(T, S).tril()` does, is the classic KV-cache bug: the newest token would see only
    the first key.)

    Args:
        num_queries: T >= 1.
        num_keys: S >= T (default T).

    Returns:
        (T, S) bool, True = may attend.
    """
    S = num_queries if num_keys is None else num_keys
    if not isinstance(num_queries, int) or not isinstance(S, int) or not 1 <= num_queries <= S:
        raise ValueError(f"need 1 <= num_queries <= num_keys, got {num_queries} and {S}")
    mask = torch.ones(num_queries, S, dtype=torch.bool, device=device)  # (T, S)
    return mask.tril(diagonal=S - num_queries)  # (T, S): key j <= query's position S - T + i


class LayerCache:
    """One attention layer's keys and values for every position seen so far."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None  # (B, H, S, Dh), None before the first call
        self.values: Tensor | None = None  # (B, H, S, Dh)

    @property
    def length(self) -> int:
        """S, the number of positions stored."""
        return 0 if self.keys is None else self.keys.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' keys and values after the old ones; return all of them.

        Args:
            k, v: (B, H, T, Dh) for the T new positions.

        Returns:
            keys, values: (B, H, S + T, Dh), the stored positions first.
        """
        if self.keys is None:
            self.keys, self.values = k, v  # (B, H, T, Dh) each
        else:
            if k.shape[:2] != self.keys.shape[:2] or k.shape[-1] != self.keys.shape[-1]:
                raise ValueError(
                    f"new keys {tuple(k.shape)} do not fit the cached (B, H, S, Dh) = "
                    f"{tuple(self.keys.shape)}"
                )
            self.keys = torch.cat([self.keys, k], dim=-2)  # (B, H, S + T, Dh)
            self.values = torch.cat([self.values, v], dim=-2)  # (B, H, S + T, Dh)
        return self.keys, self.values


class KVCache:
    """Every layer's `LayerCache`: what a model keeps between generation steps.

    `cache[l]` is layer l's; all layers hold the same number of positions, `cache.length`.
    """

    def __init__(self, num_layers: int) -> None:
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.layers = [LayerCache() for _ in range(num_layers)]

    def __getitem__(self, layer: int) -> LayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        """The number of positions stored (the offset of the next token's position)."""
        return self.layers[0].length

    @property
    def nbytes(self) -> int:
        """Bytes held by all the stored keys and values."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            for t in (layer.keys, layer.values)
            if t is not None
        )


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections; returns per-head weights."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        fused: bool = False,
        num_kv_heads: int | None = None,
    ) -> None:
        """
        Args:
            d_model: D, the width of the tokens in and out.
            num_heads: H, must divide d_model; each head attends in head_dim = D / H dimensions.
            dropout: dropout probability on the attention weights (training only).
            bias: whether the four projections have biases.
            fused: use `F.scaled_dot_product_attention` when weights are not requested.
            num_kv_heads: H_kv, how many heads of keys and values (chapter 11): None or H is
                ordinary multi-head attention, 1 multi-query attention (Shazeer, 2019), and
                anything between that divides H grouped-query attention (Ainslie et al.,
                2023): query heads h = g * H / H_kv ... (g + 1) * H / H_kv - 1 share key and
                value head g, so k_proj and v_proj shrink to H_kv * head_dim outputs and a KV
                cache keeps H_kv heads instead of H.
        """
        super().__init__()
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if not isinstance(num_kv_heads, int) or num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} must be a positive int dividing num_heads={num_heads}"
            )
        self.d_model = d_model
        # A plain attribute: head pruning (`tfm_edu.efficiency.prune_heads`) lowers it, down to
        # 0, and slices the projections to match; head_dim never changes.
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.fused = fused
        self.q_proj = nn.Linear(d_model, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, d_model, bias=bias)

    @property
    def num_kv_heads(self) -> int:
        """H_kv, the heads of keys and values (read off k_proj, so pruning keeps it true)."""
        return self.k_proj.out_features // self.head_dim

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        return_attention: bool = True,
        cache: LayerCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """
        Args:
            query: (B, T, D).
            key: (B, S, D).
            value: (B, S, D).
            mask: optional bool broadcastable to (B, H, T, S), True = may attend; e.g. a causal
                (T, S) mask, or a padding mask (B, 1, 1, S). With a cache, S counts the cached
                positions too.
            return_attention: return the weights; when False they are None, and a `fused`
                module then calls PyTorch's fused kernel, which never computes them.
            cache: a `LayerCache` (self-attention): the keys and values computed here are
                appended to the cached ones, and the queries attend to all of them.

        Returns:
            out: (B, T, D).
            weights: (B, H, T, S), or None when `return_attention` is False.
        """
        self._check_inputs(query, key, value)
        if self.num_heads == 0:  # every head pruned away: only out_proj's bias is left
            return self._no_heads(query, key, return_attention, cache)
        # split_heads is a view whose rows of one head lie D apart in memory; `.contiguous()`
        # copies each head's (L, Dh) block together, the layout the batched matmuls read as it
        # is (k^T becomes a free view). Without it matmul copies anyway, k into a transpose.
        q = split_heads(self.q_proj(query), self.num_heads).contiguous()  # (B, H, T, Dh)
        k = split_heads(self.k_proj(key), self.num_kv_heads).contiguous()  # (B, H_kv, S, Dh)
        v = split_heads(self.v_proj(value), self.num_kv_heads).contiguous()  # (B, H_kv, S, Dh)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H_kv, S_cached + S, Dh) each: the past, the new
        if self.num_kv_heads != self.num_heads:  # grouped: each key/value head serves a group
            group = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(group, dim=1)  # (B, H, S, Dh): head h reads kv head h // group
            v = v.repeat_interleave(group, dim=1)  # (B, H, S, Dh)
        dropout_p = self.dropout if self.training else 0.0
        if self.fused and not return_attention:
            heads, weights = _fused_attention(q, k, v, mask, dropout_p), None  # (B, H, T, Dh)
        else:
            heads, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)  # (B, H, T, Dh)
        out = self.out_proj(merge_heads(heads))  # (B, T, D)
        return out, weights if return_attention else None  # (B, T, D), (B, H, T, S)

    def _no_heads(
        self, query: Tensor, key: Tensor, return_attention: bool, cache: LayerCache | None
    ) -> tuple[Tensor, Tensor | None]:
        B, T, _ = query.shape
        empty = key.new_zeros(B, 0, key.shape[1], self.head_dim)  # (B, 0, S, Dh)
        S = cache.append(empty, empty)[0].shape[-2] if cache is not None else key.shape[1]
        out = self.out_proj(query.new_zeros(B, T, 0))  # (B, T, D): the bias, or zeros
        return out, query.new_zeros(B, 0, T, S) if return_attention else None  # (B, 0, T, S)

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return f"d_model={self.d_model}, num_heads={self.num_heads}{kv}, fused={self.fused}"

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (B, L, D) with D={self.d_model}, got {tuple(x.shape)}"
                )
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(
                "query (B, T, D), key (B, S, D) and value (B, S, D) disagree on B or S: "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )


def set_fused(model: nn.Module, fused: bool = True) -> nn.Module:
    """Switch every `MultiHeadAttention` inside `model` to (or from) the fused kernel."""
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused = fused
    return model


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float):
    if mask is not None:
        _check_mask(mask, (*q.shape[:-1], k.shape[-2]))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if mask is not None:  # same convention as the explicit path: fully masked rows are zeros
        out = torch.where(mask.any(dim=-1, keepdim=True), out, 0.0)  # (B, H, T, Dh)
    return out


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(
            "q, k, v need at least 2 axes (..., length, width), "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "q (..., T, d_k) and k (..., S, d_k) must share d_k, "
            f"got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "k (..., S, d_k) and v (..., S, d_v) must share S, "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )


def _check_mask(mask: Tensor, scores_shape) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != torch.Size(scores_shape):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{tuple(scores_shape)} (..., T, S)"
        )
