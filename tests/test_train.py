"""tfm_edu.train: the warm-up + decay schedule and the `fit` loop."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tfm_edu.train import History, fit, warmup_schedule


def test_warmup_ramps_linearly_to_one():
    f = warmup_schedule(10, 100)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_decay_reaches_the_floor(decay):
    f = warmup_schedule(10, 110, decay, floor=0.1)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    halfway = 0.1 + 0.9 * 0.5
    assert f(60) == pytest.approx(halfway)  # cosine and linear agree at the midpoint
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # never increases


def test_inverse_sqrt_is_the_papers_schedule():
    f = warmup_schedule(100, 1000, "inverse_sqrt")
    # Vaswani et al.: lr ~ min(step^-0.5, step * warmup^-1.5), normalised to 1 at the peak.
    for step in (0, 50, 99, 100, 400, 999):
        n = step + 1
        expected = min(n**-0.5, n * 100**-1.5) / 100**-0.5
        assert f(step) == pytest.approx(expected)
    assert warmup_schedule(0, 10, "constant")(5) == 1.0


def test_bad_schedules_are_named():
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        warmup_schedule(20, 10)
    with pytest.raises(ValueError, match="unknown decay"):
        warmup_schedule(0, 10, "exponential")


def _regression(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])  # (256, 1)
    data = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    return data, lambda model, batch: ((model(batch[0]) - batch[1]) ** 2).mean()


def test_fit_learns_and_records_its_history():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data, loss_fn = _regression()
    calls = []

    def evaluate(m):
        calls.append(m.training)
        return {"mse": loss_fn(m, data[0]).item()}

    history = fit(model, data, loss_fn, steps=200, lr=0.05, warmup_steps=20, weight_decay=0.0,
                  evaluate=evaluate, eval_every=50, progress=False)  # fmt: skip
    assert history.steps == list(range(200)) and len(history.loss) == 200
    assert history.loss[-1] < 0.01 * history.loss[0]
    assert [e["step"] for e in history.evals] == [49, 99, 149, 199]
    assert calls == [False] * 4 and not model.training  # eval mode around evaluate and after
    schedule = warmup_schedule(20, 200)
    assert history.lr[:25] == pytest.approx([0.05 * schedule(s) for s in range(25)])
    assert history.eval_series("mse")[0] == [49, 99, 149, 199]


def test_fit_clips_the_gradient_norm():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data, loss_fn = _regression()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    history = fit(model, data[:1], lambda m, b: 1e4 * loss_fn(m, b), steps=1,
                  optimizer=torch.optim.SGD(model.parameters(), lr=1.0), clip_grad_norm=0.5,
                  progress=False)  # fmt: skip
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert history.grad_norm[0] > 100  # recorded before clipping
    assert history.lr[0] == 1.0
    # plain SGD with lr 1 moves the parameters by exactly the clipped gradient
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)


def test_fit_stops_on_nan_and_bad_arguments():
    model = nn.Linear(4, 1)
    data, _ = _regression()
    with pytest.raises(FloatingPointError, match="step 0"):
        fit(model, data, lambda m, b: m(b[0]).sum() * float("nan"), steps=3, progress=False)
    with pytest.raises(ValueError, match="steps must be"):
        fit(model, data, lambda m, b: m(b[0]).sum(), steps=0, progress=False)
    with pytest.raises(ValueError, match="yielded nothing"):
        fit(model, [], lambda m, b: m(b[0]).sum(), steps=2, progress=False)


def test_plots_of_history_and_schedule_run_headless():
    from tfm_edu.viz.training import plot_history, plot_per_layer, plot_schedule, smooth

    assert smooth([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    history = History(steps=[0, 1, 2], loss=[3.0, 2.0, 1.0], evals=[{"step": 2, "acc": 0.5}])
    fig = plot_history(history)
    assert len(fig.axes) == 2 and fig.axes[1].get_legend_handles_labels()[1] == ["acc"]
    fig = plot_history({"pre-LN": history, "post-LN": history}, metrics=[])
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 4
    two = History(steps=[0, 1], loss=[2.0, 1.0], evals=[{"step": 1, "acc": 0.5, "f1": 0.4}])
    colors = [line.get_color() for line in plot_history(two).axes[1].lines]
    assert len(set(colors)) == 2  # one run: a colour per metric
    runs = plot_history({"a": two, "b": two}).axes[1].lines  # several: a colour per run
    assert [line.get_color() for line in runs][:2] == [runs[0].get_color()] * 2
    assert runs[0].get_color() != runs[2].get_color()
    with pytest.raises(ValueError, match="never evaluated"):
        plot_history(history, metrics=["bleu"])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_history(History())
    fig = plot_schedule(warmup_schedule(10, 100), 100, base_lr=3e-3, warmup_steps=10)
    line = fig.axes[0].lines[0]
    assert max(line.get_ydata()) == pytest.approx(3e-3) and len(line.get_xdata()) == 100
    fig = plot_schedule({"cosine": warmup_schedule(10, 100), "inverse sqrt":
                         warmup_schedule(10, 100, "inverse_sqrt")}, 100)  # fmt: skip
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="steps must be"):
        plot_schedule(warmup_schedule(10, 100), 0)
    fig = plot_per_layer({"post-LN": [1.0, 2.0, 3.0], "pre-LN": [1.0, 1.0, 1.0]}, ylabel="norm")
    assert [list(line.get_xdata()) for line in fig.axes[0].lines] == [[0, 1, 2]] * 2
    with pytest.raises(ValueError, match="one value per layer"):
        plot_per_layer({}, ylabel="norm")


def _history(steps: int) -> History:
    """Values that six significant digits store exactly, so a round trip can be compared with ==."""
    return History(
        steps=list(range(steps)),
        loss=[1.0 + 0.5 * s for s in range(steps)],
        lr=[0.25 * s for s in range(steps)],
        grad_norm=[10.0 - 0.125 * s * s for s in range(steps)],
        evals=[{"step": 4, "acc": 0.5}, {"step": steps - 1, "acc": 0.75, "loss": 1.5}],
        seconds=12.5,
    )


def test_history_round_trips_through_a_dict():
    history = _history(10)
    stored = history.to_dict()
    assert json.loads(json.dumps(stored)) == stored  # JSON-able as it is
    assert History.from_dict(stored) == history
    assert History.from_dict(stored) is not history and stored["evals"] is not history.evals


def test_history_to_dict_averages_runs_at_their_last_step():
    history = _history(10)
    stored = history.to_dict(every=3)  # runs 0-2, 3-5, 6-8 and a last run of one, step 9
    assert stored["steps"] == [2, 5, 8, 9]
    assert stored["loss"] == pytest.approx([1.5, 3.0, 4.5, 5.5])  # 1 + 0.5 * mean step
    assert stored["lr"] == pytest.approx([0.25, 1.0, 1.75, 2.25])
    squares = [(0 + 1 + 4) / 3, (9 + 16 + 25) / 3, (36 + 49 + 64) / 3, 81]
    assert stored["grad_norm"] == pytest.approx(
        [10 - 0.125 * m for m in squares], rel=1e-6
    )  # stored to six significant digits
    assert stored["evals"] == history.evals and stored["seconds"] == 12.5
    again = History.from_dict(stored)
    assert again.steps == [2, 5, 8, 9] and again.evals == history.evals


def test_history_from_dict_names_what_is_missing():
    stored = _history(3).to_dict()
    del stored["grad_norm"], stored["seconds"]
    with pytest.raises(ValueError, match=r"missing \['grad_norm', 'seconds'\]"):
        History.from_dict(stored)
    with pytest.raises(ValueError, match="every must be a positive int"):
        _history(3).to_dict(every=0)
    with pytest.raises(ValueError, match="one value per step"):
        History(steps=[0, 1], loss=[1.0]).to_dict()
    with pytest.raises(ValueError, match="one value per step"):
        History.from_dict({**stored, "grad_norm": [1.0], "seconds": 1.0})


def test_a_series_not_recorded_stays_empty():
    # The cards made before this format hold no gradient norms: they read back and save again.
    history = History(steps=[0, 1, 2], loss=[3.0, 2.0, 1.0], evals=[{"step": 2, "acc": 0.5}])
    stored = history.to_dict(every=2)
    assert stored["loss"] == [2.5, 1.0] and stored["lr"] == [] and stored["grad_norm"] == []
    assert History.from_dict(stored).to_dict() == stored


def test_decay_can_wait_for_a_stable_stretch():
    f = warmup_schedule(10, 110, "cosine", floor=0.1, decay_start=60)
    assert [f(s) for s in (9, 10, 59)] == pytest.approx([1.0, 1.0, 1.0])  # held at the peak
    assert f(85) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert f(110) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay_start"):
        warmup_schedule(10, 110, decay_start=5)


def test_fit_stops_at_max_seconds_and_times_its_evaluations(monkeypatch):
    import tfm_edu.train.loop as loop

    clock = iter(range(10_000))  # each call to the clock: one more second
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    torch.manual_seed(0)
    data, loss_fn = _regression()
    history = fit(nn.Linear(4, 1), data, loss_fn, steps=100, max_seconds=5.0,
                  evaluate=lambda m: {"zero": 0.0}, eval_every=2, progress=False)  # fmt: skip
    assert len(history.steps) < 100  # stopped early
    assert history.evals[-1]["step"] == history.steps[-1]  # evaluated where it stopped
    seconds = [e["seconds"] for e in history.evals]
    assert seconds == sorted(seconds) and seconds[-1] >= 5.0
    # evaluations are left out of the training time: less than the wall time that passed
    assert seconds[-1] < history.seconds
    with pytest.raises(ValueError, match="max_seconds"):
        fit(nn.Linear(4, 1), data, loss_fn, steps=3, max_seconds=0, progress=False)


def test_plot_curves_draws_lines_levels_and_marks():
    from tfm_edu.viz.training import plot_curves

    fig = plot_curves(
        {"ours": ([1, 2, 3], [3.0, 2.0, 1.5]), "theirs": ([1, 3], [3.0, 2.5])},
        xlabel="seconds",
        ylabel="loss",
        levels={"bigram": 2.3},
        marks={"phase 2": 2.0},
    )
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines[:2]] == ["ours", "theirs"]
    assert list(ax.lines[0].get_ydata()) == [3.0, 2.0, 1.5]
    assert "bigram (2.300)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.get_text() == "phase 2" for t in ax.texts)
    with pytest.raises(ValueError, match="2 x values for 1 y values"):
        plot_curves({"bad": ([1, 2], [3.0])}, xlabel="x", ylabel="y")
