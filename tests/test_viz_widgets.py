"""The widgets driven headless: every input gives a figure or a message, never an exception."""

import numpy as np
import pytest

from tfm_edu.analysis import date_output_note, reads_as_date, valid_iso_date
from tfm_edu.data.toy import toy_attention
from tfm_edu.maps import AttentionMaps
from tfm_edu.positional import sinusoidal_encoding
from tfm_edu.viz import AttentionExplorer, PositionalEncodingExplorer
from tfm_edu.viz._common import ZERO_WIDTH_SPACE


def _ticks(figure):
    return [label.replace(ZERO_WIDTH_SPACE, "") for label in figure.data[0].x]


def _two_layer_model(sentence):
    tokens = sentence.split()
    T = len(tokens)
    attentions = np.broadcast_to(np.eye(T), (2, 3, T, T))  # (L, H, T, T)
    return tokens, [attentions[0], attentions[1][None]]  # one (H,T,T), one (1,H,T,T)


def test_typing_a_sentence_redraws_with_the_new_tokens():
    explorer = AttentionExplorer(toy_attention)
    assert _ticks(explorer.figure)[:3] == ["The", "cat", "sat"]
    assert explorer.output.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"]
    explorer.sentence_box.value = "A dog chased the other dog"  # what Enter does
    assert _ticks(explorer.figure) == ["A", "dog", "chased", "the", "other", "dog"]
    assert explorer.message == ""
    assert explorer.current_maps.attentions.shape == (1, 4, 6, 6)


def test_empty_input_single_token_and_punctuation_only():
    explorer = AttentionExplorer(toy_attention)
    explorer.set_sentence("   ")
    assert explorer.figure is None and "Type a sentence" in explorer.message
    assert explorer.output.outputs == ()
    explorer.set_sentence("cat")
    assert _ticks(explorer.figure) == ["cat"] and explorer.message == ""
    np.testing.assert_allclose(explorer.figure.data[0].z, [[1.0]])


def test_a_500_token_sentence_pages_instead_of_failing():
    explorer = AttentionExplorer(toy_attention, max_tokens=64)
    explorer.set_sentence(" ".join(f"w{i}" for i in range(500)))
    assert "500 tokens" in explorer.message and "tokens 0–63" in explorer.message
    assert len(explorer.figure.data[0].x) == 64
    ticks = [t.replace(ZERO_WIDTH_SPACE, "") for t in explorer.figure.layout.xaxis.ticktext]
    assert ticks == [f"w{i}" for i in range(64)]  # a window of 64 keeps every label
    assert explorer.query_slider.max == 500 - 64 and explorer.query_slider.layout.display == ""
    explorer.query_slider.value = 436
    assert _ticks(explorer.figure)[-1] == "w499" and "tokens 436–499" in explorer.message
    explorer.set_view(layer="all", head="all")
    assert len(explorer.figure.data) == 4 and len(explorer.figure.data[0].x) == 64
    explorer.set_sentence("short again")
    assert explorer.query_slider.layout.display == "none" and "500" not in explorer.message


def test_errors_from_the_model_are_messages_not_tracebacks():
    def broken(sentence):
        raise KeyError("unknown word 'zzz'")

    explorer = AttentionExplorer({"toy": toy_attention, "broken": broken})
    assert explorer.model_dropdown.layout.display == ""
    explorer.model_dropdown.value = "broken"
    assert explorer.figure is None and isinstance(explorer.error, KeyError)
    assert "broken could not process this input: KeyError" in explorer.message
    assert "Traceback" not in explorer.message_html.value
    explorer.model_dropdown.value = "toy"
    assert explorer.figure is not None and explorer.message == ""


def test_a_model_returning_nonsense_gets_a_message():
    explorer = AttentionExplorer(lambda s: "not maps")
    assert explorer.figure is None and "pair (tokens, attentions)" in explorer.message


def test_dict_of_models_with_different_depths():
    explorer = AttentionExplorer({"toy": toy_attention, "two layers": _two_layer_model})
    explorer.model_dropdown.value = "two layers"
    assert explorer.current_maps.attentions.shape[:2] == (2, 3)
    assert [value for _, value in explorer.layer_dropdown.options] == ["all", 0, 1]
    explorer.set_view(layer=1, head=2)
    assert explorer.figure.layout.title.text.startswith("two layers · layer 1, head 2")
    explorer.set_view(layer="all", head="all")
    assert len(explorer.figure.data) == 6
    explorer.set_view(layer="all", head=1)
    assert len(explorer.figure.data) == 2  # head 1 in each layer
    explorer.set_view(layer=0, head="all")
    assert len(explorer.figure.data) == 3
    explorer.model_dropdown.value = "toy"  # one layer: the view falls back to what exists
    assert explorer.layer_dropdown.value in ("all", 0)


def test_pair_mode_passes_both_sentences():
    seen = []

    def pair_model(a, b):
        seen.append((a, b))
        return toy_attention(f"{a} [SEP] {b}")

    explorer = AttentionExplorer(pair_model, sentence="a cat", sentence_b="a dog", pair=True)
    assert seen == [("a cat", "a dog")] and "[" in _ticks(explorer.figure)
    explorer.set_sentence("one", "two")
    assert seen[-1] == ("one", "two")
    explorer.sentence_b_box.value = ""
    assert explorer.figure is None and "two sentences" in explorer.message


