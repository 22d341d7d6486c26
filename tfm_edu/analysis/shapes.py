"""Every tensor's shape on its way through a model of the course, from a real forward pass.

`trace_shapes("BERT (masked LM)", ShapeConfig(batch_size=2, length=6, d_model=32, num_heads=4))`
builds a tiny model from those numbers, runs it once on random inputs under forward hooks
(`shape_hooks.trace_module`), and returns one `ShapeRow` per step: its input and output shapes
in numbers and in the course's letters, `(B, T, D)`, `(B, H, T, S)`, `(B, T, V)`
(`shape_letters.shape_symbols`). Inside attention the rows follow Vaswani et al. (2017,
section 3.2.2): projections, the split into H heads, the (B, H, T, S) scores and weights, the
merge; each row says whether a hook measured it or it was derived.

Sizes are checked first (`ShapeConfig`): positive whole numbers, H dividing D, and upper limits
so that a huge number gives a message, not a machine out of memory. Adding a model is one
entry in `MODELS` (see `TracedModel`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tfm_edu.analysis.shape_hooks import ShapeRow, ShapeTrace, trace_module
from tfm_edu.analysis.shape_letters import WIDTHS, shape_symbols
from tfm_edu.layers import DecoderLayer, Encoder, EncoderLayer
from tfm_edu.models.bert import BERTConfig, BERTForMaskedLM
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tfm_edu.models.vit import ViT, ViTConfig

__all__ = [
    "ShapeConfig",
    "ShapeRow",
    "ShapeTrace",
    "TracedModel",
    "MODELS",
    "LIMITS",
    "trace_shapes",
    "trace_module",
    "shape_symbols",
]

MAX_ELEMENTS = 2**23  # the largest tensor the tracer builds (8M numbers, 32 MB of float32)
MAX_PARAMETERS = 20_000_000  # the largest model it builds
LIMITS = {"batch_size": 64, "length": 512, "source_length": 512, "d_model": 1024,
          "num_heads": 64, "num_layers": 12, "image_size": 64, "patch_size": 64}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ShapeConfig:
    """The learner's numbers; every model reads the ones it needs (d_ff = 4 D)."""

    batch_size: int = 2  # B
    length: int = 6  # T: tokens in (seq2seq: the target; ViT ignores it, T = P + 1)
    d_model: int = 32  # D
    num_heads: int = 4  # H; head_dim Dh = D / H
    num_layers: int = 2  # layers in each stack (single-layer models ignore it)
    source_length: int = 9  # S: the source / memory length (seq2seq, decoder layer)
    image_size: int = 8  # ViT: side of the square image (8x8 digits)
    patch_size: int = 4  # ViT: side of a patch; must divide image_size

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
            if value > limit:
                raise ValueError(f"{name}={value} is more than the tracer's limit of {limit}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads H={self.num_heads} must divide d_model D={self.d_model}: each head "
                f"gets D / H = {self.d_model / self.num_heads:g} dimensions, not a whole number"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads  # Dh

    @property
    def d_ff(self) -> int:
        return 4 * self.d_model


# ------------------------------------------------------------------ the models of the course


@dataclass(frozen=True)
class TracedModel:
    """One entry of `MODELS`: how to build the model from a config and what to feed it."""

    build: Callable[[ShapeConfig], nn.Module]
    inputs: Callable[[ShapeConfig, torch.Generator], tuple[tuple, dict]]  # (args, kwargs)
    letters: Callable[[ShapeConfig], dict[str, int]]  # the letters its shapes are written in
    uses: frozenset[str]  # the ShapeConfig fields it reads (the widget shows only those)


def _core(c: ShapeConfig) -> dict[str, int]:
    return {"B": c.batch_size, "T": c.length, "D": c.d_model, "H": c.num_heads,
            "Dh": c.head_dim, "d_ff": c.d_ff}  # fmt: skip


def _sizes(c: ShapeConfig) -> dict:
    return dict(d_model=c.d_model, num_heads=c.num_heads, d_ff=c.d_ff)


def _tokens(c: ShapeConfig, g: torch.Generator, length: int | None = None) -> Tensor:
    return torch.randn(c.batch_size, length or c.length, c.d_model, generator=g)  # (B, L, D)


def _ids(c: ShapeConfig, g: torch.Generator, vocab: int, length: int) -> Tensor:
    return torch.randint(1, vocab, (c.batch_size, length), generator=g)  # (B, L), no [PAD]


def _causal(c: ShapeConfig) -> Tensor:
    return torch.ones(c.length, c.length, dtype=torch.bool).tril()  # (T, T)


def _seq2seq(c: ShapeConfig) -> Seq2SeqConfig:
    return Seq2SeqConfig(**_sizes(c), num_encoder_layers=c.num_layers,
                         num_decoder_layers=c.num_layers, max_source_len=c.source_length,
                         max_target_len=c.length)  # fmt: skip


def _bert(c: ShapeConfig) -> BERTConfig:
    return BERTConfig(**_sizes(c), num_layers=c.num_layers, max_positions=c.length, dropout=0.0)


def _vit(c: ShapeConfig) -> ViTConfig:
    return ViTConfig(**_sizes(c), num_layers=c.num_layers, image_size=c.image_size,
                     patch_size=c.patch_size)  # fmt: skip


def _vit_letters(c: ShapeConfig) -> dict[str, int]:
    v = _vit(c)
    patch = v.patch_size**2 * v.in_channels
    sizes = {"T": v.num_patches + 1, "P": v.num_patches, "N": v.num_classes, "p²C": patch}
    return {**_core(c), **sizes, "C": v.in_channels, "img": v.image_size}


_BASIC = frozenset({"batch_size", "length", "d_model", "num_heads"})
MODELS: dict[str, TracedModel] = {
    "encoder layer": TracedModel(
        lambda c: EncoderLayer(**_sizes(c)),
        lambda c, g: ((_tokens(c, g),), {}),
        _core,
        _BASIC,
    ),
    "encoder stack": TracedModel(
        lambda c: Encoder(num_layers=c.num_layers, **_sizes(c)),
        lambda c, g: ((_tokens(c, g),), {"return_attention": True}),
        _core,
        _BASIC | {"num_layers"},
    ),
    "decoder layer": TracedModel(
        lambda c: DecoderLayer(**_sizes(c)),
        lambda c, g: ((_tokens(c, g), _tokens(c, g, c.source_length), _causal(c)), {}),
        lambda c: {**_core(c), "S": c.source_length},
        _BASIC | {"source_length"},
    ),
    "seq2seq (encoder-decoder)": TracedModel(
        lambda c: Seq2SeqTransformer(_seq2seq(c)),
        lambda c, g: (
            (_ids(c, g, 71, c.source_length), _ids(c, g, 71, c.length)),  # V = 71 (the dates)
            {"return_attention": True},
        ),
        lambda c: {**_core(c), "S": c.source_length, "V": _seq2seq(c).vocab_size},
        _BASIC | {"num_layers", "source_length"},
    ),
    "BERT (masked LM)": TracedModel(
        lambda c: BERTForMaskedLM(_bert(c)),
        lambda c, g: ((_ids(c, g, _bert(c).vocab_size, c.length),), {"return_attention": True}),
        lambda c: {**_core(c), "V": _bert(c).vocab_size},
        _BASIC | {"num_layers"},
    ),
    "ViT": TracedModel(
        lambda c: ViT(_vit(c)),
        lambda c, g: (
            (torch.rand(c.batch_size, 1, c.image_size, c.image_size, generator=g),),
            {"return_attention": True},
        ),  # fmt: skip
        _vit_letters,
        (_BASIC - {"length"}) | {"num_layers", "image_size", "patch_size"},
    ),
}


def trace_shapes(model: str, config: ShapeConfig | None = None, *, seed: int = 0) -> ShapeTrace:
    """Build `MODELS[model]` from `config`, run it once on random inputs, return every shape.

    Args:
        model: a key of `MODELS`, e.g. "encoder stack", "BERT (masked LM)", "ViT".
        config: the sizes (default `ShapeConfig()`); invalid sizes raise a ValueError there.
        seed: seeds the weights and the random inputs.

    Returns:
        ShapeTrace whose rows follow the forward pass, attention internals included.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    config = ShapeConfig() if config is None else config
    entry = MODELS[model]
    letters = entry.letters(config)
    _check_budget(letters)
    torch.manual_seed(seed)
    module = entry.build(config).eval()
    count = sum(p.numel() for p in module.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"this model would have {count:,} weights, more than the tracer builds "
            f"({MAX_PARAMETERS:,}): make D or the number of layers smaller"
        )
    args, kwargs = entry.inputs(config, torch.Generator().manual_seed(seed))
    trace = trace_module(module, *args, letters=letters, **kwargs)
    trace.model = model
    return trace


def _check_budget(letters: dict[str, int]) -> None:
    B, H, T = letters["B"], letters["H"], letters["T"]
    L = max(T, letters.get("S", T))
    widths = max(letters.get(w, 0) for w in WIDTHS)
    biggest = max(B * H * L * L, B * L * widths)
    if biggest > MAX_ELEMENTS:
        raise ValueError(
            f"these sizes make a tensor of {biggest:,} numbers (B·H·T·S or B·T·width); the tracer "
            f"runs a real forward pass and stops at {MAX_ELEMENTS:,}: make B, T or H smaller"
        )
