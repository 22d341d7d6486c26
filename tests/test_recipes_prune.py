"""Chapter 11's recipe `python -m tfm_edu.train prune-heads`: a small run end to end, and the
promises of the shipped card (data/prune_heads.json)."""

from __future__ import annotations

import itertools
import json

import pytest

from tfm_edu.checkpoints import CheckpointError, load_card
from tfm_edu.pretrained import prune_heads_table
from tfm_edu.recipes import prune_heads as recipe
from tfm_edu.train.__main__ import RECIPES


def test_the_recipe_runs_small_and_writes_a_card(tmp_path, capsys):
    assert RECIPES["prune-heads"][0] is recipe.main
    out = tmp_path / "prune"
    argv = ["--random-orders", "2", "--importance-examples", "3", "--test-examples", "40"]
    result = recipe.main([*argv, "--out", str(out), "--no-progress"])
    card = json.loads(out.with_suffix(".json").read_text())  # metrics only: no "config"
    assert card == json.loads(json.dumps(result))
    assert card["command"].startswith("python -m tfm_edu.train prune-heads --random-orders 2")
    assert card["random_seeds"] == [0, 1]
    assert set(card["models"]) == {"bert_sentiment", "digits_vit"}
    for name, heads in (("bert_sentiment", 8), ("digits_vit", 16)):
        entry = card["models"][name]
        assert entry["heads_removed"] == list(range(heads + 1))
        assert (entry["importance_examples"], entry["test_examples"]) == (3, 40)
        assert sorted(map(tuple, entry["importance_order"])) == [
            (layer, head) for layer in range(heads // 4) for head in range(4)
        ]
        steps = [a - b for a, b in itertools.pairwise(entry["parameters"])]
        assert steps == [entry["parameters_per_head"]] * heads == [4 * 16 * 64 + 3 * 16] * heads
        accuracy = entry["accuracy"]
        assert entry["pruned_accuracy"] == accuracy["importance"]  # really pruned = gated
        assert len(accuracy["random"]) == 2
        # nothing removed: every order agrees; everything removed: likewise
        for point in (0, -1):
            assert accuracy["random_std"][point] == 0
            assert accuracy["random_mean"][point] == accuracy["importance"][point]
    shown = capsys.readouterr().out
    assert "importance order" in shown and "random: mean ± std" in shown and str(out) in shown


def test_the_recipe_refuses_a_single_random_order(tmp_path):
    with pytest.raises(SystemExit, match="random-orders must be >= 2"):
        recipe.main(["--random-orders", "1", "--out", str(tmp_path / "x")])


def test_the_shipped_card_keeps_its_promises():
    table = prune_heads_table()
    assert table["command"] == "python -m tfm_edu.train prune-heads"
    assert len(table["random_seeds"]) >= 5
    bert, vit = table["models"]["bert_sentiment"], table["models"]["digits_vit"]
    # nothing removed: the accuracy the chapters' cards report
    assert (
        bert["accuracy"]["importance"][0] == load_card("bert_tiny_sentiment")["metrics"]["accuracy"]
    )
    assert vit["accuracy"]["importance"][0] == load_card("digits_vit")["metrics"]["test_accuracy"]
    for entry in (bert, vit):
        accuracy = entry["accuracy"]
        assert entry["pruned_accuracy"] == accuracy["importance"]
        assert entry["importance_examples"] in (1000, 1437)
        # half the heads gone: the importance order keeps more accuracy than the random mean
        half = len(entry["heads_removed"]) // 2
        assert accuracy["importance"][half] > accuracy["random_mean"][half]


def test_the_table_loader_names_the_file_when_it_cannot_read_it(monkeypatch, tmp_path):
    import tfm_edu.pretrained as pretrained

    path = tmp_path / "prune_heads.json"
    path.write_text(json.dumps({"models": {}, "command": "x"}))
    monkeypatch.setattr(pretrained, "card_path", lambda name: path)
    with pytest.raises(CheckpointError, match="prune_heads.json: no readable head-pruning table"):
        prune_heads_table()
