"""Chapter 8's exercise checks: a learner's correct code passes, the typical slips get their hint,
an untouched stub is "not done yet"; the ViT check also leaves torch's RNG where it was."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from exercise_helpers import assert_hint, stub
from torch import nn

from tfm_edu.exercises.vit import check_attention_rollout, check_patchify, check_vit_forward
from tfm_edu.layers import Encoder
from tfm_edu.models.vit import PatchEmbedding
from tfm_edu.positional import LearnedPositionalEmbedding

# ---------------------------------------------------------------- patchify


def test_patchify():
    def by_permute(images, patch_size):
        B, C, H, W = images.shape
        p = patch_size
        grid = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
        return grid.reshape(B, (H // p) * (W // p), p * p * C)

    assert check_patchify(by_permute).passed
    assert check_patchify(stub).status == "not done"
    assert_hint(
        check_patchify(lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1])), "strips"
    )
    assert_hint(
        check_patchify(
            lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=p, p2=p)
        ),
        "column by column",
    )
    assert_hint(
        check_patchify(
            lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)
        ),
        "channel first",
    )


# ---------------------------------------------------------------- attention rollout


def _learner_rollout(maps, *, identity=True, renormalise=True, later_on_left=True):
    T = maps[0].shape[-1]
    result = torch.eye(T)
    for weights in maps:
        mixed = weights.mean(0) + (torch.eye(T) if identity else 0)
        if renormalise:
            mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed @ result if later_on_left else result @ mixed
    return result


def test_attention_rollout():
    assert check_attention_rollout(_learner_rollout).passed
    assert check_attention_rollout(stub).status == "not done"
    assert_hint(check_attention_rollout(lambda m: _learner_rollout(m, identity=False)), "residual")
    assert_hint(
        check_attention_rollout(lambda m: _learner_rollout(m, renormalise=False)), "sum to 1"
    )
    assert_hint(
        check_attention_rollout(lambda m: _learner_rollout(m, later_on_left=False)), "backwards"
    )
    assert_hint(check_attention_rollout(lambda m: _learner_rollout(m[-1:])), "only the last layer")


# ---------------------------------------------------------------- the ViT forward


class LearnerViT(nn.Module):
    """The exercise's given __init__: the package ViT's parts under the same names."""

    def __init__(self, config):
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

    def forward(self, images):
        raise NotImplementedError

    def cls_first(self, tokens):
        return torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)


class Correct(LearnerViT):
    def forward(self, images):
        tokens = self.position_embedding(self.cls_first(self.patch_embedding(images)))
        states, _ = self.encoder(tokens)
        return self.head(states[:, 0])


class LayerByLayer(LearnerViT):
    """Correct too: own patch cut with reshape/permute, the layers and final norm by hand."""

    def forward(self, images):
        B, C, H, W = images.shape
        p = self.config.patch_size
        grid = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
        x = self.patch_embedding.proj(grid.reshape(B, -1, p * p * C))
        x = self.cls_first(x) + self.position_embedding.embedding.weight
        for layer in self.encoder.layers:
            x, _ = layer(x)
        return self.head(self.encoder.final_norm(x)[:, 0])


class ClsAppended(LearnerViT):
    def forward(self, images):
        tokens = self.patch_embedding(images)
        cls = self.cls_token.expand(len(images), -1, -1)
        states, _ = self.encoder(self.position_embedding(torch.cat([tokens, cls], dim=1)))
        return self.head(states[:, -1])


class HeadOnLast(LearnerViT):
    def forward(self, images):
        states, _ = self.encoder(
            self.position_embedding(self.cls_first(self.patch_embedding(images)))
        )
        return self.head(states[:, -1])


class PositionsFirst(LearnerViT):
    def forward(self, images):
        tokens = self.position_embedding(self.patch_embedding(images))
        states, _ = self.encoder(self.cls_first(tokens))
        return self.head(states[:, 0])


class PositionsCountWrong(LearnerViT):
    def forward(self, images):
        tokens = self.patch_embedding(images) + self.position_embedding.embedding.weight
        states, _ = self.encoder(self.cls_first(tokens))
        return self.head(states[:, 0])


class MeanPool(LearnerViT):
    def forward(self, images):
        states, _ = self.encoder(
            self.position_embedding(self.cls_first(self.patch_embedding(images)))
        )
        return self.head(states.mean(dim=1))


class NoFinalNorm(LearnerViT):
    def forward(self, images):
        x = self.position_embedding(self.cls_first(self.patch_embedding(images)))
        for layer in self.encoder.layers:
            x, _ = layer(x)
        return self.head(x[:, 0])


class ColumnMajor(LearnerViT):
    def forward(self, images):
        p = self.config.patch_size
        patches = rearrange(images, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=p, p2=p)
        tokens = self.position_embedding(self.cls_first(self.patch_embedding.proj(patches)))
        states, _ = self.encoder(tokens)
        return self.head(states[:, 0])


class ChannelsFirst(LearnerViT):
    def forward(self, images):
        p = self.config.patch_size
        patches = rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)
        tokens = self.position_embedding(self.cls_first(self.patch_embedding.proj(patches)))
        states, _ = self.encoder(tokens)
        return self.head(states[:, 0])


class NotExpanded(LearnerViT):
    def forward(self, images):
        tokens = torch.cat([self.cls_token, self.patch_embedding(images)], dim=1)
        states, _ = self.encoder(self.position_embedding(tokens))
        return self.head(states[:, 0])


class EncoderNotUnpacked(LearnerViT):
    def forward(self, images):
        states = self.encoder(self.position_embedding(self.cls_first(self.patch_embedding(images))))
        return self.head(states[:, 0])


class OtherNames(Correct):
    def __init__(self, config):
        super().__init__(config)
        self.classifier = self.head
        del self.head

    def forward(self, images):
        states, _ = self.encoder(
            self.position_embedding(self.cls_first(self.patch_embedding(images)))
        )
        return self.classifier(states[:, 0])


def test_vit_forward_passes_correct_models():
    for learner in (Correct, LayerByLayer):
        result = check_vit_forward(learner)
        assert result.passed, result.message
        assert "nn.TransformerEncoderLayer" in result.message and "nn.Conv2d" in result.message
    assert check_vit_forward(LearnerViT).status == "not done"
    assert (
        "`LearnerViT.forward` still raises NotImplementedError"
        in check_vit_forward(LearnerViT).message
    )


@pytest.mark.parametrize(
    ("learner", "fragment"),
    [
        (ClsAppended, "[CLS] goes in front of the patches"),
        (HeadOnLast, "not from the last token"),
        (PositionsFirst, "in front *before* adding the positions"),
        (PositionsCountWrong, "you add the P + 1 position vectors to the P patch tokens"),
        (MeanPool, "global average pooling"),
        (NoFinalNorm, "final LayerNorm is missing"),
        (ColumnMajor, "numbered column by column"),
        (ChannelsFirst, "channel first"),
        (NotExpanded, "expand it to (B, 1, D)"),
        (EncoderNotUnpacked, "returns a pair (states, attentions)"),
    ],
)
def test_vit_forward_names_the_slip(learner, fragment):
    assert_hint(check_vit_forward(learner), fragment)


def test_vit_forward_explains_other_parameter_names_and_leaves_the_rng_alone():
    result = check_vit_forward(OtherNames)
    assert result.status == "failed" and "keep the __init__ given" in result.message
    assert "head.weight" in result.message and "classifier.weight" in result.message
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_vit_forward(Correct)
    check_vit_forward(NoFinalNorm)
    torch.testing.assert_close(torch.rand(3), expected)
    threads = torch.get_num_threads()
    check_vit_forward(Correct)
    assert torch.get_num_threads() == threads


def test_the_check_references_agree_with_the_package():
    """The check's PyTorch-built ViT and its slip-free hand version equal the package's ViT."""
    from tfm_edu.exercises import vit as checks

    for config in checks._vit_configs():
        images = checks._random_images(config, 2, seed=9)
        package = checks._run_vit(None, config, images)
        torch.testing.assert_close(checks._torch_vit(config, images), package, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            checks._vit_with_slip(config, images, slip=None), package, atol=1e-5, rtol=1e-5
        )
