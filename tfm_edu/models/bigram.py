"""Chapter 9's first language model, made by counting: a bigram table.

Count, in the training text, how often each character b follows each character a; the model's
guess for the character after a is that row of counts, normalised:

    P(b | a) = (count(a, b) + alpha) / (count(a) + alpha * V)

The `alpha` added to every cell ("add-alpha" smoothing) keeps a pair never seen in training
from getting probability 0, which would make its loss infinite. The model sees one character of
context and nothing else; its validation loss is the number a Transformer that reads hundreds
of characters must beat. It has the language-model interface of `tfm_edu.models.gpt.GPT`
(`forward(ids, targets)` -> `.logits` (B, T, V), `.loss`), so the same code measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tfm_edu.models.gpt import language_model_loss

__all__ = ["BigramOutput", "BigramLM", "bigram_counts"]


@dataclass
class BigramOutput:
    """What `BigramLM.forward` returns."""

    logits: Tensor  # (B, T, V) log-probabilities of the next token at each position
    loss: Tensor | None = None  # scalar mean cross-entropy per token, when targets were given


def bigram_counts(ids: Tensor, vocab_size: int) -> Tensor:
    """(V, V) int64 counts: entry [a, b] is how often token b follows token a in `ids` (N,)."""
    if ids.dim() != 1 or ids.dtype != torch.long or len(ids) < 2:
        raise ValueError(f"ids must be a (N,) int64 tensor with N >= 2, got {tuple(ids.shape)}")
    pairs = ids[:-1] * vocab_size + ids[1:]  # (N - 1,) one number per (a, b) pair
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


class BigramLM(nn.Module):
    """P(next | current) read from a table of smoothed counts."""

    def __init__(self, counts: Tensor, *, alpha: float = 1.0) -> None:
        """
        Args:
            counts: (V, V) from `bigram_counts`.
            alpha: added to every count (> 0).
        """
        super().__init__()
        if counts.dim() != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"counts must be (V, V), got {tuple(counts.shape)}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)
        smoothed = counts.double() + alpha  # (V, V)
        log_probs = (smoothed / smoothed.sum(dim=1, keepdim=True)).log()  # (V, V) rows sum to 1
        self.register_buffer("log_probs", log_probs.float())  # (V, V)

    def forward(self, ids: Tensor, targets: Tensor | None = None) -> BigramOutput:
        """ids (B, T) -> logits (B, T, V): row ids[b, t] of the table; loss with targets."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, T), got {tuple(ids.shape)}")
        logits = self.log_probs[ids]  # (B, T, V): already normalised log-probabilities
        loss = None if targets is None else language_model_loss(logits, targets)
        return BigramOutput(logits, loss)
