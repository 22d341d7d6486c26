"""Turning a next-token model into sequences: sampling with a KV cache, greedy decoding and beam
search, batched.

A decoder is trained with teacher forcing (it always sees the true previous tokens); at run time
it must feed on its own guesses, one token at a time. Two loops do that here.

**Language models (chapter 9)**: `generate(model, prompt_ids, max_new_tokens, ...)` for any
model called as `model(ids, cache=...)` with a `.config.block_size` (the GPT). At each step the
last position's logits become a distribution, shaped by three knobs, in this order:
- `temperature`: logits / temperature; below 1 sharpens, above 1 flattens, 0 is argmax;
- `top_k`: keep exactly the k most likely tokens (`filter_top_k`);
- `top_p`: keep the smallest set of most likely tokens whose probability reaches p, the
  "nucleus" (Holtzman et al., 2020; `filter_top_p`);
then one token is drawn (`torch.multinomial`, with an optional `torch.Generator`).
With `use_cache=True` the model keeps every layer's keys and values (a `KVCache`) and reads only
the newest token at each step; without it the whole window is recomputed every step. Both read
the same window (`context_start`), so both compute the same numbers.

A context longer than the block size is handled by **crop and re-fill**: when the window is full,
it jumps forward by half a block (the oldest half is dropped), and the cache is rebuilt from the
tokens kept, in one forward pass. (Learned absolute positions rule out a cache that simply
slides: a key computed at position p would have to move to p - 1.)

**Encoder-decoder models (chapter 5)**: `decode_steps` for any model that exposes one *step
function*:

    step(tokens, state) -> (logits, state)
        tokens: (N, t) every token so far (the prompt, e.g. [BOS], then the generated ones)
        state:  a dict of tensors whose first axis is the row N (e.g. the encoder's output), or {}
        logits: (N, V) scores for the next token

with `greedy` and `beam_search` on top of it. Beam search keeps the k best prefixes by total
log-probability and returns, for each input, the finished hypothesis with the best
length-normalised score, log p(y) / |y|^alpha (Wu et al., 2016, "Google's Neural Machine
Translation System", use a smoothed version of this). It is a heuristic: wider beams usually,
not provably, find higher-scoring sequences than greedy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "filter_top_k",
    "filter_top_p",
    "next_token_probs",
    "context_start",
    "generate",
    "generation_steps",
    "StepFn",
    "Generated",
    "reorder_state",
    "decode_steps",
    "greedy",
    "beam_step",
    "beam_search",
]

# ------------------------------------------------------------------ language models (chapter 9)


def filter_top_k(logits: Tensor, k: int) -> Tensor:
    """Keep exactly the k highest logits of each row; the others become -inf.

    Exactly k, even with ties: among equal logits the lower token ids are kept. (Comparing with
    the k-th largest value, `logits < kth_value`, lets every token tied with it through.)

    Args:
        logits: (..., V).
        k: 1 <= k; k >= V keeps everything.

    Returns:
        (..., V) logits with all but k entries per row set to -inf.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_k must be a positive int, got {k!r}")
    if k >= logits.shape[-1]:
        return logits
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # (..., V)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return logits.masked_fill(~keep, float("-inf"))  # (..., V)


def filter_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches p.

    Tokens are taken from the most likely down until their total probability is >= p; the rest
    become -inf. The most likely token is always kept (never an empty set); p = 1 keeps every
    token. Ties are ordered by token id, as in `filter_top_k`.

    Args:
        logits: (..., V).
        p: in (0, 1].

    Returns:
        (..., V) logits with the tokens outside the nucleus set to -inf.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {p!r}")
    if p == 1:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (..., V)
    probs = torch.softmax(sorted_logits.double(), dim=-1)  # (..., V) float64: exact sums
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V) probability of the better tokens
    keep_sorted = mass_before < p  # (..., V) True while the nucleus is not yet full
    keep_sorted[..., 0] = True  # the most likely token, whatever p is
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # back to token order
    return logits.masked_fill(~keep, float("-inf"))  # (..., V)


def next_token_probs(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> Tensor:
    """The distribution `generate` draws the next token from.

    Args:
        logits: (B, V) the last position's scores.
        temperature: >= 0; 0 means greedy.
        top_k, top_p: optional filters, applied in this order after the temperature (top-p
            then measures the mass of what top-k kept, renormalised).
        greedy: all the probability on the most likely token (the lowest id among ties).

    Returns:
        (B, V) probabilities; each row sums to 1 and is zero outside the kept tokens.
    """
    _check_sampling(temperature, top_k, top_p)
    if greedy or temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)  # (B, 1): the first maximum
        return torch.zeros_like(logits).scatter(-1, best, 1.0)  # (B, V) one-hot
    logits = logits / temperature  # (B, V)
    if top_k is not None:
        logits = filter_top_k(logits, top_k)  # (B, V)
    if top_p is not None:
        logits = filter_top_p(logits, top_p)  # (B, V)
    return torch.softmax(logits, dim=-1)  # (B, V)


