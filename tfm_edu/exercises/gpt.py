"""Checks for chapter 9: nucleus (top-p) filtering, the causal mask of a cached step, and a
self-attention module with a KV cache.

The references are the package's own: `tfm_edu.decode.filter_top_p`,
`tfm_edu.attention.causal_mask`, and `tfm_edu.attention.MultiHeadAttention` with a `LayerCache`;
the cached attention is also compared with PyTorch's `nn.MultiheadAttention` run on the whole
sequence at once with a causal mask (the rows of the new positions), which knows nothing of
caches.
"""

from __future__ import annotations

from functools import lru_cache, partial

import torch
from torch import nn

from tfm_edu.attention import LayerCache, MultiHeadAttention, causal_mask
from tfm_edu.decode import filter_top_p
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, check_function, graded
from tfm_edu.reference import copy_attention_to_torch, to_torch_mask

__all__ = ["check_top_p_filter", "check_causal_mask", "check_cached_attention"]

INF = float("-inf")


# ------------------------------------------------------------------ top-p filtering


def _same_kept(got, expected) -> bool:
    """Logits compared where they are kept; -inf must match -inf exactly."""
    if got.shape != expected.shape or not torch.equal(torch.isinf(got), torch.isinf(expected)):
        return False
    kept = torch.isfinite(expected)
    return torch.allclose(got[kept].double(), expected[kept].double(), atol=1e-6, rtol=1e-5)


@graded
def check_top_p_filter(fn) -> CheckResult:
    """Check `fn(logits (B, V), p) -> (B, V)`: the nucleus kept, every other logit -inf."""
    g = torch.Generator().manual_seed(9)
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    cases = [
        Case((probs.log(), 0.7), label="0.5 + 0.3 reach 0.7"),
        Case((probs.log(), 0.8), label="0.5 + 0.3 reach 0.8 exactly"),
        Case((torch.randn(3, 12, generator=g) * 2, 0.9), label="three rows"),
        Case((torch.randn(2, 8, generator=g) * 3, 0.01), label="p near 0: the top token only"),
        Case((torch.randn(2, 6, generator=g), 1.0), label="p = 1: everything"),
        Case((torch.tensor([[1.0, INF, 2.0, INF, 0.5]]), 0.95), label="some logits already -inf"),
    ]

    def sorted_order(logits, p):  # forgets to put the kept logits back in token order
        return torch.sort(filter_top_p(logits, p), dim=-1, descending=True).values

    def strict(logits, p):  # keeps tokens while the mass *including* them is < p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        keep_sorted = torch.softmax(sorted_logits.double(), -1).cumsum(-1) < p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        return logits.masked_fill(~keep, INF)

    def strict_keeping_top(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        keep_sorted = torch.softmax(sorted_logits.double(), -1).cumsum(-1) < p
        keep_sorted[..., 0] = True
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        return logits.masked_fill(~keep, INF)

    def unsorted(logits, p):  # cumulative sum in token order, not from the most likely down
        keep = torch.softmax(logits.double(), -1).cumsum(-1) - torch.softmax(logits.double(), -1)
        return logits.masked_fill(~(keep < p), INF)

    def probabilities(logits, p):  # returns the filtered probabilities instead of logits
        kept = filter_top_p(logits, p)
        return torch.softmax(kept, dim=-1)

    mistakes = [
        Mistake(
            "stop at the token whose probability makes the total reach p, and keep it: keep a "
            "token while the mass of the tokens *before* it is < p (cumsum - probs < p), so the "
            "most likely token is always kept.",
            strict,
        ),
        Mistake(
            "keep the token that makes the total reach p: compare the mass *before* each token "
            "with p (cumsum - probs < p), not the mass including it.",
            strict_keeping_top,
        ),
        Mistake(
            "sort the probabilities from the most likely down before adding them up: the "
            "nucleus is made of the best tokens, not the first ids.",
            unsorted,
        ),
        Mistake(
            "return the logits in token order: scatter the kept mask back with the sort's "
            "indices (`torch.zeros_like(keep).scatter(-1, order, keep)`), then mask the "
            "original logits.",
            sorted_order,
        ),
        Mistake(
            "return logits (with -inf outside the nucleus), not probabilities: the softmax "
            "comes after the filter, in `next_token_probs`.",
            probabilities,
        ),
    ]
    name = getattr(fn, "__name__", "top_p_filter")
    return check_function(name, fn, filter_top_p, cases, mistakes, compare=_same_kept)


# ------------------------------------------------------------------ the causal mask of a step


@graded
def check_causal_mask(fn) -> CheckResult:
    """Check `fn(T, S) -> (T, S) bool`: the new queries are the last T of S positions."""
    cases = [
        Case((4, 4), label="a whole sequence"),
        Case((1, 6), label="one new token after 5 cached"),
        Case((3, 7), label="3 new tokens after 4 cached"),
        Case((2, 2), label="two tokens"),
    ]

    def top_left(T, S):
        return torch.ones(T, S, dtype=torch.bool).tril()

    def inverted(T, S):
        return ~causal_mask(T, S)

    def one_early(T, S):
        return torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T - 1)

    mistakes = [
        Mistake(
            "the triangle must end at the bottom right, not start at the top left: query i "
            "sits at position S - T + i, so it may read keys 0 .. S - T + i "
            "(`torch.ones(T, S).tril(diagonal=S - T)`). Aligned to the top left, the newest "
            "token would read only the first key.",
            top_left,
        ),
        Mistake(
            "True means *may attend* in this course (as in F.scaled_dot_product_attention): "
            "your mask is inverted.",
            inverted,
        ),
        Mistake(
            "a query may read its own position too: the diagonal is S - T, not S - T - 1.",
            one_early,
        ),
    ]
    name = getattr(fn, "__name__", "causal_mask")
    return check_function(name, fn, causal_mask, cases, mistakes)


