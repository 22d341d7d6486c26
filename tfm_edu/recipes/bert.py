"""Chapter 6's recipes: pretrain a tiny BERT with masked LM, then fine-tune it for sentiment.

    python -m tfm_edu.train bert-mlm          # -> data/bert_tiny_mlm.{safetensors,json}
    python -m tfm_edu.train bert-sentiment    # -> data/bert_tiny_sentiment{,_scratch}.*
    python -m tfm_edu.train bert-sentiment-seeds --seeds 0 1 2 3 4
                                              # -> data/bert_tiny_sentiment_seeds.json

`bert-mlm` trains `BERTForMaskedLM` on unlabelled sentences from `tfm_edu.data.sentences` (15% of
the tokens chosen, 80/10/10 rule). `bert-sentiment` fine-tunes (a) the pretrained encoder and (b) a
freshly initialised one, with the same small labelled set and the same settings, and fits (c) a
bag-of-words logistic regression; it prints the three-way comparison on the test split.
`bert-sentiment-seeds` repeats (a) and (b) for several seeds (initialisation of the classifier,
and of the whole encoder for (b), and the order of the batches) and writes only a small JSON
table of test metrics per seed: one run of each is an anecdote, the spread is the result.

All three use one CPU thread by default (`--threads`): the tiny model's 64-wide matrices gain
nothing from more, and on a busy machine extra threads spin-wait for each other (measured 13x
slower with 2 threads than with 1 while other jobs shared the 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor, nn

from tfm_edu import seed_everything
from tfm_edu.analysis.masked_lm import agreement_accuracy, masked_accuracy, polarity_accuracy
from tfm_edu.analysis.metrics import classification_metrics
from tfm_edu.analysis.sentiment import (
    accuracy_by_kind,
    bag_of_words_probabilities,
    sentiment_probabilities,
)
from tfm_edu.checkpoints import CheckpointError, card_path, save_checkpoint
from tfm_edu.data import sentences
from tfm_edu.models.bert import (
    BERTConfig,
    BERTForMaskedLM,
    BERTForSequenceClassification,
    mask_tokens,
)
from tfm_edu.pretrained import BERT_SENTIMENT_SEEDS, tiny_bert_mlm
from tfm_edu.recipes.common import recipe_parser, run_recipe
from tfm_edu.tokenize import WordPiece
from tfm_edu.train import fit

__all__ = [
    "MLM_CHECKPOINT",
    "SENTIMENT_CHECKPOINT",
    "SCRATCH_CHECKPOINT",
    "SEEDS_TABLE",
    "SEEDS_METRICS",
    "mlm_batches",
    "sentiment_batches",
    "main_mlm",
    "main_sentiment",
    "main_sentiment_seeds",
]

MLM_CHECKPOINT = "bert_tiny_mlm"
SENTIMENT_CHECKPOINT = "bert_tiny_sentiment"
SCRATCH_CHECKPOINT = "bert_tiny_sentiment_scratch"
SEEDS_TABLE = BERT_SENTIMENT_SEEDS  # data/<name>.json: test metrics per seed and arm
SEEDS_METRICS = ("accuracy", "f1", "roc_auc", "accuracy_single", "accuracy_and", "accuracy_but")
# The classifier reads the mean of the token vectors, not [CLS]: our pretraining has only the
# masked-LM task (no next-sentence prediction), so [CLS] is never trained to summarise the
# sentence, while every token vector is. Measured on 1000 labels, seed 0: [CLS] pooling
# fine-tuned the pretrained model to 0.52-0.86 test accuracy depending on the pretraining run,
# mean pooling to 0.97-0.98.
POOLING = "mean"


def mlm_batches(texts: list[str], tokenizer: WordPiece, batch_size: int, seed: int = 0):
    """Endless (input_ids, attention_mask, labels) batches, freshly masked each time."""
    encoded = tokenizer.batch_encode(texts)
    ids, real = encoded["input_ids"], encoded["attention_mask"]  # (N, T) each
    maskable = real & (ids != tokenizer.cls_id) & (ids != tokenizer.sep_id)  # (N, T)
    words = torch.tensor(sorted(set(range(tokenizer.vocab_size)) - tokenizer.special_ids))
    generator = torch.Generator().manual_seed(seed)
    while True:
        rows = torch.randint(len(ids), (batch_size,), generator=generator)  # (B,)
        length = int(real[rows].sum(dim=1).max())
        batch_ids = ids[rows, :length]  # (B, T)
        inputs, labels = mask_tokens(
            batch_ids, maskable[rows, :length], tokenizer.mask_id, words, generator=generator
        )  # (B, T) each
        yield inputs, real[rows, :length], labels


def _mlm_step(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    inputs, attention_mask, labels = batch
    return model(inputs, attention_mask, targets=labels).loss


def sentiment_batches(rows, tokenizer: WordPiece, batch_size: int, seed: int = 0):
    """Endless shuffled (input_ids, attention_mask, labels) batches of labelled sentences."""
    encoded = tokenizer.batch_encode([row.text for row in rows])
    labels = torch.tensor([row.label for row in rows])  # (N,)
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(rows), generator=generator)  # (N,)
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            picked = order[start : start + batch_size]  # (B,)
            length = int(encoded["attention_mask"][picked].sum(dim=1).max())
            yield (
                encoded["input_ids"][picked, :length],
                encoded["attention_mask"][picked, :length],
                labels[picked],
            )


def _sentiment_step(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    inputs, attention_mask, labels = batch
    return model(inputs, attention_mask, targets=labels).loss


def main_mlm(argv: Sequence[str] | None = None) -> dict:
    """`python -m tfm_edu.train bert-mlm`: masked-LM pretraining of the tiny BERT."""
    parser = recipe_parser("bert-mlm", "Masked-LM pretraining of chapter 6's tiny BERT.",
                           out=MLM_CHECKPOINT)  # fmt: skip
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--corpus", type=int, default=20_000, help="unlabelled sentences")
    return run_recipe(parser, argv, _train_mlm)


def _train_mlm(args: argparse.Namespace, command: str) -> dict:
    seed_everything(args.seed)
    tokenizer = sentences.tokenizer()
    config = BERTConfig(vocab_size=tokenizer.vocab_size)
    model = BERTForMaskedLM(config)
    corpus = sentences.mlm_corpus(args.corpus, seed=args.seed)
    held_out = next(
        mlm_batches(sentences.mlm_corpus(2000, seed=10_000 + args.seed), tokenizer, 2000)
    )

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {
            "masked_accuracy": masked_accuracy(m, held_out),
            "agreement": agreement_accuracy(m, tokenizer),
            "polarity": polarity_accuracy(m, tokenizer),
        }

    history = fit(
        model,
        mlm_batches(corpus, tokenizer, args.batch_size, seed=args.seed),
        _mlm_step,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.steps // 10,
        evaluate=evaluate,
        eval_every=max(1, args.steps // 10),
        progress=not args.no_progress,
        desc="bert-mlm",
    )
    metrics = {**history.evals[-1], "seconds": round(history.seconds, 1)}
    metrics.pop("step")
    save_checkpoint(
        model,
        args.out,
        config,
        command=command,
        metrics=metrics,
        history=history,
        extra={"tokenizer": tokenizer.to_dict()},
    )
    print(
        f"bert-mlm: {history.seconds:.0f} s, {torch.get_num_threads()} threads; held-out masked "
        f"accuracy {metrics['masked_accuracy']:.3f}, agreement {metrics['agreement']:.3f} "
        f"-> data/{args.out}.safetensors"
    )
    return metrics


def _sentiment_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The fine-tuning settings both sentiment recipes share."""
    parser.add_argument("--pretrained", default=MLM_CHECKPOINT, help="bert-mlm checkpoint")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-size", type=int, default=1000, help="labelled sentences")
    return parser


