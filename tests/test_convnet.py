"""tfm_edu.models.convnet: chapter 10's convolutional teacher, its built-in bias (translation
equivariance), its loss, and the shipped checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tfm_edu.checkpoints import CheckpointError
from tfm_edu.data import digits
from tfm_edu.models.convnet import ConvNet, ConvNetConfig
from tfm_edu.pretrained import DIGITS_CONVNET, digits_convnet

DATA = Path(__file__).resolve().parent.parent / "data"


def _model(config: ConvNetConfig | None = None) -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(config or ConvNetConfig.tiny()).eval()


def test_forward_shapes_and_numpy_images():
    model = _model()
    images = torch.randn(3, 1, 8, 8)
    out = model(images)
    assert out.logits.shape == (3, 10) and out.loss is None and out.attentions == ()
    torch.testing.assert_close(model(images.numpy()).logits, out.logits)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_loss_is_the_cross_entropy_of_the_logits(label_smoothing):
    model = _model()
    images, targets = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 9, 3])
    out = model(images, targets, label_smoothing=label_smoothing)
    log_p = out.logits.log_softmax(-1)  # (B, 10)
    smoothed = torch.full((4, 10), label_smoothing / 10)  # (B, 10)
    smoothed[torch.arange(4), targets] += 1 - label_smoothing
    torch.testing.assert_close(out.loss, -(smoothed * log_p).sum(-1).mean())


def test_wrong_shapes_are_named():
    model = _model()
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 8, 8\), got \(2, 8, 8\)"):
        model(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"targets must be \(B,\) = \(2,\), got \(3,\)"):
        model(torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="must be even"):
        ConvNetConfig(image_size=7)
    with pytest.raises(ValueError, match="must be odd"):
        ConvNetConfig(kernel_size=4)


def test_parameter_count_of_the_shipped_size():
    model = ConvNet(ConvNetConfig())
    # conv1 1*16*9 + 16, conv2 16*32*9 + 32, head (32 * 4 * 4) * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == 160 + 4_640 + 5_130


def test_the_convolutions_are_translation_equivariant():
    """The convnet's built-in bias: shifting the input shifts the feature maps (away from the
    border, where the zero padding is seen)."""
    model = _model()
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 2:5, 2:4] = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 1.5]])
    shifted = torch.roll(image, shifts=(1, 2), dims=(2, 3))  # content stays inside the frame
    with torch.no_grad():
        maps = model.conv2(F.gelu(model.conv1(image)))  # (1, C2, 8, 8)
        maps_shifted = model.conv2(F.gelu(model.conv1(shifted)))  # (1, C2, 8, 8)
    expected = torch.roll(maps, shifts=(1, 2), dims=(2, 3))  # (1, C2, 8, 8)
    torch.testing.assert_close(maps_shifted[..., 2:7, 3:7], expected[..., 2:7, 3:7])
    assert not torch.allclose(maps_shifted, maps)  # the maps did move


def test_the_shipped_teacher_reproduces_its_cards_test_accuracy():
    model = digits_convnet()
    assert type(model) is ConvNet and not model.training
    card = json.loads((DATA / f"{DIGITS_CONVNET}.json").read_text())
    assert card["command"].startswith("python -m tfm_edu.train distill-digits")
    images, labels = digits.load("test")
    with torch.no_grad():
        correct = (model(images).logits.argmax(-1) == labels).float().mean().item()
    assert round(correct, 4) == card["metrics"]["test_accuracy"] >= 0.97
    assert (DATA / f"{DIGITS_CONVNET}.safetensors").stat().st_size < 8_000_000


def test_a_corrupt_teacher_card_is_named(tmp_path, monkeypatch):
    shutil.copy(DATA / f"{DIGITS_CONVNET}.safetensors", tmp_path)
    (tmp_path / f"{DIGITS_CONVNET}.json").write_text("{not json")
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"digits_convnet\.json: not valid JSON"):
        digits_convnet()
