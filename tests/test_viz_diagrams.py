"""The architecture diagrams say what our modules do: the order of LayerNorm, sublayer and "+"
(checked against the real layers' call order), residual arrows that bypass the sublayer, which
mask each attention gets, the shapes on the arrows; and they draw readably, headless."""

from __future__ import annotations

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from tfm_edu.layers import Decoder, DecoderLayer, Encoder, EncoderLayer
from tfm_edu.viz import (
    bert_diagram,
    decoder_layer_diagram,
    encoder_layer_diagram,
    norm_placement_diagram,
    seq2seq_diagram,
    vit_diagram,
)
from tfm_edu.viz.diagrams import diagram_data

SUBLAYER_KINDS = ("attention", "ffn")
MODULE_LABEL = {  # module attribute in tfm_edu.layers -> the box that draws it
    "self_attn": {"multi-head self-attention", "masked self-attention"},
    "cross_attn": {"cross-attention"},
    "feed_forward": {"feed-forward"},
    "norm1": {"LayerNorm"},
    "norm2": {"LayerNorm"},
    "norm3": {"LayerNorm"},
}


def _labels(diagram, keys):
    return [diagram.node(k).label for k in keys if diagram.node(k).kind not in ("split", "io")]


def _call_order(layer, *inputs):
    """Names of the layer's sublayers and norms in the order their forward finishes."""
    order = []
    for name in MODULE_LABEL:
        if hasattr(layer, name):
            getattr(layer, name).register_forward_hook(lambda *_, n=name: order.append(n))
    with torch.no_grad():
        layer(*inputs)
    return order


def _figure_texts(fig):
    return {t.get_text() for t in fig.findobj(Text)}


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_order_is_the_real_layers_order(norm_first):
    diagram = diagram_data("encoder_layer", norm_first=norm_first)
    drawn = [x for x in _labels(diagram, diagram.path("input", "output")) if x != "+"]
    layer = EncoderLayer(d_model=8, num_heads=2, d_ff=16, norm_first=norm_first).eval()
    called = _call_order(layer, torch.randn(1, 3, 8))
    if norm_first:  # the stack's final LayerNorm comes after the layer
        assert drawn[-1] == "final LayerNorm"
        assert isinstance(Encoder(num_layers=1, d_model=8, num_heads=2, d_ff=16,
                                  norm_first=True).final_norm, torch.nn.LayerNorm)  # fmt: skip
        drawn = drawn[:-1]
    assert len(drawn) == len(called) == 4
    for label, name in zip(drawn, called, strict=True):
        assert label in MODULE_LABEL[name], (drawn, called)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_order_is_the_real_layers_order(norm_first):
    diagram = diagram_data("decoder_layer", norm_first=norm_first)
    drawn = [x for x in _labels(diagram, diagram.path("input", "output")) if x != "+"]
    layer = DecoderLayer(d_model=8, num_heads=2, d_ff=16, norm_first=norm_first).eval()
    called = _call_order(layer, torch.randn(1, 3, 8), torch.randn(1, 5, 8))
    if norm_first:
        assert drawn[-1] == "final LayerNorm"
        decoder = Decoder(num_layers=1, d_model=8, num_heads=2, d_ff=16, norm_first=True)
        assert isinstance(decoder.final_norm, torch.nn.LayerNorm)
        drawn = drawn[:-1]
    assert len(drawn) == len(called) == 6
    for label, name in zip(drawn, called, strict=True):
        assert label in MODULE_LABEL[name], (drawn, called)


def test_post_ln_norms_after_the_add_pre_ln_before_the_sublayer():
    for norm_first in (False, True):
        diagram = diagram_data("encoder_layer", norm_first=norm_first)
        path = [diagram.node(k) for k in diagram.path("input", "output")]
        # "|" marks a split point: where the residual arrow leaves the stream
        labels = ["|" if n.kind == "split" else n.label for n in path if n.kind != "io"]
        for i, label in enumerate(labels):
            if label in ("multi-head self-attention", "feed-forward"):
                assert labels[i + 1] == "+"
                if norm_first:  # LayerNorm on the branch, between the split and the sublayer
                    assert labels[i - 2 : i] == ["|", "LayerNorm"], labels
                else:  # LayerNorm on the stream, right after "+", before the next split
                    assert labels[i - 1] == "|" and labels[i + 2] == "LayerNorm", labels
        expected = (["|", "LayerNorm", "multi-head self-attention", "+", "|", "LayerNorm",
                     "feed-forward", "+", "final LayerNorm"] if norm_first else
                    ["|", "multi-head self-attention", "+", "LayerNorm", "|", "feed-forward",
                     "+", "LayerNorm"])  # fmt: skip
        assert labels == expected


