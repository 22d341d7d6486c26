"""A toy word embedding, so that chapter 1's AttentionExplorer works with no trained model.

What it is, honestly: each word becomes the sum of fixed pseudo-random vectors, one per
character trigram of "<word>" (lower-cased), the trick fastText uses for sub-words
(Bojanowski et al., 2017). Words that share spelling share trigrams, so "cat" and "cats" point
in similar directions while "cat" and "dog" are nearly orthogonal. It knows spelling, not
meaning: "cat" and "kitten" are unrelated here. Vectors come from SHAKE-256 digests of the
trigram, not Python's `hash` (salted per process) nor a NumPy generator (whose streams may change
between versions), so they are identical on every machine and every run.

`toy_attention` then runs scaled dot-product attention (Vaswani et al., 2017) on those vectors
with `tfm_edu.numpy_attention`, as an *untrained* one-layer model would: head 0 uses the
embeddings themselves as queries and keys (each word attends to itself and to words spelled
alike); the other heads use fixed random projections, whose patterns mean nothing yet, like a
Transformer's heads before training. There are no positions: the same word gets the same row
wherever it stands (chapter 3 fixes that).

`shift_task` is chapter 3's other toy: random symbols, and the answer at position i is the symbol
`shift` places earlier, a rule about *relative* position that a model can only follow if it knows
where each token is (chapter 3 trains one on short sequences and tests it on longer ones).

`copy_task` is chapter 9's: random symbols in which one stretch, of random length at a random
place, is written twice in a row. Nothing but the second copy can be predicted, and only by
looking back at the first: the task on which a small GPT grows an induction head.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from tfm_edu import numpy_attention as npa
from tfm_edu.maps import AttentionMaps

__all__ = [
    "tokenize_words",
    "embed_words",
    "toy_attention",
    "IGNORE_INDEX",
    "shift_task",
    "copy_task",
]

IGNORE_INDEX = -100  # a target that the loss and the accuracy skip (cross_entropy's default)

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # words (with inner apostrophes), punctuation


def tokenize_words(text: str) -> list[str]:
    """Words and punctuation marks: "Don't stop, cat!" -> ["Don't", "stop", ",", "cat", "!"]."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return _TOKEN.findall(text)


def embed_words(words, d_model: int = 32) -> np.ndarray:
    """Deterministic character-trigram embeddings.

    Args:
        words: T strings (case is ignored).
        d_model: D, the width of each vector, >= 2.

    Returns:
        (T, D) float64; each row has norm sqrt(D), the size of a vector of unit-variance entries,
        so that dot products divided by sqrt(D) land in softmax's useful range.
    """
    if isinstance(words, str):
        raise ValueError(f"words must be a list of strings, got the string {words!r}")
    if not isinstance(d_model, (int, np.integer)) or d_model < 2:
        raise ValueError(f"d_model must be an int >= 2, got {d_model!r}")
    rows = [_word_vector(str(word).lower(), int(d_model)) for word in words]
    return np.stack(rows) if rows else np.zeros((0, d_model))  # (T, D)


def toy_attention(
    sentence: str, num_heads: int = 4, d_model: int = 32, causal: bool = False, seed: int = 0
):
    """Attention maps of an untrained one-layer model over the toy embedding.

    Args:
        sentence: any text; tokenized by `tokenize_words`.
        num_heads: H >= 1 heads; head 0 compares the embeddings directly, heads 1.. compare
            fixed random projections (each D -> D / H, so H must divide D when H > 1).
        d_model: D, the embedding width.
        causal: apply a causal mask (each word sees only itself and the words before it).
        seed: which random projections heads 1.. use.

    Returns:
        `tfm_edu.maps.AttentionMaps` with attentions (1, H, T, T).
    """
    if num_heads < 1 or (num_heads > 1 and d_model % num_heads):
        raise ValueError(f"num_heads must be >= 1 and divide d_model={d_model}, got {num_heads}")
    tokens = tokenize_words(sentence)
    if not tokens:
        raise ValueError(f"no words in {sentence!r}: type a sentence")
    x = embed_words(tokens, d_model)  # (T, D)
    mask = npa.causal_mask(len(tokens)) if causal else None  # (T, T) or None
    _, same_word = npa.scaled_dot_product_attention(x, x, x, mask)  # (T, T)
    maps = [same_word]
    if num_heads > 1:
        head_dim = d_model // num_heads
        rng = np.random.default_rng(seed)
        w_q = rng.standard_normal((num_heads - 1, d_model, head_dim)) / np.sqrt(d_model)
        w_k = rng.standard_normal((num_heads - 1, d_model, head_dim)) / np.sqrt(d_model)
        q, k = x @ w_q, x @ w_k  # (H-1, T, Dh) each
        _, random_heads = npa.scaled_dot_product_attention(q, k, k, mask)  # (H-1, T, T)
        maps.extend(random_heads)
    attentions = np.stack(maps)[None]  # (1, H, T, T)
    names = ["toy layer (untrained)"]
    return AttentionMaps(tokens, attentions, layer_names=names)


