"""Checks for chapter 4: the learner's whole encoder layer, post-LN and pre-LN.

The learner writes `MyEncoderLayer(nn.Module)` from the package's `MultiHeadAttention` and
`FeedForward`, two `nn.LayerNorm`s, two dropouts and two residual connections, with a
`norm_first` switch: False is the paper's post-LN, x = LN(x + F(x)) (Vaswani et al., 2017);
True is pre-LN, x = x + F(LN(x)) (Xiong et al., 2020). The check loads the weights of
`tfm_edu.layers.EncoderLayer` into it by name and compares outputs and input gradients, in eval
mode with padding masks, with our layer and with PyTorch's `nn.TransformerEncoderLayer`
(batch_first=True) given the same weights.
"""

from __future__ import annotations

from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, graded
from tfm_edu.layers import EncoderLayer
from tfm_edu.reference import copy_encoder_layer_to_torch, to_torch_mask

__all__ = ["check_encoder_layer"]

_DROPOUT = 0.1  # every layer is built with dropout; in eval mode a correct layer ignores it
_NOT_REPEATABLE = (
    "in eval mode two calls on the same input gave different outputs (the check calls "
    "module.eval() first)"
)


@graded
def check_encoder_layer(cls) -> CheckResult:
    """Check a learner's `cls(*, d_model, num_heads, d_ff, dropout=0.0, norm_first=False)`.

    The module must hold the attributes of `tfm_edu.layers.EncoderLayer`, so that its
    `state_dict` loads: `self_attn` (a `tfm_edu.attention.MultiHeadAttention`), `feed_forward`
    (a `tfm_edu.layers.FeedForward`), `norm1`, `norm2` (`nn.LayerNorm(d_model)`), and
    `forward(x (B, T, D), mask=None)` with `mask` bool (B, 1, 1, T), True = may attend, returning
    out (B, T, D), or (out, weights) like `EncoderLayer`.

    Each case builds the layer with dropout 0.1, loads the reference weights (LayerNorm scales
    and shifts made different from 1 and 0), calls `.eval()`, and compares the output and the
    gradient of a fixed random projection of it with respect to the input, first with
    `EncoderLayer`, then with `nn.TransformerEncoderLayer`. Torch's RNG is restored afterwards.

    Returns:
        A `CheckResult`; this function never raises.
    """
    name = getattr(cls, "__name__", "MyEncoderLayer")
    setups = [  # (B, T, D, H, d_ff, norm_first, lengths or None, label)
        (2, 5, 16, 4, 32, False, None, "post-LN"),
        (3, 6, 8, 2, 16, False, (6, 4, 1), "post-LN, padding mask"),
        (2, 5, 16, 4, 32, True, None, "pre-LN"),
        (3, 6, 8, 2, 16, True, (6, 4, 1), "pre-LN, padding mask"),
        (2, 7, 12, 3, 24, True, (7, 3), "pre-LN, padding mask"),
        (2, 7, 12, 3, 24, False, (2, 7), "post-LN, padding mask"),
    ]
    cases = []
    for seed, (B, T, D, H, d_ff, norm_first, lengths, label) in enumerate(setups):
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(B, T, D, generator=g) * 2 + 0.5  # (B, T, D): not already normalised
        mask = None
        if lengths is not None:
            real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
            mask = real[:, None, None, :]  # (B, 1, 1, T) True = a real token
        settings = {"num_heads": H, "d_ff": d_ff, "norm_first": norm_first, "seed": seed}
        cases.append(Case((x, mask), settings, label))
    mistakes = [Mistake(hint, partial(_run, wrong)) for wrong, hint in _MISTAKES]
    with torch.random.fork_rng(devices=[]):  # building modules and dropout draw from the RNG
        return check_against(
            name,
            partial(_run, cls),
            [
                ("tfm_edu.layers.EncoderLayer", partial(_run, EncoderLayer)),
                ("nn.TransformerEncoderLayer", _run_torch),
            ],
            cases,
            mistakes,
            passed=f"matches tfm_edu.layers.EncoderLayer and nn.TransformerEncoderLayer on "
            f"{len(cases)} test cases (post-LN and pre-LN, with padding masks; outputs and input "
            "gradients)",
            atol=1e-5,
            rtol=1e-4,
            output_names=("out", "input gradient"),
        )


