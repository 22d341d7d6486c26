"""tfm_edu.models.vit: patches, the two patch embeddings, shapes, parameter counts, the role of
the position embeddings, and the checkpoint round trip."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tfm_edu.checkpoints import CheckpointError, load_weights, save_checkpoint
from tfm_edu.models.vit import PatchEmbedding, ViT, ViTConfig, patchify, unpatchify


def test_patchify_reading_order_and_values():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 16)
    # patch 1 is the top-right 4x4 block, flattened row by row
    torch.testing.assert_close(patches[0, 1], images[0, 0, :4, 4:].reshape(-1))
    torch.testing.assert_close(patches[1, 2], images[1, 0, 4:, :4].reshape(-1))


@pytest.mark.parametrize(("patch_size", "channels"), [(1, 1), (2, 1), (4, 1), (2, 3), (8, 3)])
def test_patchify_round_trip(patch_size, channels):
    images = torch.randn(3, channels, 8, 8)
    patches = patchify(images, patch_size)
    assert patches.shape == (3, (8 // patch_size) ** 2, patch_size * patch_size * channels)
    torch.testing.assert_close(unpatchify(patches, patch_size, channels), images)


def test_patchify_rejects_bad_sizes():
    with pytest.raises(ValueError, match="must divide"):
        patchify(torch.zeros(1, 1, 8, 8), 3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        patchify(torch.zeros(8, 8), 2)


@pytest.mark.parametrize(("patch_size", "channels"), [(2, 1), (4, 1), (4, 3)])
def test_linear_and_conv_patch_embeddings_are_equal(patch_size, channels):
    torch.manual_seed(0)
    embedding = PatchEmbedding(patch_size=patch_size, in_channels=channels, d_model=12)
    conv = embedding.as_conv2d()
    assert conv.kernel_size == (patch_size, patch_size) and conv.stride == (patch_size,) * 2
    images = torch.randn(5, channels, 8, 8)
    by_conv = conv(images).flatten(2).transpose(1, 2)  # (B, P, D)
    torch.testing.assert_close(embedding(images), by_conv, atol=1e-5, rtol=1e-5)


def test_forward_shapes_and_attentions():
    config = ViTConfig.tiny()
    model = ViT(config).eval()
    out = model(torch.randn(3, 1, 8, 8), return_attention=True)
    assert out.logits.shape == (3, 10)
    assert len(out.attentions) == config.num_layers
    tokens = config.num_patches + 1
    for weights in out.attentions:
        assert weights.shape == (3, config.num_heads, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, config.num_heads, tokens))
    assert isinstance(out.attentions, tuple)
    assert model(torch.randn(2, 1, 8, 8)).attentions == ()  # not asked: an empty tuple


def test_forward_accepts_numpy_images():
    model = ViT(ViTConfig.tiny()).eval()
    images = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model(images.numpy()).logits, model(images).logits)


def test_forward_rejects_wrong_image_shape():
    model = ViT(ViTConfig.tiny())
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 8, 8\)"):
        model(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8))


def test_config_checks():
    with pytest.raises(ValueError, match="must divide image_size"):
        ViTConfig(patch_size=3)
    with pytest.raises(ValueError, match="must divide d_model"):
        ViTConfig(d_model=30, num_heads=4)
    with pytest.raises(AttributeError):
        ViTConfig().d_model = 8  # frozen


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    # patch embedding 16*64+64, [CLS] 64, positions 5*64, 4 layers of 33,216, final norm 128,
    # head 64*10+10. With 2x2 patches: 4*64+64 and 17*64: the same total, by coincidence.
    assert _count(ViT(ViTConfig())) == 136_138  # the default is the shipped digits model
    assert _count(ViT(ViTConfig(patch_size=2))) == 136_138
    assert _count(ViT(ViTConfig.tiny())) == 5_018


def test_vit_base_has_the_papers_86_million_parameters():
    with torch.device("meta"):  # shapes only, no memory
        model = ViT(ViTConfig.base())
    assert ViTConfig.base().num_patches == 196
    assert _count(model) == 86_567_656  # ViT-B/16 with a 1000-class head, as in timm


def test_without_positions_the_model_cannot_tell_where_patches_are():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    images = torch.randn(4, 1, 8, 8)
    # swap the top-left and bottom-right 4x4 blocks: the same patches in other places
    swapped = images.clone()
    swapped[..., :4, :4], swapped[..., 4:, 4:] = images[..., 4:, 4:], images[..., :4, :4]
    assert not torch.allclose(model(images).logits, model(swapped).logits, atol=1e-4)
    with torch.no_grad():
        model.position_embedding.embedding.weight.zero_()
    torch.testing.assert_close(model(images).logits, model(swapped).logits, atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = ViTConfig.tiny()
    model = ViT(config).eval()
    save_checkpoint(model, tmp_path / "vit", config, command="test")
    again = load_weights(ViT(config), tmp_path / "vit").eval()
    images = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(again(images).logits, model(images).logits)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(ViT(ViTConfig()), tmp_path / "vit")


def test_shipped_checkpoint_reaches_97_percent_on_test():
    from tfm_edu.analysis.metrics import accuracy
    from tfm_edu.checkpoints import load_card
    from tfm_edu.data import digits
    from tfm_edu.pretrained import digits_vit

    model = digits_vit()
    assert model.config == ViTConfig()
    images, labels = digits.load("test")
    measured = accuracy(model, images, labels)
    assert measured >= 0.97
    assert measured == pytest.approx(load_card("digits_vit")["metrics"]["test_accuracy"], abs=1e-4)
    assert digits_vit(patch_size=2).config.patch_size == 2
    with pytest.raises(ValueError, match="patch_size must be one of"):
        digits_vit(patch_size=3)


def test_recipe_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    from tfm_edu.checkpoints import load_card
    from tfm_edu.recipes.vit import main

    threads = str(torch.get_num_threads())  # keep this process's setting for the other tests
    main(["--epochs", "1", "--out", str(tmp_path / "vit"), "--no-progress", "--threads", threads])
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "s of training" in printed
    card = load_card(tmp_path / "vit")
    assert card["command"].startswith("python -m tfm_edu.train vit-digits --epochs 1 --out ")
    assert "--no-progress" not in card["command"]
    # 1 epoch of ceil(1437 / 128) = 12 batches, stored as the means of steps 0-9 and 10-11
    assert card["history"]["steps"] == [9, 11]
    assert len(card["history"]["loss"]) == len(card["history"]["grad_norm"]) == 2
    load_weights(ViT(ViTConfig(**card["config"])), tmp_path / "vit")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_loss_is_the_cross_entropy_of_the_logits(label_smoothing):
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    images, targets = torch.randn(4, 1, 8, 8), torch.tensor([3, 0, 9, 3])
    out = model(images, targets, label_smoothing=label_smoothing)
    # Written out: (1 - eps) * -log p[target] + eps * mean over the classes of -log p.
    log_p = out.logits.log_softmax(-1)  # (B, 10)
    nll = -log_p[torch.arange(4), targets]
    expected = ((1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1)).mean()
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(
        out.loss, F.cross_entropy(out.logits, targets, label_smoothing=label_smoothing)
    )
    assert model(images).loss is None
    with pytest.raises(ValueError, match=r"\(B,\) = \(4,\), got \(4, 1\)"):
        model(images, targets[:, None])


def test_default_config_is_the_shipped_digits_model():
    from tfm_edu.checkpoints import load_card

    assert ViTConfig() == ViTConfig(**load_card("digits_vit")["config"])
    assert ViTConfig(patch_size=2) == ViTConfig(**load_card("digits_vit_patch2")["config"])
