"""Progress for every wait: the rate and ETA from the second tick, one line per phase off a terminal, --quiet."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlx_video.cli import app
from mlx_video.cli.common import Rate
from tests.wan_tiny import TINY

T2V = ["generate", "--task", "t2v-5B", "--ckpt_dir", str(TINY), "--prompt", "x", "--size", "64*32"]
T2V += ["--frame_num", "5", "--sample_steps", "3", "--base_seed", "1"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_rate_excludes_the_first_tick():
    r = Rate()
    assert r.update(1, 10, 100.0) == (None, None)  # step 1 took the warm-up: no rate from it
    assert r.update(3, 10, 104.0) == (0.5, 14.0)  # 2 steps in 4 s; 7 left
    assert r.update(1, 10, 200.0) == (None, None)  # a stage run again starts over


def test_plain_lines_per_phase_off_a_terminal(tmp_path):
    r = CliRunner().invoke(app, [*T2V, "--save_file", str(tmp_path / "a.mp4")])
    assert r.exit_code == 0, r.output
    out = r.output
    for line in ("text encode: started", "text encode: done in", "denoise: started (3 steps)", "decode: done in"):
        assert line in out, out
    assert "it/s)" in out.split("denoise: done in")[1].splitlines()[0]
    assert "writing a.mp4: done in" in out and "write:" in out and "seed: 1" in out


def test_quiet_prints_nothing(tmp_path):
    r = CliRunner().invoke(app, [*T2V, "--quiet", "--save_file", str(tmp_path / "q.mp4")])
    assert r.exit_code == 0 and r.output == "", r.output
    assert (tmp_path / "q.mp4").is_file()
    r = CliRunner().invoke(app, [*T2V, "-q", "--frame_num", "6", "--save_file", str(tmp_path / "e.mp4")])
    assert r.exit_code == 2 and "4k+1" in r.output  # errors still reach stderr
