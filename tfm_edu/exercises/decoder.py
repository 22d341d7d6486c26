"""Checks for chapter 5: a pre-LN decoder layer, greedy decoding and one step of beam search.

The references are the package's own: `tfm_edu.layers.DecoderLayer(norm_first=True)` (also
compared with PyTorch's `nn.TransformerDecoderLayer(norm_first=True)`), `tfm_edu.decode.greedy`
and `tfm_edu.decode.beam_step` (beam search keeps the k best of all k x V extensions, ranked by
total log-probability).
"""

from __future__ import annotations

from functools import lru_cache, partial

import torch
from torch import nn

from tfm_edu import decode
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, check_function, graded
from tfm_edu.layers import DecoderLayer
from tfm_edu.reference import copy_decoder_layer_to_torch, to_torch_mask

__all__ = ["check_decoder_layer", "check_greedy_decode", "check_beam_step"]

PAD, BOS, EOS = 0, 1, 2


# ------------------------------------------------------------------ the decoder layer

_LAYER_SLIPS = {  # slip -> hint, for the mistakes of check_decoder_layer; most specific first
    "post-LN": "that is post-LN, the paper's x = norm(x + sublayer(x)) built above. Pre-LN "
    "normalises each sublayer's *input* and leaves the residual stream alone: "
    "x = x + sublayer(norm(x)).",
    "no causal mask": "pass `self_mask` (the causal mask) to the self-attention: without it "
    "position t reads the answer at the positions after t, the cheat of section 3.",
    "cross from decoder": "cross-attention takes its queries from the decoder's stream but its "
    "keys and values from `memory`, the encoder's output: "
    "self.cross_attn(h, memory, memory, memory_mask).",
    "cross from decoder, no mask": "cross-attention takes its queries from the decoder's stream "
    "but its keys and values from `memory`, the encoder's output: "
    "self.cross_attn(h, memory, memory, memory_mask).",
    "memory mask ignored": "pass `memory_mask` to the cross-attention: without it the decoder "
    "also reads the [PAD] positions of the shorter inputs.",
    "masks swapped": "the masks are swapped: `self_mask` (T, T) goes to the self-attention, "
    "`memory_mask` (over the S input positions) to the cross-attention.",
    "memory normalised": "leave `memory` as it is: only the decoder's own stream is normalised "
    "before the cross-attention (the encoder's final LayerNorm already normalised memory).",
    "norm after sublayer": "normalise each sublayer's input, not its output: "
    "x = x + sublayer(norm(x)), not x + norm(sublayer(x)).",
    "residual from normalised": "add the sublayer's output to the un-normalised x: h = norm(x), "
    "then x = x + sublayer(h), not h + sublayer(h).",
    "one norm": "each sublayer has its own LayerNorm: norm1 before the self-attention, norm2 "
    "before the cross-attention, norm3 before the feed-forward.",
    "no feed-forward residual": "the feed-forward needs its residual connection too: "
    "x = x + self.feed_forward(self.norm3(x)).",
    "no cross residual": "the cross-attention needs its residual connection too: "
    "x = x + attended, where attended = self.cross_attn(h, memory, memory, memory_mask)[0].",
}


@graded
def check_decoder_layer(cls) -> CheckResult:
    """Check a learner's pre-LN decoder layer class against the package and PyTorch.

    `cls(d_model=..., num_heads=..., d_ff=...)` must build an `nn.Module` with the package's
    parameter names (`self_attn`, `cross_attn`, `feed_forward`, `norm1`, `norm2`, `norm3`) and
    `forward(x (B, T, D), memory (B, S, D), self_mask (T, T), memory_mask (B, 1, 1, S) or None)
    -> (B, T, D)` (a tuple starting with that tensor is accepted too). The check loads the
    weights of a seeded `tfm_edu.layers.DecoderLayer(norm_first=True)` into it and compares the
    output and the gradients with respect to `x` and `memory`, in eval mode, with that layer and
    with `nn.TransformerDecoderLayer(norm_first=True, batch_first=True)` holding the same
    weights, on cases with T != S, a causal mask and a memory padding mask. It restores torch's
    RNG afterwards.
    """
    name = getattr(cls, "__name__", "MyDecoderLayer")
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(5)
        setups = [  # (B, T, S, D, H, d_ff, memory lengths or None); T != S everywhere
            (2, 4, 6, 8, 2, 16, [6, 3]),
            (1, 5, 3, 12, 3, 24, None),
            (3, 3, 5, 8, 4, 16, [5, 2, 4]),
        ]
        cases = []
        for B, T, S, D, H, d_ff, lengths in setups:
            x, memory = torch.randn(B, T, D, generator=g), torch.randn(B, S, D, generator=g)
            self_mask = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T) causal
            memory_mask = None
            if lengths is not None:
                memory_mask = (torch.arange(S) < torch.tensor(lengths)[:, None])[:, None, None]
            label = "causal mask" + (" + memory padding" if lengths else "") + f", T={T}, S={S}"
            cases.append(
                Case((x, memory, self_mask, memory_mask), {"num_heads": H, "d_ff": d_ff}, label)
            )
        mistakes = [
            Mistake(hint, partial(_decoder_layer_with_slip, slip=slip))
            for slip, hint in _LAYER_SLIPS.items()
        ]
        options = dict(atol=1e-5, rtol=1e-4, output_names=("out", "grad x", "grad memory"))
        return check_against(
            name,
            partial(_run_layer, cls),
            [
                ("tfm_edu.layers.DecoderLayer", _run_package_layer),
                ("nn.TransformerDecoderLayer", _run_torch_layer),
            ],
            cases,
            mistakes,
            passed="matches tfm_edu.layers.DecoderLayer and nn.TransformerDecoderLayer "
            f"(pre-LN; output and input gradients) on {len(cases)} test cases",
            **options,
        )


