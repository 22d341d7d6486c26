"""tfm_edu.analysis.rollout: attention rollout (Abnar & Zuidema, 2020) and [CLS] maps."""

import numpy as np
import pytest
import torch

from tfm_edu.analysis.rollout import attention_rollout, cls_attention
from tfm_edu.viz.vit_views import patch_grid


def _maps(layers=3, batch=2, heads=4, tokens=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(layers, batch, heads, tokens, tokens, generator=generator)
    return list(scores.softmax(-1))  # L of (B, H, T, T)


def test_rows_sum_to_one():
    for discard_ratio in (0.0, 0.4, 0.9):
        rollout = attention_rollout(_maps(), discard_ratio=discard_ratio)
        assert rollout.shape == (2, 5, 5)
        torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))
        assert (rollout >= 0).all()


def test_one_layer_without_identity_is_the_mean_head_map():
    maps = _maps(layers=1)
    rollout = attention_rollout(maps, residual=False)
    torch.testing.assert_close(rollout, maps[0].mean(1))


def test_one_layer_with_identity_is_half_attention_half_self():
    maps = _maps(layers=1)
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout, 0.5 * maps[0].mean(1) + 0.5 * torch.eye(5))


def test_multiplies_through_layers_in_order():
    maps = _maps(layers=2)
    first, second = (0.5 * m.mean(1) + 0.5 * torch.eye(5) for m in maps)
    torch.testing.assert_close(attention_rollout(maps), second @ first)
    assert not torch.allclose(second @ first, first @ second)  # order matters


def test_discard_ratio_zeroes_the_weakest_links():
    maps = _maps(layers=1, tokens=10)
    rollout = attention_rollout(maps, discard_ratio=0.5, residual=False)
    assert ((rollout == 0).sum(-1) == 5).all()  # half of each row dropped, then re-normalised
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 10))


def test_numpy_and_unbatched_inputs():
    maps = _maps(batch=1)
    unbatched = np.stack([m[0].numpy() for m in maps])  # (L, H, T, T)
    rollout = attention_rollout(unbatched)
    assert isinstance(rollout, np.ndarray) and rollout.shape == (5, 5)
    np.testing.assert_allclose(rollout, attention_rollout(maps)[0].numpy(), atol=1e-6)


def test_head_fusion_max():
    maps = _maps(layers=1)
    rollout = attention_rollout(maps, head_fusion="max", residual=False)
    expected = maps[0].amax(1) / maps[0].amax(1).sum(-1, keepdim=True)
    torch.testing.assert_close(rollout, expected)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        attention_rollout([])
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout(_maps(), discard_ratio=1.0)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(_maps(), head_fusion="median")
    with pytest.raises(ValueError, match="same shape"):
        attention_rollout([torch.ones(1, 2, 5, 5), torch.ones(1, 2, 4, 4)])
    with pytest.raises(ValueError, match="square"):
        attention_rollout([torch.ones(1, 2, 5, 4)])


def test_cls_attention_is_row_zero_without_itself():
    maps = _maps()
    cls = cls_attention(maps)
    assert cls.shape == (3, 2, 4, 4)  # (L, B, H, P)
    np.testing.assert_allclose(cls[1, 0, 2], maps[1][0, 2, 0, 1:].numpy(), rtol=1e-6)
    single = cls_attention([m[0] for m in maps])
    assert single.shape == (3, 4, 4)  # (L, H, P)


def test_patch_grid_spreads_each_value_over_its_patch():
    grid = patch_grid(np.array([1.0, 2.0, 3.0, 4.0]), image_size=8, patch_size=4)
    assert grid.shape == (8, 8)
    assert grid[0, 0] == 1 and grid[3, 7] == 2 and grid[7, 0] == 3 and grid[4, 4] == 4
    assert patch_grid(np.zeros((2, 3, 16)), 8, 2).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="P = 4"):
        patch_grid(np.zeros(5), 8, 4)
