"""`python -m tfm_edu.train distill-digits`: chapter 10's vision experiment, DeiT-style
distillation from a convnet teacher on 8x8 digits (Touvron et al., 2021, "Training
data-efficient image transformers & distillation through attention").

Hypothesis: a ViT has less built-in bias about images than a convnet (no locality, no weight
sharing across positions, no translation equivariance: `tfm_edu.models.convnet`), so it needs
more data; distilling from a convnet teacher passes the convnet's bias on, and should help most
when data are scarce. The table this recipe prints says whether it does (data/README.md,
"Chapter 10": soft distillation gains 0.4-1.4 points at every size, most at 10 %, but not
steadily less with more data, and about as much as the spread over three seeds).

The experiment, for every training-set size (10, 25, 50 and 100 % of the "train" split) and
every seed (0, 1, 2), all tested on the 360 images of the "test" split:

- subsets are stratified (the same share of every digit) and nested: for one seed the 10 %
  subset lies inside its 25 % subset, and so on; another seed draws other subsets (at 100 % all
  seeds see every image and differ only in initialisation, batch order and jitter);
- `convnet`: the teacher, `ConvNet` trained on the same subset. The teacher sees no more data
  than its student, so any gain of the students is the convnet's *bias*, not extra data;
- `vit`: chapter 8's plain `ViT` (the same `ViTConfig`), on the labels alone: the ViT as it
  is, one [CLS] token and one head (a DeiT with distillation="none" would be a two-headed
  ensemble, not the chapter 8 model);
- `deit_soft`, `deit_hard`: a `DeiT` (the same ViT plus a distillation token and head)
  distilled from that subset's convnet with soft (T, alpha below) or hard labels. The teacher's
  logits are computed on the same jittered batch the student sees, as DeiT does.

Every run gets the same budget of optimiser steps whatever the subset size (so small subsets
are not also under-trained) and the chapter 8 recipe otherwise: AdamW with warm-up and cosine
decay, gradient clipping, fresh random shift/rotation/scale jitter of every batch, the same
batches for the four methods of one (size, seed). No label smoothing anywhere: DeiT's hard
loss (eq. 3) has none, so every arm differs only by its teacher. The learning rate, weight
decay and jitter are chapter 8's; the batch (64 instead of 128) and the 250 steps are what lets
the 48 runs fit in about three minutes on one thread (300 steps gave the same picture on "val").
T and alpha of the soft loss were chosen on the "val" split among (T, alpha) = (3, 0.5),
(3, 0.9) and (1, 0.5), with seeds 0 and 1 at 10 % and 100 %; every run's val accuracy is in the
table (`val_accuracy`), and the test split was used only for the reported numbers.

Shipped with the table (`data/distill_digits.json`), both from the first seed on the largest
subset (100 % of "train", 1,257 images):
- `data/digits_convnet.*`: that run's teacher, with its test accuracy;
- `data/digits_deit.*`: that run's DeiT, soft or hard, whichever had the higher mean val
  accuracy at that size, with the test accuracy of each head and of their average.

    python -m tfm_edu.train distill-digits            # the experiment (about 3 min, 1 thread)
    python -m tfm_edu.train distill-digits --steps 5 --fractions 0.1 --seeds 0   # a smoke test

`--out` names the table (data/distill_digits.json by default); the two checkpoints are written
beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tfm_edu import seed_everything
from tfm_edu.analysis.metrics import accuracy
from tfm_edu.attention import set_fused
from tfm_edu.checkpoints import card_path, save_checkpoint
from tfm_edu.data import digits
from tfm_edu.models.convnet import ConvNet, ConvNetConfig
from tfm_edu.models.deit import DeiT
from tfm_edu.models.vit import ViT, ViTConfig
from tfm_edu.pretrained import DIGITS_CONVNET, DIGITS_DEIT, DISTILL_DIGITS
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.recipes.vit import TrainingConfig, train_classifier
from tfm_edu.train import History

__all__ = [
    "METHODS",
    "ExperimentConfig",
    "stratified_subsets",
    "train_model",
    "run_experiment",
    "format_table",
    "main",
]

METHODS = ("convnet", "vit", "deit_soft", "deit_hard")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """The grid and the training settings of every run (chosen on the "val" split)."""

    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # shares of "train" to train on
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per seed: subset, initialisation, batches
    steps: int = 250  # optimiser steps of every run, whatever the subset size
    batch_size: int = 64  # images per step
    lr: float = 4e-3  # AdamW's peak learning rate (all four methods)
    weight_decay: float = 0.05  # AdamW's decoupled weight decay
    warmup_fraction: float = 0.05  # share of the steps spent ramping the learning rate up
    max_shift: float = 1.0  # augmentation: largest shift, pixels
    max_rotation: float = 10.0  # augmentation: largest rotation, degrees
    max_scale: float = 0.1  # augmentation: largest relative change of size
    temperature: float = 3.0  # T of the soft distillation term
    alpha: float = 0.9  # weight of the soft term; the class head's cross-entropy gets 1 - alpha

    def training(self, seed: int) -> TrainingConfig:
        """The chapter 8 settings `train_classifier` reads, for one seed (epochs unused)."""
        return TrainingConfig(
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_fraction=self.warmup_fraction,
            label_smoothing=0.0,
            max_shift=self.max_shift,
            max_rotation=self.max_rotation,
            max_scale=self.max_scale,
            seed=seed,
        )


def stratified_subsets(labels: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Nested, stratified subsets of a training set, one per fraction.

    Each digit's images are shuffled once (by `seed`); a fraction f keeps the first
    round(f * count) of every digit, so a smaller subset lies inside every larger one.

    Args:
        labels: (N,) class ids of the whole training set.
        fractions: shares in (0, 1].
        seed: which shuffle.

    Returns:
        One sorted (N_f,) int64 index tensor per fraction.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be (N,), got {tuple(labels.shape)}")
    if not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    generator = np.random.default_rng(seed)
    shuffled = [
        generator.permutation(np.flatnonzero(labels.numpy() == digit))
        for digit in range(int(labels.max()) + 1)
    ]  # per digit, (N_digit,)
    subsets = []
    for fraction in fractions:
        keep = [index[: max(1, round(fraction * len(index)))] for index in shuffled]
        subsets.append(torch.from_numpy(np.sort(np.concatenate(keep))))  # (N_f,)
    return subsets


def train_model(
    model: nn.Module,
    settings: ExperimentConfig,
    images: Tensor,
    labels: Tensor,
    *,
    seed: int,
    teacher: nn.Module | None = None,
    distillation: str = "none",
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train `model` for `settings.steps` steps on (images (N, 1, 8, 8), labels (N,)).

    Args:
        model: a `ConvNet` or `ViT` (labels only), or a `DeiT` (with a teacher).
        settings: steps, batches, optimiser, jitter, T and alpha.
        seed: the batch order and jitter (the caller seeds the initialisation).
        teacher: for a DeiT: the trained teacher, run in eval mode without gradients on each
            jittered batch.
        distillation: "soft" or "hard" with a teacher; "none" without.

    Returns:
        The training History; the model is left in eval mode.
    """
    if (teacher is None) != (distillation == "none"):
        raise ValueError(f"distillation={distillation!r} with teacher={type(teacher).__name__}")
    if teacher is not None:
        teacher.eval()

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        batch_images, batch_labels = batch  # (B, 1, 8, 8), (B,)
        if teacher is None:
            return model(batch_images, batch_labels).loss
        with torch.no_grad():
            teacher_logits = teacher(batch_images).logits  # (B, 10)
        return model(
            batch_images,
            batch_labels,
            teacher_logits,
            distillation=distillation,
            temperature=settings.temperature,
            alpha=settings.alpha,
        ).loss

    return train_classifier(
        model,
        settings.training(seed),
        images,
        labels,
        progress,
        desc,
        steps=settings.steps,
        loss_fn=loss_fn,
    )


