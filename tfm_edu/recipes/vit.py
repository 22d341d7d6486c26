"""`python -m tfm_edu.train vit-digits`: train chapter 8's Vision Transformer on 8x8 digits.

The recipe (chosen on the validation split, then trained on train + val and measured once on
the test split): AdamW with linear warm-up and cosine decay, label smoothing, and a fresh small
random affine jitter (shift, rotation, scale) of every training batch, which is what lets a
data-hungry ViT learn from 1,437 images. `--baselines` also trains, on the same data, what the
ViT should be compared with (logistic regression, an RBF support-vector machine, a small MLP with
and without the ViT's augmentation, the ViT with 2x2 patches, and without augmentation), writes
the table to `data/digits_baselines.json` and keeps the 2x2-patch ViT as
`data/digits_vit_patch2.*` for its finer attention maps.

    python -m tfm_edu.train vit-digits               # the shipped model, data/digits_vit.*
    python -m tfm_edu.train vit-digits --select      # train on train, report val accuracy
    python -m tfm_edu.train vit-digits --baselines   # the comparison table
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from tfm_edu import seed_everything
from tfm_edu.analysis.metrics import accuracy
from tfm_edu.attention import set_fused
from tfm_edu.checkpoints import data_dir, save_checkpoint
from tfm_edu.data import digits
from tfm_edu.models.vit import ViT, ViTConfig, ViTOutput
from tfm_edu.pretrained import DIGITS_BASELINES
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.train import History, fit

__all__ = [
    "TrainingConfig",
    "PixelMLP",
    "train_vit",
    "train_classifier",
    "baselines",
    "format_baselines",
    "main",
]

CHECKPOINT = "digits_vit"
PATCH2_CHECKPOINT = "digits_vit_patch2"


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


class PixelMLP(nn.Module):
    """The baseline: the 64 pixels -> 128 GELU units -> 10 digits. It returns the ViT's output
    (logits, and the loss when targets are given), so one recipe trains both."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 10))

    def forward(
        self, images: Tensor, targets: Tensor | None = None, *, label_smoothing: float = 0.0
    ) -> ViTOutput:
        """images (B, 1, 8, 8) -> logits (B, 10), and the cross-entropy with targets (B,)."""
        logits = self.layers(images)  # (B, 10)
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        return ViTOutput(logits, loss)


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
    device: torch.device | str | None = None,
) -> tuple[ViT, History]:
    """Train a fresh ViT on (images (N, 1, 8, 8), labels (N,)); returns it in eval mode.

    Args:
        config, settings: the model's sizes and the training recipe.
        images, labels: the training set, e.g. `tfm_edu.data.digits.load("train+val")`.
        progress: show a progress bar.
        device: where to train (default: cpu; the batches are made on the cpu and moved).
    """
    seed_everything(settings.seed)
    # PyTorch's fused attention while the weights are not needed (training), explicit after.
    model = set_fused(ViT(config).to(device or "cpu"), True)
    desc = f"ViT {config.patch_size}x{config.patch_size} patches"
    history = train_classifier(model, settings, images, labels, progress, desc)
    return set_fused(model, False).eval(), history


def train_classifier(
    model: nn.Module,
    settings: TrainingConfig,
    images: Tensor,
    labels: Tensor,
    progress: bool = True,
    desc: str = "training",
    *,
    steps: int | None = None,
    loss_fn: Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor] | None = None,
) -> History:
    """The recipe for any image classifier (the ViT, or a baseline): jittered batches,
    label-smoothed cross-entropy, AdamW with warm-up and cosine decay, via `tfm_edu.train.fit`.
    `model(images, targets, label_smoothing=...)` returns an output with `.loss`.

    steps: optimisation steps (default: `settings.epochs` passes over the images); loss_fn:
    `loss_fn(model, (images, labels))` instead of the label-smoothed cross-entropy (chapter 10
    adds a teacher's logits)."""
    if steps is None:
        steps = settings.epochs * math.ceil(len(images) / settings.batch_size)

    def cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        batch_images, batch_labels = batch  # (B, 1, 8, 8), (B,)
        return model(batch_images, batch_labels, label_smoothing=settings.label_smoothing).loss

    return fit(
        model,
        augmented_batches(images, labels, settings),
        loss_fn or cross_entropy,
        steps=steps,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=round(settings.warmup_fraction * steps),
        decay="cosine",
        clip_grad_norm=1.0,
        progress=progress,
        desc=desc,
    )


