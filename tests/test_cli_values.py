"""Every Wan setting is checked before any model loads (issue 16 classes 3 and 5): a table of argv -> exit 2 and a
one-line message, through the real CLI (in-process for the table, a few in subprocesses), with nothing written:
no output file, no converted-model cache. Plus the Python API's seed rule, the non-finite guard, and
run-to-run determinism on the tiny model."""

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video.cli import _expand_multi, app
from mlx_video.result import NonFiniteError
from mlx_video.wan.pipeline import WanPipeline
from mlx_video.wan.settings import WanSettings
from tests.helpers import IMAGES, run_cli
from tests.wan_tiny import TINY

IMG = str(IMAGES / "astronaut.png")  # 512x512
BASE = [
    "--task",
    "t2v-5B",
    "--ckpt_dir",
    str(TINY),
    "--prompt",
    "x",
    "--size",
    "64*32",
    "--frame_num",
    "5",
    "--sample_steps",
    "1",
]


def _set(args, flag, value):
    """``args`` with ``flag``'s value replaced (or the pair appended)."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


# (id, argv after "generate" (BASE changed or extended), message fragment)
CASES = [
    ("steps_0", _set(BASE, "--sample_steps", "0"), "sample_steps must be at least 1, got 0"),
    ("steps_huge", _set(BASE, "--sample_steps", "5000"), "sample_steps must be at most 1000"),
    ("steps_negative", _set(BASE, "--sample_steps", "-3"), "sample_steps must be at least 1"),
    ("fps_0", BASE + ["--fps", "0"], "fps must be greater than 0, got 0"),
    ("fps_negative", BASE + ["--fps", "-24"], "fps must be in [0, 1000], got -24"),
    ("guide_nan", BASE + ["--sample_guide_scale", "nan"], "guide_scale must be finite, got nan"),
    ("guide_inf", BASE + ["--sample_guide_scale", "inf"], "guide_scale must be finite"),
    ("guide_pair_one_expert", BASE + ["--sample_guide_scale", "3,4"], "is for the two-expert A14B tasks"),
    ("guide_text", BASE + ["--sample_guide_scale", "five"], "expected a number or LOW,HIGH"),
    ("shift_inf", BASE + ["--sample_shift", "inf"], "sample_shift must be finite, got inf"),
    ("shift_nan", BASE + ["--sample_shift", "nan"], "sample_shift must be finite"),
    ("shift_0", BASE + ["--sample_shift", "0"], "sample_shift must be greater than 0"),
    ("size_huge", _set(BASE, "--size", "100000*100000"), "DiT tokens, more than the 262144"),
    ("size_long_side", _set(BASE, "--size", "65536*32"), "positions of the model's RoPE table"),
    ("size_16", _set(BASE, "--size", "16*16"), "size 16*16 is below the minimum 32*32"),
    (
        "size_16_image",
        _set(BASE, "--task", "ti2v-5B") + ["--size", "16*16", "--image", IMG],
        "size 16*16 is below the minimum: with images the size is the output's maximum area",
    ),
    (
        "size_huge_image",
        _set(BASE, "--task", "ti2v-5B") + ["--size", "100000*100000", "--image", IMG],
        "DiT tokens, more than",
    ),
    ("size_not_multiple", _set(BASE, "--size", "100*64"), "multiples of 32"),
    ("size_text", _set(BASE, "--size", "big"), "size must look like 1280*704"),
    ("size_zero", _set(BASE, "--size", "0*64"), "size must be positive"),
    ("frames_huge", _set(BASE, "--frame_num", "400001"), "100001 latent frames, more than the 1024 positions"),
    ("frames_tokens", _set(_set(BASE, "--frame_num", "4093"), "--size", "1024*1024"), "DiT tokens"),
    ("frames_0", _set(BASE, "--frame_num", "0"), "frame_num must be at least 1"),
    ("frames_not_4k1", _set(BASE, "--frame_num", "10"), "4k+1"),
    ("seed_text", BASE + ["--base_seed", "abc"], "Invalid value for '--base_seed'"),
    ("task_unknown", _set(BASE, "--task", "t2v-9000B"), "unknown task 't2v-9000B'"),
    ("solver_unknown", BASE + ["--sample_solver", "heun"], "unknown solver 'heun'"),
    (
        "images_too_many",
        _set(_set(BASE, "--task", "mi2v-5B"), "--frame_num", "9") + ["--images", IMG, IMG, IMG],
        "at most 2 images",
    ),
    ("images_ti2v_two", _set(BASE, "--task", "ti2v-5B") + ["--images", IMG, IMG], "takes at most one image"),
    ("images_t2v", BASE + ["--image", IMG], "task t2v-5B takes no images, got 1"),
    ("images_mi2v_none", _set(BASE, "--task", "mi2v-5B"), "needs at least one image"),
    ("image_missing", _set(BASE, "--task", "ti2v-5B") + ["--image", "/nonexistent/a.png"], "image not found"),
    ("bidirectional_t2v", BASE + ["--bidirectional_sampling"], "bidirectional sampling is for the flf2v tasks"),
    (
        "one_frame_t2v",
        BASE
        + ["--one_frame_inference", "control_index=0,target_index=1", "--image_path", IMG, "--control_image_path", IMG],
        "one-frame inference is for i2v-14B and flf2v-14B",
    ),
    (
        "one_frame_index",
        _set(BASE, "--task", "i2v-14B")
        + [
            "--one_frame_inference",
            "control_index=0,target_index=5000",
            "--image_path",
            IMG,
            "--control_image_path",
            IMG,
        ],
        "target_index must be in 0..1023",
    ),
    (
        "one_frame_frames",
        _set(BASE, "--task", "i2v-14B")
        + ["--one_frame_inference", "control_index=0,target_index=1", "--image_path", IMG, "--control_image_path", IMG],
        "one-frame inference makes one frame; frame_num 5",
    ),
    ("lora_strength_nan", BASE + ["--lora", "style.safetensors:nan"], "strength must be a finite number"),
    ("lora_missing", BASE + ["--lora", "nope.safetensors:0.5"], "LoRA file not found"),
    ("output_type", BASE + ["--output_type", "gif"], "--output_type must be video, images or latent_images"),
    ("dtype", BASE + ["--dtype", "int8"], "--dtype takes float32, bfloat16 or float16"),
    ("output_suffix", BASE, "suffix must be one of .mp4"),  # --save_file o.gif, see below
]


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(cache))
    return out, cache


def _argv(case_id, argv, out):
    return ["generate", *argv, "--save_file", str(out / ("o.gif" if case_id == "output_suffix" else "o.mp4"))]


@pytest.mark.parametrize("case_id,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_exit_2_nothing_written(case_id, argv, fragment, dirs):
    out, cache = dirs
    r = CliRunner().invoke(app, _expand_multi(_argv(case_id, argv, out)))
    assert r.exit_code == 2, r.output
    assert fragment in " ".join(r.stderr.split()), r.stderr  # (rich may wrap long lines)
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert list(out.iterdir()) == []
    assert not cache.exists()  # refused before the model folder was even resolved (no conversion)


SUBPROCESS = ["steps_0", "fps_0", "guide_nan", "size_huge", "frames_huge", "seed_text"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_value_through_the_real_command(case_id, dirs):
    out, cache = dirs
    argv = dict((c[0], c[1]) for c in CASES)[case_id]
    fragment = dict((c[0], c[2]) for c in CASES)[case_id]
    p = run_cli(_argv(case_id, argv, out), out, 120, COLUMNS="400")
    assert p.returncode == 2, p.stderr
    assert fragment in " ".join(p.stderr.split()) and "Traceback" not in p.stderr, p.stderr
    assert list(out.iterdir()) == [] and not cache.exists()


# ----------------------------------------------------------------------------- Python API


def test_settings_fill_defaults_and_reduce_the_seed():
    s = WanSettings(task="i2v-A14B", images=[IMG], seed=2**32 + 5).validate()
    assert (s.sample_steps, s.sample_shift, s.guide_scale, s.frame_num, s.fps, s.solver, s.size) == (
        40,
        5.0,
        (3.5, 3.5),
        81,
        16,
        "unipc",
        "1280*720",
    )
    assert s.seed == 5 and WanSettings(seed=-1).validate().seed == 2**32 - 1
    assert s.validate() == s  # idempotent
    drawn = WanSettings(seed=None).validate().seed
    assert 0 <= drawn < 2**32
    assert WanSettings(task="i2v-14B", images=[IMG], size="832*480").validate().sample_shift == 3.0
    with pytest.raises(ValueError, match="sample_steps must be at least 1"):
        WanSettings(sample_steps=0).validate()
    with pytest.raises(ValueError, match="seed must be a whole number"):
        WanSettings(seed="7").validate()
    with pytest.raises(ValueError, match="images must be a list of paths"):
        WanSettings(task="mi2v-5B", images=IMG).validate()
    with pytest.raises(ValueError, match="size must be a string"):
        WanSettings(size=(64, 32)).validate()
    with pytest.raises(ValueError, match="sample_steps must be a whole number"):
        WanSettings(sample_steps=2.5).validate()


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from mlx_video.wan.checkpoint import convert_wan

    return WanPipeline(convert_wan(TINY, tmp_path_factory.mktemp("m") / "m", dtype="float32"), dtype=mx.float32)


@pytest.mark.parametrize("task,images", [("t2v-5B", []), ("ti2v-5B", [IMG])])
def test_two_generations_in_one_process_are_identical(pipe, task, images):
    s = WanSettings(task=task, prompt="a cat", images=images, size="64*64", frame_num=5, sample_steps=2, seed=11)
    a, b = pipe.generate(s), pipe.generate(s)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (5, 64, 64, 3) and a.fps == 24
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(np.array(a.latents), np.array(b.latents))
    assert a.params == b.params and a.params["seed"] == 11 and set(a.timings) == {"text", "encode", "denoise", "decode"}
    c = pipe.generate(replace(s, seed=12))
    assert not np.array_equal(np.array(a.latents), np.array(c.latents))  # the seed is used


def test_lora_strength_is_checked_in_the_api_too(pipe):
    with pytest.raises(ValueError, match="LoRA strength of style.safetensors must be finite"):
        WanPipeline(pipe.model_dir, loras=[("style.safetensors", float("inf"))])


def test_nan_latent_stops_at_the_step_with_its_cause(pipe):
    s = WanSettings(task="t2v-5B", size="64*32", frame_num=5, sample_steps=3)
    nan = mx.full((1, 2, 2, 4, 48), float("nan"))
    with pytest.raises(NonFiniteError, match="after denoising step 1 of 3; likely causes: a guide scale"):
        pipe.generate(s, noise=nan)


def test_non_finite_through_the_cli_exits_2_and_writes_nothing(dirs, monkeypatch):
    import mlx_video.wan.denoise as D  # where ``denoise`` reads it (re-exported by wan.pipeline)

    out, _ = dirs
    vel = D.velocity
    monkeypatch.setattr(D, "velocity", lambda *a, **k: vel(*a, **k) * float("inf"))
    r = CliRunner().invoke(app, _expand_multi(["generate", *BASE, "--save_file", str(out / "o.mp4")]))
    assert r.exit_code == 2, r.output
    assert "non-finite values (NaN or inf) in the latent after denoising step 1 of 1" in " ".join(r.stderr.split())
    assert list(out.iterdir()) == []


def test_random_seed_is_printed_and_stored(dirs):
    import json

    out, _ = dirs
    r = CliRunner().invoke(
        app, _expand_multi(["generate", *_set(BASE, "--frame_num", "1"), "--save_file", str(out / "o.png")])
    )
    assert r.exit_code == 0, r.output
    from PIL import Image

    meta = json.loads(Image.open(out / "o.png").text["parameters"])
    assert f"seed: {meta['seed']} (drawn at random)" in r.stderr and meta["seed_drawn"] is True
