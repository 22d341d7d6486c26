"""The shape tracer: every model's shapes against numbers written out here, letters read by
position, clear errors for sizes no model can take, and hooks that leave the model as it was."""

import pytest
import torch

from tfm_edu.analysis.shapes import (
    MODELS,
    ShapeConfig,
    shape_symbols,
    trace_module,
    trace_shapes,
)
from tfm_edu.layers import Encoder
from tfm_edu.models.bert import BERTConfig

# B, T, S, D, H (Dh = 6, d_ff = 96, layers = 2): all different, so every letter is unambiguous
CONFIG = ShapeConfig(batch_size=3, length=5, source_length=7, d_model=24, num_heads=4)


def _out(trace, path):
    return trace.row(path).outputs


def test_encoder_stack_shapes_step_by_step():
    trace = trace_shapes("encoder stack", CONFIG)
    assert _out(trace, "") == ((3, 5, 24), (3, 4, 5, 5), (3, 4, 5, 5))  # x and one map per layer
    attention = "layers.1.self_attn"
    assert _out(trace, f"{attention}.q_proj") == ((3, 5, 24),)
    assert _out(trace, f"{attention}.q_heads") == ((3, 4, 5, 6),)
    assert _out(trace, f"{attention}.weights") == ((3, 4, 5, 5),)
    assert _out(trace, f"{attention}.merge") == ((3, 5, 24),)
    assert _out(trace, "layers.0.feed_forward.linear1") == ((3, 5, 96),)
    assert trace.row(f"{attention}.q_heads").output_symbols == ("(B, H, T, Dh)",)
    assert trace.row(f"{attention}.weights").output_symbols == ("(B, H, T, T)",)
    assert trace.row("layers.0.feed_forward.linear1").output_symbols == ("(B, T, d_ff)",)
    assert trace.notes == []


def test_measured_and_derived_rows_are_told_apart():
    trace = trace_shapes("encoder layer", CONFIG)
    derived = {r.path for r in trace.rows if not r.measured}
    assert derived == {"self_attn.q_heads", "self_attn.k_heads", "self_attn.v_heads",
                       "self_attn.scores", "self_attn.heads"}  # fmt: skip
    assert trace.row("self_attn.weights").measured  # the weights the module returned
    assert trace.row("self_attn.merge").measured  # out_proj's input
    assert all(r.how for r in trace.rows)


def test_decoder_layer_cross_attention_is_T_by_S():
    trace = trace_shapes("decoder layer", CONFIG)
    assert _out(trace, "self_attn.weights") == ((3, 4, 5, 5),)
    assert _out(trace, "cross_attn.k_heads") == ((3, 4, 7, 6),)
    assert _out(trace, "cross_attn.weights") == ((3, 4, 5, 7),)
    assert trace.row("cross_attn.weights").output_symbols == ("(B, H, T, S)",)
    assert trace.row("cross_attn.k_proj").input_symbols == ("(B, S, D)",)


def test_seq2seq_encoder_reads_S_decoder_reads_T_logits_are_B_T_V():
    trace = trace_shapes("seq2seq (encoder-decoder)", CONFIG)
    assert trace.letters["V"] == 71
    assert _out(trace, "") == ((3, 5, 71),)
    assert _out(trace, "encoder.layers.0.self_attn.weights") == ((3, 4, 7, 7),)
    assert _out(trace, "decoder.layers.1.self_attn.weights") == ((3, 4, 5, 5),)
    assert _out(trace, "decoder.layers.1.cross_attn.weights") == ((3, 4, 5, 7),)
    assert trace.row("output").output_symbols == ("(B, T, V)",)
    assert trace.row("encoder").input_symbols == ("(B, S, D)", "(B, 1, 1, S)")


def test_bert_logits_are_B_T_V():
    trace = trace_shapes("BERT (masked LM)", CONFIG)
    V = BERTConfig().vocab_size
    assert _out(trace, "mlm_head.decoder") == ((3, 5, V),)
    assert trace.row("mlm_head.decoder").output_symbols == ("(B, T, V)",)
    assert _out(trace, "bert.encoder.layers.1.self_attn.weights") == ((3, 4, 5, 5),)
    assert trace.row("bert.embeddings.token_embedding").input_symbols == ("(B, T)",)


