"""Checks for chapter 8: cutting images into patches, and attention rollout.

References: `tfm_edu.models.vit.patchify` (Dosovitskiy et al., 2021, eq. 1: x_p in
R^{N x (P^2 C)}, patches in reading order, each flattened as (row, column, channel)) and
`tfm_edu.analysis.attention_rollout` (Abnar & Zuidema, 2020: mean over heads, add the identity
for the residual connection, re-normalise, multiply through the layers, later layers on the left).
"""

from __future__ import annotations

import numpy as np

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function

__all__ = ["check_patchify", "check_attention_rollout"]

# ---------------------------------------------------------------- patchify


def check_patchify(fn) -> CheckResult:
    """Check `fn(images (B, C, H, W), patch_size) -> (B, P, patch_size * patch_size * C)`."""
    from tfm_edu.models.vit import patchify

    cases = [
        Case((_images((2, 1, 8, 8), 0), 2)),
        Case((_images((1, 1, 8, 8), 1), 4)),
        Case((_images((2, 1, 4, 8), 2), 2), label="a wide image: 2 rows of 4 patches"),
        Case((_images((1, 3, 6, 6), 3), 3), label="3 colour channels"),
        Case((_images((1, 1, 4, 4), 4), 1), label="1x1 patches: one pixel per token"),
    ]
    mistakes = [
        Mistake(
            "your tokens are strips of consecutive pixels in reading order, not square patches: "
            "images.reshape(B, P, -1) cuts each row into pieces. Split H into (rows of patches, "
            "patch_size) and W likewise, then bring the two patch_size axes together, e.g. "
            "rearrange(images, 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)', p1=p, p2=p).",
            _strips,
        ),
        Mistake(
            "your patches are numbered column by column: number them in reading order, row by "
            "row, '(h w)' rather than '(w h)' (patch 1 is the top row's second patch).",
            lambda images, p: _rearranged(images, p, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)"),
        ),
        Mistake(
            "inside each patch you read the pixels column by column: flatten row by row, "
            "'(p1 p2 c)' with p1 the row inside the patch.",
            lambda images, p: _rearranged(images, p, "b c (h p1) (w p2) -> b (h w) (p2 p1 c)"),
        ),
        Mistake(
            "you put the channel first inside each patch, '(c p1 p2)'. That works too (it is the "
            "order a Conv2d kernel uses), but this course follows the paper and vit-pytorch: "
            "'(p1 p2 c)', all channels of a pixel next to each other.",
            lambda images, p: _rearranged(images, p, "b c (h p1) (w p2) -> b (h w) (c p1 p2)"),
        ),
    ]
    return check_function("patchify", fn, patchify, cases, mistakes, atol=0, rtol=0)


def _images(shape, seed):
    import torch

    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


def _rearranged(images, p, pattern):
    from einops import rearrange

    return rearrange(images, pattern, p1=p, p2=p)


def _strips(images, p):
    B, C, H, W = images.shape
    return images.reshape(B, (H // p) * (W // p), p * p * C)


# ---------------------------------------------------------------- attention rollout


def check_attention_rollout(fn) -> CheckResult:
    """Check `fn(attentions) -> (T, T)`: `attentions` is a list with one (H, T, T) map per layer,
    first layer first; heads are averaged and no weights are discarded."""
    from tfm_edu.analysis.rollout import attention_rollout

    cases = [
        Case((_maps(layers=1, heads=2, tokens=3, seed=0),), label="one layer"),
        Case((_maps(layers=2, heads=2, tokens=4, seed=1),)),
        Case((_maps(layers=4, heads=3, tokens=5, seed=2),)),
    ]
    mistakes = [
        Mistake(
            "you multiply the raw attention maps: the residual connection also carries each "
            "token forward unchanged, so use 0.5 * A + 0.5 * I for each layer (A averaged over "
            "heads) before multiplying.",
            lambda maps: _rollout(maps, identity=False),
        ),
        Mistake(
            "after adding the identity each row must sum to 1 again: use (A + I) / 2, or divide "
            "each row by its sum; A + I alone makes the rows sum to 2, 4, 8, ...",
            lambda maps: _rollout(maps, renormalise=False),
        ),
        Mistake(
            "the order of the product is backwards: the later layer acts on what the earlier one "
            "produced, so multiply on the left, rollout = A_layer @ rollout.",
            lambda maps: _rollout(maps, later_on_left=False),
        ),
        Mistake(
            "fuse the heads with their mean (axis 0 of each (H, T, T) map), not their maximum.",
            lambda maps: _rollout(maps, fuse="max"),
        ),
        Mistake(
            "you used only the last layer: rollout multiplies through *all* the layers.",
            lambda maps: _rollout(maps[-1:]),
        ),
    ]
    return check_function("attention_rollout", fn, attention_rollout, cases, mistakes, atol=1e-5)


def _maps(layers, heads, tokens, seed):
    import torch

    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.normal(size=(layers, heads, tokens, tokens)).astype(np.float32))
    return list(scores.softmax(-1))  # L of (H, T, T)


def _rollout(maps, identity=True, renormalise=True, later_on_left=True, fuse="mean"):
    import torch

    T = maps[0].shape[-1]
    result = torch.eye(T)  # (T, T)
    for weights in maps:  # (H, T, T)
        fused = weights.mean(0) if fuse == "mean" else weights.amax(0)  # (T, T)
        if identity:
            fused = fused + torch.eye(T)
        if renormalise:
            fused = fused / fused.sum(-1, keepdim=True)
        result = fused @ result if later_on_left else result @ fused
    return result
