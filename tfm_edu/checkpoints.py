"""Save and load model weights as safetensors + a JSON card, with errors that name the file.

A checkpoint is two files in `data/`:
    <name>.safetensors   the weights (safetensors: plain tensors, no pickle, safe to open)
    <name>.json          {"model": ..., "config": {...}, "command": ..., "metrics": {...},
                          "history": {...}, ...}

`save_checkpoint` writes both (the training history through `History.to_dict`);
`load_checkpoint` rebuilds the model from its card and loads the weights; `load_history` gives
the training curve back as a `History`. We never `torch.load` a pickle: unpickling runs
arbitrary code, safetensors cannot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from tfm_edu.train import History

__all__ = [
    "CheckpointError",
    "data_dir",
    "save_checkpoint",
    "load_card",
    "load_weights",
    "load_checkpoint",
    "load_history",
    "card_path",
    "weights_path",
]

HISTORY_EVERY = 10  # a card keeps the mean of every 10 training steps (and every evaluation)


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""


def data_dir() -> Path:
    """The course's `data/` folder (override with the TFM_EDU_DATA environment variable)."""
    override = os.environ.get("TFM_EDU_DATA")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "data"


def save_checkpoint(
    model: nn.Module,
    name: str | Path,
    config: Any,
    *,
    command: str,
    metrics: dict[str, Any] | None = None,
    history: History | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `<name>.safetensors` and `<name>.json`; returns the safetensors path.

    Args:
        model: any module; tied (shared) weights are stored once.
        name: a bare name (goes to `data_dir()`) or a path without suffix.
        config: the model's config (a dataclass or dict), stored so the model can be rebuilt.
        command: the command that produced the checkpoint, e.g. "python -m tfm_edu.train dates".
        metrics: what the training reached (accuracy, loss, seconds...).
        history: the training's `History`, stored down-sampled (`HISTORY_EVERY`) for the
            notebooks' curves; `load_history` reads it back.
        extra: anything else the loader needs (e.g. a vocabulary).
    """
    stem = _stem(name)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = _file(stem, ".safetensors")
    save_model(model, str(weights))
    card = {
        "model": type(model).__name__,
        "config": asdict(config) if is_dataclass(config) else dict(config),
        "command": command,
        "metrics": metrics or {},
        **({"history": history.to_dict(every=HISTORY_EVERY)} if history is not None else {}),
        **(extra or {}),
    }
    _file(stem, ".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return weights


def load_card(name: str | Path) -> dict[str, Any]:
    """Read `<name>.json`, raising CheckpointError (naming the file) if missing or malformed."""
    path = card_path(name)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint card not found")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(card, dict) or "config" not in card:
        raise CheckpointError(f"{path}: expected a JSON object with a 'config' entry")
    return card


def load_weights(model: nn.Module, name: str | Path) -> nn.Module:
    """Load `<name>.safetensors` into `model` strictly; names and shapes must all match.

    Raises:
        CheckpointError naming the file and what is wrong: missing file, corrupt file,
        missing or unexpected tensor names, or shape mismatches.
    """
    path = weights_path(name)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    unexpected = sorted(set(stored) - set(expected))
    wrong = [
        f"{k}: file {stored[k]} vs model {expected[k]}"
        for k in sorted(set(stored) & set(expected))
        if stored[k] != expected[k]
    ]
    if unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: "
            + "; ".join(
                ([f"unexpected tensors {unexpected[:5]}"] if unexpected else [])
                + ([f"shape mismatch {wrong[:5]}"] if wrong else [])
            )
        )
    # safetensors stores a tied weight once; load_model restores the aliases and reports true gaps.
    try:
        missing, _ = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: could not read the tensors ({error})") from None
    if missing:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: missing tensors {sorted(missing)[:5]}"
        )
    return model


def load_checkpoint(
    name: str | Path, build: Callable[[dict[str, Any]], nn.Module], *, kind: str
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its card and load its weights: the one way every ready-made model
    of `tfm_edu.pretrained` is read.

    Args:
        name: as for `load_card`.
        build: card -> a fresh model of the right shape, e.g.
            `lambda card: ViT(ViTConfig(**card["config"]))`.
        kind: the class the card must describe (its "model" entry), e.g. "ViT".

    Returns:
        (model, card), the model on the CPU in eval mode.

    Raises:
        CheckpointError naming the file when the card is missing or corrupt, describes another
        kind of model, or cannot build one, and when the weights do not fit.
    """
    card = load_card(name)
    path = card_path(name)
    if card.get("model") != kind:
        raise CheckpointError(f"{path}: describes a {card.get('model')!r}, not a {kind}")
    try:
        model = build(card)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot build a {kind} from it ({error!r})") from None
    return load_weights(model, name).eval(), card


def load_history(name: str | Path) -> History:
    """The training history stored in `<name>.json` (see `save_checkpoint`).

    Raises:
        CheckpointError naming the file when the card has no readable history.
    """
    card = load_card(name)
    try:
        return History.from_dict(card["history"])
    except (KeyError, TypeError, ValueError) as error:
        path = card_path(name)
        raise CheckpointError(f"{path}: no readable training history ({error!r})") from None


def card_path(name: str | Path) -> Path:
    """Where the card of checkpoint `name` lives: data/<name>.json (or beside a path)."""
    return _file(_stem(name), ".json")


def weights_path(name: str | Path) -> Path:
    """Where the weights of checkpoint `name` live: data/<name>.safetensors (or beside a path)."""
    return _file(_stem(name), ".safetensors")


def _stem(name: str | Path) -> Path:
    path = Path(name)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    if len(path.parts) == 1:
        path = data_dir() / path
    return path


def _file(stem: Path, suffix: str) -> Path:
    """stem + suffix, keeping dots in the name: "model.v2" -> "model.v2.json" (not "model.json")."""
    return stem.with_name(stem.name + suffix)
