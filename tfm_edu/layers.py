"""Chapter 4 in code: the blocks every Transformer is stacked from.

- `FeedForward`: Linear -> activation -> dropout -> Linear, applied to each position separately
  (Vaswani et al., 2017, eq. 2: FFN(x) = max(0, x W1 + b1) W2 + b2). There is *no* activation
  after the second Linear: the output must be able to be negative, since it is added to the
  residual stream.
- `EncoderLayer`: self-attention, then the feed-forward, each wrapped in a residual connection
  and a LayerNorm.
- `DecoderLayer`: masked self-attention, cross-attention to the encoder's output ("memory"), then
  the feed-forward.
- `Encoder` / `Decoder`: stacks of layers.

`norm_first=False` is the paper's post-LN: x = norm(x + sublayer(x)). `norm_first=True` is the
pre-LN used by most modern models (Xiong et al., 2020): x = x + sublayer(norm(x)), with a final
LayerNorm after the stack. The layers follow `torch.nn.TransformerEncoderLayer` and
`TransformerDecoderLayer` (batch_first=True) exactly, so their weights can be copied over and the
outputs compared (`tfm_edu.reference`).

`num_kv_heads` (chapter 11) gives an encoder stack grouped-query self-attention: fewer heads of
keys and values than of queries (see `MultiHeadAttention`).

Constructors are keyword-only (`EncoderLayer(d_model=64, num_heads=4, d_ff=256)`): their sizes
are all ints, and a swapped pair would build a different model without complaint. Layers return
`(x, weights)` like `MultiHeadAttention`; the stacks return every layer's weights as a tuple,
empty unless `return_attention=True`.
"""

from __future__ import annotations

from torch import Tensor, nn

from tfm_edu.attention import KVCache, LayerCache, MultiHeadAttention

__all__ = ["FeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}  # nn.GELU() is the exact (erf) GELU


class FeedForward(nn.Module):
    """Position-wise feed-forward: Linear(D, d_ff) -> activation -> dropout -> Linear(d_ff, D)."""

    def __init__(
        self, *, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        hidden = self.dropout(self.activation(self.linear1(x)))  # (B, T, d_ff)
        return self.linear2(hidden)  # (B, T, D)


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with residual connection and LayerNorm."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model=d_model, num_heads=num_heads, dropout=dropout, num_kv_heads=num_kv_heads
        )
        self.feed_forward = FeedForward(
            d_model=d_model, d_ff=d_ff, dropout=dropout, activation=activation
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        return_attention: bool = True,
        cache: LayerCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """
        Args:
            x: (B, T, D).
            mask: optional bool broadcastable to (B, H, T, S), True = may attend
                (e.g. a padding mask of shape (B, 1, 1, T), or a causal (T, S) mask).
            return_attention: return the attention weights (else None).
            cache: the self-attention's `LayerCache` (chapter 9): x holds only the new
                positions, and attends to the S - T cached ones too (S = T without a cache).

        Returns:
            x: (B, T, D); weights: (B, H, T, S) or None.
        """
        if self.norm_first:
            h = self.norm1(x)
            attended, weights = self.self_attn(h, h, h, mask, return_attention, cache)
            x = x + self.dropout1(attended)  # (B, T, D)
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))  # (B, T, D)
        else:
            attended, weights = self.self_attn(x, x, x, mask, return_attention, cache)
            x = self.norm1(x + self.dropout1(attended))  # (B, T, D)
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))  # (B, T, D)
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention + cross-attention to the memory + feed-forward."""

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.feed_forward = FeedForward(
            d_model=d_model, d_ff=d_ff, dropout=dropout, activation=activation
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        return_attention: bool = True,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """
        Args:
            x: (B, T, D) the target sequence so far.
            memory: (B, S, D) the encoder's output.
            self_mask: bool broadcastable to (B, H, T, T), usually causal; True = may attend.
            memory_mask: bool broadcastable to (B, H, T, S), usually source padding (B, 1, 1, S).
            return_attention: return both attention maps (else None).

        Returns:
            x: (B, T, D); self_weights: (B, H, T, T); cross_weights: (B, H, T, S) (or None).
        """
        if self.norm_first:
            h = self.norm1(x)
            attended, self_weights = self.self_attn(h, h, h, self_mask, return_attention)
            x = x + self.dropout1(attended)  # (B, T, D)
            h = self.norm2(x)
            attended, cross_weights = self.cross_attn(
                h, memory, memory, memory_mask, return_attention
            )
            x = x + self.dropout2(attended)  # (B, T, D)
            x = x + self.dropout3(self.feed_forward(self.norm3(x)))  # (B, T, D)
        else:
            attended, self_weights = self.self_attn(x, x, x, self_mask, return_attention)
            x = self.norm1(x + self.dropout1(attended))  # (B, T, D)
            attended, cross_weights = self.cross_attn(
                x, memory, memory, memory_mask, return_attention
            )
            x = self.norm2(x + self.dropout2(attended))  # (B, T, D)
            x = self.norm3(x + self.dropout3(self.feed_forward(x)))  # (B, T, D)
        return x, self_weights, cross_weights


class Encoder(nn.Module):
    """A stack of `EncoderLayer`s (plus a final LayerNorm when pre-LN)."""

    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        _check_num_layers(num_layers)
        self.layers = nn.ModuleList(
            EncoderLayer(
                d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout,
                activation=activation, norm_first=norm_first, layer_norm_eps=layer_norm_eps,
                num_kv_heads=num_kv_heads,
            )
            for _ in range(num_layers)
        )  # fmt: skip
        # Pre-LN leaves the residual stream un-normalised; one last LayerNorm fixes its scale.
        self.final_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if norm_first else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x: (B, T, D) -> (B, T, D) and, if asked, one (B, H, T, S) map per layer (else ()).

        With a `KVCache` (one `LayerCache` per layer), x holds only the new positions and S
        counts the cached ones too; the cache is extended in place.
        """
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"the cache has {len(cache)} layers, the stack {len(self.layers)}")
        attentions = []
        for l, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[l]
            x, weights = layer(x, mask, return_attention, layer_cache)  # (B, T, D)
            if return_attention:
                attentions.append(weights)
        return self.final_norm(x), tuple(attentions)


class Decoder(nn.Module):
    """A stack of `DecoderLayer`s (plus a final LayerNorm when pre-LN)."""

    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_num_layers(num_layers)
        self.layers = nn.ModuleList(
            DecoderLayer(
                d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout,
                activation=activation, norm_first=norm_first, layer_norm_eps=layer_norm_eps,
            )
            for _ in range(num_layers)
        )  # fmt: skip
        self.final_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if norm_first else nn.Identity()

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
        """x: (B, T, D), memory: (B, S, D) -> (B, T, D), self maps ((B, H, T, T), ...) and cross
        maps ((B, H, T, S), ...), one per layer when asked, else empty tuples."""
        self_attentions, cross_attentions = [], []
        for layer in self.layers:
            x, self_w, cross_w = layer(
                x, memory, self_mask, memory_mask, return_attention
            )  # (B, T, D)
            if return_attention:
                self_attentions.append(self_w)
                cross_attentions.append(cross_w)
        return self.final_norm(x), tuple(self_attentions), tuple(cross_attentions)


def _check_num_layers(num_layers: int) -> None:
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