@lru_cache(maxsize=8)
def _reference_layer(d_model: int, num_heads: int, d_ff: int) -> DecoderLayer:
    """A seeded pre-LN `DecoderLayer` in eval mode, with LayerNorms that are not the identity.

    Cached (the check builds it for every case and every mistake); never modified afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(d_model * 100 + d_ff)
        layer = DecoderLayer(d_model=d_model, num_heads=num_heads, d_ff=d_ff, norm_first=True)
        with torch.no_grad():
            for norm in (layer.norm1, layer.norm2, layer.norm3):
                norm.weight.copy_(1 + 0.3 * torch.randn(d_model))
                norm.bias.copy_(0.2 * torch.randn(d_model))
    return layer.eval()


def _reference_weights(d_model: int, num_heads: int, d_ff: int) -> dict[str, torch.Tensor]:
    """A fresh copy of the reference layer's state_dict."""
    state = _reference_layer(d_model, num_heads, d_ff).state_dict()
    return {key: value.clone() for key, value in state.items()}


def _output_and_gradients(forward, x, memory):
    """forward(x, memory) -> (out (B, T, D), d(probe . out)/dx, d(probe . out)/dmemory)."""
    x = x.clone().requires_grad_(True)  # (B, T, D)
    memory = memory.clone().requires_grad_(True)  # (B, S, D)
    out = forward(x, memory)
    if isinstance(out, (tuple, list)) and len(out) > 0:
        out = out[0]  # the package's layers return (x, self_weights, cross_weights)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return out  # the harness says what is wrong with it
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(11))  # (B, T, D)
    grad_x = grad_memory = None
    if out.requires_grad:
        grad_x, grad_memory = torch.autograd.grad(
            (out * probe).sum(), (x, memory), allow_unused=True
        )
    grad_x = torch.zeros_like(x) if grad_x is None else grad_x  # (B, T, D)
    grad_memory = torch.zeros_like(memory) if grad_memory is None else grad_memory  # (B, S, D)
    return out.detach(), grad_x, grad_memory


def _run_layer(cls, x, memory, self_mask, memory_mask, num_heads, d_ff):
    """Build cls(d_model, num_heads, d_ff), load the reference weights, run it in eval mode."""
    D = x.shape[-1]
    layer = cls(d_model=D, num_heads=num_heads, d_ff=d_ff)
    weights = _reference_weights(D, num_heads, d_ff)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"the class must build an nn.Module, got {type(layer).__name__}")
    mine = set(layer.state_dict())
    if mine != set(weights):

        def modules(keys):  # "cross_attn.q_proj.weight" -> "cross_attn"
            return ", ".join(sorted({key.split(".")[0] for key in keys})) or "none"

        raise ValueError(
            "keep the stub's attribute names, to receive the reference's weights; missing: "
            f"{modules(set(weights) - mine)}; unexpected: {modules(mine - set(weights))}"
        )
    layer.load_state_dict(weights)
    layer.eval()
    return _output_and_gradients(
        lambda x, memory: layer(x, memory, self_mask, memory_mask), x, memory
    )


