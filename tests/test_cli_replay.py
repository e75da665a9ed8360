"""Reproducible runs: the seed (given or drawn) printed and stored, ``mlx_video info VIDEO`` and
``mlx_video generate --from VIDEO [overrides]`` on the bundled tiny models (Wan and LTX-2)."""

from __future__ import annotations

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video.cli import _expand_multi, app
from mlx_video.cli.replay import merge
from mlx_video.io.video import read_metadata
from tests.helpers import ASSETS, IMAGES
from tests.wan_tiny import TINY

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run(args):
    return runner.invoke(app, _expand_multi([str(a) for a in args]))


def frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


WAN = ["generate", "--task", "mi2v-5B", "--ckpt_dir", TINY, "--prompt", "a cat", "--size", "64*32"]
WAN += ["--frame_num", "9", "--sample_steps", "2", "--images", IMAGES / "astronaut.png", IMAGES / "chelsea.png"]


def test_wan_drawn_seed_info_and_from_round_trip(tmp_path):
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    r = run(WAN + ["--vae_dtype", "float32", "--save_file", a])
    assert r.exit_code == 0, r.output
    meta = read_metadata(a)
    assert f"seed: {meta['seed']} (drawn at random)" in r.output and meta["seed_drawn"] is True
    assert meta["family"] == "wan" and meta["vae_dtype"] == "float32" and meta["model"] == str(TINY)
    assert meta["images"] == [str(IMAGES / "astronaut.png"), str(IMAGES / "chelsea.png")]
    r = run(["info", a])
    assert r.exit_code == 0, r.output
    assert f"seed: {meta['seed']}" in r.output and "sample_solver: unipc" in r.output
    assert "--from" in r.output and "--base_seed" in r.output
    assert run(["info", a, "--json"]).output.strip().startswith("{")
    r = run(["generate", "--from", a, "--save_file", b])
    assert r.exit_code == 0, r.output
    assert f"seed: {meta['seed']}\n" in r.output  # stored, so no longer drawn
    np.testing.assert_array_equal(frames(a), frames(b))
    assert {k: v for k, v in read_metadata(b).items() if k != "seed_drawn"} == {
        k: v for k, v in meta.items() if k != "seed_drawn"
    }
    r = run(["generate", "--from", a, "--sample_steps", "1", "--images", IMAGES / "coffee.png", "--save_file", c])
    assert r.exit_code == 0, r.output
    m = read_metadata(c)
    assert m["sample_steps"] == 1 and m["images"] == [str(IMAGES / "coffee.png")] and m["seed"] == meta["seed"]


def test_wan_given_seed_is_printed(tmp_path):
    t2v = ["generate", "--task", "t2v-5B", "--ckpt_dir", TINY, "--prompt", "x", "--size", "64*32", "--frame_num", "1"]
    r = run(t2v + ["--sample_steps", "1", "--base_seed", "5", "--save_file", tmp_path / "s.png"])
    assert r.exit_code == 0, r.output
    assert "seed: 5\n" in r.output and read_metadata(tmp_path / "s.png")["seed"] == 5


def test_ltx_info_and_from_round_trip(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    small = ["--height", "128", "--width", "128", "--num-frames", "9"]
    base = ["generate", "--model", ASSETS / "tiny-LTX-2", "--prompt", "a cat", *small, "--no-audio"]
    r = run(base + ["--seed", "-1", "--image", f"{IMAGES / 'chelsea.png'}:0:0.9", "-o", a])
    assert r.exit_code == 0, r.output
    meta = read_metadata(a)
    assert f"seed: {meta['seed']} (drawn at random)" in r.output
    assert meta["family"] == "ltx2" and meta["no_audio"] is True and meta["pipeline"] == "distilled"
    r = run(["info", a])
    assert r.exit_code == 0 and "pipeline: distilled" in r.output and "--no-audio" in r.output, r.output
    r = run(["generate", "--from", a, "-o", b])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(frames(a), frames(b))
    mb = read_metadata(b)
    assert mb["seed"] == meta["seed"] and mb["images"] == meta["images"]


def test_merge_replaces_each_typed_option_and_all_images():
    base = ["--task", "t2v-5B", "--sample_steps", "50", "--images", "a.png", "--images", "b.png", "--base_seed", "3"]
    out = merge("wan", base, ["--sample-steps", "4", "--image", "c.png", "--seed=9"])
    assert out == ["--task", "t2v-5B", "--sample-steps", "4", "--image", "c.png", "--seed=9"]
    assert merge("ltx2", ["--no-audio", "--steps", "3"], ["--steps", "2"]) == ["--no-audio", "--steps", "2"]


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["info", "MISSING.mp4"], "is not a converted mlx_video folder"),
        (["generate", "--from", "MISSING.mp4"], "no such file"),
        (["generate", "--from"], "--from needs a file"),
        (["info", "PLAIN.mp4"], "carries no mlx_video parameters"),
        (["generate", "--from", "PLAIN.mp4"], "carries no mlx_video parameters"),
        (["info", "JUNK.mp4"], "cannot read it"),
    ],
)
def test_bad_files_are_one_line_errors(argv, fragment, tmp_path):
    from mlx_video.io.video import write_video

    write_video(tmp_path / "PLAIN.mp4", np.zeros((1, 32, 32, 3), np.uint8), 24)
    (tmp_path / "JUNK.mp4").write_bytes(b"not a video")
    r = run([str(tmp_path / a) if a.split(".")[0].isupper() else a for a in argv])
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output, r.output


