"""`DarkKnowledgeExplorer`: pick an input and a temperature; see how the teacher's distribution
softens, which wrong classes get its mass, and what a student trained on it would be asked to
reproduce (Hinton et al., 2015).

The explorer takes the teacher's logits (and optionally the student's), already computed, so it
works for any classifier: chapter 10 uses the digit convnet and its DeiT student. The softening
itself is `tfm_edu.distill.soft_targets`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from tfm_edu.viz.distill_views import soft_targets_figure
from tfm_edu.viz.explorer import Explorer

__all__ = ["DarkKnowledgeExplorer"]


class DarkKnowledgeExplorer(Explorer):
    """An input slider and a temperature slider over a teacher's (and a student's) logits."""

    def __init__(
        self,
        teacher_logits,
        labels,
        class_names: Sequence[str],
        *,
        images=None,
        student_logits=None,
        index: int = 0,
        temperature: float = 4.0,
        title: str | None = None,
    ) -> None:
        """
        Args:
            teacher_logits: (N, V) the teacher's logits for N inputs.
            labels: (N,) the true classes.
            class_names: V names, e.g. "0".."9".
            images: optional (N, 1, H, W) or (N, H, W), shown beside the bars.
            student_logits: optional (N, V), drawn as dots at the same temperature.
            index: the input shown first.
            temperature: the temperature shown first (the slider runs from 0.5 to 20).
            title: optional heading.
        """
        import ipywidgets as widgets
        import torch  # loaded here, so that importing the views stays light

        self.teacher_logits = torch.as_tensor(teacher_logits, dtype=torch.float32)  # (N, V)
        self.labels = torch.as_tensor(labels)  # (N,)
        count = len(self.labels)
        if self.teacher_logits.dim() != 2 or len(self.teacher_logits) != count or not count:
            raise ValueError(
                "teacher_logits must be (N, V) and labels (N,) with the same N > 0, got "
                f"{tuple(self.teacher_logits.shape)} and {tuple(self.labels.shape)}"
            )
        if len(class_names) != self.teacher_logits.shape[1]:
            raise ValueError(
                f"{len(class_names)} class names for V = {self.teacher_logits.shape[1]} classes"
            )
        self.class_names = [str(name) for name in class_names]
        self.student_logits = None
        if student_logits is not None:
            self.student_logits = torch.as_tensor(student_logits, dtype=torch.float32)
            if self.student_logits.shape != self.teacher_logits.shape:
                raise ValueError(
                    f"student_logits must be {tuple(self.teacher_logits.shape)} like "
                    f"teacher_logits, got {tuple(self.student_logits.shape)}"
                )
        self.images = None if images is None else torch.as_tensor(images)
        if self.images is not None and len(self.images) != count:
            raise ValueError(f"{len(self.images)} images for {count} inputs")
        self.figure = None
        self.soft = None  # (V,) the teacher's distribution drawn last
        self.index_slider = widgets.IntSlider(
            value=index, min=0, max=count - 1, description="input", continuous_update=False
        )
        self.temperature_slider = widgets.FloatLogSlider(
            value=temperature,
            base=10,
            min=np.log10(0.5),
            max=np.log10(20),
            step=0.05,
            description="temperature",
            readout_format=".2f",
            continuous_update=False,
        )
        self._assemble(
            title,
            [self._row([self.index_slider, self.temperature_slider])],
            hint="Blue: the true class. Orange: probability on wrong classes, the part a hard "
            "label throws away. Dots: the student at the same temperature.",
            min_height=260,
        )
        for control in (self.index_slider, self.temperature_slider):
            control.observe(self._on_view, names="value")
        self._draw()

    def set_view(self, index: int | None = None, temperature: float | None = None) -> None:
        """Choose the input and the temperature, then redraw once."""
        with self._quietly():
            if index is not None:
                self.index_slider.value = index
            if temperature is not None:
                self.temperature_slider.value = temperature
        self._draw()

    def _draw(self) -> None:
        import matplotlib

        from tfm_edu.distill import soft_targets

        index, temperature = self.index_slider.value, float(self.temperature_slider.value)
        truth = int(self.labels[index])
        temperatures = [1.0, temperature]
        teacher = self.teacher_logits[index]  # (V,)
        soft = np.stack([soft_targets(teacher, t).numpy() for t in temperatures])  # (2, V)
        student = None
        if self.student_logits is not None:
            student = np.stack(
                [soft_targets(self.student_logits[index], t).numpy() for t in temperatures]
            )  # (2, V): the student's, at the same temperatures
        self.soft = soft[1]
        self._show_notes([("info", self._describe(index, temperature, truth))])
        with matplotlib.rc_context({"figure.dpi": 100}):
            self.figure = soft_targets_figure(
                soft,
                temperatures,
                self.class_names,
                true_class=truth,
                student=student,
                image=None if self.images is None else self.images[index],
            )
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png")
        self._show_png(buffer.getvalue(), f"soft targets of input {index} at T = {temperature:.2f}")

    def _describe(self, index: int, temperature: float, truth: int) -> str:
        """The notes: where the wrong mass goes, and how much the temperature changed."""
        from tfm_edu.distill import soft_targets

        sharp = soft_targets(self.teacher_logits[index], 1.0).numpy()  # (V,)
        soft = self.soft
        order = [k for k in np.argsort(-soft, kind="stable") if k != truth][:3]
        runners = ", ".join(f"{self.class_names[k]} ({soft[k]:.1%})" for k in order)
        predicted = int(sharp.argmax())
        text = (
            f"Input {index}: a {self.class_names[truth]}; the teacher says "
            f"{self.class_names[predicted]} with p = {sharp[predicted]:.1%} at T = 1. "
            f"At T = {temperature:.2f} it puts {1 - soft[truth]:.1%} of its probability on wrong "
            f"classes (at T = 1: {1 - sharp[truth]:.1%}); the largest: {runners}. "
            "A hard label would say only "
            f"'{self.class_names[truth]}'."
        )
        if self.student_logits is not None:
            student = soft_targets(self.student_logits[index], temperature).numpy()  # (V,)
            kl = float(np.sum(soft * (np.log(soft + 1e-12) - np.log(student + 1e-12))))
            text += f" The student's distribution differs from it by KL = {kl:.3f} nats."
        return text
