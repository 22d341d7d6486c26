"""Chapter 11: peak memory measured in a fresh process, the cost formulas, and the three paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tfm_edu.attention import scaled_dot_product_attention
from tfm_edu.efficiency import memory
from tfm_edu.efficiency.cost import (
    attention_flops,
    attention_memory,
    describe_slopes,
    loglog_slope,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_explicit_attention_holds_the_t_by_s_matrix_and_tiled_does_not():
    T, B, H, Dh = 4096, 1, 4, 64  # the chapter's claim: tiled holds at most 1/8 at T = 4096
    explicit = memory.measure_peak("explicit", T, batch=B, heads=H, head_dim=Dh)
    tiled = memory.measure_peak("tiled", T, batch=B, heads=H, head_dim=Dh)
    assert explicit.method == tiled.method == "VmHWM"
    scores_bytes = B * H * T * T * 4  # one (B, H, T, S) float32 tensor: 256 MiB
    assert explicit.bytes >= scores_bytes
    assert explicit.bytes >= 8 * tiled.bytes
    # and both are close to what the cost model says each path holds
    for path, measured in (("explicit", explicit), ("tiled", tiled)):
        model = attention_memory(B, H, T, T, Dh, path=path)
        assert 0.5 * model <= measured.bytes <= 2 * model, (path, measured, model)


@linux_only
def test_the_child_prints_one_json_line():
    done = subprocess.run(
        [sys.executable, "-m", "tfm_edu.efficiency.memory", "--path", "sdpa", "--length", "64"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["path"] == "sdpa" and result["length"] == 64
    assert result["bytes"] >= 0 and result["baseline"] > 0 and result["method"] == "VmHWM"


def test_a_failing_child_raises_with_its_stderr(tmp_path, monkeypatch):
    if sys.platform == "win32":
        pytest.skip("the CPU measurement is not available on Windows")
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'out of memory, pretend' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(memory.sys, "executable", str(fake_python))
    with pytest.raises(RuntimeError, match=r"(?s)tiled at T=8 failed \(exit 3\).*pretend"):
        memory.peak_memory("tiled", 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "flash", "length": 8}, "path must be one of"),
        ({"path": "tiled", "length": 0}, "length must be a positive int"),
        ({"path": "tiled", "length": 8.0}, "length must be a positive int"),
        ({"path": "tiled", "length": 8, "block_size": 0}, "block_size"),
        ({"path": "tiled", "length": 8, "dtype": torch.int32}, "dtype must be one of"),
        ({"path": "tiled", "length": 8, "device": "mps"}, "device must be"),
    ],
)
def test_bad_requests_raise_before_any_process_starts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory.peak_memory(**kwargs)


@pytest.mark.parametrize("masked", [False, True])
def test_the_three_paths_compute_the_same_attention(masked):
    q, k, v, mask = memory.attention_inputs(12, batch=2, heads=2, head_dim=8,
                                            dtype=torch.float64, causal=masked)  # fmt: skip
    if masked:
        mask = mask & (torch.arange(12) != 3)[:, None]  # (T, S): query 3 sees nothing
    expected, _ = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, Dh)
    assert set(memory.ATTENTION_PATHS) == {"explicit", "sdpa", "tiled"}
    for name, run in memory.ATTENTION_PATHS.items():
        torch.testing.assert_close(run(q, k, v, mask), expected, rtol=0, atol=1e-12, msg=name)
    small_blocks = memory.attention_path("tiled", block_size=5)
    torch.testing.assert_close(small_blocks(q, k, v, mask), expected, rtol=0, atol=1e-12)


def test_sdpa_backend_names_a_kernel_that_runs():
    q, k, v, _ = memory.attention_inputs(16, head_dim=8)
    assert memory.sdpa_backend(q, k, v) in {"FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"}


# ----------------------------------------------------------------------- the cost formulas


def test_flops_count_two_matmuls_of_multiply_adds():
    assert attention_flops(2, 3, 5, 7, 11) == 4 * 2 * 3 * 5 * 7 * 11
    assert attention_flops(1, 4, 2048, 2048, 64) == 2 * 2 * 4 * 2048**2 * 64
    with pytest.raises(ValueError, match="head_dim must be a positive int"):
        attention_flops(1, 4, 8, 8, 0)


def test_memory_models_grow_like_t_squared_for_explicit_and_like_t_for_tiled():
    def model(path, T):
        return attention_memory(1, 4, T, T, 64, path=path)

    assert model("explicit", 2048) == (2 * 4 * 2048**2 + 4 * 2048 * 64) * 4
    assert model("explicit", 8192) / model("explicit", 4096) == pytest.approx(4, rel=0.02)
    assert model("tiled", 8192) / model("tiled", 4096) < 2.0
    assert model("sdpa", 4096) == model("tiled", 4096)
    assert attention_memory(1, 4, 64, 64, 64, path="tiled", dtype_bytes=8) == 2 * model("tiled", 64)
    with pytest.raises(ValueError, match="path must be one of"):
        attention_memory(1, 4, 8, 8, 8, path="flash")


def test_loglog_slope_recovers_a_power_law_and_describe_slopes_reads_it():
    lengths = [128, 256, 512, 1024, 2048]
    assert loglog_slope(lengths, [3e-9 * n**2 for n in lengths]) == pytest.approx(2.0)
    noisy_start = [1.0, 1.0] + [n for n in lengths[2:]]
    assert loglog_slope(lengths, noisy_start, min_x=512) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two distinct sizes"):
        loglog_slope(lengths, lengths, min_x=2048)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [0.0, 1.0])
    line = describe_slopes({"explicit": 1.96, "tiled": 2.02}, {"explicit": 2.0, "tiled": 0.9})
    assert line.startswith("explicit: time ~ T^2.0, memory ~ T^2.0; tiled: time ~ T^2.0")
    assert "like T^2 for explicit" in line and "at most like T for tiled" in line
