"""Turning a next-token model into sequences: greedy decoding and beam search, batched.

A decoder is trained with teacher forcing (it always sees the true previous tokens); at run time
it must feed on its own guesses, one token at a time. This module does that loop for any model
that exposes one *step function*:

    step(tokens, state) -> (logits, state)
        tokens: (N, t) every token so far (the prompt, e.g. [BOS], then the generated ones)
        state:  a dict of tensors whose first axis is the row N (e.g. the encoder's output), or {}
        logits: (N, V) scores for the next token

Today's models recompute the decoder over the whole prefix at each step (simple, and fast enough
for 10-character dates). A KV cache fits without changing this module: the step
stores its keys and values in `state` and reads only `tokens[:, -1:]`; beam search reorders the
state's rows with `reorder_state` whenever beams are re-ranked. Sampling (temperature, top-k,
top-p) is another `choose` rule for `generate`.

Beam search keeps the k best prefixes by total log-probability and returns, for each input, the
finished hypothesis with the best length-normalised score, log p(y) / |y|^alpha (Wu et al., 2016,
"Google's Neural Machine Translation System", use a smoothed version of this). It is a heuristic:
wider beams usually, not provably, find higher-scoring sequences than greedy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "StepFn",
    "Generated",
    "reorder_state",
    "generate",
    "greedy",
    "beam_step",
    "beam_search",
]

StepFn = Callable[[Tensor, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


@dataclass
class Generated:
    """What a decoder produced for a batch of B inputs."""

    tokens: Tensor  # (B, L) generated ids (prompt excluded); pad_id after each row's EOS
    log_prob: Tensor  # (B,) sum of the log-probabilities of the tokens, EOS included
    length: Tensor  # (B,) tokens counted in log_prob (EOS included; L if no EOS was produced)

    def score(self, length_penalty: float = 1.0) -> Tensor:
        """(B,) the beam-search objective: log_prob / length ** length_penalty."""
        return self.log_prob / self.length.clamp(min=1).float() ** length_penalty


def reorder_state(state: Any, rows: Tensor) -> Any:
    """Select `rows` (a 1-D index) along the first axis of every tensor in a nested state."""
    if isinstance(state, Tensor):
        return state.index_select(0, rows)
    if isinstance(state, dict):
        return {key: reorder_state(value, rows) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(reorder_state(value, rows) for value in state)
    return state  # numbers, None, strings: shared by all rows


def generate(
    step: StepFn,
    prompt: Tensor,
    state: dict[str, Any],
    choose: Callable[[Tensor], Tensor],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
) -> Generated:
    """Feed the model its own choices, one token at a time, until every row produced EOS.

    Args:
        step: the model's step function (see the module docstring).
        prompt: (B, t0) the tokens to start from, e.g. a column of [BOS].
        state: what the step needs besides the tokens (rows aligned with `prompt`).
        choose: log_probs (B, V) -> next tokens (B,); argmax for greedy, a draw for sampling.
        max_new_tokens: stop after this many tokens even without EOS.
        eos_id, pad_id: the end-of-sequence id, and what fills a row after its EOS.

    Returns:
        Generated with tokens (B, L), L <= max_new_tokens.
    """
    _check_prompt(prompt, max_new_tokens)
    B = prompt.shape[0]
    tokens = prompt  # (B, t0 + i)
    log_prob = torch.zeros(B, device=prompt.device)  # (B,)
    length = torch.zeros(B, dtype=torch.long, device=prompt.device)  # (B,)
    finished = torch.zeros(B, dtype=torch.bool, device=prompt.device)  # (B,)
    for _ in range(max_new_tokens):
        logits, state = step(tokens, state)  # (B, V)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        chosen = choose(log_probs)  # (B,)
        chosen = chosen.masked_fill(finished, pad_id)  # (B,)
        gained = log_probs.gather(1, chosen[:, None]).squeeze(1)  # (B,)
        log_prob = log_prob + gained.masked_fill(finished, 0.0)  # (B,)
        length = length + (~finished).long()  # (B,)
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)  # (B, t0 + i + 1)
        finished = finished | (chosen == eos_id)  # (B,)
        if finished.all():
            break
    return Generated(tokens[:, prompt.shape[1] :], log_prob, length)


def greedy(
    step: StepFn,
    prompt: Tensor,
    state: dict[str, Any],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
) -> Generated:
    """Greedy decoding: at each step take the single most likely next token (batched)."""
    return generate(
        step,
        prompt,
        state,
        lambda log_probs: log_probs.argmax(dim=-1),
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        pad_id=pad_id,
    )


def beam_step(scores: Tensor, log_probs: Tensor, beam_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """One step of beam search: extend every beam by every token, keep the best totals.

    Args:
        scores: (..., k) total log-probability of each beam so far.
        log_probs: (..., k, V) log-probability of each next token after each beam.
        beam_size: how many extensions to keep (<= k * V).

    Returns:
        new_scores (..., beam_size) best first, parents (..., beam_size) the beam each one
        extends, and tokens (..., beam_size) the token it adds. All k * V extensions compete
        together, so a strong beam may get several children and a weak one none.
    """
    if scores.shape != log_probs.shape[:-1]:
        raise ValueError(
            f"scores (..., k) and log_probs (..., k, V) disagree: {tuple(scores.shape)} vs "
            f"{tuple(log_probs.shape)}"
        )
    V = log_probs.shape[-1]
    totals = (scores[..., None] + log_probs).flatten(-2)  # (..., k*V)
    new_scores, index = totals.topk(beam_size, dim=-1)  # (..., beam_size) each
    return new_scores, index // V, index % V


def beam_search(
    step: StepFn,
    prompt: Tensor,
    state: dict[str, Any],
    *,
    beam_size: int,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
    length_penalty: float = 1.0,
    num_hypotheses: int = 1,
) -> Generated:
    """Beam search, batched: B inputs x `beam_size` hypotheses are decoded as B * k rows.

    At each step every live hypothesis is extended by every token; the k best totals (sum of
    log-probabilities) per input survive. A hypothesis that produced EOS stays in the beam with
    its score frozen (it may only be extended by [PAD], at no cost). At the end, each input's
    answer is the hypothesis with the best `log_prob / length ** length_penalty`.

    Args:
        step, prompt, state, max_new_tokens, eos_id, pad_id: as for `generate`.
        beam_size: k >= 1 (k = 1 is greedy decoding).
        length_penalty: alpha in the final ranking; 0 ranks by total log-probability (which
            favours short outputs), 1 by the mean log-probability per token.
        num_hypotheses: n <= k final hypotheses to return per input, best first.

    Returns:
        Generated with B * n rows: input b's hypotheses are rows b*n ... b*n + n - 1, best first
        (with n = 1: the best hypothesis per input, tokens (B, L)).
    """
    _check_prompt(prompt, max_new_tokens)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if not isinstance(num_hypotheses, int) or not 1 <= num_hypotheses <= beam_size:
        raise ValueError(f"need 1 <= num_hypotheses <= beam_size={beam_size}, got {num_hypotheses}")
    B, k, device = prompt.shape[0], beam_size, prompt.device
    rows = torch.arange(B, device=device).repeat_interleave(k)  # (B*k,)
    tokens = prompt.index_select(0, rows)  # (B*k, t0)
    state = reorder_state(state, rows)
    # The k beams start identical: keep one alive (score 0) so the first step picks k distinct.
    scores = torch.full((B, k), float("-inf"), device=device)  # (B, k)
    scores[:, 0] = 0.0
    length = torch.zeros(B * k, dtype=torch.long, device=device)  # (B*k,)
    finished = torch.zeros(B * k, dtype=torch.bool, device=device)  # (B*k,)
    for _ in range(max_new_tokens):
        logits, state = step(tokens, state)  # (B*k, V)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B*k, V)
        V = log_probs.shape[-1]
        pad_only = torch.full_like(log_probs[0], float("-inf"))  # (V,)
        pad_only[pad_id] = 0.0
        log_probs = torch.where(finished[:, None], pad_only, log_probs)  # (B*k, V)
        scores, parent, chosen = beam_step(scores, log_probs.reshape(B, k, V), k)  # (B, k) each
        chosen = chosen.reshape(B * k)  # (B*k,)
        rows = (torch.arange(B, device=device)[:, None] * k + parent).reshape(B * k)  # (B*k,)
        tokens = torch.cat([tokens.index_select(0, rows), chosen[:, None]], dim=1)  # (B*k, t+1)
        state = reorder_state(state, rows)
        was_finished = finished.index_select(0, rows)  # (B*k,)
        length = length.index_select(0, rows) + (~was_finished).long()  # (B*k,)
        finished = was_finished | (chosen == eos_id)  # (B*k,)
        if finished.all():
            break
    final = scores / length.reshape(B, k).clamp(min=1).float() ** length_penalty  # (B, k)
    ranked = final.topk(num_hypotheses, dim=-1).indices  # (B, n) best first
    best = (torch.arange(B, device=device)[:, None] * k + ranked).reshape(-1)  # (B*n,)
    return Generated(
        tokens.index_select(0, best)[:, prompt.shape[1] :],  # (B*n, L)
        scores.reshape(B * k).index_select(0, best),  # (B*n,)
        length.index_select(0, best),  # (B*n,)
    )


def _check_prompt(prompt: Tensor, max_new_tokens: int) -> None:
    if prompt.dim() != 2 or prompt.shape[0] == 0 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be (B, t0) with B, t0 >= 1, got {tuple(prompt.shape)}")
    if prompt.dtype != torch.long:
        raise ValueError(f"prompt must hold token ids (int64), got dtype {prompt.dtype}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
