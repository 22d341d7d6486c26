"""Chapter 6's recipes: they run end to end, and the shipped checkpoints keep their promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfm_edu.analysis.masked_lm import fill_mask
from tfm_edu.analysis.metrics import classification_metrics
from tfm_edu.analysis.sentiment import bag_of_words_probabilities, sentiment_probabilities
from tfm_edu.checkpoints import load_card, load_history
from tfm_edu.data import sentences
from tfm_edu.pretrained import tiny_bert_mlm, tiny_bert_sentiment
from tfm_edu.recipes import bert as recipe


def test_recipes_run_end_to_end(tmp_path, capsys):
    mlm = tmp_path / "mlm"
    metrics = recipe.main_mlm(
        ["--steps", "4", "--corpus", "200", "--out", str(mlm), "--no-progress"]
    )
    assert set(metrics) >= {"masked_accuracy", "agreement", "polarity", "seconds"}
    model, tokenizer = tiny_bert_mlm(mlm)
    assert len(load_history(mlm).steps) == 1  # 4 steps, stored as one mean
    assert model.mlm_head.decoder.weight is model.bert.embeddings.token_embedding.weight
    results = recipe.main_sentiment(
        ["--pretrained", str(mlm), "--steps", "3", "--train-size", "64", "--no-progress",
         "--out", str(tmp_path / "sentiment"), "--scratch-out", str(tmp_path / "scratch")]
    )  # fmt: skip
    assert set(results) == {"pretrained", "scratch", "bag_of_words"}
    assert "bag_of_words" in capsys.readouterr().out
    classifier, _ = tiny_bert_sentiment(tmp_path / "sentiment")
    assert classifier.pooling == recipe.POOLING
    card = load_card(tmp_path / "scratch")
    assert card["variant"] == "scratch" and "bert-sentiment" in card["command"]
    assert torch.get_num_threads() >= 1  # the recipe restored the thread setting
    with pytest.raises(SystemExit, match="bert-mlm"):
        recipe.main_sentiment(["--pretrained", str(tmp_path / "missing")])


def test_seed_spread_recipe(tmp_path, capsys):
    from tfm_edu.train.__main__ import RECIPES

    assert RECIPES["bert-sentiment-seeds"][0] is recipe.main_sentiment_seeds
    out = tmp_path / "seeds"
    table = recipe.main_sentiment_seeds(
        ["--steps", "2", "--train-size", "64", "--seeds", "3", "5", "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    assert load_card(out) == table  # a plain JSON table that the card reader accepts
    assert table["seeds"] == [3, 5] and "--seeds 3 5" in table["command"]
    for arm in ("pretrained", "scratch"):
        assert set(table["metrics"][arm]) == set(recipe.SEEDS_METRICS)
        assert all(len(values) == 2 for values in table["metrics"][arm].values())
    assert "over seeds [3, 5]" in capsys.readouterr().out


def test_shipped_seed_spread_matches_the_shipped_checkpoints():
    """Seed 0 of the spread is the run of the two shipped classifiers."""
    table = load_card(recipe.SEEDS_TABLE)
    assert 0 in table["seeds"] and len(set(table["seeds"])) == len(table["seeds"]) >= 3
    first = table["seeds"].index(0)
    for arm, name in (("pretrained", recipe.SENTIMENT_CHECKPOINT),
                      ("scratch", recipe.SCRATCH_CHECKPOINT)):  # fmt: skip
        shipped = load_card(name)["metrics"]["accuracy"]
        assert table["metrics"][arm]["accuracy"][first] == pytest.approx(shipped, abs=1e-4)
        assert len(table["metrics"][arm]["accuracy"]) == len(table["seeds"])


def test_fill_mask_and_metrics():
    model, tokenizer = tiny_bert_mlm()
    guesses = fill_mask(model, tokenizer, "the actors in the film [MASK] good .", top_k=3)
    assert len(guesses) == 1 and len(guesses[0]) == 3
    with pytest.raises(ValueError, match="MASK"):
        fill_mask(model, tokenizer, "no blank here")
    metrics = classification_metrics([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6])
    assert metrics["accuracy"] == 0.5 and metrics["confusion"] == [[1, 1], [1, 1]]
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == 0.5
    assert metrics["roc_auc"] == 0.75


def test_shipped_checkpoints_beat_both_baselines():
    """The promise of chapter 6, recomputed from data/ on the test split."""
    splits = sentences.sentiment_splits()
    texts = [row.text for row in splits["test"]]
    labels = np.array([row.label for row in splits["test"]])
    finetuned, tokenizer = tiny_bert_sentiment(recipe.SENTIMENT_CHECKPOINT)
    scratch, _ = tiny_bert_sentiment(recipe.SCRATCH_CHECKPOINT)
    probabilities = {
        "pretrained": sentiment_probabilities(finetuned, tokenizer, texts),
        "scratch": sentiment_probabilities(scratch, tokenizer, texts),
        "bag_of_words": bag_of_words_probabilities(splits["train"], texts),
    }
    accuracy = {name: np.mean((p >= 0.5) == labels) for name, p in probabilities.items()}
    assert accuracy["pretrained"] >= 0.9
    assert accuracy["pretrained"] > accuracy["scratch"] + 0.1
    assert accuracy["pretrained"] > accuracy["bag_of_words"] + 0.3
    card = load_card(recipe.SENTIMENT_CHECKPOINT)
    assert card["metrics"]["accuracy"] == pytest.approx(accuracy["pretrained"], abs=1e-6)
    mlm_card = load_card(recipe.MLM_CHECKPOINT)
    assert mlm_card["metrics"]["agreement"] >= 0.9
