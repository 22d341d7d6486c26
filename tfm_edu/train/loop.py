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
    warmup_steps: int, total_steps: int, decay: str = "cosine", floor: float = 0.0
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
    """
    if warmup_steps < 0 or total_steps < 1 or warmup_steps > total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps, got {warmup_steps} and {total_steps}"
        )
    if decay not in ("cosine", "linear", "inverse_sqrt", "constant"):
        raise ValueError(f"unknown decay {decay!r}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if decay == "constant":
            return 1.0
        if decay == "inverse_sqrt":
            return math.sqrt(max(warmup_steps, 1) / (step + 1))
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
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
            steps and at the end.
        progress: show a tqdm progress bar.

    Returns:
        A History (loss, lr, gradient norm per step; evaluations; wall-clock seconds).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_schedule(warmup_steps, steps, decay)
    )
    history = History()
    stream = _cycle(batches)
    start = time.perf_counter()
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
        is_last = step == steps - 1
        if evaluate is not None and (is_last or (eval_every and (step + 1) % eval_every == 0)):
            history.evals.append({"step": step, **_evaluate(model, evaluate)})
            bar.set_postfix(loss=f"{loss.item():.3f}", **_short(history.evals[-1]))
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
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
