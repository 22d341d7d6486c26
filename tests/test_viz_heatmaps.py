"""Views run headless, return figures for NumPy and torch input, and reject mismatched labels."""

import matplotlib.figure
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tfm_edu.maps import AttentionMaps, as_attention_maps
from tfm_edu.numpy_attention import causal_mask, padding_mask, softmax
from tfm_edu.positional import sinusoidal_encoding
from tfm_edu.viz import (
    attention_grid,
    attention_heatmap,
    encoding_heatmap,
    encoding_waves,
    mask_heatmap,
    similarity_by_offset,
    value_heatmap,
)
from tfm_edu.viz._common import ZERO_WIDTH_SPACE

TOKENS = ["the", "cat", "saw", "the", "dog"]


def _weights(*shape, seed=0):
    return softmax(np.random.default_rng(seed).standard_normal(shape))


def _visible(labels):
    return [str(label).replace(ZERO_WIDTH_SPACE, "") for label in labels]


@pytest.mark.parametrize("to_input", [np.asarray, torch.from_numpy], ids=["numpy", "torch"])
@pytest.mark.parametrize("backend", ["plotly", "matplotlib"])
def test_every_view_returns_a_figure(to_input, backend):
    expected = go.Figure if backend == "plotly" else matplotlib.figure.Figure
    table = sinusoidal_encoding(20, 8)
    figures = [
        attention_heatmap(to_input(_weights(5, 5)), TOKENS, backend=backend),
        attention_grid(to_input(_weights(2, 3, 5, 5)), TOKENS, backend=backend),
        attention_grid(to_input(_weights(5, 5, 5)), TOKENS, backend=backend),
        mask_heatmap(to_input(causal_mask(5)), TOKENS, backend=backend),
        encoding_heatmap(to_input(table), backend=backend),
        encoding_waves(to_input(table), [0, 1, 6], backend=backend),
        similarity_by_offset(to_input(table), [0, 10], backend=backend),
    ]
    assert all(isinstance(fig, expected) for fig in figures)


def test_heatmap_keeps_repeated_tokens_and_shows_weights_in_hover():
    w = _weights(5, 5)
    fig = attention_heatmap(w, TOKENS, title="t")
    heatmap = fig.data[0]
    assert len(set(heatmap.x)) == 5 and len(set(heatmap.y)) == 5  # two "the" stay two columns
    assert _visible(heatmap.x) == TOKENS
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.autorange == "reversed"
    assert (heatmap.zmin, heatmap.zmax) == (0.0, 1.0)
    assert "%{z" in heatmap.hovertemplate and "%{x}" in heatmap.hovertemplate
    np.testing.assert_allclose(heatmap.z, w, atol=1e-4)


def test_numeric_and_html_like_labels_stay_categories():
    fig = attention_heatmap(_weights(3, 3), ["1", "<s>", "2"])
    assert fig.layout.xaxis.type == "category"  # "1", "2" must not become a numeric axis
    assert _visible(fig.data[0].x) == ["1", "&lt;s&gt;", "2"]  # plotly reads labels as HTML