def _run_package_layer(x, memory, self_mask, memory_mask, num_heads, d_ff):
    """The reference: `tfm_edu.layers.DecoderLayer(norm_first=True)` with the seeded weights."""

    class PackageLayer(DecoderLayer):
        def __init__(self, **sizes):
            super().__init__(norm_first=True, **sizes)

    return _run_layer(PackageLayer, x, memory, self_mask, memory_mask, num_heads, d_ff)


def _run_torch_layer(x, memory, self_mask, memory_mask, num_heads, d_ff):
    """PyTorch's `nn.TransformerDecoderLayer(norm_first=True)` with the same weights.

    Its masks mean True = *blocked*; its memory padding mask is one (B, S) row per sequence.
    """
    D = x.shape[-1]
    theirs = nn.TransformerDecoderLayer(
        D, num_heads, dim_feedforward=d_ff, dropout=0.0, batch_first=True, norm_first=True
    ).eval()
    copy_decoder_layer_to_torch(_reference_layer(D, num_heads, d_ff), theirs)
    padding = None if memory_mask is None else to_torch_mask(memory_mask[:, 0, 0, :])  # (B, S)
    return _output_and_gradients(
        lambda x, memory: theirs(
            x, memory, tgt_mask=to_torch_mask(self_mask), memory_key_padding_mask=padding
        ),  # (B, T, D)
        x,
        memory,
    )


def _decoder_layer_with_slip(x, memory, self_mask, memory_mask, num_heads, d_ff, slip=None):
    """The pre-LN decoder layer with the seeded weights and one typical slip, for the mistakes."""
    layer = _reference_layer(x.shape[-1], num_heads, d_ff)
    norm1, norm2, norm3 = (
        (layer.norm1,) * 3 if slip == "one norm" else (layer.norm1, layer.norm2, layer.norm3)
    )

    def sublayer(x, norm, run):  # one residual block, written with the slip
        if slip == "post-LN":
            return norm(x + run(x))
        if slip == "norm after sublayer":
            return x + norm(run(x))
        h = norm(x)
        return (h if slip == "residual from normalised" else x) + run(h)

    def forward(x, memory):
        self_m = {"no causal mask": None, "masks swapped": memory_mask}.get(slip, self_mask)
        cross_m = {
            "memory mask ignored": None,
            "cross from decoder, no mask": None,
            "masks swapped": self_mask,
        }.get(slip, memory_mask)
        source = norm2(memory) if slip == "memory normalised" else memory  # (B, S, D)

        def self_attention(h):
            return layer.self_attn(h, h, h, self_m)[0]  # (B, T, D)

        def cross_attention(h):
            kv = h if slip in ("cross from decoder", "cross from decoder, no mask") else source
            return layer.cross_attn(h, kv, kv, cross_m)[0]  # (B, T, D)

        x = sublayer(x, norm1, self_attention)  # (B, T, D)
        if slip == "no cross residual":
            x = cross_attention(norm2(x))  # (B, T, D)
        else:
            x = sublayer(x, norm2, cross_attention)  # (B, T, D)
        if slip == "no feed-forward residual":
            return layer.feed_forward(norm3(x))  # (B, T, D)
        return sublayer(x, norm3, layer.feed_forward)  # (B, T, D)

    return _output_and_gradients(forward, x, memory)


# ------------------------------------------------------------------ greedy decoding