def shift_task(
    num_sequences: int,
    length: int,
    *,
    shift: int = 3,
    vocab_size: int = 10,
    rng: np.random.Generator | int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random symbol sequences; the target at position i is the input at position i - shift.

    For example, with shift=2, inputs [4, 1, 7, 0, 3, 9] have targets [-, -, 4, 1, 7, 0]
    (the first two have no answer: `IGNORE_INDEX`).

    Args:
        num_sequences: N >= 1.
        length: T > shift, the same for every sequence (so no padding is needed).
        shift: how far back the answer lies, >= 1.
        vocab_size: V >= 2 symbols 0..V-1, uniformly drawn (chance accuracy 1 / V).
        rng: a NumPy generator, or a seed for a fresh one (NumPy only, so chapter 1's imports
            stay free of PyTorch; `torch.from_numpy` turns the arrays into tensors).

    Returns:
        inputs (N, T) int64 and targets (N, T) int64; the first `shift` targets are
        `IGNORE_INDEX`.
    """
    for name, value, low in (
        ("num_sequences", num_sequences, 1),
        ("shift", shift, 1),
        ("vocab_size", vocab_size, 2),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(length, (int, np.integer)) or length <= shift:
        raise ValueError(f"length must be an int > shift={shift}, got {length!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    inputs = rng.integers(vocab_size, size=(num_sequences, length), dtype=np.int64)  # (N, T)
    targets = np.full_like(inputs, IGNORE_INDEX)  # (N, T)
    targets[:, shift:] = inputs[:, :-shift]  # (N, T - shift): the symbol `shift` places back
    return inputs, targets


def copy_task(
    num_sequences: int,
    length: int,
    symbols,
    *,
    min_segment: int = 4,
    rng: np.random.Generator | int = 0,
) -> np.ndarray:
    """Random sequences in which one stretch repeats right after itself.

    Each row is `length` symbols drawn uniformly from `symbols`; then a segment of L symbols
    (L uniform in min_segment..length // 2) starting at a random position p is copied to
    p + L .. p + 2L - 1. For example, with symbols "abcd" a row could read
    `d a [b c a d] [b c a d] c a`. Because L and p vary, the copy is not a fixed distance back:
    a model can only find it by what the symbols are, not where they stand.

    Args:
        num_sequences: N >= 1.
        length: T >= 2 * min_segment.
        symbols: the K >= 2 ids to draw from (e.g. a tokenizer's ids of "a".."z").
        min_segment: the shortest repeated stretch, >= 1.
        rng: a NumPy generator, or a seed for a fresh one.

    Returns:
        (N, T) int64 ids; language-model training reads it as inputs ids[:, :-1] and targets
        ids[:, 1:].
    """
    try:
        pool = np.asarray(list(symbols), dtype=np.int64)  # (K,)
    except (TypeError, ValueError):
        raise ValueError(f"symbols must be integer ids, got {symbols!r}") from None
    if pool.ndim != 1 or len(pool) < 2:
        raise ValueError(f"symbols must hold at least 2 ids, got {len(pool)}")
    if not isinstance(num_sequences, (int, np.integer)) or num_sequences < 1:
        raise ValueError(f"num_sequences must be an int >= 1, got {num_sequences!r}")
    if not isinstance(min_segment, (int, np.integer)) or min_segment < 1:
        raise ValueError(f"min_segment must be an int >= 1, got {min_segment!r}")
    if not isinstance(length, (int, np.integer)) or length < 2 * min_segment:
        raise ValueError(f"length must be an int >= 2 * min_segment = {2 * min_segment}, "
                         f"got {length!r}")  # fmt: skip
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ids = pool[rng.integers(len(pool), size=(num_sequences, length))]  # (N, T)
    segments = rng.integers(min_segment, length // 2 + 1, size=num_sequences)  # (N,) L per row
    for row, segment in zip(ids, segments, strict=True):
        start = rng.integers(0, length - 2 * segment + 1)  # p: the first copy's start
        row[start + segment : start + 2 * segment] = row[start : start + segment]
    return ids


@lru_cache(maxsize=4096)
def _trigram_vector(trigram: str, d_model: int) -> np.ndarray:
    """d_model values uniform in [-sqrt(3), sqrt(3)] (unit variance) from the trigram's digest."""
    digest = hashlib.shake_256(trigram.encode("utf-8")).digest(4 * d_model)
    integers = np.frombuffer(digest, dtype="<u4").astype(np.float64)  # (D,)
    return (integers / 2.0**32 * 2.0 - 1.0) * np.sqrt(3.0)  # (D,)


def _word_vector(word: str, d_model: int) -> np.ndarray:
    padded = f"<{word}>"
    trigrams = [padded[i : i + 3] for i in range(max(len(padded) - 2, 1))]
    total = np.sum([_trigram_vector(t, d_model) for t in trigrams], axis=0)  # (D,)
    return total * np.sqrt(d_model) / np.linalg.norm(total)  # (D,), norm sqrt(D)
