"""`python -m tfm_edu.train prune-heads`: chapter 11's head-pruning experiment (Michel, Levy &
Neubig, 2019, "Are Sixteen Heads Really Better than One?") on two of the course's models.

Question: how many heads can a trained model lose before its accuracy falls, and does removing
the *least important* heads first (Michel et al.'s importance score) do better than removing
them in a random order?

For each model (chapter 6's tiny BERT sentiment classifier, 2 layers x 4 heads, and chapter 8's
digits ViT, 4 layers x 4 heads), nothing is trained:

- importance: `tfm_edu.efficiency.pruning.head_importance`, I_h = E_x |dL(x)/dxi_h| with the
  cross-entropy loss, one example at a time (the paper's expectation over examples, exactly),
  over the examples the model was trained on (BERT: the 1,000 labelled "train" sentences of
  `sentiment_splits`, the size its card records; ViT: the 1,437 "train+val" digits), each
  layer's scores divided by their l2 norm (the paper's normalisation);
- the curve: test accuracy (BERT: the 2,000 "test" sentences; ViT: the 360 "test" digits)
  after removing 0, 1, ..., all heads, least important first (the order computed once, on the
  whole model), and in random orders (one per seed: mean, std with n - 1, min and max);
  heads are switched off by their gates (`pruning_curve`);
- the real thing: at each point of the importance order the heads are *really* removed
  (`prune_heads`): the card records the parameter count and the pruned model's accuracy, which
  must equal the gated one (the same function, up to rounding). Every head has the same size,
  so the counts hold for the random orders too.

Deterministic (no training; random orders from NumPy's generator seeded `--seed` ...
`--seed + --random-orders - 1`); about 30 s on one CPU thread. It writes the metrics-only card
`data/prune_heads.json` (`tfm_edu.pretrained.prune_heads_table()`) and prints the tables.

    python -m tfm_edu.train prune-heads
    python -m tfm_edu.train prune-heads --models bert --random-orders 2 --importance-examples 8 \\
        --test-examples 64 --out /tmp/prune_heads      # a smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tfm_edu.analysis.ablation import attention_layers
from tfm_edu.analysis.metrics import accuracy
from tfm_edu.bench import format_table as bench_table
from tfm_edu.checkpoints import card_path, load_card
from tfm_edu.data import digits, sentences
from tfm_edu.efficiency.pruning import (
    all_heads,
    count_parameters,
    group_heads,
    head_importance,
    importance_order,
    prune_heads,
    pruning_curve,
)
from tfm_edu.pretrained import PRUNE_HEADS, digits_vit, tiny_bert_sentiment
from tfm_edu.recipes.common import recipe_parser, run_recipe

__all__ = [
    "MODELS",
    "SENTIMENT_CHECKPOINT",
    "Task",
    "sentiment_task",
    "digits_task",
    "prune_experiment",
    "format_table",
    "main",
]

MODELS = ("bert", "vit")  # --models choices: chapter 6's sentiment BERT, chapter 8's digits ViT
SENTIMENT_CHECKPOINT = "bert_tiny_sentiment"


@dataclass(frozen=True, kw_only=True)
class Task:
    """One model with its importance batches, its loss and its test accuracy."""

    name: str  # the model's key in the card
    description: str  # what the model is and which data it is measured on
    model: nn.Module  # in eval mode
    batches: list  # one example per batch, for head_importance
    loss_fn: Callable[[nn.Module, object], Tensor]  # loss_fn(model, batch) -> cross-entropy
    evaluate: Callable[[nn.Module], float]  # evaluate(model) -> test accuracy
    test_examples: int  # how many test examples `evaluate` reads


def sentiment_task(importance_examples: int | None, test_examples: int | None) -> Task:
    """Chapter 6's tiny BERT sentiment classifier; importance on its "train" sentences, accuracy
    on the "test" ones (the first N of each when given)."""
    model, tokenizer = tiny_bert_sentiment(SENTIMENT_CHECKPOINT)
    train_size = load_card(SENTIMENT_CHECKPOINT)["metrics"]["settings"]["train_size"]
    splits = sentences.sentiment_splits(train=train_size)
    train, test = splits["train"][:importance_examples], splits["test"][:test_examples]

    def encoded(rows) -> tuple[Tensor, Tensor, Tensor]:
        batch = tokenizer.batch_encode([row.text for row in rows])
        lengths = batch["attention_mask"].sum(dim=1)  # (N,) real tokens, padding at the end
        return batch["input_ids"], lengths, torch.tensor([row.label for row in rows])  # (N, T)

    ids, lengths, labels = encoded(train)  # (N, T), (N,), (N,)
    batches = [(ids[i : i + 1, : lengths[i]], labels[i : i + 1]) for i in range(len(train))]
    test_ids, test_lengths, test_labels = encoded(test)  # (N_test, T), (N_test,), (N_test,)
    # One batch per length, unpadded: the same predictions as padded batches, with less work.
    groups = [
        (test_ids[test_lengths == n, :n], test_labels[test_lengths == n])  # (N_n, n), (N_n,)
        for n in test_lengths.unique().tolist()
    ]

    @torch.no_grad()
    def evaluate(m: nn.Module) -> float:
        right = sum(int((m(x).logits.argmax(-1) == y).sum()) for x, y in groups)
        return right / len(test)

    return Task(
        name="bert_sentiment",
        description=f"chapter 6's tiny BERT sentiment classifier (data/{SENTIMENT_CHECKPOINT}); "
        f"importance on {len(train)} 'train' sentences of sentiment_splits(train={train_size}), "
        f"accuracy on {len(test)} 'test' sentences",
        model=model,
        batches=batches,
        loss_fn=lambda m, batch: m(batch[0], targets=batch[1]).loss,
        evaluate=evaluate,
        test_examples=len(test),
    )


def digits_task(importance_examples: int | None, test_examples: int | None) -> Task:
    """Chapter 8's digits ViT; importance on the "train+val" images it was trained on, accuracy
    on the "test" images (the first N of each when given)."""
    model = digits_vit().eval()
    images, labels = digits.load("train+val")  # (1437, 1, 8, 8), (1437,)
    images, labels = images[:importance_examples], labels[:importance_examples]  # (N, 1, 8, 8)
    test_images, test_labels = digits.load("test")  # (360, 1, 8, 8), (360,)
    test_images, test_labels = test_images[:test_examples], test_labels[:test_examples]
    batches = [(images[i : i + 1], labels[i : i + 1]) for i in range(len(images))]
    return Task(
        name="digits_vit",
        description=f"chapter 8's digits ViT (data/digits_vit); importance on {len(images)} "
        f"'train+val' digits (what it was trained on), accuracy on {len(test_images)} 'test' "
        "digits",
        model=model,
        batches=batches,
        loss_fn=lambda m, batch: m(batch[0], batch[1]).loss,
        evaluate=lambda m: accuracy(m, test_images, test_labels),
        test_examples=len(test_images),
    )


def prune_experiment(task: Task, seeds: Sequence[int]) -> dict:
    """Importance, the accuracy curves (importance order and random orders), and the really
    pruned models' parameters and accuracy along the importance order.

    Returns:
        The model's entry of the card (see data/README.md, "Chapter 11: head pruning").
    """
    model = task.model
    heads = all_heads(model)
    start = time.perf_counter()
    importance = head_importance(model, task.batches, task.loss_fn)  # (L, H)
    importance_seconds = time.perf_counter() - start
    order = importance_order(model, importance)
    by_importance = pruning_curve(model, task.evaluate, order)
    random_curves = []
    for seed in seeds:
        shuffled = [heads[i] for i in np.random.default_rng(seed).permutation(len(heads))]
        random_curves.append([p.score for p in pruning_curve(model, task.evaluate, shuffled)])
    curves = np.array(random_curves)  # (seeds, points)
    parameters, pruned_accuracy = [], []
    for point in by_importance:
        pruned = prune_heads(model, group_heads(order[: point.heads_removed]))
        parameters.append(count_parameters(pruned))
        pruned_accuracy.append(task.evaluate(pruned))
    module = next(iter(attention_layers(model).values()))
    D, Dh = module.d_model, module.head_dim
    return {
        "description": task.description,
        "layers": importance.shape[0],
        "heads_per_layer": importance.shape[1],
        "d_model": D,
        "head_dim": Dh,
        "importance_examples": len(task.batches),
        "test_examples": task.test_examples,
        "importance": _rounded(importance.tolist()),
        "importance_order": [[key, head] for key, head in order],
        "importance_seconds": round(importance_seconds, 2),
        "heads_removed": [p.heads_removed for p in by_importance],
        "accuracy": {
            "importance": _rounded([p.score for p in by_importance]),
            "random": _rounded(curves.tolist()),
            "random_mean": _rounded(curves.mean(axis=0).tolist()),
            "random_std": _rounded(curves.std(axis=0, ddof=1).tolist()),
            "random_min": _rounded(curves.min(axis=0).tolist()),
            "random_max": _rounded(curves.max(axis=0).tolist()),
        },
        "pruned_accuracy": _rounded(pruned_accuracy),
        "parameters": parameters,
        "parameters_per_head": 4 * Dh * D + 3 * Dh,
    }


def _rounded(values):
    if isinstance(values, list):
        return [_rounded(v) for v in values]
    return round(float(values), 4)


def format_table(entry: dict) -> str:
    """One model's curve as aligned text: heads removed, parameters, accuracy in importance
    order (gated, and really pruned), in random orders (mean ± std, min-max)."""
    acc = entry["accuracy"]
    rows = [
        {
            "heads removed": str(removed),
            "parameters": f"{entry['parameters'][i]:,}",
            "importance order": f"{acc['importance'][i]:.2%}",
            "really pruned": f"{entry['pruned_accuracy'][i]:.2%}",
            "random: mean ± std": f"{acc['random_mean'][i]:.2%} ± {acc['random_std'][i]:.2%}",
            "random: min-max": f"{acc['random_min'][i]:.2%}-{acc['random_max'][i]:.2%}",
        }
        for i, removed in enumerate(entry["heads_removed"])
    ]
    return bench_table(rows)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment and write the card; `--help` lists the options."""
    parser = recipe_parser("prune-heads", __doc__, out=PRUNE_HEADS)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--random-orders", type=int, default=10, help="random orders (seeds --seed, --seed+1, ...)"
    )
    parser.add_argument(
        "--importance-examples", type=int, default=None, help="first N training examples (all)"
    )
    parser.add_argument("--test-examples", type=int, default=None, help="first N test examples")
    return run_recipe(parser, argv, _run)


