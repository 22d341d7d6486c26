"""What happened during training, in one format: kept in memory by `fit`, stored in checkpoint
cards by `tfm_edu.checkpoints`, and read back for the notebooks' loss curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History"]

_SERIES = ("loss", "lr", "grad_norm")  # one value per recorded step


@dataclass
class History:
    """One entry per step (loss, learning rate, gradient norm), plus periodic evaluations."""

    steps: list[int] = field(default_factory=list)  # the step of each entry
    loss: list[float] = field(default_factory=list)  # training loss at that step
    lr: list[float] = field(default_factory=list)  # learning rate used for that step
    grad_norm: list[float] = field(default_factory=list)  # gradient norm before clipping
    # A series may be empty (not recorded), as in the cards made before this format existed.
    evals: list[dict[str, float]] = field(default_factory=list)  # each has a "step" key
    seconds: float = 0.0  # wall-clock time of the training

    def eval_series(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one evaluated metric, ready to plot."""
        rows = [e for e in self.evals if metric in e]
        return [int(e["step"]) for e in rows], [e[metric] for e in rows]

    def to_dict(self, every: int = 1) -> dict[str, Any]:
        """A JSON-able copy, every field kept.

        Args:
            every: down-sampling of the per-step series: each run of `every` consecutive entries
                becomes one, their mean, recorded at the run's last step (a last, shorter run is
                kept too). Evaluations and seconds are kept whole.
        """
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        _check_lengths(self)
        runs = [slice(start, start + every) for start in range(0, len(self.steps), every)]
        stored: dict[str, Any] = {"steps": [int(self.steps[run][-1]) for run in runs]}
        for name in _SERIES:
            values = getattr(self, name)  # a series not recorded stays empty
            stored[name] = [_short(sum(values[run]) / len(values[run])) for run in runs if values]
        stored["evals"] = [dict(e) for e in self.evals]
        stored["seconds"] = round(float(self.seconds), 1)
        return stored

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> History:
        """The inverse of `to_dict` (a down-sampled history comes back down-sampled).

        Raises:
            ValueError naming the fields that are missing.
        """
        missing = [k for k in ("steps", *_SERIES, "evals", "seconds") if k not in stored]
        if missing:
            raise ValueError(f"not a stored History: missing {missing}")
        history = cls(
            steps=[int(s) for s in stored["steps"]],
            **{name: [float(v) for v in stored[name]] for name in _SERIES},
            evals=[dict(e) for e in stored["evals"]],
            seconds=float(stored["seconds"]),
        )
        _check_lengths(history)
        return history


def _check_lengths(history: History) -> None:
    """Each series holds one value per step, or none at all (not recorded)."""
    lengths = {name: len(getattr(history, name)) for name in _SERIES}
    wrong = {name: n for name, n in lengths.items() if n not in (0, len(history.steps))}
    if wrong:
        raise ValueError(
            f"each of {list(_SERIES)} needs one value per step ({len(history.steps)}) or none, "
            f"got lengths {lengths}"
        )


def _short(value: float) -> float:
    """Six significant digits: plenty for a curve, and a card that stays small."""
    return float(f"{value:.6g}")
