"""Chapter 9: how well a language model predicts a text, in the units people quote.

- `corpus_loss`: the mean cross-entropy, in nats per character, over a whole encoded text cut
  into the model's windows (`tfm_edu.data.corpus.eval_windows`), every character predicted once;
- `bits_per_character` and `perplexity`: the same number in bits (divide by ln 2), and as the
  number of equally likely choices it is worth (e^loss);
- `corpus_notice`: whether the learner's Python holds the very text a model was trained on.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from tfm_edu.data.corpus import CorpusInfo, eval_windows

__all__ = ["corpus_loss", "bits_per_character", "perplexity", "corpus_notice"]


@torch.no_grad()
def corpus_loss(
    model: nn.Module, ids: Tensor, block_size: int, *, batch_size: int = 64,
    max_windows: int | None = None,
) -> float:  # fmt: skip
    """Mean next-character cross-entropy (nats per character) of `model` over a text.

    Args:
        model: `model(inputs, targets)` returns `.loss`, the mean over its positions (a GPT, a
            `BigramLM`); it is run in eval mode and put back.
        ids: (N,) the encoded text, e.g. the validation split.
        block_size: the window length: the model's context (its `config.block_size`).
        batch_size: windows per forward pass.
        max_windows: use only the first this many full windows (a quick estimate).

    Returns:
        The loss averaged over every predicted character (each character after the first of
        each window counts once).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    windows = eval_windows(ids, block_size)
    if max_windows is not None:
        windows = [(windows[0][0][:max_windows], windows[0][1][:max_windows])]
    device = next(iter(model.buffers()), next(iter(model.parameters()), ids)).device
    try:
        for inputs, targets in windows:
            for x, y in zip(inputs.split(batch_size), targets.split(batch_size), strict=True):
                loss = model(x.to(device), y.to(device)).loss  # mean over x.numel() positions
                total += loss.item() * y.numel()
                count += y.numel()
    finally:
        model.train(was_training)
    return total / count


def bits_per_character(nats: float) -> float:
    """A loss in nats per character -> bits per character (divide by ln 2)."""
    return nats / math.log(2)


def perplexity(nats: float) -> float:
    """e^loss: a model with perplexity k is as unsure as a fair choice among k characters."""
    return math.exp(nats)


def corpus_notice(trained_on: dict[str, Any], here: CorpusInfo) -> str | None:
    """None when this Python's help texts are the model's training text, else a sentence.

    Args:
        trained_on: the card's "corpus" entry ({"sha256", "python", "characters", ...}).
        here: `tfm_edu.data.corpus.describe(help_texts())` on this Python.
    """
    if trained_on.get("sha256") == here.sha256:
        return None
    size = trained_on.get("characters")
    size = f"{size:,}" if isinstance(size, int) else "?"
    return (
        f"The model was trained on the help texts of Python {trained_on.get('python', '?')} "
        f"({size} characters); this Python {here.python} has {here.characters:,} characters "
        "of slightly different text, so the numbers below differ a little from the ones "
        "quoted in the text."
    )
