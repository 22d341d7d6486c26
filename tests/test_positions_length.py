"""Chapter 3's length-generalisation experiment: the shift task, the `ShiftEncoder` with each
kind of position, its recipe, the shipped checkpoints and the table their cards record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tfm_edu.analysis.positions import shift_accuracy_by_length, shift_accuracy_by_position
from tfm_edu.checkpoints import load_card
from tfm_edu.data.toy import IGNORE_INDEX, shift_task
from tfm_edu.models import shift_encoder
from tfm_edu.models.shift_encoder import (
    POSITIONS,
    RotarySelfAttention,
    ShiftEncoder,
    ShiftEncoderConfig,
)
from tfm_edu.positional import RotaryEmbedding
from tfm_edu.pretrained import SHIFT_EVAL, shift_encoders
from tfm_edu.recipes import positions as recipe

# ------------------------------------------------------------------ the task


def test_the_target_is_the_symbol_shift_places_back():
    inputs, targets = shift_task(5, 9, shift=2, vocab_size=4, rng=1)
    assert inputs.shape == targets.shape == (5, 9) and inputs.dtype == np.int64
    assert (targets[:, :2] == IGNORE_INDEX).all()
    for row, target in zip(inputs, targets, strict=True):
        assert [int(row[i - 2]) for i in range(2, 9)] == target[2:].tolist()
    assert inputs.min() >= 0 and inputs.max() < 4
    again, _ = shift_task(5, 9, shift=2, vocab_size=4, rng=1)
    assert np.array_equal(inputs, again)  # a seed gives the same data


def test_the_task_rejects_sizes_that_leave_no_answer():
    with pytest.raises(ValueError, match="length must be an int > shift=3"):
        shift_task(2, 3)
    with pytest.raises(ValueError, match="vocab_size"):
        shift_task(2, 8, vocab_size=1)


def test_the_model_and_the_data_agree_on_what_to_ignore():
    assert shift_encoder.IGNORE_INDEX == IGNORE_INDEX == -100


# ------------------------------------------------------------------ the model


@pytest.mark.parametrize("position", POSITIONS)
def test_forward_shapes_loss_and_attention(position):
    torch.manual_seed(0)
    model = ShiftEncoder(ShiftEncoderConfig.tiny(position))
    inputs, targets = shift_task(3, 7, vocab_size=10, rng=0)
    out = model(inputs, targets, return_attention=True)
    assert out.logits.shape == (3, 7, 10)
    assert [tuple(a.shape) for a in out.attentions] == [(3, 2, 7, 7)]
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, 2, 7))
    # the loss skips the first `shift` positions: compare with a hand-written cross-entropy
    log_probs = out.logits[:, 3:].log_softmax(-1)  # (3, 4, 10)
    expected = -log_probs.gather(-1, torch.from_numpy(targets[:, 3:, None])).mean()
    torch.testing.assert_close(out.loss, expected)
    assert model(inputs).attentions == () and model(inputs).loss is None


def test_without_positions_the_model_is_permutation_equivariant_and_with_them_it_is_not():
    inputs = torch.from_numpy(shift_task(1, 8, rng=2)[0])
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    for position, equivariant in (("none", True), ("sinusoidal", False), ("rope", False)):
        torch.manual_seed(0)
        model = ShiftEncoder(ShiftEncoderConfig.tiny(position))
        shuffled_then_run = model(inputs[:, order]).logits
        run_then_shuffled = model(inputs).logits[:, order]
        assert torch.allclose(shuffled_then_run, run_then_shuffled, atol=1e-5) == equivariant


def test_rotary_attention_scores_depend_on_the_offset_only():
    torch.manual_seed(0)
    attention = RotarySelfAttention(d_model=8, num_heads=2)
    x = torch.randn(1, 1, 8).expand(1, 12, 8)  # one token repeated at 12 positions
    _, weights = attention(x, x, x)  # (1, 2, 12, 12)
    # every query sees the same token at every key, so a score depends on n - m only: the
    # weights of query 5 over keys 3..7 are those of query 6 over keys 4..8, up to softmax's
    # normalisation, i.e. the log-ratios agree
    logs = weights.log()
    torch.testing.assert_close(
        logs[0, :, 5, 3:8] - logs[0, :, 5, 3:4], logs[0, :, 6, 4:9] - logs[0, :, 6, 4:5]
    )
    # and the rotation is the package's RotaryEmbedding applied to q and k
    q = attention.q_proj(x).view(1, 12, 2, 4).transpose(1, 2)
    k = attention.k_proj(x).view(1, 12, 2, 4).transpose(1, 2)
    rope = RotaryEmbedding(head_dim=4)
    scores = rope(q) @ rope(k).transpose(-2, -1) / 2.0  # sqrt(Dh) = 2
    torch.testing.assert_close(weights, scores.softmax(-1))


def test_tables_refuse_lengths_past_their_end_and_rope_does_not():
    long_inputs = shift_task(1, 20, rng=0)[0]
    for position in ("sinusoidal", "learned"):
        model = ShiftEncoder(ShiftEncoderConfig(position=position, max_positions=16, d_model=8))
        with pytest.raises(ValueError, match="longer than the"):
            model(long_inputs)
    model = ShiftEncoder(ShiftEncoderConfig(position="rope", max_positions=16, d_model=8))
    assert model(long_inputs).logits.shape == (1, 20, 10)


def test_config_rejects_unknown_positions_and_odd_rotary_heads():
    with pytest.raises(ValueError, match="position must be one of"):
        ShiftEncoderConfig(position="alibi")
    with pytest.raises(ValueError, match="must be even"):
        ShiftEncoderConfig(position="rope", d_model=6, num_heads=2)


def test_parameter_counts_of_the_shipped_sizes():
    counts = {
        p: sum(t.numel() for t in ShiftEncoder(ShiftEncoderConfig(position=p)).parameters())
        for p in POSITIONS
    }
    assert counts["none"] == counts["sinusoidal"] == counts["rope"] == 17_802
    assert counts["learned"] == 17_802 + 128 * 32  # the table, 128 positions x D


# ------------------------------------------------------------------ the recipe, end to end


def test_the_recipe_trains_saves_and_records_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    recipe.main(["--steps", "3", "--positions", "rope", "learned", "--no-progress"])
    assert "rope" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shift_learned.json", "shift_learned.safetensors", "shift_rope.json",
        "shift_rope.safetensors",
    ]  # fmt: skip
    card = json.loads((tmp_path / "shift_rope.json").read_text())
    assert (
        card["command"]
        == "python -m tfm_edu.train positions-length --steps 3 --positions rope learned"
    )
    assert set(card["metrics"]["accuracy_by_length"]) == {str(n) for n in recipe.LENGTHS}
    models = shift_encoders(("rope", "learned"))  # read back from TFM_EDU_DATA
    table = shift_accuracy_by_length(models["rope"], recipe.LENGTHS, **SHIFT_EVAL)
    for length, accuracy in table.items():
        assert accuracy == pytest.approx(
            card["metrics"]["accuracy_by_length"][str(length)], abs=1e-4
        )


# ------------------------------------------------------------------ the shipped checkpoints


@pytest.fixture(scope="module")
def shipped():
    return shift_encoders()


def test_the_shipped_checkpoints_load_small_and_of_the_right_kind(shipped):
    assert list(shipped) == list(POSITIONS)
    for position, model in shipped.items():
        assert model.config.position == position and not model.training
        card = load_card(f"shift_{position}")
        assert card["command"].startswith("python -m tfm_edu.train positions-length")
        assert card["training"]["train_length"] == 32


def test_the_shipped_models_learned_the_task_at_the_training_length(shipped):
    for position in ("sinusoidal", "learned", "rope"):
        accuracy = shift_accuracy_by_length(shipped[position], [16, 32], **SHIFT_EVAL)
        assert min(accuracy.values()) > 0.99, (position, accuracy)
    # and without positions it cannot: far from perfect at every length
    assert max(shift_accuracy_by_length(shipped["none"], [16, 32], **SHIFT_EVAL).values()) < 0.5


def test_the_table_is_what_the_cards_say(shipped):
    lengths = [8, 32, 64, 128]
    for position, model in shipped.items():
        recorded = load_card(f"shift_{position}")["metrics"]["accuracy_by_length"]
        measured = shift_accuracy_by_length(model, lengths, **SHIFT_EVAL)
        for length in lengths:
            assert measured[length] == pytest.approx(recorded[str(length)], abs=0.005), position


def test_accuracy_by_position_averages_to_the_length_table(shipped):
    model = shipped["learned"]
    by_position = shift_accuracy_by_position(model, 64, **SHIFT_EVAL)
    assert by_position.shape == (64,) and np.isnan(by_position[:3]).all()
    by_length = shift_accuracy_by_length(model, [64], **SHIFT_EVAL)[64]
    assert np.nanmean(by_position) == pytest.approx(by_length)
    # the learned table was trained only up to position 31
    assert np.nanmean(by_position[3:32]) > 0.99 > np.nanmean(by_position[32:])


def test_the_figure_draws_both_panels(shipped):
    from tfm_edu.viz import length_generalisation_figure

    table = {"a": {8: 1.0, 64: 0.5}, "b": {8: 0.9, 64: 0.9}}
    fig = length_generalisation_figure(
        table, train_length=32, by_position={"a": np.linspace(0, 1, 64)}, chance=0.1
    )
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "sequence length"
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        length_generalisation_figure({"a": {8: 1.5}}, train_length=32)


def test_sizes_are_keyword_only():
    with pytest.raises(TypeError):
        ShiftEncoderConfig("rope")
    with pytest.raises(TypeError):
        RotarySelfAttention(8, 2)


def test_bad_tokens_are_named():
    model = ShiftEncoder(ShiftEncoderConfig.tiny("rope"))
    with pytest.raises(ValueError, match="0..9"):
        model(torch.tensor([[0, 10, 2, 3]]))
    with pytest.raises(ValueError, match="integers"):
        model(torch.zeros(1, 4))
