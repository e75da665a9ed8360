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


# ----------------------------------------------------------------------------- downloads and conversion

REPO_T2V = ["generate", "--task", "t2v-5B", "--ckpt_dir", "Wan-AI/Wan2.2-TI2V-5B", "--prompt", "x", "--size", "64*32"]
REPO_T2V += ["--frame_num", "5", "--sample_steps", "2", "--base_seed", "1"]


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    from tests.fake_hub import install

    return install(tmp_path, monkeypatch)


def _phase_lines(out: str, phase: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(f"{phase} ")]


def test_download_and_conversion_plain_lines_per_phase(fake_hub, tmp_path):
    r = CliRunner().invoke(app, [*REPO_T2V, "--save_file", str(tmp_path / "a.mp4")])
    assert r.exit_code == 0, r.output
    dl, cv = _phase_lines(r.output, "download"), _phase_lines(r.output, "convert")
    assert len(dl) == 2 and dl[0].startswith("download Wan-AI/Wan2.2-TI2V-5B: started (7 files, 3.47 MB)"), dl
    assert dl[1].startswith("download Wan-AI/Wan2.2-TI2V-5B: done in ") and "MB/s)" in dl[1]
    assert len(cv) == 2 and "convert wan-Wan2.2-TI2V-5B-" in cv[0] and ": started (3 files, 3.44 MB)" in cv[0], cv
    assert ": done in " in cv[1]
    assert not any(f in r.output for f in ("Wan2.2_VAE.pth", "tokenizer.json"))  # no line per file or per chunk
    assert "denoise: done in" in r.output and (tmp_path / "a.mp4").is_file()


def test_download_and_conversion_quiet(fake_hub, tmp_path):
    r = CliRunner().invoke(app, [*REPO_T2V, "--quiet", "--save_file", str(tmp_path / "q.mp4")])
    assert r.exit_code == 0 and r.output == "", r.output
    assert fake_hub.downloaded("Wan-AI/Wan2.2-TI2V-5B") and (tmp_path / "q.mp4").is_file()
    r = CliRunner().invoke(app, ["convert", "Lightricks/LTX-2", str(tmp_path / "l"), "--quiet"])
    assert r.exit_code == 0 and r.output == "", r.output
    assert (tmp_path / "l" / "config.json").is_file()


def test_convert_command_plain_lines(fake_hub, tmp_path):
    r = CliRunner().invoke(app, ["convert", "Lightricks/LTX-2", str(tmp_path / "l"), "--variant", "distilled"])
    assert r.exit_code == 0, r.output
    dl, cv = _phase_lines(r.output, "download"), _phase_lines(r.output, "convert")
    assert [ln.split(":")[0] for ln in dl] == [
        f"download {g}" for g in ("google/gemma-3-12b-it-qat-q4_0-unquantized",)
    ] * 2 + ["download Lightricks/LTX-2"] * 2, dl
    assert "(2 files, " in dl[2] and len(cv) == 2 and cv[0].startswith("convert l: started (3 files, ")
    assert r.output.strip().splitlines()[-1] == f"converted -> {tmp_path / 'l'}"


def test_rich_bars_per_file(tmp_path):
    import io

    from rich.console import Console

    from mlx_video.cli.common import file_progress
    from mlx_video.io.progress import Phase

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with file_progress(console, "rich") as report:
        p = Phase(report, "download", "org/repo", {"a.safetensors": 3_000_000, "b.json": 10})
        p.file("a.safetensors", 1_500_000)
        p.finish_files(["a.safetensors", "b.json"])
        p.finish()
    out = buf.getvalue()
    assert "download org/repo" in out and "a.safetensors" in out and "b.json" in out and "3.0" in out
