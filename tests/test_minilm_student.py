"""Chapter 10's language half: sentence embeddings, the help-text sentences, the similarity
measures, the MiniLM student (its sizes, its loader, its card) and its recipe and benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tfm_edu import bench
from tfm_edu.analysis.similarity import (
    neighbour_agreement,
    pairwise_cosine,
    similarity_spearman,
    spearman,
)
from tfm_edu.checkpoints import CheckpointError, load_card
from tfm_edu.data import corpus
from tfm_edu.data.sentences import tokenizer as grammar_tokenizer
from tfm_edu.models.bert import BERT, BERTConfig, sentence_embeddings
from tfm_edu.pretrained import MINILM_STUDENT, load_minilm, minilm_student
from tfm_edu.recipes import distill_minilm

DATA = Path(__file__).resolve().parent.parent / "data"
SENTENCES = [
    "the movie was good .",
    "the plot of the films is not very boring and the actor was clever .",
    "the song is dull .",
    "the scenes were really wonderful but the ending was terrible .",
    "the story is funny .",
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def student():
    return minilm_student()


# --- sentence_embeddings -------------------------------------------------------------------------


def test_sentence_embeddings_mean_pool_the_real_tokens_of_padded_batches_in_input_order():
    torch.manual_seed(0)
    model, tokenizer = BERT(BERTConfig()).train(), grammar_tokenizer()
    vectors = sentence_embeddings(model, tokenizer, SENTENCES, batch_size=2)
    assert vectors.shape == (len(SENTENCES), model.config.d_model)
    assert model.training  # its mode is restored
    model.eval()
    for row, sentence in zip(vectors, SENTENCES, strict=True):
        ids = torch.tensor([tokenizer.encode(sentence)])  # (1, T): no padding at all
        torch.testing.assert_close(row, model(ids).last_hidden_state[0].mean(0))
    reordered = sentence_embeddings(model, tokenizer, SENTENCES[::-1], batch_size=3)
    torch.testing.assert_close(reordered, vectors.flip(0))


@pytest.mark.parametrize("bad", [[], "one sentence", ["fine", 3]])
def test_sentence_embeddings_refuse_what_is_not_a_list_of_strings(bad):
    with pytest.raises(ValueError, match="string"):
        sentence_embeddings(BERT(BERTConfig()), grammar_tokenizer(), bad)


# --- the sentences of the help texts -------------------------------------------------------------

TEXT = "\n\n".join(
    [
        "Title\n=====",
        "A function definition is an executable statement.  Its execution binds\n"
        "the function name in the current local namespace. [4] See also PEP 8.",
        "   def func(): pass\n   func = f1(arg)(f2(func))",
        '  * The "global" statement applies to the whole of the current code\n'
        "    block, as the text says.",
        "+-------+------+\n| a    | b    |\n+-------+------+",
        '"x[i] = y[j] if a else b(c)" is an example of code in a sentence here.',
        "A function definition is an executable statement.",
        "Straddling paragraph with enough words to keep it here. And another one to keep.",
        "The last paragraph holds a sentence that is held out from training.",
    ]
)


def test_sentences_keep_english_prose_and_drop_code_tables_and_repeats():
    assert corpus.sentences(TEXT) == [
        "A function definition is an executable statement.",
        "Its execution binds the function name in the current local namespace.",
        'The "global" statement applies to the whole of the current code block, as the text says.',
        "Straddling paragraph with enough words to keep it here.",
        "And another one to keep.",
        "The last paragraph holds a sentence that is held out from training.",
    ]


def test_the_split_follows_the_characters_cut_and_drops_the_straddling_paragraph():
    cut = TEXT.index("Straddling") + 10  # inside the straddling paragraph
    train, held_out = corpus.sentence_split(TEXT, train_fraction=cut / len(TEXT))
    assert "Straddling paragraph with enough words to keep it here." not in train + held_out
    assert held_out == ["The last paragraph holds a sentence that is held out from training."]
    assert train == corpus.sentences(TEXT)[:3]


def test_the_help_texts_give_disjoint_deterministic_splits():
    train, held_out = corpus.sentence_split()
    assert len(train) > 1000 and len(held_out) > 50
    assert not set(train) & set(held_out)
    assert (train, held_out) == corpus.sentence_split()


def test_mix_grammar_inserts_grammar_sentences_and_keeps_the_order_of_the_rest():
    texts = [f"Sentence number {i} of the help texts." for i in range(20)]
    mixed = corpus.mix_grammar(texts, 7, seed=1)
    assert len(mixed) == 27 and [t for t in mixed if t in texts] == texts
    assert all(t.endswith(" .") and t.startswith("the ") for t in mixed if t not in texts)
    assert mixed == corpus.mix_grammar(texts, 7, seed=1)
    assert corpus.mix_grammar(texts, 0) == texts


# --- the sentences of the standard library's docstrings ------------------------------------------


def _write_sources(root):
    (root / "pkg").mkdir()
    (root / "test").mkdir()
    (root / "a.py").write_text(
        '"""The first module explains what it is for.\n\nIt has two paragraphs of prose."""\n\n'
        "class Thing:\n"
        '    """A class whose docstring is one sentence long.\n\n'
        '        x = Thing()  # indented code is dropped\n    """\n\n'
        "    def method(self):\n"
        '        """Return the value that the method computes here."""\n'
    )
    (root / "pkg" / "b.py").write_text(
        '"""The first module explains what it is for.  A second module adds one more."""\n'
    )
    (root / "test" / "c.py").write_text('"""Tests are never read by the reader here."""\n')
    (root / "broken.py").write_text('def (:\n    """This file does not parse at all."""\n')
    (root / "notes.txt").write_text("Text files are not Python sources at all.")