def parsed(family_app, argv):
    import typer.main

    return typer.main.get_command(family_app).make_context("generate", list(argv)).params


def test_ltx_args_carry_every_stored_parameter():
    from mlx_video.cli.ltx2 import app as ltx2
    from mlx_video.cli.replay import ltx_args
    from mlx_video.ltx2 import pipelines as P

    s = P.LTXSettings(
        "dev-two-stage", height=128, width=256, num_frames=9, video_guidance={"cfg_scale": 2.5}, image_crf=20, seed=5
    )
    meta = dict(s.resolved("2").params(), family="ltx2", model="m", prompt="p", no_audio=True, gemma="g")
    meta["images"] = [dict(path="a.png", frame=0, strength=0.9), dict(path="b.png", frame=8, strength=1.0)]
    p = parsed(ltx2, ltx_args(meta))
    assert (p["cfg_scale"], p["audio_cfg_scale"], p["stg_scale"], p["stg_blocks"]) == (2.5, 7.0, 1.0, "29")
    assert (p["rescale_scale"], p["modality_scale"], p["audio_modality_scale"]) == (0.7, 3.0, 3.0)
    assert (p["lora_strength_stage_1"], p["lora_strength_stage_2"], p["steps"]) == (0.0, 1.0, 40)
    assert (p["height"], p["width"], p["num_frames"], p["fps"], p["seed"], p["image_crf"]) == (128, 256, 9, 24.0, 5, 20)
    assert p["negative_prompt"] == P.DEFAULT_NEGATIVE_PROMPT and p["no_audio"] and p["gemma"] == "g"
    assert p["image"] == ["a.png:0:0.9", "b.png:8:1.0"] and p["pipeline"] == "dev-two-stage" and p["prompt"] == "p"


def test_wan_args_carry_every_stored_parameter():
    from mlx_video.cli.replay import wan_args
    from mlx_video.cli.wan import app as wan

    meta = dict(task="flf2v-A14B", model="m", prompt="p", negative_prompt="n", images=["a.png", "b.png"], size="64*48")
    meta.update(frame_num=9, sample_steps=3, sample_shift=5.0, sample_guide_scale=[3.0, 4.0], sample_solver="euler")
    meta.update(seed=9, fps=16, bidirectional_sampling="reverse", preset="lightx2v-a14b-4step", dtype="float32")
    meta.update(
        vae_dtype="bfloat16", offload_model="False", output_type="latent_images", lora_high=["h.safetensors:0.5"]
    )
    p = parsed(wan, wan_args(meta))
    assert (p["first_frame"].name, p["last_frame"].name, p["images"]) == ("a.png", "b.png", ())
    assert (p["sample_guide_scale"], p["bidirectional_sampling"], p["bidirectional_mode"]) == (
        "3.0,4.0",
        True,
        "reverse",
    )
    assert (p["seed"], p["frame_num"], p["size"], p["sample_solver"], p["preset"], p["lora_high"]) == (
        9,
        9,
        "64*48",
        "euler",
        "lightx2v-a14b-4step",
        ["h.safetensors:0.5"],
    )
    assert (p["dtype"], p["vae_dtype"], p["offload_model"], p["output_type"]) == (
        "float32",
        "bfloat16",
        "False",
        "latent_images",
    )
    one = dict(task="i2v-14B", prompt="p", model="m", images=["s.png"], control_images=["c0.png", "c2.png"])
    one["one_frame_inference"] = dict(control_index=[0, 2], target_index=1)
    p = parsed(wan, wan_args(one))
    assert p["one_frame_inference"] == "control_index=0;2,target_index=1" and p["image_path"].name == "s.png"
    assert [c.name for c in p["control_image_path"]] == ["c0.png", "c2.png"]
    v = dict(task="t2v-5B", prompt="p", model="m", video="in.mp4", strength=0.5, extend=None, overlap=5, segments=2)
    p = parsed(wan, wan_args(v))
    assert (p["video"].name, p["strength"], p["overlap"], p["segments"], p["extend"]) == ("in.mp4", 0.5, 5, 2, None)
