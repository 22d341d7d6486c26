"""Scores of trained models: exact match of a translator, predictions and accuracy of a
classifier, and the usual binary-classification metrics (through scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["exact_match", "predict", "accuracy", "classification_metrics"]


def exact_match(translator, pairs: Sequence[tuple[str, str]], beam_size: int = 1) -> float:
    """Fraction of (text, answer) pairs whose translation equals the answer exactly.

    translator: anything with `translate(texts, beam_size) -> list[str]` (a `Translator`).
    """
    outputs = translator.translate([text for text, _ in pairs], beam_size=beam_size)
    return sum(out == iso for out, (_, iso) in zip(outputs, pairs, strict=True)) / len(pairs)


@torch.no_grad()
def predict(model: nn.Module, inputs: Tensor, batch_size: int = 512) -> Tensor:
    """The class a classifier predicts for each input, (N,) on the cpu, in eval mode.

    Args:
        model: returns an output with `.logits` (B, classes), e.g. a `ViT`.
        inputs: (N, ...) e.g. images (N, 1, 8, 8), run in batches of `batch_size`.
    """
    model.eval()
    chunks = [model(chunk).logits.argmax(-1).cpu() for chunk in inputs.split(batch_size)]
    return torch.cat(chunks)  # (N,)


def accuracy(model: nn.Module, inputs: Tensor, labels: Tensor) -> float:
    """Share of inputs whose predicted class is the label (labels (N,))."""
    return (predict(model, inputs) == labels).float().mean().item()


def classification_metrics(labels, probabilities, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1 (positive class = 1), ROC AUC and the confusion matrix
    [[true negatives, false positives], [false negatives, true positives]]."""
    from sklearn import metrics

    labels = np.asarray(labels)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)),
        "confusion": metrics.confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
    }
