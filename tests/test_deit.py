"""tfm_edu.models.deit and `python -m tfm_edu.train distill-digits`: the distillation token and
head, DeiT's three losses against formulas written out here, where their gradients go, the
recipe's table and subsets, and the shipped student."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tfm_edu.checkpoints import CheckpointError, load_checkpoint
from tfm_edu.data import digits
from tfm_edu.models.convnet import ConvNet, ConvNetConfig
from tfm_edu.models.deit import DeiT, DeiTOutput
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.pretrained import (
    DIGITS_DEIT,
    DISTILL_DIGITS,
    digits_convnet,
    digits_deit,
    distill_digits_table,
)
from tfm_edu.recipes.distill_digits import METHODS, main, stratified_subsets

DATA = Path(__file__).resolve().parent.parent / "data"
B, T, ALPHA = 4, 2.5, 0.3


def _model() -> DeiT:
    torch.manual_seed(0)
    return DeiT(ViTConfig.tiny()).eval()


def _batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(B, 1, 8, 8, generator=generator)  # (B, 1, 8, 8)
    targets = torch.tensor([0, 3, 9, 3])  # (B,)
    teacher = torch.randn(B, 10, generator=generator) * 3  # (B, 10)
    return images, targets, teacher


# ------------------------------------------------------------------ the model


def test_the_distillation_token_is_a_second_learned_token_beside_cls():
    model = _model()
    config = model.config
    assert model.distillation_token.shape == model.cls_token.shape == (1, 1, config.d_model)
    assert not torch.equal(model.distillation_token, model.cls_token)
    names = dict(model.named_parameters())
    assert "distillation_token" in names and "distillation_head.weight" in names
    table = model.position_embedding.embedding.weight
    assert table.shape == (config.num_patches + 2, config.d_model)  # [CLS], distillation, P
    assert set(ViT(config).state_dict()) < set(model.state_dict())  # the ViT's parts, reused


def test_parameter_count_is_the_vits_plus_token_position_and_head():
    config = ViTConfig()
    extra = config.d_model + config.d_model + (config.d_model + 1) * config.num_classes
    count = sum(p.numel() for p in DeiT(config).parameters())
    assert count == sum(p.numel() for p in ViT(config).parameters()) + extra == 136_916


def test_logits_are_the_mean_of_the_two_heads_and_attentions_cover_p_plus_2_tokens():
    model = _model()
    out = model(_batch()[0], return_attention=True)
    assert isinstance(out, DeiTOutput) and out.loss is None
    assert out.class_logits.shape == out.distillation_logits.shape == (B, 10)
    torch.testing.assert_close(out.logits, (out.class_logits + out.distillation_logits) / 2)
    assert not torch.allclose(out.class_logits, out.distillation_logits)  # two different heads
    tokens = model.config.num_patches + 2
    assert len(out.attentions) == model.config.num_layers
    for weights in out.attentions:
        assert weights.shape == (B, model.config.num_heads, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, model.config.num_heads, tokens))
    assert model(_batch()[0]).attentions == ()


# ------------------------------------------------------------------ the losses, written out


def _ce(logits, targets, smoothing=0.0):
    log_p = logits.log_softmax(-1)  # (B, 10)
    target = torch.full_like(log_p, smoothing / 10)  # (B, 10)
    target[torch.arange(len(targets)), targets] += 1 - smoothing
    return -(target * log_p).sum(-1).mean()


def test_soft_loss_is_class_ce_plus_t2_kl_of_the_distillation_head():
    images, targets, teacher = _batch()
    model = _model()
    out = model(images, targets, teacher, temperature=T, alpha=ALPHA, label_smoothing=0.1)
    p_teacher = (teacher / T).softmax(-1)  # (B, 10)
    log_student = (out.distillation_logits / T).log_softmax(-1)  # (B, 10)
    kl = (p_teacher * (p_teacher.log() - log_student)).sum(-1).mean()
    expected = (1 - ALPHA) * _ce(out.class_logits, targets, 0.1) + ALPHA * T**2 * kl
    torch.testing.assert_close(out.loss, expected)


def test_hard_loss_is_deits_eq_3():
    images, targets, teacher = _batch()
    out = _model()(images, targets, teacher, distillation="hard")
    expected = 0.5 * _ce(out.class_logits, targets) + 0.5 * _ce(
        out.distillation_logits, teacher.argmax(-1)
    )
    torch.testing.assert_close(out.loss, expected)
    assert not torch.equal(teacher.argmax(-1), targets)  # the two labels differ here
    # only the teacher's top class counts: a teacher with the same argmax gives the same loss
    sharper = teacher * 10  # (B, 10)
    again = _model()(images, targets, sharper, distillation="hard")
    torch.testing.assert_close(again.loss, out.loss)


def test_without_a_teacher_both_heads_learn_the_labels():
    images, targets, _ = _batch()
    out = _model()(images, targets, distillation="none", label_smoothing=0.1)
    expected = (
        _ce(out.class_logits, targets, 0.1) + _ce(out.distillation_logits, targets, 0.1)
    ) / 2
    torch.testing.assert_close(out.loss, expected)


# ------------------------------------------------------------------ where the gradients go


def _grads(alpha: float, distillation: str = "soft"):
    model = _model()
    images, targets, teacher = _batch()
    teacher.requires_grad_(True)
    model(images, targets, teacher, distillation=distillation, alpha=alpha).loss.backward()
    return model, teacher


def test_the_class_head_learns_labels_and_the_distillation_head_the_teacher():
    model, _ = _grads(alpha=1.0)  # the teacher term only
    assert torch.count_nonzero(model.head.weight.grad) == 0
    assert torch.count_nonzero(model.distillation_head.weight.grad) > 0
    model, _ = _grads(alpha=0.0)  # the labels only
    assert torch.count_nonzero(model.distillation_head.weight.grad) == 0
    assert torch.count_nonzero(model.head.weight.grad) > 0
    images, targets, teacher = _batch()
    model = _model()
    only_teacher = model(images, targets, teacher, alpha=1.0).loss
    other_labels = model(images, (targets + 1) % 10, teacher, alpha=1.0).loss
    torch.testing.assert_close(only_teacher, other_labels)  # alpha = 1: the labels do not count


@pytest.mark.parametrize("distillation", ["soft", "hard"])
def test_the_teacher_is_never_trained(distillation):
    _, teacher_logits = _grads(alpha=0.5, distillation=distillation)
    assert teacher_logits.grad is None
    torch.manual_seed(0)
    teacher = ConvNet(ConvNetConfig.tiny())
    images, targets, _ = _batch()
    model = _model()
    model(images, targets, teacher(images).logits, distillation=distillation).loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.head.weight.grad is not None


# ------------------------------------------------------------------ boundary checks


def test_wrong_shapes_and_missing_teachers_are_named():
    model = _model()
    images, targets, teacher = _batch()
    with pytest.raises(ValueError, match=r"teacher_logits must be \(B, num_classes\) = \(4, 10\)"):
        model(images, targets, teacher[:, :9])
    with pytest.raises(ValueError, match=r"got \(3, 10\)"):
        model(images, targets, teacher[:3], distillation="hard")
    with pytest.raises(ValueError, match=r"'soft' needs teacher_logits \(B, 10\)"):
        model(images, targets)
    with pytest.raises(ValueError, match=r"targets must be \(B,\) = \(4,\), got \(2,\)"):
        model(images, targets[:2], teacher)
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 8, 8\), got \(4, 8, 8\)"):
        model(images[:, 0], targets, teacher)
    with pytest.raises(ValueError, match="distillation must be one of"):
        model(images, targets, teacher, distillation="medium")
    with pytest.raises(ValueError, match="would ignore them"):
        model(images, targets, teacher, distillation="none")
    with pytest.raises(ValueError, match="pass targets too"):
        model(images, teacher_logits=teacher)
    with pytest.raises(ValueError, match="without label smoothing"):
        model(images, targets, teacher, distillation="hard", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        model(images, targets, teacher, alpha=1.5)


# ------------------------------------------------------------------ the recipe


def test_subsets_are_stratified_nested_and_seeded():
    labels = digits.load("train")[1]
    small, half, full = stratified_subsets(labels, (0.1, 0.5, 1.0), seed=0)
    assert set(small.tolist()) < set(half.tolist()) < set(full.tolist())
    assert full.tolist() == list(range(len(labels)))
    counts = torch.bincount(labels[small], minlength=10)  # (10,)
    expected = torch.round(torch.bincount(labels, minlength=10) * 0.1)  # (10,)
    assert torch.equal(counts, expected.long())
    other = stratified_subsets(labels, (0.1,), seed=1)[0]
    assert len(other) == len(small) and not torch.equal(other, small)
    assert torch.equal(stratified_subsets(labels, (0.1,), seed=0)[0], small)


def test_a_tiny_run_writes_a_table_and_two_loadable_checkpoints(tmp_path, monkeypatch):
    argv = ["--steps", "2", "--fractions", "0.1", "0.05", "--seeds", "0", "1"]
    main([*argv, "--out", str(tmp_path / DISTILL_DIGITS), "--no-progress"])
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    table = distill_digits_table()
    assert table["command"] == "python -m tfm_edu.train distill-digits " + " ".join(argv) + (
        f" --out {tmp_path / DISTILL_DIGITS}"
    )
    assert table["seeds"] == [0, 1] and table["sizes"] == {"0.05": 60, "0.1": 126}
    assert set(table["table"]) == set(METHODS)
    for rows in table["table"].values():
        for row in rows.values():
            assert len(row["accuracy"]) == len(row["val_accuracy"]) == 2
            assert row["mean"] == pytest.approx(sum(row["accuracy"]) / 2, abs=1e-4)
    assert table["shipped_deit"] in ("deit_soft", "deit_hard")
    with pytest.raises(SystemExit, match="--seed is unused"):
        main(["--seed", "3", "--out", str(tmp_path / "other")])
    teacher, deit = digits_convnet(), digits_deit()  # read from tmp_path
    assert type(teacher) is ConvNet and type(deit) is DeiT
    card = json.loads((tmp_path / f"{DIGITS_DEIT}.json").read_text())
    assert card["fraction_of_train"] == 0.1 and card["distillation"] in ("soft", "hard")


def test_a_broken_table_is_named(tmp_path, monkeypatch):
    table = json.loads((DATA / f"{DISTILL_DIGITS}.json").read_text())
    table["table"]["vit"]["0.1"]["accuracy"].pop()  # one seed short
    (tmp_path / f"{DISTILL_DIGITS}.json").write_text(json.dumps(table))
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"distill_digits\.json: no readable distillation"):
        distill_digits_table()
    (tmp_path / f"{DISTILL_DIGITS}.json").unlink()
    with pytest.raises(CheckpointError, match=r"distill_digits\.json"):
        distill_digits_table()


# ------------------------------------------------------------------ what is shipped


def test_the_shipped_table_covers_four_sizes_three_seeds_and_four_methods():
    table = distill_digits_table()
    assert table["command"] == "python -m tfm_edu.train distill-digits"
    assert len(table["seeds"]) >= 3 and table["threads"] == 1
    assert table["sizes"] == {"0.1": 126, "0.25": 315, "0.5": 629, "1.0": 1257}
    assert set(table["table"]) == set(METHODS)


def test_the_shipped_student_reproduces_its_cards_accuracies():
    model = digits_deit()
    assert type(model) is DeiT and not model.training
    card = json.loads((DATA / f"{DIGITS_DEIT}.json").read_text())
    images, labels = digits.load("test")
    with torch.no_grad():
        out = model(images)
    for key, logits in (
        ("test_accuracy", out.logits),
        ("test_accuracy_class_head", out.class_logits),
        ("test_accuracy_distillation_head", out.distillation_logits),
    ):
        assert round((logits.argmax(-1) == labels).float().mean().item(), 4) == card["metrics"][key]
    assert card["metrics"]["test_accuracy"] >= 0.9
    assert (DATA / f"{DIGITS_DEIT}.safetensors").stat().st_size < 8_000_000


def test_a_card_describing_another_model_is_refused_with_its_name(tmp_path, monkeypatch):
    shutil.copy(DATA / f"{DIGITS_DEIT}.safetensors", tmp_path)
    card = json.loads((DATA / f"{DIGITS_DEIT}.json").read_text())
    (tmp_path / f"{DIGITS_DEIT}.json").write_text(json.dumps({**card, "model": "ViT"}))
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"digits_deit\.json: describes a 'ViT', not a DeiT"):
        digits_deit()
    with pytest.raises(CheckpointError, match=r"digits_deit\.safetensors does not fit ViT"):
        load_checkpoint(DIGITS_DEIT, lambda card: ViT(ViTConfig(**card["config"])), kind="ViT")