# ------------------------------------------------------------------ running one case


@lru_cache(maxsize=16)
def _reference_state(d_model, num_heads, d_ff, norm_first, seed):
    """The weights every case loads: a seeded EncoderLayer, LayerNorms away from (1, 0).

    Cached: the learner's layer, ours, PyTorch's and every mistake load the same weights."""
    torch.manual_seed(1000 + seed)  # callers run inside torch.random.fork_rng
    layer = EncoderLayer(
        d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=_DROPOUT, norm_first=norm_first
    )
    with torch.no_grad():
        for norm in (layer.norm1, layer.norm2):
            norm.weight.copy_(1 + 0.3 * torch.randn(d_model))
            norm.bias.copy_(0.3 * torch.randn(d_model))
    return layer.state_dict()


def _load(module: nn.Module, state: dict) -> None:
    """Load by name, or raise an error that says which names the check looks for."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    theirs = module.state_dict()
    missing = sorted({k.split(".")[0] for k in state if k not in theirs})
    if missing:
        raise AttributeError(
            "the check loads EncoderLayer's weights by name and needs self_attn "
            "(MultiHeadAttention), feed_forward (FeedForward), norm1 and norm2 "
            f"(nn.LayerNorm); not found or different: {', '.join(missing)}"
        )
    for key, value in state.items():
        if theirs[key].shape != value.shape:
            raise ValueError(
                f"{key} has shape {tuple(theirs[key].shape)}, the reference {tuple(value.shape)}"
            )
    module.load_state_dict(state, strict=False)


def _run(cls, x, mask=None, *, num_heads, d_ff, norm_first, seed):
    """Build cls, load the reference weights, eval mode: (out (B, T, D), d loss / d x (B, T, D))."""
    D = x.shape[-1]
    state = _reference_state(D, num_heads, d_ff, norm_first, seed)
    module = cls(d_model=D, num_heads=num_heads, d_ff=d_ff, dropout=_DROPOUT, norm_first=norm_first)
    _load(module, state)
    module.eval()
    x = x.clone().requires_grad_(True)  # (B, T, D)
    out = _first(module(x, mask))  # (B, T, D)
    if isinstance(out, torch.Tensor) and not torch.equal(out, _first(module(x, mask))):
        raise RuntimeError(_NOT_REPEATABLE)
    return _output_and_gradient(x, out, seed)


def _run_torch(x, mask=None, *, num_heads, d_ff, norm_first, seed):
    """The same weights in PyTorch's own layer; its padding mask means True = *blocked*."""
    D = x.shape[-1]
    ours = EncoderLayer(
        d_model=D, num_heads=num_heads, d_ff=d_ff, dropout=_DROPOUT, norm_first=norm_first
    )
    ours.load_state_dict(_reference_state(D, num_heads, d_ff, norm_first, seed))
    theirs = nn.TransformerEncoderLayer(
        D, num_heads, d_ff, dropout=_DROPOUT, activation="relu", batch_first=True,
        norm_first=norm_first,
    )  # fmt: skip
    copy_encoder_layer_to_torch(ours, theirs)
    theirs.eval()
    x = x.clone().requires_grad_(True)  # (B, T, D); needing gradients keeps nn off its fast path
    blocked = None if mask is None else to_torch_mask(mask[:, 0, 0, :])  # (B, T) True = pad
    out = theirs(x, src_key_padding_mask=blocked)  # (B, T, D)
    return _output_and_gradient(x, out, seed)


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) and result else result


