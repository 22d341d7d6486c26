"""Chapter 9's explorer and view driven headless: `GenerationExplorer` on the shipped character
GPT, and `next_token_figure`'s checks. Every input gives a figure or a note, never a traceback."""

import numpy as np
import pytest
import torch
from torch import nn

from tfm_edu.analysis import generate_text, next_token_table
from tfm_edu.viz import GenerationExplorer, next_token_figure
from tfm_edu.viz._common import ZERO_WIDTH_SPACE

PROMPT = "The default value is "
ERROR, NOTICE = "#d93025", "#f5b400"  # the border colours of an error and of a notice


@pytest.fixture(scope="module")
def char():
    from tfm_edu.pretrained import char_gpt

    return char_gpt()


def _trace(figure, name):
    return next(trace for trace in figure.data if trace.meta == name)


def _bars(figure, name):
    """The heights of one trace's bars (None where it draws none)."""
    return list(_trace(figure, name).y)


def test_the_explorer_builds_with_the_shipped_model(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT)
    assert explorer.message == "" and explorer.table is not None
    assert len(explorer.figure.data) == 3 and len(_bars(explorer.figure, "raw")) == 20
    ticks = [t.replace(ZERO_WIDTH_SPACE, "") for t in explorer.figure.layout.xaxis.ticktext]
    assert ticks == [t.replace("&lt;", "<").replace("&gt;", ">") for t in explorer.table.labels]
    z = np.asarray(explorer.attention_figure.data[0].z)
    assert z.shape == (4, len(PROMPT))  # one row per head, one column per prompt character
    np.testing.assert_allclose(z.sum(-1), 1.0, atol=2e-3)  # rounded to 4 decimals
    outputs = explorer.output.outputs
    assert len(outputs) == 2 and all("application/vnd.plotly.v1+json" in o["data"] for o in outputs)
    assert "temperature 1: no top-k or top-p" in explorer.figure.layout.annotations[0].text


def test_the_figure_follows_temperature_top_k_and_top_p(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT)
    first = _bars(explorer.figure, "renormalised")
    explorer.temperature_slider.value = 0.5
    sharper = _bars(explorer.figure, "renormalised")
    assert sharper != first and sharper[0] > first[0]  # a lower temperature favours the top
    explorer.top_k_slider.value = 3
    kept = [y for y in _bars(explorer.figure, "renormalised") if y is not None]
    assert len(kept) == 3 and sum(kept) == pytest.approx(1.0)
    assert len([y for y in _bars(explorer.figure, "cut") if y is not None]) == 17
    assert "top-k 3 keeps 3 of 107 tokens" in explorer.figure.layout.annotations[0].text
    explorer.top_k_slider.value = 0  # off
    explorer.top_p_slider.value = 0.3
    assert explorer.settings() == {"temperature": 0.5, "top_k": None, "top_p": 0.3}
    nucleus = explorer.table.num_kept
    assert 1 <= nucleus < 107 and "top-p 0.3" in explorer.table.summary
    expected = next_token_table(*char, PROMPT, temperature=0.5, top_p=0.3)
    np.testing.assert_allclose(explorer.table.final, expected.final)
    explorer.temperature_slider.value = 0.0
    assert explorer.table.greedy and explorer.top_k_slider.disabled
    assert [y for y in _bars(explorer.figure, "renormalised") if y is not None] == [1.0]
    explorer.temperature_slider.value = 1.0
    assert not explorer.top_p_slider.disabled


def test_sample_one_appends_one_character_reproducibly(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT, seed=3)
    drawn = [explorer.sample_one() for _ in range(3)]
    assert all(len(c) == 1 for c in drawn) and explorer.prompt == PROMPT + "".join(drawn)
    assert explorer.message.startswith("Sampled ")
    twin = GenerationExplorer(*char, prompt=PROMPT, seed=3)
    twin.sample_button.click()  # as the learner does
    twin.sample_button.click()
    twin.sample_button.click()
    assert twin.prompt == explorer.prompt
    explorer.set_prompt(PROMPT)
    explorer.reset_seed()
    assert explorer.sample_one() == drawn[0]


def test_generate_appends_200_characters_with_the_explorers_generator(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT, seed=5, top_k=20)
    explorer.generate_button.click()
    assert len(explorer.appended) == 200 and explorer.prompt == PROMPT + explorer.appended
    assert "Generated 200 characters" in explorer.message
    expected = generate_text(
        *char, PROMPT, 200, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(5)
    )
    assert explorer.appended == expected
    other = GenerationExplorer(*char, prompt=PROMPT, seed=6, top_k=20)
    assert other.generate() != expected


def test_an_empty_prompt_is_an_error_and_no_figure(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT)
    explorer.prompt_box.value = ""  # what Enter on an empty box does
    assert "empty" in explorer.message and ERROR in explorer.message_html.value
    assert explorer.figure is None and explorer.attention_figure is None
    assert explorer.output.outputs == () and explorer.table is None
    assert explorer.sample_one() == "" and explorer.prompt == ""  # still no traceback
    assert "empty" in explorer.message
    explorer.prompt_box.value = "a"
    assert explorer.figure is not None and explorer.message == ""