def test_cross_attention_maps_and_notices():
    def translator(sentence):
        queries = ["<bos>", "x", "y"]
        keys = sentence.split()
        weights = np.full((1, 2, 3, len(keys)), 1 / len(keys))
        return AttentionMaps(queries, weights, keys, ["cross"], notice="truncated to 128 tokens")

    explorer = AttentionExplorer(translator, sentence="le chat dort")
    assert _ticks(explorer.figure) == ["le", "chat", "dort"]
    assert list(explorer.figure.data[0].y) == ["&lt;bos&gt;", "x", "y"]
    assert "truncated to 128 tokens" in explorer.message


def test_display_and_bad_arguments():
    explorer = AttentionExplorer(toy_attention, title="Toy")
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("AttentionExplorer")
    assert "run this cell" in bundle["text/plain"]  # not "run this notebook in JupyterLab"
    with pytest.raises(ValueError, match="callable"):
        AttentionExplorer("not a model")
    with pytest.raises(ValueError, match="head must be one of"):
        explorer.set_view(head=99)
    with pytest.raises(ValueError, match="max_tokens"):
        AttentionExplorer(toy_attention, max_tokens=0)


def test_hint_says_whether_rows_sum_to_1():
    explorer = AttentionExplorer(toy_attention)
    assert "each row sums to 1" in explorer.hint and "need not" not in explorer.hint
    explorer.set_view(head="all")
    assert "largest weight" in explorer.hint  # grids scale to their maximum

    def a_to_b(a, b):  # a sub-block: A's attention on B only, rows sum to less than 1
        keys = b.split()
        return AttentionMaps(a.split(), np.full((1, 2, len(a.split()), len(keys)), 0.1), keys)

    pair = AttentionExplorer(
        {"MiniLM: sentence A -> sentence B": a_to_b, "whole": lambda a, b: toy_attention(a)},
        pair=True,
        sentence="a man plays",
        sentence_b="someone plays music",
    )
    assert "need not sum to 1" in pair.hint and "each row sums to 1" not in pair.hint
    pair.model_dropdown.value = "whole"
    assert "each row sums to 1" in pair.hint
    width = int(pair.model_dropdown.layout.width.removesuffix("px"))
    assert width >= 8 * len("MiniLM: sentence A -> sentence B") + 50  # the option is not cut


def _fake_translator(sentence):
    output = "2003-03-0" if sentence == "a" else "1998-03-03"
    queries = [*output, "[EOS]"]
    weights = np.full((2, 4, len(queries), len(sentence)), 1 / len(sentence))
    return AttentionMaps(queries, weights, list(sentence), ["cross 0", "cross 1"])


def test_translator_note_says_when_the_output_is_made_up():
    explorer = AttentionExplorer(
        _fake_translator, sentence="3rd of March 1998", note=date_output_note
    )
    assert explorer.message == "" and explorer.figure is not None
    explorer.set_sentence("a")
    assert "made up" in explorer.message and '"2003-03-0"' in explorer.message
    assert explorer.figure is not None  # the map is still drawn, with the warning above it
    assert reads_as_date("Tuesday,  march 3,1998") and not reads_as_date("3/4/1998")
    assert not valid_iso_date("1999-02-31") and valid_iso_date("1998-03-03")

    def broken_note(sentence, maps):
        raise RuntimeError("oops")

    explorer = AttentionExplorer(_fake_translator, sentence="a", note=broken_note)
    assert "note for this input failed" in explorer.message and explorer.figure is not None
    with pytest.raises(ValueError, match="note must be a callable"):
        AttentionExplorer(toy_attention, note="not callable")


def test_positional_explorer_updates_for_every_control():
    explorer = PositionalEncodingExplorer(d_model=16, n_positions=20)
    np.testing.assert_allclose(explorer.table, sinusoidal_encoding(20, 16))
    explorer.d_model_slider.value = 32
    assert explorer.table.shape == (20, 32) and np.asarray(explorer.figure.data[0].z).shape == (
        20,
        32,
    )
    explorer.positions_slider.value = 50
    assert explorer.table.shape == (50, 32)
    explorer.base_slider.value = 100.0
    np.testing.assert_allclose(explorer.table, sinusoidal_encoding(50, 32, 100.0))
    explorer.view_toggle.value = "waves"
    assert [trace.name for trace in explorer.figure.data] == [
        f"dimension {d}" for d in (0, 10, 11, 30)
    ]
    explorer.dims_box.value = "3, 40, x"
    assert [trace.name for trace in explorer.figure.data] == ["dimension 3"]
    assert "40, x" in explorer.message
    explorer.view_toggle.value = "similarity"
    assert [trace.name for trace in explorer.figure.data] == [
        "from position 0",
        "from position 25",
    ]
    explorer.kind_toggle.value = "rope"
    assert explorer.vector_dropdown.layout.display == ""  # the RoPE-only control appears
    # Rotating (1, 0, 1, 0, ...) traces cos and sin: the sinusoidal table with the pairs swapped.
    sinusoidal = sinusoidal_encoding(50, 32, 100.0)
    np.testing.assert_allclose(explorer.table[:, 0::2], sinusoidal[:, 1::2], atol=1e-5)
    np.testing.assert_allclose(explorer.table[:, 1::2], sinusoidal[:, 0::2], atol=1e-5)
    explorer.vector_dropdown.value = "random"
    first, second = (np.asarray(trace.y) for trace in explorer.figure.data)
    np.testing.assert_allclose(first[:25], second[25:], atol=1e-3)  # only the offset matters
    assert explorer.message == ""