def _output_and_gradient(x, out, seed):
    """out, and the gradient at x of a fixed random projection of out (a plain sum would give
    zero gradient through a final LayerNorm)."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return out, None  # the harness reports the type or shape
    projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))  # (B, T, D)
    (out * projection).sum().backward()
    gradient = x.grad if x.grad is not None else torch.zeros_like(x)  # (B, T, D)
    return out.detach(), gradient


# ------------------------------------------------------------------ typical mistakes


class _Slip(EncoderLayer):
    """EncoderLayer with the learner's signature and one slip in `forward` (set by subclasses)."""

    def __init__(self, *, d_model, num_heads, d_ff, dropout=0.0, norm_first=False, **options):
        super().__init__(
            d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout,
            norm_first=norm_first, **options,
        )  # fmt: skip

    def attend(self, h, mask):
        return self.self_attn(h, h, h, mask)[0]  # (B, T, D)

    def forward(self, x, mask=None):
        return self.slip(x, mask)  # (B, T, D)


def _slip(forward, **options):
    """A `_Slip` subclass whose forward is `forward(layer, x, mask)`."""
    init = _Slip.__init__

    def __init__(self, *, d_model, num_heads, d_ff, dropout=0.0, norm_first=False):
        init(
            self, d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout,
            norm_first=norm_first, **options,
        )  # fmt: skip

    return type("Slip", (_Slip,), {"__init__": __init__, "slip": forward})


def _sublayers(layer, x, mask, *, pre, norms=None, dropout=None, residual=(True, True)):
    """One encoder layer written out, with the pieces a slip may replace."""
    norm1, norm2 = norms or (layer.norm1, layer.norm2)
    drop1, drop2 = dropout or (layer.dropout1, layer.dropout2)
    sublayers = (
        (norm1, drop1, lambda h: layer.attend(h, mask), residual[0]),
        (norm2, drop2, layer.feed_forward, residual[1]),
    )
    for norm, drop, sublayer, keep in sublayers:
        if pre:
            update = drop(sublayer(norm(x)))  # (B, T, D)
            x = x + update if keep else update
        else:
            update = drop(sublayer(x))  # (B, T, D)
            x = norm(x + update if keep else update)
    return x  # (B, T, D)


def _post(layer, x, mask):
    return _sublayers(layer, x, mask, pre=False)


def _pre(layer, x, mask):
    return _sublayers(layer, x, mask, pre=True)


def _norm_first_inverted(layer, x, mask):
    return _sublayers(layer, x, mask, pre=not layer.norm_first)


def _normalised_residual(layer, x, mask):  # pre-LN, but the residual is taken after the norm
    if not layer.norm_first:
        return _post(layer, x, mask)
    h = layer.norm1(x)  # (B, T, D)
    x = h + layer.attend(h, mask)
    h = layer.norm2(x)
    return h + layer.feed_forward(h)


def _norm_on_output(layer, x, mask):  # x + LN(F(x)), in either setting
    x = x + layer.norm1(layer.attend(x, mask))
    return x + layer.norm2(layer.feed_forward(x))


def _pre_norm_on_output(layer, x, mask):
    return _norm_on_output(layer, x, mask) if layer.norm_first else _post(layer, x, mask)


def _post_norm_on_output(layer, x, mask):
    return _pre(layer, x, mask) if layer.norm_first else _norm_on_output(layer, x, mask)


def _no_residual(layer, x, mask):
    return _sublayers(layer, x, mask, pre=layer.norm_first, residual=(False, False))


def _no_residual_feed_forward(layer, x, mask):
    return _sublayers(layer, x, mask, pre=layer.norm_first, residual=(True, False))


def _no_norm(layer, x, mask):
    identity = (nn.Identity(), nn.Identity())
    return _sublayers(layer, x, mask, pre=layer.norm_first, norms=identity)


def _one_norm(layer, x, mask):  # norm1 used for both sublayers, norm2 never
    return _sublayers(layer, x, mask, pre=layer.norm_first, norms=(layer.norm1, layer.norm1))


def _norm_over_tokens(layer, x, mask):  # statistics over the sequence axis, not the features
    def norm(module, h):
        mean, var = h.mean(1, keepdim=True), h.var(1, keepdim=True, unbiased=False)  # (B, 1, D)
        return (h - mean) / torch.sqrt(var + module.eps) * module.weight + module.bias

    norms = (partial(norm, layer.norm1), partial(norm, layer.norm2))
    return _sublayers(layer, x, mask, pre=layer.norm_first, norms=norms)