@pytest.mark.parametrize(
    "name, options",
    [("encoder_layer", {"norm_first": False}), ("encoder_layer", {"norm_first": True}),
     ("decoder_layer", {"norm_first": False}), ("decoder_layer", {"norm_first": True}),
     ("seq2seq", {}), ("bert", {}), ("vit", {}), ("norm_placement", {})],
)  # fmt: skip
def test_every_residual_arrow_bypasses_one_sublayer(name, options):
    diagram = diagram_data(name, **options)
    residuals = [e for e in diagram.edges if e.kind == "residual"]
    assert residuals
    for edge in residuals:
        assert diagram.node(edge.source).kind == "split"
        assert diagram.node(edge.target).label == "+"
        skipped = [diagram.node(k).kind for k in diagram.path(edge.source, edge.target)[1:-1]]
        assert sum(kind in SUBLAYER_KINDS for kind in skipped) == 1, skipped
        assert skipped.count("norm") == (1 if skipped[0] == "norm" else 0)
        assert edge.via_x > diagram.node(edge.target).x  # drawn beside the stream, not on it


def test_masks_go_where_the_models_put_them():
    def note(diagram, label):
        (node,) = [n for n in diagram.nodes if n.label == label]
        return node.note

    for norm_first in (False, True):
        decoder = diagram_data("decoder_layer", norm_first=norm_first)
        assert "causal" in note(decoder, "masked self-attention")
        assert "padding" not in note(decoder, "masked self-attention")
        assert "padding (B, 1, 1, S)" in note(decoder, "cross-attention")
        assert "padding (B, 1, 1, T)" in note(
            diagram_data("encoder_layer", norm_first=norm_first), "multi-head self-attention"
        )
    assert "padding (B, 1, 1, T)" in note(diagram_data("bert"), "multi-head self-attention")
    assert note(diagram_data("vit"), "multi-head self-attention").startswith("no mask")
    seq2seq = diagram_data("seq2seq")
    assert "source padding (B, 1, 1, S)" in seq2seq.node("encoder_attention").note
    assert "causal" in seq2seq.node("decoder_self_attention").note


def test_seq2seq_memory_feeds_cross_attention_and_shapes_are_named():
    for norm_first in (False, True):
        diagram = diagram_data("seq2seq", norm_first=norm_first)
        (memory,) = [e for e in diagram.edges if e.kind == "memory"]
        assert (memory.source, memory.target) == ("encoder_memory", "decoder_cross_attention")
        encoder = _labels(diagram, diagram.path("encoder_input", "encoder_memory"))
        assert ("final LayerNorm" in encoder) is norm_first
        decoder = _labels(diagram, diagram.path("decoder_input", "decoder_logits"))
        assert decoder.index("masked self-attention") < decoder.index("cross-attention")
        assert decoder.index("cross-attention") < decoder.index("feed-forward")
        assert decoder[-1] == "Linear to the vocabulary"
    shapes = {e.label for e in diagram.edges}
    assert {"(B, S, D)", "(B, T, D)", "(B, T, V)", "(B, S)", "(B, T)"} <= shapes
    assert "(B, P+1, D)" in {e.label for e in diagram_data("vit").edges}


def test_bert_and_vit_read_what_the_models_read():
    bert = diagram_data("bert", num_layers=2, num_labels=3)
    mlm = _labels(bert, bert.path("input_ids", "mlm_logits"))
    assert mlm[:3] == ["token", "+", "LayerNorm"]  # embeddings summed, then normalised
    assert mlm[-1] == "pretraining: masked-LM head"
    assert "(B, 3)" in {e.label for e in bert.edges}
    assert not any(n.kind == "norm" and n.label == "final LayerNorm" for n in bert.nodes)
    only_mlm = diagram_data("bert", heads="mlm")
    assert not any(k.startswith("classifier") for k in (n.key for n in only_mlm.nodes))
    vit = diagram_data("vit", num_layers=4, num_patches=4)
    path = _labels(vit, vit.path("images", "logits"))
    assert path[:3] == ["patch embedding", "prepend [CLS]", "+ learned positions"]
    assert path[-3:] == ["final LayerNorm", "read [CLS]: h[:, 0]", "Linear head"]
    assert "P = 4 patches" in vit.title