def baselines(seed: int = 0, progress: bool = False) -> tuple[list[dict], dict[int, ViT]]:
    """Train each baseline on train + val and measure it on test.

    Classical models on the 64 raw pixels (scikit-learn, no augmentation), a small MLP trained
    with and without the ViT's recipe (is it the architecture, or the jitter?), and the ViT with
    2x2 patches, 4x4 patches without augmentation, and 4x4 patches as shipped.

    Returns:
        rows: one per model, {"model", "test_accuracy", "parameters", "train_seconds"};
        vits: the trained ViTs with the full recipe, {patch_size: model}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    images, labels = digits.load("train+val")
    test_images, test_labels = digits.load("test")
    flat, test_flat = images.flatten(1).numpy(), test_images.flatten(1).numpy()  # (N, 64)
    recipe = TrainingConfig(seed=seed)
    plain = replace(recipe, max_shift=0.0, max_rotation=0.0, max_scale=0.0)
    rows, vits = [], {}
    classical = [
        ("logistic regression (pixels)", LogisticRegression(max_iter=2000)),
        ("SVM, RBF kernel (pixels)", SVC(C=10.0, gamma="scale")),  # C by 4-fold CV on train+val
    ]
    for name, classifier in classical:
        start = time.perf_counter()
        classifier.fit(flat, labels.numpy())
        seconds = time.perf_counter() - start
        test_accuracy = float((classifier.predict(test_flat) == test_labels.numpy()).mean())
        rows.append(_row(name, test_accuracy, _sklearn_parameters(classifier), seconds))
    for name, settings in (("no augmentation", plain), ("ViT's recipe", recipe)):
        seed_everything(seed)
        mlp = PixelMLP()
        history = train_classifier(mlp, settings, images, labels, progress, f"MLP, {name}")
        test_accuracy = accuracy(mlp, test_images, test_labels)
        rows.append(
            _row(f"MLP 64-128-10, {name}", test_accuracy, _parameters(mlp), history.seconds)
        )
    for patch_size, settings, name in (
        (2, recipe, ""),
        (4, plain, ", no augmentation"),
        (4, recipe, ""),
    ):
        config = ViTConfig(patch_size=patch_size)
        model, history = train_vit(config, settings, images, labels, progress)
        if settings == recipe:
            vits[patch_size] = model
        rows.append(
            _row(
                f"ViT, {patch_size}x{patch_size} patches ({config.num_patches} tokens){name}",
                accuracy(model, test_images, test_labels),
                _parameters(model),
                history.seconds,
            )
        )
    return rows, vits


def format_baselines(rows: list[dict]) -> str:
    """The baseline table as aligned plain text."""
    lines = [f"{'model':46s} {'test acc':>8s} {'params':>9s} {'train s':>8s}"]
    for row in rows:
        lines.append(
            f"{row['model']:46s} {row['test_accuracy']:8.2%} {row['parameters']:9,d} "
            f"{row['train_seconds']:8.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Train (and save) the ViT; `--help` lists the options."""
    parser = recipe_parser("vit-digits", __doc__, out=CHECKPOINT)
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    parser.add_argument("--patch-size", type=int, default=ViTConfig().patch_size)
    parser.add_argument(
        "--select",
        action="store_true",
        help="train on the train split and report validation accuracy (for choosing settings); "
        "saves nothing",
    )
    parser.add_argument("--baselines", action="store_true", help=f"write data/{DIGITS_BASELINES}")
    run_recipe(parser, argv, _run)


def _run(args: argparse.Namespace, command: str) -> None:
    progress = not args.no_progress
    if args.baselines:
        rows, vits = baselines(args.seed, progress)
        path = data_dir() / DIGITS_BASELINES
        path.write_text(json.dumps(_baselines_card(rows, command), indent=2) + "\n")
        print(format_baselines(rows))
        print(f"wrote {path}")
        accuracy_2x2 = next(r for r in rows if "2x2" in r["model"])["test_accuracy"]
        saved = save_checkpoint(
            vits[2],
            PATCH2_CHECKPOINT,
            vits[2].config,
            command=command,
            metrics={"test_accuracy": accuracy_2x2},
            extra={"training": asdict(TrainingConfig(seed=args.seed))},
        )
        print(f"wrote {saved} (the 2x2-patch ViT, for its finer attention maps)")
        return
    config = ViTConfig(patch_size=args.patch_size)
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
        history=history,
        extra={
            "training": asdict(settings),
            "data": "sklearn digits, split train+val, seed 0",
        },
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
    if hasattr(classifier, "support_vectors_"):
        return classifier.support_vectors_.size + classifier.dual_coef_.size
    return classifier.coef_.size + classifier.intercept_.size


def _baselines_card(rows: list[dict], command: str) -> dict:
    return {
        "command": command,
        "data": "sklearn digits: trained on train+val (1,437 images), measured on test (360)",
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