def _dropout_in_eval(layer, x, mask):  # F.dropout's training=True by default
    drop = partial(F.dropout, p=_DROPOUT)
    return _sublayers(layer, x, mask, pre=layer.norm_first, dropout=(drop, drop))


def _right(layer, x, mask):
    return _sublayers(layer, x, mask, pre=layer.norm_first)


def _mask_ignored(layer, x, mask):
    return _right(layer, x, None)


def _mask_inverted(layer, x, mask):
    return _right(layer, x, None if mask is None else ~mask)


_MISTAKES = [
    (
        _slip(_post),
        "your layer is post-LN even when norm_first=True. Pre-LN normalises only the "
        "sublayer's input and leaves the residual path alone: x = x + dropout(F(norm(x))), "
        "for the attention and then for the feed-forward.",
    ),
    (
        _slip(_pre),
        "your layer is pre-LN even when norm_first=False. The paper's post-LN normalises "
        "after the residual addition: x = norm(x + dropout(F(x))).",
    ),
    (
        _slip(_norm_first_inverted),
        "norm_first is the wrong way round: norm_first=True is pre-LN, x + F(norm(x)); "
        "norm_first=False is the paper's post-LN, norm(x + F(x)).",
    ),
    (
        _slip(_normalised_residual),
        "in pre-LN the residual adds the *un-normalised* x: h = norm(x); x = x + F(h). Your "
        "layer adds the normalised h (h + F(h)), so the residual path is normalised after all.",
    ),
    (
        _slip(_pre_norm_on_output),
        "in pre-LN the norm goes on the sublayer's *input*, x + F(norm(x)), not on its output, "
        "x + norm(F(x)).",
    ),
    (
        _slip(_post_norm_on_output),
        "in post-LN the norm goes after the residual addition, norm(x + F(x)), not on the "
        "sublayer's output, x + norm(F(x)).",
    ),
    (
        _slip(_no_residual),
        "the residual connections are missing: add the sublayer's input back, "
        "x + F(...), around the attention and around the feed-forward.",
    ),
    (
        _slip(_no_residual_feed_forward),
        "the residual connection around the feed-forward is missing: it needs one too, "
        "x + F(...) (post-LN: norm2(x + feed_forward(x))).",
    ),
    (
        _slip(_no_norm),
        "the LayerNorms are missing: call self.norm1 around the attention and self.norm2 "
        "around the feed-forward.",
    ),
    (
        _slip(_one_norm),
        "each sublayer has its own LayerNorm: norm1 for the attention, norm2 for the "
        "feed-forward (they learn different scales).",
    ),
    (
        _slip(_norm_over_tokens),
        "LayerNorm normalises each token over its own D features (the last axis): use "
        "nn.LayerNorm(d_model), not statistics over the sequence axis.",
    ),
    (
        _slip(_right, activation="gelu"),
        "the feed-forward's activation is ReLU here, as in the paper, EncoderLayer and "
        "nn.TransformerEncoderLayer: FeedForward(d_model=..., d_ff=...) without "
        "activation='gelu'.",
    ),
    (
        _slip(_dropout_in_eval),
        "dropout is still active in eval mode. Use nn.Dropout modules built in __init__ "
        "(self.dropout1, self.dropout2): they switch off under .eval(). F.dropout(x, p) has "
        "training=True by default, and an nn.Dropout created inside forward is in training "
        "mode.",
    ),
    (
        _slip(_mask_ignored),
        "the mask is ignored: pass it to the attention, self.self_attn(h, h, h, mask), so that "
        "no token attends to padding.",
    ),
    (
        _slip(_mask_inverted),
        "the mask is inverted: in this course True means 'may attend', and MultiHeadAttention "
        "takes it as it is. (Only nn.MultiheadAttention's masks mean True = blocked.)",
    ),
]
