"""Checks for chapter 8: cutting images into patches, the ViT forward, and attention rollout.

References: `tfm_edu.models.vit.patchify` (Dosovitskiy et al., 2021, eq. 1: x_p in
R^{N x (P^2 C)}, patches in reading order, each flattened as (row, column, channel));
`tfm_edu.models.vit.ViT` (eq. 1-4: patch embedding, [CLS] in front, positions, pre-LN encoder,
final LayerNorm, head on [CLS]), re-assembled a second time from PyTorch's own `nn.Conv2d`
(kernel = stride = patch size) and `nn.TransformerEncoderLayer`; and
`tfm_edu.analysis.attention_rollout` (Abnar & Zuidema, 2020: mean over heads, add the identity
for the residual connection, re-normalise, multiply through the layers, later layers on the left).
"""

from __future__ import annotations

from functools import lru_cache, partial

import numpy as np

from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, check_function, graded

__all__ = ["check_patchify", "check_vit_forward", "check_attention_rollout"]

# ---------------------------------------------------------------- patchify


@graded
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


# ---------------------------------------------------------------- the ViT forward

_FORWARD_SLIPS = {  # slip -> hint, for the mistakes of check_vit_forward, most specific first
    "cls not expanded": "the (1, 1, D) [CLS] token is one vector for the whole batch: expand it "
    "to (B, 1, D) before concatenating, self.cls_token.expand(B, -1, -1).",
    "positions on patches, a": "you add the P + 1 position vectors to the P patch tokens: put "
    "[CLS] in front first, torch.cat([cls, tokens], dim=1), then add the positions to all P + 1.",
    "positions on patches, b": "you add the P + 1 position vectors to the P patch tokens: put "
    "[CLS] in front first, torch.cat([cls, tokens], dim=1), then add the positions to all P + 1.",
    "positions before cls": "put [CLS] in front *before* adding the positions: added to the P "
    "patches alone, they give patch i the position of token i (that of [CLS] for patch 0), and "
    "[CLS] gets none. There are P + 1 positions, position 0 is [CLS]'s.",
    "cls without position": "[CLS] has a position too: position 0. Put [CLS] in front first, "
    "then add all P + 1 position vectors, self.position_embedding(tokens).",
    "cls appended": "[CLS] goes in front of the patches, torch.cat([cls, tokens], dim=1): it is "
    "token 0, it gets position 0, and the head reads states[:, 0].",
    "cls appended, head on 0": "[CLS] goes in front of the patches, torch.cat([cls, tokens], "
    "dim=1): it is token 0, it gets position 0, and the head reads states[:, 0].",
    "head on last": "the head reads the class from [CLS], token 0: self.head(states[:, 0]), not "
    "from the last token.",
    "mean pool": "ViT reads the class from the [CLS] token's final state, self.head(states[:, 0]); "
    "averaging the tokens (global average pooling) is a different model.",
    "mean pool patches": "ViT reads the class from the [CLS] token's final state, "
    "self.head(states[:, 0]); averaging the patch tokens (global average pooling) is a "
    "different model.",
    "no final norm": "the final LayerNorm is missing: a pre-LN stack ends with one more "
    "LayerNorm, self.encoder.final_norm. self.encoder(tokens) applies it; if you loop over "
    "self.encoder.layers yourself, apply it after the loop.",
    "encoder tuple": "self.encoder(tokens) returns a pair (states, attentions): "
    "states, _ = self.encoder(tokens).",
    "no positions": "the position embeddings are missing: without them the encoder cannot tell "
    "which patch came from where. Add them after putting [CLS] in front.",
    "strips": "your tokens are strips of consecutive pixels, not square patches: "
    "images.reshape(B, P, -1) cuts rows into pieces. Use self.patch_embedding(images), or "
    "patchify then self.patch_embedding.proj.",
    "patches column by column": "your patches are numbered column by column: number them in "
    "reading order, '(h w)' not '(w h)' (self.patch_embedding(images) does it for you).",
    "pixels column by column": "inside each patch you read the pixels column by column: "
    "flatten row by row, '(p1 p2 c)' (self.patch_embedding(images) does it for you).",
    "channels first": "you flatten each patch channel first, '(c p1 p2)': the Linear layer's "
    "weights expect '(p1 p2 c)', the order patchify uses (self.patch_embedding(images) does it "
    "for you).",
}


