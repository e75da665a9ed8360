"""LTX-2 memory estimate in the CLI (`--memory-budget`, `--dry-run`): printed or refused before any weights load."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlx_video.cli import app
from mlx_video.ltx2 import loading, memory
from tests.ltx_tiny import convert_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return convert_tiny(tmp_path_factory.mktemp("ltx") / "tiny", "distilled")


@pytest.fixture
def no_loads(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(loading, "load_safetensors", boom)


def cli(*args):
    return CliRunner().invoke(app, ["generate", *args])


BASE = ["--prompt", "a cat", "--pipeline", "distilled", "--height", "128", "--width", "128", "--num-frames", "9"]


def test_estimate_counts_the_weights_and_the_tokens(model_dir):
    small = memory.ltx_phase_peaks(model_dir, "distilled", 9, 128, 128)
    big = memory.ltx_phase_peaks(model_dir, "distilled", 121, 512, 768)
    weights = sum((model_dir / n).stat().st_size for n in memory.LTX_RUN_FILES)
    assert small["generate"] > weights and small["text"] >= (model_dir / "gemma.safetensors").stat().st_size
    assert memory.ltx_tokens(121, 512, 768) == 6144
    per_token = (big["generate"] - small["generate"]) / (6144 - memory.ltx_tokens(9, 128, 128))
    assert per_token == pytest.approx(memory.LTX_ACT_BYTES_PER_TOKEN)


def test_dry_run_prints_the_estimate_and_loads_nothing(model_dir, no_loads, tmp_path):
    out = tmp_path / "o.mp4"
    r = cli("--model", str(model_dir), *BASE, "--dry-run", "--output-path", str(out))
    assert r.exit_code == 0, r.output
    assert "memory estimate for 9x128x128 (distilled): peak about" in r.stdout and not out.exists()


def test_over_budget_is_refused_before_loading(model_dir, no_loads, tmp_path):
    out = tmp_path / "o.mp4"
    r = cli("--model", str(model_dir), *BASE, "--memory-budget", "0.001", "--output-path", str(out))
    assert r.exit_code == 2 and not out.exists() and "Traceback" not in r.output
    line = r.stderr.strip()
    assert "\n" not in line and "LTX-2 at 9x128x128 needs about" in line and "more than the budget 0.00 GiB" in line


def test_bf16_folder_counts_the_float32_decoders_at_half(tmp_path):
    """The VAEs and vocoder are stored float32 and load in bf16 unless the folder is float32."""
    import json

    sizes = {"transformer.safetensors": 1000, "video_vae.safetensors": 400, "audio_vae.safetensors": 100}
    sizes["vocoder.safetensors"] = 100
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * n)
    peaks = {}
    for dtype in ("float32", "bfloat16"):
        (tmp_path / "config.json").write_text(json.dumps({"dtype": dtype}))
        peaks[dtype] = memory.ltx_phase_peaks(tmp_path, "dev", 9, 128, 128, encode_text=False)["generate"]
    assert peaks["float32"] - peaks["bfloat16"] == pytest.approx(300)
    assert loading.decoder_dtype({"dtype": "bfloat16"}) == loading.mx.bfloat16
    assert loading.decoder_dtype({"dtype": "float32"}) == loading.mx.float32
