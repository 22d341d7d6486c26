"""`python -m tfm_edu.train positions-length`: chapter 3's length-generalisation experiment.

Four `ShiftEncoder`s, identical but for how they are told positions (none, sinusoidal, learned,
RoPE), are trained on the same shift task (`tfm_edu.data.toy.shift_task`: answer the symbol 3
places back) with sequences of exactly `--train-length` symbols, then tested on fresh sequences
of every length in `LENGTHS`, most of them longer than any seen in training. Each model is
saved as `data/shift_<position>.*`; its card records the accuracy at every length.

Training always uses the full training length, so that every position up to it is trained
equally often (with lengths drawn from 8..32, position 31 would be seen in 1 batch out of 25
and the learned table's last rows would stay half trained).

    python -m tfm_edu.train positions-length                 # the shipped models
    python -m tfm_edu.train positions-length --steps 50 --out /tmp/x/shift   # a quick try
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tfm_edu import seed_everything
from tfm_edu.analysis.positions import shift_accuracy_by_length
from tfm_edu.checkpoints import save_checkpoint
from tfm_edu.data.toy import shift_task
from tfm_edu.models.shift_encoder import POSITIONS, ShiftEncoder, ShiftEncoderConfig
from tfm_edu.pretrained import SHIFT_CHECKPOINT, SHIFT_EVAL
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.train import History, fit

__all__ = ["TrainingConfig", "LENGTHS", "shift_batches", "train_shift_encoder", "main"]

LENGTHS = (8, 16, 32, 48, 64, 96, 128)  # the test lengths; the longest is the tables' size


@dataclass(frozen=True)
class TrainingConfig:
    """How the shipped shift encoders are trained (the same for every kind of position)."""

    steps: int = 1000  # optimisation steps
    batch_size: int = 64  # sequences per step
    train_length: int = 32  # symbols per training sequence (every one of them)
    shift: int = 3  # the answer lies this many places back
    lr: float = 3e-3  # AdamW's peak learning rate
    weight_decay: float = 0.01  # AdamW's decoupled weight decay
    warmup_fraction: float = 0.05  # share of the steps spent ramping the learning rate up
    seed: int = 0  # initialisation and data


def shift_batches(settings: TrainingConfig, vocab_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless fresh (tokens (B, T), targets (B, T)) batches of the shift task, T the training
    length; the same stream for every model with the same seed."""
    rng = np.random.default_rng(settings.seed)
    while True:
        inputs, targets = shift_task(
            settings.batch_size,
            settings.train_length,
            shift=settings.shift,
            vocab_size=vocab_size,
            rng=rng,
        )
        yield torch.from_numpy(inputs), torch.from_numpy(targets)  # (B, T) each


def train_shift_encoder(
    config: ShiftEncoderConfig, settings: TrainingConfig, progress: bool = True
) -> tuple[ShiftEncoder, History]:
    """Train a fresh `ShiftEncoder` on the shift task; returns it in eval mode, and its history."""
    seed_everything(settings.seed)
    model = ShiftEncoder(config)
    history = fit(
        model,
        shift_batches(settings, config.vocab_size),
        lambda model, batch: model(*batch).loss,
        steps=settings.steps,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=round(settings.warmup_fraction * settings.steps),
        decay="cosine",
        clip_grad_norm=1.0,
        progress=progress,
        desc=f"{config.position} positions",
    )
    return model.eval(), history


def main(argv: Sequence[str] | None = None) -> None:
    """Train (and save) the four shift encoders; `--help` lists the options."""
    parser = recipe_parser("positions-length", __doc__, out=SHIFT_CHECKPOINT)
    parser.add_argument("--steps", type=int, default=TrainingConfig.steps)
    parser.add_argument(
        "--positions",
        nargs="+",
        choices=POSITIONS,
        default=list(POSITIONS),
        help="which models to train (default: all four)",
    )
    run_recipe(parser, argv, _run)


def _run(args: argparse.Namespace, command: str) -> None:
    settings = replace(TrainingConfig(), seed=args.seed, steps=args.steps)
    print(f"{'positions':12s}" + "".join(f"{length:>7d}" for length in LENGTHS) + "   seconds")
    for position in args.positions:
        config = ShiftEncoderConfig(position=position, max_positions=max(LENGTHS))
        start = time.perf_counter()
        model, history = train_shift_encoder(config, settings, not args.no_progress)
        table = shift_accuracy_by_length(model, LENGTHS, shift=settings.shift, **SHIFT_EVAL)
        seconds = time.perf_counter() - start
        print(
            f"{position:12s}"
            + "".join(f"{table[length]:7.3f}" for length in LENGTHS)
            + f"  {seconds:8.1f}"
        )
        out = Path(args.out)
        saved = save_checkpoint(
            model,
            out.with_name(f"{out.name}_{position}"),
            config,
            command=command,
            metrics={
                "accuracy_by_length": {str(k): round(v, 4) for k, v in table.items()},
                "final_loss": round(float(np.mean(history.loss[-20:])), 5),
                "train_seconds": round(history.seconds, 1),
                "threads": torch.get_num_threads(),
            },
            history=history,
            extra={
                "training": asdict(settings),
                "evaluation": {"lengths": list(LENGTHS), **SHIFT_EVAL},
            },
        )
        print(f"{'':12}wrote {saved} and its .json card")
