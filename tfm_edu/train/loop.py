"""One small training loop for every chapter.

`fit` is deliberately plain: draw a batch, compute a loss with the function you pass, step
AdamW, clip gradients, follow a warm-up-then-decay learning-rate schedule, record the history,
evaluate now and then, show a progress bar. Passing the loss as a function is what lets the same
loop train a translator (cross-entropy with label smoothing), a BERT (masked-token loss) or a
student model (distillation loss).

Every model of the course returns its own loss (`model(..., targets=...).loss`), so a recipe's
`loss_fn` is one line. Recipes (what `python -m tfm_edu.train <name>` runs) live in
`tfm_edu.recipes`; each builds its data and model, calls `fit`, measures the result and writes
a checkpoint into `data/`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from tfm_edu.train.history import History

__all__ = ["warmup_schedule", "fit"]


def warmup_schedule(
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    floor: float = 0.0,
    decay_start: int | None = None,
) -> Callable[[int], float]:
    """Learning-rate multiplier per step: linear warm-up from 0 to 1, then decay.

    Warm-up matters for Transformers: at initialisation Adam's early steps are noisy and large
    updates can push post-LN models into a bad region; ramping the rate avoids that.

    Args:
        warmup_steps: steps to ramp from ~0 to 1.
        total_steps: where the decay ends.
        decay: "cosine" (to `floor`), "linear" (to `floor`), "inverse_sqrt" (the paper's schedule,
            lr ~ 1/sqrt(step) after warm-up) or "constant".
        floor: the multiplier reached at the end of cosine/linear decay.
        decay_start: hold the multiplier at 1 from the end of the warm-up to this step, then
            decay over the remaining steps ("warm-up, stable, decay"); default: decay right
            after the warm-up.
    """
    if warmup_steps < 0 or total_steps < 1 or warmup_steps > total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps, got {warmup_steps} and {total_steps}"
        )
    if decay not in ("cosine", "linear", "inverse_sqrt", "constant"):
        raise ValueError(f"unknown decay {decay!r}")
    start = warmup_steps if decay_start is None else decay_start
    if not warmup_steps <= start <= total_steps:
        raise ValueError(
            f"need warmup_steps <= decay_start <= total_steps, got {warmup_steps}, "
            f"{decay_start} and {total_steps}"
        )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "constant" or step < start:
            return 1.0
        if decay == "inverse_sqrt":
            return math.sqrt(max(warmup_steps, 1) / (step + 1))
        progress = min(1.0, (step - start) / max(1, total_steps - start))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress
        return floor + (1 - floor) * shape

    return multiplier


def fit(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    decay: str = "cosine",
    clip_grad_norm: float | None = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    desc: str = "training",
    lr_floor: float = 0.0,
    decay_start: int | None = None,
    max_seconds: float | None = None,
) -> History:
    """Train `model` for `steps` optimisation steps.

    Args:
        model: any module; it is put in train mode (and in eval mode around `evaluate`).
        batches: an iterable of batches (cycled if it runs out); each batch is moved to the
            model's device (tensors, or tuples/lists/dicts of tensors).
        loss_fn: `loss_fn(model, batch) -> scalar loss`.
        steps: number of optimisation steps.
        lr, weight_decay: AdamW settings (ignored if `optimizer` is given).
        warmup_steps, decay: the learning-rate schedule (see `warmup_schedule`).
        clip_grad_norm: clip the global gradient norm to this (None: no clipping).
        optimizer: use this optimizer instead of AdamW.
        evaluate: `evaluate(model) -> {"metric": value}`, run under no_grad every `eval_every`
            steps and at the end; each evaluation also records "seconds", the training time
            so far (evaluations excluded).
        progress: show a tqdm progress bar.
        lr_floor, decay_start: where the decay ends and where it starts (see
            `warmup_schedule`).
        max_seconds: stop early once the training time (evaluations excluded) passes this
            many seconds, e.g. to give two models the same time; `history.steps` then ends
            before `steps`.

    Returns:
        A History (loss, lr, gradient norm per step; evaluations; wall-clock seconds).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_schedule(warmup_steps, steps, decay, lr_floor, decay_start)
    )
    history = History()
    stream = _cycle(batches)
    start = time.perf_counter()
    eval_seconds = 0.0  # time spent in `evaluate`, left out of the training time
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=True)
    model.train()
    for step in bar:
        loss = loss_fn(model, _to_device(next(stream), device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the lr?")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm or float("inf"))
        history.steps.append(step)
        history.loss.append(loss.item())
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.grad_norm.append(float(norm))
        optimizer.step()
        scheduler.step()
        trained = time.perf_counter() - start - eval_seconds
        is_last = step == steps - 1 or (max_seconds is not None and trained >= max_seconds)
        if evaluate is not None and (is_last or (eval_every and (step + 1) % eval_every == 0)):
            began = time.perf_counter()
            metrics = _evaluate(model, evaluate)
            eval_seconds += time.perf_counter() - began
            history.evals.append({"step": step, **metrics, "seconds": round(trained, 2)})
            bar.set_postfix(loss=f"{loss.item():.3f}", **_short(metrics))
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if is_last:
            break
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _evaluate(model: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]]):
    model.eval()
    with torch.no_grad():
        metrics = {k: float(v) for k, v in evaluate(model).items()}
    model.train()
    return metrics


def _short(metrics: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.3f}" for k, v in metrics.items() if k != "step"}


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    while True:
        count = 0
        for batch in batches:
            count += 1
            yield batch
        if count == 0:
            raise ValueError(
                "`batches` yielded nothing: pass a re-iterable (a list, a DataLoader) "
                "or an endless generator with at least `steps` batches"
            )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
