"""Chapter 9's recipe: its phases and position tiling, an end-to-end run with both baselines,
the shipped card's promises, and (slow) a retraining that reproduces the shipped checkpoint."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tfm_edu.analysis.language import corpus_loss
from tfm_edu.checkpoints import load_card, load_history
from tfm_edu.data import corpus
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.pretrained import char_gpt
from tfm_edu.recipes import gpt as recipe
from tfm_edu.train.__main__ import RECIPES


def test_phases_draw_their_windows_and_tile_once():
    ids = torch.arange(1000) % 50
    phases = (
        recipe.Phase(3, 4, 8),
        recipe.Phase(4, 2, 8, random_offset=True),
        recipe.Phase(2, 1, 32),
    )
    batches = list(recipe.phase_batches(ids, phases, 32, seed=0))
    assert [tuple(x.shape) for x, *_ in batches] == [(4, 8)] * 3 + [(2, 8)] * 4 + [(1, 32)] * 2
    offsets = [offset for _, _, offset, _ in batches]
    assert offsets[:3] == [0, 0, 0] and offsets[-2:] == [0, 0]
    assert all(0 <= o <= 24 for o in offsets[3:7]) and len(set(offsets[3:7])) > 1
    assert [tile for *_, tile in batches] == [0, 0, 0, 8, 0, 0, 0, 0, 0]  # once, at the start


def test_tile_positions_copies_the_trained_rows_periodically():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny())  # 32 positions
    trained = model.position_embedding.embedding.weight[:8].clone()
    recipe.tile_positions(model, 8)
    table = model.position_embedding.embedding.weight
    for start in (8, 16, 24):
        assert torch.equal(table[start : start + 8], trained)


def test_recipe_runs_end_to_end_with_both_baselines(tmp_path, capsys):
    assert RECIPES["gpt-chars"][0] is recipe.main
    out = tmp_path / "gpt"
    metrics = recipe.main(["--scale", "0.02", "--out", str(out), "--no-progress"])
    assert set(metrics["baselines"]) == {"bigram", "nanogpt_cpu"}
    nano = metrics["baselines"]["nanogpt_cpu"]
    # the same training time: stopped at ours, or (rarely) its planned steps ran out first
    assert nano["train_seconds"] <= metrics["train_seconds"] + 1.0
    assert nano["context"] == 64 and metrics["baselines"]["bigram"]["context"] == 1
    model, tokenizer = char_gpt(str(out))
    card = load_card(out)
    assert card["command"].startswith("python -m tfm_edu.train gpt-chars --scale 0.02 --out")
    assert card["corpus"]["sha256"] == corpus.describe(corpus.help_texts()).sha256
    assert tokenizer.vocab_size == model.config.vocab_size == 107
    assert len(load_history(out).evals) >= 1 and "baseline_history" in card
    assert "nanogpt_cpu" in capsys.readouterr().out


SHIPPED = load_card("char_gpt")


def test_the_shipped_card_records_the_recipe_and_the_comparison():
    assert SHIPPED["command"] == "python -m tfm_edu.train gpt-chars"
    assert SHIPPED["training"] == recipe._settings_dict(recipe.SHIPPED)
    assert SHIPPED["config"] == GPTConfig.char_gpt().__dict__
    metrics = SHIPPED["metrics"]
    nano, bigram = metrics["baselines"]["nanogpt_cpu"], metrics["baselines"]["bigram"]
    assert metrics["val_loss"] < nano["val_loss"] < bigram["val_loss"]
    assert abs(nano["train_seconds"] - metrics["train_seconds"]) < 0.05 * metrics["train_seconds"]
    assert metrics["seconds"] <= 240  # the whole command, both baselines included


def test_the_shipped_model_reaches_its_cards_loss_on_this_pythons_text():
    data = recipe.load_corpus()
    if data.info.sha256 != SHIPPED["corpus"]["sha256"]:
        pytest.skip(f"this Python's help texts differ from the card's ({data.info.python})")
    model, _ = char_gpt()
    assert corpus_loss(model, data.val, 256) == pytest.approx(
        SHIPPED["metrics"]["val_loss"], abs=1e-4
    )


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_checkpoint(tmp_path):
    """The recipe without its baselines (about 90 s on one thread) writes a model of the shipped
    quality: bit for bit on the CPU that made it, within rounding elsewhere."""
    data = recipe.load_corpus()
    if data.info.sha256 != SHIPPED["corpus"]["sha256"]:
        pytest.skip(f"this Python's help texts differ from the card's ({data.info.python})")
    out = tmp_path / "again"
    metrics = recipe.main(["--no-baselines", "--out", str(out), "--no-progress"])
    assert metrics["val_loss"] == pytest.approx(SHIPPED["metrics"]["val_loss"], abs=0.02)
    assert metrics["steps"] == SHIPPED["metrics"]["steps"]
    again, _ = char_gpt(str(out))
    shipped, _ = char_gpt()
    largest = max(
        (a - b).abs().max().item()
        for a, b in zip(again.state_dict().values(), shipped.state_dict().values(), strict=True)
    )
    print(f"largest weight difference from the shipped checkpoint: {largest:.2e}")
    assert largest < 0.05


def test_scale_shortens_every_phase_and_the_schedule():
    scaled = recipe._scaled(recipe.SHIPPED, 0.1)
    assert [p.steps for p in scaled.phases] == [60, 15, 30]
    assert scaled.warmup_steps == 26 and scaled.decay_start == 75
    assert recipe._scaled(recipe.SHIPPED, 1.0) is recipe.SHIPPED
    assert replace(recipe.SHIPPED).lr == 4e-3
