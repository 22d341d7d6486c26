"""Chapter 9's copying GPT: the copy task, the recipe that trains it, and the shipped model's
induction head measured and switched off."""

import math

import numpy as np
import pytest
import torch

from tfm_edu.analysis import ablate_heads
from tfm_edu.analysis.induction import induction_scores, loss_by_position, previous_token_scores
from tfm_edu.checkpoints import card_path, load_card, load_history
from tfm_edu.data.toy import copy_task
from tfm_edu.pretrained import INDUCTION_GPT, INDUCTION_LETTERS, char_gpt, induction_gpt
from tfm_edu.recipes import induction as recipe
from tfm_edu.viz import phase_change_figure

SHIPPED = load_card(INDUCTION_GPT)


def _repeat(row: np.ndarray) -> list[tuple[int, int]]:
    """Every (L, p) such that row[p + L : p + 2L] equals row[p : p + L]."""
    found = []
    for segment in range(1, len(row) // 2 + 1):
        for start in range(len(row) - 2 * segment + 1):
            first, second = row[start : start + segment], row[start + segment : start + 2 * segment]
            if np.array_equal(first, second):
                found.append((segment, start))
    return found


# --- the copy task ---------------------------------------------------------------------------


def test_copy_task_repeats_one_stretch_of_varying_length_at_varying_places():
    symbols = range(1000, 3000)  # so many symbols that no stretch of 3 repeats by chance
    rows = copy_task(400, 33, symbols, min_segment=4, rng=0)
    assert rows.shape == (400, 33) and rows.dtype == np.int64
    assert rows.min() >= 1000 and rows.max() < 3000
    planted = []
    for row in rows:
        long = [(length, start) for length, start in _repeat(row) if length >= 3]
        longest = max(length for length, _ in long)
        planted.append(next((length, start) for length, start in long if length == longest))
    lengths = {length for length, _ in planted}
    starts = {start for _, start in planted}
    assert lengths == set(range(4, 17))  # every length from min_segment to T // 2
    assert min(starts) == 0 and max(starts) == 33 - 8  # every place, up to the last that fits


def test_copy_task_is_reproducible_and_checks_its_arguments():
    assert np.array_equal(copy_task(5, 20, [4, 7], rng=3), copy_task(5, 20, [4, 7], rng=3))
    assert not np.array_equal(copy_task(5, 20, range(9), rng=3), copy_task(5, 20, range(9), rng=4))
    with pytest.raises(ValueError, match="length must be an int >= 2 \\* min_segment = 8"):
        copy_task(2, 7, range(5))
    with pytest.raises(ValueError, match="at least 2 ids"):
        copy_task(2, 16, [7])
    with pytest.raises(ValueError, match="integer ids, got 'abc'"):
        copy_task(2, 16, "abc")
    with pytest.raises(ValueError, match="num_sequences"):
        copy_task(0, 16, range(5))


# --- the recipe -------------------------------------------------------------------------------


def _text() -> torch.Tensor:
    return torch.arange(500, 900)  # (400,) ids no letter uses: a row's origin is plain to see


def test_batches_mix_text_windows_and_copy_rows_in_the_asked_share():
    letters = list(range(10, 36))
    text = _text()
    for fraction, low, high in [(0.0, 0, 0), (1.0, 1, 1), (0.5, 0.4, 0.6)]:
        settings = recipe.TrainingConfig(batch_size=200, text_fraction=fraction)
        batch = next(recipe.copy_batches(settings, text, letters, 33))
        assert batch.shape == (200, 33)
        from_text = batch[:, 0] >= 500  # (B,)
        for row, is_text in zip(batch, from_text, strict=True):
            if is_text:  # a window of the text: consecutive ids
                assert torch.equal(row, torch.arange(int(row[0]), int(row[0]) + 33))
            else:
                assert set(row.tolist()) <= set(letters) and _repeat(row.numpy())
        assert low <= from_text.float().mean().item() <= high
    first = recipe.copy_batches(recipe.TrainingConfig(), text, letters, 33)
    again = recipe.copy_batches(recipe.TrainingConfig(), text, letters, 33)
    assert all(torch.equal(next(first), next(again)) for _ in range(3))


def test_copying_step_is_where_the_second_copy_stays_easy():
    def evals(seconds):
        return [
            {"step": 100 * i, "first_copy": 3.0, "second_copy": s} for i, s in enumerate(seconds)
        ]

    assert recipe.copying_step(evals([3.0, 1.0, 3.0, 1.4, 0.5])) == 300  # the dip at 100 fell back
    assert recipe.copying_step(evals([3.0, 2.9, 2.0])) is None
    assert recipe.copying_step(evals([1.0, 0.5])) == 0


def test_the_recipe_runs_end_to_end_and_its_card_loads(tmp_path, capsys):
    out = tmp_path / "copier"
    metrics = recipe.main(["--steps", "30", "--out", str(out), "--no-progress"])
    assert "wrote" in capsys.readouterr().out
    model, tokenizer = char_gpt(str(out))
    assert model.config == recipe.model_config(tokenizer.vocab_size)
    card = load_card(str(out))
    assert card["command"] == f"python -m tfm_edu.train induction-heads --steps 30 --out {out}"
    assert card["training"]["steps"] == 30 and card["training"]["decay_start"] == 30
    assert set(metrics) >= {"first_copy", "second_copy", "induction", "previous_token"}
    assert [e["step"] for e in load_history(str(out)).evals] == [29]


@pytest.mark.slow
def test_the_first_steps_of_the_recipe_reproduce_the_shipped_run(tmp_path):
    """500 steps hold the same learning rates as the shipped run's first 500 (warm-up, then the
    constant rate): its measurements at steps 249 and 499 must come back, bit for bit on the CPU
    that made them, within rounding elsewhere."""
    out = tmp_path / "again"
    recipe.main(["--steps", "500", "--out", str(out), "--no-progress"])
    again = load_history(str(out)).evals
    shipped = {e["step"]: e for e in load_history(INDUCTION_GPT).evals}
    for row in again:
        for key in ("first_copy", "second_copy", "induction", "previous_token"):
            assert row[key] == pytest.approx(shipped[row["step"]][key], abs=2e-3), (row, key)


# --- the shipped model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def copier():
    model, tokenizer = induction_gpt()
    strings = recipe.evaluation_strings([tokenizer.stoi[c] for c in INDUCTION_LETTERS])
    return model, strings


def test_the_shipped_model_is_small_and_its_card_matches_a_fresh_measurement(copier):
    model, strings = copier
    assert card_path(INDUCTION_GPT).with_suffix(".safetensors").stat().st_size < 1_000_000
    measured = recipe.copy_metrics(model, strings)
    for key, value in measured.items():
        assert value == pytest.approx(SHIPPED["metrics"][key], abs=1e-3), key
    assert SHIPPED["metrics"]["copying_step"] is not None


def test_the_shipped_model_copies_the_second_copy_and_only_that(copier):
    model, strings = copier
    losses = loss_by_position(model, strings)  # (31,)
    first, second = losses[:15].mean(), losses[16:].mean()
    assert first > 0.95 * math.log(26)  # random letters: no better than a uniform guess
    assert second < 0.2 * first


def test_switching_off_the_induction_head_removes_the_drop_and_a_control_does_not(copier):
    model, strings = copier
    scores = induction_scores(model, strings, 16)  # (2, 2)
    layer, head = np.unravel_index(np.argmax(scores), scores.shape)
    assert layer == 1 and scores[layer, head] > 0.5  # an induction head, in the second layer
    other = 1 - head
    assert scores[1, other] < 0.1
    with ablate_heads(model, {1: [int(head)]}):
        off = loss_by_position(model, strings)
    with ablate_heads(model, {1: [other]}):
        control = loss_by_position(model, strings)
    assert off[16:].mean() > 0.9 * off[:15].mean()  # no easier than the first copy
    assert control[16:].mean() < 0.5 * control[:15].mean()  # still copies


def test_the_first_layer_supplies_the_previous_token(copier):
    model, strings = copier
    previous = previous_token_scores(model, strings)  # (2, 2)
    assert previous[0].max() > 0.3 > previous[1].max()
    with ablate_heads(model, {0: [0, 1]}):
        off = loss_by_position(model, strings)
    assert off[16:].mean() > 0.8 * off[:15].mean()


def test_phase_change_figure_draws_the_card_and_names_bad_input():
    evals = load_history(INDUCTION_GPT).evals
    mark = SHIPPED["metrics"]["copying_step"]
    figure = phase_change_figure(evals, chance=math.log(26), mark=mark)
    top, bottom = figure.axes
    assert [line.get_label() for line in bottom.get_lines()][:2] == ["first copy", "second copy"]
    second = bottom.get_lines()[1].get_ydata()
    assert second[0] > 3 and second[-1] < 0.5
    with pytest.raises(ValueError, match=r"evals\[0\] lacks \['induction'"):
        phase_change_figure([{"step": 1, "first_copy": 1, "second_copy": 1, "previous_token": 0}])
    with pytest.raises(ValueError, match="increasing step"):
        phase_change_figure(evals[::-1])
    with pytest.raises(ValueError, match="empty"):
        phase_change_figure([])