def main_sentiment(argv: Sequence[str] | None = None) -> dict:
    """`python -m tfm_edu.train bert-sentiment`: fine-tune pretrained vs scratch vs bag of words."""
    parser = recipe_parser(
        "bert-sentiment",
        "Fine-tune chapter 6's pretrained tiny BERT for sentiment, beside the same model trained "
        "from scratch and a bag-of-words baseline.",
        out=SENTIMENT_CHECKPOINT,
    )
    _sentiment_options(parser)
    parser.add_argument("--scratch-out", default=SCRATCH_CHECKPOINT)
    return run_recipe(parser, argv, _train_sentiment)


def _load_pretrained(name: str):
    try:
        return tiny_bert_mlm(name)
    except CheckpointError as error:
        raise SystemExit(f"{error}\nRun `python -m tfm_edu.train bert-mlm` first.") from None


def _fine_tune(variant, pretrained, tokenizer, splits, args, seed, desc):
    """Fine-tune one classifier ("pretrained": encoder copied from the MLM model, "scratch":
    random encoder); returns (model, history, test metrics)."""
    texts = {name: [r.text for r in rows] for name, rows in splits.items()}
    seed_everything(seed)
    model = BERTForSequenceClassification(pretrained.config, num_labels=2, pooling=POOLING)
    if variant == "pretrained":
        model.bert.load_state_dict(pretrained.bert.state_dict())
    valid_labels = np.array([r.label for r in splits["valid"]])

    def evaluate(m) -> dict[str, float]:
        predicted = sentiment_probabilities(m, tokenizer, texts["valid"]) >= 0.5
        return {"valid_accuracy": float((predicted == valid_labels).mean())}

    start = time.perf_counter()
    history = fit(
        model,
        sentiment_batches(splits["train"], tokenizer, args.batch_size, seed=seed),
        _sentiment_step,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.steps // 10,
        evaluate=evaluate,
        eval_every=max(1, args.steps // 10),
        progress=not args.no_progress,
        desc=desc,
    )
    seconds = time.perf_counter() - start
    probabilities = sentiment_probabilities(model, tokenizer, texts["test"])
    metrics = {
        **classification_metrics([r.label for r in splits["test"]], probabilities),
        **accuracy_by_kind(splits["test"], probabilities),
        "seconds": round(seconds, 1),
    }
    return model, history, metrics


def _train_sentiment(args: argparse.Namespace, command: str) -> dict:
    pretrained, tokenizer = _load_pretrained(args.pretrained)
    splits = sentences.sentiment_splits(train=args.train_size)
    test_labels = [r.label for r in splits["test"]]
    results, models = {}, {}
    for variant in ("pretrained", "scratch"):
        model, history, results[variant] = _fine_tune(
            variant, pretrained, tokenizer, splits, args, args.seed,
            desc=f"bert-sentiment ({variant})",
        )  # fmt: skip
        models[variant] = (model, history)
    bag = bag_of_words_probabilities(
        splits["train"], [r.text for r in splits["test"]], seed=args.seed
    )
    results["bag_of_words"] = {
        **classification_metrics(test_labels, bag),
        **accuracy_by_kind(splits["test"], bag),
    }
    for variant, name in (("pretrained", args.out), ("scratch", args.scratch_out)):
        model, history = models[variant]
        save_checkpoint(
            model,
            name,
            model.config,
            command=command,
            metrics={**results[variant], "comparison": results, "settings": vars(args)},
            history=history,
            extra={
                "tokenizer": tokenizer.to_dict(),
                "head": {"num_labels": 2, "pooling": POOLING},
                "variant": variant,
            },
        )
    _print_comparison(results, args.train_size)
    return results


def main_sentiment_seeds(argv: Sequence[str] | None = None) -> dict:
    """`python -m tfm_edu.train bert-sentiment-seeds`: the seed spread of pretrained vs scratch."""
    parser = recipe_parser(
        "bert-sentiment-seeds",
        "Fine-tune chapter 6's tiny BERT from the pretrained encoder and from scratch once per "
        "seed (same settings as bert-sentiment) and write the test metrics per seed to a small "
        "JSON table; no weights are kept.",
        out=SEEDS_TABLE,
    )
    _sentiment_options(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    return run_recipe(parser, argv, _train_sentiment_seeds)


def _train_sentiment_seeds(args: argparse.Namespace, command: str) -> dict:
    pretrained, tokenizer = _load_pretrained(args.pretrained)
    splits = sentences.sentiment_splits(train=args.train_size)
    metrics = {arm: {name: [] for name in SEEDS_METRICS} for arm in ("pretrained", "scratch")}
    for seed in args.seeds:
        for arm in metrics:
            _, _, result = _fine_tune(
                arm, pretrained, tokenizer, splits, args, seed,
                desc=f"bert-sentiment-seeds ({arm}, seed {seed})",
            )  # fmt: skip
            for name in SEEDS_METRICS:
                metrics[arm][name].append(round(float(result[name]), 4))
            print(
                f"seed {seed} {arm:>10}: test accuracy {result['accuracy']:.3f} "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
    table = {
        "command": command,
        "config": asdict(pretrained.config),
        "settings": {
            "pretrained": args.pretrained,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "train_size": args.train_size,
            "test_size": len(splits["test"]),
            "threads": args.threads,
        },
        "seeds": list(args.seeds),
        "metrics": metrics,
    }
    path = card_path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    for arm, values in metrics.items():
        accuracy = values["accuracy"]
        print(f"{arm:>10}: test accuracy {min(accuracy):.3f}-{max(accuracy):.3f} "
              f"over seeds {args.seeds}")  # fmt: skip
    print(f"-> {path}")
    return table


def _print_comparison(results: dict, train_size: int) -> None:
    print(f"\nsentiment test split, {train_size} labelled training sentences")
    columns = ("accuracy", "f1", "roc_auc", "accuracy_single", "accuracy_and", "accuracy_but")
    print(f"{'model':>14s} " + " ".join(f"{c:>15s}" for c in columns))
    for name, row in results.items():
        print(f"{name:>14s} " + " ".join(f"{row[c]:15.3f}" for c in columns))
    print(
        f"fine-tuning time: pretrained {results['pretrained']['seconds']:.0f} s, "
        f"scratch {results['scratch']['seconds']:.0f} s ({torch.get_num_threads()} threads)"
    )
