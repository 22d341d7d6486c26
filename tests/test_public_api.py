"""What the restructuring promised across the package: keyword-only constructors, one
`return_attention` flag with one kind of answer, and a chapter 1 that never loads PyTorch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tfm_edu.attention import MultiHeadAttention
from tfm_edu.layers import Decoder, Encoder, EncoderLayer, FeedForward
from tfm_edu.models.bert import (
    BERT,
    BERTConfig,
    BERTForMaskedLM,
    BERTForSequenceClassification,
)
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tfm_edu.models.vit import PatchEmbedding, ViT, ViTConfig
from tfm_edu.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

# ------------------------------------------------------------------ keyword-only constructors


@pytest.mark.parametrize(
    ("build", "positional"),
    [
        (MultiHeadAttention, (8, 2)),
        (FeedForward, (8, 16)),
        (EncoderLayer, (8, 2, 16)),
        (Encoder, (1, 8, 2, 16)),
        (Decoder, (1, 8, 2, 16)),
        (SinusoidalPositionalEncoding, (8, 16)),
        (LearnedPositionalEmbedding, (16, 8)),
        (PatchEmbedding, (4, 1, 8)),
        (Seq2SeqConfig, (71,)),
        (BERTConfig, (61,)),
        (ViTConfig, (8,)),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_sizes_cannot_be_passed_by_position(build, positional):
    with pytest.raises(TypeError):
        build(*positional)


def test_the_same_sizes_by_keyword_build():
    assert MultiHeadAttention(d_model=8, num_heads=2).head_dim == 4
    assert FeedForward(d_model=8, d_ff=16).linear1.out_features == 16
    assert len(Encoder(num_layers=1, d_model=8, num_heads=2, d_ff=16).layers) == 1
    assert SinusoidalPositionalEncoding(d_model=8, max_positions=16).table.shape == (16, 8)
    assert LearnedPositionalEmbedding(max_positions=16, d_model=8).embedding.weight.shape == (16, 8)
    assert PatchEmbedding(patch_size=4, in_channels=1, d_model=8).proj.in_features == 16
    assert Seq2SeqConfig(vocab_size=40).vocab_size == 40
    assert BERTConfig(vocab_size=30).vocab_size == 30


# ------------------------------------------------------------------ one return_attention API

B, T, S, LAYERS, HEADS = 2, 5, 6, 2, 2


def _bert(cls):
    torch.manual_seed(0)
    config = BERTConfig(vocab_size=20, d_model=8, num_layers=LAYERS, num_heads=HEADS, d_ff=16)
    return cls(config).eval()


def _outputs(name, return_attention):
    """(attention tuples of one model's output, the (T, S) of each) for a tiny model."""
    ids = torch.randint(1, 20, (B, T), generator=torch.Generator().manual_seed(1))
    if name.startswith("BERT"):
        cls = {"BERT": BERT, "BERTForMaskedLM": BERTForMaskedLM,
               "BERTForSequenceClassification": BERTForSequenceClassification}[name]  # fmt: skip
        out = _bert(cls)(ids, return_attention=return_attention)
        return {"attentions": (out.attentions, (T, T))}
    if name == "ViT":
        torch.manual_seed(0)
        config = ViTConfig(d_model=8, num_layers=LAYERS, num_heads=HEADS, d_ff=16)
        out = ViT(config).eval()(torch.randn(B, 1, 8, 8), return_attention=return_attention)
        tokens = config.num_patches + 1
        return {"attentions": (out.attentions, (tokens, tokens))}
    torch.manual_seed(0)
    config = Seq2SeqConfig(vocab_size=20, d_model=8, num_heads=HEADS, num_encoder_layers=LAYERS,
                           num_decoder_layers=LAYERS, d_ff=16)  # fmt: skip
    source = torch.randint(1, 20, (B, S), generator=torch.Generator().manual_seed(2))
    out = Seq2SeqTransformer(config).eval()(source, ids, return_attention=return_attention)
    return {
        "encoder_attentions": (out.encoder_attentions, (S, S)),
        "decoder_attentions": (out.decoder_attentions, (T, T)),
        "cross_attentions": (out.cross_attentions, (T, S)),
    }


MODELS = ["BERT", "BERTForMaskedLM", "BERTForSequenceClassification", "ViT", "Seq2Seq"]


@pytest.mark.parametrize("name", MODELS)
def test_models_return_empty_tuples_unless_asked(name):
    for field, (maps, _) in _outputs(name, return_attention=False).items():
        assert maps == (), (name, field, maps)


@pytest.mark.parametrize("name", MODELS)
def test_models_return_one_map_per_layer_when_asked(name):
    for field, (maps, (queries, keys)) in _outputs(name, return_attention=True).items():
        assert isinstance(maps, tuple), (name, field, type(maps))
        assert [tuple(m.shape) for m in maps] == [(B, HEADS, queries, keys)] * LAYERS, field
        for weights in maps:
            torch.testing.assert_close(weights.sum(-1), torch.ones(B, HEADS, queries))


# ------------------------------------------------------------------ chapter 1 starts fast


@pytest.mark.parametrize(
    "module",
    ["tfm_edu.viz", "tfm_edu.numpy_attention", "tfm_edu.data.toy", "tfm_edu.exercises.attention",
     "tfm_edu.maps"],
)  # fmt: skip
def test_chapter_one_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"importing {module} loads torch"
