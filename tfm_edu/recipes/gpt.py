"""`python -m tfm_edu.train gpt-chars`: train chapter 9's character GPT on the help texts.

The data is this Python's own help texts (`tfm_edu.data.corpus`): the first 90 % of the
characters train, the last 10 % validate. The model is `GPTConfig.char_gpt()` (4 pre-LN layers,
4 heads, D = 128, 256 characters of context, 840k parameters).

What makes it train in well under two minutes on one CPU thread is the length of the windows it
learns from, in three phases (`TrainingConfig.phases`):
1. short windows (64 characters) at the start of the position table. Early on, attention is
   spread evenly over every earlier character, so in a 256-character window the character just
   before gets 1/256 of it: the signal that teaches a head to look back is weak, and a model
   that starts on long windows sits at the bigram's loss for hundreds of steps. Short windows
   make that signal 4x stronger and each step 4x cheaper;
2. the same short windows placed at random rows of the position table (`position_offset`), so
   that all 256 learned position vectors get trained, at the price of short windows (a vector
   is only trained where a window uses it: rows 64..255 would otherwise stay random). When the
   phase starts, the 64 trained rows are copied over the untrained ones (`tile_positions`), so
   every window of 64 consecutive rows already holds 64 distinct, trained vectors;
3. full 256-character windows, so that attention learns to span them (and the copies of a row
   learn to differ).
One AdamW run (weight decay on the matrices only, as in GPT-2 and nanoGPT) with gradient
clipping at 1, and one learning-rate schedule over all phases: warm-up, then a constant rate
while the model learns new positions, then a cosine decay during the last phase
("warm-up, stable, decay"; a rate that has already decayed is too small to learn new rows).

Baselines, in the same run and measured on the same validation characters:
- `bigram`: counts of character pairs in the training split (`tfm_edu.models.bigram`);
- `nanogpt_cpu`: nanoGPT's settings for character data on a CPU (4 layers, 4 heads, D = 128,
  block 64, batches of 12, lr 1e-3 with warm-up and cosine decay to 1e-4, AdamW betas
  (0.9, 0.99), weight decay 0.1, no dropout, 2,000 iterations), trained with our own code for the
  same training time as the shipped model: how many steps fit is measured on this machine
  first, its schedule is fitted to them (decayed at the end, which only helps it), and it is
  stopped when its training time equals ours.

    python -m tfm_edu.train gpt-chars                  # data/char_gpt.*, with both baselines
    python -m tfm_edu.train gpt-chars --no-baselines   # the model only (about 100 s)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from tfm_edu import seed_everything
from tfm_edu.analysis.language import bits_per_character, corpus_loss, perplexity
from tfm_edu.attention import set_fused
from tfm_edu.checkpoints import save_checkpoint
from tfm_edu.data import corpus
from tfm_edu.models.bigram import BigramLM, bigram_counts
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.pretrained import CHAR_GPT
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.tokenize import CharTokenizer
from tfm_edu.train import History, fit

__all__ = [
    "Phase",
    "TrainingConfig",
    "SHIPPED",
    "NANOGPT_CPU",
    "CorpusData",
    "load_corpus",
    "phase_batches",
    "tile_positions",
    "make_optimizer",
    "train_gpt",
    "bigram_baseline",
    "main",
]

BIGRAM_ALPHA = 0.1  # add-alpha smoothing of the bigram counts (chosen on the validation split)
EVAL_CHARACTERS = 16_384  # the start of the validation text, scored at each evaluation


@dataclass(frozen=True)
class Phase:
    """A stretch of training on windows of one length."""

    steps: int  # optimiser steps in this phase
    batch_size: int  # windows per step
    length: int  # characters per window
    random_offset: bool = False  # place each batch at a random row of the position table


@dataclass(frozen=True)
class TrainingConfig:
    """How a character GPT is trained."""

    phases: tuple[Phase, ...]  # in order; the learning-rate schedule spans all of them
    lr: float  # AdamW's peak learning rate
    lr_floor: float = 0.1  # the cosine decay ends at lr * lr_floor
    warmup_steps: int = 100  # linear warm-up from 0
    decay_start: int | None = None  # the rate stays at lr until this step (None: decay at once)
    weight_decay: float = 0.1  # on weight matrices and embeddings, not on biases or LayerNorms
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW's; 0.99 as in nanoGPT for small batches
    clip_grad_norm: float = 1.0  # the global gradient norm is clipped to this
    seed: int = 0  # initialisation and the windows drawn

    @property
    def steps(self) -> int:
        return sum(phase.steps for phase in self.phases)


SHIPPED = TrainingConfig(
    phases=(Phase(600, 12, 64), Phase(150, 12, 64, random_offset=True), Phase(300, 4, 256)),
    lr=4e-3,
    decay_start=750,
)
# nanoGPT's `config/train_shakespeare_char.py` with its CPU command line (block 64, batch 12,
# 4 layers, 4 heads, D = 128, 2,000 iterations, no dropout); `steps` is refitted to the time.
NANOGPT_CPU = TrainingConfig(phases=(Phase(2000, 12, 64),), lr=1e-3)


@dataclass
class CorpusData:
    """The encoded help texts, and what they are."""

    info: corpus.CorpusInfo
    tokenizer: CharTokenizer
    train: Tensor  # (N_train,) ids of the first 90 %
    val: Tensor  # (N_val,) ids of the last 10 %


def load_corpus() -> CorpusData:
    """This Python's help texts, with a tokenizer over all their characters, split 90/10."""
    text = corpus.help_texts()
    tokenizer = corpus.char_tokenizer(text)
    train, val = corpus.split(text)
    return CorpusData(
        corpus.describe(text), tokenizer, corpus.encode(train, tokenizer),
        corpus.encode(val, tokenizer),
    )  # fmt: skip


