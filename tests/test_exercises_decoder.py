"""Chapter 5's exercise checks pass correct attempts and name the typical slips in their hints."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from exercise_helpers import assert_hint, stub
from torch import nn

from tfm_edu.attention import MultiHeadAttention
from tfm_edu.decode import beam_step
from tfm_edu.exercises.decoder import check_beam_step, check_decoder_layer, check_greedy_decode
from tfm_edu.layers import DecoderLayer, FeedForward

# ------------------------------------------------------------------ the decoder layer


class _Stub(nn.Module):
    """The notebook's stub: the layers are given, forward is the learner's."""

    def __init__(self, *, d_model, num_heads, d_ff):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads)
        self.cross_attn = MultiHeadAttention(d_model=d_model, num_heads=num_heads)
        self.feed_forward = FeedForward(d_model=d_model, d_ff=d_ff)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        raise NotImplementedError


def _attend(attention, query, source, mask):
    """The attention written out by hand (not the module's forward): (B, T, D)."""
    B, T, D = query.shape
    H = attention.num_heads

    def heads(x, proj):  # (B, L, D) -> (B, H, L, Dh)
        return proj(x).view(B, x.shape[1], H, D // H).transpose(1, 2)

    q, k, v = (
        heads(query, attention.q_proj),
        heads(source, attention.k_proj),
        heads(source, attention.v_proj),
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)  # (B, T, D)
    return attention.out_proj(out)


class _Correct(_Stub):
    """An independent pre-LN layer: attention by hand, returns a tuple like the package's."""

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        y = self.norm1(x)
        x = x + _attend(self.self_attn, y, y, self_mask)
        x = x + _attend(self.cross_attn, self.norm2(x), memory, memory_mask)
        x = x + self.feed_forward.linear2(torch.relu(self.feed_forward.linear1(self.norm3(x))))
        return x, None, None


def _layer(body):
    """A learner's class whose forward is `body(self, x, memory, self_mask, memory_mask)`."""
    return type("MyDecoderLayer", (_Stub,), {"forward": body})


def _pre_ln(self, x, memory, self_mask, memory_mask, *, causal=True, kv_from_memory=True,
            pad=True, ff_residual=True):  # fmt: skip
    h = self.norm1(x)
    x = x + self.self_attn(h, h, h, self_mask if causal else None)[0]
    h = self.norm2(x)
    source = memory if kv_from_memory else h
    x = x + self.cross_attn(h, source, source, memory_mask if pad else None)[0]
    out = self.feed_forward(self.norm3(x))
    return x + out if ff_residual else out


def _post_ln(self, x, memory, self_mask=None, memory_mask=None):
    x = self.norm1(x + self.self_attn(x, x, x, self_mask)[0])
    x = self.norm2(x + self.cross_attn(x, memory, memory, memory_mask)[0])
    return self.norm3(x + self.feed_forward(x))


def test_decoder_layer_passes_correct_attempts():
    result = check_decoder_layer(_Correct)
    assert result.passed, result.message
    assert "nn.TransformerDecoderLayer" in result.message

    class PackageLayer(DecoderLayer):  # the package's own, pre-LN
        def __init__(self, **sizes):
            super().__init__(norm_first=True, **sizes)

    assert check_decoder_layer(PackageLayer).passed


def test_decoder_layer_stub_is_not_done_and_rng_is_restored():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    result = check_decoder_layer(_Stub)
    assert result.status == "not done", result.message
    assert "_Stub.forward" in result.message
    assert torch.equal(before, torch.random.get_rng_state())


def test_decoder_layer_names_the_typical_slips():
    slips = {
        "self_mask": dict(causal=False),
        "keys and values from `memory`": dict(kv_from_memory=False),
        "[PAD] positions": dict(pad=False),
        "residual connection too: x = x + self.feed_forward": dict(ff_residual=False),
    }
    for fragment, slip in slips.items():

        def body(self, x, memory, self_mask=None, memory_mask=None, slip=slip):
            return _pre_ln(self, x, memory, self_mask, memory_mask, **slip)

        assert_hint(check_decoder_layer(_layer(body)), fragment)
    assert_hint(check_decoder_layer(_layer(_post_ln)), "that is post-LN")


def test_decoder_layer_names_residual_and_norm_slips():
    def cross_without_mask(self, x, memory, self_mask=None, memory_mask=None):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, self_mask)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, h, h)[0]  # no mask: runs, but reads the wrong sequence
        return x + self.feed_forward(self.norm3(x))

    def norm_after(self, x, memory, self_mask=None, memory_mask=None):
        x = x + self.norm1(self.self_attn(x, x, x, self_mask)[0])
        x = x + self.norm2(self.cross_attn(x, memory, memory, memory_mask)[0])
        return x + self.norm3(self.feed_forward(x))

    def normalised_residual(self, x, memory, self_mask=None, memory_mask=None):
        h = self.norm1(x)
        x = h + self.self_attn(h, h, h, self_mask)[0]
        h = self.norm2(x)
        x = h + self.cross_attn(h, memory, memory, memory_mask)[0]
        h = self.norm3(x)
        return h + self.feed_forward(h)

    def memory_normalised(self, x, memory, self_mask=None, memory_mask=None):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, self_mask)[0]
        h, m = self.norm2(x), self.norm2(memory)
        x = x + self.cross_attn(h, m, m, memory_mask)[0]
        return x + self.feed_forward(self.norm3(x))

    def masks_swapped(self, x, memory, self_mask=None, memory_mask=None):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, memory_mask)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, memory, memory, self_mask)[0]
        return x + self.feed_forward(self.norm3(x))

    assert_hint(check_decoder_layer(_layer(cross_without_mask)), "keys and values from `memory`")
    assert_hint(check_decoder_layer(_layer(norm_after)), "not its output")
    assert_hint(check_decoder_layer(_layer(normalised_residual)), "un-normalised x")
    assert_hint(check_decoder_layer(_layer(memory_normalised)), "leave `memory` as it is")
    assert_hint(check_decoder_layer(_layer(masks_swapped)), "the masks are swapped")


