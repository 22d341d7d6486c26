"""Chapter 4's check of the learner's whole encoder layer: right code passes, slips get hints.

The layers here are written the way a learner would, independently of the check's `Mistake`s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exercise_helpers import assert_hint
from torch import nn

from tfm_edu.attention import MultiHeadAttention
from tfm_edu.exercises.encoder import check_encoder_layer
from tfm_edu.layers import EncoderLayer, FeedForward


class Layer(nn.Module):
    """A learner's encoder layer; `slip` names one typical mistake (None: correct)."""

    slip = None

    def __init__(self, *, d_model, num_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads, dropout=dropout)
        activation = "gelu" if self.slip == "gelu" else "relu"
        self.feed_forward = FeedForward(
            d_model=d_model, d_ff=d_ff, dropout=dropout, activation=activation
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.p = dropout

    def attention(self, h, mask):
        if self.slip == "mask ignored":
            mask = None
        elif self.slip == "mask inverted" and mask is not None:
            mask = ~mask
        out, _ = self.self_attn(h, h, h, mask)
        return out

    def forward(self, x, mask=None):
        slip = self.slip
        drop1, drop2 = self.dropout1, self.dropout2
        if slip == "functional dropout":
            drop1 = drop2 = lambda t: F.dropout(t, self.p)
        norm_first = self.norm_first
        if slip == "always post":
            norm_first = False
        if slip == "swapped":
            norm_first = not norm_first
        if norm_first:
            if slip == "residual after norm":
                x = self.norm1(x)
                x = x + drop1(self.attention(x, mask))
                x = self.norm2(x)
                return x + drop2(self.feed_forward(x))
            if slip == "norm on output":
                x = x + self.norm1(drop1(self.attention(x, mask)))
                return x + self.norm2(drop2(self.feed_forward(x)))
            x = x + drop1(self.attention(self.norm1(x), mask))
            second = self.norm1 if slip == "one norm" else self.norm2
            return x + drop2(self.feed_forward(second(x)))
        if slip == "no residual":
            x = self.norm1(drop1(self.attention(x, mask)))
            return self.norm2(drop2(self.feed_forward(x)))
        x = self.norm1(x + drop1(self.attention(x, mask)))
        if slip == "one norm":
            return self.norm1(x + drop2(self.feed_forward(x)))
        if slip == "no residual ffn":
            return self.norm2(drop2(self.feed_forward(x)))
        return self.norm2(x + drop2(self.feed_forward(x))), None


def with_slip(name):
    return type(f"Layer_{name}", (Layer,), {"slip": name})


def test_correct_layers_pass():
    result = check_encoder_layer(Layer)
    assert result.passed, result.message
    assert "nn.TransformerEncoderLayer" in result.message
    package = check_encoder_layer(
        lambda **kw: EncoderLayer(**kw)  # the package's own layer, returning (out, weights)
    )
    assert package.passed, package.message


class ManualLayer(nn.Module):
    """Another correct learner: own LayerNorm arithmetic and dropout modules built in forward
    only for the p=0 case would be wrong, so the dropouts are built in __init__."""

    def __init__(self, *, d_model, num_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads)
        self.feed_forward = FeedForward(d_model=d_model, d_ff=d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    @staticmethod
    def ln(norm, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias

    def forward(self, x, mask=None):
        def attn(h):
            return self.self_attn(h, h, h, mask)[0]

        if self.norm_first:
            x = x + self.drop(attn(self.ln(self.norm1, x)))
            return x + self.drop(self.feed_forward(self.ln(self.norm2, x)))
        x = self.ln(self.norm1, x + self.drop(attn(x)))
        return self.ln(self.norm2, x + self.drop(self.feed_forward(x)))


def test_an_independent_correct_layer_passes():
    assert check_encoder_layer(ManualLayer).passed


@pytest.mark.parametrize(
    ("slip", "hint"),
    [
        ("always post", "post-LN even when norm_first=True"),
        ("swapped", "norm_first is the wrong way round"),
        ("residual after norm", "adds the normalised h"),
        ("norm on output", "the norm goes on the sublayer's *input*"),
        ("no residual", "residual connections are missing"),
        ("no residual ffn", "around the feed-forward is missing"),
        ("one norm", "each sublayer has its own LayerNorm"),
        ("gelu", "activation is ReLU here"),
        ("functional dropout", "dropout is still active in eval mode"),
        ("mask ignored", "the mask is ignored"),
        ("mask inverted", "the mask is inverted"),
    ],
)
def test_typical_mistakes_get_their_hint(slip, hint):
    assert_hint(check_encoder_layer(with_slip(slip)), hint)


def test_missing_attributes_are_named():
    class Renamed(Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attn = self.self_attn
            del self.self_attn

    result = check_encoder_layer(Renamed)
    assert result.status == "failed"
    assert "needs self_attn" in result.message and "not found or different: self_attn" in (
        result.message
    )


def test_stub_is_not_done_and_rng_is_restored():
    class Stub(nn.Module):
        def __init__(self, *, d_model, num_heads, d_ff, dropout=0.0, norm_first=False):
            super().__init__()
            raise NotImplementedError

    assert check_encoder_layer(Stub).status == "not done"

    class ForwardStub(Layer):
        def forward(self, x, mask=None):
            raise NotImplementedError

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert check_encoder_layer(ForwardStub).status == "not done"
    check_encoder_layer(with_slip("functional dropout"))
    torch.testing.assert_close(torch.rand(3), expected)
