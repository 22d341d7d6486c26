"""The distillation losses against formulas written out here, one number at a time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tfm_edu.distill import (
    IGNORE_INDEX,
    attention_kl,
    distillation_loss,
    hard_distillation_loss,
    soft_targets,
)


def _logits(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _by_hand(student, teacher, targets, temperature, alpha):
    """Hinton et al.'s loss with Python loops: per row, sum_v p log(p / q) * T^2, and -log q_y."""
    total_soft, total_hard, rows = 0.0, 0.0, 0
    for s_row, t_row, y in zip(student.tolist(), teacher.tolist(), targets.tolist(), strict=True):
        if y == IGNORE_INDEX:
            continue
        rows += 1
        zs = [v / temperature for v in s_row]
        zt = [v / temperature for v in t_row]
        log_norm_s = math.log(sum(math.exp(v) for v in zs))
        log_norm_t = math.log(sum(math.exp(v) for v in zt))
        for a, b in zip(zs, zt, strict=True):
            p = math.exp(b - log_norm_t)
            total_soft += p * ((b - log_norm_t) - (a - log_norm_s))
        total_hard -= s_row[y] - math.log(sum(math.exp(v) for v in s_row))
    return alpha * temperature**2 * total_soft / rows + (1 - alpha) * total_hard / rows


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (8.0, 1.0)])
def test_matches_the_formula_for_classes(temperature, alpha):
    student, teacher = _logits(5, 7, seed=1), _logits(5, 7, seed=2)
    targets = torch.tensor([0, 3, 6, 2, 2])
    got = distillation_loss(student, teacher, targets, temperature=temperature, alpha=alpha)
    expected = _by_hand(student, teacher, targets, temperature, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_the_soft_term_is_pytorchs_batchmean_kl_times_t_squared():
    student, teacher = _logits(6, 10, seed=3), _logits(6, 10, seed=4)
    got = distillation_loss(student, teacher, temperature=3.0, alpha=1.0)
    kl = F.kl_div(
        F.log_softmax(student / 3.0, dim=-1),
        F.softmax(teacher / 3.0, dim=-1),
        reduction="batchmean",
    )
    torch.testing.assert_close(got, 9.0 * kl)
    assert float(got) > 0


def test_sequences_average_over_real_tokens_and_ignore_padding():
    student, teacher = _logits(3, 4, 9, seed=5), _logits(3, 4, 9, seed=6)
    targets = torch.tensor(
        [[1, 2, 3, 4], [5, 6, IGNORE_INDEX, IGNORE_INDEX], [0, IGNORE_INDEX] * 2]
    )
    got = distillation_loss(student, teacher, targets, temperature=2.0, alpha=0.7)
    expected = _by_hand(student.flatten(0, 1), teacher.flatten(0, 1), targets.flatten(), 2.0, 0.7)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # garbage in the padded places changes nothing
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    padded = targets == IGNORE_INDEX
    noisy_student[padded] = 100.0 * torch.randn(int(padded.sum()), 9)
    noisy_teacher[padded] = -50.0
    again = distillation_loss(noisy_student, noisy_teacher, targets, temperature=2.0, alpha=0.7)
    torch.testing.assert_close(again, got)


def test_a_mask_without_targets_leaves_out_the_padded_tokens():
    student, teacher = _logits(2, 5, 6, seed=7), _logits(2, 5, 6, seed=8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    got = distillation_loss(student, teacher, temperature=1.5, alpha=1.0, mask=mask)
    real_student, real_teacher = student[mask], teacher[mask]  # (7, 6)
    expected = distillation_loss(real_student, real_teacher, temperature=1.5, alpha=1.0)
    torch.testing.assert_close(got, expected)
    # and it is not simply the mean over all ten places
    assert not torch.isclose(got, distillation_loss(student, teacher, temperature=1.5, alpha=1.0))


def test_alpha_zero_is_plain_cross_entropy_and_the_teacher_gets_no_gradient():
    student = _logits(4, 5, seed=9).requires_grad_()
    teacher = _logits(4, 5, seed=10).requires_grad_()
    targets = torch.tensor([4, 0, 1, 1])
    got = distillation_loss(student, teacher, targets, temperature=5.0, alpha=0.0)
    torch.testing.assert_close(got, F.cross_entropy(student, targets))
    distillation_loss(student, teacher, targets, temperature=5.0, alpha=0.5).backward()
    assert teacher.grad is None and student.grad is not None


def test_t_squared_keeps_the_soft_gradient_the_same_size_as_t_grows():
    """d(T^2 KL)/dz = T (q - p) tends to (z_s - z_t) / V (centred): its size stops depending on T.
    Without T^2 it would shrink like 1 / T^2."""
    teacher = _logits(8, 10, seed=11)
    student = _logits(8, 10, seed=12)

    def gradient_norm(temperature, scaled=True):
        z = student.clone().requires_grad_()
        loss = distillation_loss(z, teacher, temperature=temperature, alpha=1.0)
        (loss if scaled else loss / temperature**2).backward()
        return float(z.grad.norm())

    norms = [gradient_norm(t) for t in (5.0, 10.0, 20.0, 40.0)]
    assert max(norms) / min(norms) < 1.15, norms
    unscaled = [gradient_norm(t, scaled=False) for t in (10.0, 20.0)]
    assert unscaled[0] / unscaled[1] == pytest.approx(4.0, rel=0.1)
    # and the limit is the centred logit difference over V, batchmean-averaged
    diff = (student - teacher) - (student - teacher).mean(dim=-1, keepdim=True)
    assert norms[-1] == pytest.approx(float((diff / 10 / 8).norm()), rel=0.05)


def test_bad_arguments_get_messages_that_name_them():
    student, teacher = _logits(2, 5), _logits(2, 5, seed=1)
    with pytest.raises(ValueError, match=r"\(2, 5\) and \(2, 6\)"):
        distillation_loss(student, _logits(2, 6), temperature=1.0, alpha=1.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(student, teacher, temperature=0.0, alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be 1"):
        distillation_loss(student, teacher, temperature=1.0, alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        distillation_loss(student, teacher, torch.tensor([0, 1]), temperature=1.0, alpha=1.5)
    with pytest.raises(ValueError, match=r"targets must be \(2,\)"):
        distillation_loss(student, teacher, torch.tensor([0, 1, 2]), temperature=1.0, alpha=0.5)


def test_soft_targets_flatten_with_temperature_and_keep_the_order():
    logits = torch.tensor([[3.0, 1.0, 0.0, -2.0]])
    sharp, soft = soft_targets(logits, 1.0), soft_targets(logits, 5.0)
    torch.testing.assert_close(sharp, torch.softmax(logits, dim=-1))
    torch.testing.assert_close(soft.sum(dim=-1), torch.ones(1))
    assert soft[0, 0] < sharp[0, 0] and soft[0, 3] > sharp[0, 3]  # the top shrinks, the rest grow
    assert torch.equal(soft.argsort(descending=True), sharp.argsort(descending=True))


def test_hard_distillation_is_half_true_labels_half_the_teachers_argmax():
    cls_logits, dist_logits, teacher = _logits(4, 3, seed=1), _logits(4, 3, seed=2), _logits(4, 3)
    targets = torch.tensor([0, 1, 2, 0])
    teacher_labels = [max(range(3), key=lambda c: float(row[c])) for row in teacher]
    expected = 0.0
    for i in range(4):
        expected -= 0.5 / 4 * float(torch.log_softmax(cls_logits[i], -1)[targets[i]])
        expected -= 0.5 / 4 * float(torch.log_softmax(dist_logits[i], -1)[teacher_labels[i]])
    got = hard_distillation_loss(cls_logits, dist_logits, teacher, targets)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        hard_distillation_loss(cls_logits, dist_logits, teacher[:, :2], targets)


def test_attention_kl_is_a_row_by_row_kl_over_the_real_queries():
    student = torch.softmax(_logits(2, 3, 4, 4, seed=1), dim=-1).requires_grad_()
    teacher = torch.softmax(_logits(2, 3, 4, 4, seed=2), dim=-1)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    got = attention_kl(student, teacher, mask)
    total, rows = 0.0, 0
    for b in range(2):
        for h in range(3):
            for t in range(4):
                if not mask[b, t]:
                    continue
                rows += 1
                for k in range(4):
                    p, q = float(teacher[b, h, t, k]), float(student.detach()[b, h, t, k])
                    total += p * math.log(p / q)
    assert float(got.detach()) == pytest.approx(total / rows, rel=1e-5)
    assert float(attention_kl(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    got.backward()
    assert student.grad is not None and float(student.grad[1, :, 2:].abs().sum()) == 0.0


def test_attention_kl_ignores_keys_both_give_no_weight():
    teacher = torch.tensor([[[[0.5, 0.5, 0.0]]]])  # (1, 1, 1, 3): the last key is padding
    student = torch.tensor([[[[0.25, 0.75, 0.0]]]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(attention_kl(student, teacher)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, H, T, S\)"):
        attention_kl(student[0], teacher[0])
    with pytest.raises(ValueError, match=r"mask must be \(B, T\) = \(1, 1\)"):
        attention_kl(student, teacher, torch.ones(1, 3, dtype=torch.bool))
