"""Chapter 9's sampling numbers (`tfm_edu.analysis.generation`): the table is `decode`'s own
distribution, step by step; prompts are cropped and checked, never raising for text."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tfm_edu.analysis import (
    check_prompt,
    display_char,
    generate_text,
    last_position_attention,
    next_token_table,
    sample_next,
    token_label,
)
from tfm_edu.decode import generate, generation_steps, next_token_probs
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.tokenize import CharTokenizer

TOKENIZER = CharTokenizer("abcdef \n", unknown="unk")  # ids 4..11; V = 12


class FixedLogits(nn.Module):
    """A stand-in GPT whose next-token logits are always the same (V,) vector."""

    def __init__(self, logits, block_size: int = 8) -> None:
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size, num_layers=1, num_heads=1)
        self.register_buffer("scores", torch.tensor(logits, dtype=torch.float32))

    def empty_cache(self):
        return SimpleNamespace(length=0)  # generate passes it back; nothing is cached

    def forward(self, ids, targets=None, return_attention=False, cache=None):
        B, T = ids.shape
        return SimpleNamespace(logits=self.scores.expand(B, T, -1), attentions=())  # (B, T, V)


def _logits(**by_char) -> list[float]:
    """(V,) logits: -30 (probability ~0) for every token but the characters named (a=...)."""
    logits = [-30.0] * TOKENIZER.vocab_size
    for char, value in by_char.items():
        logits[TOKENIZER.stoi[char]] = value
    return logits


@pytest.fixture(scope="module")
def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(vocab_size=TOKENIZER.vocab_size)).eval()  # block 32, 2 x 2 heads


SETTINGS = [
    {"temperature": 1.0, "top_k": None, "top_p": None},
    {"temperature": 0.7, "top_k": 3, "top_p": None},
    {"temperature": 1.6, "top_k": None, "top_p": 0.5},
    {"temperature": 0.5, "top_k": 6, "top_p": 0.8},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_table_is_decodes_own_distribution(tiny_gpt, settings):
    text = "abc fed\nab"
    table = next_token_table(tiny_gpt, TOKENIZER, text, top=5, **settings)
    with torch.no_grad():
        logits = tiny_gpt(torch.tensor([TOKENIZER.encode(text)])).logits[:, -1]  # (1, V)
    expected = next_token_probs(logits.double(), **settings)[0].numpy()  # (V,)
    raw = torch.softmax(logits.double(), -1)[0].numpy()  # (V,)
    np.testing.assert_allclose(table.final, expected[table.ids], atol=1e-12)
    np.testing.assert_allclose(table.raw, raw[table.ids], atol=1e-12)
    assert list(table.ids) == list(np.argsort(-raw, kind="stable")[:5])  # most likely first
    assert table.labels == [token_label(TOKENIZER, i) for i in table.ids]
    assert table.num_kept == int((expected > 0).sum())
    np.testing.assert_array_equal(table.kept, expected[table.ids] > 0)
    assert table.other_final == pytest.approx(1 - expected[table.ids].sum(), abs=1e-12)
    assert table.other_raw == pytest.approx(1 - raw[table.ids].sum(), abs=1e-12)


def test_kept_tokens_are_renormalised_to_sum_to_one(tiny_gpt):
    V = TOKENIZER.vocab_size
    table = next_token_table(
        tiny_gpt, TOKENIZER, "bad cafe", temperature=0.8, top_k=4, top_p=0.9, top=V
    )
    assert len(table.labels) == V and table.other_final == pytest.approx(0, abs=1e-12)
    assert table.final.sum() == pytest.approx(1.0)
    assert table.kept_mass == pytest.approx(table.tempered[table.kept].sum())
    assert 0 < table.kept_mass < 1  # top-k 4 of 12 cuts something
    np.testing.assert_allclose(
        table.final[table.kept], table.tempered[table.kept] / table.kept_mass
    )
    assert not table.final[~table.kept].any()
    assert table.tempered.sum() == pytest.approx(1.0)


def test_top_k_with_ties_keeps_exactly_k_tokens_the_lowest_ids():
    model = FixedLogits(_logits(c=2.0, a=2.0, b=2.0, d=1.0))  # a, b, c tied at the top
    table = next_token_table(model, TOKENIZER, "abc", top_k=2, top=4)
    assert table.labels == ["a", "b", "c", "d"]  # ties listed by id
    assert table.num_kept == 2 and list(table.kept) == [True, True, False, False]
    np.testing.assert_allclose(table.final, [0.5, 0.5, 0.0, 0.0], atol=1e-12)
    assert "top-k 2 keeps 2 of 12 tokens" in table.summary
    drawn = {sample_next(model, TOKENIZER, "abc", top_k=2) for _ in range(20)}
    assert drawn <= {"a", "b"} and len(drawn) == 2  # (1/2)^19 chance of one letter only


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    model = FixedLogits(_logits(a=np.log(0.5), b=np.log(0.3), c=np.log(0.15), d=np.log(0.05)))
    table = next_token_table(model, TOKENIZER, "a", top_p=0.7, top=4)
    assert table.labels == ["a", "b", "c", "d"] and list(table.kept) == [True, True, False, False]
    assert table.num_kept == 2 and table.kept_mass == pytest.approx(0.8, abs=1e-3)
    np.testing.assert_allclose(table.final, [0.625, 0.375, 0, 0], atol=1e-3)
    assert "top-p 0.7 keeps 2 of 12 tokens (80 % of the mass)" in table.summary
    both = next_token_table(model, TOKENIZER, "a", top_k=3, top_p=0.9, top=4)
    # top-p measures what top-k kept, renormalised: 0.5/0.95 + 0.3/0.95 = 0.84 < 0.9 -> c too
    assert both.num_kept == 3 and "top-k 3 and top-p 0.9 keep 3 of 12" in both.summary


def test_temperature_zero_is_greedy():
    model = FixedLogits(_logits(a=1.0, e=1.5, b=1.4))
    table = next_token_table(model, TOKENIZER, "ab", temperature=0, top_k=5, top_p=0.5, top=3)
    assert table.greedy and table.num_kept == 1 and table.labels[0] == "e"
    np.testing.assert_array_equal(table.final, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(table.kept, [True, False, False])
    assert table.kept_mass == 1.0 and "greedy" in table.summary and "'e'" in table.summary
    seeds = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    assert {sample_next(model, TOKENIZER, "ab", temperature=0, generator=g) for g in seeds} == {"e"}
    hot = next_token_table(model, TOKENIZER, "ab", temperature=1.0, top=3)
    assert not hot.greedy and hot.num_kept == TOKENIZER.vocab_size


def test_a_long_prompt_is_cut_to_the_window_generation_reads(tiny_gpt):
    text = "abcdef" * 6 + "dcba"  # 40 characters, block 32: generation reads from 16 on
    check = check_prompt(TOKENIZER, text, 32)
    assert check.ids == TOKENIZER.encode(text[16:]) and check.error is None
    assert len(check.notes) == 1 and "40 characters" in check.notes[0]
    assert "last 24" in check.notes[0] and "16 dropped" in check.notes[0]
    table = next_token_table(tiny_gpt, TOKENIZER, text, top=TOKENIZER.vocab_size)
    same = next_token_table(tiny_gpt, TOKENIZER, text[16:], top=TOKENIZER.vocab_size)
    np.testing.assert_allclose(table.final, same.final)
    assert table.notes == check.notes and same.notes == []
    # what `generate` draws from: the window `decode.context_start` chooses
    ids = torch.tensor([TOKENIZER.encode(text)])
    ((logits, _),) = generation_steps(tiny_gpt, ids, 1, greedy=True)
    expected = next_token_probs(logits, top_k=None).numpy()[0][table.ids]
    np.testing.assert_allclose(table.final, expected, rtol=1e-5, atol=1e-7)
    maps = last_position_attention(tiny_gpt, TOKENIZER, text)
    assert maps.attentions.shape[-1] == 24 and maps.notice == check.notes[0]
    assert check_prompt(TOKENIZER, text[-32:], 32).notes == []  # exactly a block: no note


def test_unknown_characters_are_noted_instead_of_warned(tiny_gpt):
    text = "ab\tcé"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an UnknownCharactersWarning would fail the test
        check = check_prompt(TOKENIZER, text, 32)
        table = next_token_table(tiny_gpt, TOKENIZER, text)
    assert check.ids == [4, 5, TOKENIZER.unk_id, 6, TOKENIZER.unk_id]
    assert len(check.notes) == 1 and "2 characters" in check.notes[0]
    assert "⇥ (a tab)" in check.notes[0] and "'é'" in check.notes[0]
    assert "[UNK]" in check.notes[0] and table.notes == check.notes
    maps = last_position_attention(tiny_gpt, TOKENIZER, text)
    assert maps.key_tokens == ["a", "b", "[UNK]", "c", "[UNK]"]


def test_an_empty_prompt_is_an_error_sentence_not_an_exception(tiny_gpt):
    check = check_prompt(TOKENIZER, "", 32)
    assert check.ids == [] and check.error and "empty" in check.error and "type" in check.error
    assert check_prompt(TOKENIZER, None, 32).error  # not text: still no exception
    assert check_prompt(TOKENIZER, " ", 32).error is None  # a space is a character
    for compute in (next_token_table, last_position_attention, sample_next):
        with pytest.raises(ValueError, match="empty"):
            compute(tiny_gpt, TOKENIZER, "")


def test_last_position_attention_rows_sum_to_one_over_the_prompt(tiny_gpt):
    text = "cab fed\ndab"
    maps = last_position_attention(tiny_gpt, TOKENIZER, text)
    L, H = tiny_gpt.config.num_layers, tiny_gpt.config.num_heads
    assert maps.attentions.shape == (L, H, 1, len(text))
    np.testing.assert_allclose(maps.attentions.sum(-1), 1.0, atol=1e-6)
    assert maps.query_tokens == ["b"] and maps.key_tokens[3] == "␣" and maps.key_tokens[7] == "⏎"
    with torch.no_grad():
        out = tiny_gpt(torch.tensor([TOKENIZER.encode(text)]), return_attention=True)
    expected = torch.stack([a[0, :, -1:] for a in out.attentions]).numpy()  # (L, H, 1, S)
    np.testing.assert_allclose(maps.attentions, expected, atol=1e-6)
    assert maps.notice is None


def test_labels_make_whitespace_visible():
    assert [display_char(c) for c in " \n\ta"] == ["␣", "⏎", "⇥", "a"]
    assert display_char("\x0b") == "'\\x0b'" and display_char("é") == "é"
    assert token_label(TOKENIZER, TOKENIZER.unk_id) == "[UNK]"
    assert token_label(TOKENIZER, TOKENIZER.stoi[" "]) == "␣"


def test_generation_is_decode_generate_seeded_by_the_generator(tiny_gpt):
    text = "fade cab"
    settings = {"temperature": 1.2, "top_k": 8, "top_p": 0.95}
    new = generate_text(
        tiny_gpt, TOKENIZER, text, 30, generator=torch.Generator().manual_seed(7), **settings
    )
    prompt = torch.tensor([TOKENIZER.encode(text)])
    ids = generate(tiny_gpt, prompt, 30, generator=torch.Generator().manual_seed(7), **settings)
    assert new == TOKENIZER.decode(ids[0, prompt.shape[1] :].tolist(), stop_at_eos=False)
    again = generate_text(
        tiny_gpt, TOKENIZER, text, 30, generator=torch.Generator().manual_seed(7), **settings
    )
    other = generate_text(
        tiny_gpt, TOKENIZER, text, 30, generator=torch.Generator().manual_seed(8), **settings
    )
    assert again == new and other != new
    one = sample_next(tiny_gpt, TOKENIZER, text, generator=torch.Generator().manual_seed(7))
    assert len(one) <= 1  # "" only when a special token was drawn


def test_a_special_token_drawn_is_not_a_character():
    eos = _logits(a=1.0)
    eos[TOKENIZER.eos_id] = 5.0
    model = FixedLogits(eos)
    assert sample_next(model, TOKENIZER, "ab", temperature=0) == ""
    assert generate_text(model, TOKENIZER, "ab", 3, temperature=0) == ""
    assert next_token_table(model, TOKENIZER, "ab", top=1).labels == ["[EOS]"]


def test_the_table_on_the_shipped_model():
    from tfm_edu.pretrained import char_gpt

    model, tokenizer = char_gpt()
    text = "The default value is "
    table = next_token_table(model, tokenizer, text, temperature=0.8, top_k=10, top_p=0.9)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.encode(text)])).logits[:, -1].double()  # (1, V)
    expected = next_token_probs(logits, temperature=0.8, top_k=10, top_p=0.9)[0].numpy()
    np.testing.assert_allclose(table.final, expected[table.ids], atol=1e-12)
    assert len(table.labels) == 20 and table.vocab_size == model.config.vocab_size == 107
    assert 1 <= table.num_kept <= 10 and table.final.sum() == pytest.approx(1.0)
