"""`python -m tfm_edu.train dates`: train chapter 5's date translator from scratch on a CPU.

Generates the date splits (`tfm_edu.data.dates`), trains a small `Seq2SeqTransformer` with
teacher forcing, label smoothing, warm-up + cosine decay and gradient clipping
(`tfm_edu.train.fit`), measures exact match on the held-out test dates (greedy and beam search),
prints the time and the accuracy, and writes `data/date_translator.safetensors` + `.json`.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tfm_edu import seed_everything
from tfm_edu.checkpoints import save_checkpoint
from tfm_edu.data.dates import ALPHABET, make_splits
from tfm_edu.device import cpu_threads
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, Translator
from tfm_edu.tokenize import CharTokenizer
from tfm_edu.train import History, fit

__all__ = [
    "compact_history",
    "load_history",
    "date_tokenizer",
    "encode_pairs",
    "batches",
    "seq2seq_loss",
    "exact_match",
    "train",
    "main",
]

CHECKPOINT = "date_translator"
COMMAND = "python -m tfm_edu.train dates"


def date_tokenizer() -> CharTokenizer:
    """Characters of every generated date (and of the ISO answers)."""
    return CharTokenizer(ALPHABET)


def encode_pairs(
    pairs: Sequence[tuple[str, str]], tokenizer: CharTokenizer
) -> tuple[Tensor, Tensor]:
    """[(text, iso), ...] -> source (N, S) ids and target (N, T+2) ids = [BOS] iso [EOS]."""
    source = tokenizer.batch_encode([text for text, _ in pairs])  # (N, S)
    target = tokenizer.batch_encode([iso for _, iso in pairs], add_bos=True, add_eos=True)
    return source, target  # (N, S), (N, T + 2)


def batches(
    source: Tensor, target: Tensor, batch_size: int, seed: int = 0, pad_id: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches (source (B, S_b), target (B, T)), trimmed to the batch's longest.

    Bucketing by length: each pool of 32 batches is sorted by source length before it is cut,
    so a batch holds texts of similar length and little compute is spent on padding (dates run
    from 8 to 30 characters). The batches of a pool are then served in random order.
    """
    if len(source) < batch_size or len(source) != len(target):
        raise ValueError(
            f"need as many sources as targets and at least batch_size={batch_size} of them, "
            f"got {len(source)} sources and {len(target)} targets"
        )
    generator = torch.Generator().manual_seed(seed)
    lengths = (source != pad_id).sum(dim=1)  # (N,)
    pool = 32 * batch_size
    while True:
        order = torch.randperm(len(source), generator=generator)  # (N,)
        for pool_start in range(0, len(order) - batch_size + 1, pool):
            rows = order[pool_start : pool_start + pool]  # (P,)
            rows = rows[lengths[rows].argsort(stable=True)]  # (P,) shortest first
            starts = range(0, len(rows) - batch_size + 1, batch_size)
            for i in torch.randperm(len(starts), generator=generator).tolist():
                batch = rows[starts[i] : starts[i] + batch_size]  # (B,)
                longest = int(lengths[batch].max())
                yield source[batch, :longest], target[batch]  # (B, S_b), (B, T)


def seq2seq_loss(label_smoothing: float = 0.1, pad_id: int = 0):
    """Teacher forcing: feed target[:, :-1], predict target[:, 1:], cross-entropy."""

    def loss_fn(model: Seq2SeqTransformer, batch: tuple[Tensor, Tensor]) -> Tensor:
        source, target = batch  # (B, S), (B, T + 1)
        logits = model(source, target[:, :-1]).logits  # (B, T, V)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),  # (B*T, V)
            target[:, 1:].reshape(-1),  # (B*T,)
            ignore_index=pad_id,
            label_smoothing=label_smoothing,
        )

    return loss_fn


def exact_match(
    translator: Translator, pairs: Sequence[tuple[str, str]], beam_size: int = 1
) -> float:
    """Fraction of pairs whose translation equals the ISO target exactly."""
    outputs = translator.translate([text for text, _ in pairs], beam_size=beam_size)
    return sum(out == iso for out, (_, iso) in zip(outputs, pairs, strict=True)) / len(pairs)


