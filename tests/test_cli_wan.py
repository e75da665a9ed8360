"""`mlx_video generate` end to end on the tiny official-layout checkpoint, and its bad-input errors."""

import shutil

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video.cli import _expand_multi, app
from tests.helpers import IMAGES
from tests.wan_tiny import TINY, run_cli

runner = CliRunner()
BASE = [
    "generate",
    "--task",
    "mi2v-5B",
    "--ckpt_dir",
    str(TINY),
    "--prompt",
    "a cat on the moon",
    "--size",
    "96*64",
    "--frame_num",
    "9",
    "--sample_steps",
    "2",
    "--base_seed",
    "7",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run(args):
    return runner.invoke(app, _expand_multi(args))


def frames_of(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fr = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        return fr, s.width, s.height, int(s.average_rate), c.metadata


def test_mi2v_two_photos_writes_mp4_and_is_reproducible(tmp_path):
    imgs = [str(IMAGES / "astronaut.png"), str(IMAGES / "chelsea.png")]
    outs = []
    for name in ("a.mp4", "b.mp4"):
        r = run(BASE + ["--images", *imgs, "--save_file", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        outs.append(frames_of(tmp_path / name))
    fr, w, h, fps, meta = outs[0]
    assert fr.shape[0] == 1 + 4 * (3 - 1) and (w, h) == (96, 64) and fps == 24  # best_output_size of 512x512
    assert '"task": "mi2v-5B"' in meta["comment"] and '"seed": 7' in meta["comment"]
    np.testing.assert_array_equal(fr, outs[1][0])
    assert "peak memory" in r.output and "denoise" in r.output


def test_one_frame_writes_png(tmp_path):
    r = run_cli(
        "--prompt", "x", "--size", "64*32", "--frame_num", 1, "--sample_steps", 1, "--save_file", tmp_path / "one.png"
    )
    assert r.exit_code == 0, r.output
    from PIL import Image

    assert Image.open(tmp_path / "one.png").size == (64, 32)


@pytest.mark.parametrize("case", ["missing", "corrupt", "too_many", "frames", "size", "unwritable", "truncated"])
def test_bad_input_clear_error_no_output(tmp_path, case):
    out = tmp_path / "o.mp4"
    args = BASE + ["--save_file", str(out)]
    imgs = [str(IMAGES / "astronaut.png")]
    expect = None
    if case == "missing":
        imgs, expect = [str(tmp_path / "nope.png")], "image not found"
    elif case == "corrupt":
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8\xff garbage")
        imgs, expect = [str(bad)], "cannot read image"
    elif case == "too_many":
        imgs, expect = imgs * 3, "at most 2 images"
    elif case == "frames":
        args[args.index("--frame_num") + 1], expect = "10", "4k+1"
    elif case == "size":
        args = [a for a in args if a not in ("mi2v-5B",)]
        args[args.index("--task") + 1 : args.index("--task") + 1] = ["t2v-5B"]
        args[args.index("--size") + 1], imgs, expect = "100*64", [], "multiples of 32"
    elif case == "unwritable":
        f = tmp_path / "file"
        f.write_text("")
        out = f / "o.mp4"
        args[args.index("--save_file") + 1], expect = str(out), "cannot create folder"
    elif case == "truncated":
        src = tmp_path / "ckpt"
        shutil.copytree(TINY, src)
        p = src / "diffusion_pytorch_model.safetensors"
        p.write_bytes(p.read_bytes()[:-1000])
        args[args.index("--ckpt_dir") + 1], expect = str(src), "diffusion_pytorch_model.safetensors"
    r = run(args + (["--images", *imgs] if imgs else []))
    assert r.exit_code == 2, r.output
    assert expect in r.output, r.output
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.suffix == ".mp4"] if out.parent.is_dir() else True


def test_official_ti2v_command_line_runs_unchanged(tmp_path):
    """Wan2.2 README: generate.py --task ti2v-5B --size 1280*704 --ckpt_dir ... --offload_model True
    --convert_model_dtype --t5_cpu --prompt ...  (shrunk size and steps for the tiny model)."""
    r = run(
        [
            "generate",
            "--task",
            "ti2v-5B",
            "--size",
            "64*32",
            "--ckpt_dir",
            str(TINY),
            "--offload_model",
            "True",
            "--convert_model_dtype",
            "--t5_cpu",
            "--prompt",
            "Summer beach vacation style",
            "--frame_num",
            "5",
            "--sample_steps",
            "1",
            "--save_file",
            str(tmp_path / "o.mp4"),
        ]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o.mp4").is_file()
