"""The toy embedding is deterministic, knows spelling, and gives valid attention maps."""

import numpy as np
import pytest

from tfm_edu.data.toy import embed_words, tokenize_words, toy_attention


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_tokenize_words_splits_punctuation_and_keeps_contractions():
    assert tokenize_words("Don't stop, cat!") == ["Don't", "stop", ",", "cat", "!"]
    assert tokenize_words("   ") == []


def test_embedding_is_deterministic_and_pinned():
    first = embed_words(["cat", "dog"], d_model=8)
    assert first.shape == (2, 8) and first.dtype == np.float64
    np.testing.assert_array_equal(first, embed_words(["cat", "dog"], d_model=8))
    # Pinned values: the vectors come from SHAKE-256 digests, the same on every machine.
    pinned = [[-0.909999366006, 0.191378488583, 2.183823868556],
              [-0.255377470798, 0.157845459482, 0.828156034374]]  # fmt: skip
    np.testing.assert_allclose(first[:, :3], pinned, atol=1e-11)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), np.sqrt(8))


def test_shared_spelling_means_similar_vectors():
    cat, cats, dog, upper = embed_words(["cat", "cats", "dog", "CAT"], d_model=32)
    assert _cosine(cat, cats) > 0.4 > abs(_cosine(cat, dog))
    np.testing.assert_array_equal(cat, upper)  # case is ignored


def test_toy_attention_rows_sum_to_one_and_head_zero_matches_words():
    maps = toy_attention("The cat saw the cats.", num_heads=4)
    assert maps.query_tokens == ["The", "cat", "saw", "the", "cats", "."]
    assert maps.attentions.shape == (1, 4, 6, 6)
    np.testing.assert_allclose(maps.attentions.sum(-1), 1.0)
    same_word = maps.attentions[0, 0]
    np.testing.assert_allclose(same_word[0], same_word[3])  # "The" and "the": same row
    assert same_word[1, 4] > same_word[1, 2]  # "cat" looks at "cats" more than at "saw"


def test_toy_attention_causal_and_errors():
    maps = toy_attention("a b c d", causal=True)
    assert np.all(np.triu(maps.attentions[0, :], k=1) == 0)
    with pytest.raises(ValueError, match="no words"):
        toy_attention("   ")
    with pytest.raises(ValueError, match="divide"):
        toy_attention("a b", num_heads=3, d_model=32)
    with pytest.raises(ValueError, match="list of strings"):
        embed_words("cat")
