"""`python -m tfm_edu.train induction-heads`: chapter 9's small GPT that learns to copy.

Chapter 9's character GPT does not copy a random string it has seen once: after 80 seconds of
the help texts it has a previous-token head but no induction head. This recipe trains the
smallest GPT that can have one (2 layers of 2 heads, D = 64, 32 characters of context) on
sequences of two kinds, half and half:
- windows of the help texts (the training split), where the previous character helps to
  predict the next one: a reason to grow a *previous-token head* of its own;
- `tfm_edu.data.toy.copy_task`: random letters in which a stretch of 4 to 16 letters is written
  twice in a row, at a random place. Nothing in them can be predicted but the second copy, and
  only by looking back at the first: the reason to grow an *induction head* on top.
Without the help texts (copying only) the same model sat on its plateau for 6,000 to 12,000
steps or more, depending on the seed: a previous-token head is only useful once an induction
head uses it, and the other way round, so neither starts. With them, the previous-token head
forms within 500 steps and the induction head follows near step 3,000 (seeds 0 and 1).

Every `eval_every` steps the recipe measures, on 64 fixed strings of 16 random letters written
twice (`tfm_edu.analysis.induction.repeated_sequences`): the loss on the first and on the second
copy, and the best induction and previous-token scores of any head. The card keeps the whole
series: a plateau, then a sudden drop (a *phase change*, Olsson et al. 2022) with the induction
score rising at the same steps. `copying_step` in the card is where the second copy became easy.

    python -m tfm_edu.train induction-heads            # data/induction_gpt.*, about 2 minutes
    python -m tfm_edu.train induction-heads --steps 200 --out /tmp/x   # a quick try
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor

from tfm_edu import seed_everything
from tfm_edu.analysis.induction import (
    induction_scores,
    loss_by_position,
    previous_token_scores,
    repeated_sequences,
)
from tfm_edu.checkpoints import load_card, save_checkpoint
from tfm_edu.data import corpus
from tfm_edu.data.toy import copy_task
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.pretrained import CHAR_GPT, INDUCTION_GPT, INDUCTION_LETTERS
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.tokenize import CharTokenizer
from tfm_edu.train import History, fit

__all__ = [
    "TrainingConfig",
    "model_config",
    "EVAL_LENGTH",
    "copy_batches",
    "evaluation_strings",
    "copy_metrics",
    "train_copier",
    "copying_step",
    "main",
]

EVAL_LENGTH = 16  # letters per copy in the evaluation strings: 2 x 16 = the model's context
EVAL_COUNT = 64  # evaluation strings
EVAL_SEED = 1  # their seed (training draws from its own generator)


@dataclass(frozen=True)
class TrainingConfig:
    """How the copying GPT is trained."""

    steps: int = 5_000  # optimiser steps
    batch_size: int = 64  # sequences per step
    text_fraction: float = 0.5  # share of the sequences that are help-text windows
    min_segment: int = 4  # the shortest repeated stretch (the longest: half the context)
    lr: float = 3e-3  # AdamW's peak learning rate
    decay_start: int = 4_000  # held until this step, then a cosine decay to 0
    warmup_steps: int = 100  # linear warm-up from 0
    weight_decay: float = 0.1  # AdamW's decoupled weight decay
    eval_every: int = 250  # steps between two measurements of the copying
    seed: int = 0  # initialisation and data


def model_config(vocab_size: int) -> GPTConfig:
    """The smallest GPT with a two-layer circuit: 2 layers of 2 heads, D = 64, 32 characters."""
    return GPTConfig(
        vocab_size=vocab_size, block_size=2 * EVAL_LENGTH, num_layers=2, num_heads=2,
        d_model=64, d_ff=256,
    )  # fmt: skip


def copy_batches(
    settings: TrainingConfig, text: Tensor, letters: Sequence[int], length: int
) -> Iterator[Tensor]:
    """Endless (B, T) batches: each row a window of `text` (with probability
    `settings.text_fraction`) or a `copy_task` row over `letters`; the same stream for the same
    seed."""
    rng = np.random.default_rng(settings.seed)
    windows = text.unfold(0, length, 1)  # (N - T + 1, T): a view, every window of the text
    while True:
        rows = copy_task(settings.batch_size, length, letters, min_segment=settings.min_segment,
                         rng=rng)  # fmt: skip
        is_text = torch.from_numpy(rng.random(settings.batch_size) < settings.text_fraction)
        starts = torch.from_numpy(rng.integers(len(windows), size=settings.batch_size))  # (B,)
        yield torch.where(is_text[:, None], windows[starts], torch.from_numpy(rows))  # (B, T)


def evaluation_strings(letters: Sequence[int]) -> Tensor:
    """The fixed measurement: (64, 32) ids, 16 random letters then the same 16 again."""
    return repeated_sequences(letters, EVAL_LENGTH, count=EVAL_COUNT, seed=EVAL_SEED)


def copy_metrics(model: GPT, strings: Tensor) -> dict[str, float]:
    """Loss on each copy (nats per character) and the best induction / previous-token score."""
    losses = loss_by_position(model, strings)  # (2l - 1,) nats at each position
    half = strings.shape[1] // 2
    return {
        "first_copy": float(losses[: half - 1].mean()),
        "second_copy": float(losses[half:].mean()),
        "induction": float(induction_scores(model, strings, half).max()),
        "previous_token": float(previous_token_scores(model, strings).max()),
    }


def train_copier(
    config: GPTConfig,
    settings: TrainingConfig,
    text: Tensor,
    letters: Sequence[int],
    progress: bool = True,
) -> tuple[GPT, History]:
    """Train a fresh GPT on help-text windows and `copy_task` rows (`copy_batches`); returns it
    in eval mode, and its history (the copying measured every `settings.eval_every` steps).

    Args:
        text: (N,) ids of the training text.
        letters: the ids the copy task draws from.
    """
    seed_everything(settings.seed)
    model = GPT(config)
    strings = evaluation_strings(letters)

    def loss_fn(model: GPT, ids: Tensor) -> Tensor:
        return model(ids[:, :-1], targets=ids[:, 1:]).loss  # next letter at every position

    history = fit(
        model,
        copy_batches(settings, text, letters, config.block_size + 1),
        loss_fn,
        steps=settings.steps,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        decay="cosine",
        decay_start=settings.decay_start,
        clip_grad_norm=1.0,
        evaluate=lambda model: copy_metrics(model, strings),
        eval_every=settings.eval_every,
        progress=progress,
        desc="induction-heads",
    )
    return model.eval(), history


def copying_step(evals: Sequence[dict[str, float]]) -> int | None:
    """The first evaluated step from which the second copy stays below half the first copy's
    loss (the model copies), or None if it never does."""
    easy = [e["second_copy"] < 0.5 * e["first_copy"] for e in evals]
    for index in range(len(evals)):
        if all(easy[index:]):
            return int(evals[index]["step"])
    return None


def main(argv: Sequence[str] | None = None) -> dict:
    """Train (and save) the copying GPT; `--help` lists the options. Returns the card's metrics."""
    parser = recipe_parser("induction-heads", __doc__, out=INDUCTION_GPT)
    parser.add_argument("--steps", type=int, default=TrainingConfig.steps)
    return run_recipe(parser, argv, _run)


