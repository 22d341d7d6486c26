"""tfm_edu.checkpoints (+ pretrained.date_translator): round trips and errors naming the file."""

from __future__ import annotations

import json

import pytest
import torch

from tfm_edu.checkpoints import (
    HISTORY_EVERY,
    CheckpointError,
    card_path,
    data_dir,
    load_card,
    load_checkpoint,
    load_history,
    load_weights,
    save_checkpoint,
    weights_path,
)
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tfm_edu.pretrained import date_translator
from tfm_edu.tokenize import CharTokenizer
from tfm_edu.train import History

TOKENIZER = CharTokenizer("abc0123 -")
CONFIG = Seq2SeqConfig.tiny(TOKENIZER.vocab_size)


def _save(tmp_path, config=CONFIG, name="model", history=None):
    torch.manual_seed(0)
    model = Seq2SeqTransformer(config).eval()
    stem = tmp_path / name
    save_checkpoint(model, stem, config, command="python -m test", metrics={"acc": 0.5},
                    history=history, extra={"tokenizer": TOKENIZER.to_dict()})  # fmt: skip
    return model, stem


def _inputs():
    source = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0]])  # (2, 4)
    target = torch.tensor([[1, 6, 7], [1, 10, 11]])  # (2, 3)
    return source, target


def test_round_trip_gives_the_same_function(tmp_path):
    model, stem = _save(tmp_path)
    card = load_card(stem)
    assert card["model"] == "Seq2SeqTransformer"
    assert card["command"] == "python -m test" and card["metrics"] == {"acc": 0.5}
    fresh = Seq2SeqTransformer(Seq2SeqConfig(**card["config"])).eval()
    assert not torch.equal(fresh.embedding.weight, model.embedding.weight)
    load_weights(fresh, stem)
    assert fresh.output.weight is fresh.embedding.weight  # the tie survives the round trip
    torch.testing.assert_close(fresh(*_inputs()).logits, model(*_inputs()).logits)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.json"):
        load_card(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="nothing.safetensors"):
        load_weights(Seq2SeqTransformer(CONFIG), tmp_path / "nothing")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_weights_are_named(tmp_path, damage):
    _, stem = _save(tmp_path)
    path = stem.with_suffix(".safetensors")
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not safetensors" * 10, "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_weights(Seq2SeqTransformer(CONFIG), stem)


def test_corrupt_card_is_named(tmp_path):
    _, stem = _save(tmp_path)
    stem.with_suffix(".json").write_text('{"config": ')
    with pytest.raises(CheckpointError, match=r"model\.json: not valid JSON"):
        load_card(stem)
    stem.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"model\.json"):
        load_card(stem)


def test_mismatched_models_are_named(tmp_path):
    _, stem = _save(tmp_path)
    wider = Seq2SeqConfig(**{**CONFIG.__dict__, "d_model": 32})
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch"):
        load_weights(Seq2SeqTransformer(wider), stem)
    deeper = Seq2SeqConfig(**{**CONFIG.__dict__, "num_encoder_layers": 2})
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing tensors"):
        load_weights(Seq2SeqTransformer(deeper), stem)
    _, deep_stem = _save(tmp_path, deeper, "deep")
    with pytest.raises(CheckpointError, match=r"deep\.safetensors.*unexpected tensors"):
        load_weights(Seq2SeqTransformer(CONFIG), deep_stem)


def test_date_translator_loads_any_seq2seq_card_and_names_bad_ones(tmp_path):
    model, stem = _save(tmp_path)
    translator = date_translator(str(stem))
    torch.testing.assert_close(translator.model(*_inputs()).logits, model(*_inputs()).logits)
    card = json.loads(stem.with_suffix(".json").read_text())
    card["config"]["colour"] = "blue"  # a field Seq2SeqConfig does not have
    stem.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"model\.json: cannot build a Seq2SeqTransformer"):
        date_translator(str(stem))
    card["config"].pop("colour")
    card["config"]["d_model"] = 32  # the card no longer fits the weights
    stem.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch"):
        date_translator(str(stem))


def test_shipped_date_translator():
    translator = date_translator()
    card = translator.card
    assert card["command"].startswith("python -m tfm_edu.train dates")
    assert card["metrics"]["test_exact_match_greedy"] >= 0.99
    assert {"test_exact_match_beam4", "seconds", "steps"} <= set(card["metrics"])
    texts = ["3rd of March 1998", "TUESDAY, MARCH 3, 1998", "03.03.1998", " 1998/03/03 "]
    assert translator.translate(texts) == ["1998-03-03"] * 4
    assert translator.translate(texts, beam_size=3) == ["1998-03-03"] * 4
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['!'\]"):
        translator.translate(["3 March 1998!"])


