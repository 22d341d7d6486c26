"""Chapter 10 in code: knowledge distillation, a big model (the teacher) teaching a small one.

Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network". A trained teacher's
output distribution says more than its top answer: that a 3 looks a bit like an 8 and not at all
like a 1 ("dark knowledge"). Softening both distributions with a temperature T > 1 brings those
small probabilities out, and the student is trained to match them:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * cross_entropy(student, targets)

The T^2 is not decoration: the soft term's gradient with respect to the student's logits is
(q - p) / T, and q - p itself shrinks like 1/T for large T, so without T^2 the soft targets
would fade out as T grows (section 2 of the paper).

- `soft_targets`: softmax(logits / T), the distribution a temperature makes.
- `distillation_loss`: the loss above, `batchmean` KL (summed over classes, averaged over
  examples), for (B, V) logits or (B, T, V) sequence logits averaged over real tokens.
- `hard_distillation_loss`: DeiT's variant (Touvron et al., 2021): the teacher's argmax as a
  second hard label.
- `attention_kl`: KL between two models' attention distributions, per query row, averaged over
  heads and real queries (MiniLM's self-attention distillation, Wang et al., 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "soft_targets",
    "distillation_loss",
    "hard_distillation_loss",
    "attention_kl",
]

IGNORE_INDEX = -100  # a target with this value is padding: no loss there (PyTorch's default)


def soft_targets(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """softmax(logits / T) over the last axis: T = 1 is the model's own distribution, T > 1
    flattens it (the small probabilities grow), T -> 0 approaches the one-hot argmax.

    Args:
        logits: (..., V).
        temperature: T > 0.

    Returns:
        (..., V) probabilities, each row summing to 1.
    """
    _check_temperature(temperature)
    return torch.softmax(logits / temperature, dim=-1)  # (..., V)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor | None = None,
    *,
    temperature: float,
    alpha: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Hinton et al.'s distillation loss: soft targets from the teacher mixed with hard labels.

    Args:
        student_logits: (B, V), or (B, T, V) for sequences; gradients flow into these.
        teacher_logits: the same shape; treated as constants (detached).
        targets: optional (B,) or (B, T) class ids; IGNORE_INDEX (-100) marks padding.
        temperature: T > 0 for both softmaxes of the soft term.
        alpha: weight of the soft term in [0, 1]; the hard cross-entropy gets 1 - alpha. Without
            targets, alpha must be 1.
        mask: optional (B,) or (B, T) bool, True = a real example/token; False rows count
            nowhere (like IGNORE_INDEX targets).

    Returns:
        A scalar: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets),
        both averaged over the real rows (for sequences: over real tokens, not over B).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() not in (2, 3):
        raise ValueError(
            "student_logits and teacher_logits must both be (B, V) or (B, T, V), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    _check_temperature(temperature)
    rows = student_logits.shape[:-1]  # (B,) or (B, T)
    real = torch.ones(rows, dtype=torch.bool, device=student_logits.device)  # (B,) / (B, T)
    if mask is not None:
        if mask.shape != rows:
            raise ValueError(f"mask must be {tuple(rows)}, got {tuple(mask.shape)}")
        real = real & mask.bool()
    if targets is None:
        if alpha != 1.0:
            raise ValueError(
                f"without targets only the soft term exists: alpha must be 1, got {alpha}"
            )
    else:
        if targets.shape != rows:
            raise ValueError(
                f"targets must be {tuple(rows)} (one class id per row of the logits "
                f"{tuple(student_logits.shape)}), got {tuple(targets.shape)}"
            )
        real = real & (targets != IGNORE_INDEX)
    count = real.sum().clamp(min=1)  # real rows; a batch of padding gives a zero loss
    log_student = F.log_softmax(student_logits / temperature, dim=-1)  # (..., V)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)  # (..., V)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)  # (B,) or (B, T)
    loss = alpha * temperature**2 * (kl * real).sum() / count
    if targets is not None and alpha < 1.0:
        safe = torch.where(real, targets, 0)  # (B,) or (B, T); padded rows are zeroed below
        ce = F.cross_entropy(student_logits.flatten(0, -2), safe.flatten(), reduction="none")
        loss = loss + (1.0 - alpha) * (ce * real.flatten()).sum() / count
    return loss


def hard_distillation_loss(
    class_logits: Tensor, distillation_logits: Tensor, teacher_logits: Tensor, targets: Tensor
) -> Tensor:
    """DeiT's hard-label distillation: the [CLS] head learns the true label, the distillation
    head the teacher's top answer, half and half (Touvron et al., 2021, eq. 3).

    Args:
        class_logits, distillation_logits, teacher_logits: (B, V).
        targets: (B,) true class ids.

    Returns:
        A scalar: (CE(class_logits, targets) + CE(distillation_logits, argmax teacher)) / 2.
    """
    shapes = {tuple(t.shape) for t in (class_logits, distillation_logits, teacher_logits)}
    if len(shapes) != 1 or class_logits.dim() != 2 or targets.shape != class_logits.shape[:1]:
        raise ValueError(
            "expected three (B, V) logits and (B,) targets, got "
            f"{sorted(shapes)} and {tuple(targets.shape)}"
        )
    teacher_labels = teacher_logits.detach().argmax(dim=-1)  # (B,)
    return 0.5 * F.cross_entropy(class_logits, targets) + 0.5 * F.cross_entropy(
        distillation_logits, teacher_labels
    )


def attention_kl(
    student_attention: Tensor, teacher_attention: Tensor, mask: Tensor | None = None
) -> Tensor:
    """KL(teacher || student) between attention distributions, as MiniLM distils attention.

    Each query row of an attention map is a probability distribution over the keys, so two
    models with the same number of heads can be compared row by row.

    Args:
        student_attention, teacher_attention: (B, H, T, S) rows summing to 1 (e.g. one layer of
            `BERT(..., return_attention=True).attentions`); gradients flow into the student's.
        mask: optional (B, T) bool, True = a real query (padding rows are left out). Padded keys
            need no mask: both models give them zero weight.

    Returns:
        A scalar: sum over keys of t * (log t - log s), averaged over heads and real query rows.
    """
    if student_attention.shape != teacher_attention.shape or student_attention.dim() != 4:
        raise ValueError(
            "student_attention and teacher_attention must both be (B, H, T, S), got "
            f"{tuple(student_attention.shape)} and {tuple(teacher_attention.shape)}"
        )
    batch, heads, queries, _ = student_attention.shape
    if mask is None:
        mask = torch.ones(batch, queries, dtype=torch.bool, device=student_attention.device)
    elif mask.shape != (batch, queries):
        raise ValueError(f"mask must be (B, T) = {(batch, queries)}, got {tuple(mask.shape)}")
    teacher = teacher_attention.detach()  # (B, H, T, S)
    # xlogy: 0 * log 0 = 0 where the teacher gives a key no weight; the student's log is clamped
    # so that a zero there (a padded key) costs nothing instead of inf.
    log_student = student_attention.clamp(min=1e-12).log()  # (B, H, T, S)
    kl = (torch.xlogy(teacher, teacher) - teacher * log_student).sum(dim=-1)  # (B, H, T)
    real = mask[:, None, :].to(kl.dtype)  # (B, 1, T)
    return (kl * real).sum() / (real.sum().clamp(min=1) * heads)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
