"""Chapter 6: what a masked language model learned, measured on held-out sentences.

- `masked_accuracy`: how often the hidden token is the model's first guess;
- `fill_mask`: the model's top guesses for each [MASK] of a sentence;
- `agreement_accuracy`, `polarity_accuracy`: targeted probes of the grammar (Linzen et al.,
  2016, for number agreement across an intervening noun).

Each takes a `BERTForMaskedLM` (any model returning `.logits` (B, T, V)) and its tokenizer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfm_edu.data import sentences
from tfm_edu.models.bert import IGNORE_INDEX
from tfm_edu.tokenize import WordPiece

__all__ = ["masked_accuracy", "fill_mask", "agreement_accuracy", "polarity_accuracy"]


@torch.no_grad()
def masked_accuracy(model, batch: tuple[Tensor, Tensor, Tensor]) -> float:
    """Fraction of the chosen tokens whose original id is the model's top prediction.

    batch: (input_ids, attention_mask, labels), each (B, T), as `mlm_batches` makes them.
    """
    inputs, attention_mask, labels = batch
    logits = model(inputs, attention_mask).logits  # (B, T, V)
    chosen = labels != IGNORE_INDEX  # (B, T)
    return (logits.argmax(-1)[chosen] == labels[chosen]).float().mean().item()


@torch.no_grad()
def fill_mask(
    model, tokenizer: WordPiece, text: str, top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """The model's `top_k` guesses (token, probability) for each [MASK] in `text`."""
    ids = torch.tensor([tokenizer.encode(text)])  # (1, T)
    positions = (ids[0] == tokenizer.mask_id).nonzero().flatten().tolist()
    if not positions:
        raise ValueError(f"no [MASK] in {text!r}")
    was_training = model.training
    model.eval()
    probabilities = model(ids).logits[0].softmax(-1)  # (T, V)
    model.train(was_training)
    guesses = []
    for position in positions:
        values, indices = probabilities[position].topk(top_k)  # (top_k,) each
        guesses.append(
            [
                (tokenizer.itos[i], round(v, 3))
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
        )
    return guesses


@torch.no_grad()
def agreement_accuracy(model, tokenizer: WordPiece, probes=None) -> float:
    """How often the masked verb gets the subject's number, despite a noun of the other number
    in between ("the actor in the scenes [MASK] good": was/is right, were/are wrong)."""
    probes = probes or sentences.agreement_probes()
    batch = tokenizer.batch_encode([text for text, _ in probes])
    logits = model(batch["input_ids"], batch["attention_mask"]).logits  # (B, T, V)
    at_mask = logits[batch["input_ids"] == tokenizer.mask_id]  # (B, V), one [MASK] per probe
    singular = at_mask[:, [tokenizer.stoi["was"], tokenizer.stoi["is"]]].max(-1).values  # (B,)
    plural = at_mask[:, [tokenizer.stoi["were"], tokenizer.stoi["are"]]].max(-1).values  # (B,)
    said_plural = plural > singular  # (B,)
    truth = torch.tensor([is_plural for _, is_plural in probes])
    return (said_plural == truth).float().mean().item()


@torch.no_grad()
def polarity_accuracy(model, tokenizer: WordPiece, probes=None) -> float:
    """How often the masked last adjective of "A and/but B" gets more probability on the right
    sentiment class than on the other (see `sentences.polarity_probes`)."""
    probes = probes or sentences.polarity_probes()
    batch = tokenizer.batch_encode([text for text, _ in probes])
    logits = model(batch["input_ids"], batch["attention_mask"]).logits  # (B, T, V)
    probabilities = logits[batch["input_ids"] == tokenizer.mask_id].softmax(-1)  # (B, V)
    positive = probabilities[:, [tokenizer.stoi[w] for w in sentences.POSITIVE]].sum(-1)  # (B,)
    negative = probabilities[:, [tokenizer.stoi[w] for w in sentences.NEGATIVE]].sum(-1)  # (B,)
    truth = torch.tensor([is_positive for _, is_positive in probes])
    return ((positive > negative) == truth).float().mean().item()
