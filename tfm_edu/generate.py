"""`python -m tfm_edu.generate "PROMPT"`: let chapter 9's character GPT continue your text.

    python -m tfm_edu.generate "def " --tokens 200 --seed 0
    python -m tfm_edu.generate "The " --tokens 100 --temperature 0.8 --top-k 20

Only the continuation goes to stdout (not the prompt), so it can be piped; a line of timing goes
to stderr. The model writes one character at a time: at each step its scores for the next
character (logits) become a probability distribution and one character is drawn from it
(`tfm_edu.decode.generate`). The flags shape that distribution, in this order:

- `--temperature T` (default 1.0): the logits are divided by T before the softmax. T < 1
  sharpens the distribution (safer, more repetitive text), T > 1 flattens it (more surprising,
  more mistakes), T = 1 samples the model as trained, and T = 0 always takes the most likely
  character.
- `--top-k K`: keep only the K most likely characters and renormalise; a cheap guard against the
  long tail of unlikely characters, whose total probability adds up to many bad draws.
- `--top-p P` in (0, 1]: "nucleus" sampling (Holtzman et al., 2020): keep the smallest set of most
  likely characters whose probability reaches P. Unlike top-k, the set is small where the model
  is sure and wide where it hesitates.
- `--greedy`: no sampling at all, always the most likely character (the same as
  `--temperature 0`); the seed then changes nothing.
- `--seed S` (default 0): the seed of the random draws. The same prompt, seed and flags give the
  same text every time; another seed, another text.
- `--no-cache`: recompute the whole context at every step instead of keeping each layer's keys
  and values (the KV cache). The text is the same, only slower: the stderr line shows by how
  much (and `python -m tfm_edu.bench generate` measures it properly).
- `--threads N` (default 1): PyTorch CPU threads. The model is small, so a second thread has
  little work to share and mostly waits; on cores that other programs use it is often slower.
  0 leaves PyTorch's own choice.
- `--checkpoint NAME_OR_PATH` (default `char_gpt`): a checkpoint name in data/ or a path without
  its suffix, as written by `tfm_edu.checkpoints.save_checkpoint`.

The prompt must not be empty (there would be nothing to condition on); a prompt of only spaces or
newlines is accepted, since those are characters the model reads like any other. A prompt that
starts with "-" goes after `--`: `python -m tfm_edu.generate --tokens 50 -- "-x"`. Characters
outside the model's vocabulary are read as [UNK] (a note on stderr names them). A prompt longer
than the model's block size is fine: the model reads its last characters (a note says so).
Bad arguments and unreadable checkpoints get one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time

import torch

from tfm_edu.checkpoints import CheckpointError
from tfm_edu.decode import context_start, generate
from tfm_edu.device import cpu_threads
from tfm_edu.pretrained import CHAR_GPT, char_gpt

__all__ = ["PROG", "build_parser", "main"]

PROG = "python -m tfm_edu.generate"
USAGE_ERROR = 2  # the exit status of a bad command line or an unreadable checkpoint, as argparse's


class _UsageError(Exception):
    """A bad command line: one line for stderr."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line and a `_UsageError` (no multi-line usage, no exit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _whole_number(minimum: int, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be a whole number {bound}, got {text!r}")
        return value

    return parse


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # False for NaN too
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line's options (errors raise instead of exiting; `main` reports them)."""
    parser = _Parser(
        prog=PROG,
        description="Continue a prompt with the character GPT of chapter 9. Only the "
        "continuation is printed; timing goes to stderr.",
        epilog="What each flag does: python -m pydoc tfm_edu.generate",
    )
    parser.add_argument("prompt", help="the text to continue (not empty)")
    parser.add_argument(
        "--tokens",
        type=_whole_number(0),
        default=200,
        metavar="N",
        help="how many characters to add (default 200)",
    )
    parser.add_argument(
        "--seed",
        type=_whole_number(0, 2**64 - 1),
        default=0,
        metavar="S",
        help="seed of the random draws (default 0)",
    )
    parser.add_argument(
        "--greedy", action="store_true", help="always the most likely character (no sampling)"
    )
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=1.0,
        metavar="T",
        help="divide the logits by T: <1 sharper, >1 flatter, 0 greedy (default 1.0)",
    )
    parser.add_argument(
        "--top-k",
        type=_whole_number(1),
        default=None,
        metavar="K",
        help="keep the K most likely characters",
    )
    parser.add_argument(
        "--top-p",
        type=_probability,
        default=None,
        metavar="P",
        help="keep the most likely characters whose probability reaches P, in (0, 1]",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute the whole context at every step"
    )
    parser.add_argument(
        "--threads",
        type=_whole_number(0),
        default=1,
        metavar="N",
        help="PyTorch CPU threads (default 1; 0: PyTorch's choice)",
    )
    parser.add_argument(
        "--checkpoint",
        default=CHAR_GPT,
        metavar="NAME_OR_PATH",
        help=f"checkpoint name in data/ or path without suffix (default {CHAR_GPT})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad arguments/checkpoints).

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        if args.prompt == "":
            raise _UsageError('the prompt is empty: give the text to continue, e.g. "def "')
        try:
            model, tokenizer = char_gpt(args.checkpoint)
        except (CheckpointError, OSError) as error:
            raise _UsageError(f"cannot load checkpoint {args.checkpoint!r}: {error}") from None
    except _UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as done:  # --help: argparse printed it and asks to exit
        return done.code if isinstance(done.code, int) else 0

    unknown = tokenizer.unknown_chars(args.prompt)
    if unknown:
        count = sum(c in unknown for c in args.prompt)
        print(
            f"note: {count} character(s) of the prompt outside the model's vocabulary, "
            f"read as [UNK]: {unknown!r}",
            file=sys.stderr,
        )
    prompt_ids = torch.tensor([tokenizer.encode(args.prompt, unknown="unk-quiet")])  # (1, T0)
    T0, block_size = prompt_ids.shape[1], model.config.block_size
    if T0 > block_size:
        kept = T0 - context_start(T0, block_size)
        print(
            f"note: the prompt has {T0} characters, more than the model's block size "
            f"({block_size}); it reads the last {kept}",
            file=sys.stderr,
        )

    threads = cpu_threads(args.threads) if args.threads else contextlib.nullcontext()
    try:
        with threads, torch.no_grad():
            model(prompt_ids[:, -1:])  # warm-up, untimed: the first call pays one-off set-up costs
            start = time.perf_counter()
            ids = generate(
                model,
                prompt_ids,
                args.tokens,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                greedy=args.greedy,
                use_cache=not args.no_cache,
                generator=torch.Generator().manual_seed(args.seed),
            )  # (1, T0 + tokens)
            seconds = time.perf_counter() - start
            used = torch.get_num_threads()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    _write(sys.stdout, tokenizer.decode(ids[0, T0:].tolist()) + "\n")
    speed = f"{args.tokens / seconds:.0f} tokens/s" if args.tokens and seconds > 0 else "-"
    print(
        f"{args.tokens} tokens in {seconds:.2f} s ({speed}), "
        f"KV cache {'off' if args.no_cache else 'on'}, {used} CPU thread{'s' if used > 1 else ''}",
        file=sys.stderr,
    )
    return 0


def _write(stream, text: str) -> None:
    """Write text, escaping characters the stream's encoding cannot show (e.g. 'ß' on ASCII)."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


if __name__ == "__main__":
    sys.exit(main())
