"""Chapter 10's teacher: a small convolutional network for 8x8 digits (LeCun et al., 1989,
"Backpropagation Applied to Handwritten Zip Code Recognition"; the convnet teacher of DeiT,
Touvron et al., 2021, "Training data-efficient image transformers & distillation through
attention").

A convolution slides one small kernel (3x3 here) over every position of the image. That choice
builds three beliefs about images into the architecture before it has seen a single digit:

- locality: a unit looks only at a 3x3 neighbourhood, so nearby pixels are combined first;
- weight sharing: the same kernel is used everywhere, so a stroke detector learned in one corner
  works in every other corner without being learned again;
- translation equivariance: shifting the image shifts the feature maps by the same amount (and
  the max-pooling that follows makes the output nearly invariant to a one-pixel shift).

A ViT has none of these: after the patch embedding every token may attend to every other with
weights that depend on learned positions, and that it must discover from data that neighbours
matter. With few images a convnet's built-in bias wins; chapter 10 uses one as the teacher that
passes this bias on to a ViT through distillation.

    images (B, 1, 8, 8) -> conv 3x3 -> GELU -> conv 3x3 -> GELU -> 2x2 max-pool -> Linear -> logits

`forward(images, targets=labels)` returns a `ViTOutput` (logits, and the optionally
label-smoothed cross-entropy), so the chapter 8 recipe trains it like the ViT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu.models.vit import ViTOutput

__all__ = ["ConvNetConfig", "ConvNet"]


@dataclass(frozen=True, kw_only=True)
class ConvNetConfig:
    """Sizes of the convolutional teacher. The defaults are chapter 10's shipped teacher for
    8x8 digits; `.tiny()` is a test size."""

    image_size: int = 8  # H = W of the input images, in pixels; must be even (one 2x2 pool)
    in_channels: int = 1  # C: 1 for grey digits
    num_classes: int = 10  # outputs of the head
    channels1: int = 16  # feature maps of the first 3x3 convolution
    channels2: int = 32  # feature maps of the second 3x3 convolution
    kernel_size: int = 3  # side of both (odd) kernels; padding keeps the image size

    def __post_init__(self) -> None:
        if self.image_size % 2:
            raise ValueError(f"image_size={self.image_size} must be even (one 2x2 max-pool)")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd")

    @classmethod
    def tiny(cls) -> ConvNetConfig:
        """A very small convnet (4 and 8 feature maps) for tests."""
        return cls(channels1=4, channels2=8)


class ConvNet(nn.Module):
    """Two 3x3 convolutions with GELU, a 2x2 max-pool and a Linear head."""

    def __init__(self, config: ConvNetConfig) -> None:
        super().__init__()
        self.config = config
        padding = config.kernel_size // 2  # "same" padding: an 8x8 image stays 8x8
        self.conv1 = nn.Conv2d(
            config.in_channels, config.channels1, config.kernel_size, padding=padding
        )
        self.conv2 = nn.Conv2d(
            config.channels1, config.channels2, config.kernel_size, padding=padding
        )
        pooled = (config.image_size // 2) ** 2  # positions left after the 2x2 max-pool
        self.head = nn.Linear(config.channels2 * pooled, config.num_classes)

    def forward(
        self, images: Tensor, targets: Tensor | None = None, *, label_smoothing: float = 0.0
    ) -> ViTOutput:
        """
        Args:
            images: (B, C, H, W) as returned by `tfm_edu.data.digits.load` (a NumPy array works).
            targets: optional (B,) class ids; then `loss` is the cross-entropy.
            label_smoothing: share of each target's probability spread over all classes.

        Returns:
            ViTOutput with logits (B, num_classes) and the loss when targets are given (no
            attentions: a convnet has none).
        """
        images = torch.as_tensor(images, device=self.head.weight.device)  # (B, C, H, W)
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        x = F.gelu(self.conv1(images.to(self.head.weight.dtype)))  # (B, C1, H, W)
        x = F.gelu(self.conv2(x))  # (B, C2, H, W)
        x = F.max_pool2d(x, 2)  # (B, C2, H/2, W/2)
        logits = self.head(x.flatten(1))  # (B, num_classes)
        loss = None
        if targets is not None:
            if targets.shape != logits.shape[:1]:
                raise ValueError(
                    f"targets must be (B,) = ({logits.shape[0]},), got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        return ViTOutput(logits, loss)
