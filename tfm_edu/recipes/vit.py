"""`python -m tfm_edu.train vit-digits`: train chapter 8's Vision Transformer on 8x8 digits.

The recipe (chosen on the validation split, then trained on train + val and measured once on
the test split): AdamW with linear warm-up and cosine decay, label smoothing, and a fresh small
random affine jitter (shift, rotation, scale) of every training batch, which is what lets a
data-hungry ViT learn from 1,437 images. `--baselines` also trains, on the same data, what the
ViT should be compared with: logistic regression, a small MLP, an RBF support-vector machine
and the ViT with 2x2 and 4x4 patches, and writes the table to `data/digits_baselines.json`.

    python -m tfm_edu.train vit-digits               # the shipped model, data/digits_vit.*
    python -m tfm_edu.train vit-digits --select      # train on train, report val accuracy
    python -m tfm_edu.train vit-digits --baselines   # the comparison table
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfm_edu import seed_everything
from tfm_edu.attention import set_fused
from tfm_edu.checkpoints import data_dir, save_checkpoint
from tfm_edu.data import digits
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.train import History, fit

__all__ = [
    "TrainingConfig",
    "train_vit",
    "accuracy",
    "predict",
    "baselines",
    "format_baselines",
    "main",
]

CHECKPOINT = "digits_vit"
BASELINES_FILE = "digits_baselines.json"


@dataclass(frozen=True)
class TrainingConfig:
    """How the shipped ViT is trained (chosen on the validation split)."""

    epochs: int = 100  # passes over the training images
    batch_size: int = 128  # images per step
    lr: float = 4e-3  # AdamW's peak learning rate
    weight_decay: float = 0.05  # AdamW's decoupled weight decay
    warmup_fraction: float = 0.05  # share of the steps spent ramping the learning rate up
    label_smoothing: float = 0.1  # target 0.9 on the true class, 0.1 spread over all ten
    max_shift: float = 1.0  # augmentation: largest shift, pixels
    max_rotation: float = 10.0  # augmentation: largest rotation, degrees
    max_scale: float = 0.1  # augmentation: largest relative change of size
    seed: int = 0  # initialisation, batch order and augmentation


def augmented_batches(
    images: Tensor, labels: Tensor, settings: TrainingConfig
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (images (B, 1, 8, 8), labels (B,)) batches: a new shuffle every epoch and a new
    random jitter of every image every time it is drawn."""
    generator = torch.Generator().manual_seed(settings.seed)
    while True:
        order = torch.randperm(len(images), generator=generator)  # (N,)
        for batch in order.split(settings.batch_size):
            jittered = digits.augment(
                images[batch],
                settings.max_shift,
                settings.max_rotation,
                settings.max_scale,
                generator=generator,
            )  # (B, 1, 8, 8)
            yield jittered, labels[batch]


def train_vit(
    config: ViTConfig,
    settings: TrainingConfig,
    images: Tensor,
    labels: Tensor,
    progress: bool = True,
) -> tuple[ViT, History]:
    """Train a fresh ViT on (images (N, 1, 8, 8), labels (N,)); returns it in eval mode."""
    seed_everything(settings.seed)
    model = set_fused(ViT(config), True)  # PyTorch's fused attention while weights are not needed
    steps = settings.epochs * math.ceil(len(images) / settings.batch_size)

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        batch_images, batch_labels = batch
        logits = model(batch_images).logits  # (B, 10)
        return F.cross_entropy(logits, batch_labels, label_smoothing=settings.label_smoothing)

    history = fit(
        model,
        augmented_batches(images, labels, settings),
        loss_fn,
        steps=steps,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=round(settings.warmup_fraction * steps),
        decay="cosine",
        clip_grad_norm=1.0,
        progress=progress,
        desc=f"ViT {config.patch_size}x{config.patch_size} patches",
    )
    return set_fused(model, False).eval(), history


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Predicted digits (N,) for images (N, 1, 8, 8), in eval mode."""
    model.eval()
    chunks = [model(chunk).logits.argmax(-1) for chunk in images.split(batch_size)]  # (b,) each
    return torch.cat(chunks)  # (N,)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Share of images whose predicted digit is the label."""
    return (predict(model, images) == labels).float().mean().item()


