"""Chapter 9's exercise checks pass correct attempts and name the typical slips in their hints."""

from __future__ import annotations

import math

import torch
from exercise_helpers import assert_hint, stub
from torch import nn

from tfm_edu.exercises.gpt import check_cached_attention, check_causal_mask, check_top_p_filter

INF = float("-inf")

# ------------------------------------------------------------------ top-p


def top_p_by_hand(logits, p):
    """An independent nucleus filter: a Python loop per row."""
    out = torch.full_like(logits, INF)
    for row in range(logits.shape[0]):
        probs = torch.softmax(logits[row].double(), dim=-1)
        order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
        mass = 0.0
        for i in order:
            out[row, i] = logits[row, i]
            mass += float(probs[i])
            if mass >= p:
                break
    return out


def test_top_p_check_passes_a_correct_filter_and_waits_for_a_stub():
    assert check_top_p_filter(top_p_by_hand).passed
    assert check_top_p_filter(stub).status == "not done"


def test_top_p_check_names_the_typical_slips():
    def strict(logits, p):  # drops the token that makes the mass reach p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        keep_sorted = torch.softmax(sorted_logits, -1).cumsum(-1) < p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        return logits.masked_fill(~keep, INF)

    assert_hint(check_top_p_filter(strict), "mass of the tokens *before* it")

    def unsorted(logits, p):
        probs = torch.softmax(logits, -1)
        return logits.masked_fill(~(probs.cumsum(-1) - probs < p), INF)

    assert_hint(check_top_p_filter(unsorted), "sort the probabilities")

    def probabilities(logits, p):
        return torch.softmax(top_p_by_hand(logits, p), dim=-1)

    assert_hint(check_top_p_filter(probabilities), "return logits")


# ------------------------------------------------------------------ the causal mask


def test_causal_mask_check():
    def correct(T, S):
        return torch.tensor([[j <= S - T + i for j in range(S)] for i in range(T)])

    assert check_causal_mask(correct).passed
    assert check_causal_mask(stub).status == "not done"
    assert_hint(
        check_causal_mask(lambda T, S: torch.ones(T, S, dtype=torch.bool).tril()),
        "not start at the top left",
    )
    assert_hint(check_causal_mask(lambda T, S: ~correct(T, S)), "inverted")
    result = check_causal_mask(lambda T, S: correct(T, S).float())
    assert not result.passed and "bool" in result.message


# ------------------------------------------------------------------ cached self-attention


class _Stub(nn.Module):
    def __init__(self, *, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x, cache=None):
        raise NotImplementedError

    def heads(self, x, proj):  # (B, T, D) -> (B, H, T, Dh)
        B, T, D = x.shape
        return proj(x).view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2)


class _Correct(_Stub):
    """Written independently of the package: loops over the new queries one by one."""

    def forward(self, x, cache=None):
        q, k, v = (self.heads(x, p) for p in (self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        T, S = q.shape[2], k.shape[2]
        rows = []
        for i in range(T):  # query i sits at position S - T + i and reads keys 0 .. S - T + i
            keys = k[:, :, : S - T + i + 1]
            scores = q[:, :, i : i + 1] @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
            rows.append(torch.softmax(scores, -1) @ v[:, :, : S - T + i + 1])
        out = torch.cat(rows, 2).transpose(1, 2).flatten(-2)  # (B, T, D)
        return self.out_proj(out), (k, v)


class _TopLeft(_Stub):
    def forward(self, x, cache=None):
        q, k, v = (self.heads(x, p) for p in (self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, INF)
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).flatten(-2)
        return self.out_proj(out), (k, v)


class _Forgetful(_Stub):
    def forward(self, x, cache=None):
        q, k, v = (self.heads(x, p) for p in (self.q_proj, self.k_proj, self.v_proj))
        T = q.shape[2]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, INF)
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).flatten(-2)
        return self.out_proj(out), (k, v)


def test_cached_attention_check_passes_a_correct_module_and_waits_for_a_stub():
    result = check_cached_attention(_Correct)
    assert result.passed, result.message
    assert "nn.MultiheadAttention" in result.message
    assert check_cached_attention(_Stub).status == "not done"


def test_cached_attention_check_names_the_typical_slips():
    assert_hint(check_cached_attention(_TopLeft), "not ones(T, S).tril()")
    assert_hint(check_cached_attention(_Forgetful), "attend to the cached keys and values too")


def test_cached_attention_check_explains_a_wrong_return():
    class NoCache(_Correct):
        def forward(self, x, cache=None):
            return super().forward(x, cache)[0]

    result = check_cached_attention(NoCache)
    assert not result.passed and "(out, cache)" in result.message
