"""What positions look like to a model: RoPE's rotations of one vector (chapter 3), how
similar the learned position vectors of a ViT's patches are (chapter 8; Dosovitskiy et al.,
2021, figure 7), and how well a model trained on short sequences does on longer ones
(chapter 3's length generalisation, on `tfm_edu.data.toy.shift_task`).
"""

from __future__ import annotations

import numpy as np
import torch

from tfm_edu.data.toy import shift_task
from tfm_edu.positional import apply_rotary, rotary_angles

__all__ = [
    "rotated_copies",
    "position_similarity",
    "similarity_by_distance",
    "shift_accuracy_by_length",
    "shift_accuracy_by_position",
]


def rotated_copies(vector, n_positions: int, base: float = 10000.0) -> np.ndarray:
    """RoPE applied to one vector at positions 0..N-1.

    Args:
        vector: (D,) with D even.
        n_positions: N.
        base: RoPE's base.

    Returns:
        (N, D) float64: row n is `vector` rotated to position n.
    """
    vector = torch.as_tensor(np.asarray(vector, dtype=np.float64))  # (D,)
    if vector.dim() != 1:
        raise ValueError(f"vector must be (D,), got shape {tuple(vector.shape)}")
    angles = rotary_angles(torch.arange(n_positions), vector.shape[0], base)  # (N, D/2)
    rows = vector.expand(n_positions, -1)  # (N, D)
    return apply_rotary(rows, angles.double()).numpy()  # (N, D)


def position_similarity(embeddings) -> np.ndarray:
    """Cosine similarity between every pair of learned position vectors.

    Args:
        embeddings: (P, D) the patches' position vectors (without [CLS]'s).

    Returns:
        (P, P), 1 on the diagonal.
    """
    vectors = embeddings.detach().cpu().numpy() if hasattr(embeddings, "detach") else embeddings
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must be (P, D), got shape {vectors.shape}")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)  # (P, D)
    return unit @ unit.T  # (P, P)


def similarity_by_distance(similarity) -> dict[int, float]:
    """Mean similarity of two patches' position vectors, by their distance on the patch grid.

    Args:
        similarity: (P, P) from `position_similarity`, P a square number (patches in reading
            order).

    Returns:
        {d: mean over all pairs at grid distance d} for d = 1, 2, ..., where the distance is
        |row difference| + |column difference| (steps between neighbours). If the positions
        learned the 2-D layout, the mean falls as d grows.
    """
    similarity = np.asarray(similarity)
    count = similarity.shape[0]
    side = round(count**0.5)
    if similarity.shape != (count, count) or side * side != count:
        raise ValueError(f"similarity must be (P, P) with P a square, got {similarity.shape}")
    row, column = np.divmod(np.arange(count), side)  # (P,), (P,)
    distance = np.abs(row[:, None] - row) + np.abs(column[:, None] - column)  # (P, P)
    return {int(d): float(similarity[distance == d].mean()) for d in range(1, distance.max() + 1)}


def shift_accuracy_by_length(
    model,
    lengths,
    *,
    shift: int = 3,
    num_sequences: int = 256,
    seed: int = 0,
) -> dict[int, float]:
    """How often a `tfm_edu.models.shift_encoder.ShiftEncoder` answers the shift task right,
    for fresh sequences of each length (chapter 3's length-generalisation table).

    Args:
        model: a ShiftEncoder (any model with `.config.vocab_size` that maps tokens (N, T) to
            `.logits` (N, T, V)).
        lengths: the sequence lengths T to test, each > shift.
        shift: the task's offset (the one the model was trained on).
        num_sequences: N random sequences per length.
        seed: the data's seed; length T uses seed + T, so each length is the same set whatever
            the other lengths are.

    Returns:
        {T: accuracy over all N * (T - shift) positions that have an answer}.
    """
    table = {}
    for length in lengths:
        correct = _shift_predictions(model, int(length), shift, num_sequences, seed)
        table[int(length)] = float(correct.mean())
    return table


def shift_accuracy_by_position(
    model, length: int, *, shift: int = 3, num_sequences: int = 256, seed: int = 0
) -> np.ndarray:
    """Accuracy on the shift task at each position of sequences of one length.

    Args:
        model, shift, num_sequences, seed: as for `shift_accuracy_by_length` (the same data).
        length: T.

    Returns:
        (T,) float64: the share of the N sequences answered right at each position; NaN for the
        first `shift` positions, which have no answer.
    """
    correct = _shift_predictions(model, int(length), shift, num_sequences, seed)
    by_position = np.full(length, np.nan)
    by_position[shift:] = correct.mean(axis=0)  # (T - shift,)
    return by_position


def _shift_predictions(model, length, shift, num_sequences, seed):
    """(N, T - shift) bool: right or wrong at each position with an answer."""
    vocab_size = model.config.vocab_size
    inputs, targets = shift_task(
        num_sequences, length, shift=shift, vocab_size=vocab_size, rng=seed + length
    )  # (N, T) each
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs).to(device)).logits  # (N, T, V)
    model.train(was_training)
    predicted = logits.argmax(-1).cpu().numpy()  # (N, T)
    return predicted[:, shift:] == targets[:, shift:]  # (N, T - shift)