# ------------------------------------------------------------------ cached self-attention

# (B, D, H, [new tokens per call]): a prompt first, then steps; the later chunks of more than
# one token catch a mask aligned to the top left.
_CHUNKINGS = [
    (2, 8, 2, [4, 1, 1, 1]),
    (1, 12, 3, [3, 2, 1, 3]),
    (3, 8, 4, [1, 1, 2, 1]),
]


@lru_cache(maxsize=8)
def _reference_attention(d_model: int, num_heads: int) -> MultiHeadAttention:
    """A seeded `MultiHeadAttention` in eval mode (cached; never modified)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(100 + d_model + num_heads)
        return MultiHeadAttention(d_model=d_model, num_heads=num_heads).eval()


def _cases() -> list[Case]:
    g = torch.Generator().manual_seed(21)
    cases = []
    for B, D, H, chunks in _CHUNKINGS:
        x = torch.randn(B, sum(chunks), D, generator=g)  # (B, T_total, D)
        label = f"chunks of {'+'.join(map(str, chunks))} tokens"
        cases.append(Case((x, tuple(chunks)), {"num_heads": H}, label))
    return cases


def _run_cached(cls, x, chunks, num_heads):
    """Feed x chunk by chunk through `cls`, carrying its cache; the outputs side by side."""
    D = x.shape[-1]
    module = cls(d_model=D, num_heads=num_heads)
    if not isinstance(module, nn.Module):
        raise TypeError(f"the class must build an nn.Module, got {type(module).__name__}")
    state = _reference_attention(D, num_heads).state_dict()
    if set(module.state_dict()) != set(state):
        raise ValueError(
            "keep the stub's attribute names (q_proj, k_proj, v_proj, out_proj) to receive the "
            f"reference weights; got {sorted(module.state_dict())}"
        )
    module.load_state_dict(state)
    module.eval()
    cache, outputs, start = None, [], 0
    with torch.no_grad():
        for size in chunks:
            result = module(x[:, start : start + size], cache)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise TypeError("forward must return (out, cache)")
            out, cache = result
            if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], size, D):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"out must be (B, T, D) = {(x.shape[0], size, D)}, got {got}")
            outputs.append(out)
            start += size
    return torch.cat(outputs, dim=1)  # (B, T_total, D)


def _run_package(x, chunks, num_heads):
    """The package: `MultiHeadAttention` with a `LayerCache` and `causal_mask(T, S)`."""
    attention = _reference_attention(x.shape[-1], num_heads)
    cache, outputs, start = LayerCache(), [], 0
    with torch.no_grad():
        for size in chunks:
            new = x[:, start : start + size]  # (B, T, D)
            mask = causal_mask(size, cache.length + size)  # (T, S)
            outputs.append(attention(new, new, new, mask, False, cache)[0])  # (B, T, D)
            start += size
    return torch.cat(outputs, dim=1)  # (B, T_total, D)


def _run_torch_whole(x, chunks, num_heads):
    """`nn.MultiheadAttention` on the whole sequence at once, causal: no cache involved."""
    D, T = x.shape[-1], x.shape[1]
    theirs = nn.MultiheadAttention(D, num_heads, batch_first=True).eval()
    copy_attention_to_torch(_reference_attention(D, num_heads), theirs)
    with torch.no_grad():
        return theirs(x, x, x, attn_mask=to_torch_mask(causal_mask(T)), need_weights=False)[0]


def _package_with_slip(x, chunks, num_heads, slip):
    """The package's cached attention with one typical slip, for the mistakes."""
    attention = _reference_attention(x.shape[-1], num_heads)
    past_k = past_v = None
    outputs, start = [], 0
    with torch.no_grad():
        for size in chunks:
            new = x[:, start : start + size]  # (B, T, D)
            H = num_heads
            q = attention.q_proj(new).unflatten(-1, (H, -1)).transpose(1, 2)  # (B, H, T, Dh)
            k = attention.k_proj(new).unflatten(-1, (H, -1)).transpose(1, 2)  # (B, H, T, Dh)
            v = attention.v_proj(new).unflatten(-1, (H, -1)).transpose(1, 2)  # (B, H, T, Dh)
            if slip != "no cache" and past_k is not None:
                k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
            past_k, past_v = k, v
            S = k.shape[2]
            if slip == "top-left mask":
                mask = torch.ones(size, S, dtype=torch.bool).tril()
            elif slip == "no mask":
                mask = None
            else:
                mask = causal_mask(size, S)
            scale = 1.0 if slip == "no scale" else q.shape[-1] ** -0.5
            scores = (q * scale) @ k.transpose(-2, -1)  # (B, H, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, INF)
            heads = torch.softmax(scores, dim=-1) @ v  # (B, H, T, Dh)
            merged = heads.transpose(1, 2).flatten(-2)  # (B, T, D)
            outputs.append(attention.out_proj(merged))
            start += size
    return torch.cat(outputs, dim=1)


