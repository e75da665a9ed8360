"""Video to video (SDEdit) on the tiny TI2V-5B: strength 1 is plain generation from the same noise, strength 0 the
input's VAE round trip, strength S starts at step int((1 - S)·steps) from (1 - σ)·z + σ·noise; frames and size
from the file; bad inputs are one-line errors."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.io.images import to_uint8
from mlx_video.io.video import write_video
from mlx_video.sampling.solvers import make_solver
from mlx_video.wan import denoise as D
from mlx_video.wan import pipeline as P
from mlx_video.wan.conditions import read_video
from tests.helpers import IMAGES
from tests.wan_tiny import run_cli, spy_on, tiny_inputs, tiny_pipeline

SHAPE = (1, 3, 4, 4, 48)  # 9 frames of 64*64


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory)


def _clip(path, n=11, w=64, h=64):
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack(
        [np.stack([(x * 4 + 9 * i) % 256, (y * 4) % 256, np.full_like(x, 20 * i)], -1) for i in range(n)]
    ).astype(np.uint8)
    return write_video(path, frames, 24)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _clip(tmp_path_factory.mktemp("v2v") / "in.mp4")


@pytest.fixture(scope="module")
def inputs(pipe):
    return tiny_inputs(pipe, SHAPE, sample_steps=4)


def test_sdedit_start_step():
    assert [D.sdedit_start(s, 10) for s in (1.0, 0.9, 0.75, 0.5, 0.35, 0.1, 0.0)] == [0, 1, 2, 5, 6, 9, 10]


@pytest.mark.parametrize("task,images", [("t2v-5B", []), ("ti2v-5B", [IMAGES / "astronaut.png"])])
def test_strength_one_equals_plain_generation(pipe, inputs, clip, task, images):
    plain = pipe.generate(task=task, images=images, **inputs)
    v2v = pipe.generate(task=task, images=images, video=clip, strength=1.0, **inputs)
    np.testing.assert_array_equal(np.array(v2v.latents), np.array(plain.latents))
    assert v2v.params["video"] == str(clip) and v2v.params["strength"] == 1.0


def test_strength_zero_returns_the_vae_round_trip(pipe, inputs, clip, monkeypatch):
    spy = spy_on(pipe, monkeypatch)
    res = pipe.generate(task="t2v-5B", video=clip, strength=0.0, **inputs)
    assert spy.calls == []
    video = read_video(clip, 64, 64, 9)[0]
    z = pipe.vae.encode(mx.array(video)[None])
    np.testing.assert_array_equal(np.array(res.latents), np.array(z))
    np.testing.assert_array_equal(res.frames, to_uint8(np.array(pipe.vae.decode(z)[0])))
    assert np.abs(res.frames.astype(int) - to_uint8(video).astype(int)).mean() > 1  # a round trip, not the input


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_partial_strength_noises_to_the_start_sigma_and_runs_the_rest(pipe, inputs, clip, monkeypatch, solver):
    spy = spy_on(pipe, monkeypatch)
    res = pipe.generate(task="t2v-5B", video=clip, strength=0.5, solver=solver, **inputs)
    full = make_solver(solver, 4, 5.0)
    z = np.array(pipe.vae.encode(mx.array(read_video(clip, 64, 64, 9)[0])[None]))
    sigma = float(full.sigmas[2])
    assert len(spy.calls) == 2 and [int(t[0]) for _, t in spy.calls] == full.timesteps[2:]
    np.testing.assert_allclose(
        spy.calls[0][0][:1], (1 - sigma) * z + sigma * np.array(inputs["noise"]), rtol=1e-6, atol=1e-6
    )
    if solver == "euler":  # stateless: steps 2..3 of the full grid from the same start are the same run
        dit = pipe.dit
        ctx = dit.embed_text(inputs["context"])
        out = D.denoise(
            dit, mx.array(spy.calls[0][0][:1]), full, ctx, dit.rope_tables((3, 2, 2)), 5.0, steps=range(2, 4)
        )
        np.testing.assert_allclose(np.array(res.latents), np.array(out), rtol=1e-5, atol=1e-5)


def test_frames_and_size_from_the_video(tmp_path, clip):
    s = P.WanSettings(task="t2v-5B", video=clip).validate()
    assert (s.frame_num, s.size, s.strength) == (9, "64*64", 0.8)
    odd = _clip(tmp_path / "odd.mp4", n=6, w=70, h=100)
    s = P.WanSettings(task="t2v-5B", video=odd).validate()
    assert (s.frame_num, s.size) == (5, "64*96")
    assert read_video(odd, 64, 96, 5)[0].shape == (5, 96, 64, 3)  # [F, height, width, 3]
    assert P.WanSettings(task="t2v-5B", video=clip, frame_num=5, size="32*32").validate().frame_num == 5


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(frame_num=13), "has 11 frames; frame_num 13"),
        (dict(strength=1.5), r"strength must be in \[0, 1\]"),
        (dict(task="i2v-14B", images=[IMAGES / "astronaut.png"]), "video to video is for"),
        (dict(video=None, strength=0.5), "give a video too"),
        (dict(video="missing.mp4"), "video not found"),
        (dict(video="garbage"), "cannot read video"),
    ],
)
def test_bad_video_inputs_are_one_line_errors(clip, tmp_path, kw, match):
    if kw.get("video") == "garbage":
        (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 10)
        kw = dict(video=tmp_path / "garbage.mp4")
    kw = dict(dict(task="t2v-5B", video=clip), **kw)
    with pytest.raises(ValueError, match=match) as e:
        P.WanSettings(**kw).validate()
    assert "\n" not in str(e.value)


def test_cli_video_to_video(tmp_path, clip, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "v2v.mp4"
    r = run_cli("--prompt", "x", "--video", clip, "--strength", 0.5, "--sample_steps", 2, "--save_file", out)
    assert r.exit_code == 0, r.output
    assert read_video(out)[1:] == (9, (64, 64))
