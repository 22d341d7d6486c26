"""tfm_edu.data.digits: the split is stratified, disjoint, complete and deterministic; images are
normalised; augmentation keeps the background and moves the ink."""

import numpy as np
import pytest
import torch

from tfm_edu.data import digits


def test_split_sizes_disjoint_and_complete():
    parts = digits.split_indices(0)
    sizes = {name: len(index) for name, index in parts.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}  # 70 / 10 / 20 % of 1,797
    together = np.concatenate(list(parts.values()))
    assert len(np.unique(together)) == len(together) == 1797


def test_split_is_stratified():
    labels = digits._raw()[1]
    overall = np.bincount(labels, minlength=10) / len(labels)
    for name, index in digits.split_indices(0).items():
        share = np.bincount(labels[index], minlength=10) / len(index)
        # each digit's share within 1.5 points of the whole data set's (~10 % each)
        assert np.abs(share - overall).max() < 0.015, name


def test_split_is_deterministic_and_depends_on_seed():
    first, again, other = digits.split_indices(0), digits.split_indices(0), digits.split_indices(1)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["test"], other["test"])


def test_load_shapes_dtypes_and_normalisation():
    images, labels = digits.load("train")
    assert images.shape == (1257, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1257,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == set(range(10))
    # PIXEL_MEAN / PIXEL_STD are the training split's statistics, so it is standardised
    assert abs(images.mean().item()) < 1e-3 and abs(images.std().item() - 1) < 1e-3
    both, _ = digits.load("train+val")
    assert both.shape == (1437, 1, 8, 8)


def test_load_matches_sklearn_pixels():
    from sklearn.datasets import load_digits

    raw = load_digits()
    images, labels = digits.load("test")
    index = digits.split_indices(0)["test"]
    np.testing.assert_allclose(digits.denormalise(images)[:, 0] * 16, raw.images[index], atol=1e-4)
    np.testing.assert_array_equal(labels.numpy(), raw.target[index])


def test_bad_split_name():
    with pytest.raises(ValueError, match="split must be one of"):
        digits.load("validation")


def test_augment_identity_when_no_jitter():
    images, _ = digits.load("val")
    same = digits.augment(images[:8], max_shift=0.0, max_rotation=0.0, max_scale=0.0)
    torch.testing.assert_close(same, images[:8], atol=1e-5, rtol=0)


def test_augment_moves_ink_keeps_background_and_is_reproducible():
    images, _ = digits.load("val")
    batch = images[:32]
    a = digits.augment(batch, generator=torch.Generator().manual_seed(1))
    b = digits.augment(batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.shape == batch.shape and not torch.allclose(a, batch)
    background = -digits.PIXEL_MEAN / digits.PIXEL_STD
    assert a.min().item() >= background - 1e-4  # pulled-in pixels are blank, never negative ink


def test_augment_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        digits.augment(torch.zeros(8, 8))