_SLIPS = {
    "top-left mask": "after the first call the new queries are the *last* T of S positions: the "
    "mask is causal_mask(T, S) = ones(T, S).tril(diagonal=S - T), not ones(T, S).tril() (your "
    "chunks of more than one token after the first read too little).",
    "no cache": "attend to the cached keys and values too: concatenate the cache's k and v "
    "before the new ones along the position axis (dim=2 of (B, H, S, Dh)), and return them as "
    "the new cache.",
    "no mask": "a chunk of several new tokens still needs the causal mask among them: "
    "the first new token must not read the second.",
    "no scale": "scale the scores by 1/sqrt(head_dim), as in every attention of the course.",
}


@graded
def check_cached_attention(cls) -> CheckResult:
    """Check a learner's self-attention with a KV cache.

    `cls(d_model=..., num_heads=...)` builds an `nn.Module` with `q_proj`, `k_proj`, `v_proj`,
    `out_proj` (the package's names); `forward(x (B, T, D), cache) -> (out (B, T, D), cache)`
    where cache is None on the first call and whatever the module returned on the next. The
    check loads a seeded `MultiHeadAttention`'s weights, feeds a sequence in chunks (a prompt,
    then one or a few tokens at a time) and compares the outputs with the package's cached
    attention and with `nn.MultiheadAttention` run on the whole sequence with a causal mask.
    """
    name = getattr(cls, "__name__", "CachedSelfAttention")
    with torch.random.fork_rng(devices=[]):
        mistakes = [
            Mistake(hint, partial(_package_with_slip, slip=s)) for s, hint in _SLIPS.items()
        ]
        return check_against(
            name,
            partial(_run_cached, cls),
            [
                ("MultiHeadAttention with a LayerCache", _run_package),
                ("nn.MultiheadAttention on the whole sequence", _run_torch_whole),
            ],
            _cases(),
            mistakes,
            passed="matches MultiHeadAttention with a LayerCache, and nn.MultiheadAttention "
            f"run on the whole sequence with a causal mask, chunk by chunk on {len(_CHUNKINGS)} "
            "test cases",
            atol=1e-5,
            rtol=1e-4,
        )
