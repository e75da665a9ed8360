"""Extension on the tiny TI2V-5B: the continuation's first frames are the VAE round trip of the input's last
frames (their latents are the anchors), the output is the input followed by the new frames, and two segments make
one video of the right length without repeating the overlap."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.io.images import to_uint8
from mlx_video.wan import pipeline as P
from mlx_video.wan.conditions import read_video
from mlx_video.wan.extend import join_windows
from tests.test_wan_v2v import _clip
from tests.wan_tiny import TINY, run_cli, tiny_inputs, tiny_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(pipe):
    return tiny_inputs(pipe, sample_steps=2)


def test_continuation_starts_with_the_inputs_last_frames(pipe, inputs, tmp_path):
    clip = _clip(tmp_path / "in.mp4", n=11)
    res = pipe.generate(task="t2v-5B", extend=clip, overlap=5, noise=mx.random.normal((1, 3, 4, 4, 48)), **inputs)
    video = read_video(clip, 64, 64)[0]
    assert res.frames.shape == (11 + 9 - 5, 64, 64, 3)
    np.testing.assert_array_equal(res.frames[:6], to_uint8(video)[:6])  # the input before the overlap, untouched
    z = pipe.vae.encode(mx.array(video[-5:])[None])  # its last 5 frames: latents 0..1
    np.testing.assert_array_equal(np.array(res.latents[:, :2]), np.array(z))
    window = to_uint8(np.array(pipe.vae.decode(res.latents)[0]))
    trip = to_uint8(np.array(pipe.vae.decode(z)[0]))
    np.testing.assert_array_equal(window[:5], trip)  # the window's first 5 frames = the VAE round trip
    np.testing.assert_array_equal(res.frames[6:11], join_windows(to_uint8(video), window, 5)[6:11])
    np.testing.assert_array_equal(res.frames[11:], window[5:])
    # the overlap frames are within the VAE round trip of the input's last frames (a convex blend of the two;
    # the tiny VAE is random, so its round trip is not close to the input, with real weights it is)
    ref = to_uint8(video[-5:]).astype(int)
    assert (np.abs(res.frames[6:11].astype(int) - ref) <= np.abs(trip.astype(int) - ref) + 1).all()
    assert res.params["overlap"] == 5 and res.params["extend"] == str(clip) and res.params["overlap_blend"] == "linear"


def test_join_windows_crossfades_linearly_without_repeating():
    a, b = np.full((6, 2, 2, 3), 200, np.uint8), np.full((7, 2, 2, 3), 20, np.uint8)
    out = join_windows(a, b, 3)
    assert len(out) == 6 + 7 - 3
    np.testing.assert_array_equal(out[:, 0, 0, 0], [200, 200, 200, 155, 110, 65, 20, 20, 20, 20])
    assert join_windows(None, b, 3) is b


def test_two_segments_make_one_video_without_repeating_the_overlap(pipe, inputs, monkeypatch):
    seen = []
    real = pipe.denoise

    def spy(plan, c, noise=None, progress=None):
        seen.append((plan.settings.seed, None if c.mask is None else np.array(c.mask).ravel().tolist()))
        return real(plan, c, noise, progress)

    monkeypatch.setattr(pipe, "denoise", spy)
    res = pipe.generate(task="t2v-5B", segments=2, overlap=1, seed=3, **inputs)
    assert res.frames.shape == (9 + 9 - 1, 64, 64, 3)
    assert seen == [(3, None), (4, [0.0, 1.0, 1.0])]  # window 2: its latent 0 anchored to window 1's last frame
    one = pipe.generate(task="t2v-5B", seed=3, **inputs)
    np.testing.assert_array_equal(res.frames[:8], one.frames[:8])
    window2 = to_uint8(np.array(pipe.vae.decode(res.latents)[0]))
    mid = np.round((one.frames[8].astype(np.float32) + window2[0]) / 2)  # the one overlap frame, half and half
    np.testing.assert_array_equal(res.frames[8], mid.astype(np.uint8))
    np.testing.assert_array_equal(res.frames[9:], window2[1:])
    assert not any(np.array_equal(res.frames[8], f) for f in res.frames[9:])


def test_a_prompt_per_segment(pipe, inputs, monkeypatch):
    seen = []
    real = pipe.encode_images

    def spy(plan, context, clip_fea=None):
        seen.append(context)
        return real(plan, context, clip_fea)

    monkeypatch.setattr(pipe, "encode_images", spy)
    c0, c1, u = inputs["context"][0], inputs["context"][0] * 2, inputs["context"][1]
    kw = dict(inputs, context=[c0, c1, u])
    res = pipe.generate(task="t2v-5B", segments=2, overlap=1, prompts=["a cat", "a dog"], **kw)
    assert [[id(x) for x in c] for c in seen] == [[id(c0), id(u)], [id(c1), id(u)]]
    assert res.params["prompts"] == ["a cat", "a dog"] and res.params["prompt"] == "a cat"
    assert P.WanSettings(task="t2v-5B", segments=2, prompts=["a"] * 2).validate().prompts == ("a", "a")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(task="mi2v-5B", images=["x.png"]), "extension .* runs on t2v-5B / ti2v-5B"),
        (dict(overlap=4), "overlap must be 4j\\+1"),
        (dict(overlap=9), "less than frame_num 9"),
        (dict(segments=1, overlap=5, extend=None), "overlap is for extension"),
        (dict(segments=0), "segments must be at least 1"),
        (dict(prompts=["a", "b", "c"]), "3 prompts for 2 segment"),
        (dict(prompts=["a", "b"], prompt="c"), "either prompt or prompts"),
        (dict(prompts=["a", 3]), "prompts must be strings"),
        (dict(task="i2v-A14B", images=["x.png"], overlap=5), "overlap must be 1"),
        (dict(task="flf2v-14B", images=["x.png", "y.png"]), "bridges a clip .* to the last frame"),
        (dict(task="t2v-A14B"), "extension .* runs on t2v-5B"),
    ],
)
def test_bad_extension_settings_are_one_line_errors(kw, match):
    kw = dict(dict(task="t2v-5B", segments=2, frame_num=9, size="64*64"), **kw)
    with pytest.raises(ValueError, match=match) as e:
        P.WanSettings(**kw).validate()
    assert "\n" not in str(e.value)


def test_cli_extend_two_segments_with_a_prompt_each(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlx_video.cli import app

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    clip, out = _clip(tmp_path / "in.mp4", n=9), tmp_path / "long.mp4"
    r = run_cli(
        *("--prompt", "a cat", "--prompt", "a dog", "--frame_num", 9, "--sample_steps", 1),
        *("--extend", clip, "--overlap", 1, "--segments", 2, "--save_file", out),
    )
    assert r.exit_code == 0, r.output
    assert read_video(out)[1:] == (9 + 2 * 8, (64, 64))
    import json

    import av

    with av.open(str(out)) as c:
        meta = json.loads(c.metadata["comment"])
    assert meta["prompts"] == ["a cat", "a dog"] and meta["segments"] == 2 and meta["overlap"] == 1
    args = ["generate", "--task", "t2v-5B", "--ckpt_dir", str(TINY), "--prompt", "a", "--prompt", "b"]
    r = CliRunner().invoke(app, args + ["--save_file", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "2 prompts for 1 segment(s)" in r.output and not (tmp_path / "x.mp4").exists()
