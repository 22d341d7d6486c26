"""Checks for chapter 6's fine-tuning loop: the five lines every PyTorch training step repeats.

    optimizer.zero_grad()                  # forget the last step's gradients
    loss = model(..., targets=...).loss    # forward, in train mode (dropout on)
    loss.backward()                        # gradients of the loss
    optimizer.step()                       # move the weights
    scheduler.step()                       # then move the learning rate (warm-up, decay)

`check_training_loop(fn)` builds a tiny seeded `BERTForSequenceClassification`, a fixed list of
batches, AdamW and a warm-up schedule (`tfm_edu.train.warmup_schedule`) twice, from identical
seeds: once for the learner's loop, once for ours. It compares the loss of every step and the
final weights with the plain reference loop below and with the package's `tfm_edu.train.fit`
(no gradient clipping), and names the usual slip when the learner's loop behaves like it.
Building models and drawing dropout masks use torch's global RNG: the check restores it (and
runs on one CPU thread, restoring the setting).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from tfm_edu.device import cpu_threads
from tfm_edu.exercises.core import Case, CheckResult, Mistake, check_function, graded
from tfm_edu.models.bert import BERTConfig, BERTForSequenceClassification
from tfm_edu.train import fit, warmup_schedule

__all__ = ["check_training_loop", "reference_train_steps"]

_CONFIG = BERTConfig(
    vocab_size=24, d_model=16, num_layers=1, num_heads=2, d_ff=32, max_positions=16, dropout=0.1
)
_LR = 1e-2  # large enough that every slip moves the weights visibly within a few steps
_WEIGHT_DECAY = 0.1  # large enough that AdamW stepping on zero gradients still moves weights


def reference_train_steps(model, batches, optimizer, scheduler) -> list[float]:
    """One optimisation step per batch; returns the loss of each step.

    Args:
        model: a classifier whose `forward(input_ids, attention_mask, targets=labels)` returns an
            output with `.loss`; it may arrive in eval mode and is trained in train mode.
        batches: (input_ids (B, T), attention_mask (B, T), labels (B,)) tuples.
        optimizer: e.g. AdamW over `model.parameters()`.
        scheduler: a learning-rate scheduler of `optimizer`, stepped once per batch.

    Returns:
        The training loss of every step, as Python floats.
    """
    model.train()  # dropout on
    losses = []
    for input_ids, attention_mask, labels in batches:
        optimizer.zero_grad()
        loss = model(input_ids, attention_mask, targets=labels).loss  # scalar
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def _slipped_train_steps(model, batches, optimizer, scheduler, *, slip: str) -> list[float]:
    """The reference loop with one typical slip."""
    if slip != "eval mode":
        model.train()
    losses = []
    for input_ids, attention_mask, labels in batches:
        if slip not in ("no zero_grad", "zero_grad before step"):
            optimizer.zero_grad()
        if slip == "scheduler first":
            scheduler.step()
        if slip == "no_grad forward":
            with torch.no_grad():
                loss = model(input_ids, attention_mask, targets=labels).loss
        else:
            loss = model(input_ids, attention_mask, targets=labels).loss
        if slip == "item then backward":
            loss = loss.item()
        loss.backward()
        if slip == "zero_grad before step":  # to None, this is "no optimizer step" exactly
            optimizer.zero_grad(set_to_none=False)
        if slip == "clipping":
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if slip != "no optimizer step":
            optimizer.step()
        if slip not in ("scheduler first", "no scheduler step"):
            scheduler.step()
        losses.append(loss.item())
    return losses


_SLIPS = {
    "eval mode": (
        "the model arrives in eval mode (as a loaded checkpoint does): call model.train() before "
        "the loop, so that dropout is on while fine-tuning, as the reference trains."
    ),
    "no zero_grad": (
        "call optimizer.zero_grad() at the start of every step: backward() *adds* to .grad, so "
        "without it each step uses the sum of all the gradients so far."
    ),
    "no optimizer step": (
        "the weights never changed: call optimizer.step() after backward(); call backward() on "
        "the loss tensor itself (a copy cut from the graph, loss.detach() or "
        "torch.tensor(loss.item(), requires_grad=True), sends no gradient to the weights); and "
        "zero the gradients before the forward pass, not between backward() and step()."
    ),
    "zero_grad before step": (
        "optimizer.zero_grad() sits between backward() and optimizer.step(), so it wipes the "
        "gradients just computed and AdamW steps on zeros: zero the gradients first, before the "
        "forward pass."
    ),
    "scheduler first": (
        "scheduler.step() comes *after* optimizer.step(): stepping it first skips the first "
        "learning rate of the warm-up (PyTorch warns about exactly this order)."
    ),
    "no scheduler step": (
        "call scheduler.step() once per batch, after optimizer.step(): without it the learning "
        "rate stays at its first warm-up value."
    ),
    "item then backward": (
        "loss.item() is a Python float, which has no backward(): call loss.backward() on the "
        "tensor, and keep loss.item() only for the list you return."
    ),
    "no_grad forward": (
        "the forward pass ran under torch.no_grad(), so there is no graph to backpropagate "
        "through: no_grad is for evaluation, not for training steps."
    ),
    "clipping": (
        "this loop clips the gradient norm (as tfm_edu.train.fit does by default); the task asks "
        "for the five plain steps without clipping."
    ),
}


def _setup(seed: int, steps: int):
    """A seeded tiny classifier in eval mode and `steps` fixed batches; RNG left at `seed + 1`."""
    torch.manual_seed(seed)
    model = BERTForSequenceClassification(_CONFIG, num_labels=2, pooling="mean").eval()
    generator = torch.Generator().manual_seed(1000 + seed)
    batches = []
    for _ in range(steps):
        B, T = 4, 8
        input_ids = torch.randint(5, _CONFIG.vocab_size, (B, T), generator=generator)  # (B, T)
        lengths = torch.randint(3, T + 1, (B,), generator=generator)  # (B,)
        attention_mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T), True = real
        input_ids = input_ids.masked_fill(~attention_mask, _CONFIG.pad_id)  # (B, T)
        labels = torch.randint(0, 2, (B,), generator=generator)  # (B,)
        batches.append((input_ids, attention_mask, labels))
    torch.manual_seed(seed + 1)  # the dropout masks of the loop
    return model, batches


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=_WEIGHT_DECAY)


def _final_weights(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach().clone()  # (P,)


def _as_losses(losses) -> np.ndarray | None:
    if losses is None:
        return None
    if isinstance(losses, torch.Tensor) or not isinstance(losses, (list, tuple)):
        raise TypeError(
            f"return a list with one float per step, got {type(losses).__name__}: append "
            "loss.item() inside the loop"
        )
    if any(isinstance(loss, torch.Tensor) for loss in losses):
        raise TypeError(
            "return Python floats (loss.item()), not tensors: a loss tensor keeps its whole "
            "graph alive, so a list of them holds every step's activations in memory"
        )
    return np.asarray(losses, dtype=np.float64)  # (steps,)


def _run_loop(loop, seed: int, steps: int, warmup_steps: int):
    """`loop(model, batches, optimizer, scheduler)` from the seeded setup -> (losses, weights)."""
    with torch.random.fork_rng(devices=[]):
        model, batches = _setup(seed, steps)
        optimizer = _optimizer(model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_schedule(warmup_steps, steps)
        )
        losses = _as_losses(loop(model, batches, optimizer, scheduler))
        if losses is None:
            return None
        return losses, _final_weights(model)


def _run_fit(seed: int, steps: int, warmup_steps: int):
    """The same training through the package's `tfm_edu.train.fit` (no clipping)."""
    with torch.random.fork_rng(devices=[]):
        model, batches = _setup(seed, steps)
        history = fit(
            model,
            batches,
            lambda m, batch: m(batch[0], batch[1], targets=batch[2]).loss,
            steps=steps,
            optimizer=_optimizer(model),
            warmup_steps=warmup_steps,
            clip_grad_norm=None,
            progress=False,
        )
        return np.asarray(history.loss, dtype=np.float64), _final_weights(model)