def phase_batches(
    ids: Tensor, phases: Sequence[Phase], block_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor, int, int]]:
    """(inputs (B, T), targets (B, T), position offset, tile) for every step of every phase.

    `tile` is the window length on the first step of the first random-offset phase (the moment
    to `tile_positions`), else 0.
    """
    generator = torch.Generator().manual_seed(seed)
    tiled = False
    for phase in phases:
        for _ in range(phase.steps):
            inputs, targets = corpus.random_windows(ids, phase.length, phase.batch_size, generator)
            offset, tile = 0, 0
            if phase.random_offset:
                offset = int(
                    torch.randint(block_size - phase.length + 1, (1,), generator=generator)
                )
                if not tiled:
                    tiled, tile = True, phase.length
            yield inputs, targets, offset, tile


@torch.no_grad()
def tile_positions(model: GPT, period: int) -> None:
    """Copy the first `period` rows of the position table over the rest, periodically: row p
    becomes row p mod period. Any `period` consecutive rows are then distinct trained vectors."""
    table = model.position_embedding.embedding.weight  # (block_size, D)
    for start in range(period, len(table), period):
        table[start : start + period] = table[: min(period, len(table) - start)]


def make_optimizer(model: nn.Module, settings: TrainingConfig) -> torch.optim.AdamW:
    """AdamW that decays the weight matrices and embeddings but not biases and LayerNorms (a
    LayerNorm's gain pulled towards 0 would only fight the normalisation)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas)


def train_gpt(
    config: GPTConfig,
    settings: TrainingConfig,
    data: CorpusData,
    *,
    progress: bool = True,
    max_seconds: float | None = None,
    desc: str = "gpt-chars",
) -> tuple[GPT, History]:
    """Train a fresh GPT; returns it in eval mode (explicit attention) and its history.

    Every 100 steps it scores the first `EVAL_CHARACTERS` characters of the validation text
    (a quick look; the card's numbers read all of it), in windows of the model's block size
    ("val_loss") and of 64 characters ("val_loss_64"): the same characters for every model, so
    the curves of two models compare, and the two curves of one model show what the longer
    context adds.
    """
    quick = data.val[: EVAL_CHARACTERS + 1]  # (EVAL_CHARACTERS + 1,)
    seed_everything(settings.seed)
    model = set_fused(GPT(config), True)  # PyTorch's fused attention while training

    def loss_fn(model: GPT, batch: tuple[Tensor, Tensor, int, int]) -> Tensor:
        inputs, targets, offset, tile = batch  # (B, T), (B, T), int, int
        if tile:
            tile_positions(model, tile)
        return model(inputs, targets, position_offset=offset).loss

    def evaluate(model: GPT) -> dict[str, float]:
        return {
            "val_loss": corpus_loss(model, quick, config.block_size),
            "val_loss_64": corpus_loss(model, quick, min(64, config.block_size)),
        }

    history = fit(
        model,
        phase_batches(data.train, settings.phases, config.block_size, settings.seed),
        loss_fn,
        steps=settings.steps,
        optimizer=make_optimizer(model, settings),
        warmup_steps=settings.warmup_steps,
        decay="cosine",
        lr_floor=settings.lr_floor,
        decay_start=settings.decay_start,
        clip_grad_norm=settings.clip_grad_norm,
        evaluate=evaluate,
        eval_every=100,
        progress=progress,
        desc=desc,
        max_seconds=max_seconds,
    )
    return set_fused(model, False).eval(), history


def bigram_baseline(data: CorpusData, alpha: float = BIGRAM_ALPHA) -> tuple[BigramLM, float]:
    """The counting model of the training split, and its validation loss (nats/char)."""
    model = BigramLM(bigram_counts(data.train, data.tokenizer.vocab_size), alpha=alpha)
    return model, corpus_loss(model, data.val, 256)


def calibrate_steps(config: GPTConfig, settings: TrainingConfig, data: CorpusData,
                    seconds: float, probe_steps: int = 30, margin: float = 1.1) -> int:  # fmt: skip
    """How many of `settings`' steps fit in `seconds` on this machine, measured on a throwaway
    copy of the model (after 5 warm-up steps), times `margin`: the baseline's schedule is
    planned for slightly more steps than fit, and `fit(max_seconds=...)` stops it at exactly
    `seconds` (by then a cosine schedule planned 10 % too long is within 1 % of its floor), so
    it never gets less time than the model it is compared with."""
    probe = replace(settings, phases=(replace(settings.phases[0], steps=probe_steps + 5),))
    model = set_fused(GPT(config), True)
    optimizer = make_optimizer(model, probe)
    batches = phase_batches(data.train, probe.phases, config.block_size, probe.seed + 1)
    for step, (inputs, targets, offset, _) in enumerate(batches):
        if step == 5:
            start = time.perf_counter()
        loss = model(inputs, targets, position_offset=offset).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), probe.clip_grad_norm)
        optimizer.step()
    per_step = (time.perf_counter() - start) / probe_steps
    return max(1, int(margin * seconds / per_step))


def main(argv: Sequence[str] | None = None) -> dict:
    """Train, measure against the baselines, print the table, write the checkpoint."""
    parser = recipe_parser("gpt-chars", __doc__.split("\n")[0], out=CHAR_GPT)
    parser.add_argument(
        "--no-baselines", action="store_true", help="train the model only (skip nanoGPT-CPU)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="multiply every phase's steps (e.g. 0.01 for a smoke test)",
    )  # fmt: skip
    return run_recipe(parser, argv, _train)


def _train(args: argparse.Namespace, command: str) -> dict:
    start = time.perf_counter()
    data = load_corpus()
    config = replace(GPTConfig.char_gpt(), vocab_size=data.tokenizer.vocab_size)
    settings = _scaled(replace(SHIPPED, seed=args.seed), args.scale)
    model, history = train_gpt(config, settings, data, progress=not args.no_progress)
    train_seconds = history.evals[-1]["seconds"]
    val = corpus_loss(model, data.val, config.block_size)
    _, bigram_val = bigram_baseline(data)
    rows = {
        "char_gpt": _row(val, config.block_size, train_seconds, len(history.steps), settings),
        "bigram": _row(bigram_val, 1),
    }
    baseline_history = None
    if not args.no_baselines:
        base_config = GPTConfig.nanogpt_cpu(data.tokenizer.vocab_size)
        steps = calibrate_steps(base_config, NANOGPT_CPU, data, train_seconds)
        base_settings = replace(
            NANOGPT_CPU, phases=(replace(NANOGPT_CPU.phases[0], steps=steps),), seed=args.seed,
            warmup_steps=min(NANOGPT_CPU.warmup_steps, steps // 4),
        )  # fmt: skip
        baseline, baseline_history = train_gpt(
            base_config, base_settings, data, progress=not args.no_progress,
            max_seconds=train_seconds, desc="nanoGPT-CPU baseline",
        )  # fmt: skip
        base_val = corpus_loss(baseline, data.val, base_config.block_size)
        rows["nanogpt_cpu"] = _row(
            base_val, base_config.block_size, baseline_history.evals[-1]["seconds"],
            len(baseline_history.steps), base_settings,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    metrics = {
        "val_loss": round(val, 4),
        "val_bits_per_char": round(bits_per_character(val), 4),
        "val_perplexity": round(perplexity(val), 3),
        "train_seconds": round(train_seconds, 1),
        "seconds": round(seconds, 1),
        "steps": len(history.steps),
        "threads": torch.get_num_threads(),
        "baselines": {k: v for k, v in rows.items() if k != "char_gpt"},
    }
    extra = {
        "tokenizer": data.tokenizer.to_dict(),
        "corpus": {
            **asdict(data.info),
            "source": "pydoc_data.topics (the standard library's help texts, PSF licence)",
            "train_characters": len(data.train),
            "val_characters": len(data.val),
        },
        "training": _settings_dict(settings),
        **({"baseline_history": baseline_history.to_dict(every=10)} if baseline_history else {}),
    }
    path = save_checkpoint(model, args.out, config, command=command, metrics=metrics,
                           history=history, extra=extra)  # fmt: skip
    print(_table(rows))
    print(f"done in {seconds:.0f} s ({torch.get_num_threads()} thread); wrote {path}")
    return metrics


def _scaled(settings: TrainingConfig, scale: float) -> TrainingConfig:
    if scale == 1.0:
        return settings
    if not scale > 0:
        raise SystemExit(f"--scale must be > 0, got {scale}")
    phases = tuple(replace(p, steps=max(1, round(p.steps * scale))) for p in settings.phases)
    total = sum(p.steps for p in phases)
    warmup = min(settings.warmup_steps, total // 4)
    decay_start = None
    if settings.decay_start is not None:
        decay_start = min(max(warmup, round(settings.decay_start * scale)), total)
    return replace(settings, phases=phases, warmup_steps=warmup, decay_start=decay_start)


def _row(val: float, context: int, seconds: float | None = None, steps: int | None = None,
         settings: TrainingConfig | None = None) -> dict:  # fmt: skip
    row = {
        "val_loss": round(val, 4),
        "val_bits_per_char": round(bits_per_character(val), 4),
        "val_perplexity": round(perplexity(val), 3),
        "context": context,
    }
    if seconds is not None:
        row |= {"train_seconds": round(seconds, 1), "steps": steps}
    if settings is not None:
        row["training"] = _settings_dict(settings)
    return row


def _settings_dict(settings: TrainingConfig) -> dict:
    stored = asdict(settings)
    stored["phases"] = [asdict(phase) for phase in settings.phases]
    stored["betas"] = list(settings.betas)
    return stored


def _table(rows: dict[str, dict]) -> str:
    lines = [f"{'model':14} {'context':>7} {'val nats/char':>14} {'bits/char':>9} "
             f"{'perplexity':>10} {'train s':>8} {'steps':>6}"]  # fmt: skip
    for name, row in rows.items():
        seconds = f"{row['train_seconds']:.1f}" if "train_seconds" in row else "-"
        steps = str(row.get("steps", "-"))
        lines.append(
            f"{name:14} {row['context']:>7} {row['val_loss']:>14.4f} "
            f"{row['val_bits_per_char']:>9.4f} {row['val_perplexity']:>10.3f} {seconds:>8} "
            f"{steps:>6}"
        )
    return "\n".join(lines)
