"""Chapter 8 in code: the Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16
Words").

A ViT does not flatten pixels into a sequence: it cuts the image into P non-overlapping
patch_size x patch_size patches, flattens each *patch*, and maps it to a D-wide token with one
shared Linear layer (`PatchEmbedding`; the same map is a Conv2d whose kernel and stride are the
patch size, `PatchEmbedding.as_conv2d`). A learned `[CLS]` token is put in front, a learned
position vector is added to each of the P + 1 tokens (the Transformer itself cannot tell where a
patch came from), a stack of pre-LN encoder layers from `tfm_edu.layers` mixes them, and a
Linear head reads the class from the `[CLS]` token's final state (eq. 1-4 of the paper).
`forward(images, targets=labels)` also returns the (optionally label-smoothed) cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tfm_edu.layers import Encoder
from tfm_edu.positional import LearnedPositionalEmbedding

__all__ = ["ViTConfig", "ViTOutput", "patchify", "unpatchify", "PatchEmbedding", "ViT"]


@dataclass(frozen=True, kw_only=True)
class ViTConfig:
    """Sizes of a ViT. The defaults are chapter 8's shipped model for 8x8 digits (4 patches of
    4x4 pixels, 4 layers, D = 64); `.base()` is the paper's ViT-B/16, `.tiny()` a test size."""

    image_size: int = 8  # H = W of the input images, in pixels
    patch_size: int = 4  # side of each square patch; must divide image_size
    in_channels: int = 1  # C: 1 for grey digits, 3 for RGB photographs
    num_classes: int = 10  # outputs of the head
    d_model: int = 64  # D, the width of every token
    num_layers: int = 4  # encoder layers
    num_heads: int = 4  # H, attention heads per layer; must divide d_model
    d_ff: int = 128  # hidden width of each layer's feed-forward
    dropout: float = 0.0  # dropout in attention and feed-forward (training only)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide image_size={self.image_size}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide d_model={self.d_model}")

    @property
    def num_patches(self) -> int:
        """P = (image_size / patch_size) ** 2 tokens before the [CLS] token."""
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def tiny(cls) -> ViTConfig:
        """A very small model (D = 16, 2 layers) for quick demonstrations and tests."""
        return cls(patch_size=4, d_model=16, num_layers=2, num_heads=2, d_ff=32)

    @classmethod
    def base(cls) -> ViTConfig:
        """ViT-B/16 of the paper: 224x224 RGB images, 12 layers, D = 768, 1000 ImageNet classes."""
        return cls(
            image_size=224,
            patch_size=16,
            in_channels=3,
            num_classes=1000,
            d_model=768,
            num_layers=12,
            num_heads=12,
            d_ff=3072,
        )


