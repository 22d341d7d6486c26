"""Checks for chapter 5: teacher forcing, greedy decoding and one step of beam search.

The references are the package's own: `tfm_edu.models.seq2seq.teacher_forcing`, and
`tfm_edu.decode.greedy` and `tfm_edu.decode.beam_step` (beam search keeps the k best of all
k x V extensions, ranked by total log-probability).
"""

from __future__ import annotations

import torch

from tfm_edu import decode
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function
from tfm_edu.models.seq2seq import teacher_forcing

__all__ = ["check_teacher_forcing", "check_greedy_decode", "check_beam_step"]

PAD, BOS, EOS = 0, 1, 2


# ------------------------------------------------------------------ teacher forcing


def check_teacher_forcing(fn) -> CheckResult:
    """Check `fn(target (B, L)) -> (decoder_input (B, L-1), labels (B, L-1))`."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for B, n in [(2, 4), (3, 6), (1, 3)]:
        body = torch.randint(3, 20, (B, n), generator=g)  # (B, n)
        bos, eos = torch.full((B, 1), BOS), torch.full((B, 1), EOS)
        cases.append(Case((torch.cat([bos, body, eos], dim=1),)))  # (B, n + 2)
    mistakes = [
        Mistake(
            "if the decoder reads the very tokens it must predict, it learns to copy its input "
            "(a perfect training loss) and is lost at generation time, when that input does not "
            "exist yet. Shift by one: input target[:, :-1], labels target[:, 1:].",
            lambda target: (target, target),
        ),
        Mistake(
            "input and labels are swapped: the input starts with [BOS] (target[:, :-1]) and the "
            "labels end with [EOS] (target[:, 1:]).",
            lambda target: (target[:, 1:], target[:, :-1]),
        ),
        Mistake(
            "the input must start with [BOS]: position 0 sees only [BOS] and predicts y1.",
            lambda target: (target[:, 1:], target[:, 1:]),
        ),
        Mistake(
            "the labels must end with [EOS]: the model has to learn when to stop.",
            lambda target: (target[:, :-1], target[:, :-1]),
        ),
    ]
    return check_function("teacher_forcing", fn, teacher_forcing, cases, mistakes,
                          output_names=("decoder_input", "labels"))  # fmt: skip


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