def test_cross_attention_labels_and_matplotlib_into_given_axes():
    fig = attention_heatmap(_weights(2, 4), ["a", "b"], ["w", "x", "y", "z"])
    assert _visible(fig.data[0].x) == ["w", "x", "y", "z"]
    figure = matplotlib.figure.Figure()
    ax = figure.add_subplot()
    assert attention_heatmap(_weights(2, 2), ["$a", "b"], backend="matplotlib", ax=ax) is figure
    assert [t.get_text() for t in ax.get_yticklabels()] == [r"\$a", "b"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: attention_heatmap(_weights(5, 5), TOKENS[:4]), "4 labels but the weights"),
        (lambda: attention_heatmap(_weights(5, 6), TOKENS), "5 query_labels"),
        (lambda: attention_heatmap(_weights(5, 6), TOKENS, ["k"] * 5), "key_labels has 5"),
        (lambda: attention_heatmap(_weights(2, 5, 5), TOKENS), r"\(T, S\)"),
        (lambda: attention_grid(_weights(5, 5), TOKENS), r"\(R, C, T, S\) or \(H, T, S\)"),
        (lambda: attention_grid(_weights(2, 3, 5, 5), TOKENS[:3]), "3 labels"),
        (lambda: attention_grid(_weights(2, 3, 5, 5), TOKENS, row_titles=["a"]), "R=2"),
        (lambda: attention_grid(_weights(3, 5, 5), TOKENS, row_titles=["a"]), "row_titles"),
        (lambda: attention_heatmap(_weights(5, 5), TOKENS, backend="bokeh"), "backend"),
        (lambda: mask_heatmap(np.ones((5, 5)), TOKENS), "boolean"),
        (lambda: mask_heatmap(causal_mask(4), TOKENS), "5 labels .* 4 queries"),
        (lambda: encoding_waves(np.zeros((4, 3)), [3]), r"0\.\.2"),
        (lambda: similarity_by_offset(np.zeros((4, 3)), [4]), r"0\.\.3"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_grid_shapes_titles_and_shared_colour_scale():
    w = _weights(6, 12, 5, 5)
    fig = attention_grid(w, TOKENS, title="model view")
    assert len(fig.data) == 72
    assert all(trace.coloraxis == "coloraxis" for trace in fig.data)
    top = np.ceil(w.max() * 20) / 20  # the figure's largest weight, rounded up to 0.05
    assert fig.layout.coloraxis.cmin == 0.0 and fig.layout.coloraxis.cmax == pytest.approx(top)
    assert f"(0 to {top:.3g})" in fig.layout.coloraxis.colorbar.title.text
    scale = fig.layout.coloraxis.colorscale  # stretched near 0: a weight of 1/4 is half-way
    assert scale[0][1] != scale[-1][1] and len(scale) > 10
    fixed = attention_grid(w, TOKENS, value_range=(0.0, 1.0))
    assert (fixed.layout.coloraxis.cmin, fixed.layout.coloraxis.cmax) == (0.0, 1.0)
    texts = [a.text for a in fig.layout.annotations]
    assert "head 11" in texts and "layer 5" in texts
    assert "layer 2, head 7" in fig.data[2 * 12 + 7].hovertemplate
    assert fig.layout.width <= 960  # fits a laptop's notebook column


def test_heads_grid_wraps_into_rows():
    fig = attention_grid(_weights(12, 5, 5), TOKENS, col_titles=[f"h{i}" for i in range(12)])
    assert len(fig.data) == 12
    rows = {fig.layout[trace.yaxis.replace("y", "yaxis")].domain for trace in fig.data}
    assert len(rows) == 2  # 12 heads -> 2 rows of 6
    assert [a.text for a in fig.layout.annotations][:2] == ["h0", "h1"]


def test_mask_heatmap_broadcasts_a_padding_row():
    mask = padding_mask([3], 5)[0]  # (1, 5): keys 3 and 4 are padding
    fig = mask_heatmap(mask, TOKENS)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (5, 5) and z[:, :3].all() and not z[:, 3:].any()


def test_similarity_by_offset_plots_sinusoidal_dot_products():
    table = sinusoidal_encoding(30, 16)
    fig = similarity_by_offset(table, [0, 10], normalize=False)
    second = fig.data[1]
    assert list(second.x[:3]) == [-10, -9, -8]
    np.testing.assert_allclose(second.y, table[10] @ table.T, atol=1e-4)
    # Only the offset matters: both curves agree where they overlap.
    np.testing.assert_allclose(fig.data[0].y[:20], second.y[10:], atol=1e-3)


def test_as_attention_maps_accepts_the_usual_shapes():
    tokens = ["a", "b", "c"]
    per_layer = [torch.from_numpy(_weights(1, 2, 3, 3, seed=s)) for s in range(4)]
    for attentions, shape in [
        (_weights(3, 3), (1, 1, 3, 3)),
        (_weights(2, 3, 3), (1, 2, 3, 3)),
        (_weights(4, 2, 3, 3), (4, 2, 3, 3)),
        (per_layer, (4, 2, 3, 3)),
        ([p[0] for p in per_layer], (4, 2, 3, 3)),
    ]:
        maps = as_attention_maps((tokens, attentions))
        assert maps.attentions.shape == shape and maps.attentions.dtype == np.float64
    np.testing.assert_allclose(
        as_attention_maps((tokens, per_layer)).attentions[2], per_layer[2][0]
    )
    maps = AttentionMaps(tokens, _weights(1, 1, 3, 3))
    assert as_attention_maps(maps) is maps and maps.names == ["layer 0"] and maps.keys == tokens


@pytest.mark.parametrize(
    "result, message",
    [
        ("just a string", "pair"),
        ((["a", "b"], _weights(3, 3)), "2 query tokens"),
        (("ab", _weights(2, 2)), "list of strings"),
        ((["a"], np.zeros((1, 1, 1, 1, 1))), "got shape"),
        ((["a", "b"], [_weights(2, 2, 2), _weights(3, 2, 2)]), "same"),
        ((["a", "b"], [_weights(2, 2, 2, 2)]), "one sentence"),
        ((["a", "b"], []), "empty"),
    ],
)
def test_as_attention_maps_rejects_the_rest(result, message):
    with pytest.raises(ValueError, match=message):
        as_attention_maps(result)


def test_attention_maps_checks_key_tokens_and_layer_names():
    with pytest.raises(ValueError, match="S=4"):
        AttentionMaps(["a", "b"], _weights(1, 1, 2, 4), key_tokens=["x", "y", "z"])
    with pytest.raises(ValueError, match="L=1"):
        AttentionMaps(["a", "b"], _weights(1, 1, 2, 2), layer_names=["x", "y"])


def test_attention_heatmap_value_range_spans_raw_scores():
    scores = np.array([[-3.0, 5.0], [2.0, 0.5]])
    fig = attention_heatmap(scores, ["a", "b"], value_range=None)
    assert (fig.data[0].zmin, fig.data[0].zmax) == (-3.0, 5.0)
    fig = attention_heatmap(scores, ["a", "b"], backend="matplotlib", value_range=None)
    assert fig.axes[0].images[0].get_clim() == (-3.0, 5.0)
    assert attention_heatmap(np.eye(2), ["a", "b"]).data[0].zmax == 1.0


# ------------------------------------------------------------------ readable as a learner sees it


def _tick_labels(axis):
    """The labels an axis shows: ticktext, with the invisible repeat marks removed."""
    return _visible(axis.ticktext)


def _words(n):
    return [f"w{i}" for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 16, 64])
