"""Seeding, device choice and the benchmark harness (which is tested for behaviour, not speed)."""

import random

import numpy as np
import pytest
import torch

from tfm_edu import bench, seed_everything
from tfm_edu.device import describe, pick


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()  # noqa: NPY002

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_pick_returns_an_available_device():
    device = pick()
    assert torch.zeros(1, device=device).device.type == device.type
    assert pick("cpu") == torch.device("cpu")
    assert describe(torch.device("cpu")).startswith("cpu (")
    with pytest.raises(ValueError, match="prefer must be"):
        pick("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            pick("cuda")


def test_compare_interleaves_and_counts_every_call():
    calls = []
    timings = bench.compare(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4  # warm-up round, then three timed rounds, interleaved
    assert set(timings) == {"a", "b"} and all(t.repeats == 3 for t in timings.values())
    assert all(t.median >= 0 for t in timings.values())


def test_format_table_aligns_columns():
    table = bench.format_table([{"x": "1", "long name": "2.00x"}, {"x": "10", "long name": "3x"}])
    lines = table.splitlines()
    assert lines[0] == " x  long name"
    assert len({len(line) for line in lines}) == 1


def test_attention_benchmark_runs_and_reports_ratios():
    rows = bench.attention_rows([(1, 4, 8, 2)], repeats=1, device=torch.device("cpu"))
    (row,) = rows
    assert row["B,T,D,H"] == "1,4,8,2"
    assert row["ours/nn.MHA"].endswith("x") and row["numpy/ours"].endswith("x")


def test_cpu_threads_sets_then_restores():
    from tfm_edu.device import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="at least one thread"), cpu_threads(0):
        pass


def test_benchmarks_are_registered_functions_and_main_shows_help(capsys):
    assert set(bench.BENCHMARKS) == {
        "attention", "bert", "generate", "student", "scaling", "int8", "prune"
    }  # fmt: skip
    for name, (run, description) in bench.BENCHMARKS.items():
        assert callable(run) and description, name
    with pytest.raises(SystemExit) as exit_info:
        bench.main([])
    assert exit_info.value.code == 0 and "attention" in capsys.readouterr().out