@pytest.mark.parametrize(
    "make",
    [lambda: encoder_layer_diagram(norm_first=False),
     lambda: decoder_layer_diagram(norm_first=True),
     norm_placement_diagram,
     lambda: seq2seq_diagram(num_encoder_layers=2, num_decoder_layers=1),
     lambda: bert_diagram(num_layers=2),
     lambda: vit_diagram(num_layers=4, num_patches=4)],
)  # fmt: skip
def test_figures_draw_headless_and_every_text_fits_its_box(make):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = make()
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before  # not registered with pyplot: a notebook shows it once
    width, height = fig.get_size_inches()
    assert 4 <= width <= 9.8 and height <= 13.5  # ~950 px wide at the notebook's 100 dpi
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    checked = 0
    for text in fig.findobj(Text):
        gid = text.get_gid()
        if not gid:
            continue
        key = gid.split(":")[0]
        node = _node_of(fig, key)
        extent = text.get_window_extent(renderer)
        box_px = node.width * fig.dpi
        assert extent.width <= box_px - 4, (gid, text.get_text(), extent.width, box_px)
        checked += 1
    assert checked >= 8
    texts = _figure_texts(fig)
    assert "+" in texts and "residual path (skips the sublayer)" in texts


def _node_of(fig, key):
    for diagram in _DIAGRAMS_BY_TITLE.values():
        if fig.get_suptitle() == diagram.title:
            return diagram.node(key)
    raise AssertionError(f"no diagram titled {fig.get_suptitle()!r}")


_DIAGRAMS_BY_TITLE = {
    d.title: d
    for d in [diagram_data("encoder_layer", norm_first=False),
              diagram_data("decoder_layer", norm_first=True), diagram_data("norm_placement"),
              diagram_data("seq2seq", num_encoder_layers=2, num_decoder_layers=1),
              diagram_data("bert", num_layers=2), diagram_data("vit", num_layers=4, num_patches=4)]
}  # fmt: skip


def test_figure_shows_every_text_of_its_data():
    diagram = diagram_data("seq2seq", num_encoder_layers=2, num_decoder_layers=1)
    texts = _figure_texts(seq2seq_diagram(num_encoder_layers=2, num_decoder_layers=1))
    assert set(diagram.texts()) <= texts, set(diagram.texts()) - texts
    assert "encoder\n× 2 layers" in texts and "decoder\n× 1 layer" in texts
    assert "encoder (post-LN)\n× N layers" in _figure_texts(bert_diagram())


def test_post_and_pre_ln_side_by_side():
    diagram = diagram_data("norm_placement")
    post = _labels(diagram, diagram.path("post_input", "post_output"))
    pre = _labels(diagram, diagram.path("pre_input", "pre_output"))
    assert post[:3] == ["multi-head self-attention", "+", "LayerNorm"]
    assert pre[:3] == ["LayerNorm", "multi-head self-attention", "+"]
    assert diagram.node("post_input").x < diagram.node("pre_input").x


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="norm_first must be True"):
        encoder_layer_diagram(norm_first="pre")
    with pytest.raises(TypeError):
        decoder_layer_diagram()  # norm_first has no default: say which one you mean
    with pytest.raises(ValueError, match="num_encoder_layers must be a positive int"):
        seq2seq_diagram(num_encoder_layers=0)
    with pytest.raises(ValueError, match="heads must be a non-empty selection"):
        bert_diagram(heads=("nsp",))
    with pytest.raises(ValueError, match="heads must be a non-empty selection"):
        bert_diagram(heads=())
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        vit_diagram(num_classes=0)
    with pytest.raises(ValueError, match="name must be one of"):
        diagram_data("gpt")
    with pytest.raises(KeyError, match="no node 'nope'"):
        diagram_data("vit").node("nope")