def test_vit_tokens_are_patches_plus_cls():
    config = ShapeConfig(batch_size=3, d_model=24, num_heads=4, image_size=8, patch_size=2)
    trace = trace_shapes("ViT", config)
    assert (trace.letters["P"], trace.letters["T"]) == (16, 17)  # (8 / 2)^2 patches + [CLS]
    assert trace.row("patch_embedding.proj").inputs[0][1] == (3, 16, 4)  # 2*2 pixels, 1 channel
    assert _out(trace, "patch_embedding") == ((3, 16, 24),)
    assert _out(trace, "position_embedding") == ((3, 17, 24),)
    assert _out(trace, "encoder.layers.0.self_attn.weights") == ((3, 4, 17, 17),)
    assert _out(trace, "") == ((3, 10),)
    assert trace.row("").input_symbols == ("(B, C, img, img)",)


def test_the_same_number_in_two_roles_is_read_by_position():
    # ViT default: P = 4 patches and H = 4 heads; a patch is read as P, a head axis as H.
    trace = trace_shapes("ViT", ShapeConfig(num_heads=4, image_size=8, patch_size=4))
    assert trace.row("patch_embedding").output_symbols == ("(B, P, D)",)
    assert trace.row("encoder.layers.0.self_attn.weights").output_symbols == ("(B, H, T, T)",)
    letters = {"B": 2, "H": 4, "T": 6, "S": 9, "Dh": 8, "D": 32}
    assert shape_symbols((2, 4, 6, 9), letters) == "(B, H, T, S)"
    assert shape_symbols((2, 4, 6, 8), letters) == "(B, H, T, Dh)"
    assert shape_symbols((2, 1, 32), letters) == "(B, 1, D)"
    assert shape_symbols((5, 7), letters) == "(5, 7)"  # no letter has these numbers


def test_two_letters_with_one_number_are_both_shown_and_noted():
    trace = trace_shapes("decoder layer", ShapeConfig(length=6, source_length=6))
    assert trace.row("cross_attn.weights").output_symbols == ("(B, H, T|S, T|S)",)
    assert any("T = S = 6" in note for note in trace.notes)


def test_sublayers_and_overview():
    trace = trace_shapes("encoder stack", CONFIG)
    paths = [p for _, p in trace.sublayers()]
    assert paths == ["", "layers.0", "layers.0.self_attn", "layers.0.feed_forward",
                     "layers.1", "layers.1.self_attn", "layers.1.feed_forward"]  # fmt: skip
    inside = trace.select("layers.0.self_attn")
    assert inside[0].path == "layers.0.self_attn" and len(inside) == 12  # 1 + 11 steps
    assert all(r.path.startswith("layers.0.self_attn") for r in inside)
    overview = {r.path for r in trace.select("")}
    assert "layers.0.self_attn" in overview and "layers.0.self_attn.q_proj" not in overview


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"d_model": 64, "num_heads": 3}, "must divide d_model"),
        ({"batch_size": 0}, "positive whole number"),
        ({"length": -2}, "positive whole number"),
        ({"d_model": 32.0}, "positive whole number"),
        ({"num_layers": True}, "positive whole number"),
        ({"length": 10**6}, "limit of 512"),
        ({"image_size": 8, "patch_size": 3}, "must divide image_size"),
    ],
)
def test_bad_sizes_raise_clear_errors(sizes, message):
    with pytest.raises(ValueError, match=message):
        ShapeConfig(**sizes)


def test_too_big_to_run_and_unknown_model_are_clear_errors():
    huge = ShapeConfig(batch_size=64, length=512, d_model=64, num_heads=64)
    with pytest.raises(ValueError, match="make B, T or H smaller"):
        trace_shapes("encoder layer", huge)
    wide = ShapeConfig(d_model=1024, num_heads=8, num_layers=12)
    with pytest.raises(ValueError, match="weights, more than the tracer builds"):
        trace_shapes("encoder stack", wide)
    with pytest.raises(ValueError, match="model must be one of"):
        trace_shapes("GPT-5")


def test_hooks_are_removed_and_forward_is_unchanged():
    torch.manual_seed(0)
    encoder = Encoder(num_layers=2, d_model=8, num_heads=2, d_ff=16).eval()
    x = torch.randn(2, 3, 8)
    before, _ = encoder(x)
    letters = {"B": 2, "T": 3, "D": 8, "H": 2, "Dh": 4, "d_ff": 16}
    first = trace_module(encoder, x, letters=letters)
    second = trace_module(encoder, x, letters=letters)
    assert first.rows == second.rows  # nothing left behind from the first run
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in encoder.modules())
    torch.testing.assert_close(encoder(x)[0], before)


def test_every_model_in_the_table_traces():
    for name, entry in MODELS.items():
        trace = trace_shapes(name)
        assert trace.rows[0].path == "" and all(r.outputs for r in trace.rows), name
        assert entry.uses <= set(ShapeConfig.__dataclass_fields__), name
