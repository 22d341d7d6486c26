"""Checks for chapter 10: Hinton's distillation loss with its T², DeiT's two-head inference, and
the KL between two models' attention distributions.

The references are the package's own: `tfm_edu.distill.distillation_loss` (itself checked
against the formula written out number by number), `tfm_edu.models.deit.DeiT` (its `.logits`)
and `tfm_edu.distill.attention_kl`; the loss is also compared with PyTorch's
`F.kl_div(..., reduction="batchmean")` and `F.cross_entropy`, which know nothing of this course.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from tfm_edu.distill import attention_kl, distillation_loss
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_against, check_function, graded
from tfm_edu.models.deit import DeiT
from tfm_edu.models.vit import ViTConfig

__all__ = ["check_distillation_loss", "check_deit_logits", "check_attention_kl"]


# ------------------------------------------------------------------ the distillation loss


def _package_loss(student_logits, teacher_logits, targets, temperature, alpha):
    return distillation_loss(
        student_logits, teacher_logits, targets, temperature=temperature, alpha=alpha
    )


def _torch_loss(student_logits, teacher_logits, targets, temperature, alpha):
    """The same loss from PyTorch's own pieces: batchmean KL and cross-entropy."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
    )
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


@graded
def check_distillation_loss(fn) -> CheckResult:
    """Check `fn(student_logits (B, V), teacher_logits (B, V), targets (B,), temperature, alpha)
    -> scalar`: alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets)."""
    g = torch.Generator().manual_seed(10)

    def case(batch, classes, temperature, alpha, label, scale=2.0):
        student = torch.randn(batch, classes, generator=g) * scale
        teacher = torch.randn(batch, classes, generator=g) * scale
        targets = torch.randint(classes, (batch,), generator=g)
        return Case((student, teacher, targets, temperature, alpha), label=label)

    cases = [
        case(4, 10, 4.0, 0.5, "T = 4, half and half"),
        case(1, 3, 1.0, 0.9, "one example, T = 1"),
        case(8, 10, 2.0, 1.0, "soft targets only"),
        case(6, 5, 8.0, 0.0, "hard labels only"),
        case(5, 10, 10.0, 0.7, "a hot temperature", scale=6.0),
    ]

    def no_t_squared(s, t, y, temperature, alpha):
        soft = F.log_softmax(s / temperature, -1)
        kl = F.kl_div(soft, F.softmax(t / temperature, -1), reduction="batchmean")
        return alpha * kl + (1 - alpha) * F.cross_entropy(s, y)

    def mean_reduction(s, t, y, temperature, alpha):  # averages over classes too
        kl = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1))
        return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(s, y)

    def summed(s, t, y, temperature, alpha):  # sums over the batch instead of averaging
        return len(s) * _package_loss(s, t, y, temperature, alpha)

    def reversed_kl(s, t, y, temperature, alpha):
        return _package_loss(t, s, y, temperature, 1.0) * alpha + (1 - alpha) * F.cross_entropy(
            s, y
        )

    def cold_student(s, t, y, temperature, alpha):  # the student's softmax without T
        kl = F.kl_div(F.log_softmax(s, -1), F.softmax(t / temperature, -1), reduction="batchmean")
        return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(s, y)

    def swapped(s, t, y, temperature, alpha):
        return _package_loss(s, t, y, temperature, 1 - alpha)

    mistakes = [
        Mistake(
            "multiply the KL term by T²: the soft targets' gradients shrink like 1/T², and T² "
            "brings them back to the size of the hard term's (Hinton et al., section 2).",
            no_t_squared,
        ),
        Mistake(
            "F.kl_div's default reduction='mean' divides by B x V, not by B: sum the KL over the "
            "classes and average over the examples (reduction='batchmean').",
            mean_reduction,
        ),
        Mistake(
            "average over the batch: your loss is B times too large (a sum over the examples).",
            summed,
        ),
        Mistake(
            "the KL goes from the teacher to the student: sum p_teacher * (log p_teacher - "
            "log p_student). F.kl_div(input, target) takes the *student's* log-probabilities "
            "first and the teacher's probabilities second.",
            reversed_kl,
        ),
        Mistake(
            "soften both distributions: the student's logits are divided by T too.",
            cold_student,
        ),
        Mistake(
            "alpha weights the soft (teacher) term; the hard labels get 1 - alpha.",
            swapped,
        ),
    ]
    name = getattr(fn, "__name__", "distillation_loss")
    return check_against(
        name,
        fn,
        [("tfm_edu.distill.distillation_loss", _package_loss), ("PyTorch's kl_div", _torch_loss)],
        cases,
        mistakes,
        passed=f"matches tfm_edu.distill.distillation_loss and PyTorch's kl_div + cross_entropy "
        f"on {len(cases)} cases",
        atol=1e-5,
        rtol=1e-4,
    )


# ------------------------------------------------------------------ DeiT's two heads


@lru_cache(maxsize=1)
def _tiny_deit() -> DeiT:
    torch.manual_seed(3)
    model = DeiT(ViTConfig.tiny()).eval()
    with torch.no_grad():  # no zero-initialised tokens: a mix-up of tokens must show
        model.cls_token.normal_()
        model.distillation_token.normal_()
    return model


def _package_deit(model, images):
    with torch.no_grad():
        return model(images).logits  # (B, num_classes)


def _states(model, images, order=("cls", "dist"), positions=True):
    patches = model.embed_patches(images)  # (B, P, D)
    batch = patches.shape[0]
    tokens = {
        "cls": model.cls_token.expand(batch, -1, -1),
        "dist": model.distillation_token.expand(batch, -1, -1),
    }
    x = torch.cat([tokens[order[0]], tokens[order[1]], patches], dim=1)  # (B, P+2, D)
    if positions:
        x = model.position_embedding(x)  # (B, P+2, D)
    return model.encoder(x)[0]  # (B, P+2, D)


