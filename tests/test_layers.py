"""tfm_edu.layers: shapes, the feed-forward's form, and equality with PyTorch's own layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tfm_edu.layers import Decoder, DecoderLayer, Encoder, EncoderLayer, FeedForward
from tfm_edu.reference import (
    copy_decoder_layer_to_torch,
    copy_encoder_layer_to_torch,
    to_torch_mask,
)

B, T, S, D, H, FF = 3, 5, 7, 16, 4, 32


def _padding_mask(lengths: list[int], length: int) -> torch.Tensor:
    """(B, 1, 1, L): True for the first `lengths[b]` positions of row b."""
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def test_feed_forward_is_linear_activation_linear():
    torch.manual_seed(0)
    ffn = FeedForward(d_model=D, d_ff=FF, activation="relu")
    x = torch.randn(B, T, D)
    expected = ffn.linear2(torch.relu(ffn.linear1(x)))
    torch.testing.assert_close(ffn(x), expected)
    # No activation after the last Linear: the output must be able to go negative.
    assert (ffn(x) < 0).any()


def test_feed_forward_acts_on_each_position_separately():
    torch.manual_seed(0)
    ffn = FeedForward(d_model=D, d_ff=FF, activation="gelu")
    x = torch.randn(B, T, D)
    torch.testing.assert_close(ffn(x)[:, 2], ffn(x[:, 2:3])[:, 0])


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(d_model=D, d_ff=FF, activation="swish")


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes_and_weights(norm_first):
    torch.manual_seed(0)
    encoder = Encoder(num_layers=2, d_model=D, num_heads=H, d_ff=FF, norm_first=norm_first)
    decoder = Decoder(num_layers=2, d_model=D, num_heads=H, d_ff=FF, norm_first=norm_first)
    x, y = torch.randn(B, S, D), torch.randn(B, T, D)
    memory, encoder_maps = encoder(x, return_attention=True)
    out, self_maps, cross_maps = decoder(y, memory, return_attention=True)
    assert memory.shape == (B, S, D) and out.shape == (B, T, D)
    assert [m.shape for m in encoder_maps] == [(B, H, S, S)] * 2
    assert [m.shape for m in self_maps] == [(B, H, T, T)] * 2
    assert [m.shape for m in cross_maps] == [(B, H, T, S)] * 2
    torch.testing.assert_close(cross_maps[0].sum(-1), torch.ones(B, H, T))
    assert encoder(x)[1] == () and decoder(y, memory)[1:] == ((), ())  # not asked: empty


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masked", [False, True])
def test_encoder_layer_matches_pytorch(norm_first, activation, masked):
    torch.manual_seed(0)
    ours = EncoderLayer(
        d_model=D, num_heads=H, d_ff=FF, dropout=0.0, activation=activation, norm_first=norm_first
    )
    theirs = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    copy_encoder_layer_to_torch(ours, theirs)
    ours.eval(), theirs.eval()
    x = torch.randn(B, S, D)
    mask = _padding_mask([S, 4, 2], S) if masked else None  # (B, 1, 1, S)
    out, weights = ours(x, mask)
    # nn.TransformerEncoderLayer takes padding as key_padding_mask (B, S), True = blocked.
    expected = theirs(x, src_key_padding_mask=to_torch_mask(mask[:, 0, 0]) if masked else None)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if masked:  # padded keys get exactly zero weight
        assert (weights[1, :, :, 4:] == 0).all() and (weights[2, :, :, 2:] == 0).all()


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_pytorch(norm_first):
    torch.manual_seed(0)
    ours = DecoderLayer(d_model=D, num_heads=H, d_ff=FF, dropout=0.0, norm_first=norm_first)
    theirs = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    copy_decoder_layer_to_torch(ours, theirs)
    ours.eval(), theirs.eval()
    y, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    memory_mask = _padding_mask([S, 3, 6], S)  # (B, 1, 1, S)
    out, _, cross = ours(y, memory, causal, memory_mask)
    expected = theirs(
        y,
        memory,
        tgt_mask=to_torch_mask(causal),
        memory_key_padding_mask=to_torch_mask(memory_mask[:, 0, 0]),
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (cross[1, :, :, 3:] == 0).all()  # row 1 has 3 real memory tokens


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_mask_forbids_the_future(norm_first):
    torch.manual_seed(0)
    decoder = Decoder(num_layers=2, d_model=D, num_heads=H, d_ff=FF, norm_first=norm_first).eval()
    y, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    changed = y.clone()
    changed[:, 3:] = torch.randn(B, T - 3, D)  # change positions 3, 4
    before, _, _ = decoder(y, memory, causal)
    after, _, _ = decoder(changed, memory, causal)
    torch.testing.assert_close(before[:, :3], after[:, :3])  # positions 0..2 unaffected
    assert not torch.allclose(before[:, 3:], after[:, 3:])
    # Without the mask the future leaks into the past:
    leaky_before, _, _ = decoder(y, memory)
    leaky_after, _, _ = decoder(changed, memory)
    assert not torch.allclose(leaky_before[:, :3], leaky_after[:, :3])


def test_pre_ln_stack_ends_with_a_layer_norm():
    torch.manual_seed(0)
    encoder = Encoder(num_layers=2, d_model=D, num_heads=H, d_ff=FF, norm_first=True)
    out, _ = encoder(torch.randn(B, S, D) * 10)
    torch.testing.assert_close(out.mean(-1), torch.zeros(B, S), atol=1e-5, rtol=0)
    assert isinstance(
        Encoder(num_layers=2, d_model=D, num_heads=H, d_ff=FF, norm_first=False).final_norm,
        nn.Identity,
    )


def test_parameter_count():
    layer = EncoderLayer(d_model=D, num_heads=H, d_ff=FF)
    attention = 4 * (D * D + D)
    feed_forward = D * FF + FF + FF * D + D
    norms = 2 * 2 * D
    assert sum(p.numel() for p in layer.parameters()) == attention + feed_forward + norms
    decoder_layer = DecoderLayer(d_model=D, num_heads=H, d_ff=FF)
    assert sum(p.numel() for p in decoder_layer.parameters()) == (
        2 * attention + feed_forward + 3 * 2 * D
    )


def test_stacks_need_at_least_one_layer():
    with pytest.raises(ValueError, match="num_layers"):
        Encoder(num_layers=0, d_model=D, num_heads=H, d_ff=FF)
    with pytest.raises(ValueError, match="num_layers"):
        Decoder(num_layers=2.5, d_model=D, num_heads=H, d_ff=FF)


def test_layers_return_no_weights_unless_asked():
    torch.manual_seed(0)
    encoder_layer = EncoderLayer(d_model=D, num_heads=H, d_ff=FF).eval()
    decoder_layer = DecoderLayer(d_model=D, num_heads=H, d_ff=FF).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    out, weights = encoder_layer(x, return_attention=False)
    assert weights is None
    torch.testing.assert_close(out, encoder_layer(x)[0])
    _, self_weights, cross_weights = decoder_layer(x, memory, return_attention=False)
    assert self_weights is None and cross_weights is None
    _, self_weights, cross_weights = decoder_layer(x, memory)  # layers default to the weights
    assert self_weights.shape == (B, H, T, T) and cross_weights.shape == (B, H, T, S)
    encoder = Encoder(num_layers=3, d_model=D, num_heads=H, d_ff=FF)
    _, maps = encoder(x, return_attention=True)
    assert isinstance(maps, tuple) and len(maps) == 3