def test_docstring_sentences_read_sorted_modules_skip_tests_code_and_repeats(tmp_path):
    _write_sources(tmp_path)
    assert corpus.docstring_sentences(tmp_path) == {
        "a.py": [
            "The first module explains what it is for.",
            "It has two paragraphs of prose.",
            "A class whose docstring is one sentence long.",
            "Return the value that the method computes here.",
        ],
        "pkg/b.py": ["A second module adds one more."],
    }


def test_the_docstring_split_keeps_each_module_in_one_part():
    modules = {f"mod{i}.py": [f"Sentence {j} of module number {i}." for j in range(3)]
               for i in range(200)}  # fmt: skip
    train, validation, held_out = corpus.docstring_split(modules)
    for name, kept in modules.items():
        bucket = corpus.module_bucket(name)
        part = held_out if bucket < 10 else validation if bucket < 15 else train
        assert all(sentence in part for sentence in kept)
    assert len(train) + len(validation) + len(held_out) == 600
    assert 0 < len(held_out) < len(train) and 0 < len(validation) < len(train)
    assert corpus.module_bucket("json/decoder.py") == corpus.module_bucket("json/decoder.py")
    assert len({corpus.module_bucket(name) for name in modules}) > 80  # spread over 0..99


def test_distill_sentences_are_disjoint_capped_and_deterministic():
    data = corpus.distill_sentences(max_train=3000, max_validation=100, max_held_out=300)
    assert len(data.train) == 3000 and len(data.validation) == 100 and len(data.held_out) == 300
    train, validation, held_out = set(data.train), set(data.validation), set(data.held_out)
    assert not train & held_out and not validation & held_out and not train & validation
    assert data.held_out[:94] == corpus.sentence_split()[1]  # the help texts' held-out first
    assert data.counts["docstrings"]["held_out"] == 300 - 94
    again = corpus.distill_sentences(max_train=3000, max_validation=100, max_held_out=300)
    assert again == data and len(data.sha256) == 64


def test_distill_sentences_fall_back_to_the_help_texts_without_sources(tmp_path, capsys):
    data = corpus.distill_sentences(root=tmp_path)
    assert "help texts only" in capsys.readouterr().out
    assert data.counts["docstrings"]["modules"] == 0
    assert data.train + data.validation == corpus.sentence_split()[0]
    assert data.held_out == corpus.sentence_split()[1]


