"""Chapter 5's exercise checks pass the package's own functions and catch typical slips."""

from __future__ import annotations

import torch
from exercise_helpers import assert_hint, stub

from tfm_edu.decode import beam_step
from tfm_edu.exercises.decoder import check_beam_step, check_greedy_decode, check_teacher_forcing
from tfm_edu.models.seq2seq import teacher_forcing


def test_teacher_forcing():
    assert check_teacher_forcing(lambda t: (t[:, :-1].clone(), t[:, 1:].clone())).passed
    assert check_teacher_forcing(teacher_forcing).passed  # the package's own
    assert_hint(check_teacher_forcing(lambda t: (t, t)), "copy its input")
    assert_hint(check_teacher_forcing(lambda t: (t[:, 1:], t[:, :-1])), "swapped")


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
    assert_hint(check_beam_step(no_history), "add each beam's score")
    assert_hint(check_beam_step(one_child_each), "compare all k x V extensions")
