"""Chapter 10: how closely a student's sentence embeddings follow its teacher's.

A sentence-embedding model is used through the similarities it gives (search, clustering,
duplicates), so a student is judged on them, not on its raw vectors (which may differ by a
rotation and still be as useful). Two views of the same question, both from the MiniLM and
DistilBERT line of work (Wang et al., 2020; Sanh et al., 2019) and the sentence-embedding
benchmarks that rank by Spearman correlation (Reimers & Gurevych, 2019):

- `pairwise_cosine`: the (N, N) matrix of cosine similarities between N embeddings;
- `spearman`: Spearman's rank correlation of two lists of numbers (the Pearson correlation of
  their ranks, tied values sharing their average rank, as `scipy.stats.spearmanr`);
- `similarity_spearman`: `spearman` of the student's and the teacher's cosine similarities over
  all N (N - 1) / 2 pairs of different sentences: 1 when the student orders every pair as the
  teacher does;
- `neighbour_agreement`: for each sentence, the share of its k nearest neighbours (by cosine,
  itself excluded) that the student and the teacher agree on, averaged over the sentences.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pairwise_cosine", "spearman", "similarity_spearman", "neighbour_agreement"]


def pairwise_cosine(embeddings: Tensor) -> Tensor:
    """Cosine similarity of every pair of rows.

    Args:
        embeddings: (N, D).

    Returns:
        (N, N) symmetric, with 1 on the diagonal (for non-zero rows).
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got {tuple(embeddings.shape)}")
    unit = F.normalize(embeddings.double(), dim=-1)  # (N, D), float64 for stable rankings
    return unit @ unit.T  # (N, N)


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long 1-D sequences (ties get average ranks).

    Args:
        x, y: (M,) numbers (tensors, arrays or lists), M >= 2.

    Returns:
        The Pearson correlation of their ranks, in [-1, 1] (nan if either is constant).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"expected two (M,) sequences with M >= 2, got {x.shape} and {y.shape}")
    rank_x, rank_y = _average_ranks(x), _average_ranks(y)  # (M,), (M,)
    rank_x, rank_y = rank_x - rank_x.mean(), rank_y - rank_y.mean()  # (M,), (M,)
    denominator = np.sqrt((rank_x**2).sum() * (rank_y**2).sum())
    return float((rank_x * rank_y).sum() / denominator) if denominator > 0 else float("nan")


def similarity_spearman(student: Tensor, teacher: Tensor) -> float:
    """Spearman correlation between two models' cosine similarities over all pairs.

    Args:
        student, teacher: (N, D_s) and (N, D_t) embeddings of the same N >= 3 sentences (the
            widths may differ).

    Returns:
        `spearman` over the N (N - 1) / 2 pairs i < j (the upper triangle, no diagonal).
    """
    _check_pair(student, teacher, minimum=3)
    rows, cols = torch.triu_indices(len(student), len(student), offset=1)  # (2, M)
    return spearman(
        pairwise_cosine(student)[rows, cols].cpu().numpy(),
        pairwise_cosine(teacher)[rows, cols].cpu().numpy(),
    )


def neighbour_agreement(student: Tensor, teacher: Tensor, k: int = 5) -> float:
    """Mean share of the k nearest neighbours that the two models agree on.

    Args:
        student, teacher: (N, D_s) and (N, D_t) embeddings of the same N > k sentences.
        k: neighbours per sentence (by cosine similarity, the sentence itself excluded).

    Returns:
        mean over sentences of |student's k nearest ∩ teacher's k nearest| / k, in [0, 1].
    """
    _check_pair(student, teacher, minimum=k + 1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    neighbours = []
    for embeddings in (student, teacher):
        similarity = pairwise_cosine(embeddings).fill_diagonal_(-float("inf"))  # (N, N)
        neighbours.append(similarity.topk(k, dim=-1).indices)  # (N, k)
    student_nearest, teacher_nearest = neighbours
    shared = (student_nearest[:, :, None] == teacher_nearest[:, None, :]).any(-1)  # (N, k)
    return float(shared.double().mean())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..M; a run of equal values all get the average of the ranks they span."""
    order = np.argsort(values, kind="stable")  # (M,)
    ordered = values[order]  # (M,)
    starts_run = np.r_[True, ordered[1:] != ordered[:-1]]  # (M,) True where a new value begins
    run = np.cumsum(starts_run) - 1  # (M,) which run each sorted value belongs to
    first = np.flatnonzero(starts_run)  # (R,) sorted position where each run starts
    last = np.r_[first[1:], len(values)] - 1  # (R,) and where it ends
    ranks = np.empty(len(values))  # (M,)
    ranks[order] = (first + last)[run] / 2 + 1  # (M,) average of the 1-based ranks of the run
    return ranks


def _check_pair(student: Tensor, teacher: Tensor, minimum: int) -> None:
    if student.dim() != 2 or teacher.dim() != 2 or len(student) != len(teacher):
        raise ValueError(
            "student and teacher must be (N, D_s) and (N, D_t) embeddings of the same N "
            f"sentences, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if len(student) < minimum:
        raise ValueError(f"need at least {minimum} sentences, got {len(student)}")
