"""Chapter 9's data and yardsticks: the help-text corpus and its split, the tokenizer's unknown
characters, the windows it trains and evaluates on, the counting bigram model, the loss units,
and the induction-head measurements."""

from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np
import pytest
import torch

from tfm_edu.analysis.induction import (
    induction_scores,
    loss_by_position,
    previous_token_scores,
    repeated_sequences,
    top_heads,
)
from tfm_edu.analysis.language import bits_per_character, corpus_loss, corpus_notice, perplexity
from tfm_edu.data import corpus
from tfm_edu.models.bigram import BigramLM, bigram_counts
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.tokenize import CharTokenizer, UnknownCharactersWarning

# ------------------------------------------------------------------ the corpus


def test_help_texts_are_the_topics_joined_in_name_order():
    from pydoc_data.topics import topics

    text = corpus.help_texts()
    assert text.startswith(topics[sorted(topics)[0]])
    assert text == "\n\n".join(topics[k] for k in sorted(topics))
    assert len(topics) >= 70 and len(text) > 400_000  # the size the chapter is written for
    info = corpus.describe(text)
    assert info.characters == len(text) and info.distinct == len(set(text))
    assert info.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_split_is_the_first_90_percent_then_the_rest():
    train, val = corpus.split("abcdefghij")
    assert (train, val) == ("abcdefghi", "j")
    train, val = corpus.split(corpus.help_texts())
    assert abs(len(train) / (len(train) + len(val)) - 0.9) < 1e-5
    with pytest.raises(ValueError, match="train_fraction"):
        corpus.split("abc", 1.0)


def test_tokenizer_reads_unknown_characters_as_unk_with_a_warning():
    tokenizer = corpus.char_tokenizer("hello world")
    assert tokenizer.decode(tokenizer.encode("hello")) == "hello"
    with pytest.warns(UnknownCharactersWarning, match=r"2 character\(s\).*\['é', 'ü'\]"):
        ids = tokenizer.encode("héllü")
    assert ids[1] == ids[4] == tokenizer.unk_id and len(ids) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the quiet policy says nothing
        assert tokenizer.encode("é", unknown="unk-quiet") == [tokenizer.unk_id]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.encode("é", unknown="error")
    again = CharTokenizer.from_dict(tokenizer.to_dict())  # the policy travels in the card
    assert again.unknown == "unk" and again.itos == tokenizer.itos
    assert CharTokenizer("ab").unknown == "error"  # chapter 5's tokenizers are unchanged
    with pytest.raises(ValueError, match="unknown must be one of"):
        CharTokenizer("ab", unknown="skip")


def test_random_windows_pair_each_position_with_the_next_character():
    ids = torch.arange(100)
    inputs, targets = corpus.random_windows(ids, 8, 5, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (5, 8)
    assert torch.equal(targets, inputs + 1)  # consecutive ids: the next one is +1
    assert torch.equal(inputs[:, 1:] - inputs[:, :-1], torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        corpus.random_windows(ids, 100, 2)


def test_eval_windows_predict_every_character_once():
    ids = torch.arange(23)
    windows = corpus.eval_windows(ids, 5)
    assert [tuple(x.shape) for x, _ in windows] == [(4, 5), (1, 2)]
    targets = torch.cat([y.flatten() for _, y in windows])
    assert torch.equal(targets, ids[1:])  # characters 1..22, each exactly once
    assert all(torch.equal(y, x + 1) for x, y in windows)


# ------------------------------------------------------------------ the bigram baseline


def test_bigram_counts_and_probabilities():
    ids = torch.tensor([0, 1, 0, 1, 2, 0])
    counts = bigram_counts(ids, 3)
    assert counts.tolist() == [[0, 2, 0], [1, 0, 1], [1, 0, 0]]
    model = BigramLM(counts, alpha=0.5)
    expected = torch.log(torch.tensor([0.5, 2.5, 0.5]) / 3.5)  # row "0", add-0.5
    torch.testing.assert_close(model(torch.tensor([[0]])).logits[0, 0], expected)
    torch.testing.assert_close(model.log_probs.exp().sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match="alpha"):
        BigramLM(counts, alpha=0)


def test_corpus_loss_of_the_bigram_is_the_mean_negative_log_likelihood():
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 6, (500,), generator=generator)
    val = torch.randint(0, 6, (101,), generator=generator)
    model = BigramLM(bigram_counts(train, 6), alpha=1.0)
    by_hand = -model.log_probs[val[:-1], val[1:]].mean().item()
    for block in (7, 50, 100):  # the window length does not matter to a bigram
        assert math.isclose(corpus_loss(model, val, block), by_hand, rel_tol=1e-6)
    assert math.isclose(bits_per_character(math.log(2)), 1.0)
    assert math.isclose(perplexity(math.log(6)), 6.0)


def test_corpus_loss_counts_each_character_once_and_keeps_the_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=11)).train()
    ids = torch.randint(0, 11, (70,))
    loss = corpus_loss(model, ids, 32, batch_size=1)
    assert model.training  # put back
    with torch.no_grad():
        model.eval()
        manual = [
            torch.nn.functional.cross_entropy(
                model(x[None]).logits[0], y, reduction="sum"
            ).item()
            for x, y in ((ids[s : s + 32], ids[s + 1 : s + 33]) for s in (0, 32))
        ] + [
            torch.nn.functional.cross_entropy(model(ids[None, 64:69]).logits[0], ids[65:70],
                                              reduction="sum").item()
        ]  # fmt: skip
    assert math.isclose(loss, sum(manual) / 69, rel_tol=1e-5)


