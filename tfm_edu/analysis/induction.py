"""Chapter 9: induction heads (Olsson et al., 2022, "In-context Learning and Induction Heads").

Show a language model a random string it cannot know, then the same string again. On the first
copy it can only guess; on the second, a model with *induction heads* copies: at a character
that occurred before, a head attends to the character that *followed* its previous occurrence,
and the model predicts that one. The experiment, in three measurements:

- `repeated_sequences`: random strings of `length` characters, each written twice;
- `loss_by_position`: the model's loss at each position of them (drops on the second copy?);
- `induction_scores` / `previous_token_scores`: how much attention each head puts, from each
  position t of the second copy, on position t - length + 1 (the token after the previous
  occurrence of the current one), or on t - 1 (the previous token: the other half of the
  two-layer circuit);
then switch the best induction heads off (`tfm_edu.analysis.ablate_heads`) and measure the loss
on the second copy again, beside a control that switches off as many other heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "repeated_sequences",
    "loss_by_position",
    "induction_scores",
    "previous_token_scores",
    "top_heads",
]


def repeated_sequences(symbols: Sequence[int], length: int, count: int, seed: int = 0) -> Tensor:
    """`count` random strings of `length` ids drawn uniformly from `symbols`, each repeated.

    Returns:
        (count, 2 * length) int64: row r is s_r followed by s_r again.
    """
    if not isinstance(length, int) or length < 2 or not isinstance(count, int) or count < 1:
        raise ValueError(f"need length >= 2 and count >= 1, got {length!r} and {count!r}")
    pool = torch.as_tensor(list(symbols), dtype=torch.long)  # (K,)
    if pool.dim() != 1 or len(pool) < 2:
        raise ValueError(f"symbols must hold at least 2 ids, got {len(pool)}")
    generator = torch.Generator().manual_seed(seed)
    first = pool[torch.randint(len(pool), (count, length), generator=generator)]  # (N, L)
    return torch.cat([first, first], dim=1)  # (N, 2L)


@torch.no_grad()
def loss_by_position(model: nn.Module, ids: Tensor) -> np.ndarray:
    """Mean cross-entropy of predicting ids[:, t + 1] from ids[:, : t + 1], for every t.

    Args:
        model: `model(ids)` returns `.logits` (N, T, V).
        ids: (N, T) sequences.

    Returns:
        (T - 1,) nats: entry t is the loss of the prediction made at position t.
    """
    logits = model(ids[:, :-1]).logits  # (N, T - 1, V)
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, T - 1, V)
    picked = log_probs.gather(-1, ids[:, 1:, None])[..., 0]  # (N, T - 1)
    return (-picked).mean(dim=0).numpy()  # (T - 1,)


@torch.no_grad()
def _attentions(model: nn.Module, ids: Tensor) -> Tensor:
    out = model(ids, return_attention=True)
    return torch.stack(out.attentions, dim=1)  # (N, L, H, T, T)


def induction_scores(model: nn.Module, ids: Tensor, length: int) -> np.ndarray:
    """Per head, the mean attention from position t of the second copy to t - length + 1.

    That key holds the token that followed the previous occurrence of token t (the first copy
    is the same string): the token an induction head copies.

    Args:
        model: `model(ids, return_attention=True).attentions`, one (N, H, T, T) per layer.
        ids: (N, 2 * length) from `repeated_sequences`.
        length: the length of one copy.

    Returns:
        (L, H) mean weights in [0, 1]; 1/t would be uniform attention.
    """
    weights = _attentions(model, ids)  # (N, L, H, 2l, 2l)
    queries = torch.arange(length, 2 * length)  # (l,) the positions of the second copy
    return weights[..., queries, queries - length + 1].mean(dim=(0, -1)).numpy()  # (L, H)


def previous_token_scores(model: nn.Module, ids: Tensor) -> np.ndarray:
    """Per head, the mean attention from every position t >= 1 to t - 1.

    Returns:
        (L, H) mean weights in [0, 1].
    """
    weights = _attentions(model, ids)  # (N, L, H, T, T)
    queries = torch.arange(1, ids.shape[1])  # (T - 1,)
    return weights[..., queries, queries - 1].mean(dim=(0, -1)).numpy()  # (L, H)


def top_heads(scores: np.ndarray, count: int) -> dict[int, list[int]]:
    """The `count` heads with the highest scores, as {layer: [head, ...]} for `ablate_heads`."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or not 1 <= count <= scores.size:
        raise ValueError(f"need (L, H) scores and 1 <= count <= L*H, got {scores.shape}, {count}")
    order = np.argsort(-scores, axis=None, kind="stable")[:count]  # flat indices, best first
    chosen: dict[int, list[int]] = {}
    for flat in order:
        layer, head = divmod(int(flat), scores.shape[1])
        chosen.setdefault(layer, []).append(head)
    return chosen