def test_every_token_has_its_tick_label_in_one_map(n):
    tokens = _words(n)
    fig = attention_heatmap(_weights(n, n), tokens, title="toy layer (untrained), head 0")
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.tickmode == "array" and _tick_labels(axis) == tokens
        assert list(axis.tickvals) == list(fig.data[0].x)  # one tick on every category
        assert "labelled" not in axis.title.text
    assert fig.layout.meta["label_stride"] == {"x": 1, "y": 1}
    assert fig.layout.width <= 960


def test_one_token_keeps_its_title_and_a_full_colour_bar():
    title = "toy layer (untrained), head 0"
    fig = attention_heatmap([[1.0]], ["a"], title=title)
    margin = fig.layout.margin
    plot_w = fig.layout.width - margin.l - margin.r
    plot_h = fig.layout.height - margin.t - margin.b
    assert fig.layout.width >= 8 * len(title)  # ~8 px a character at plotly's title font
    assert plot_h >= 200 and plot_w >= 150
    bar = fig.data[0].colorbar
    assert bar.lenmode == "pixels" and 150 <= bar.len <= plot_h
    assert bar.title.text == "weight (0 to 1)"
    two = attention_heatmap(_weights(2, 2), ["a", "b"])
    assert two.data[0].colorbar.len >= 150  # two tokens do not squash it either


def test_long_cross_attention_keeps_a_readable_colour_bar():
    date = list("Wednesday, September 23, 2026")  # 29 input characters, 11 output
    fig = attention_heatmap(_weights(11, len(date)), _words(11), date)
    assert fig.data[0].colorbar.len >= 150
    assert _tick_labels(fig.layout.xaxis) == [c if c.strip() else "' '" for c in date]


