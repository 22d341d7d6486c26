"""`python -m tfm_edu.generate`: it prints only the continuation, exactly what
`tfm_edu.decode.generate` writes for the same seed, and every bad argument gets one line of
error and exit status 2. Most tests run a tiny GPT saved into a temporary folder, in-process;
two run the command as a user does, in a subprocess, one of them on the shipped checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tfm_edu.checkpoints import save_checkpoint
from tfm_edu.decode import generate
from tfm_edu.device import cpu_threads
from tfm_edu.generate import PROG, main
from tfm_edu.models.gpt import GPT, GPTConfig
from tfm_edu.pretrained import char_gpt
from tfm_edu.tokenize import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
ERROR = f"{PROG}: error: "


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """A tiny, untrained GPT over a small alphabet, saved as a checkpoint; returns its path."""
    tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,:()\n", unknown="unk")
    config = GPTConfig.tiny(vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():  # sharper than at init, so that greedy and sampled text differ
        for parameter in model.parameters():
            parameter.mul_(4.0 if parameter.dim() > 1 else 1.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_gpt"
    save_checkpoint(model, path, config, command="tests", extra={"tokenizer": tokenizer.to_dict()})
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """main(argv) -> (exit status, stdout, stderr lines)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def expected(checkpoint: str, prompt: str, tokens: int, seed: int = 0, **options) -> str:
    """What decode.generate writes after `prompt`, decoded: the CLI must print exactly this."""
    model, tokenizer = char_gpt(checkpoint)
    ids = torch.tensor([tokenizer.encode(prompt, unknown="unk-quiet")])  # (1, T0)
    with cpu_threads(1):  # as the command runs by default
        out = generate(
            model, ids, tokens, generator=torch.Generator().manual_seed(seed), **options
        )  # (1, T0 + tokens)
    return tokenizer.decode(out[0, ids.shape[1] :].tolist())


# ------------------------------------------------------------------ what it prints


def test_prints_only_the_continuation_that_generate_writes(capsys, tiny):
    status, out, err = run(capsys, "hello world", "--tokens", "30", "--seed", "3",
                           "--checkpoint", tiny)  # fmt: skip
    assert status == 0
    text = expected(tiny, "hello world", 30, seed=3)
    assert text and out == text + "\n"
    assert len(err) == 1 and "30 tokens in" in err[0] and "tokens/s" in err[0]
    assert "KV cache on" in err[0]


def test_filtered_sampling_matches_generate(capsys, tiny):
    argv = ["abc", "--tokens", "25", "--seed", "1", "--checkpoint", tiny]
    _, out, _ = run(capsys, *argv, "--temperature", "0.7", "--top-k", "5", "--top-p", "0.9")
    assert out == expected(tiny, "abc", 25, seed=1, temperature=0.7, top_k=5, top_p=0.9) + "\n"
    _, plain, _ = run(capsys, *argv)
    assert plain != out  # the filters changed the text


def test_greedy_is_temperature_zero_and_ignores_the_seed(capsys, tiny):
    _, greedy, _ = run(capsys, "abc", "--tokens", "20", "--greedy", "--checkpoint", tiny)
    _, cold, _ = run(capsys, "abc", "--tokens", "20", "--temperature", "0", "--checkpoint", tiny)
    _, other_seed, _ = run(capsys, "abc", "--tokens", "20", "--greedy", "--seed", "9",
                           "--checkpoint", tiny)  # fmt: skip
    assert greedy == cold == other_seed == expected(tiny, "abc", 20, greedy=True) + "\n"


@pytest.mark.parametrize("choice", [["--greedy"], ["--top-k", "8"], []], ids=str)
def test_no_cache_writes_the_same_text(capsys, tiny, choice):
    argv = ["the cat", "--tokens", "40", "--seed", "2", "--checkpoint", tiny, *choice]
    _, cached, cached_err = run(capsys, *argv)
    _, uncached, uncached_err = run(capsys, *argv, "--no-cache")
    assert cached == uncached and len(cached) > 1
    assert "KV cache on" in cached_err[-1] and "KV cache off" in uncached_err[-1]


def test_each_flag_reaches_generate(capsys, tiny, monkeypatch):
    import tfm_edu.generate as cli

    calls = []

    def spy(model, prompt_ids, max_new_tokens, **options):
        calls.append((prompt_ids.shape, max_new_tokens, options))
        return generate(model, prompt_ids, max_new_tokens, **options)

    monkeypatch.setattr(cli, "generate", spy)
    run(capsys, "abcd", "--tokens", "3", "--no-cache", "--top-k", "4", "--top-p", "0.5",
        "--temperature", "2", "--checkpoint", tiny)  # fmt: skip
    run(capsys, "abcd", "--tokens", "3", "--greedy", "--checkpoint", tiny)
    (shape, tokens, options), (_, _, greedy) = calls
    assert shape == (1, 4) and tokens == 3
    assert options["use_cache"] is False and greedy["use_cache"] is True
    assert (options["top_k"], options["top_p"], options["temperature"]) == (4, 0.5, 2.0)
    assert options["greedy"] is False and greedy["greedy"] is True