@graded
def check_deit_logits(fn) -> CheckResult:
    """Check `fn(model, images (B, 1, 8, 8)) -> logits (B, 10)`: a DeiT's forward pass at
    inference, [CLS] at token 0 and the distillation token at token 1, the two heads averaged."""
    g = torch.Generator().manual_seed(11)
    cases = [
        Case((_tiny_deit(), torch.randn(3, 1, 8, 8, generator=g)), label="three images"),
        Case((_tiny_deit(), torch.randn(1, 1, 8, 8, generator=g)), label="one image"),
    ]

    @torch.no_grad()
    def class_head_only(model, images):
        return model.head(_states(model, images)[:, 0])

    @torch.no_grad()
    def distillation_head_only(model, images):
        return model.distillation_head(_states(model, images)[:, 1])

    @torch.no_grad()
    def same_token(model, images):
        states = _states(model, images)
        return (model.head(states[:, 0]) + model.distillation_head(states[:, 0])) / 2

    @torch.no_grad()
    def swapped_tokens(model, images):
        states = _states(model, images, order=("dist", "cls"))
        return (model.head(states[:, 0]) + model.distillation_head(states[:, 1])) / 2

    @torch.no_grad()
    def no_positions(model, images):
        states = _states(model, images, positions=False)
        return (model.head(states[:, 0]) + model.distillation_head(states[:, 1])) / 2

    @torch.no_grad()
    def summed(model, images):
        return 2 * _package_deit(model, images)

    @torch.no_grad()
    def probabilities(model, images):
        states = _states(model, images)
        return (
            model.head(states[:, 0]).softmax(-1) + model.distillation_head(states[:, 1]).softmax(-1)
        ) / 2

    mistakes = [
        Mistake(
            "average the two heads: (class head on token 0 + distillation head on token 1) / 2. "
            "The class head alone ignores what the teacher taught.",
            class_head_only,
        ),
        Mistake(
            "average the two heads: the distillation head alone ignores the true labels.",
            distillation_head_only,
        ),
        Mistake(
            "each head reads its own token: the class head token 0 ([CLS]), the distillation "
            "head token 1.",
            same_token,
        ),
        Mistake(
            "put [CLS] first and the distillation token second: torch.cat([cls, dist, patches], "
            "dim=1); the learned positions were trained in that order.",
            swapped_tokens,
        ),
        Mistake(
            "add the learned positions (model.position_embedding) to all P + 2 tokens before the "
            "encoder.",
            no_positions,
        ),
        Mistake("average the two heads' logits (divide by 2), do not add them.", summed),
        Mistake(
            "return logits, not probabilities: average the two heads' logits (the DeiT code's "
            "rule; the paper adds their softmaxes, which almost always picks the same class).",
            probabilities,
        ),
    ]
    name = getattr(fn, "__name__", "deit_logits")
    return check_function(name, fn, _package_deit, cases, mistakes, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ attention distillation


@graded
def check_attention_kl(fn) -> CheckResult:
    """Check `fn(student_attention (B, H, T, S), teacher_attention (B, H, T, S), mask (B, T))
    -> scalar`: KL(teacher || student) per query row, averaged over heads and real queries."""
    g = torch.Generator().manual_seed(12)

    def maps(*shape, scale=2.0):
        return torch.softmax(torch.randn(*shape, generator=g) * scale, dim=-1)

    def padded_maps(batch, heads, length, real):
        """Attention of a padded batch: padded keys get no weight, as a real model gives them."""
        scores = torch.randn(batch, heads, length, length, generator=g) * 2
        keys = torch.arange(length) < torch.tensor(real)[:, None]  # (B, S)
        return torch.softmax(scores.masked_fill(~keys[:, None, None, :], float("-inf")), -1)

    full = torch.ones(2, 4, dtype=torch.bool)
    lengths = [5, 3]
    padded = torch.arange(5) < torch.tensor(lengths)[:, None]  # (2, 5)
    cases = [
        Case((maps(2, 3, 4, 4), maps(2, 3, 4, 4), full), label="no padding"),
        Case(
            (padded_maps(2, 4, 5, lengths), padded_maps(2, 4, 5, lengths), padded),
            label="the second sentence is padded from position 3",
        ),
        Case(
            (maps(1, 1, 3, 3), maps(1, 1, 3, 3), torch.ones(1, 3, dtype=torch.bool)),
            label="one head",
        ),
    ]

    def reversed_kl(student, teacher, mask):
        return attention_kl(teacher, student, mask)

    def all_rows(student, teacher, mask):  # the padded queries are averaged in too
        return attention_kl(student, teacher)

    def summed_heads(student, teacher, mask):
        return attention_kl(student, teacher, mask) * student.shape[1]

    def mean_over_keys(student, teacher, mask):
        return attention_kl(student, teacher, mask) / student.shape[-1]

    mistakes = [
        Mistake(
            "the KL goes from the teacher to the student: sum t * (log t - log s) over the keys, "
            "with t the teacher's weights.",
            reversed_kl,
        ),
        Mistake(
            "leave the padded queries out of the average: multiply each row's KL by the mask and "
            "divide by the number of real rows (times the heads).",
            all_rows,
        ),
        Mistake("average over the heads too, not only over the rows.", summed_heads),
        Mistake(
            "sum over the keys (each row is one distribution), then average over rows and heads.",
            mean_over_keys,
        ),
    ]
    name = getattr(fn, "__name__", "attention_kl")
    return check_function(name, fn, attention_kl, cases, mistakes, atol=1e-5, rtol=1e-4)
