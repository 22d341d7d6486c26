"""Chapter 8's figures and widget run headless and check their inputs."""

import matplotlib
import numpy as np
import pytest
import torch

from tfm_edu.analysis.positions import position_similarity, similarity_by_distance
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.viz import vit_views
from tfm_edu.viz.vit_explorer import ViTAttentionExplorer

matplotlib.use("Agg")


def _image():
    return np.arange(64, dtype=float).reshape(1, 8, 8)


def test_patches_and_overlay_figures():
    assert vit_views.patches_figure(_image(), 4) is not None
    assert vit_views.patches_figure(_image(), 2) is not None
    with pytest.raises(ValueError, match="patch_size=3"):
        vit_views.patches_figure(_image(), 3)
    fig = vit_views.attention_overlay(_image(), np.array([0.1, 0.2, 0.3, 0.4]), 4, "map")
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="P = 4"):
        vit_views.attention_overlay(_image(), np.ones(16), 4)


def test_cls_attention_figure_has_a_panel_per_layer_and_head_and_a_colour_bar():
    maps = np.random.default_rng(0).dirichlet(np.ones(5), size=(2, 3))[..., 1:]  # (L, H, P)
    fig = vit_views.cls_attention_figure(_image(), maps, np.full(4, 0.2), 4)
    assert len(fig.axes) == 3 * 4 + 1  # (layers + 1) x (heads + 1), and the colour bar
    assert fig.axes[-1].get_ylabel() == "share of [CLS]'s attention"
    rollout = fig.axes[4 * 2 + 1].images[0]  # the last row's second panel
    assert rollout.get_clim() == (0.0, 1.0)  # one scale for every panel
    np.testing.assert_allclose(rollout.get_array(), 0.2)  # drawn as it is, not normalised
    per_panel = vit_views.cls_attention_figure(
        _image(), maps, np.full(4, 0.2), 4, shared_scale=False
    )
    assert "largest" in per_panel.axes[-1].get_ylabel()
    np.testing.assert_allclose(per_panel.axes[4 * 2 + 1].images[0].get_array(), 1.0)


def test_attention_overlay_on_a_fixed_scale():
    values = np.array([0.1, 0.2, 0.3, 0.4])
    fixed = vit_views.attention_overlay(_image(), values, 4, vmax=0.8).axes[0].images[0]
    assert fixed.get_clim() == (0.0, 0.8)
    assert float(fixed.get_array().max()) == 0.4
    scaled = vit_views.attention_overlay(_image(), values, 4).axes[0].images[0]
    assert float(scaled.get_array().max()) == 1.0  # default: the largest value is the top


def test_position_similarity():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]])
    similarity = position_similarity(vectors)
    np.testing.assert_allclose(np.diag(similarity), 1.0)
    np.testing.assert_allclose(similarity[0, 3], -1.0)
    np.testing.assert_allclose(similarity[0, 2], 2**-0.5)
    assert vit_views.position_similarity_figure(similarity) is not None
    with pytest.raises(ValueError, match="square"):
        vit_views.position_similarity_figure(np.eye(3))


def test_confusion_and_examples():
    labels = np.array([0, 1, 2, 3, 3])
    fig = vit_views.confusion_figure(labels, np.array([0, 1, 2, 3, 8]))
    assert fig.axes[0].get_title() == "4 of 5 right"
    with pytest.raises(ValueError, match=r"\(N,\)"):
        vit_views.confusion_figure(labels, labels[:3])
    assert vit_views.examples_figure(np.zeros((3, 1, 8, 8)), ["a", "b", "c"]) is not None
    with pytest.raises(ValueError, match="captions"):
        vit_views.examples_figure(np.zeros((3, 1, 8, 8)), ["a"])


def test_explorer_switches_views_and_models():
    torch.manual_seed(0)
    models = {"tiny": ViT(ViTConfig.tiny()), "patch 2": ViT(ViTConfig(patch_size=2))}
    images, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    explorer = ViTAttentionExplorer(models, images, labels)
    assert explorer.current_map.shape == (4,)  # rollout over the tiny model's 4 patches
    np.testing.assert_allclose(explorer.current_map.sum(), 1.0 - _rollout_cls_self(explorer), 1e-6)
    explorer.set_view(index=3, layer=1, head=0)
    assert "true 3" in explorer.message and "layer 1, head 0" in explorer.message
    assert explorer.output.outputs[0]["data"]["image/png"]
    explorer.set_view(model="patch 2", layer="rollout")
    assert explorer.current_map.shape == (16,)
    assert explorer.head_dropdown.disabled  # heads are fused in the rollout
    with pytest.raises(ValueError, match="same N"):
        ViTAttentionExplorer(models, images, labels[:2])


def _rollout_cls_self(explorer):
    """The [CLS] row's weight on [CLS] itself (the map drops it, so the rest sums to 1 - it)."""
    from tfm_edu.analysis.rollout import attention_rollout

    _, attentions = explorer._run(explorer.model_dropdown.value, explorer.image_slider.value)
    return float(attention_rollout(attentions)[0, 0])


