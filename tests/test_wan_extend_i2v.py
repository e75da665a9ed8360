"""Extension on the I2V models (tiny official-layout Wan2.2 I2V-A14B, Wan2.1 I2V-14B with CLIP, Wan2.1
FLF2V-14B): each window is the task's own I2V run (parity-tested against the official loops in
test_wan_i2v.py / test_wan_flf2v.py) with the last frame of the clip or of the previous window as its first
image, so a window equals a plain run on that frame saved as a PNG; the one overlap frame is crossfaded."""

import json

import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from mlx_video.io.images import to_uint8
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from mlx_video.wan.conditions import read_video
from mlx_video.wan.extend import join_windows
from tests.helpers import IMAGES
from tests.test_wan_i2v import A14B, I2V21, ROOT
from tests.test_wan_v2v import _clip
from tests.wan_tiny import contexts

FLF21 = ROOT / "assets" / "tiny-Wan2.1-FLF2V-14B"
IMG = IMAGES / "chelsea.png"
RUN = dict(frame_num=9, sample_steps=2, sample_shift=5.0, guide_scale=4.0)


def _last_frame(path) -> np.ndarray:
    """The file's last frame, decoded here independently (uint8 [H, W, 3] at its own size)."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])][-1]


def _png(frame: np.ndarray, path):
    Image.fromarray(frame).save(path)
    return path


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    return P.WanPipeline(convert_wan(A14B, tmp_path_factory.mktemp("conv") / "a14b", dtype="float32"), mx.float32)


@pytest.fixture(scope="module")
def i2v21(tmp_path_factory):
    out = convert_wan(I2V21, tmp_path_factory.mktemp("conv") / "i2v21", dtype="float32")
    return P.WanPipeline(out, dtype=mx.float32, offload=False)


def test_a14b_segments_condition_each_window_on_the_last_frame(a14b, tmp_path, monkeypatch):
    ctx, shapes = contexts(a14b.cfg["dit"]["text_dim"]), []
    real = a14b.denoise

    def spy(plan, c, noise=None, progress=None):
        shapes.append((plan.shape, tuple(c.cond.y().shape)))  # one window's latents and y, every window
        return real(plan, c, noise, progress)

    monkeypatch.setattr(a14b, "denoise", spy)
    res = a14b.generate(task="i2v-A14B", images=[IMG], size="64*48", segments=2, seed=5, context=ctx, **RUN)
    monkeypatch.undo()
    one = a14b.generate(task="i2v-A14B", images=[IMG], size="64*48", seed=5, context=ctx, **RUN)
    assert res.frames.shape == (9 + 9 - 1,) + one.frames.shape[1:]
    assert shapes == [(one.latents.shape, one.latents.shape[:4] + (20,))] * 2
    np.testing.assert_array_equal(res.frames[:8], one.frames[:8])  # window 1: the plain I2V run
    # window 2 = the plain I2V run (seed + 1) on window 1's last frame as its image
    two = a14b.generate(
        task="i2v-A14B", images=[_png(one.frames[8], tmp_path / "last.png")], size="64*48", seed=6, context=ctx, **RUN
    )
    np.testing.assert_array_equal(np.array(res.latents), np.array(two.latents))
    np.testing.assert_array_equal(res.frames[8], join_windows(one.frames, two.frames, 1)[8])
    np.testing.assert_array_equal(res.frames[9:], two.frames[1:])
    assert res.params["overlap"] == 1 and res.params["segments"] == 2


def test_i2v14b_extend_takes_the_clips_last_frame_for_y_and_clip(i2v21, tmp_path):
    clip, ctx = _clip(tmp_path / "in.mp4", n=11), contexts(i2v21.cfg["dit"]["text_dim"])
    res = i2v21.generate(task="i2v-14B", extend=clip, context=ctx, **RUN)
    last = _png(_last_frame(clip), tmp_path / "last.png")
    plain = i2v21.generate(task="i2v-14B", images=[last], size="64*64", context=ctx, **RUN)
    video = to_uint8(read_video(clip, 64, 64)[0])
    assert res.frames.shape == (11 + 9 - 1, 64, 64, 3)
    np.testing.assert_array_equal(np.array(res.latents), np.array(plain.latents))  # y and CLIP of the last frame
    np.testing.assert_array_equal(res.frames[:10], video[:10])  # the clip, untouched before the overlap
    np.testing.assert_array_equal(res.frames[10], join_windows(video, plain.frames, 1)[10])
    np.testing.assert_array_equal(res.frames[11:], plain.frames[1:])
    assert res.params["extend"] == str(clip) and res.params["images"] == []


def test_flf2v_extend_bridges_the_clip_to_the_last_frame(tmp_path):
    pipe = P.WanPipeline(convert_wan(FLF21, tmp_path / "flf", dtype="float32"), dtype=mx.float32, offload=False)
    clip, ctx = _clip(tmp_path / "in.mp4", n=6), contexts(pipe.cfg["dit"]["text_dim"])
    res = pipe.generate(task="flf2v-14B", extend=clip, images=[IMG], context=ctx, **RUN)
    first = _png(_last_frame(clip), tmp_path / "first.png")
    plain = pipe.generate(task="flf2v-14B", images=[first, IMG], size="64*64", context=ctx, **RUN)
    assert res.frames.shape == (6 + 9 - 1, 64, 64, 3)
    np.testing.assert_array_equal(np.array(res.latents), np.array(plain.latents))
    np.testing.assert_array_equal(res.frames[6:], plain.frames[1:])


def test_cli_i2v_extend_and_its_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlx_video.cli import app

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    clip, out = _clip(tmp_path / "in.mp4", n=5), tmp_path / "long.mp4"
    base = ["generate", "--ckpt_dir", str(A14B), "--prompt", "x", "--frame_num", "5", "--sample_steps", "1"]
    base += ["--extend", str(clip)]
    r = CliRunner().invoke(app, base + ["--task", "i2v-A14B", "--segments", "2", "--save_file", str(out)])
    assert r.exit_code == 0, r.output
    assert read_video(out)[1] == 5 + 2 * 4
    import av

    with av.open(str(out)) as c:
        meta = json.loads(c.metadata["comment"])
    assert meta["extend"] == str(clip) and meta["overlap"] == 1 and meta["overlap_blend"] == "linear"
    for extra, msg in [
        (["--task", "i2v-A14B", "--image", str(IMG)], "give no image"),
        (["--task", "i2v-A14B", "--overlap", "5"], "overlap must be 1"),
        (["--task", "flf2v-A14B", "--first_frame", str(IMG), "--last_frame", str(IMG)], "--last_frame only"),
        (["--task", "flf2v-A14B", "--last_frame", str(IMG), "--segments", "2"], "segments 1"),
    ]:
        bad = tmp_path / "bad.mp4"
        r = CliRunner().invoke(app, base + extra + ["--save_file", str(bad)])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, (extra, r.output)
        assert not bad.exists()
