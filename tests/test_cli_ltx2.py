"""LTX-2 settings, CLI and pipeline behaviour on the bundled tiny LTX-2 model (assets/tiny-LTX-2, random weights).

- Bad values through the real CLI (in process with typer's CliRunner, a few as real subprocesses): each is refused
  with exit 2 and one line naming the value, no traceback, nothing written to the output folder (issue 16 class 3).
- NaN inside the model: generation stops with an error naming the stage and step (or the decode), exit 2, no file
  (class 5).
- One source of defaults: what the CLI runs with no options is what ``LTXSettings()`` resolves to, and the video's
  metadata carries the full parameter set (negative prompt, guidance, CRF, LoRA strengths, seed).
- The conditioning images' CRF round trip happens in the library's prepare stage, exactly as ltx-pipelines'
  ``media_io.preprocess``.
- Two generations in one process with the same inputs give identical output, per pipeline.
"""

from __future__ import annotations

import json
import math
import shutil

import mlx.core as mx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video.cli import app
from mlx_video.io.images import load_image
from mlx_video.ltx2 import loading
from mlx_video.ltx2 import pipelines as P
from mlx_video.result import NonFiniteError
from tests.helpers import ASSETS, IMAGES, run_cli
from tests.ltx_tiny import convert_tiny

TINY = ASSETS / "tiny-LTX-2"
IMG = IMAGES / "chelsea.png"
SMALL = ["--height", "128", "--width", "128", "--num-frames", "9"]  # the smallest size every pipeline takes
DEV_TINY = ["--steps", "1", "--stg-blocks", "1"]  # dev pipelines on a 2-block transformer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny LTX-2 checkpoint converted once (float32) with its Gemma, upsampler and distilled LoRA."""
    return convert_tiny(tmp_path_factory.mktemp("ltx") / "tiny", "dev")


def cli(*args):
    return CliRunner().invoke(app, ["generate", *args])


def metadata(path) -> dict:
    import av

    with av.open(str(path)) as f:
        return json.loads(f.metadata["comment"])


# ----------------------------------------------------------------------------- refused values

HUGE = "latent tokens"
BAD = [  # (argv, message fragment)
    (["--pipeline", "dev", "--steps", "0"], "steps must be at least 1"),
    (["--pipeline", "dev", "--steps", "100000"], "steps must be at most 1000"),
    (["--fps", "0"], "fps must be greater than 0"),
    (["--fps", "-24"], "fps must be in [0, 1000]"),
    (["--fps", "inf"], "fps must be finite"),
    (["--fps", "1000", "--num-frames", "1"], "less than one audio latent"),
    (["--pipeline", "dev", "--cfg-scale", "nan"], "video_guidance.cfg_scale must be finite"),
    (["--pipeline", "dev", "--audio-stg-scale", "inf"], "audio_guidance.stg_scale must be finite"),
    (["--pipeline", "dev-two-stage", "--lora-strength", "nan"], "lora_strength_stage_2 must be finite"),
    (["--lora-strength", "1"], "LoRA strengths are for dev-two-stage"),
    (["--height", "99968", "--width", "99968"], HUGE),
    (["--num-frames", "400001"], HUGE),
    (["--height", "96"], "height must be a multiple of 64"),
    (["--pipeline", "dev", "--width", "48"], "width must be a multiple of 32"),
    (["--height", "0"], "height must be at least 1"),
    (["--num-frames", "16"], "8k+1"),
    (["--num-frames", "0"], "num_frames must be at least 1"),
    (["--num-frames", "17", "--image", f"{IMG}:17"], "frame index 17 is outside the clip (0..16)"),
    (["--image", f"{IMG}:-1"], "frame index -1 is outside the clip"),
    (["--end-image", str(IMG), "--end-image-strength", "2"], "strength must be in [0, 1]"),
    (["--image", str(IMAGES / "missing.png")], "not found"),
    (["--image-crf", "52"], "crf must be a whole number in [0, 51]"),
    (["--image-crf", "-1"], "crf must be a whole number in [0, 51]"),
    (["--steps", "4"], "fixed steps and no guidance"),
    (["--pipeline", "fast"], "unknown pipeline"),
    (["--pipeline", "dev", "--steps", "1"], "stg_blocks [29]: the transformer has blocks 0..1"),  # after loading
    (["--seed", "1.5"], "Invalid value"),  # typer's own parse error (exit 2)
]


