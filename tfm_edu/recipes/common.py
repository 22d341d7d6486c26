"""What every recipe's command line shares: the common flags, the thread setting, and the
command written into the checkpoint card.

    --seed N        initialisation, data order and augmentation (default 0)
    --out NAME      checkpoint name in data/ (or a path without suffix)
    --threads N     PyTorch CPU threads (default 1: reproducible bit for bit, and for the
                    course's small matrices faster than 2 when other programs share the cores)
    --no-progress   no progress bar
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from tfm_edu.device import cpu_threads

__all__ = ["recipe_parser", "run_recipe", "recipe_command"]

THREADS_HELP = (
    "PyTorch CPU threads (default 1: reproducible bit for bit, and for matrices this small "
    "faster than 2 when other programs share the cores)"
)


def recipe_parser(recipe: str, description: str, *, out: str) -> argparse.ArgumentParser:
    """An argument parser for `python -m tfm_edu.train <recipe>` with the common flags; the recipe
    adds its own."""
    parser = argparse.ArgumentParser(
        prog=f"python -m tfm_edu.train {recipe}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--out", default=out, help="checkpoint name in data/ (or a path)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_recipe(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    train: Callable[[argparse.Namespace, str], Any],
) -> Any:
    """Parse `argv`, then run `train(args, command)` with `--threads` CPU threads (restored after).

    `command` is what the card records (see `recipe_command`)."""
    args = parser.parse_args(list(argv or []))
    command = recipe_command(parser.prog.split()[-1], argv)
    with cpu_threads(args.threads):
        return train(args, command)


def recipe_command(recipe: str, argv: Sequence[str] | None) -> str:
    """The command a card records: the recipe and every option that can change the result
    (all but --no-progress), quoted as a shell would need them."""
    shown = [arg for arg in argv or [] if arg != "--no-progress"]
    return " ".join(["python -m tfm_edu.train", recipe, *map(shlex.quote, shown)])