def test_the_recipe_writes_a_complete_card(tmp_path, capsys):
    from tfm_edu.recipes.dates import main

    stem = tmp_path / "dates"
    tiny = "--steps 4 --d-model 16 --layers 1 --num-train 600 --num-test 50 --no-progress"
    main([*tiny.split(), "--out", str(stem)])
    assert "test exact match: greedy" in capsys.readouterr().out
    card = load_card(stem)
    assert card["command"].startswith("python -m tfm_edu.train dates --steps 4")
    assert card["config"]["d_model"] == 16 and card["tokenizer"]["type"] == "CharTokenizer"
    metrics = card["metrics"]
    assert {"test_exact_match_greedy", "test_exact_match_beam4", "seconds", "steps"} <= set(metrics)
    assert metrics["steps"] == 4 and 0 <= metrics["test_exact_match_greedy"] <= 1
    history = load_history(stem)
    assert len(history.evals) >= 1 and history.steps[-1] == 3  # steps 0..3, one mean of 4
    assert len(history.loss) == len(history.grad_norm) == 1
    assert date_translator(str(stem)).translate(["3 March 1998"])[0] is not None


def test_names_with_dots_keep_them(tmp_path):
    model, _ = _save(tmp_path, name="model.v2")
    assert (tmp_path / "model.v2.safetensors").is_file() and (tmp_path / "model.v2.json").is_file()
    assert load_card(tmp_path / "model.v2")["model"] == "Seq2SeqTransformer"
    load_weights(Seq2SeqTransformer(CONFIG), tmp_path / "model.v2.safetensors")


def test_the_card_keeps_the_down_sampled_history(tmp_path):
    steps = 2 * HISTORY_EVERY + 3  # two full runs and a shorter last one
    history = History(
        steps=list(range(steps)),
        loss=[float(s % 4) for s in range(steps)],
        lr=[0.5] * steps,
        grad_norm=[float(s) for s in range(steps)],
        evals=[{"step": 9, "acc": 0.25}, {"step": 22, "acc": 0.75}],
        seconds=4.5,
    )
    _, stem = _save(tmp_path, history=history)
    again = load_history(stem)
    assert again.steps == [9, 19, 22]  # each run's last step
    # means of each run, computed here from the formula: grad_norm = step
    assert again.grad_norm == [4.5, 14.5, 21.0]
    assert again.loss == pytest.approx([sum(s % 4 for s in range(a, b)) / (b - a)
                                        for a, b in ((0, 10), (10, 20), (20, 23))])  # fmt: skip
    assert again.lr == [0.5] * 3
    assert again.evals == history.evals and again.seconds == 4.5


def test_load_history_names_a_card_without_one(tmp_path):
    _, stem = _save(tmp_path)  # saved without a history
    assert "history" not in load_card(stem)
    with pytest.raises(CheckpointError, match=r"model\.json: no readable training history"):
        load_history(stem)
    card = load_card(stem)
    card["history"] = {"steps": [1], "loss": [1.0]}  # malformed: fields missing
    card_path(stem).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"model\.json.*grad_norm"):
        load_history(stem)


def test_load_checkpoint_checks_the_kind_and_gives_an_eval_model(tmp_path):
    model, stem = _save(tmp_path)
    model.train()

    def build(card):
        return Seq2SeqTransformer(Seq2SeqConfig(**card["config"]))

    loaded, card = load_checkpoint(stem, build, kind="Seq2SeqTransformer")
    assert not loaded.training and card["command"] == "python -m test"
    torch.testing.assert_close(loaded(*_inputs()).logits, model.eval()(*_inputs()).logits)
    with pytest.raises(
        CheckpointError, match=r"model\.json: describes a 'Seq2SeqTransformer', not a Wrong"
    ):
        load_checkpoint(stem, build, kind="Wrong")


def test_card_and_weights_paths_keep_dots_and_default_to_data_dir(tmp_path):
    assert card_path(tmp_path / "model.v2") == tmp_path / "model.v2.json"
    assert weights_path(tmp_path / "model.v2") == tmp_path / "model.v2.safetensors"
    assert card_path("model.v2") == data_dir() / "model.v2.json"  # a bare name lives in data/
    assert weights_path("digits_vit.safetensors") == data_dir() / "digits_vit.safetensors"


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TFM_EDU_DATA", str(tmp_path))
    assert data_dir() == tmp_path and card_path("x") == tmp_path / "x.json"


@pytest.mark.parametrize(
    "name",
    ["date_translator", "bert_tiny_mlm", "bert_tiny_sentiment", "bert_tiny_sentiment_scratch",
     "digits_vit"],
)  # fmt: skip
def test_every_shipped_card_has_a_readable_history(name):
    """Chapters 5, 6 and 8 plot these curves with `plot_history(load_history(name))`.

    The shipped cards predate `History.to_dict` (data/README.md): a series they never recorded
    (gradient norms, the ViT's learning rate) is stored empty, every other one once per entry.
    """
    from tfm_edu.viz import plot_history

    history = load_history(name)
    assert len(history.steps) == len(history.loss) > 0
    assert history.steps == sorted(set(history.steps))  # increasing, no step twice
    for series in (history.lr, history.grad_norm):
        assert len(series) in (0, len(history.steps))
    assert history.seconds > 0
    assert plot_history(history).axes
