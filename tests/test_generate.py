"""Chapter 9's generation: the filters keep exactly what they promise, the KV cache changes
nothing but the work (greedy and sampled, past the block size), and bad arguments get clear
errors."""

from __future__ import annotations

import math

import pytest
import torch

from tfm_edu.decode import (
    context_start,
    filter_top_k,
    filter_top_p,
    generate,
    generation_steps,
    next_token_probs,
)
from tfm_edu.models.gpt import GPT, GPTConfig

INF = float("-inf")


def _model(block_size: int = 32, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=29, block_size=block_size, num_layers=2, num_heads=2,
                          d_model=32, d_ff=64))  # fmt: skip
    with torch.no_grad():  # sharper than at init, and position-dependent, so that the
        for parameter in model.parameters():  # greedy tokens differ from step to step
            parameter.mul_(8.0 if parameter.dim() > 1 else 1.0)
        model.position_embedding.embedding.weight.mul_(20.0)
    return model.eval()


def _prompt(B: int = 2, T: int = 5, seed: int = 3) -> torch.Tensor:
    return torch.randint(4, 29, (B, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the filters


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 2.0, 0.0]])
    kept = filter_top_k(logits, 2)
    # 3.0, then one of the three 2.0s: the lowest id, 2. A threshold test (>= 2.0) keeps four.
    assert torch.isfinite(kept).sum().item() == 2
    assert torch.isfinite(kept[0]).nonzero().flatten().tolist() == [1, 2]
    assert torch.equal(kept[torch.isfinite(kept)], torch.tensor([3.0, 2.0]))  # values untouched
    assert torch.equal(filter_top_k(logits, 6), logits) and torch.equal(
        filter_top_k(logits, 60), logits
    )
    all_tied = filter_top_k(torch.zeros(3, 10), 4)
    assert (torch.isfinite(all_tied).sum(-1) == 4).all()


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_top_p(logits, p))[0].nonzero().flatten().tolist()  # noqa: E731
    assert kept(0.5) == [0]  # 0.5 alone reaches 0.5
    assert kept(0.51) == [0, 2]  # needs the 0.3 too
    assert kept(0.8) == [0, 2]  # 0.5 + 0.3 = 0.8 reaches it exactly
    assert kept(0.81) == [0, 2, 3]
    assert kept(0.96) == [0, 1, 2, 3]
    assert kept(1e-9) == [0]  # p -> 0: only the most likely token, never an empty set
    assert torch.equal(filter_top_p(logits, 1.0), logits)  # p = 1: everything


def test_top_p_breaks_ties_by_id_and_ignores_removed_tokens():
    tied = torch.zeros(1, 4)  # four tokens of 0.25
    assert torch.isfinite(filter_top_p(tied, 0.5))[0].tolist() == [True, True, False, False]
    after_top_k = torch.tensor([[2.0, INF, 1.0, INF]])
    assert torch.isfinite(filter_top_p(after_top_k, 0.999)).sum() == 2


