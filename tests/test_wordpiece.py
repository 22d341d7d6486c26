"""WordPiece: basic tokenizer + greedy longest-match, on hand-made vocabularies.

(The comparison with Hugging Face `tokenizers` on the real MiniLM vocabulary lives in
test_minilm_reference.py.)
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tfm_edu.tokenize import WordPiece, split_word

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["un", "##aff", "##able", "##a", "##ff", "a", "the", "cafe", "café", ",", "!", "-", "."]
WORDS += ["东", "京", "hello", "world", "hug", "##s", "##ging", "face", "cat", "sat", "x", "##x"]


@pytest.fixture
def tokenizer() -> WordPiece:
    return WordPiece(SPECIALS + WORDS)


def test_greedy_longest_match_first(tokenizer):
    # "unaffable" -> un + ##aff + ##able: at each step the longest piece in the vocabulary wins
    # (##aff beats ##a, then ##able).
    assert tokenizer.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tokenizer.tokenize("hugging hugs") == ["hug", "##ging", "hug", "##s"]


def test_uncoverable_word_is_one_unk(tokenizer):
    # "hugz": hug is found, but no piece covers "z": the *whole word* becomes [UNK].
    assert tokenizer.tokenize("hugz cat") == ["[UNK]", "cat"]


def test_words_longer_than_the_limit_are_unk():
    tokenizer = WordPiece(SPECIALS + ["x", "##x"], max_chars_per_word=5)
    assert tokenizer.tokenize("xxxxx xxxxxx") == ["x", "##x", "##x", "##x", "##x", "[UNK]"]


def test_basic_tokenizer_splits_punctuation_cjk_and_whitespace(tokenizer):
    assert tokenizer.tokenize("Hello,world!") == ["hello", ",", "world", "!"]
    assert tokenizer.tokenize("东京") == ["东", "京"]  # each ideograph is a word
    assert tokenizer.tokenize(" the\tcat\n\u3000sat ") == ["the", "cat", "sat"]
    assert tokenizer.tokenize("a-a") == ["a", "-", "a"]


def test_accents_and_case(tokenizer):
    assert tokenizer.tokenize("CAFÉ Café cafe\u0301") == ["cafe", "cafe", "cafe"]
    cased = WordPiece(SPECIALS + WORDS, lowercase=False)  # cased models keep both
    assert cased.tokenize("café Cafe") == ["café", "[UNK]"]


def test_control_characters_are_dropped(tokenizer):
    assert tokenizer.tokenize("c\x00a\u200bt\x07") == ["cat"]


def test_offsets_point_at_the_original_characters(tokenizer):
    text = "Hello, CAFÉ unaffable 东京"
    encoding = tokenizer.encoding(text)
    pieces = [text[start:end] for start, end in encoding.offsets]
    assert encoding.tokens == [
        "[CLS]",
        "hello",
        ",",
        "cafe",
        "un",
        "##aff",
        "##able",
        "东",
        "京",
        "[SEP]",
    ]
    assert pieces == ["", "Hello", ",", "CAFÉ", "un", "aff", "able", "东", "京", ""]


def test_special_tokens_in_the_text_stay_whole(tokenizer):
    encoding = tokenizer.encoding("the [MASK] sat")
    assert encoding.tokens == ["[CLS]", "the", "[MASK]", "sat", "[SEP]"]
    assert encoding.offsets[2] == (4, 10)
    assert tokenizer.tokenize("[mask]") == ["[UNK]", "[UNK]", "[UNK]"]  # only the exact spelling


def test_pair_encoding_has_two_segments(tokenizer):
    encoding = tokenizer.encoding("the cat", "hello world")
    assert encoding.tokens == ["[CLS]", "the", "cat", "[SEP]", "hello", "world", "[SEP]"]
    assert encoding.type_ids == [0, 0, 0, 0, 1, 1, 1]
    ids = [tokenizer.stoi[t] for t in ("[CLS]", "the", "cat", "[SEP]")]
    assert (
        tokenizer.encode("the cat") == ids == [2, 5 + WORDS.index("the"), 5 + WORDS.index("cat"), 3]
    )


def test_truncation_drops_from_the_longer_text_first(tokenizer):
    encoding = tokenizer.encoding("the cat sat", "hello", max_length=6)
    assert encoding.tokens == ["[CLS]", "the", "cat", "[SEP]", "hello", "[SEP]"]
    assert encoding.truncated
    assert not tokenizer.encoding("the cat", max_length=4).truncated
    with pytest.raises(ValueError, match="max_length"):
        tokenizer.encoding("the", "cat", max_length=3)


def test_batch_encode_pads_and_masks(tokenizer):
    batch = tokenizer.batch_encode(["the cat sat", "hello"])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["input_ids"][1, 3:].tolist() == [tokenizer.pad_id] * 2
    assert batch["attention_mask"].tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch["attention_mask"].dtype == torch.bool
    with pytest.raises(ValueError, match="list of texts"):
        tokenizer.batch_encode("the cat")


def test_decode_glues_pieces(tokenizer):
    ids = tokenizer.encode("Unaffable hugs, hello!")
    assert tokenizer.decode(ids) == "unaffable hugs , hello !"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([10_000])


def test_vocabulary_file_and_errors(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    tokenizer = WordPiece.from_file(path)
    assert tokenizer.vocab_size == len(SPECIALS + WORDS)
    assert tokenizer.mask_id == 4 and tokenizer.cls_id == 2
    with pytest.raises(FileNotFoundError, match="vocab"):
        WordPiece.from_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        WordPiece(SPECIALS + ["a", "a"])
    with pytest.raises(ValueError, match="string"):
        tokenizer.tokenize(None)


def test_round_trip_through_a_dict(tokenizer):
    again = WordPiece.from_dict(tokenizer.to_dict())
    assert again.encoding("Café, unaffable!") == tokenizer.encoding("Café, unaffable!")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_ordered_offsets_inside_the_text(text):
    tokenizer = WordPiece(SPECIALS + WORDS)
    encoding = tokenizer.encoding(text)
    spans = encoding.offsets[1:-1]
    assert all(0 <= start < end <= len(text) for start, end in spans)
    assert [start for start, _ in spans] == sorted(start for start, _ in spans)
    assert len(encoding.ids) == len(encoding.tokens) == len(encoding.type_ids)


@pytest.mark.parametrize(
    ("word", "pieces"),
    [
        ("unaffable", ["un", "##aff", "##able"]),  # ##aff beats ##a: the longest piece wins
        ("unaff", ["un", "##aff"]),
        ("hugging", ["hug", "##ging"]),
        ("hugs", ["hug", "##s"]),
        ("xxx", ["x", "##x", "##x"]),
        ("the", ["the"]),
        ("hugz", ["[UNK]"]),  # "z" cannot be covered: the whole word is unknown
        ("aff", ["a", "##ff"]),  # "aff" is only in the vocabulary as a continuation, "##aff"
        ("ff", ["[UNK]"]),  # and "##ff" cannot start a word
    ],
)
def test_split_word_is_the_greedy_longest_match(tokenizer, word, pieces):
    vocab = set(SPECIALS + WORDS)
    assert split_word(word, vocab) == pieces  # the hand-worked answer
    assert tokenizer.tokenize(word) == pieces  # and the tokenizer agrees on a single word


def test_split_word_gives_up_on_words_longer_than_max_chars():
    vocab = {"x", "##x"}
    assert split_word("x" * 5, vocab, max_chars=5) == ["x"] + ["##x"] * 4
    assert split_word("x" * 6, vocab, max_chars=5) == ["[UNK]"]
    assert split_word("x" * 101, vocab) == ["[UNK]"]  # the default limit is 100
    assert split_word("", vocab) == []