def context_start(length: int, block_size: int) -> int:
    """Where the model's window starts when `length` tokens exist and the next one is predicted.

    Up to `block_size` tokens the window is everything (start 0). Past it, the window starts at
    a multiple of the stride, half a block, chosen so that it holds at most `block_size` tokens:
    it keeps growing by one token per step, and when it is full it jumps forward by the stride
    (the cache is then refilled from the tokens kept). The window thus always holds between
    `block_size - stride + 1` and `block_size` tokens, and depends only on `length`, so the
    cached and uncached paths of `generate` read exactly the same tokens.
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if length <= block_size:
        return 0
    stride = block_size - block_size // 2  # the window drops this many tokens when it is full
    return -(-(length - block_size) // stride) * stride  # ceil((length - block) / stride) * stride


def generate(
    model: Any,
    prompt_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue each prompt by `max_new_tokens` tokens drawn from the model, one at a time.

    Args:
        model: called as `model(ids, cache=...)` returning `.logits` (B, T, V); it has
            `.config.block_size` and `.empty_cache()` (e.g. `tfm_edu.models.gpt.GPT`). It is
            run in eval mode (and put back in the mode it was in).
        prompt_ids: (B, T0) int64 token ids, T0 >= 1; longer than the block size is fine (the
            model reads its last tokens, see `context_start`).
        max_new_tokens: how many tokens to add (>= 0).
        temperature, top_k, top_p, greedy: how each token is chosen (`next_token_probs`).
        use_cache: keep the keys and values between steps (same tokens, less work).
        generator: a seeded `torch.Generator` makes the draws repeatable.

    Returns:
        (B, T0 + max_new_tokens) the prompts followed by what the model wrote.
    """
    steps = generation_steps(
        model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        greedy=greedy, use_cache=use_cache, generator=generator,
    )  # fmt: skip
    chosen = [token for _, token in steps]  # max_new_tokens x (B,)
    if not chosen:
        return prompt_ids.clone()
    return torch.cat([prompt_ids, torch.stack(chosen, dim=1)], dim=1)  # (B, T0 + N)


def generation_steps(
    model: Any,
    prompt_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """`generate`, one step at a time: yields (logits (B, V), token (B,)) for every new token,
    the last position's raw logits (before temperature and filters) and the token chosen.

    Same arguments as `generate` (checked at once, before the first step). Use it to watch
    generation, or to compare the numbers of the cached and uncached paths step by step.
    """
    _check_generation(prompt_ids, max_new_tokens)
    _check_sampling(temperature, top_k, top_p)
    choose = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
    return _steps(model, prompt_ids, max_new_tokens, choose, use_cache, generator)


@torch.no_grad()
def _steps(model, prompt_ids, max_new_tokens, choose, use_cache, generator):
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        ids = prompt_ids  # (B, T0 + i)
        cache, cache_start = None, -1
        for _ in range(max_new_tokens):
            start = context_start(ids.shape[1], block_size)
            if not use_cache:
                logits = model(ids[:, start:]).logits  # (B, window, V): the whole window again
            elif start != cache_start:  # first step, or the window jumped: (re)fill the cache
                cache, cache_start = model.empty_cache(), start
                logits = model(ids[:, start:], cache=cache).logits  # (B, window, V)
            else:  # the cache holds ids[:, start:-1]; only the newest token is new
                logits = model(ids[:, -1:], cache=cache).logits  # (B, 1, V)
            last = logits[:, -1]  # (B, V)
            probs = next_token_probs(last, **choose)  # (B, V)
            if choose["greedy"] or choose["temperature"] == 0:
                chosen = probs.argmax(dim=-1)  # (B,)
            else:
                chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
            ids = torch.cat([ids, chosen[:, None]], dim=1)  # (B, T0 + i + 1)
            yield last, chosen
    finally:
        model.train(was_training)


def _check_generation(prompt_ids: Tensor, max_new_tokens: int) -> None:
    if not isinstance(prompt_ids, Tensor) or prompt_ids.dim() != 2 or 0 in prompt_ids.shape:
        shape = tuple(prompt_ids.shape) if isinstance(prompt_ids, Tensor) else prompt_ids
        raise ValueError(f"prompt_ids must be (B, T0) with B, T0 >= 1, got {shape!r}")
    if prompt_ids.dtype != torch.long:
        raise ValueError(f"prompt_ids must hold token ids (int64), got dtype {prompt_ids.dtype}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise ValueError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if not temperature >= 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p!r}")


# ------------------------------------------------------------------ step functions (chapter 5)

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


def decode_steps(
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
    return decode_steps(
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
        step, prompt, state, max_new_tokens, eos_id, pad_id: as for `decode_steps`.
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