def _run(args: argparse.Namespace, command: str) -> dict:
    if args.random_orders < 2:
        raise SystemExit("--random-orders must be >= 2: the spread needs two orders")
    for name in ("importance_examples", "test_examples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    seeds = list(range(args.seed, args.seed + args.random_orders))
    builders = {"bert": sentiment_task, "vit": digits_task}
    start = time.perf_counter()
    entries = {}
    for choice in dict.fromkeys(args.models):
        task = builders[choice](args.importance_examples, args.test_examples)
        entries[task.name] = prune_experiment(task, seeds)
    seconds = time.perf_counter() - start
    result = {
        "command": command,
        "method": "Michel et al. (2019) head importance, I_h = E_x |dL/dxi_h| per example, "
        "l2-normalised per layer; heads removed least important first vs in random orders; "
        "accuracy with gates at zero, parameters (and accuracy) after really pruning",
        "random_seeds": seeds,
        "models": entries,
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }
    out = card_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for entry in entries.values():
        print(f"\n{entry['description']}")
        print(
            f"{entry['layers']} layers x {entry['heads_per_layer']} heads, "
            f"{entry['parameters_per_head']:,} parameters per head; normalised importance:"
        )
        print(np.array2string(np.array(entry["importance"]), precision=3))
        print(format_table(entry))
    print(
        f"\ntest accuracy; random orders over seeds {seeds[0]}..{seeds[-1]} (std with n - 1); "
        f"'really pruned': the model with those heads removed, not gated; {seconds:.0f} s on "
        f"{torch.get_num_threads()} thread(s); wrote {out}"
    )
    return result
