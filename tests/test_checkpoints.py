"""tfm_edu.checkpoints (+ pretrained.date_translator): round trips and errors naming the file."""

from __future__ import annotations

import json

import pytest
import torch

from tfm_edu.checkpoints import CheckpointError, load_card, load_weights, save_checkpoint
from tfm_edu.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tfm_edu.pretrained import date_translator
from tfm_edu.tokenize import CharTokenizer

TOKENIZER = CharTokenizer("abc0123 -")
CONFIG = Seq2SeqConfig.tiny(TOKENIZER.vocab_size)


def _save(tmp_path, config=CONFIG, name="model"):
    torch.manual_seed(0)
    model = Seq2SeqTransformer(config).eval()
    stem = tmp_path / name
    save_checkpoint(model, stem, config, command="python -m test", metrics={"acc": 0.5},
                    extra={"tokenizer": TOKENIZER.to_dict()})  # fmt: skip
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
    with pytest.raises(CheckpointError, match=r"model\.json: not a Seq2SeqTransformer card"):
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
    from tfm_edu.recipes.dates import load_history, main

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
    assert len(load_history(card).evals) >= 1
    assert date_translator(str(stem)).translate(["3 March 1998"])[0] is not None


def test_names_with_dots_keep_them(tmp_path):
    model, _ = _save(tmp_path, name="model.v2")
    assert (tmp_path / "model.v2.safetensors").is_file() and (tmp_path / "model.v2.json").is_file()
    assert load_card(tmp_path / "model.v2")["model"] == "Seq2SeqTransformer"
    load_weights(Seq2SeqTransformer(CONFIG), tmp_path / "model.v2.safetensors")
