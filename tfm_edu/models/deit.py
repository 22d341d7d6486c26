"""Chapter 10 in code: DeiT, a ViT that learns from a teacher through a distillation token
(Touvron et al., 2021, "Training data-efficient image transformers & distillation through
attention").

A DeiT is chapter 8's ViT (same `ViTConfig`, same patch embedding and encoder) with one more
learned token, the *distillation token*, placed beside `[CLS]`: the encoder sees P + 2 tokens,
each with its own learned position. Both tokens attend to the patches and to each other, and
each has its own Linear head:

- the class head reads `[CLS]` and learns the true labels;
- the distillation head reads the distillation token and learns the teacher's answer, either its
  softened distribution ("soft", Hinton's KL with temperature T, eq. 2 of the paper) or its top
  class as a second hard label ("hard", eq. 3);
- at inference the two heads' logits are averaged (the paper adds their softmaxes; we average
  logits, which gives one set of logits for `accuracy` and the loss-free path).

`forward(images, targets, teacher_logits, distillation="soft")` returns a `DeiTOutput` with the
averaged logits, each head's logits, the loss and optionally every layer's attention. The
teacher is whatever model you like (chapter 10 uses `tfm_edu.models.convnet.ConvNet`): only its
logits on the same images are passed in, and they are never trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu.distill import distillation_loss, hard_distillation_loss
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.positional import LearnedPositionalEmbedding

__all__ = ["DISTILLATION_MODES", "DeiTOutput", "DeiT"]

DISTILLATION_MODES = ("soft", "hard", "none")


@dataclass
class DeiTOutput:
    """What `DeiT.forward` returns."""

    logits: Tensor  # (B, num_classes): the mean of the two heads' logits (DeiT's inference rule)
    class_logits: Tensor  # (B, num_classes): the head on [CLS]
    distillation_logits: Tensor  # (B, num_classes): the head on the distillation token
    loss: Tensor | None = None  # scalar, when targets were given
    attentions: tuple[Tensor, ...] = ()  # per layer (B, H, P+2, P+2), empty unless asked


class DeiT(ViT):
    """A ViT with a distillation token beside [CLS] and a second head that reads it."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        # Token 0 is [CLS], token 1 the distillation token, tokens 2.. the P patches.
        self.position_embedding = LearnedPositionalEmbedding(
            max_positions=config.num_patches + 2, d_model=config.d_model
        )
        self.distillation_head = nn.Linear(config.d_model, config.num_classes)
        nn.init.normal_(self.distillation_token, std=0.02)

    def forward(
        self,
        images: Tensor,
        targets: Tensor | None = None,
        teacher_logits: Tensor | None = None,
        *,
        distillation: str = "soft",
        temperature: float = 3.0,
        alpha: float = 0.5,
        label_smoothing: float = 0.0,
        return_attention: bool = False,
    ) -> DeiTOutput:
        """
        Args:
            images: (B, C, H, W) as returned by `tfm_edu.data.digits.load` (a NumPy array works).
            targets: optional (B,) class ids; then `loss` is computed.
            teacher_logits: (B, num_classes), the teacher's logits on the same images; needed
                (with targets) when distillation is "soft" or "hard"; never trained (detached).
            distillation: how the loss is made, given targets:
                "soft": (1 - alpha) * CE(class head, targets) + alpha * T^2 *
                    KL(softmax(teacher / T) || softmax(distillation head / T));
                "hard": (CE(class head, targets) + CE(distillation head, teacher's argmax)) / 2,
                    DeiT's eq. 3 (`tfm_edu.distill.hard_distillation_loss`; no label smoothing);
                "none": no teacher, (CE(class head) + CE(distillation head)) / 2 on the labels.
            temperature: T > 0 of the soft term.
            alpha: weight in [0, 1] of the soft term; the class head's cross-entropy gets 1 - alpha.
            label_smoothing: applied to every cross-entropy with the true labels ("soft" and
                "none"); must be 0 for "hard".
            return_attention: also return every layer's attention weights.

        Returns:
            DeiTOutput: logits (B, num_classes) = (class_logits + distillation_logits) / 2, both
            heads' logits, the loss when targets are given and, if asked, attentions: one
            (B, H, P+2, P+2) tensor per layer (token 0 is [CLS], 1 the distillation token, 2 + i
            patch i in reading order).
        """
        if distillation not in DISTILLATION_MODES:
            raise ValueError(
                f"distillation must be one of {DISTILLATION_MODES}, got {distillation!r}"
            )
        patches = self.embed_patches(images)  # (B, P, D)
        batch = patches.shape[0]
        cls = self.cls_token.expand(batch, -1, -1)  # (B, 1, D)
        dist = self.distillation_token.expand(batch, -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, dist, patches], dim=1)  # (B, P+2, D)
        tokens = self.position_embedding(tokens)  # (B, P+2, D)
        states, attentions = self.encoder(tokens, return_attention=return_attention)  # (B, P+2, D)
        class_logits = self.head(states[:, 0])  # (B, num_classes)
        distillation_logits = self.distillation_head(states[:, 1])  # (B, num_classes)
        logits = (class_logits + distillation_logits) / 2  # (B, num_classes)
        loss = None
        if targets is not None:
            loss = self._loss(
                class_logits,
                distillation_logits,
                targets,
                teacher_logits,
                distillation,
                temperature,
                alpha,
                label_smoothing,
            )
        elif teacher_logits is not None:
            raise ValueError("teacher_logits are only used by the loss: pass targets too")
        return DeiTOutput(logits, class_logits, distillation_logits, loss, attentions)

    def _loss(
        self,
        class_logits: Tensor,
        distillation_logits: Tensor,
        targets: Tensor,
        teacher_logits: Tensor | None,
        distillation: str,
        temperature: float,
        alpha: float,
        label_smoothing: float,
    ) -> Tensor:
        """The training loss of `forward` (see there), after checking the shapes."""
        if targets.shape != class_logits.shape[:1]:
            raise ValueError(
                f"targets must be (B,) = ({class_logits.shape[0]},), got {tuple(targets.shape)}"
            )
        if distillation == "none":
            if teacher_logits is not None:
                raise ValueError(
                    "teacher_logits were given but distillation='none' would ignore them; "
                    "pass distillation='soft' or 'hard'"
                )
            class_loss = F.cross_entropy(class_logits, targets, label_smoothing=label_smoothing)
            dist_loss = F.cross_entropy(
                distillation_logits, targets, label_smoothing=label_smoothing
            )
            return (class_loss + dist_loss) / 2
        if teacher_logits is None:
            raise ValueError(
                f"distillation={distillation!r} needs teacher_logits (B, {self.config.num_classes})"
                "; pass them, or distillation='none' to train on the labels only"
            )
        if teacher_logits.shape != class_logits.shape:
            raise ValueError(
                f"teacher_logits must be (B, num_classes) = {tuple(class_logits.shape)}, got "
                f"{tuple(teacher_logits.shape)}"
            )
        teacher_logits = teacher_logits.detach()  # (B, num_classes): the teacher is not trained
        if distillation == "hard":
            if label_smoothing:
                raise ValueError(
                    f"distillation='hard' is DeiT's eq. 3 without label smoothing, got "
                    f"label_smoothing={label_smoothing}"
                )
            return hard_distillation_loss(
                class_logits, distillation_logits, teacher_logits, targets
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        # "soft": the class head learns the labels, the distillation head the teacher.
        class_loss = F.cross_entropy(class_logits, targets, label_smoothing=label_smoothing)
        soft = distillation_loss(
            distillation_logits, teacher_logits, temperature=temperature, alpha=1.0
        )  # T^2 * KL(teacher_T || student_T), batch mean
        return (1 - alpha) * class_loss + alpha * soft
