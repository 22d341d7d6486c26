"""tfm_edu.decode: greedy and beam search against brute force on small Markov models."""

from __future__ import annotations

import itertools

import pytest
import torch

from tfm_edu.decode import Generated, beam_search, beam_step, greedy, reorder_state

V, PAD, BOS, EOS = 5, 0, 1, 2


def sequence_log_prob(step, prompt, state, tokens, *, eos_id):
    """The test's oracle: score given continuations token by token under the model.

    tokens (B, L); everything after a row's first EOS is ignored. Returns log_prob (B,) and
    length (B,) (EOS included), as `Generated` counts them.
    """
    B, L = tokens.shape
    log_prob = torch.zeros(B)  # (B,)
    length = torch.zeros(B, dtype=torch.long)  # (B,)
    finished = torch.zeros(B, dtype=torch.bool)  # (B,)
    for i in range(L):
        logits, state = step(torch.cat([prompt, tokens[:, :i]], dim=1), state)  # (B, V)
        gained = torch.log_softmax(logits.float(), dim=-1).gather(1, tokens[:, i : i + 1])
        log_prob = log_prob + gained.squeeze(1).masked_fill(finished, 0.0)  # (B,)
        length = length + (~finished).long()  # (B,)
        finished = finished | (tokens[:, i] == eos_id)  # (B,)
    return log_prob, length


def markov_step(table: torch.Tensor):
    """A model whose next-token logits depend on the last token and on a per-row bias."""

    def step(tokens, state):
        return table[tokens[:, -1]] + state["bias"], state  # (N, V)

    return step


def _random_model(seed: int, batch: int = 3):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(V, V, generator=generator) * 2  # (V, V)
    bias = torch.randn(batch, V, generator=generator)  # (B, V)
    prompt = torch.full((batch, 1), BOS)  # (B, 1)
    return markov_step(table), prompt, {"bias": bias}


def _brute_force(step, prompt, state, max_len, length_penalty):
    """Best score over every sequence (ending in EOS, or max_len tokens without one), per row."""
    B = prompt.shape[0]
    best = torch.full((B,), float("-inf"))
    for length in range(1, max_len + 1):
        seqs = [
            seq
            for seq in itertools.product(range(V), repeat=length)
            if EOS not in seq[:-1] and (length == max_len or seq[-1] == EOS)
        ]
        M = len(seqs)
        rows = torch.arange(B).repeat_interleave(M)  # (B*M,) every sequence for every row
        tokens = torch.tensor(seqs).repeat(B, 1)  # (B*M, length)
        log_prob, n = sequence_log_prob(
            step, prompt[rows], reorder_state(state, rows), tokens, eos_id=EOS
        )  # (B*M,) each
        scores = (log_prob / n.float() ** length_penalty).reshape(B, M)  # (B, M)
        best = torch.maximum(best, scores.max(dim=1).values)
    return best


def test_greedy_takes_the_argmax_and_stops_at_eos():
    table = torch.full((V, V), -5.0)
    table[BOS, 3] = table[3, 4] = table[4, EOS] = 5.0  # BOS -> 3 -> 4 -> EOS
    bias = torch.zeros(2, V)
    bias[1, EOS] = 20.0  # row 1 stops at once
    out = greedy(markov_step(table), torch.full((2, 1), BOS), {"bias": bias},
                 max_new_tokens=6, eos_id=EOS)  # fmt: skip
    assert out.tokens.tolist() == [[3, 4, EOS], [EOS, PAD, PAD]]
    assert out.length.tolist() == [3, 1]


@pytest.mark.parametrize("seed", range(5))
def test_beam_of_one_is_greedy(seed):
    step, prompt, state = _random_model(seed)
    a = greedy(step, prompt, state, max_new_tokens=6, eos_id=EOS)
    b = beam_search(step, prompt, state, beam_size=1, max_new_tokens=6, eos_id=EOS)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.log_prob, b.log_prob)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_beam_holding_every_prefix_finds_the_exact_optimum(seed, length_penalty):
    step, prompt, state = _random_model(seed)
    best = _brute_force(step, prompt, state, 4, length_penalty)
    out = beam_search(step, prompt, state, beam_size=V**4, max_new_tokens=4, eos_id=EOS,
                      length_penalty=length_penalty)  # fmt: skip
    torch.testing.assert_close(out.score(length_penalty), best)


@pytest.mark.parametrize("seed", range(20))
def test_beam_scores_at_least_greedy(seed):
    step, prompt, state = _random_model(seed, batch=8)
    g = greedy(step, prompt, state, max_new_tokens=6, eos_id=EOS)
    for k in (2, 4):
        b = beam_search(step, prompt, state, beam_size=k, max_new_tokens=6, eos_id=EOS)
        assert (b.score() >= g.score() - 1e-6).all()


