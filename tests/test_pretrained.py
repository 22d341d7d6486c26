"""tfm_edu.pretrained: the shipped chapter 6 and 8 models load as what they claim to be, and a
card that describes another model is refused with the card's name."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tfm_edu.checkpoints import CheckpointError
from tfm_edu.models.bert import BERTForMaskedLM, BERTForSequenceClassification
from tfm_edu.pretrained import (
    BERT_SENTIMENT_SEEDS,
    DIGITS_BASELINES,
    bert_sentiment_seeds,
    date_translator,
    digits_baselines,
    tiny_bert_mlm,
    tiny_bert_sentiment,
)
from tfm_edu.tokenize import WordPiece

DATA = Path(__file__).resolve().parent.parent / "data"


def _copy(tmp_path: Path, name: str, **card_changes) -> Path:
    """Copy data/<name>.* into tmp_path, with some entries of the card changed."""
    shutil.copy(DATA / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    card = json.loads((DATA / f"{name}.json").read_text())
    (tmp_path / f"{name}.json").write_text(json.dumps({**card, **card_changes}))
    return tmp_path / name


def test_tiny_bert_mlm_loads_in_eval_mode_with_its_tokenizer():
    model, tokenizer = tiny_bert_mlm()
    assert type(model) is BERTForMaskedLM and not model.training
    assert isinstance(tokenizer, WordPiece) and tokenizer.vocab_size == 61
    ids = torch.tensor([tokenizer.encode("the movie was [MASK] .")])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 61)


@pytest.mark.parametrize("name", ["bert_tiny_sentiment", "bert_tiny_sentiment_scratch"])
def test_tiny_bert_sentiment_loads_in_eval_mode_with_its_tokenizer(name):
    model, tokenizer = tiny_bert_sentiment(name)
    assert type(model) is BERTForSequenceClassification and not model.training
    assert model.num_labels == 2 and model.pooling == "mean"  # the card's head
    assert isinstance(tokenizer, WordPiece) and tokenizer.vocab_size == 61


def test_the_pretrained_and_scratch_classifiers_differ():
    pretrained, tokenizer = tiny_bert_sentiment()
    scratch, _ = tiny_bert_sentiment("bert_tiny_sentiment_scratch")
    ids = torch.tensor([tokenizer.encode("the movie was not bad .")])
    with torch.no_grad():
        assert not torch.allclose(pretrained(ids).logits, scratch(ids).logits)


def test_a_card_describing_another_model_is_refused_with_its_name(tmp_path):
    stem = _copy(tmp_path, "bert_tiny_mlm", model="BERTForSequenceClassification")
    with pytest.raises(CheckpointError, match=r"bert_tiny_mlm\.json.*not a BERTForMaskedLM"):
        tiny_bert_mlm(stem)
    stem = _copy(tmp_path, "bert_tiny_sentiment", model="BERTForMaskedLM")
    with pytest.raises(CheckpointError, match=r"bert_tiny_sentiment\.json.*not a BERTForSeq"):
        tiny_bert_sentiment(stem)


def test_the_data_folder_comes_from_the_environment(tmp_path, monkeypatch):
    _copy(tmp_path, "bert_tiny_mlm", model="ViT")
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "bert_tiny_mlm.json"))):
        tiny_bert_mlm()  # the default name, read from TFM_EDU_DATA
    with pytest.raises(CheckpointError, match=r"date_translator\.json: checkpoint card not found"):
        date_translator()
    with pytest.raises(CheckpointError, match=DIGITS_BASELINES):
        digits_baselines()


def test_a_card_without_its_tokenizer_is_named(tmp_path):
    card = json.loads((DATA / "bert_tiny_mlm.json").read_text())
    card.pop("tokenizer")
    shutil.copy(DATA / "bert_tiny_mlm.safetensors", tmp_path / "mlm.safetensors")
    (tmp_path / "mlm.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"mlm\.json: holds no WordPiece tokenizer"):
        tiny_bert_mlm(tmp_path / "mlm")


def test_digits_baselines_are_rows_of_the_comparison_table():
    rows = digits_baselines()
    assert len(rows) >= 3
    for row in rows:
        assert set(row) >= {"model", "test_accuracy", "parameters", "train_seconds"}, row
        assert isinstance(row["model"], str) and 0 <= row["test_accuracy"] <= 1
        assert isinstance(row["parameters"], int) and row["parameters"] > 0
    assert len({row["model"] for row in rows}) == len(rows)


def test_the_sentiment_seed_spread_has_one_value_per_seed_and_names_a_broken_file(
    tmp_path, monkeypatch
):
    table = bert_sentiment_seeds()
    assert len(table["seeds"]) >= 3 and "bert-sentiment-seeds" in table["command"]
    for arm in ("pretrained", "scratch"):
        for values in table["metrics"][arm].values():
            assert len(values) == len(table["seeds"]) and all(0 <= v <= 1 for v in values)
    card = json.loads((DATA / f"{BERT_SENTIMENT_SEEDS}.json").read_text())
    card["metrics"]["scratch"]["accuracy"].pop()  # one seed short
    (tmp_path / f"{BERT_SENTIMENT_SEEDS}.json").write_text(json.dumps(card))
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"seeds\.json: no readable seed table"):
        bert_sentiment_seeds()