def test_unknown_characters_get_a_notice_and_still_draw(char):
    explorer = GenerationExplorer(*char, prompt="naïve café ")
    assert "read as [UNK]" in explorer.message and "'ï'" in explorer.message
    assert NOTICE in explorer.message_html.value and ERROR not in explorer.message_html.value
    assert explorer.figure is not None and explorer.attention_figure is not None
    assert explorer.maps.key_tokens[2] == "[UNK]"


def test_a_300_character_prompt_gets_a_notice_and_a_figure(char):
    text = ("Return the value of the named attribute of object. " * 6)[:300]
    explorer = GenerationExplorer(*char, prompt=text)
    assert "300 characters" in explorer.message and "128 dropped" in explorer.message
    assert "last 64 of the 172 characters" in explorer.message
    assert NOTICE in explorer.message_html.value and explorer.figure is not None
    assert np.asarray(explorer.attention_figure.data[0].z).shape == (4, 64)
    keys = [k.replace(ZERO_WIDTH_SPACE, "") for k in explorer.attention_figure.data[0].x]
    assert "".join(keys).replace("␣", " ") == text[-64:]


def test_new_lines_show_as_a_glyph_in_the_one_line_box(char):
    explorer = GenerationExplorer(*char, prompt="def f(x):\n    return")
    assert explorer.prompt_box.value == "def f(x):⏎    return"
    assert explorer.prompt == "def f(x):\n    return" and "⏎" in explorer.maps.key_tokens
    explorer.prompt_box.value = "x = 1⏎y"  # typing the glyph means a new line
    expected = next_token_table(*char, "x = 1\ny")
    np.testing.assert_allclose(explorer.table.final, expected.final)
    assert explorer.message == ""


def test_the_layer_dropdown_redraws_only_the_attention(char):
    explorer = GenerationExplorer(*char, prompt=PROMPT)
    table, bars = explorer.table, explorer.figure
    z0 = np.asarray(explorer.attention_figure.data[0].z)
    explorer.layer_dropdown.value = 3
    assert explorer.table is table and "layer 3" in explorer.attention_figure.layout.title.text
    assert not np.allclose(np.asarray(explorer.attention_figure.data[0].z), z0)
    assert _bars(explorer.figure, "renormalised") == _bars(bars, "renormalised")


def test_a_model_that_fails_gives_a_note(char):
    class Broken(nn.Module):
        config = char[0].config

        def forward(self, *args, **kwargs):
            raise RuntimeError("out of memory (pretend)")

    explorer = GenerationExplorer(Broken(), char[1], prompt=PROMPT)
    assert "could not read this prompt: RuntimeError" in explorer.message
    assert explorer.figure is None and explorer.output.outputs == ()
    assert explorer.sample_one() == "" and "Could not sample" in explorer.message


def test_the_explorer_rejects_bad_settings(char):
    with pytest.raises(ValueError, match="temperature"):
        GenerationExplorer(*char, temperature=3.0)
    with pytest.raises(ValueError, match="top_p"):
        GenerationExplorer(*char, top_p=0.01)
    with pytest.raises(ValueError, match="GPT"):
        GenerationExplorer(lambda ids: ids, char[1])


def test_the_view_draws_raw_cut_and_renormalised_bars():
    labels, raw, kept = ["␣", "e", "<"], [0.5, 0.3, 0.2], np.array([True, True, False])
    figure = next_token_figure(labels, raw, [0.625, 0.375, 0.0], kept, title="next")
    assert _bars(figure, "raw") == [0.5, 0.3, None] and _bars(figure, "cut") == [None, None, 0.2]
    assert _bars(figure, "renormalised") == [0.625, 0.375, None]
    assert list(figure.layout.xaxis.ticktext) == ["␣", "e", "&lt;"]  # plotly reads HTML
    assert "cut" in _trace(figure, "cut").hovertemplate and figure.layout.height == 380
    assert figure.layout.annotations[0].text == "2 of the 3 characters shown may be drawn"
    said = next_token_figure(labels, raw, [0.625, 0.375, 0.0], kept, summary="top-k 2 keeps 2")
    assert said.layout.annotations[0].text == "top-k 2 keeps 2"


@pytest.mark.parametrize(
    ("labels", "raw", "final", "kept", "message"),
    [
        (["a", "b"], [0.5, 0.5], [1.0], [True, False], "final 1 and kept 2"),
        (["a"], [0.5, 0.5], [0.5, 0.5], [True, True], "raw has 2, but labels has 1"),
        ("ab", [0.5, 0.5], [0.5, 0.5], [True, True], "a list of 2 strings"),
        (["a", "b"], [1.5, 0.5], [1.0, 0.0], [True, False], r"in \[0, 1\]"),
        (["a", "b"], [0.5, 0.5], [0.5, float("nan")], [True, True], r"in \[0, 1\]"),
        (["a", "b"], [0.5, 0.5], [0.5, 0.5], [True, False], "0 where kept is False"),
        (["a", "b"], [0.5, 0.5], [0.5, 0.5], [1, 1], "boolean"),
        ([], [], [], np.array([], dtype=bool), "nothing to draw"),
    ],
)
def test_the_view_checks_its_inputs(labels, raw, final, kept, message):
    with pytest.raises(ValueError, match=message):
        next_token_figure(labels, raw, final, np.asarray(kept))