def test_same_seed_same_text_other_seed_other_text(capsys, tiny):
    argv = ["abc", "--tokens", "40", "--checkpoint", tiny]
    first = run(capsys, *argv, "--seed", "5")[1]
    again = run(capsys, *argv, "--seed", "5")[1]
    other = run(capsys, *argv, "--seed", "6")[1]
    assert first == again
    assert first != other


def test_zero_tokens_prints_an_empty_line(capsys, tiny):
    assert run(capsys, "abc", "--tokens", "0", "--checkpoint", tiny)[:2] == (0, "\n")


def test_a_whitespace_only_prompt_is_text_like_any_other(capsys, tiny):
    status, out, _ = run(capsys, "\n", "--tokens", "10", "--checkpoint", tiny)
    assert status == 0 and out == expected(tiny, "\n", 10) + "\n"


def test_unknown_characters_get_a_one_line_notice_and_still_work(capsys, tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning either
        status, out, err = run(capsys, "héllo wörld", "--tokens", "15", "--checkpoint", tiny)
    assert status == 0
    assert out == expected(tiny, "héllo wörld", 15) + "\n"
    notes = [line for line in err if "[UNK]" in line]
    assert len(notes) == 1 and "'é'" in notes[0] and "'ö'" in notes[0]
    assert len(err) == 2  # the notice and the timing line, nothing else
    assert not any("Warning" in line for line in err)


def test_a_prompt_longer_than_the_block_size_is_cropped_with_one_note(capsys, tiny):
    prompt = "abcdefghij" * 5  # 50 characters; the tiny model's block is 32
    status, out, err = run(capsys, prompt, "--tokens", "10", "--checkpoint", tiny)
    assert status == 0 and out == expected(tiny, prompt, 10) + "\n"
    assert len(err) == 2 and "block size (32)" in err[0]


# ------------------------------------------------------------------ bad arguments: one line, 2


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["abc", "--tokens", "-1"], "--tokens"),
        (["abc", "--tokens", "2.5"], "--tokens"),
        (["abc", "--tokens", "many"], "--tokens"),
        (["abc", "--top-p", "0"], "--top-p"),
        (["abc", "--top-p", "1.5"], "--top-p"),
        (["abc", "--top-p", "nan"], "--top-p"),
        (["abc", "--top-k", "0"], "--top-k"),
        (["abc", "--temperature", "-0.5"], "--temperature"),
        (["abc", "--temperature", "inf"], "--temperature"),
        (["abc", "--temperature", "nan"], "--temperature"),
        (["abc", "--seed", "-1"], "--seed"),
        ([""], "prompt is empty"),
        ([], "prompt"),
        (["abc", "--no-such-flag"], "--no-such-flag"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_arguments_get_one_line_and_status_2(capsys, argv, named):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err) == 1, err
    assert err[0].startswith(ERROR) and named in err[0]


def test_a_missing_checkpoint_is_named(capsys, tmp_path):
    status, out, err = run(capsys, "abc", "--checkpoint", str(tmp_path / "nowhere"))
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith(ERROR)
    assert str(tmp_path / "nowhere.json") in err[0] and "not found" in err[0]


def test_a_corrupt_checkpoint_is_named(capsys, tiny, tmp_path):
    broken = tmp_path / "broken"
    broken.with_suffix(".json").write_text(Path(tiny + ".json").read_text())
    broken.with_suffix(".safetensors").write_bytes(b"not safetensors at all")
    status, _, err = run(capsys, "abc", "--checkpoint", str(broken))
    assert status == 2 and len(err) == 1 and err[0].startswith(ERROR)
    assert "broken.safetensors" in err[0]


def test_help_exits_zero(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "--top-p" in out and "--no-cache" in out


# ------------------------------------------------------------------ as a user runs it


def _command(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "tfm_edu.generate", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120,
    )  # fmt: skip


def test_the_shipped_model_from_the_command_line():
    done = _command("def ", "--tokens", "20", "--seed", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected("char_gpt", "def ", 20, seed=0) + "\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "20 tokens in" in lines[0], done.stderr


def test_a_bad_argument_from_the_command_line():
    done = _command("def ", "--top-p", "2")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"{ERROR}argument --top-p: must lie in (0, 1], got '2'"]