# --- similarity measures -------------------------------------------------------------------------


def test_spearman_by_hand_with_ties():
    # ranks of x: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4 -> Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
    assert spearman([1.0, 2.0, 2.0, 5.0], [10, 20, 30, 40]) == pytest.approx(4.5 / np.sqrt(22.5))
    assert spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert spearman([3, 1, 2], [-3, -1, -2]) == pytest.approx(-1.0)


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 50), rng.normal(size=50)  # many ties in x
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_pairwise_cosine_and_similarity_spearman_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    cosine = pairwise_cosine(a)
    torch.testing.assert_close(cosine[0, 2], torch.tensor(2**-0.5, dtype=torch.float64))
    torch.testing.assert_close(cosine.diagonal(), torch.ones(3, dtype=torch.float64))
    # pairs (0,1), (0,2), (1,2) have cosines 0, .71, .71; a wider copy ranks them alike
    assert similarity_spearman(a, torch.cat([a, a], dim=1)) == pytest.approx(1.0)
    b = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])  # cosines .99, 0, .1: (0,1) first
    assert similarity_spearman(a, b) == pytest.approx(spearman([0, 0.71, 0.71], [0.99, 0, 0.1]))
    with pytest.raises(ValueError, match="same N"):
        similarity_spearman(a, b[:2])


def test_neighbour_agreement_by_hand():
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])  # A-B and C-D close
    assert neighbour_agreement(teacher, teacher, k=1) == 1.0
    crossed = teacher[[0, 2, 1, 3]]  # now A-C and B-D are the close pairs: no nearest agrees
    assert neighbour_agreement(crossed, teacher, k=1) == 0.0
    # C = (0, 1) is now nearer B (cos .0995) than D (cos .05): 3 of 4 nearest agree
    moved = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.05]])
    assert neighbour_agreement(moved, teacher, k=1) == 0.75
    # k = 2, teacher vs moved: A {B, D} vs {B, C}, B {A, D} vs {A, C}, C {D, B} vs {B, D},
    # D {C, B} vs {C, B}: (1 + 1 + 2 + 2) / 8 shared
    assert neighbour_agreement(moved, teacher, k=2) == pytest.approx(0.75)


# --- the student: sizes, loader, card ------------------------------------------------------------


def test_the_student_has_under_a_quarter_of_minilms_layer_weights():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    student, teacher = BERT(BERTConfig.minilm_student()), BERT(BERTConfig.minilm_l6())
    assert count(teacher.encoder) == 10_646_784
    assert count(student.encoder) == 1_974_016  # 18.5 %
    assert count(student.encoder) <= count(teacher.encoder) / 4
    assert count(student) == 13_892_608  # with the 11,918,592 shared embedding weights
    assert (DATA / f"{MINILM_STUDENT}.safetensors").stat().st_size <= 8_000_000


def test_the_loader_shares_the_wheels_embeddings_and_loads_our_layers(minilm, student):
    from safetensors.torch import load_file

    teacher, teacher_tokenizer = minilm
    model, tokenizer = student
    assert not model.training and tokenizer.stoi == teacher_tokenizer.stoi
    for name, tensor in teacher.embeddings.state_dict().items():
        torch.testing.assert_close(model.embeddings.state_dict()[name], tensor, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.embeddings.parameters())
    stored = load_file(str(DATA / f"{MINILM_STUDENT}.safetensors"))
    assert stored.keys() == model.encoder.state_dict().keys()  # only the layers are ours
    for name, tensor in stored.items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor, rtol=0, atol=0)