def test_temperature_and_filters_in_order():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    torch.testing.assert_close(
        next_token_probs(logits, temperature=0.5), torch.softmax(logits / 0.5, dim=-1)
    )
    greedy = next_token_probs(logits, temperature=0)
    assert greedy.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    assert torch.equal(next_token_probs(logits, greedy=True, temperature=2.0), greedy)
    # top-k first (2.0, 1.0, 0.5), renormalised; then top-p measures that distribution's mass
    three = torch.softmax(torch.tensor([2.0, 1.0, 0.5]), dim=0)  # 0.63, 0.23, 0.14
    probs = next_token_probs(logits, top_k=3, top_p=0.8)
    expected = torch.zeros(5)
    expected[:2] = three[:2] / three[:2].sum()
    torch.testing.assert_close(probs[0], expected)
    assert math.isclose(probs.sum().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_bad_sampling_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        next_token_probs(torch.zeros(1, 5), **kwargs)
    with pytest.raises(ValueError, match=message):
        generate(_model(), _prompt(), 3, **kwargs)


# ------------------------------------------------------------------ the window past the block


def test_context_window_grows_then_jumps_by_half_a_block():
    block = 8
    starts = [context_start(n, block) for n in range(1, 40)]
    assert starts[:8] == [0] * 8  # up to the block size: everything
    assert context_start(9, block) == 4 and context_start(12, block) == 4
    assert context_start(13, block) == 8
    for n, start in zip(range(9, 40), starts[8:], strict=True):
        assert block // 2 < n - start <= block  # between half a block and a block
        assert start % (block // 2) == 0
    assert starts == sorted(starts)
    assert context_start(5, 1) == 4  # a block of one token reads just the last token


class RecordingModel(torch.nn.Module):
    """Wraps a GPT and records, for every call, how many tokens it got and how many were cached."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def empty_cache(self):
        return self.model.empty_cache()

    def forward(self, ids, cache=None):
        self.calls.append((ids.shape[1], 0 if cache is None else cache.length))
        return self.model(ids, cache=cache)


def test_the_cache_is_refilled_only_when_the_window_jumps():
    recorder = RecordingModel(_model(block_size=8))
    generate(recorder, _prompt(T=3), 12, greedy=True)
    # prompt of 3 -> window grows to 8 -> at 9 tokens it jumps to start 4 (5 tokens refilled),
    # grows to 8 again (12 tokens) -> at 13 it jumps to start 8 (5 tokens refilled).
    assert recorder.calls[0] == (3, 0)
    refills = [i for i, (fed, cached) in enumerate(recorder.calls) if cached == 0]
    assert refills == [0, 6, 10]
    assert recorder.calls[6] == (5, 0) and recorder.calls[10] == (5, 0)
    assert all(fed == 1 for i, (fed, _) in enumerate(recorder.calls) if i not in refills)
    assert all(fed + cached <= 8 for fed, cached in recorder.calls)


def test_a_prompt_longer_than_the_block_is_cropped_to_its_window():
    model = _model(block_size=8)
    prompt = _prompt(T=21)
    out = generate(model, prompt, 1, greedy=True)
    start = context_start(21, 8)  # 16: the last 5 tokens
    expected = model(prompt[:, start:]).logits[:, -1].argmax(-1)
    assert torch.equal(out[:, :21], prompt) and torch.equal(out[:, 21], expected)


# ------------------------------------------------------------------ the cache changes nothing


def _run(model, prompt, n, **kwargs):
    steps = list(generation_steps(model, prompt, n, **kwargs))
    return torch.stack([logits for logits, _ in steps], 1), torch.stack([t for _, t in steps], 1)


def test_greedy_with_and_without_cache_agree_over_300_tokens_past_the_block():
    model = _model(block_size=32)
    prompt = _prompt()
    cached_logits, cached = _run(model, prompt, 300, greedy=True)
    plain_logits, plain = _run(model, prompt, 300, greedy=True, use_cache=False)
    assert torch.equal(cached, plain)  # identical tokens, 9 block lengths past the start
    assert (cached_logits - plain_logits).abs().max().item() <= 1e-5
    assert len(set(cached[0].tolist())) > 5  # the tokens vary: the comparison can fail
    assert torch.equal(generate(model, prompt, 300, greedy=True), torch.cat([prompt, cached], 1))


def test_sampling_with_and_without_cache_draws_the_same_tokens():
    model = _model(block_size=32)
    prompt = _prompt()
    settings = dict(temperature=0.9, top_k=12, top_p=0.95)
    cached = generate(model, prompt, 300, generator=torch.Generator().manual_seed(7), **settings)
    plain = generate(model, prompt, 300, generator=torch.Generator().manual_seed(7),
                     use_cache=False, **settings)  # fmt: skip
    assert torch.equal(cached, plain)
    other = generate(model, prompt, 300, generator=torch.Generator().manual_seed(8), **settings)
    assert not torch.equal(cached, other)  # a different seed draws differently


def test_generation_output_shape_mode_and_zero_tokens():
    model = _model().train()
    prompt = _prompt(B=3, T=4)
    out = generate(model, prompt, 7, greedy=True)
    assert out.shape == (3, 11) and torch.equal(out[:, :4], prompt)
    assert model.training  # put back in the mode it was in
    assert torch.equal(generate(model, prompt, 0), prompt)


def test_sampled_tokens_stay_inside_the_filters():
    model = _model()
    prompt = _prompt(B=1)
    allowed = filter_top_k(model(prompt).logits[:, -1], 3).isfinite()[0]
    draws = generate(model, prompt.repeat(64, 1), 1, top_k=3,
                     generator=torch.Generator().manual_seed(0))[:, -1]  # fmt: skip
    assert allowed[draws].all() and len(set(draws.tolist())) > 1


@pytest.mark.parametrize(
    ("prompt", "tokens", "message"),
    [
        (torch.zeros(5, dtype=torch.long), 3, r"prompt_ids must be \(B, T0\)"),
        (torch.zeros(1, 0, dtype=torch.long), 3, r"prompt_ids must be \(B, T0\)"),
        (torch.zeros(1, 3), 3, "int64"),
        (torch.zeros(1, 3, dtype=torch.long), -1, "max_new_tokens must be >= 0"),
        (torch.zeros(1, 3, dtype=torch.long), 2.0, "max_new_tokens must be an int"),
    ],
)
def test_bad_prompts_get_a_clear_error_before_any_work(prompt, tokens, message):
    with pytest.raises(ValueError, match=message):
        generation_steps(_model(), prompt, tokens)  # raised here, not at the first step
