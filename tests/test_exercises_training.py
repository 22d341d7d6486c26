"""Chapter 6's training-loop check: right loops pass, the stub is "not done", slips get hints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_helpers import assert_hint, stub

from tfm_edu.exercises import training as checks


def my_train_steps(model, batches, optimizer, scheduler):
    """A learner's correct loop, written independently: the loss recorded before backward, the
    loss computed from the logits, the gradients zeroed in place."""
    model.train()
    losses = []
    for input_ids, attention_mask, labels in batches:
        optimizer.zero_grad(set_to_none=False)
        logits = model(input_ids, attention_mask=attention_mask).logits  # (B, 2)
        loss = F.cross_entropy(logits, labels)
        losses.append(float(loss.detach()))
        loss.backward()
        optimizer.step()
        scheduler.step()
    return losses


def _loop(*, train=True, zero=True, backward="tensor", step=True, schedule="after", grads=True):
    """A learner's loop with one slip, written the way a learner would write it."""

    def loop(model, batches, optimizer, scheduler):
        if train:
            model.train()
        losses = []
        for input_ids, attention_mask, labels in batches:
            if zero:
                optimizer.zero_grad()
            if schedule == "before":
                scheduler.step()
            if grads:
                out = model(input_ids, attention_mask, targets=labels)
            else:
                with torch.no_grad():
                    out = model(input_ids, attention_mask, targets=labels)
            loss = out.loss
            if backward == "item":
                loss = loss.item()
                loss.backward()
            elif backward == "detached":
                torch.tensor(loss.item(), requires_grad=True).backward()
            else:
                loss.backward()
            if step:
                optimizer.step()
            if schedule == "after":
                scheduler.step()
            losses.append(loss if backward == "item" else loss.item())
        return losses

    return loop


def test_reference_agrees_with_fit():
    for case in checks._cases():
        losses, weights = checks._run_loop(checks.reference_train_steps, *case.args)
        fit_losses, fit_weights = checks._run_fit(*case.args)
        np.testing.assert_allclose(losses, fit_losses, rtol=1e-6)
        torch.testing.assert_close(weights, fit_weights)
        assert len(losses) == case.args[1] and np.all(np.isfinite(losses))


def test_correct_loops_pass():
    result = checks.check_training_loop(my_train_steps)
    assert result.passed, result.message
    assert "fit" in result.message
    assert checks.check_training_loop(checks.reference_train_steps).passed
    assert checks.check_training_loop(_loop()).passed


def test_the_stub_is_not_done():
    result = checks.check_training_loop(stub)
    assert result.status == "not done" and "stub" in result.message, result.message

    def my_loop(model, batches, optimizer, scheduler):
        raise NotImplementedError

    assert "my_loop" in checks.check_training_loop(my_loop).message


@pytest.mark.parametrize(
    "slip, fragment",
    [
        ({"train": False}, "model.train()"),
        ({"zero": False}, "*adds* to .grad"),
        ({"schedule": "before"}, "*after* optimizer.step()"),
        ({"schedule": "never"}, "first warm-up value"),
        ({"step": False}, "weights never changed"),
        ({"backward": "detached"}, "weights never changed"),
        ({"backward": "item"}, "no backward()"),
        ({"grads": False}, "torch.no_grad()"),
    ],
)
def test_slips_get_their_hint(slip, fragment):
    assert_hint(checks.check_training_loop(_loop(**slip)), fragment)


@pytest.mark.parametrize(
    "set_to_none, fragment",
    [(True, "not between backward() and step()"), (False, "wipes the gradients")],
)
def test_zero_grad_between_backward_and_step(set_to_none, fragment):
    def loop(model, batches, optimizer, scheduler):
        model.train()
        losses = []
        for input_ids, attention_mask, labels in batches:
            loss = model(input_ids, attention_mask, targets=labels).loss
            loss.backward()
            optimizer.zero_grad(set_to_none=set_to_none)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return losses

    assert_hint(checks.check_training_loop(loop), fragment)


def test_clipping_is_named():
    def loop(model, batches, optimizer, scheduler):
        model.train()
        losses = []
        for input_ids, attention_mask, labels in batches:
            optimizer.zero_grad()
            loss = model(input_ids, attention_mask, targets=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return losses

    assert_hint(checks.check_training_loop(loop), "clips the gradient norm")


def test_what_it_returns():
    def returns_tensors(model, batches, optimizer, scheduler):
        model.train()
        losses = []
        for input_ids, attention_mask, labels in batches:
            optimizer.zero_grad()
            loss = model(input_ids, attention_mask, targets=labels).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss)
        return losses

    result = checks.check_training_loop(returns_tensors)
    assert result.status == "failed" and "loss.item()" in result.message, result.message

    def forgets_return(model, batches, optimizer, scheduler):
        _loop()(model, batches, optimizer, scheduler)

    assert "None" in checks.check_training_loop(forgets_return).message

    def last_loss_only(model, batches, optimizer, scheduler):
        return _loop()(model, batches, optimizer, scheduler)[-1:]

    assert "shape" in checks.check_training_loop(last_loss_only).message
    assert checks.check_training_loop(42).status == "failed"


def test_the_check_restores_torch_rng_and_threads():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_training_loop(my_train_steps)
    checks.check_training_loop(_loop(zero=False))
    torch.testing.assert_close(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
