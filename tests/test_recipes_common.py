"""What every recipe's command line shares (tfm_edu.recipes.common) and the entry point
`python -m tfm_edu.train <recipe>` (tfm_edu.train.__main__)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfm_edu.recipes.common import recipe_command, recipe_parser, run_recipe
from tfm_edu.train.__main__ import RECIPES, main


def test_the_card_command_drops_only_no_progress():
    assert (
        recipe_command("dates", ["--steps", "5", "--no-progress"])
        == "python -m tfm_edu.train dates --steps 5"
    )
    assert recipe_command("vit-digits", None) == "python -m tfm_edu.train vit-digits"
    quoted = recipe_command("dates", ["--out", "my model", "--seed", "3"])
    assert quoted == "python -m tfm_edu.train dates --out 'my model' --seed 3"


def test_the_common_flags_and_their_defaults():
    parser = recipe_parser("dates", "the date translator", out="date_translator")
    assert parser.prog == "python -m tfm_edu.train dates"
    args = parser.parse_args([])
    assert (args.seed, args.out, args.threads, args.no_progress) == (0, "date_translator", 1, False)
    args = parser.parse_args(["--seed", "7", "--out", "x", "--threads", "2", "--no-progress"])
    assert (args.seed, args.out, args.threads, args.no_progress) == (7, "x", 2, True)


def test_run_recipe_passes_the_parsed_args_and_the_command():
    import torch

    parser = recipe_parser("demo", "a demo", out="demo")
    parser.add_argument("--steps", type=int, default=1)
    before = torch.get_num_threads()
    seen = {}

    def train(args, command):
        seen.update(steps=args.steps, command=command, threads=torch.get_num_threads())
        return "done"

    threads = str(before + 1)  # differs from this process's setting
    argv = ["--steps", "3", "--threads", threads, "--no-progress"]
    assert run_recipe(parser, argv, train) == "done"
    command = f"python -m tfm_edu.train demo --steps 3 --threads {threads}"
    assert seen == {"steps": 3, "command": command, "threads": before + 1}
    assert torch.get_num_threads() == before  # restored afterwards


def test_every_recipe_is_registered_with_a_callable():
    assert set(RECIPES) == {
        "dates",
        "bert-mlm",
        "bert-sentiment",
        "bert-sentiment-seeds",
        "vit-digits",
        "positions-length",
        "gpt-chars",
        "induction-heads",
        "distill-digits",
        "distill-minilm",
        "prune-heads",
    }
    for name, (run, description) in RECIPES.items():
        assert callable(run), name
        assert isinstance(description, str) and description, name


def test_main_without_a_recipe_shows_help_and_names_bad_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "usage: python -m tfm_edu.train" in shown
    assert all(name in shown for name in RECIPES)  # the epilog lists the recipes
    with pytest.raises(SystemExit) as exit_info:
        main(["gpt"])
    assert exit_info.value.code == 2 and "invalid choice: 'gpt'" in capsys.readouterr().err


def test_python_dash_m_train_runs_the_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "tfm_edu.train"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: python -m tfm_edu.train" in result.stdout and "vit-digits" in result.stdout