@pytest.mark.parametrize("argv,fragment", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_values_exit_2_with_one_line_and_no_file(argv, fragment, model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = cli("--model", str(model_dir), "--prompt", "a cat", *SMALL, *argv, "-o", str(out / "x.mp4"))
    assert r.exit_code == 2, r.output
    assert fragment in " ".join(r.output.split()), r.output  # rich/click may wrap the line
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--fps", "0"], "fps must be greater than 0"),  # a ZeroDivisionError traceback before
        (["--pipeline", "dev", "--cfg-scale", "nan"], "must be finite"),
    ],
)
def test_bad_values_in_a_real_process(argv, fragment, model_dir, tmp_path):
    p = run_cli(["generate", "--model", model_dir, "--prompt", "x", *SMALL, *argv, "-o", tmp_path / "x.mp4"], tmp_path)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_settings_refuse_the_same_values_in_python():
    for kw, fragment in [
        (dict(pipeline="dev", steps=0), "steps"),
        (dict(fps=0), "fps"),
        (dict(pipeline="dev", video_guidance={"cfg_scale": math.nan}), "finite"),
        (dict(pipeline="dev", audio_guidance={"cfg": 3}), "unknown guidance fields"),
        (dict(image_crf=60), "crf"),
        (dict(seed=1.5), "seed"),
        (dict(version="3"), "version"),
        (dict(height=99968, width=99968), HUGE),
    ]:
        with pytest.raises(ValueError, match=fragment):
            P.LTXSettings(**kw).validate()
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="image 1: frame index 9"):
        P.LTXSettings(num_frames=9).validate([P.ImageCondition(img), P.ImageCondition(img, 9)])
    with pytest.raises(ValueError, match="crf"):
        P.LTXSettings().validate([P.ImageCondition(img, crf=99)])
    assert P.LTXSettings(seed=-1).resolved().seed == 2**32 - 1  # the documented seed rule: mod 2**32


# ----------------------------------------------------------------------------- non-finite values


def poisoned(model_dir, tmp_path, file, key_part):
    """A copy of the converted folder with one weight of ``file`` (the first key containing ``key_part``) NaN."""
    dst = tmp_path / "poisoned"
    shutil.copytree(model_dir, dst)
    w = mx.load(str(dst / file))
    key = key_part if key_part in w else next(k for k in sorted(w) if key_part in k)
    w[key] = mx.full(w[key].shape, math.nan, w[key].dtype)
    mx.save_safetensors(str(dst / file), w)
    return dst


@pytest.mark.parametrize(
    "file,key,fragment",
    [
        ("transformer.safetensors", "proj_out.weight", "in stage1's video latents after step 1/8"),
        ("video_vae.safetensors", "decoder.conv_out", "after the video decode"),
    ],
)
def test_nan_stops_with_the_stage_and_step(file, key, fragment, model_dir, tmp_path):
    bad = poisoned(model_dir, tmp_path, file, key)
    out = tmp_path / "out"
    out.mkdir()
    r = cli("--model", str(bad), "--prompt", "a cat", *SMALL, "-o", str(out / "x.mp4"))
    assert r.exit_code == 2 and "non-finite values" in r.output and fragment in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output and list(out.iterdir()) == []


# ----------------------------------------------------------------------------- defaults, metadata, seed


