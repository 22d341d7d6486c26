"""Chapter 9's GPT: one block is PyTorch's own pre-LN encoder layer with a causal mask, the whole
model equals a stack built from PyTorch's modules, it never reads the future, its KV cache changes
nothing but the work, and its loss at initialisation is ln V."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tfm_edu.attention import KVCache, LayerCache, causal_mask
from tfm_edu.models.gpt import GPT, GPTConfig, GPTOutput, language_model_loss
from tfm_edu.reference import copy_encoder_layer_to_torch, to_torch_mask


def _model(config: GPTConfig | None = None, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config or GPTConfig.tiny(vocab_size=23)).eval()
    with torch.no_grad():  # LayerNorms that are not the identity, so that a slip shows
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(1 + 0.3 * torch.randn_like(module.weight))
                module.bias.copy_(0.2 * torch.randn_like(module.bias))
    return model


def _ids(B: int, T: int, V: int = 23, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ config and parameters


def test_config_is_keyword_only_frozen_and_checked():
    with pytest.raises(TypeError):
        GPTConfig(107)  # sizes by keyword only
    config = GPTConfig.char_gpt()
    with pytest.raises(AttributeError):
        config.d_model = 64  # frozen
    with pytest.raises(ValueError, match="must divide"):
        GPTConfig(d_model=100, num_heads=3)
    with pytest.raises(ValueError, match="block_size"):
        GPTConfig(block_size=0)
    assert config.head_dim == 32 and config.block_size >= 256


@pytest.mark.parametrize(
    ("config", "count"),
    [
        # GPT-2 small's published size: 124,439,808 with the output layer tied to the embedding.
        (GPTConfig.gpt2_small(), 124_439_808),
        # V*D + block*D + L * (4 D^2 + 4 D + 2 * 4 D^2 + 5 D + 4 D) + 2 D, tied head
        (GPTConfig.char_gpt(), 107 * 128 + 256 * 128 + 4 * (12 * 128 * 128 + 13 * 128) + 256),
        (GPTConfig.nanogpt_cpu(), 107 * 128 + 64 * 128 + 4 * (12 * 128 * 128 + 13 * 128) + 256),
    ],
    ids=["gpt2_small", "char_gpt", "nanogpt_cpu"],
)
def test_parameter_counts(config, count):
    with torch.device("meta"):  # no memory for GPT-2's 124M weights
        model = GPT(config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_output_layer_is_the_token_embedding():
    model = _model()
    assert model.lm_head.weight is model.token_embedding.weight


def test_loss_at_initialisation_is_ln_vocabulary():
    torch.manual_seed(0)
    model = GPT(GPTConfig.char_gpt()).eval()  # GPT-2's init, untouched
    ids = _ids(4, 64, V=107)
    with torch.no_grad():
        out = model(ids[:, :-1], ids[:, 1:])
    assert abs(out.loss.item() - math.log(107)) < 0.05
    # unit-variance final states times N(0, 0.02) embeddings: logits of std 0.02 sqrt(D) ~ 0.23
    assert out.logits.std().item() < 0.3


# ------------------------------------------------------------------ equality with PyTorch


def test_one_block_equals_torch_encoder_layer_with_a_causal_mask():
    model = _model()
    ours = model.blocks.layers[0]
    c = model.config
    theirs = nn.TransformerEncoderLayer(
        c.d_model, c.num_heads, dim_feedforward=c.d_ff, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=True,
    ).eval()  # fmt: skip
    copy_encoder_layer_to_torch(ours, theirs)
    x = torch.randn(3, 9, c.d_model, generator=torch.Generator().manual_seed(2))
    mask = causal_mask(9)
    with torch.no_grad():
        mine, _ = ours(x, mask)
        reference = theirs(x, src_mask=to_torch_mask(mask))
    torch.testing.assert_close(mine, reference, atol=1e-6, rtol=1e-5)


def test_whole_model_equals_a_stack_of_torch_modules():
    """Embeddings + positions, nn.TransformerEncoder(norm_first) with a causal mask, a final
    LayerNorm and the tied output matrix: the same logits."""
    model = _model()
    c = model.config
    layer = nn.TransformerEncoderLayer(
        c.d_model, c.num_heads, dim_feedforward=c.d_ff, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=True,
    )  # fmt: skip
    stack = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False).eval()
    for ours, theirs in zip(model.blocks.layers, stack.layers, strict=True):
        copy_encoder_layer_to_torch(ours, theirs)
    final = nn.LayerNorm(c.d_model)
    final.load_state_dict(model.blocks.final_norm.state_dict())
    ids = _ids(2, 12)
    with torch.no_grad():
        x = model.token_embedding.weight[ids] + model.position_embedding.embedding.weight[:12]
        hidden = final(stack(x, mask=to_torch_mask(causal_mask(12)), is_causal=True))
        reference = hidden @ model.token_embedding.weight.T  # (B, T, V)
        torch.testing.assert_close(model(ids).logits, reference, atol=1e-5, rtol=1e-5)


def test_loss_is_cross_entropy_of_the_next_token():
    model = _model()
    ids = _ids(2, 10)
    out = model(ids[:, :-1], ids[:, 1:])
    log_probs = torch.log_softmax(out.logits, dim=-1)  # (B, T, V)
    manual = -log_probs.gather(-1, ids[:, 1:, None]).mean()
    torch.testing.assert_close(out.loss, manual)
    targets = ids[:, 1:].clone()
    targets[:, 4:] = -100  # ignored
    partial = -log_probs[:, :4].gather(-1, ids[:, 1:5, None]).mean()
    torch.testing.assert_close(model(ids[:, :-1], targets).loss, partial)
    with pytest.raises(ValueError, match="targets must be"):
        language_model_loss(out.logits, ids)


# ------------------------------------------------------------------ causality and attention


def test_a_later_token_never_changes_an_earlier_logit():
    model = _model()
    ids = _ids(2, 16)
    changed = ids.clone()
    changed[:, 9:] = (changed[:, 9:] + 5) % 23
    with torch.no_grad():
        before, after = model(ids).logits, model(changed).logits
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])  # the test can see a change


def test_attention_weights_are_causal_and_normalised():
    model = _model()
    out = model(_ids(2, 7), return_attention=True)
    assert isinstance(out, GPTOutput) and len(out.attentions) == model.config.num_layers
    for weights in out.attentions:
        assert weights.shape == (2, model.config.num_heads, 7, 7)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, model.config.num_heads, 7))
        assert torch.all(weights.triu(diagonal=1) == 0)
    assert model(_ids(2, 7)).attentions == ()


def test_causal_mask_aligns_new_queries_with_the_last_keys():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert causal_mask(1, 6).tolist() == [[True] * 6]  # the newest token reads every key
    expected = [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert causal_mask(2, 5).int().tolist() == expected
    # The classic bug, a triangle aligned to the top left, is a different mask:
    assert not torch.equal(causal_mask(2, 5), torch.ones(2, 5, dtype=torch.bool).tril())
    with pytest.raises(ValueError, match="num_queries <= num_keys"):
        causal_mask(5, 3)


# ------------------------------------------------------------------ the KV cache


def test_feeding_tokens_through_the_cache_gives_the_full_forward_logits():
    model = _model()
    ids = _ids(3, 20)
    with torch.no_grad():
        full = model(ids, return_attention=True)
        cache = model.empty_cache()
        pieces = [model(ids[:, :7], cache=cache)]  # a prompt, then one token at a time
        pieces += [
            model(ids[:, t : t + 1], cache=cache, return_attention=True) for t in range(7, 20)
        ]
    assert cache.length == 20 and pieces[-1].cache is cache
    stepped = torch.cat([p.logits for p in pieces], dim=1)
    torch.testing.assert_close(stepped, full.logits, atol=1e-5, rtol=1e-5)
    last = pieces[-1].attentions[0]  # (B, H, 1, 20): the newest query over every key
    assert last.shape == (3, model.config.num_heads, 1, 20)
    torch.testing.assert_close(last[:, :, 0], full.attentions[0][:, :, -1], atol=1e-6, rtol=1e-5)


def test_cache_shapes_and_bytes():
    model = _model()
    cache = model.empty_cache()
    assert isinstance(cache, KVCache) and len(cache) == 2 and cache.length == 0
    assert cache.nbytes == 0
    model(_ids(2, 5), cache=cache)
    c = model.config
    for layer in cache.layers:
        assert layer.keys.shape == layer.values.shape == (2, c.num_heads, 5, c.head_dim)
    # keys + values, every layer, 4 bytes each: 2 * L * B * T * D * 4
    assert cache.nbytes == 2 * c.num_layers * 2 * 5 * c.d_model * 4


def test_layer_cache_refuses_keys_of_another_shape():
    layer = LayerCache()
    layer.append(torch.zeros(2, 2, 3, 4), torch.zeros(2, 2, 3, 4))
    with pytest.raises(ValueError, match="do not fit"):
        layer.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))


def test_a_cache_of_the_wrong_depth_is_refused():
    with pytest.raises(ValueError, match="cache has 3 layers"):
        _model()(_ids(1, 3), cache=KVCache(3))


# ------------------------------------------------------------------ clear errors


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.zeros(5, dtype=torch.long), r"ids must be \(B, T\)"),
        (torch.zeros(2, 0, dtype=torch.long), r"ids must be \(B, T\)"),
        (torch.zeros(2, 3), "int64"),
        (torch.full((1, 3), 23), r"0\.\.22"),
        (torch.zeros(1, 33, dtype=torch.long), "exceed the block size 32"),
    ],
)
def test_bad_ids_get_a_clear_error(ids, message):
    with pytest.raises(ValueError, match=message):
        _model()(ids)


def test_a_cache_cannot_grow_past_the_block_size():
    model = _model()
    cache = model.empty_cache()
    model(_ids(1, 30), cache=cache)
    with pytest.raises(ValueError, match="after 30 earlier positions exceed the block size 32"):
        model(_ids(1, 3), cache=cache)


def test_rotary_attention_with_a_cache_equals_the_whole_causal_sequence():
    """Chapter 3's RoPE attention takes the same cache: new tokens rotated from cache.length."""
    from tfm_edu.models.shift_encoder import RotarySelfAttention

    torch.manual_seed(0)
    attention = RotarySelfAttention(d_model=8, num_heads=2).eval()
    x = torch.randn(2, 9, 8)
    with torch.no_grad():
        whole, _ = attention(x, x, x, causal_mask(9))
        cache, pieces = LayerCache(), []
        for start, stop in [(0, 4), (4, 5), (5, 7), (7, 9)]:
            chunk = x[:, start:stop]
            mask = causal_mask(stop - start, stop)
            pieces.append(attention(chunk, chunk, chunk, mask, False, cache)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-6, rtol=1e-5)
