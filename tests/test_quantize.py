"""Chapter 11's int8 quantisation: the round trip's half-step bound, per channel against per
tensor, `Int8Linear` against `F.linear`, whole models, and the real MiniLM's bytes and cosine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tfm_edu.efficiency.quantize import (
    QMAX,
    Int8Linear,
    dequantize,
    int8_fidelity,
    linear_bytes,
    quantization_error,
    quantize_int8,
    quantize_per_channel,
    quantize_per_tensor,
)


def _matrix(rows, cols, magnitude, seed, *, zero_row=False, outlier_row=False, dtype=None):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator, dtype=dtype) * magnitude  # (out, in)
    if zero_row:
        weight[0] = 0
    if outlier_row:
        weight[-1] *= 100
    return weight


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 17),
    log_magnitude=st.floats(-4, 4),
    seed=st.integers(0, 2**16),
    zero_row=st.booleans(),
    outlier_row=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_the_round_trip_moves_each_weight_by_at_most_half_a_step_of_its_row(
    rows, cols, log_magnitude, seed, zero_row, outlier_row, dtype
):
    weight = _matrix(rows, cols, 10.0**log_magnitude, seed, zero_row=zero_row,
                     outlier_row=outlier_row, dtype=dtype)  # fmt: skip
    q, scale = quantize_per_channel(weight)
    assert q.dtype == torch.int8 and q.shape == weight.shape and scale.shape == (rows,)
    assert q.abs().max() <= QMAX and (scale > 0).all()
    error = (weight - dequantize(q, scale)).abs()  # (out, in)
    slack = 1e-5 if dtype == torch.float32 else 1e-12  # float rounding of w / scale and q * scale
    assert (error <= scale[:, None] * (0.5 + slack)).all()
    # The largest weight of each non-zero row lands on +-127 exactly: the whole range is used.
    nonzero = weight.abs().amax(dim=1) > 0  # (out,)
    assert (q.abs().amax(dim=1)[nonzero] == QMAX).all()
    if zero_row:
        assert (q[0] == 0).all() and (dequantize(q, scale)[0] == 0).all()
    mean, largest = quantization_error(weight, per="channel")
    torch.testing.assert_close(largest, error.amax(dim=1))
    assert (mean <= largest).all()


def test_per_tensor_uses_one_step_and_dequantize_broadcasts_it():
    weight = _matrix(4, 6, 0.1, 0, outlier_row=True)
    q, scale = quantize_per_tensor(weight)
    assert scale.dim() == 0 and q.dtype == torch.int8 and q.abs().max() == QMAX
    torch.testing.assert_close(scale, weight.abs().max() / QMAX)
    assert ((weight - dequantize(q, scale)).abs() <= scale / 2 * (1 + 1e-5)).all()
    q_zero, scale_zero = quantize_per_tensor(torch.zeros(2, 3))
    assert scale_zero == 1 and (q_zero == 0).all()


def test_per_channel_beats_per_tensor_when_one_row_holds_outliers():
    weight = _matrix(16, 64, 0.02, 1, outlier_row=True)  # row 15 is 100x the others
    mean_tensor, largest_tensor = quantization_error(weight, per="tensor")
    mean_channel, largest_channel = quantization_error(weight, per="channel")
    assert (mean_tensor >= mean_channel).all() and (largest_tensor >= largest_channel).all()
    # The ordinary rows pay for the outlier: their error is many times larger per tensor.
    assert mean_tensor[:15].mean() > 20 * mean_channel[:15].mean()
    torch.testing.assert_close(mean_tensor[15], mean_channel[15])  # same step for that row


def test_bad_inputs_name_the_shapes():
    with pytest.raises(ValueError, match=r"float \(out, in\) matrix, got .* \(3,\)"):
        quantize_per_channel(torch.ones(3))
    with pytest.raises(ValueError, match="float"):
        quantize_per_tensor(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        quantize_per_channel([[1.0, 2.0]])
    q, _ = quantize_per_channel(torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"scale must be \(out,\) = \(3,\)"):
        dequantize(q, torch.ones(4))
    with pytest.raises(ValueError, match="per must be"):
        quantization_error(torch.ones(2, 2), per="row")
    with pytest.raises(ValueError, match=r"scale must be \(out,\) = \(3,\)"):
        Int8Linear(q, torch.ones(4))


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_is_f_linear_with_the_dequantised_weight(bias):
    torch.manual_seed(0)
    linear = nn.Linear(12, 5, bias=bias)
    layer = Int8Linear.from_linear(linear)
    assert layer.weight_int8.dtype == torch.int8 and layer.weight_int8.shape == (5, 12)
    assert layer.scale.dtype == torch.float32 and layer.scale.shape == (5,)
    assert (layer.in_features, layer.out_features) == (12, 5)
    assert list(layer.parameters()) == []  # int8 buffers, nothing to train
    x = torch.randn(2, 3, 12)  # (B, T, in)
    expected = F.linear(x, dequantize(layer.weight_int8, layer.scale), linear.bias)  # (B, T, 5)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(layer(x), linear(x), rtol=0, atol=0.05)  # close to the float one
    with pytest.raises(ValueError, match=r"\(\.\.\., in\) = \(\.\.\., 12\), got \(2, 11\)"):
        layer(torch.randn(2, 11))


def test_int8_matmul_quantises_each_token_and_stays_close():
    torch.manual_seed(0)
    linear = nn.Linear(32, 8)
    layer = Int8Linear.from_linear(linear, int8_matmul=True)
    x = torch.randn(3, 5, 32)  # (B, T, in)
    x[0, 0] = 0  # an all-zero token must not divide by zero
    out = layer(x)  # (B, T, out)
    assert out.shape == (3, 5, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0], linear.bias.detach())
    reference = Int8Linear.from_linear(linear)(x)  # the same weight, float inputs
    assert (out - reference).abs().max() < 0.02 * reference.abs().max()
    assert (out - reference).abs().max() > 0  # the inputs were rounded too


def test_quantize_int8_replaces_every_linear_and_leaves_the_original_alone():
    from tfm_edu.models.bert import BERT, BERTConfig

    torch.manual_seed(0)
    model = BERT(BERTConfig()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    quantised = quantize_int8(model)
    assert linears and all(isinstance(quantised.get_submodule(n), Int8Linear) for n in linears)
    assert not any(isinstance(m, nn.Linear) for m in quantised.modules())
    assert all(isinstance(model.get_submodule(n), nn.Linear) for n in linears)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert quantised.embeddings.token_embedding.weight.dtype == torch.float32  # untouched
    ids = torch.randint(1, BERTConfig().vocab_size, (2, 7))  # (B, T)
    with torch.no_grad():
        expected = model(ids).last_hidden_state  # (B, T, D)
        got = quantised(ids).last_hidden_state  # (B, T, D)
    assert (got - expected).abs().max() < 0.05
    assert (got - expected).abs().max() > 0  # the weights did change


def test_quantize_int8_works_for_gpt_and_vit_and_keeps_a_tied_head_float():
    from tfm_edu.models.gpt import GPT, GPTConfig
    from tfm_edu.models.vit import ViT, ViTConfig

    torch.manual_seed(0)
    gpt = GPT(GPTConfig.tiny()).eval()
    quantised = quantize_int8(gpt)
    assert isinstance(quantised.lm_head, nn.Linear)  # tied to the token embedding: stays float
    assert quantised.lm_head.weight is quantised.token_embedding.weight
    linears = sum(isinstance(m, nn.Linear) for m in gpt.modules())
    assert sum(isinstance(m, Int8Linear) for m in quantised.modules()) == linears - 1 == 6 * 2
    ids = torch.randint(0, 107, (2, 9))  # (B, T)
    with torch.no_grad():
        torch.testing.assert_close(quantised(ids).logits, gpt(ids).logits, rtol=0, atol=0.05)
    vit = ViT(ViTConfig.tiny()).eval()
    images = torch.rand(2, 1, 8, 8)  # (B, C, H, W)
    quantised_vit = quantize_int8(vit)
    assert not any(isinstance(m, nn.Linear) for m in quantised_vit.modules())
    with torch.no_grad():
        torch.testing.assert_close(quantised_vit(images).logits, vit(images).logits,
                                   rtol=0, atol=0.05)  # fmt: skip


def test_linear_bytes_counts_weights_biases_and_scales():
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3, bias=False))
    assert linear_bytes(model) == 4 * (10 * 6 + 6) + 4 * (6 * 3)
    # int8 weight + float32 scale per row + float32 bias
    assert linear_bytes(quantize_int8(model)) == (10 * 6 + 4 * 6 + 4 * 6) + (6 * 3 + 4 * 3)
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_int8("model")


@pytest.fixture(scope="module")
def minilm():
    from tfm_edu.data.corpus import sentence_split
    from tfm_edu.pretrained import load_minilm

    model, tokenizer = load_minilm()
    return model, tokenizer, sentence_split()[1][:32]


@pytest.mark.parametrize("int8_matmul", [False, True])
def test_real_minilm_in_int8_keeps_a_quarter_of_the_bytes_and_its_embeddings(minilm, int8_matmul):
    model, tokenizer, sentences = minilm
    result = int8_fidelity(model, tokenizer, sentences, int8_matmul=int8_matmul)
    assert result["sentences"] == 32
    assert result["bytes_float"] == 4 * (6 * (4 * 384 * 385 + 384 * 1537 + 1536 * 385))
    assert result["fraction"] <= 0.30
    assert result["min_cosine"] >= 0.99 and result["mean_cosine"] >= 0.99
    assert result["mean_cosine"] < 1  # int8 changed something