def test_decoder_layer_reports_renamed_attributes():
    class Renamed(nn.Module):
        def __init__(self, *, d_model, num_heads, d_ff):
            super().__init__()
            self.attention = MultiHeadAttention(d_model=d_model, num_heads=num_heads)

        def forward(self, x, memory, self_mask=None, memory_mask=None):
            return x

    result = check_decoder_layer(Renamed)
    assert result.status == "failed"
    assert "keep the stub's attribute names" in result.message and "attention" in result.message


# ------------------------------------------------------------------ greedy decoding


def _greedy(next_token_logits, bos_id, eos_id, max_new_tokens):
    tokens = [bos_id]
    while len(tokens) <= max_new_tokens:
        tokens.append(int(next_token_logits(torch.tensor(tokens)).argmax()))
        if tokens[-1] == eos_id:
            break
    return torch.tensor(tokens[1:])


def test_greedy_decode():
    assert check_greedy_decode(_greedy).passed
    assert check_greedy_decode(stub).status == "not done"

    def no_stop(model, bos_id, eos_id, max_new_tokens):
        tokens = [bos_id]
        for _ in range(max_new_tokens):
            tokens.append(int(model(torch.tensor(tokens)).argmax()))
        return torch.tensor(tokens[1:])

    assert_hint(check_greedy_decode(no_stop), "stop as soon as")
    assert_hint(
        check_greedy_decode(lambda m, b, e, n: torch.cat([torch.tensor([b]), _greedy(m, b, e, n)])),
        "without the leading [BOS]",
    )


# ------------------------------------------------------------------ one beam-search step


def test_beam_step():
    def flat_topk(scores, log_probs, beam_size):
        V = log_probs.shape[1]
        values, index = (scores.unsqueeze(1) + log_probs).flatten().sort(descending=True)
        return values[:beam_size], index[:beam_size] // V, index[:beam_size] % V

    def no_history(scores, log_probs, beam_size):
        return flat_topk(torch.zeros_like(scores), log_probs, beam_size)

    def one_child_each(scores, log_probs, beam_size):
        best, token = (scores.unsqueeze(1) + log_probs).max(dim=1)
        order = best.argsort(descending=True)
        return best[order], order, token[order]

    assert check_beam_step(flat_topk).passed
    assert check_beam_step(beam_step).passed  # the package's own, used by beam_search
    assert check_beam_step(stub).status == "not done"
    assert_hint(check_beam_step(no_history), "add each beam's score")
    assert_hint(check_beam_step(one_child_each), "compare all k x V extensions")
