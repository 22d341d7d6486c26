"""Chapter 10's exercise checks pass correct attempts written independently here and name the
typical slips in their hints."""

from __future__ import annotations

import math

import torch
from exercise_helpers import assert_hint, stub

from tfm_edu.exercises.distill import check_attention_kl, check_deit_logits, check_distillation_loss

# ------------------------------------------------------------------ the loss


def loss_by_hand(student_logits, teacher_logits, targets, temperature, alpha):
    """A learner's loss from log-probabilities, no F.kl_div."""
    log_q = torch.log_softmax(student_logits / temperature, dim=-1)
    log_p = torch.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
    log_probs = torch.log_softmax(student_logits, dim=-1)
    ce = -log_probs[torch.arange(len(targets)), targets].mean()
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def test_loss_check_passes_a_correct_loss_and_waits_for_a_stub():
    assert check_distillation_loss(loss_by_hand).passed
    assert check_distillation_loss(stub).status == "not done"


def test_loss_check_names_the_missing_t_squared_and_the_reduction():
    def no_t_squared(s, t, y, temperature, alpha):
        return loss_by_hand(s, t, y, temperature, alpha) - alpha * (temperature**2 - 1) * (
            loss_by_hand(s, t, y, temperature, 1.0) / temperature**2
        )

    assert_hint(check_distillation_loss(no_t_squared), "multiply the KL term by T²")

    def kl_mean(s, t, y, temperature, alpha):
        log_q = torch.log_softmax(s / temperature, dim=-1)
        p = torch.softmax(t / temperature, dim=-1)
        kl = torch.nn.functional.kl_div(log_q, p, reduction="mean")
        return alpha * temperature**2 * kl + (1 - alpha) * torch.nn.functional.cross_entropy(s, y)

    assert_hint(check_distillation_loss(kl_mean), "reduction='batchmean'")

    def backwards(s, t, y, temperature, alpha):
        return loss_by_hand(t, s, y, temperature, 1.0) * alpha + (
            1 - alpha
        ) * torch.nn.functional.cross_entropy(s, y)

    assert_hint(check_distillation_loss(backwards), "from the teacher to the student")


def test_loss_check_names_swapped_alpha():
    def swapped(s, t, y, temperature, alpha):
        return loss_by_hand(s, t, y, temperature, 1 - alpha)

    assert_hint(check_distillation_loss(swapped), "alpha weights the soft (teacher) term")


# ------------------------------------------------------------------ DeiT's two heads


def _states(model, images, first="cls"):
    """The encoder's output with [CLS] and the distillation token in front (in either order)."""
    patches = model.embed_patches(images)  # (B, P, D)
    b = patches.shape[0]
    cls, dist = model.cls_token.expand(b, -1, -1), model.distillation_token.expand(b, -1, -1)
    tokens = torch.cat([cls, dist, patches] if first == "cls" else [dist, cls, patches], dim=1)
    return model.encoder(model.position_embedding(tokens))[0]  # (B, P+2, D)


def deit_by_hand(model, images):
    with torch.no_grad():
        states = _states(model, images)
        return (model.head(states[:, 0]) + model.distillation_head(states[:, 1])) / 2


def test_deit_check_passes_a_correct_forward_and_waits_for_a_stub():
    assert check_deit_logits(deit_by_hand).passed
    assert check_deit_logits(stub).status == "not done"


def test_deit_check_names_one_head_only_and_swapped_tokens():
    def cls_only(model, images):
        with torch.no_grad():
            return model.head(_states(model, images)[:, 0])

    assert_hint(check_deit_logits(cls_only), "The class head alone")

    def swapped(model, images):
        with torch.no_grad():
            states = _states(model, images, first="dist")
            return (model.head(states[:, 0]) + model.distillation_head(states[:, 1])) / 2

    assert_hint(check_deit_logits(swapped), "put [CLS] first")


# ------------------------------------------------------------------ attention KL


def attention_kl_by_hand(student_attention, teacher_attention, mask):
    """A loop over rows: the plain definition of a KL, padded queries skipped."""
    total, rows = 0.0, 0
    batch, heads, queries, keys = student_attention.shape
    for b in range(batch):
        for h in range(heads):
            for t in range(queries):
                if not mask[b, t]:
                    continue
                rows += 1
                for k in range(keys):
                    p, q = (
                        float(teacher_attention[b, h, t, k]),
                        float(student_attention[b, h, t, k]),
                    )
                    if p > 0:
                        total += p * math.log(p / q)
    return torch.tensor(total / rows)


def test_attention_kl_check_passes_a_loop_and_waits_for_a_stub():
    assert check_attention_kl(attention_kl_by_hand).passed
    assert check_attention_kl(stub).status == "not done"


def test_attention_kl_check_names_the_padding_and_the_direction():
    def every_row(student, teacher, mask):
        return attention_kl_by_hand(student, teacher, torch.ones_like(mask))

    assert_hint(check_attention_kl(every_row), "leave the padded queries out")

    def reversed_kl(student, teacher, mask):
        t = teacher.clamp(min=1e-12)
        kl = (student * (student.clamp(min=1e-12).log() - t.log())).sum(-1)  # (B, H, T)
        real = mask[:, None, :].float()
        return (kl * real).sum() / (real.sum() * student.shape[1])

    assert_hint(check_attention_kl(reversed_kl), "from the teacher to the student")
