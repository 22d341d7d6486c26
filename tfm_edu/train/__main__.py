"""`python -m tfm_edu.train <recipe> [recipe options]`: train one of the course's models and write
its checkpoint into data/. `--help` after a recipe lists its options.

This is the command line only: the training loop is `tfm_edu.train.fit`, and each recipe (its
data, model, settings and card) is a module of `tfm_edu.recipes`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tfm_edu.recipes import (
    bert,
    dates,
    distill_digits,
    distill_minilm,
    gpt,
    induction,
    positions,
    prune_heads,
    vit,
)

__all__ = ["RECIPES", "main"]

# name -> (the recipe's main, taking the remaining argv; what it trains)
RECIPES: dict[str, tuple[Callable[[list[str]], object], str]] = {
    "positions-length": (
        positions.main,
        "chapter 3: sinusoidal, learned and RoPE positions on longer sequences",
    ),
    "dates": (dates.main, "chapter 5: date translator (seq2seq, characters)"),
    "bert-mlm": (bert.main_mlm, "chapter 6: tiny BERT, masked-LM pretraining"),
    "bert-sentiment": (bert.main_sentiment, "chapter 6: tiny BERT, sentiment fine-tuning"),
    "bert-sentiment-seeds": (
        bert.main_sentiment_seeds,
        "chapter 6: seed spread of fine-tuning, pretrained vs scratch (a JSON table)",
    ),
    "vit-digits": (vit.main, "chapter 8: Vision Transformer on 8x8 digits"),
    "gpt-chars": (gpt.main, "chapter 9: character GPT on the standard library's help texts"),
    "induction-heads": (
        induction.main,
        "chapter 9: a 2-layer GPT that learns to copy (an induction head)",
    ),
    "distill-minilm": (
        distill_minilm.main,
        "chapter 10: all-MiniLM-L6-v2 teaches a 2-layer student its sentence embeddings",
    ),
    "distill-digits": (
        distill_digits.main,
        "chapter 10: convnet teacher, ViT and DeiT (soft/hard) on 10-100 % of the digits",
    ),
    "prune-heads": (
        prune_heads.main,
        "chapter 11: head importance and the pruning curve (tiny BERT sentiment, digits ViT)",
    ),
}


def main(argv: list[str] | None = None) -> None:
    """Run the recipe named first in `argv` with the rest of `argv`."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tfm_edu.train",
        description="Train one of the course's models and write its checkpoint into data/.",
        epilog="recipes:\n" + "\n".join(f"  {k:22s}{v[1]}" for k, v in RECIPES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipe", choices=sorted(RECIPES), help="what to train")
    if not argv or argv[0] not in RECIPES:  # no recipe named: show help or a clear error
        parser.parse_args(argv[:1] or ["--help"])
    run, _ = RECIPES[argv[0]]
    run(argv[1:])


if __name__ == "__main__":
    main()
