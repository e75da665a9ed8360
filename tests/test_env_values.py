"""Tuning environment variables with bad values: one line naming the variable (ValueError; the CLI exits 2),
before any model runs, never a bare ``float()`` / ``int()`` error, an overflow traceback or a failure after
the denoising."""

from __future__ import annotations

import pytest

from mlx_video import checks
from tests.helpers import run_cli
from tests.wan_tiny import TINY


@pytest.mark.parametrize("value", ["abc", "inf"])
def test_unfold_budget_refused_through_the_real_command(value, tmp_path):
    argv = ["generate", "--model", TINY, "--prompt", "a cat", "--dry-run"]
    p = run_cli(argv, tmp_path, 120, COLUMNS="400", MLX_VIDEO_CONV_UNFOLD_GB=value, MLX_VIDEO_CACHE=str(tmp_path / "c"))
    assert p.returncode == 2, p.stderr
    assert f"$MLX_VIDEO_CONV_UNFOLD_GB must be a finite number >= 0, got '{value}'" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_env_number(monkeypatch):
    monkeypatch.delenv("MLX_VIDEO_TEST_KNOB", raising=False)
    assert checks.env_number("MLX_VIDEO_TEST_KNOB", 4.0) == 4.0
    for raw, want in (("", 4.0), (" 0.5 ", 0.5), ("0", 0.0)):
        monkeypatch.setenv("MLX_VIDEO_TEST_KNOB", raw)
        assert checks.env_number("MLX_VIDEO_TEST_KNOB", 4.0) == want
    for raw in ("abc", "inf", "-inf", "nan", "-1", "1e400"):
        monkeypatch.setenv("MLX_VIDEO_TEST_KNOB", raw)
        with pytest.raises(ValueError, match=r"^\$MLX_VIDEO_TEST_KNOB must be a finite number >= 0, got"):
            checks.env_number("MLX_VIDEO_TEST_KNOB", 4.0)
    monkeypatch.setenv("MLX_VIDEO_TEST_KNOB", "2.5")
    with pytest.raises(ValueError, match="must be a whole number >= 0"):
        checks.env_number("MLX_VIDEO_TEST_KNOB", 1, whole=True)
    monkeypatch.setenv("MLX_VIDEO_TEST_KNOB", "1024")
    assert checks.env_number("MLX_VIDEO_TEST_KNOB", 1, whole=True) == 1024


def test_dequantize_threshold_env_names_the_variable(monkeypatch):
    from mlx_video.nn.blockwise import dequantize_pays

    monkeypatch.setenv("MLX_VIDEO_DEQUANTIZE_MIN_TOKENS", "2k")
    with pytest.raises(ValueError, match=r"\$MLX_VIDEO_DEQUANTIZE_MIN_TOKENS must be a whole number >= 0, got '2k'"):
        dequantize_pays(10, "cpu")
    monkeypatch.setenv("MLX_VIDEO_DEQUANTIZE_MIN_TOKENS", "100")
    assert not dequantize_pays(99, "cpu") and dequantize_pays(100, "cpu")
    monkeypatch.setenv("MLX_VIDEO_DEQUANTIZE_MIN_TOKENS", "")  # empty: the backend's threshold
    assert dequantize_pays(1, "cpu") and not dequantize_pays(1023, "cuda")


def test_ltx_conv3d_mode_refused_when_the_vae_is_built(monkeypatch):
    """An unknown $MLX_VIDEO_LTX_CONV3D fails when the VAE loads (before the pipelines denoise), naming the
    variable; it used to pass the load and fail at the first decode, after both stages had run."""
    import mlx_video.ltx2.video_vae as vv
    from tests.test_ltx2_video_vae import LTX2_DEC, LTX2_ENC, single_file, torch_vae, vae_config

    cfg = vae_config(LTX2_ENC, LTX2_DEC, "zeros")
    weights = vv.sanitize(single_file(*torch_vae(cfg, 0)), "lightricks")
    monkeypatch.setattr(vv, "CONV3D_MODE", "bogus")
    with pytest.raises(ValueError, match=r"unknown conv3d mode 'bogus' \(\$MLX_VIDEO_LTX_CONV3D"):
        vv.VideoVAE.from_weights(weights, cfg, parts=("decoder",))
    monkeypatch.setattr(vv, "CONV3D_MODE", "taps")
    assert vv.VideoVAE.from_weights(weights, cfg, parts=("decoder",)).dtype is not None
