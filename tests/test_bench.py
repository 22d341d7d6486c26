"""The benchmark's method (interleaving, rotation, paired ratios, threads, clock), not speed."""

from __future__ import annotations

import re
import time

import pytest
import torch

from tfm_edu import bench


class FakeClock:
    """A clock that only moves when a candidate works: each call costs what the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float):
        def run() -> None:
            self.now += seconds

        return run


def test_compare_shuffles_each_round_so_no_candidate_always_runs_first():
    calls: list[str] = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    bench.compare(candidates, repeats=30, warmup=1, shuffle=True)
    assert calls[:3] == list("abc")  # the warm-up round, in order
    rounds = [tuple(calls[i : i + 3]) for i in range(3, len(calls), 3)]
    assert len(rounds) == 30 and all(sorted(r) == list("abc") for r in rounds)
    assert {r[0] for r in rounds} == set("abc")  # each one sometimes goes first
    assert len({r[r.index("a") - 1] for r in rounds if r[0] != "a"}) == 2  # a's neighbour varies
    calls.clear()
    bench.compare(candidates, repeats=2, warmup=0)
    assert calls == list("abcabc")  # without shuffle: the given order


def test_compare_times_per_call_with_calls_per_sample_chosen_from_the_slowest():
    clock = FakeClock()
    timings = bench.compare(
        {"fast": clock.work(0.001), "slow": clock.work(0.004)},
        repeats=5,
        warmup=0,
        number=None,
        clock=clock,
    )
    # 0.01 s per sample / 0.004 s for the slowest -> 3 calls per sample; times are per call
    assert timings["fast"].median == pytest.approx(0.001)
    assert timings["slow"].samples == pytest.approx((0.004,) * 5)
    assert bench.paired_ratio(timings["slow"], timings["fast"]) == pytest.approx((4.0, 4.0, 4.0))


def test_paired_ratio_is_the_median_of_round_by_round_ratios_not_a_ratio_of_medians():
    # Round 2 was hit by a burst of load that slowed both alike; round 3 spoiled only b.
    a = bench.Timing("a", 10.0, 3, (1.0, 10.0, 10.0))
    b = bench.Timing("b", 5.0, 3, (1.0, 10.0, 5.0))
    ratio, q1, q3 = bench.paired_ratio(a, b)
    assert ratio == 1.0  # the ratio of the medians would say 2.0
    assert q1 <= ratio <= q3 == 1.5
    with pytest.raises(ValueError, match="one compare"):
        bench.paired_ratio(a, bench.Timing("c", 1.0, 2, (1.0, 1.0)))


def test_benchmark_threads_sets_one_thread_then_restores_torch_and_numpy():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]

    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    with bench.benchmark_threads(1):
        assert torch.get_num_threads() == 1
        assert all(n == 1 for n in blas_threads())
    assert torch.get_num_threads() == torch_before
    assert blas_threads() == blas_before
    with bench.benchmark_threads(None):
        assert torch.get_num_threads() == torch_before


def test_the_clock_is_cpu_time_only_for_one_cpu_thread():
    cpu = torch.device("cpu")
    assert bench.benchmark_clock(cpu, 1) is time.thread_time
    assert bench.benchmark_clock(cpu, 2) is time.perf_counter
    assert bench.benchmark_clock(torch.device("cuda"), 1) is time.perf_counter


def test_attention_sizes_cover_the_sizes_the_course_quotes():
    sizes = bench.attention_sizes()
    for size in [(2, 128, 128, 4), (8, 128, 256, 8), (4, 256, 256, 8), (8, 64, 128, 4)]:
        assert size in sizes
    assert (2, 128, 128, 4) in bench.attention_sizes(quick=True)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_rows_report_paired_ratios_and_restore_the_threads(causal):
    before = torch.get_num_threads()
    (row,) = bench.attention_rows(
        [(1, 4, 8, 2)], repeats=3, device=torch.device("cpu"), causal=causal
    )
    assert torch.get_num_threads() == before
    assert row["B,T,D,H"] == "1,4,8,2"
    for key in ("ours/nn.MHA", "numpy/ours", "fused ratio"):
        assert row[key].endswith("x") and float(row[key][:-1]) > 0
    q1, q3 = map(float, row["ours/nn.MHA q1-q3"].split("-"))
    assert q1 <= float(row["ours/nn.MHA"][:-1]) <= q3


def test_bench_attention_prints_one_row_per_size_and_a_verdict(capsys, monkeypatch):
    sizes = [(1, 4, 8, 2), (2, 6, 8, 4)]
    monkeypatch.setattr(bench, "attention_sizes", lambda quick=False: sizes)
    rows = bench.bench_attention(["--repeats", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert [r["B,T,D,H"] for r in rows] == ["1,4,8,2", "2,6,8,4"]
    assert "cpu (1 thread)" in out and "CPU time of the timing thread" in out
    assert "1,4,8,2" in out and "2,6,8,4" in out and "slowest size: ours takes" in out


def test_bench_generate_times_both_paths_and_checks_their_tokens(capsys, tmp_path):
    from tfm_edu.checkpoints import save_checkpoint
    from tfm_edu.models.gpt import GPT, GPTConfig
    from tfm_edu.tokenize import CharTokenizer

    tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz ", unknown="unk")
    config = GPTConfig.tiny(vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    path = tmp_path / "tiny_gpt"
    save_checkpoint(GPT(config), path, config, command="tests",
                    extra={"tokenizer": tokenizer.to_dict()})  # fmt: skip
    before = torch.get_num_threads()
    assert bench.BENCHMARKS["generate"][0] is bench.bench_generate
    rows = bench.bench_generate(
        ["--checkpoint", str(path), "--tokens", "4", "40", "--repeats", "2", "--device", "cpu"]
    )
    out = capsys.readouterr().out
    assert torch.get_num_threads() == before
    assert [r["new tokens"] for r in rows] == ["4", "40"]  # 40 > the block size of 32
    assert all(r["identical tokens"] == "yes" and r["rounds"] == "2" for r in rows)
    for row in rows:
        assert float(row["cached tok/s"]) > 0 and float(row["uncached tok/s"]) > 0
        q1, q3 = map(float, row["speed-up q1-q3"].split("-"))
        assert row["speed-up"].endswith("x") and q1 <= float(row["speed-up"][:-1]) <= q3
    assert "cpu (1 thread)" in out and "CPU time of the timing thread" in out
    said = re.search(r"at 40 new tokens the cache is ([\d.]+)x faster", out)
    assert said and abs(float(said.group(1)) - float(rows[1]["speed-up"][:-1])) <= 0.06
    assert "block size (32" in out and "exactly the same tokens" in out


def test_bench_generate_spends_fewer_rounds_on_longer_runs():
    rounds = [bench.generate_repeats(n) for n in (64, 256, 512)]
    assert rounds == sorted(rounds, reverse=True) and rounds[0] > rounds[-1] >= 3
