"""The whole-run benchmark (benchmarks/e2e.py) runs at tiny size on the CPU and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _e2e(tmp_path, *args, timeout=600):
    """``python -m benchmarks.e2e ARGS --out tmp_path/e2e.json`` with ``$OUT`` = tmp_path (must succeed):
    the finished process and its JSON record."""
    out = tmp_path / "e2e.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OUT=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_e2e_tiny_writes_json(tmp_path):
    proc, r = _e2e(tmp_path, "--size", "tiny", "--case", "ti2v", "--steps", "2", timeout=300)
    assert list(r["phases"]) == ["plan", "text", "encode", "denoise", "decode", "write"]
    assert len(r["step_s"]) == 2 and r["denoise_50_s"] > 0
    for row in r["phases"].values():
        assert row["s"] >= 0 and row["mlx_peak_gib"] >= 0
    assert r["phases"]["encode"]["mlx_peak_gib"] > 0  # the image anchor went through the VAE encoder
    assert r["phases"]["denoise"]["resident"] == ["vae"]  # offload freed the DiT; the VAE stays from encode
    assert set(r["estimate_gib"]) == {"text", "image", "denoise", "decode"}
    assert r["write_error"] is None and (tmp_path / "e2e_ti2v_tiny.mp4").stat().st_size > 0
    assert "== e2e ti2v" in proc.stdout and json.loads((tmp_path / "bench.jsonl").read_text())["case"] == "ti2v"


def test_quant_modes_tiny_parity_bounds(tmp_path):
    """benchmarks/quant_modes.py at tiny size: every MLX mode runs and keeps its error against bf16 within a
    bound (measured 2.5e-2 affine8, 1.3e-1 affine4, 3.5e-2 mxfp8, 1.6e-1 mxfp4, 1.3e-1 nvfp4; bounds ~2x)."""
    from benchmarks import quant_modes

    r = quant_modes.main(["--size", "tiny", "--warmup", "0", "--repeat", "1", "--out", str(tmp_path / "q.json")])
    bounds = {"affine8": 5e-2, "affine4": 0.25, "mxfp8": 7e-2, "mxfp4": 0.3, "nvfp4": 0.25}
    for mode, bound in bounds.items():
        row = r["rows"][mode]
        assert 0 < row["rel_err"] < bound, (mode, row)
        assert row["weights_gib"] < r["rows"]["bf16"]["weights_gib"]
    assert json.loads((tmp_path / "q.json").read_text())["rows"].keys() == r["rows"].keys()


def test_e2e_mid_widths_estimate_within_25_percent(tmp_path):
    """The whole run (benchmarks/e2e.py) on the CPU at mid widths (the real Wan2.1 VAE; an A14B-shaped pair of
    2-block DiTs of width 1024; injected text contexts): each phase's MLX peak within 25% of the planner's
    estimate for the same settings, and no second expert's weights on top of the first at the switch."""
    from benchmarks.random_models import wan_config
    from mlx_video import memory as M

    args = ["--size", "mid", "--case", "i2v-A14B", "--steps", "2", "--layers", "2", "--dit-dim", "1024"]
    args += ["--video", "5x16x16", "--inject-context"]
    _, r = _e2e(tmp_path, *args)
    est = r["estimate_gib"]
    for phase, key in (("encode", "image"), ("denoise", "denoise"), ("decode", "decode")):
        measured = r["phases"][phase]["mlx_peak_gib"]
        assert abs(est[key] / measured - 1) < 0.25, (phase, est[key], measured)
    assert abs(max(est.values()) / r["peak_gib"] - 1) < 0.25
    # the switch to the low-noise expert (step 2) adds at most a fraction of one expert's weights to the peak
    expert = M.weight_bytes(M.wan_sizes(wan_config("i2v-A14B", layers=2, dim=1024)).dit_params, "float32") / M.GIB
    assert r["step_peak_gib"][1] - r["step_peak_gib"][0] < 0.5 * expert, (r["step_peak_gib"], expert)


@pytest.mark.parametrize(
    "budget,streamed",
    [(0.014, 2), (0.022, None)],  # GiB: DiT blocks streamed (2 resident); the DiT quantized at load (4-bit)
)
def test_e2e_budget_plan_streams_or_quantizes_from_a_weights_file(tmp_path, budget, streamed):
    """benchmarks/e2e.py --budget runs whatever plan the planner picks: a 20-block DiT of width 256 (tiny size, CPU,
    injected contexts) is written once to a safetensors file in the converted layout, then streamed block by block
    from it (or quantized as it loads from it); each phase's MLX peak within 25% of the estimate, the streamed
    denoise well under the DiT's weights, and the folder removed after."""
    from benchmarks.random_models import wan_config
    from mlx_video import memory as M

    args = ["--size", "tiny", "--case", "t2v", "--steps", "1", "--layers", "20", "--dit-dim", "256"]
    args += ["--video", "5x32x32", "--inject-context", "--budget", str(budget)]
    _, r = _e2e(tmp_path, *args)
    plan = r["memory_plan"]
    assert plan["stream_blocks"] == streamed and r["stream_blocks"] == streamed
    assert (plan["quantize_bits"] is None) == bool(streamed)
    assert list(r["weights_written"]) == ["dit"] and r["weights_written"]["dit"] > 0
    assert not os.path.exists(r["weights_folder"])  # config, tokenizer and the weights file removed
    est = r["estimate_gib"]
    assert est == plan["phases_gib"] and r["plan_for"] == "cpu"
    for phase, key in (("denoise", "denoise"), ("decode", "decode")):
        measured = r["phases"][phase]["mlx_peak_gib"]
        assert abs(est[key] / measured - 1) < 0.25, (phase, est[key], measured)
    assert r["phases"]["denoise"]["draw_s"] == 0  # read from the file, not drawn
    dit = M.weight_bytes(M.wan_sizes(wan_config("ti2v-5B", narrow=True, layers=20, dim=256)).dit_params, "float32")
    if streamed:
        assert r["phases"]["denoise"]["mlx_peak_gib"] < 0.3 * dit / M.GIB
