"""The shape tracer widget driven headless: a table for every model, a message for bad sizes."""

import pytest

from tfm_edu.viz import ShapeTracer


def _html(tracer):
    return tracer.output.outputs[0]["data"]["text/html"]


def test_builds_headless_with_a_table_of_the_overview():
    tracer = ShapeTracer()
    assert tracer.trace is not None and tracer.error is None
    assert "(B, T, D)" in _html(tracer) and "<table" in _html(tracer)
    assert "B = 2" in tracer.message and "Dh = D / H = 8" in tracer.message
    assert [r.path for r in tracer.rows][:3] == ["", "layers.0", "layers.0.self_attn"]
    assert "ShapeTracer" in tracer._repr_mimebundle_()["text/plain"]


def test_changing_a_control_updates_the_table():
    tracer = ShapeTracer(sublayer="layers.0.self_attn")
    assert ("(B, H, T, Dh)",) in [r.output_symbols for r in tracer.rows]
    tracer.boxes["num_heads"].value = 8  # as if typed
    assert "Dh = D / H = 4" in tracer.message
    assert tracer.trace.row("layers.0.self_attn.q_heads").outputs == ((2, 8, 6, 4),)
    assert tracer.sublayer_dropdown.value == "layers.0.self_attn"  # the view is kept
    tracer.boxes["length"].value = 11
    assert "(2, 8, 11, 11)" in _html(tracer)


def test_bad_sizes_show_a_message_not_a_traceback():
    tracer = ShapeTracer()
    tracer.set_config(d_model=64, num_heads=3)
    assert tracer.trace is None and isinstance(tracer.error, ValueError)
    assert "must divide d_model" in tracer.message and tracer.output.outputs == ()
    tracer.set_config(batch_size=64, length=512, num_heads=64)
    assert "make B, T or H smaller" in tracer.message
    tracer.set_config(batch_size=2, length=6, num_heads=4)
    assert tracer.error is None and tracer.rows


def test_model_choice_changes_the_sublayers_and_the_controls():
    tracer = ShapeTracer()
    tracer.model_dropdown.value = "seq2seq (encoder-decoder)"
    labels = [label for label, _ in tracer.sublayer_dropdown.options]
    assert "decoder layer 0 › cross-attention" in labels
    assert tracer.boxes["source_length"].layout.display == ""
    tracer.set_sublayer("decoder layer 0 › cross-attention")
    assert ("(B, H, T, S)",) in [r.output_symbols for r in tracer.rows]
    assert "(2, 4, 6, 9)" in _html(tracer)  # T = 6 queries, S = 9 keys
    tracer.model_dropdown.value = "ViT"
    assert tracer.boxes["length"].layout.display == "none"
    assert tracer.boxes["image_size"].layout.display == ""
    assert tracer.sublayer_dropdown.value == ""  # no cross-attention in a ViT: back to overview
    assert "T = P + 1" in tracer.message


def test_fewer_layers_falls_back_to_the_overview():
    tracer = ShapeTracer(sublayer="layers.1.feed_forward")
    tracer.boxes["num_layers"].value = 1
    assert tracer.sublayer_dropdown.value == "" and tracer.rows[0].path == ""
    with pytest.raises(ValueError, match="sublayer must be one of"):
        tracer.set_sublayer("layers.5")
    with pytest.raises(ValueError, match="model must be one of"):
        ShapeTracer(model="GPT-5")