def test_the_shipped_student_reproduces_its_cards_numbers(minilm, student):
    card = load_card(MINILM_STUDENT)
    data = corpus.distill_sentences(max_train=card["training"]["train_sentences"])
    held_out = data.held_out
    assert card["metrics"]["held_out_sentences"] == len(held_out)
    assert card["data_sha256"] == data.sha256 and card["metrics"]["sentences"] == data.counts
    teacher_vectors = sentence_embeddings(*minilm, held_out)
    measured = distill_minilm.evaluate_student(*student, held_out, teacher_vectors)
    assert measured["spearman"] == pytest.approx(card["metrics"]["spearman"], abs=2e-4)
    assert measured["top5_agreement"] == pytest.approx(card["metrics"]["top5_agreement"], abs=2e-3)
    seen = distill_minilm.seen_sentences(data.train)  # the shipped run mixed in no grammar
    assert card["training"]["grammar"] == 0 and card["metrics"]["seen_sentences"] == len(seen)
    trained_on = distill_minilm.evaluate_student(*student, seen, sentence_embeddings(*minilm, seen))
    shipped = card["metrics"]["arms"][card["metrics"]["arm"]]
    assert trained_on["spearman"] == pytest.approx(shipped["train_spearman"], abs=2e-4)
    assert trained_on["spearman"] > measured["spearman"]  # it copies what it read best
    assert card["metrics"]["student"]["non_embedding_parameters"] == 1_974_016


def test_a_corrupt_or_unfitting_card_is_refused_with_its_name(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(DATA / f"{MINILM_STUDENT}{suffix}", tmp_path / f"copy{suffix}")
    (tmp_path / "copy.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"copy\.json"):
        minilm_student(tmp_path / "copy")
    card = json.loads((DATA / f"{MINILM_STUDENT}.json").read_text())
    card["config"]["d_model"] = 256  # cannot share MiniLM's 384-wide embeddings
    (tmp_path / "copy.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"copy\.json.*d_model"):
        minilm_student(tmp_path / "copy")
    (tmp_path / "copy.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "copy.json").write_text((DATA / f"{MINILM_STUDENT}.json").read_text())
    with pytest.raises(CheckpointError, match=r"copy\.safetensors"):
        minilm_student(tmp_path / "copy")


# --- recipe and benchmark ------------------------------------------------------------------------


def test_the_recipe_runs_end_to_end_on_a_few_sentences(tmp_path, capsys):
    out = tmp_path / "student"
    arms = ["teacher_init", "random_init+attention"]
    metrics = distill_minilm.main(
        ["--steps", "2", "--sentences", "32", "--repeats", "1", "--no-progress",
         "--out", str(out), "--arms", *arms]
    )  # fmt: skip
    assert set(metrics["arms"]) == set(arms) and metrics["arm"] in arms
    assert all(-1 <= row["train_spearman"] <= 1 for row in metrics["arms"].values())
    assert "wrote" in capsys.readouterr().out
    model, _ = minilm_student(out)
    assert model.config == BERTConfig.minilm_student()
    assert load_card(out)["command"].startswith("python -m tfm_edu.train distill-minilm")


def test_teacher_init_copies_whole_attention_and_the_strongest_hidden_units(minilm):
    teacher = minilm[0]
    scores = torch.rand(6, 1536, generator=torch.Generator().manual_seed(0))
    model = distill_minilm.init_from_teacher(BERT(BERTConfig.minilm_student()), teacher, scores)
    for target, source in zip(model.encoder.layers, (0, 5), strict=True):
        origin = teacher.encoder.layers[source]
        torch.testing.assert_close(target.self_attn.q_proj.weight, origin.self_attn.q_proj.weight)
        strength = scores[source] * origin.feed_forward.linear2.weight.norm(dim=0)
        keep = strength.topk(512).indices.sort().values
        torch.testing.assert_close(
            target.feed_forward.linear1.weight, origin.feed_forward.linear1.weight[keep]
        )


def test_bench_student_quick_times_both_models(capsys):
    rows = bench.bench_student(["--quick"])
    assert [row["model"] for row in rows] == ["MiniLM", "student"]
    assert float(rows[1]["speed-up"].rstrip("x")) > 1
    assert "faster" in capsys.readouterr().out