def _run(args: argparse.Namespace, command: str) -> dict:
    # Chapter 9's tokenizer, from its card, so that both models read the same ids.
    tokenizer = CharTokenizer.from_dict(load_card(CHAR_GPT)["tokenizer"])
    train_text, _ = corpus.split(corpus.help_texts())
    text = corpus.encode(train_text, tokenizer)  # (N,)
    letters = [tokenizer.stoi[c] for c in INDUCTION_LETTERS]
    if args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}")
    shipped = TrainingConfig()
    settings = replace(  # a shorter run keeps the shipped schedule's first steps
        shipped, seed=args.seed, steps=args.steps,
        warmup_steps=min(shipped.warmup_steps, args.steps),
        decay_start=min(shipped.decay_start, args.steps),
    )  # fmt: skip
    config = model_config(tokenizer.vocab_size)
    model, history = train_copier(config, settings, text, letters, not args.no_progress)
    final = history.evals[-1]
    metrics = {
        **{key: round(value, 4) for key, value in final.items() if key not in ("step", "seconds")},
        "copying_step": copying_step(history.evals),
        "steps": settings.steps,
        "train_seconds": round(history.seconds, 1),
        "threads": torch.get_num_threads(),
    }
    path = save_checkpoint(
        model, args.out, config, command=command, metrics=metrics, history=history,
        extra={
            "training": asdict(settings),
            "evaluation": {"letters": INDUCTION_LETTERS, "length": EVAL_LENGTH,
                           "count": EVAL_COUNT, "seed": EVAL_SEED},
            "tokenizer": tokenizer.to_dict(),
        },
    )  # fmt: skip
    print(
        f"first copy {metrics['first_copy']:.3f}, second copy {metrics['second_copy']:.3f} "
        f"nats/char; best induction score {metrics['induction']:.2f}, previous-token "
        f"{metrics['previous_token']:.2f}; copying from step {metrics['copying_step']} "
        f"({history.seconds:.0f} s of training)\nwrote {path} and its .json card"
    )
    return metrics
