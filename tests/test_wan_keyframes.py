"""TI2V-5B anchors at any frame (``PATH@FRAME[:STRENGTH]``): the pixel -> latent frame mapping, a last-frame
anchor that stays the encoded image through every step, strength 0 = no anchor, frame 0 = the official TI2V
(tests/test_wan_pipeline.py proves plain frame-0 anchoring against the reference), and the one-line errors."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.sampling.solvers import make_solver
from mlx_video.wan import pipeline as P
from mlx_video.wan.conditions import AnchorImage, encode_anchor_at, latent_frame_of, prepare_images
from tests.helpers import IMAGES
from tests.wan_tiny import run_cli, spy_on, tiny_inputs, tiny_pipeline

ASTRO, ROCKET = IMAGES / "astronaut.png", IMAGES / "rocket.png"
STEPS, FRAMES, T = 3, 9, 3
SHAPE = (1, T, 4, 4, 48)  # 64*64 pixels (astronaut is square: best_output_size keeps 64*64)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(pipe):
    return tiny_inputs(pipe, SHAPE, frame_num=FRAMES, sample_steps=STEPS, solver="unipc")


def test_pixel_to_latent_frame_mapping():
    F = 17  # latent 0 = pixel 0; latent j >= 1 = pixels 4j-3..4j
    assert [latent_frame_of(f, F) for f in range(F)] == [0] + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert latent_frame_of(-1, F) == 4 and latent_frame_of(-F, F) == 0 and latent_frame_of(-5, F) == 3
    assert AnchorImage.parse("a.png@-1:0.25") == AnchorImage(P.Path("a.png"), -1, 0.25)
    assert AnchorImage.parse(ASTRO) == AnchorImage(ASTRO)


def test_last_frame_anchor_stays_the_encoded_image_after_every_step(pipe, inputs, monkeypatch):
    spy = spy_on(pipe, monkeypatch)
    res = pipe.generate(task="ti2v-5B", images=[f"{ASTRO}@-1"], **inputs)
    im = prepare_images([ASTRO], 64, 64)[0]
    z = np.array(encode_anchor_at(pipe.vae, im, T - 1))
    # the documented encoding: the second latent of the image repeated 5 times (a still 4-frame group)
    five = pipe.vae.encode(mx.repeat(mx.array(im)[None, None], 5, axis=1))
    np.testing.assert_array_equal(z, np.array(five[:, 1:2]))
    assert not np.allclose(z, np.array(pipe.vae.encode(mx.array(im)[None, None])), atol=1e-3)
    timesteps = make_solver("unipc", STEPS, 5.0).timesteps
    assert len(spy.calls) == STEPS
    for (x, t), ts in zip(spy.calls, timesteps):  # CFG batch of 2: cond, uncond
        np.testing.assert_array_equal(x[:, -1:], z.repeat(2, 0))
        assert (t[:, -1] == 0).all() and (t[:, :-1] == ts).all()
        assert not np.allclose(x[:, :-1], 0)
    np.testing.assert_array_equal(np.array(res.latents[:, -1:]), z)
    assert res.frames.shape == (FRAMES, 64, 64, 3)


def test_frame_zero_spec_is_the_plain_official_anchor(pipe, inputs):
    plain = pipe.generate(task="ti2v-5B", images=[ASTRO], **inputs)
    at0 = pipe.generate(task="ti2v-5B", images=[f"{ASTRO}@0:1"], **inputs)
    np.testing.assert_array_equal(np.array(plain.latents), np.array(at0.latents))


def test_strength_zero_equals_no_anchor_and_partial_strength_scales_the_timestep(pipe, inputs, monkeypatch):
    free = pipe.generate(task="t2v-5B", **inputs)
    zero = pipe.generate(task="ti2v-5B", images=[f"{ASTRO}@-1:0"], **inputs)
    np.testing.assert_allclose(np.array(zero.latents), np.array(free.latents), rtol=1e-5, atol=1e-5)
    spy = spy_on(pipe, monkeypatch)
    half = pipe.generate(task="mi2v-5B", images=[f"{ASTRO}@0", f"{ROCKET}@-1:0.5"], **inputs)
    for (_x, t), ts in zip(spy.calls, make_solver("unipc", STEPS, 5.0).timesteps):
        assert (t[:, 0] == 0).all() and (t[:, 1] == ts).all() and np.allclose(t[:, 2], 0.5 * ts)
    full = pipe.generate(task="mi2v-5B", images=[f"{ASTRO}@0", f"{ROCKET}@-1"], **inputs)
    a, b = np.array(half.latents[:, -1]), np.array(full.latents[:, -1])
    assert np.abs(a - b).max() > 1e-2 and np.abs(a - np.array(free.latents[:, -1])).max() > 1e-2


@pytest.mark.parametrize(
    "images,match",
    [
        ([f"{ASTRO}@9"], "pixel frame 9 is outside the video"),
        ([f"{ASTRO}@-10"], "pixel frame -10 is outside the video"),
        ([f"{ASTRO}@1", f"{ROCKET}@4"], "fall on one latent frame 1"),
        ([ASTRO, f"{ROCKET}@0"], "fall on one latent frame 0"),
        ([f"{ASTRO}@0:1.5"], r"strength must be a number in \[0, 1\]"),
        ([f"{ASTRO}@0:x"], r"strength must be a number in \[0, 1\]"),
        ([f"{ASTRO}@last"], "integer pixel frame"),
    ],
)
def test_bad_anchor_positions_are_one_line_errors(images, match):
    with pytest.raises(ValueError, match=match) as e:
        P.WanSettings(task="mi2v-5B", images=images, frame_num=FRAMES, size="64*64").validate()
    assert "\n" not in str(e.value)


def test_positions_are_refused_for_y_conditioned_tasks():
    with pytest.raises(ValueError, match="are for the TI2V-5B anchors"):
        P.WanSettings(task="i2v-14B", images=[f"{ASTRO}@0"], size="64*64", frame_num=5).validate()


def test_cli_first_last_frame_on_the_5b(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "flf.mp4"
    r = run_cli(
        *("--prompt", "x", "--size", "64*64", "--frame_num", 9, "--sample_steps", 2),
        *("--images", f"{ASTRO}@0", f"{ROCKET}@-1:0.8", "--save_file", out),
        task="mi2v-5B",
    )
    assert r.exit_code == 0, r.output
    assert out.is_file()
    assert f"{ROCKET}@-1:0.8" in out.read_bytes().decode("latin1")  # the spec is kept in the metadata