@graded
def check_vit_forward(cls) -> CheckResult:
    """Check a learner's `cls(config: ViTConfig)`: an `nn.Module` with the parts of
    `tfm_edu.models.vit.ViT` under the same names (so a `ViT`'s state_dict loads into it) and
    `forward(images (B, C, H, W)) -> logits (B, num_classes)` (or anything with `.logits`).

    Both models get the same seeded weights and run in eval mode on seeded images; the learner's
    logits are compared with the package's `ViT`, then with a ViT assembled from PyTorch's own
    `nn.Conv2d` (kernel = stride = patch size) and `nn.TransformerEncoderLayer`. Building
    modules draws from torch's global RNG: the check restores it afterwards.
    """
    import torch

    from tfm_edu.device import cpu_threads

    name = getattr(cls, "__name__", "MyViT")
    tiny, colour = _vit_configs()
    # tiny tensors: one thread is faster than several fighting over busy cores
    with torch.random.fork_rng(devices=[]), cpu_threads(1):
        cases = [
            Case((tiny, _random_images(tiny, 2, seed=0)), label="the tiny ViT, 4 patches"),
            Case((tiny, _random_images(tiny, 3, seed=1))),
            Case((tiny, _random_images(tiny, 1, seed=2)), label="one image"),
            Case((colour, _random_images(colour, 2, seed=3)), label="2x2 patches, 3 channels"),
        ]
        mistakes = [
            Mistake(hint, partial(_vit_with_slip, slip=slip))
            for slip, hint in _FORWARD_SLIPS.items()
        ]
        return check_against(
            name,
            partial(_run_vit, cls),
            [("the package's ViT", partial(_run_vit, None)), ("the PyTorch-built ViT", _torch_vit)],
            cases,
            mistakes,
            passed="logits match the package's ViT and a ViT built from PyTorch's nn.Conv2d "
            f"(kernel = stride = patch size) and nn.TransformerEncoderLayer, on {len(cases)} "
            "test cases",
            atol=1e-5,
        )


def _vit_configs():
    from tfm_edu.models.vit import ViTConfig

    tiny = ViTConfig.tiny()  # 8x8 images, 4x4 patches: P = 4, D = 16, 2 layers, 2 heads
    colour = ViTConfig(
        patch_size=2, in_channels=3, num_classes=5, d_model=16, num_layers=2, num_heads=2, d_ff=32
    )  # P = 16 patches of 2x2x3 = 12 numbers
    return tiny, colour


def _random_images(config, batch, seed):
    import torch

    generator = torch.Generator().manual_seed(100 + seed)
    shape = (batch, config.in_channels, config.image_size, config.image_size)
    return torch.randn(shape, generator=generator)  # (B, C, H, W)


@lru_cache(maxsize=4)
def _vit_weights(config):
    """Seeded weights of a `ViT(config)`, every part far from its initial value ([CLS] and the
    positions at std 1, LayerNorms not the identity) so that each slip changes the logits."""
    import torch

    from tfm_edu.models.vit import ViT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(8)
        model = ViT(config)
        with torch.no_grad():
            model.cls_token.normal_()
            model.position_embedding.embedding.weight.normal_()
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.normal_(1.0, 0.3)
                    module.bias.normal_(0.0, 0.3)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _run_vit(cls, config, images):
    """Build cls(config) (the package's ViT when cls is None), load the seeded weights, run it
    in eval mode and return its logits (B, num_classes)."""
    import torch

    from tfm_edu.models.vit import ViT

    with torch.random.fork_rng(devices=[]):
        model = (ViT if cls is None else cls)(config)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{type(model).__name__} is not an nn.Module: subclass nn.Module")
    weights = _vit_weights(config)
    mine = set(model.state_dict())
    missing, unexpected = sorted(set(weights) - mine), sorted(mine - set(weights))
    if missing or unexpected:
        raise ValueError(
            "the check loads a ViT's weights into your model, but its parameters have other "
            f"names (missing: {', '.join(missing[:3]) or 'none'}; unexpected: "
            f"{', '.join(unexpected[:3]) or 'none'}): keep the __init__ given in the exercise"
        )
    model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        out = model(images)
    return getattr(out, "logits", out)  # (B, num_classes)


