"""Hub resolution without network, and --offload_model freeing each component after its stage."""

import mlx.core as mx
import pytest

from mlx_video.io.hub import DownloadError, download, looks_like_repo_id
from mlx_video.wan.checkpoint import convert_wan
from mlx_video.wan.pipeline import WanPipeline
from tests.wan_tiny import TINY


def test_repo_id_without_network_says_so(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read from the environment at import
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    assert looks_like_repo_id("Wan-AI/Wan2.2-TI2V-5B") and not looks_like_repo_id(str(TINY))
    with pytest.raises(DownloadError, match="not in the Hugging Face cache .*HF_HUB_OFFLINE"):
        download("Wan-AI/Wan2.2-TI2V-5B", ["config.json"])


def test_offload_frees_text_encoder_before_dit_and_dit_before_decode(tmp_path):
    pipe = WanPipeline(convert_wan(TINY, tmp_path / "m", dtype="float32"), dtype=mx.float32, offload=True)
    seen = []
    vae = pipe.vae
    decode_frames = vae.decode_frames  # the untiled decode's path (chunk by chunk to uint8)

    def spy_decode(z, *a, **k):
        seen.append(("decode", pipe._text is None, pipe._dit is None))
        return decode_frames(z, *a, **k)

    vae.decode_frames = spy_decode

    def progress(stage, i, n):
        if stage == "denoise":
            seen.append((stage, pipe._text is None, pipe._dit is None))

    pipe.generate(task="t2v-5B", prompt="a cat", size="64*32", frame_num=5, sample_steps=2, progress=progress)
    assert seen[0] == ("denoise", True, False)  # text encoder gone while the DiT runs
    assert seen[-1] == ("decode", True, True)  # DiT gone before the VAE decodes


def test_convert_command_handles_both_families(tmp_path):
    from typer.testing import CliRunner

    from mlx_video.cli import app
    from tests.wan_tiny import ROOT

    r = CliRunner().invoke(app, ["convert", str(ROOT / "assets" / "tiny-LTX-2"), str(tmp_path / "ltx")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["info", str(tmp_path / "ltx")])
    assert '"mlx_video/ltx2/1"' in r.output
    r = CliRunner().invoke(app, ["convert", str(TINY), str(tmp_path / "wan"), "--dtype", "float32"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "nothing"), str(tmp_path / "x")])
    assert r.exit_code == 2 and "not found" in r.output


def test_vae_in_bf16_keeps_float32_latents_and_stays_close(tmp_path):
    """--vae_dtype bfloat16: latents stay float32, decode within bf16 tolerance of the float32 VAE."""
    from tests.oracles import rel_err

    pipe = WanPipeline(convert_wan(TINY, tmp_path / "m", dtype="float32"), dtype=mx.float32, vae_dtype=mx.bfloat16)
    assert pipe.vae.dtype == mx.bfloat16
    z = mx.random.normal((1, 2, 2, 4, 48), key=mx.random.key(0))
    ref = WanPipeline(tmp_path / "m", dtype=mx.float32).vae.decode(z)
    out = pipe.vae.decode(z)
    assert out.dtype == mx.float32 and 1e-4 < rel_err(out, ref) < 2e-2


def test_public_api_names_resolve():
    import mlx_video

    for name in mlx_video.__all__:
        assert getattr(mlx_video, name) is not None