def test_grid_labels_every_token_at_16_and_thins_with_a_note_at_64():
    fig = attention_grid(_weights(12, 16, 16), _words(16), title="every head")
    rows = {fig.layout[t.yaxis.replace("y", "yaxis")].domain for t in fig.data}
    assert len(rows) == 3  # 12 heads of 16 tokens wrap 3 x 4, not 2 x 6, to keep the labels
    shown = [a for k, a in fig.layout.to_plotly_json().items() if k.startswith(("xaxis", "yaxis"))]
    labelled = [a for a in shown if a.get("showticklabels")]
    assert len(labelled) == 4 + 3  # the bottom row's x axes and the left column's y axes
    assert all(_visible(a["ticktext"]) == _words(16) for a in labelled)
    texts = [a.text for a in fig.layout.annotations]
    assert "key" in texts and "query" in texts  # axis titles on the grid
    big = attention_grid(_weights(4, 64, 64), _words(64))
    assert big.layout.meta["label_stride"] == {"x": 2, "y": 2}
    assert _visible(big.layout.xaxis.ticktext) == _words(64)[::2]
    texts = [a.text for a in big.layout.annotations]
    assert "key (every 2nd token labelled; hover for all)" in texts
    assert "query (every 2nd token labelled; hover for all)" in texts


def test_model_view_at_16_tokens_says_how_it_thins_labels():
    fig = attention_grid(_weights(6, 12, 16, 16), _words(16))
    stride = fig.layout.meta["label_stride"]["x"]
    assert stride > 1 and _visible(fig.layout.xaxis.ticktext) == _words(16)[::stride]
    assert any(f"every {stride}" in a.text for a in fig.layout.annotations if a.text)


def test_value_heatmap_labels_what_it_shows_with_a_diverging_scale():
    cosines = np.array([[1.0, 0.6, -0.2], [0.6, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    names = ["A man plays.", "Music plays.", "Stocks fell."]
    kwargs = {"row_title": "sentence", "col_title": "sentence", "value_title": "cosine"}
    fig = value_heatmap(cosines, names, names, value_range=(-1, 1), diverging=True, **kwargs)
    heatmap = fig.data[0]
    assert (heatmap.zmin, heatmap.zmid, heatmap.zmax) == (-1.0, 0.0, 1.0)
    assert heatmap.colorbar.title.text == "cosine (-1 to 1)"
    assert fig.layout.xaxis.title.text == "sentence" and "query" not in heatmap.hovertemplate
    colors = heatmap.colorscale
    assert colors[0][1] != colors[-1][1]  # blue to red, not white to blue
    auto = value_heatmap(cosines - 0.5, names, names, diverging=True, **kwargs)
    assert auto.data[0].zmin == pytest.approx(-0.7) and auto.data[0].zmax == pytest.approx(0.7)
    stats = value_heatmap(
        [[0.2, 0.7]], ["layer 0"], ["head 0", "head 1"],
        row_title="layer", col_title="head", value_title="share on [CLS]", value_range=(0, 1),
    )  # fmt: skip
    assert stats.layout.yaxis.title.text == "layer" and "[CLS] (0 to 1)" in (
        stats.data[0].colorbar.title.text
    )
    figure = value_heatmap(cosines, names, names, backend="matplotlib", diverging=True, **kwargs)
    assert figure.axes[0].get_xlabel() == "sentence" and figure.axes[0].images[0].get_clim() == (
        -1.0,
        1.0,
    )
    with pytest.raises(ValueError, match="col_labels has 2 labels"):
        value_heatmap(cosines, names, names[:2], **kwargs)


@pytest.mark.parametrize("shape", [(8, 7), (11, 29), (1, 1)])
def test_matplotlib_colour_bar_stays_below_the_title(shape):
    rows, cols = _words(shape[0]), [f"k{i}" for i in range(shape[1])]
    title = 'where "bad" attends\nin "the movie was not very bad ."'
    fig = attention_heatmap(_weights(*shape), rows, cols, title=title, backend="matplotlib")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax, bar = fig.axes
    renderer = canvas.get_renderer()
    title_bottom = ax.title.get_window_extent(renderer).y0
    assert bar.get_window_extent(renderer).y1 <= title_bottom + 1
    assert bar.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y1 + 2
    assert "weight (0 to 1)" in bar.get_ylabel()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == cols  # every key labelled