def _torch_vit(config, images):
    """The same ViT assembled from PyTorch's own modules: nn.Conv2d with kernel = stride = p
    for the patch embedding, nn.TransformerEncoderLayer (pre-LN, GELU) for each layer."""
    import torch
    from torch import nn

    from tfm_edu.models.vit import ViT
    from tfm_edu.reference import copy_encoder_layer_to_torch

    w = _vit_weights(config)
    p, C, D = config.patch_size, config.in_channels, config.d_model
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        ours = ViT(config)
        ours.load_state_dict(w)
        conv = nn.Conv2d(C, D, kernel_size=p, stride=p)
        # our Linear reads each patch flattened as (p1 p2 c); a Conv2d kernel is (c, p1, p2)
        conv.weight.copy_(w["patch_embedding.proj.weight"].view(D, p, p, C).permute(0, 3, 1, 2))
        conv.bias.copy_(w["patch_embedding.proj.bias"])
        tokens = conv(images).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, P, D)
        cls = w["cls_token"].expand(images.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, tokens], dim=1) + w["position_embedding.embedding.weight"]
        for i in range(config.num_layers):  # x: (B, P+1, D)
            layer = nn.TransformerEncoderLayer(
                D, config.num_heads, config.d_ff, dropout=0.0, activation="gelu",
                batch_first=True, norm_first=True,
            ).eval()  # fmt: skip
            copy_encoder_layer_to_torch(ours.encoder.layers[i], layer)
            x = layer(x)  # (B, P+1, D)
        final = nn.LayerNorm(D)
        final.weight.copy_(w["encoder.final_norm.weight"])
        final.bias.copy_(w["encoder.final_norm.bias"])
        states = final(x)  # (B, P+1, D)
        return states[:, 0] @ w["head.weight"].T + w["head.bias"]  # (B, num_classes)


def _vit_with_slip(config, images, slip):
    """The ViT forward with the seeded weights and one typical slip, for the mistakes."""
    import torch
    import torch.nn.functional as F

    w = _vit_weights(config)
    B, p = images.shape[0], config.patch_size
    patterns = {
        "patches column by column": "b c (h p1) (w p2) -> b (w h) (p1 p2 c)",
        "pixels column by column": "b c (h p1) (w p2) -> b (h w) (p2 p1 c)",
        "channels first": "b c (h p1) (w p2) -> b (h w) (c p1 p2)",
    }
    if slip == "strips":
        patches = images.reshape(B, config.num_patches, -1)  # (B, P, p*p*C), strips of pixels
    else:
        pattern = patterns.get(slip, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)")
        patches = _rearranged(images, p, pattern)  # (B, P, p*p*C)
    tokens = F.linear(patches, w["patch_embedding.proj.weight"], w["patch_embedding.proj.bias"])
    cls = w["cls_token"] if slip == "cls not expanded" else w["cls_token"].expand(B, -1, -1)
    positions = w["position_embedding.embedding.weight"]  # (P+1, D)
    P = tokens.shape[1]
    if slip == "positions on patches, a":
        tokens = tokens + positions  # raises: (B, P, D) + (P+1, D)
    elif slip == "positions on patches, b":
        tokens = positions + tokens  # raises too, the sizes named the other way round
    if slip == "positions before cls":
        x = torch.cat([cls, tokens + positions[:P]], dim=1)  # (B, P+1, D)
    elif slip == "cls without position":
        x = torch.cat([cls, tokens + positions[1:]], dim=1)  # (B, P+1, D)
    elif slip in ("cls appended", "cls appended, head on 0"):
        x = torch.cat([tokens, cls], dim=1) + positions  # (B, P+1, D), [CLS] last
    elif slip == "no positions":
        x = torch.cat([cls, tokens], dim=1)  # (B, P+1, D)
    else:
        x = torch.cat([cls, tokens], dim=1) + positions  # (B, P+1, D)
    states = _encoder_states(config, x, final_norm=slip != "no final norm")  # (B, P+1, D)
    if slip == "encoder tuple":
        states = (states, ())  # the pair self.encoder returns
    if slip in ("cls appended", "head on last"):
        read = states[:, -1]  # (B, D)
    elif slip == "mean pool":
        read = states.mean(1)  # (B, D)
    elif slip == "mean pool patches":
        read = states[:, 1:].mean(1)  # (B, D)
    else:
        read = states[:, 0]  # (B, D)
    return F.linear(read, w["head.weight"], w["head.bias"])  # (B, num_classes)


def _encoder_states(config, x, final_norm=True):
    """The package's encoder layers with the seeded weights, with or without the final norm."""
    import torch

    encoder = _seeded_encoder(config)
    with torch.no_grad():
        for layer in encoder.layers:
            x, _ = layer(x)  # (B, T, D)
        return encoder.final_norm(x) if final_norm else x  # (B, T, D)


@lru_cache(maxsize=4)
def _seeded_encoder(config):
    """`tfm_edu.layers.Encoder` holding the encoder part of `_vit_weights(config)`, eval mode."""
    import torch

    from tfm_edu.layers import Encoder

    with torch.random.fork_rng(devices=[]):
        encoder = Encoder(
            num_layers=config.num_layers, d_model=config.d_model, num_heads=config.num_heads,
            d_ff=config.d_ff, activation="gelu", norm_first=True,
        )  # fmt: skip
    prefix = "encoder."
    weights = {k[len(prefix) :]: v for k, v in _vit_weights(config).items() if k.startswith(prefix)}
    encoder.load_state_dict(weights)
    return encoder.eval()


# ---------------------------------------------------------------- attention rollout


@graded
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