def test_cli_defaults_are_the_library_defaults(model_dir, tmp_path):
    """No options: the CLI runs what LTXSettings() resolves to (only the size is given: a tiny clip)."""
    out = tmp_path / "d.mp4"
    r = cli("--model", str(model_dir), "--prompt", "a cat", *SMALL, "-o", str(out))
    assert r.exit_code == 0, r.output
    version = loading.read_config(model_dir)["model_version"]
    want = P.LTXSettings(height=128, width=128, num_frames=9).resolved(version).params()
    meta = metadata(out)
    assert {k: meta[k] for k in want} == want
    assert want["seed"] == P.DEFAULT_SEED and want["fps"] == 24.0 and want["image_crf"] == 33


def test_metadata_carries_the_full_parameter_set_and_the_random_seed(model_dir, tmp_path):
    out = tmp_path / "m.mp4"
    r = cli(
        "--model",
        str(model_dir),
        "--prompt",
        "a cat",
        "--pipeline",
        "dev-two-stage",
        *SMALL,
        *DEV_TINY,
        "--cfg-scale",
        "2.5",
        "--seed",
        "-1",
        "--image",
        f"{IMG}:0:0.9",
        "--image-crf",
        "20",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    meta = metadata(out)
    assert f"seed: {meta['seed']} (drawn at random)" in r.output and 0 <= meta["seed"] < 2**32 and meta["seed_drawn"]
    assert meta["negative_prompt"] == P.DEFAULT_NEGATIVE_PROMPT and meta["prompt"] == "a cat"
    assert meta["video_guidance"]["cfg_scale"] == 2.5 and meta["video_guidance"]["stg_blocks"] == [1]
    assert meta["audio_guidance"]["cfg_scale"] == 7.0  # the official default where nothing was typed
    assert (meta["lora_strength_stage_1"], meta["lora_strength_stage_2"]) == (0.0, 1.0)
    assert meta["image_crf"] == 20 and meta["images"] == [
        dict(path=f"{IMG}", frame=0, strength=0.9, crf=None, size=[451, 300])
    ]
    assert meta["steps"] == 1 and meta["version"] == "2" and meta["pipeline"] == "dev-two-stage"


def test_official_defaults_per_pipeline():
    """ltx-pipelines 1.0.0's defaults (utils.constants, utils.args), resolved by the library alone."""
    from ltx_pipelines.utils import constants as K

    def guidance(p):
        return dict(
            cfg_scale=p.cfg_scale,
            stg_scale=p.stg_scale,
            stg_blocks=list(p.stg_blocks),
            rescale_scale=p.rescale_scale,
            modality_scale=p.modality_scale,
            skip_step=p.skip_step,
        )

    cases = {
        ("dev", "2"): (K.LTX_2_PARAMS, 1),
        ("dev-two-stage", "2.3.0"): (K.LTX_2_3_PARAMS, 2),
        ("dev-two-stage-hq", "2"): (K.LTX_2_3_HQ_PARAMS, 2),
    }
    for (pipeline, version), (ref, scale) in cases.items():
        s = P.LTXSettings(pipeline).resolved(version).params()
        assert (s["height"], s["width"]) == (ref.stage_1_height * scale, ref.stage_1_width * scale)
        assert (s["num_frames"], s["fps"], s["seed"], s["steps"]) == (
            ref.num_frames,
            ref.frame_rate,
            ref.seed,
            ref.num_inference_steps,
        )
        assert s["video_guidance"] == guidance(ref.video_guider_params)
        assert s["audio_guidance"] == guidance(ref.audio_guider_params)
        assert s["image_crf"] == K.DEFAULT_IMAGE_CRF
    d = P.LTXSettings().resolved("2.3")
    assert (d.height, d.width, d.steps, d.video_guidance, d.negative_text) == (1024, 1536, None, None, None)
    assert P.LTXSettings("dev-two-stage-hq").lora_strengths == (0.25, 0.5)
    assert P.LTXSettings("dev-two-stage").lora_strengths == (0.0, K.DEFAULT_LORA_STRENGTH)


# ----------------------------------------------------------------------------- the prepare stage


def test_crf_round_trip_is_the_references_and_in_the_library():
    from ltx_pipelines.utils.media_io import decode_image, preprocess

    ref = decode_image(str(IMG))
    img = np.asarray(load_image(IMG), dtype=np.uint8)
    np.testing.assert_array_equal(img, ref)
    for crf in (0, 33, 20):
        ((ours, frame, strength),) = P.prepare_images([P.ImageCondition(img, 4, 0.5, crf=crf)])
        np.testing.assert_array_equal(ours, preprocess(ref, crf).astype(np.float32) / 127.5 - 1.0)
        assert (frame, strength) == (4, 0.5)
    ((a, _, _),) = P.prepare_images([P.ImageCondition(img)], crf=33)  # the settings' CRF when the image has none
    ((b, _, _),) = P.prepare_images([P.ImageCondition(img)], crf=0)
    assert a.shape == (300, 450, 3) and b.shape == (300, 451, 3)  # H.264 needs even sides (as the reference)
    assert np.abs(a - b[:, :450]).mean() > 1e-3


# ----------------------------------------------------------------------------- same inputs, same output


@pytest.fixture(scope="module")
def text(model_dir):
    cfg = loading.read_config(model_dir)
    return cfg, loading.encode_text(model_dir, cfg, "a cat", P.DEFAULT_NEGATIVE_PROMPT)


@pytest.mark.parametrize(
    "pipeline,lora",
    [  # two-stage: with the distilled LoRA (merged twice before the fix) and
        ("distilled", None),
        ("dev", None),
        ("dev-two-stage", None),
        ("dev-two-stage-hq", None),  # without it
        ("dev-two-stage", 0.0),
        ("dev-two-stage-hq", 0.0),
    ],
)
def test_two_generations_in_one_process_are_identical(pipeline, lora, model_dir, text):
    cfg, (pos, neg) = text
    tiny = None if pipeline == "distilled" else {"stg_blocks": (1,)}
    s = P.LTXSettings(
        pipeline,
        height=128,
        width=128,
        num_frames=9,
        steps=None if tiny is None else 2,
        video_guidance=tiny,
        audio_guidance=tiny,
        seed=3,
        lora_strength_stage_2=lora,
        lora_strength_stage_1=lora if pipeline == "dev-two-stage-hq" else None,
    )
    comps = loading.load_components(model_dir, cfg, pipeline, s.lora_strengths, True)
    images = [
        P.ImageCondition(np.asarray(load_image(IMG), dtype=np.uint8), 0, 0.9),
        P.ImageCondition(np.asarray(load_image(IMAGES / "coffee.png"), dtype=np.uint8), 8, 0.8),
    ]
    runs = [P.generate(comps, s, pos, neg if s.guided else None, images) for _ in range(2)]
    a, b = runs
    assert a.frames.dtype == np.uint8 and a.frames.shape == (9, 128, 128, 3) and a.audio.dtype == np.float32
    assert a.params == b.params and a.params["seed"] == 3
    np.testing.assert_array_equal(np.array(a.latents), np.array(b.latents))
    np.testing.assert_array_equal(np.array(a.audio_latents), np.array(b.audio_latents))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)


def test_non_finite_error_names_the_stage_in_python(model_dir, text):
    cfg, (pos, _) = text
    comps = loading.load_components(model_dir, cfg, "distilled", (0.0, 0.0), False)
    w = comps.transformer.audio_proj_out.weight if hasattr(comps.transformer, "audio_proj_out") else None
    assert w is not None
    comps.transformer.audio_proj_out.weight = mx.full(w.shape, math.inf, w.dtype)
    with pytest.raises(NonFiniteError, match="stage1's audio latents after step 1/8"):
        P.generate(comps, P.LTXSettings(height=128, width=128, num_frames=9), pos)
