"""Chapter 8's data: scikit-learn's bundled 8x8 handwritten digits, split and normalised.

The images are real: 1,797 digits written by 43 people, scanned, and averaged down to 8x8 blocks
of 0..16 ink counts (Alpaydin & Kaynak, 1998, the UCI "Optical Recognition of Handwritten Digits"
data set). scikit-learn ships them inside its wheel, so nothing is downloaded.

- `load(split)` returns one part of a fixed, stratified train / val / test split (70 / 10 / 20 %),
  as float32 images (N, 1, 8, 8) normalised to mean 0 and standard deviation 1 over the
  training pixels, and int64 labels (N,). `split="train+val"` is the final training set.
- `augment(images)` jitters a batch with a small random affine map (shift, rotation, scale),
  done in PyTorch on the whole batch at once so it costs next to nothing per step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SPLITS",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "load",
    "split_indices",
    "denormalise",
    "augment",
]

SPLITS = ("train", "val", "test", "train+val")
IMAGE_SIZE = 8
NUM_CLASSES = 10
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1  # of the whole data set, taken from what the test split leaves
MAX_INK = 16.0  # the raw pixels count ink in 0..16
# Mean and standard deviation of the raw 0..16 pixels of the default (seed 0) training split;
# fixed numbers so that every split, seed and learner normalises the same way (pinned by a test).
PIXEL_MEAN = 4.8781
PIXEL_STD = 6.0134


def split_indices(seed: int = 0) -> dict[str, np.ndarray]:
    """Indices into the 1,797 digits for each split, stratified by label and fixed by `seed`.

    Returns:
        {"train": (1257,), "val": (180,), "test": (360,)} sorted int64 index arrays, disjoint and
        covering every image once; each split holds the ten digits in the data set's proportions.
    """
    from sklearn.model_selection import train_test_split

    labels = _raw()[1]  # (N,)
    everything = np.arange(len(labels))  # (N,)
    rest, test = train_test_split(
        everything, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        rest,
        test_size=round(VAL_FRACTION * len(labels)),
        stratify=labels[rest],
        random_state=seed,
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def load(split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """One split of the digits, normalised, ready for a model.

    Args:
        split: "train" (70 %), "val" (10 %), "test" (20 %) or "train+val" (80 %, the set the
            final model trains on once the settings were chosen on "val").
        seed: which stratified split; keep 0 to compare with the shipped checkpoint.

    Returns:
        images: (N, 1, 8, 8) float32, (ink - PIXEL_MEAN) / PIXEL_STD.
        labels: (N,) int64 digits 0..9.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    parts = split_indices(seed)
    if split == "train+val":
        index = np.sort(np.concatenate([parts["train"], parts["val"]]))  # (N,)
    else:
        index = parts[split]  # (N,)
    raw_images, labels = _raw()
    images = (raw_images[index] - PIXEL_MEAN) / PIXEL_STD  # (N, 8, 8)
    images = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # (N, 1, 8, 8)
    return images, torch.from_numpy(labels[index].astype(np.int64))  # (N, 1, 8, 8), (N,)


def denormalise(images: Tensor | np.ndarray) -> np.ndarray:
    """Undo `load`'s normalisation: back to ink in [0, 1] (for plotting), same shape, NumPy."""
    images = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    return np.clip((images * PIXEL_STD + PIXEL_MEAN) / MAX_INK, 0.0, 1.0)


def augment(
    images: Tensor,
    max_shift: float = 1.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Jitter each image with its own small random affine map (a "light" augmentation).

    A digit moved by a pixel, turned by a few degrees or written a little larger is still the
    same digit; showing the model such copies is how a data-hungry ViT gets more data for free.
    Pixels pulled in from outside the frame get the background (zero ink).

    Args:
        images: (B, C, H, W) normalised as by `load`.
        max_shift: largest shift in pixels, drawn uniformly in [-max_shift, max_shift] per axis.
        max_rotation: largest rotation in degrees, drawn uniformly.
        max_scale: largest relative change of size, drawn uniformly in [-max_scale, max_scale].
        generator: a torch.Generator for reproducible jitter.

    Returns:
        (B, C, H, W), the jittered images (bilinear interpolation).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    B, _, H, W = images.shape
    options = {"generator": generator, "device": images.device}

    def uniform(limit: float) -> Tensor:
        return (torch.rand(B, **options) * 2 - 1) * limit  # (B,)

    angle = uniform(math.radians(max_rotation))  # (B,)
    scale = 1 + uniform(max_scale)  # (B,)
    # affine_grid works in [-1, 1] coordinates, where one pixel is 2 / size.
    shift_x, shift_y = uniform(max_shift) * 2 / W, uniform(max_shift) * 2 / H  # (B,), (B,)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # (B,), (B,)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], -1), torch.stack([sin, cos, shift_y], -1)], 1
    )  # (B, 2, 3): maps output coordinates to where they are read in the input
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    background = -PIXEL_MEAN / PIXEL_STD  # zero ink after normalisation
    shifted = F.grid_sample(
        images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B, C, H, W)
    return shifted + background  # (B, C, H, W)


_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _raw() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 raw images (N, 8, 8) float64 in 0..16 and labels (N,), loaded once."""
    if "digits" not in _CACHE:
        from sklearn.datasets import load_digits

        digits = load_digits()
        _CACHE["digits"] = (digits.images, digits.target)
    return _CACHE["digits"]
