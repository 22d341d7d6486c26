"""Grouped-query attention (chapter 11) and the KV cache's size: formula against real tensors."""

from __future__ import annotations

import pytest
import torch

from tfm_edu.attention import MultiHeadAttention, causal_mask
from tfm_edu.efficiency.kv_cache import (
    KV_CACHE_MODELS,
    kv_cache_bytes,
    kv_cache_table,
    measured_cache_bytes,
)
from tfm_edu.models.bert import BERT, BERTConfig
from tfm_edu.models.gpt import GPT, GPTConfig


def test_grouped_attention_with_as_many_kv_heads_as_heads_is_multi_head_attention():
    torch.manual_seed(0)
    plain = MultiHeadAttention(d_model=24, num_heads=4).eval()
    grouped = MultiHeadAttention(d_model=24, num_heads=4, num_kv_heads=4).eval()
    grouped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 24)
    mask = causal_mask(5)
    torch.testing.assert_close(grouped(x, x, x, mask), plain(x, x, x, mask), rtol=0, atol=0)


@pytest.mark.parametrize("num_kv_heads", [1, 2])
def test_each_group_of_query_heads_reads_one_shared_key_value_head(num_kv_heads):
    # Independent reference: a plain MHA whose k/v projections repeat the shared heads' rows.
    torch.manual_seed(1)
    H, Dh, D = 4, 6, 24
    grouped = MultiHeadAttention(d_model=D, num_heads=H, num_kv_heads=num_kv_heads).eval()
    plain = MultiHeadAttention(d_model=D, num_heads=H).eval()
    group = H // num_kv_heads
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(plain, name).load_state_dict(getattr(grouped, name).state_dict())
        for name in ("k_proj", "v_proj"):
            shared, full = getattr(grouped, name), getattr(plain, name)
            rows = [h // group for h in range(H)]  # query head h reads kv head h // group
            full.weight.copy_(torch.cat([shared.weight[g * Dh : (g + 1) * Dh] for g in rows]))
            full.bias.copy_(torch.cat([shared.bias[g * Dh : (g + 1) * Dh] for g in rows]))
    x, memory = torch.randn(2, 3, D), torch.randn(2, 7, D)
    out, weights = grouped(x, memory, memory)
    expected, expected_weights = plain(x, memory, memory)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)
    assert weights.shape == (2, H, 3, 7)
    assert grouped.k_proj.weight.shape == (num_kv_heads * Dh, D)


def test_grouped_attention_caches_only_the_kv_heads_and_matches_a_full_pass():
    torch.manual_seed(2)
    config = GPTConfig(
        vocab_size=11, block_size=16, num_layers=2, num_heads=4, d_model=16, d_ff=32,
        num_kv_heads=2,
    )  # fmt: skip
    model = GPT(config).eval()
    ids = torch.randint(11, (2, 9))
    full = model(ids).logits  # (B, T, V)
    cache = model.empty_cache()
    model(ids[:, :5], cache=cache)
    steps = [model(ids[:, t : t + 1], cache=cache).logits for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 5:], atol=1e-5, rtol=1e-5)
    assert cache[0].keys.shape == (2, 2, 9, 4)  # (B, H_kv, S, Dh): 2 kv heads, not 4


def test_bad_kv_head_counts_are_refused_with_the_numbers():
    with pytest.raises(ValueError, match="num_kv_heads=3 must be a positive int dividing"):
        MultiHeadAttention(d_model=24, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads=0"):
        GPTConfig(num_kv_heads=0)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_the_formula_counts_the_bytes_a_real_cache_holds(num_kv_heads):
    model = GPT(GPTConfig(num_kv_heads=num_kv_heads, num_layers=2))
    measured = measured_cache_bytes(model, 100, batch=3)
    assert measured == kv_cache_bytes(
        num_layers=2, num_kv_heads=num_kv_heads, head_dim=32, tokens=100, batch=3
    )
    assert measured == 2 * 2 * num_kv_heads * 32 * 100 * 3 * 4  # written out: 2 (k, v) L H Dh T B 4


def test_kv_cache_table_rows_and_the_parameter_counts_of_our_models():
    rows = {row["model"]: row for row in kv_cache_table()}
    assert len(rows) == len(KV_CACHE_MODELS) == 5
    llama, mistral = (
        rows["7B, multi-head (Llama 2 7B), float16"],
        rows["7B, grouped 8 kv heads (Mistral 7B), float16"],
    )
    assert llama["bytes/token"] == 2 * 32 * 32 * 128 * 2 == 524_288  # half a MiB per token
    assert llama["bytes/sequence"] == 2**31  # 2 GiB for one 4,096-token context
    assert llama["bytes/token"] == 4 * mistral["bytes/token"]  # 32 / 8 kv heads
    with torch.device("meta"):
        counts = {
            "our char GPT (ch. 9), float32": GPT(GPTConfig.char_gpt()),
            "MiniLM-sized (6 x 12 heads, D 384), float32": BERT(BERTConfig.minilm_l6()),
            "GPT-2 small, float32": GPT(GPTConfig.gpt2_small()),
        }
    for name, model in counts.items():
        assert rows[name]["weights bytes"] == 4 * sum(p.numel() for p in model.parameters())


def test_cache_size_arguments_are_checked():
    with pytest.raises(ValueError, match="tokens must be a positive int"):
        kv_cache_bytes(num_layers=1, num_kv_heads=1, head_dim=1, tokens=0)
    with pytest.raises(ValueError, match="tokens must be an int in 1..16"):
        measured_cache_bytes(GPT(GPTConfig(block_size=16, num_layers=1)), 17)