def test_overlay_gallery():
    fig = vit_views.overlay_gallery(np.zeros((3, 1, 8, 8)), np.ones((3, 4)), 4, ["a", "b", "c"])
    assert len(fig.axes) == 8 + 1  # a row of 8 panels and the shared colour bar
    own = vit_views.overlay_gallery(
        np.zeros((3, 1, 8, 8)), np.ones((3, 4)), 4, ["a", "b", "c"], shared_scale=False
    )
    assert len(own.axes) == 8
    with pytest.raises(ValueError, match="captions"):
        vit_views.overlay_gallery(np.zeros((3, 1, 8, 8)), np.ones((3, 4)), 4, ["a"])


def test_similarity_by_distance_reads_the_grid():
    # positions that *are* the grid: vector = (row, column) shifted off the origin
    row, column = np.divmod(np.arange(16), 4)
    vectors = np.stack([np.cos(row), np.sin(row), np.cos(column), np.sin(column)], 1)
    by_distance = similarity_by_distance(position_similarity(vectors))
    assert list(by_distance) == [1, 2, 3, 4, 5, 6]
    assert by_distance[1] > by_distance[2] > by_distance[3]
    # a 2x2 grid by hand: distance 1 pairs are (0,1), (0,2), (1,3), (2,3)
    similarity = np.arange(16, dtype=float).reshape(4, 4)
    expected = np.mean(
        [
            similarity[a, b]
            for a in range(4)
            for b in range(4)
            if abs(a // 2 - b // 2) + abs(a % 2 - b % 2) == 1
        ]
    )
    assert similarity_by_distance(similarity)[1] == pytest.approx(expected)


def test_overlay_scale_does_not_stretch_a_flat_map():
    flat = np.array([0.22, 0.19, 0.19, 0.17])  # a nearly even spread over 4 patches
    assert vit_views.overlay_vmax(flat) == 0.5  # twice the uniform share 1/4
    assert vit_views.overlay_vmax(np.array([0.9, 0.05, 0.03, 0.02])) == 0.9
    with pytest.raises(ValueError, match=r"\(P,\)"):
        vit_views.overlay_vmax(np.ones((2, 2, 2)))
    fig = vit_views.attention_overlay(_image(), flat, 4, vmax=0.5, colorbar="weight per patch")
    image, bar = fig.axes[0].images[0], fig.axes[1]
    assert image.get_clim() == (0.0, 0.5)
    np.testing.assert_allclose(np.unique(image.get_array()), np.unique(flat))  # real values
    colours = image.cmap(image.norm(flat))  # (4, RGBA): 0.17..0.22 of 0.5 are close colours
    assert np.abs(colours[:, :3] - colours[0, :3]).max() < 0.25
    assert bar.get_ylabel() == "weight per patch"
    assert any("uniform 1/4" in text.get_text() for text in bar.texts)
    assert [line.get_ydata()[0] for line in bar.lines] == [0.25]


def test_overlay_gallery_shares_one_scale_with_a_colour_bar():
    values = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    fig = vit_views.overlay_gallery(np.zeros((2, 1, 8, 8)), values, 4, ["a", "b"], columns=2)
    assert len(fig.axes) == 3 and fig.axes[-1].get_ylabel() == "weight per patch"
    assert {ax.images[0].get_clim() for ax in fig.axes[:2]} == {(0.0, 0.5)}
    np.testing.assert_allclose(np.unique(fig.axes[1].images[0].get_array()), 0.25)


def test_explorer_rollout_mode_says_all_heads_and_restores_the_head():
    torch.manual_seed(0)
    images, labels = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    explorer = ViTAttentionExplorer(ViT(ViTConfig.tiny()), images, labels)
    assert explorer.layer_dropdown.value == "rollout"
    assert explorer.head_dropdown.label == "all heads (rollout)"
    assert explorer.head_dropdown.disabled and not explorer.discard_slider.disabled
    explorer.layer_dropdown.value = 0
    assert explorer.head_dropdown.label == "mean of heads" and not explorer.head_dropdown.disabled
    explorer.head_dropdown.value = 1
    explorer.layer_dropdown.value = "rollout"  # as a learner clicks: the stale head disappears
    assert explorer.head_dropdown.label == "all heads (rollout)"
    assert "head 1" not in explorer.message
    explorer.layer_dropdown.value = 1
    assert explorer.head_dropdown.value == 1  # the head chosen before comes back
    assert "layer 1, head 1" in explorer.message
    explorer.set_view(layer="rollout", head=0)
    assert explorer.head_dropdown.label == "all heads (rollout)"
    explorer.set_view(layer=0)
    assert explorer.head_dropdown.value == 0
    # the widths leave room for the longest option: ~7 px per character plus the description
    assert int(explorer.head_dropdown.layout.width.rstrip("px")) >= 45 + 7 * len(
        "all heads (rollout)"
    )
    assert "1/4 per patch" in explorer.message