class _ToyModel:
    """Next-token logits from the last token and the prefix length: a stand-in decoder."""

    def __init__(self, seed: int, vocab_size: int = 8, eos_after: int | None = None):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab_size, vocab_size, generator=g) * 2  # (V, V)
        self.position = torch.randn(16, vocab_size, generator=g)  # (16, V)
        self.table[:, PAD] = -1e4  # never predicts [PAD] or [BOS]
        self.table[:, BOS] = -1e4
        self.eos_after = eos_after

    def __call__(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (t,) -> logits (V,)."""
        logits = self.table[prefix[-1]] + self.position[len(prefix)]  # (V,)
        if self.eos_after is not None and len(prefix) > self.eos_after:
            logits = logits.clone()
            logits[EOS] = 1e4
        return logits

    def __repr__(self) -> str:
        return "a toy model"


def greedy_decode_reference(next_token_logits, bos_id, eos_id, max_new_tokens):
    """`tfm_edu.decode.greedy` on one sequence: the ids (L,) after [BOS], [EOS] included if
    produced, at most max_new_tokens."""

    def step(tokens, state):  # tokens (1, t) -> logits (1, V)
        return next_token_logits(tokens[0])[None], state

    prompt = torch.tensor([[bos_id]])  # (1, 1)
    out = decode.greedy(step, prompt, {}, max_new_tokens=max_new_tokens, eos_id=eos_id)
    return out.tokens[0]  # (L,)


@graded
def check_greedy_decode(fn) -> CheckResult:
    """Check `fn(next_token_logits, bos_id, eos_id, max_new_tokens) -> (L,) int64 tensor`.

    `next_token_logits(prefix (t,)) -> (V,)` scores the next token after the ids so far.
    """
    cases = [
        Case((_ToyModel(0, eos_after=3), BOS, EOS, 10), label="stops at [EOS]"),
        Case((_ToyModel(1, eos_after=5), BOS, EOS, 10), label="stops at [EOS]"),
        Case((_ToyModel(2), BOS, EOS, 6), label="no [EOS] within 6 tokens"),
        Case((_ToyModel(3, eos_after=0), BOS, EOS, 4), label="[EOS] at once"),
    ]

    def no_stop(model, bos_id, eos_id, max_new_tokens):
        prefix = torch.tensor([bos_id])
        for _ in range(max_new_tokens):
            prefix = torch.cat([prefix, model(prefix).argmax()[None]])
        return prefix[1:]

    def without_eos(model, bos_id, eos_id, max_new_tokens):
        out = greedy_decode_reference(model, bos_id, eos_id, max_new_tokens)
        return out[:-1] if len(out) and out[-1] == eos_id else out

    def always_bos(model, bos_id, eos_id, max_new_tokens):
        tokens = []
        for _ in range(max_new_tokens):
            tokens.append(int(model(torch.tensor([bos_id])).argmax()))
            if tokens[-1] == eos_id:
                break
        return torch.tensor(tokens)

    mistakes = [
        Mistake("stop as soon as the model produces [EOS] (keep the [EOS] itself).", no_stop),
        Mistake(
            "keep the [EOS] you generated in the output (the reference returns it; "
            "the tokenizer's decode drops it later).",
            without_eos,
        ),
        Mistake(
            "feed the model its own choices: append each chosen token to the prefix before "
            "asking for the next one (you keep asking what follows [BOS]).",
            always_bos,
        ),
        Mistake(
            "return only the generated tokens, without the leading [BOS].",
            lambda m, b, e, n: torch.cat([torch.tensor([b]), greedy_decode_reference(m, b, e, n)]),
        ),
    ]
    return check_function("greedy_decode", fn, greedy_decode_reference, cases, mistakes)


# ------------------------------------------------------------------ one beam-search step


@graded
def check_beam_step(fn) -> CheckResult:
    """Check `fn(scores (k,), log_probs (k, V), beam_size) -> (new_scores, parents, tokens)`."""
    g = torch.Generator().manual_seed(7)
    cases = []
    for k, V in [(3, 5), (2, 6), (4, 4)]:
        scores = -torch.rand(k, generator=g).sort(descending=True).values * 3  # (k,)
        log_probs = torch.log_softmax(torch.randn(k, V, generator=g) * 2, dim=-1)  # (k, V)
        cases.append(Case((scores, log_probs, k)))

    def per_beam(scores, log_probs, beam_size):
        best, token = (scores[:, None] + log_probs).max(dim=-1)  # one child per beam
        order = best.argsort(descending=True)[:beam_size]
        return best[order], order, token[order]

    def best_beam_only(scores, log_probs, beam_size):
        top = scores.argmax()
        new, token = (scores[top] + log_probs[top]).topk(beam_size)
        return new, torch.full_like(token, int(top)), token

    def forgets_history(scores, log_probs, beam_size):
        V = log_probs.shape[-1]
        new, index = log_probs.reshape(-1).topk(beam_size)
        return new, index // V, index % V

    mistakes = [
        Mistake(
            "compare all k x V extensions together: a strong beam may deserve two children and "
            "a weak one none. Flatten scores[:, None] + log_probs to (k * V,) and take topk.",
            per_beam,
        ),
        Mistake(
            "extend every beam, not only the best one: flatten scores[:, None] + log_probs "
            "to (k * V,) before topk.",
            best_beam_only,
        ),
        Mistake(
            "add each beam's score so far: a beam's total is scores[beam] + log_probs[beam, "
            "token], so the ranking remembers the whole prefix.",
            forgets_history,
        ),
        Mistake(
            "in the flattened (k * V,) vector, index // V is the parent beam and index % V the "
            "token, not the other way round.",
            lambda s, lp, k: (lambda out: (out[0], out[2], out[1]))(decode.beam_step(s, lp, k)),
        ),
    ]
    return check_function("beam_step", fn, decode.beam_step, cases, mistakes,
                          output_names=("new_scores", "parents", "tokens"))  # fmt: skip