def _cases() -> list[Case]:
    return [
        Case((0, 5, 2), label="5 batches, warm-up over 2 steps"),
        Case((1, 6, 3), label="6 batches, warm-up over 3 steps"),
    ]


@graded
def check_training_loop(fn) -> CheckResult:
    """Check `fn(model, batches, optimizer, scheduler) -> list[float]`, a fine-tuning loop.

    For every batch `(input_ids, attention_mask, labels)` the loop must zero the gradients,
    compute `model(input_ids, attention_mask, targets=labels).loss` in train mode (the model
    arrives in eval mode), backpropagate, step the optimizer, then step the scheduler, and
    return the loss of every step as floats; no gradient clipping. The check compares every
    step's loss and the final weights with `reference_train_steps` and with `tfm_edu.train.fit`,
    run from identical seeded copies (same initial weights, batches and dropout masks).

    Args:
        fn: the learner's function.

    Returns:
        A `CheckResult`; this function never raises.
    """
    name = getattr(fn, "__name__", "train_steps")
    if not callable(fn):
        return check_function(name, fn, reference_train_steps, _cases())
    cases = _cases()
    mistakes = [
        Mistake(hint, partial(_run_loop, partial(_slipped_train_steps, slip=slip)))
        for slip, hint in _SLIPS.items()
    ]
    learner = partial(_run_loop, fn)
    settings = {"atol": 1e-5, "rtol": 1e-4, "output_names": ("losses", "final weights")}
    for reference in (partial(_run_loop, reference_train_steps), _run_fit):
        with cpu_threads(1):  # tiny matrices: one thread is faster on a shared CPU, and exact
            result = check_function(name, learner, reference, cases, mistakes, **settings)
        if not result.passed:
            return result
    return CheckResult(
        name,
        "passed",
        f"✓ {name}: matches the reference loop and tfm_edu.train.fit on {len(cases)} test cases\n"
        "  (the loss of every step and the final weights)",
    )