def baselines(seed: int = 0, progress: bool = False) -> list[dict]:
    """Train each baseline on train + val and measure it on test.

    Returns:
        One row per model: {"model", "test_accuracy", "parameters", "train_seconds"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    images, labels = digits.load("train+val")
    test_images, test_labels = digits.load("test")
    flat, test_flat = images.flatten(1).numpy(), test_images.flatten(1).numpy()  # (N, 64)
    rows = []
    classical = [
        ("logistic regression (pixels)", LogisticRegression(max_iter=2000, C=0.1)),
        ("MLP 64-128-10 (pixels)", MLPClassifier((128,), max_iter=1000, random_state=seed)),
        ("SVM, RBF kernel (pixels)", SVC(C=10.0, gamma="scale")),
    ]
    for name, classifier in classical:
        start = time.perf_counter()
        classifier.fit(flat, labels.numpy())
        seconds = time.perf_counter() - start
        test_accuracy = float((classifier.predict(test_flat) == test_labels.numpy()).mean())
        rows.append(_row(name, test_accuracy, _sklearn_parameters(classifier), seconds))
    for patch_size in (2, 4):
        config = ViTConfig.digits(patch_size)
        model, history = train_vit(config, TrainingConfig(seed=seed), images, labels, progress)
        rows.append(
            _row(
                f"ViT, {patch_size}x{patch_size} patches ({config.num_patches} tokens + [CLS])",
                accuracy(model, test_images, test_labels),
                _parameters(model),
                history.seconds,
            )
        )
    return rows


def format_baselines(rows: list[dict]) -> str:
    """The baseline table as aligned plain text."""
    lines = [f"{'model':44s} {'test acc':>8s} {'params':>9s} {'train s':>8s}"]
    for row in rows:
        lines.append(
            f"{row['model']:44s} {row['test_accuracy']:8.2%} {row['parameters']:9,d} "
            f"{row['train_seconds']:8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Train (and save) the ViT; `--help` lists the options."""
    parser = argparse.ArgumentParser(prog="python -m tfm_edu.train vit-digits", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    parser.add_argument("--patch-size", type=int, default=ViTConfig.digits().patch_size)
    parser.add_argument(
        "--select",
        action="store_true",
        help="train on the train split and report validation accuracy (for choosing settings); "
        "saves nothing",
    )
    parser.add_argument("--out", default=CHECKPOINT, help="checkpoint name or path (no suffix)")
    parser.add_argument("--baselines", action="store_true", help=f"write data/{BASELINES_FILE}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    progress = not args.no_progress
    if args.baselines:
        rows = baselines(args.seed, progress)
        path = data_dir() / BASELINES_FILE
        path.write_text(json.dumps(_baselines_card(rows, args.seed), indent=2) + "\n")
        print(format_baselines(rows))
        print(f"wrote {path}")
        return
    config = ViTConfig.digits(args.patch_size)
    settings = replace(TrainingConfig(), seed=args.seed, epochs=args.epochs)
    start = time.perf_counter()
    images, labels = digits.load("train" if args.select else "train+val")
    eval_split = "val" if args.select else "test"
    eval_images, eval_labels = digits.load(eval_split)
    model, history = train_vit(config, settings, images, labels, progress)
    result = accuracy(model, eval_images, eval_labels)
    seconds = time.perf_counter() - start
    print(
        f"{eval_split} accuracy {result:.2%} ({round(result * len(eval_labels))}/"
        f"{len(eval_labels)}) after {seconds:.1f} s ({history.seconds:.1f} s of training, "
        f"{torch.get_num_threads()} threads)"
    )
    if args.select:
        return
    command = "python -m tfm_edu.train vit-digits" + (" " + " ".join(argv) if argv else "")
    path = save_checkpoint(
        model,
        args.out,
        config,
        command=command,
        metrics={
            "test_accuracy": round(result, 4),
            "test_errors": int(round((1 - result) * len(eval_labels))),
            "train_seconds": round(history.seconds, 1),
            "final_loss": round(float(np.mean(history.loss[-20:])), 4),
            "threads": torch.get_num_threads(),
        },
        extra={"training": asdict(settings), "data": "sklearn digits, split train+val, seed 0"},
    )
    print(f"wrote {path} and its .json card")


def _row(name: str, test_accuracy: float, parameters: int, seconds: float) -> dict:
    return {
        "model": name,
        "test_accuracy": round(test_accuracy, 4),
        "parameters": int(parameters),
        "train_seconds": round(seconds, 1),
    }


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sklearn_parameters(classifier) -> int:
    """Learned numbers: weights and biases (for the SVM, its support vectors and their
    coefficients)."""
    if hasattr(classifier, "coefs_"):
        return sum(w.size for w in classifier.coefs_) + sum(b.size for b in classifier.intercepts_)
    if hasattr(classifier, "support_vectors_"):
        return classifier.support_vectors_.size + classifier.dual_coef_.size
    return classifier.coef_.size + classifier.intercept_.size


def _baselines_card(rows: list[dict], seed: int) -> dict:
    return {
        "command": "python -m tfm_edu.train vit-digits --baselines"
        + (f" --seed {seed}" if seed else ""),
        "data": "sklearn digits: trained on train+val (1,437 images), measured on test (360)",
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