def train(
    config: Seq2SeqConfig,
    *,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 3e-3,
    warmup_steps: int = 100,
    label_smoothing: float = 0.1,
    seed: int = 0,
    num_train: int = 60_000,
    num_test: int = 2_000,
    eval_every: int | None = None,
    progress: bool = True,
) -> tuple[Translator, History, object]:
    """Train a date translator; returns (translator, history, splits)."""
    seed_everything(seed)
    tokenizer = date_tokenizer()
    splits = make_splits(seed, num_train=num_train, num_test=num_test)
    source, target = encode_pairs(splits.train, tokenizer)
    model = Seq2SeqTransformer(config)
    translator = Translator(model, tokenizer)
    val = splits.val[:500]
    history = fit(
        model,
        batches(source, target, batch_size, seed, tokenizer.pad_id),
        seq2seq_loss(label_smoothing, tokenizer.pad_id),
        steps=steps,
        lr=lr,
        warmup_steps=warmup_steps,
        decay="cosine",
        clip_grad_norm=1.0,
        evaluate=lambda m: {"val_exact_match": exact_match(translator, val)},
        eval_every=eval_every,
        progress=progress,
        desc="dates",
    )
    return translator, history, splits


def compact_history(history: History, every: int = 10) -> dict:
    """The training curve for the JSON card: mean loss and lr of each `every` steps, evals."""
    loss = torch.tensor(history.loss)  # (steps,)
    usable = len(loss) // every * every
    return {
        "steps": [s + every - 1 for s in history.steps[:usable:every]],
        "loss": [round(x, 4) for x in loss[:usable].reshape(-1, every).mean(1).tolist()],
        "lr": [float(f"{x:.3g}") for x in history.lr[every - 1 : usable : every]],
        "evals": history.evals,
        "seconds": round(history.seconds, 1),
    }


def load_history(card: dict) -> History:
    """Rebuild the (compacted) `History` stored in a card, e.g. for `plot_history`."""
    stored = card["history"]
    return History(steps=stored["steps"], loss=stored["loss"], lr=stored["lr"],
                   evals=stored["evals"], seconds=stored["seconds"])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Train, evaluate on the test split, print time and accuracy, write the checkpoint."""
    parser = argparse.ArgumentParser(prog=f"{COMMAND}", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps (<= steps / 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder layers each")
    parser.add_argument("--num-train", type=int, default=60_000, help="training sentences")
    parser.add_argument("--num-test", type=int, default=2_000, help="test dates")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: reproducible bit for bit, and for matrices this small "
        "faster than 2 on a busy machine)",
    )
    parser.add_argument("--out", default=CHECKPOINT, help="checkpoint name (or path) in data/")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv or [])
    with cpu_threads(args.threads):
        _train(args, argv)


def _train(args: argparse.Namespace, argv: list[str] | None) -> None:
    start = time.perf_counter()
    config = Seq2SeqConfig(
        vocab_size=date_tokenizer().vocab_size,
        d_model=args.d_model,
        num_heads=4,
        num_encoder_layers=args.layers,
        num_decoder_layers=args.layers,
        d_ff=4 * args.d_model,
        dropout=0.0,  # 60,000 fresh sentences seen ~2.5 times: nothing to overfit; dropout slows
    )
    translator, history, splits = train(
        config,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=min(args.warmup, args.steps // 4),
        seed=args.seed,
        num_train=args.num_train,
        num_test=args.num_test,
        eval_every=max(1, args.steps // 4),
        progress=not args.no_progress,
    )
    greedy = exact_match(translator, splits.test)
    beam = exact_match(translator, splits.test, beam_size=4)
    seconds = time.perf_counter() - start
    command = " ".join([COMMAND, *map(shlex.quote, argv or [])])
    metrics = {
        "test_exact_match_greedy": greedy,
        "test_exact_match_beam4": beam,
        "test_size": len(splits.test),
        "seconds": round(seconds, 1),
        "train_seconds": round(history.seconds, 1),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "final_loss": round(history.loss[-1], 4),
        "threads": torch.get_num_threads(),
    }
    extra = {
        "tokenizer": translator.tokenizer.to_dict(),
        "data": {"generator": "tfm_edu.data.dates.make_splits", "seed": args.seed},
        "history": compact_history(history),
    }
    path = save_checkpoint(translator.model, args.out, config, command=command, metrics=metrics,
                           extra=extra)  # fmt: skip
    print(
        f"done in {seconds:.1f} s ({history.seconds:.1f} s training, {args.steps} steps, "
        f"{torch.get_num_threads()} threads); test exact match: greedy {greedy:.2%}, "
        f"beam(4) {beam:.2%} on {len(splits.test)} unseen dates; wrote {path}"
    )