def run_experiment(
    settings: ExperimentConfig, progress: bool = True
) -> tuple[dict, dict[str, nn.Module], dict[str, History]]:
    """Train every method for every fraction and seed; measure each on "val" and "test".

    Returns:
        table: {method: {str(fraction): {"accuracy": [test, per seed], "mean", "std",
            "val_accuracy": [per seed]}}}, std over seeds (n - 1 in the denominator; 0 for one);
        shipped: the first seed's models on the largest fraction, {method: model};
        histories: their training histories, {method: History}.
    """
    images, labels = digits.load("train")
    val_images, val_labels = digits.load("val")
    test_images, test_labels = digits.load("test")
    vit_config = ViTConfig()
    largest = max(settings.fractions)
    runs = {
        method: {str(f): {"accuracy": [], "val_accuracy": []} for f in settings.fractions}
        for method in METHODS
    }
    shipped, histories = {}, {}
    for seed in settings.seeds:
        subsets = stratified_subsets(labels, settings.fractions, seed)
        for fraction, subset in zip(settings.fractions, subsets, strict=True):
            part = (images[subset], labels[subset])  # (N_f, 1, 8, 8), (N_f,)
            tag = f"{fraction:.0%} of train ({len(subset)} images), seed {seed}"
            models, run_histories = {}, {}
            for method in METHODS:
                seed_everything(seed)
                if method == "convnet":
                    model, teacher, mode = ConvNet(ConvNetConfig()), None, "none"
                elif method == "vit":
                    model, teacher, mode = ViT(vit_config), None, "none"
                else:
                    model, teacher, mode = DeiT(vit_config), models["convnet"], method[5:]
                set_fused(model, True)  # PyTorch's fused attention while training
                run_histories[method] = train_model(
                    model, settings, *part, seed=seed, teacher=teacher, distillation=mode,
                    progress=progress, desc=f"{method}, {tag}",
                )  # fmt: skip
                models[method] = set_fused(model, False).eval()
                row = runs[method][str(fraction)]
                row["accuracy"].append(round(accuracy(model, test_images, test_labels), 4))
                row["val_accuracy"].append(round(accuracy(model, val_images, val_labels), 4))
            if fraction == largest and seed == settings.seeds[0]:
                shipped, histories = models, run_histories
    for rows in runs.values():
        for row in rows.values():
            values = np.array(row["accuracy"])
            row["mean"] = round(float(values.mean()), 4)
            row["std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)
    return runs, shipped, histories


def format_table(table: dict, sizes: dict[str, int]) -> str:
    """Test accuracy mean ± std over seeds, one row per training-set size, one column per
    method, as aligned plain text."""
    lines = [f"{'train images':>16s}" + "".join(f"{m:>18s}" for m in METHODS)]
    for fraction, size in sizes.items():
        cells = [
            f"{table[m][fraction]['mean']:.2%} ± {table[m][fraction]['std']:.2%}" for m in METHODS
        ]
        lines.append(
            f"{f'{size} ({float(fraction):.0%})':>16s}" + "".join(f"{c:>18s}" for c in cells)
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment and write the table and the two checkpoints; `--help` lists options."""
    parser = recipe_parser("distill-digits", __doc__, out=DISTILL_DIGITS)
    defaults = ExperimentConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="steps of every run")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=list(defaults.fractions),
        help="shares of the train split",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="soft T")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="soft term's weight")
    return run_recipe(parser, argv, _run)


def _run(args: argparse.Namespace, command: str) -> dict:
    if args.seed:
        raise SystemExit("distill-digits runs one training per seed of --seeds; --seed is unused")
    settings = replace(
        ExperimentConfig(),
        steps=args.steps,
        fractions=tuple(sorted(set(args.fractions))),
        seeds=tuple(dict.fromkeys(args.seeds)),
        temperature=args.temperature,
        alpha=args.alpha,
    )
    start = time.perf_counter()
    table, shipped, histories = run_experiment(settings, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    labels = digits.load("train")[1]
    subsets = stratified_subsets(labels, settings.fractions, 0)  # sizes are the same per seed
    sizes = {str(f): len(s) for f, s in zip(settings.fractions, subsets, strict=True)}
    largest = str(max(settings.fractions))
    best = max(("deit_soft", "deit_hard"), key=lambda m: np.mean(table[m][largest]["val_accuracy"]))
    result = {
        "command": command,
        "data": "sklearn digits: subsets of train (1,257 images), measured on test (360) and val "
        "(180, for choosing settings)",
        "sizes": sizes,
        "seeds": list(settings.seeds),
        "settings": asdict(settings),
        "vit_config": asdict(ViTConfig()),
        "convnet_config": asdict(ConvNetConfig()),
        "table": table,
        "shipped_deit": best,
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }
    out = card_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _save(shipped, histories, best, settings, out.parent, command)
    print(format_table(table, sizes))
    print(
        f"test accuracy, mean ± std over seeds {list(settings.seeds)}; {seconds:.0f} s on "
        f"{torch.get_num_threads()} thread(s); wrote {out}"
    )
    return result


def _save(
    shipped: dict[str, nn.Module],
    histories: dict[str, History],
    best: str,
    settings: ExperimentConfig,
    folder: Path,
    command: str,
) -> None:
    """Write the teacher and the better DeiT of the first seed on the largest fraction."""
    test_images, test_labels = digits.load("test")
    fraction = max(settings.fractions)
    common = {"fraction_of_train": fraction, "seed": settings.seeds[0]}
    teacher = shipped["convnet"]
    teacher_accuracy = accuracy(teacher, test_images, test_labels)
    path = save_checkpoint(
        teacher,
        folder / DIGITS_CONVNET,
        teacher.config,
        command=command,
        metrics={"test_accuracy": round(teacher_accuracy, 4)},
        history=histories["convnet"],
        extra={"training": asdict(settings), **common},
    )
    print(f"wrote {path} (teacher, test accuracy {teacher_accuracy:.2%})")
    deit = shipped[best]
    with torch.no_grad():
        out = deit(test_images)
    heads = {
        "test_accuracy": out.logits,
        "test_accuracy_class_head": out.class_logits,
        "test_accuracy_distillation_head": out.distillation_logits,
    }
    metrics = {
        k: round((v.argmax(-1) == test_labels).float().mean().item(), 4) for k, v in heads.items()
    }
    path = save_checkpoint(
        deit,
        folder / DIGITS_DEIT,
        deit.config,
        command=command,
        metrics={**metrics, "teacher_test_accuracy": round(teacher_accuracy, 4)},
        history=histories[best],
        extra={"training": asdict(settings), "distillation": best[5:], **common},
    )
    print(f"wrote {path} ({best}, {metrics})")
