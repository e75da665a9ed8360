"""The whole-run benchmark (benchmarks/e2e.py) runs at tiny size on the CPU and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_e2e_tiny_writes_json(tmp_path):
    out = tmp_path / "e2e.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OUT=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", "--size", "tiny", "--case", "ti2v", "--steps", "2", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
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