def test_corpus_notice_only_when_the_text_differs():
    here = corpus.describe("abc")
    assert corpus_notice({"sha256": here.sha256}, here) is None
    notice = corpus_notice({"sha256": "0" * 64, "python": "3.12.0", "characters": 470_000}, here)
    assert "3.12.0" in notice and "470,000" in notice and here.python in notice


# ------------------------------------------------------------------ induction measurements


def test_repeated_sequences_are_two_copies():
    ids = repeated_sequences([5, 6, 7], 4, count=10, seed=1)
    assert ids.shape == (10, 8) and torch.equal(ids[:, :4], ids[:, 4:])
    assert set(ids.flatten().tolist()) <= {5, 6, 7}
    assert not torch.equal(ids, repeated_sequences([5, 6, 7], 4, count=10, seed=2))


class _Copier(torch.nn.Module):
    """Attention written by hand: layer 0 head 0 looks at t - 1, layer 1 head 1 at t - L + 1
    (the token after the previous occurrence), and the logits copy what layer 1 head 1 read."""

    def __init__(self, L: int, V: int) -> None:
        super().__init__()
        self.L, self.V = L, V

    def forward(self, ids, return_attention=False):
        N, T = ids.shape
        previous = torch.zeros(T, T)
        previous[torch.arange(1, T), torch.arange(T - 1)] = 1.0
        previous[0, 0] = 1.0
        induction = torch.full((T, T), 0.0)
        for t in range(T):
            induction[t, : t + 1] = 1.0 / (t + 1)
        for t in range(self.L, T):
            induction[t] = 0.0
            induction[t, t - self.L + 1] = 1.0
        uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
        layer0 = torch.stack([previous, uniform])[None].expand(N, 2, T, T)
        layer1 = torch.stack([uniform, induction])[None].expand(N, 2, T, T)
        read = induction @ torch.nn.functional.one_hot(ids, self.V).float()  # (N, T, V)
        logits = torch.where(read > 0.5, 10.0, 0.0)
        return type("Out", (), {"logits": logits, "attentions": (layer0, layer1)})()


def test_scores_find_the_heads_that_look_where_they_should():
    L = 6
    ids = repeated_sequences(range(10), L, count=4, seed=0)
    copier = _Copier(L, 10)
    assert previous_token_scores(copier, ids)[0, 0] == pytest.approx(1.0)
    scores = induction_scores(copier, ids, L)
    assert scores[1, 1] == pytest.approx(1.0) and scores[0, 1] < 0.3
    assert top_heads(scores, 1) == {1: [1]}
    losses = loss_by_position(copier, ids)
    assert losses.shape == (2 * L - 1,) and losses[L:].max() < 0.01 < losses[: L - 1].min()


def test_top_heads_orders_by_score():
    scores = np.array([[0.1, 0.9], [0.5, 0.2]])
    assert top_heads(scores, 2) == {0: [1], 1: [0]}
    with pytest.raises(ValueError, match="count"):
        top_heads(scores, 5)
