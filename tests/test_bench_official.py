"""benchmarks/wan_e2e_official.py and benchmarks/e2e_cases.py run at tiny size on the CPU and write their JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.wan_e2e_official import _project
from tests.helpers import ROOT


def _run(module, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_official_whole_run_against_ours_tiny(tmp_path):
    out = tmp_path / "official.json"
    proc = _run("benchmarks.wan_e2e_official", "--size", "tiny", "--case", "ti2v", "--steps", "2", "--out", str(out))
    r = json.loads(out.read_text())
    o, m = r["official"], r["mlx"]
    assert list(o["phases"]) == ["text", "encode", "denoise", "decode"]  # ti2v: the image went through vae.encode
    assert len(o["step_s"]) == 2 and len(m["step_s"]) == 2
    assert o["tokens"] == m["e2e"]["tokens"] and o["latent"][1:] == m["e2e"]["latent"][1:4]  # same grid both sides
    assert o["offload_model"] and set(o["transfers"]) == {
        "t5_to_device_s",
        "t5_to_host_s",
        "dit_to_device_s",
        "dit_to_host_s",
    }
    assert o["output_shape"][1:] == [5, 64, 64] and o["whole_s"] >= sum(p["s"] for p in o["phases"].values()) * 0.99
    assert set(r["ratio_mlx_over_official"]) >= {"text", "encode", "denoise", "decode", "whole", "whole_50", "step"}
    assert "whole 50-step run MLX/official" in proc.stdout


def test_projection_keeps_the_first_step():
    assert _project(10.0, [3.0, 1.0, 1.2]) == 10.0 - 5.2 + 3.0 + 49 * 1.1
    assert _project(4.0, []) == 4.0


def test_extra_cases_tiny(tmp_path):
    for case in ("i2v-14B", "i2v-A14B-720p"):
        out = tmp_path / f"{case}.json"
        _run(
            "benchmarks.e2e_cases",
            "--size",
            "tiny",
            "--case",
            case,
            "--steps",
            "1",
            "--inject-context",
            "--out",
            str(out),
        )
        r = json.loads(out.read_text())
        assert r["case"] == case and len(r["step_s"]) == 1
    assert r["model"] == "i2v-A14B"
    r14 = json.loads((tmp_path / "i2v-14B.json").read_text())
    assert r14["task"] == "i2v-14B" and r14["latent"][-1] == 16  # Wan2.1 VAE latent channels