@dataclass
class ViTOutput:
    """What `ViT.forward` returns."""

    logits: Tensor  # (B, num_classes)
    loss: Tensor | None = None  # scalar cross-entropy, when targets were given
    attentions: tuple[Tensor, ...] = ()  # per layer (B, H, P+1, P+1), empty unless asked


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, each flattened, in reading order.

    Args:
        images: (B, C, H, W); patch_size must divide H and W.

    Returns:
        (B, P, patch_size * patch_size * C) with P = (H / patch_size) * (W / patch_size); patch
        number i is row i // (W / patch_size), column i % (W / patch_size).
    """
    _check_images(images, patch_size)
    return rearrange(
        images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size
    )  # (B, P, p*p*C)


def unpatchify(patches: Tensor, patch_size: int, channels: int = 1) -> Tensor:
    """Inverse of `patchify`: (B, P, p*p*C) with P a square number -> (B, C, H, W)."""
    if patches.dim() != 3 or patches.shape[-1] != patch_size * patch_size * channels:
        raise ValueError(
            f"patches must be (B, P, {patch_size * patch_size * channels}) for patch_size="
            f"{patch_size} and {channels} channel(s), got {tuple(patches.shape)}"
        )
    side = round(patches.shape[1] ** 0.5)
    if side * side != patches.shape[1]:
        raise ValueError(f"the number of patches P={patches.shape[1]} must be a square")
    return rearrange(
        patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=side, p1=patch_size, p2=patch_size
    )  # (B, C, H, W)


class PatchEmbedding(nn.Module):
    """Flatten each patch and map it to a D-wide token with one shared Linear layer."""

    def __init__(self, *, patch_size: int, in_channels: int, d_model: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.proj = nn.Linear(patch_size * patch_size * in_channels, d_model)

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, C, H, W) -> tokens (B, P, D)."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"images must be (B, {self.in_channels}, H, W), got {tuple(images.shape)}"
            )
        return self.proj(patchify(images, self.patch_size))  # (B, P, D)

    def as_conv2d(self) -> nn.Conv2d:
        """The same map as a Conv2d with kernel = stride = patch_size (weights copied).

        `conv(images).flatten(2).transpose(1, 2)` equals `self(images)`: a convolution whose
        stride equals its kernel visits each patch once and takes a dot product with it, which is
        exactly what the Linear layer does to the flattened patch.
        """
        p, c, d = self.patch_size, self.in_channels, self.proj.out_features
        conv = nn.Conv2d(c, d, kernel_size=p, stride=p)
        with torch.no_grad():
            # Linear's input order is (p1 p2 c); Conv2d's kernel is laid out (c, p1, p2).
            weight = self.proj.weight.view(d, p, p, c).permute(0, 3, 1, 2)  # (D, C, p, p)
            conv.weight.copy_(weight)
            conv.bias.copy_(self.proj.bias)
        return conv


class ViT(nn.Module):
    """Vision Transformer: patches -> tokens, [CLS] + positions, pre-LN encoder, Linear head."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embedding = PatchEmbedding(
            patch_size=config.patch_size, in_channels=config.in_channels, d_model=config.d_model
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.position_embedding = LearnedPositionalEmbedding(
            max_positions=config.num_patches + 1, d_model=config.d_model
        )
        self.encoder = Encoder(
            num_layers=config.num_layers,
            d_model=config.d_model,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            activation="gelu",
            norm_first=True,
        )
        self.head = nn.Linear(config.d_model, config.num_classes)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(
        self,
        images: Tensor,
        targets: Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
        return_attention: bool = False,
    ) -> ViTOutput:
        """
        Args:
            images: (B, C, H, W) as returned by `tfm_edu.data.digits.load` (a NumPy array works).
            targets: optional (B,) class ids; then `loss` is the cross-entropy.
            label_smoothing: share of each target's probability spread over all classes in the
                loss (the shipped model trains with 0.1).
            return_attention: also return every layer's attention weights.

        Returns:
            ViTOutput with logits (B, num_classes), the loss when targets are given and, if
            asked, attentions: one (B, H, P+1, P+1) tensor per layer (token 0 is [CLS], token
            1 + i is patch i in reading order).
        """
        patches = self.embed_patches(images)  # (B, P, D)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, D)
        tokens = self.position_embedding(torch.cat([cls, patches], dim=1))  # (B, P+1, D)
        states, attentions = self.encoder(tokens, return_attention=return_attention)  # (B, P+1, D)
        logits = self.head(states[:, 0])  # (B, num_classes): the class is read from [CLS]
        loss = None
        if targets is not None:
            if targets.shape != logits.shape[:1]:
                raise ValueError(
                    f"targets must be (B,) = ({logits.shape[0]},), got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        return ViTOutput(logits, loss, attentions)

    def embed_patches(self, images: Tensor) -> Tensor:
        """Check the images' shape and map them to patch tokens (before [CLS] and positions).

        Args:
            images: (B, C, H, W) with the config's C and H = W = image_size (NumPy works too).

        Returns:
            (B, P, D) tokens, patch i in reading order.
        """
        images = torch.as_tensor(images, device=self.cls_token.device)  # (B, C, H, W)
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        return self.patch_embedding(images.to(self.cls_token.dtype))  # (B, P, D)


def _check_images(images: Tensor, patch_size: int) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[-2] % patch_size or images.shape[-1] % patch_size:
        raise ValueError(
            f"patch_size={patch_size} must divide the image's height and width, "
            f"got images of shape {tuple(images.shape)}"
        )
