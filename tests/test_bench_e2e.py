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
    proc = subprocess.run([sys.executable, "-m", "benchmarks.e2e", "--size", "tiny", "--case", "ti2v", "--steps", "2",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert list(r["phases"]) == ["plan", "text", "encode", "denoise", "decode", "write"]
    assert len(r["step_s"]) == 2 and r["denoise_50_s"] > 0
    for row in r["phases"].values():
        assert row["s"] >= 0 and row["mlx_peak_gib"] >= 0
    assert r["phases"]["encode"]["mlx_peak_gib"] > 0          # the image anchor went through the VAE encoder
    assert r["phases"]["denoise"]["resident"] == ["vae"]      # offload freed the DiT; the VAE stays from encode
    assert set(r["estimate_gib"]) == {"text", "image", "denoise", "decode"}
    assert r["write_error"] is None and (tmp_path / "e2e_ti2v_tiny.mp4").stat().st_size > 0
    assert "== e2e ti2v" in proc.stdout and json.loads((tmp_path / "bench.jsonl").read_text())["case"] == "ti2v"