def test_beam_finds_what_greedy_misses():
    # BOS -> 3 (p=.6) then a flat distribution; BOS -> 4 (p=.4) then a sure EOS.
    table = torch.full((V, V), -30.0)
    table[BOS, 3], table[BOS, 4] = torch.tensor([0.6, 0.4]).log()
    table[3] = 0.0
    table[4, EOS] = 0.0
    state = {"bias": torch.zeros(1, V)}
    prompt = torch.full((1, 1), BOS)
    g = greedy(markov_step(table), prompt, state, max_new_tokens=2, eos_id=EOS)
    b = beam_search(markov_step(table), prompt, state, beam_size=2, max_new_tokens=2, eos_id=EOS)
    assert g.tokens[0, 0] == 3 and b.tokens.tolist() == [[4, EOS]]
    assert b.score() > g.score()


@pytest.mark.parametrize("seed", range(3))
def test_reported_log_probs_are_the_models(seed):
    step, prompt, state = _random_model(seed)
    for out in (
        greedy(step, prompt, state, max_new_tokens=5, eos_id=EOS),
        beam_search(step, prompt, state, beam_size=3, max_new_tokens=5, eos_id=EOS),
    ):
        log_prob, length = sequence_log_prob(step, prompt, state, out.tokens, eos_id=EOS)
        torch.testing.assert_close(out.log_prob, log_prob)
        assert torch.equal(out.length, length)


def test_reorder_state_reaches_nested_tensors():
    state = {"memory": torch.arange(3)[:, None], "cache": [(torch.arange(3), None)], "n": 2}
    out = reorder_state(state, torch.tensor([2, 2, 0]))
    assert out["memory"][:, 0].tolist() == [2, 2, 0]
    assert out["cache"][0][0].tolist() == [2, 2, 0] and out["n"] == 2


def test_score_applies_the_length_penalty():
    out = Generated(torch.zeros(2, 4), torch.tensor([-4.0, -4.0]), torch.tensor([4, 2]))
    torch.testing.assert_close(out.score(1.0), torch.tensor([-1.0, -2.0]))
    torch.testing.assert_close(out.score(0.0), torch.tensor([-4.0, -4.0]))


def test_bad_arguments_are_named():
    step, prompt, state = _random_model(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, prompt, state, beam_size=0, max_new_tokens=3, eos_id=EOS)
    with pytest.raises(ValueError, match="prompt must be"):
        greedy(step, prompt[:, 0], state, max_new_tokens=3, eos_id=EOS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy(step, prompt, state, max_new_tokens=0, eos_id=EOS)
    with pytest.raises(ValueError, match="int64"):
        greedy(step, prompt.float(), state, max_new_tokens=2, eos_id=EOS)


def test_beam_returns_its_n_best_hypotheses_in_order():
    step, prompt, state = _random_model(3, batch=2)
    best = beam_search(step, prompt, state, beam_size=4, max_new_tokens=5, eos_id=EOS)
    all4 = beam_search(step, prompt, state, beam_size=4, max_new_tokens=5, eos_id=EOS,
                       num_hypotheses=4)  # fmt: skip
    assert all4.tokens.shape[0] == 8
    scores = all4.score().reshape(2, 4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    assert torch.equal(all4.tokens.reshape(2, 4, -1)[:, 0], best.tokens)
    assert len({tuple(row) for row in all4.tokens[:4].tolist()}) == 4  # distinct hypotheses
    with pytest.raises(ValueError, match="num_hypotheses"):
        beam_search(step, prompt, state, beam_size=2, max_new_tokens=3, eos_id=EOS,
                    num_hypotheses=3)  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_beam_step_keeps_the_best_extensions_of_a_brute_force_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    B, k, vocab, keep = 2, 3, 4, 5
    scores = torch.randn(B, k, generator=generator)  # (B, k)
    log_probs = torch.randn(B, k, vocab, generator=generator).log_softmax(-1)  # (B, k, V)
    new_scores, parents, tokens = beam_step(scores, log_probs, keep)
    assert new_scores.shape == parents.shape == tokens.shape == (B, keep)
    for b in range(B):
        every = sorted(
            (
                (scores[b, beam].item() + log_probs[b, beam, token].item(), beam, token)
                for beam in range(k)
                for token in range(vocab)
            ),
            reverse=True,
        )[:keep]
        assert [(p, t) for _, p, t in every] == list(
            zip(parents[b].tolist(), tokens[b].tolist(), strict=True)
        )
        torch.testing.assert_close(new_scores[b], torch.tensor([s for s, _, _ in every]))


def test_beam_step_lets_a_strong_beam_have_every_child_and_checks_shapes():
    scores = torch.tensor([0.0, -100.0])  # beam 0 is far ahead
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))  # (k=2, V=3)
    new_scores, parents, tokens = beam_step(scores, log_probs, 3)
    assert parents.tolist() == [0, 0, 0] and tokens.tolist() == [0, 1, 2]
    torch.testing.assert_close(new_scores, log_probs[0])
    with pytest.raises(ValueError, match=r"\(2,\) vs \(3, 3\)"):
        beam_step(scores, torch.zeros(3, 3), 2)
