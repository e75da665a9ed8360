"""musubi-tuner one-frame inference: index-string validation, the control/target y slots, latent slots at the
given RoPE time indices (control 0, target 5 -> temporal rows 0 and 5, checked against the Wan2.1 I2V DiT of
diffusers with its RoPE rows fed those positions), and the musubi example commands through the CLI."""

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from mlx_video.cli import _expand_multi, app
from mlx_video.io.weights import load_safetensors
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from tests.helpers import IMAGES
from tests.oracles import rel_err
from tests.test_wan_transformer import official_to_diffusers
from tests.wan_tiny import DiTSpy, diffusers_dit

ROOT = Path(__file__).resolve().parents[1]
I2V21 = ROOT / "assets" / "tiny-Wan2.1-I2V-14B"
FLF21 = ROOT / "assets" / "tiny-Wan2.1-FLF2V-14B"
START, END = IMAGES / "chelsea.png", IMAGES / "coffee.png"


@pytest.mark.parametrize(
    "text,n,msg",
    [
        ("control_index=0,target_index=1", 2, "1 control_index value.* but 2 control image"),
        ("control_index=0;1,target_index=1", 2, "target_index 1 is also a control_index"),
        ("control_index=-1,target_index=1", 1, "must be in 0..1023"),
        ("control_index=0,target_index=1024", 1, "must be in 0..1023"),
        ("control_index=0;0,target_index=1", 2, "duplicates"),
        ("control_index=a,target_index=1", 1, "integers separated by ';'"),
        ("control_index=0", 1, "target_index is missing"),
        ("control_index=0,target_index=1,foo=2", 1, "got 'foo=2'"),
        ("control_index=0,target_index=1;2", 1, "takes one index"),
    ],
)
def test_index_string_is_validated(text, n, msg):
    with pytest.raises(ValueError, match=msg):
        P.OneFrameSpec.parse(text, n)


def test_index_string_parses():
    s = P.OneFrameSpec.parse(" control_index=2;0 , target_index=1", 2)
    assert s.positions == [0, 1, 2] and s.target_slot == 1 and s.control_index == (2, 0)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    out = convert_wan(I2V21, tmp_path_factory.mktemp("conv") / "i2v", dtype="float32")
    return P.WanPipeline(out, dtype=mx.float32, offload=False)


def _diffusers_i2v():
    cfg = json.loads((I2V21 / "config.json").read_text())
    sd = {k: v.float() for k, v in load_file(str(I2V21 / "diffusion_pytorch_model.safetensors")).items()}
    dm = diffusers_dit(cfg, 36, 16, image_dim=sd["img_emb.proj.0.weight"].shape[0])
    dm.load_state_dict(official_to_diffusers(sd), strict=True)
    return dm


def test_control_0_target_5_gives_rope_rows_0_and_5(pipe):
    spec = P.OneFrameSpec.parse("control_index=0,target_index=5", 1)
    g = np.random.default_rng(0)
    ctx = [g.standard_normal((n, 32)).astype(np.float32) for n in (6, 4)]
    spy = DiTSpy(pipe.dit, lambda x, t, ctx, rope, **kw: dict(x=x, t=t, rope=rope, **kw))  # RoPE tables and y too
    pipe._dits["dit"] = spy
    try:
        res = pipe.generate(
            task="i2v-14B",
            images=[START],
            size="64*48",
            sample_steps=2,
            one_frame=spec,
            control_images=[START],
            context=[mx.array(c) for c in ctx],
            seed=3,
        )
    finally:
        pipe._dits["dit"] = spy.model
    dit = spy.model
    w, h = P.i2v_size(Image.open(START).size, 64 * 48)
    call = spy.calls[0]
    x, y = call["x"][:1], call["y"][:1]
    assert x.shape == (1, 2, h // 8, w // 8, 16) and len(spy.calls) == 2  # two latent slots, two steps
    grid = (2, h // 16, w // 16)
    want = dit.rope_tables(grid, t_positions=[0, 5])
    np.testing.assert_array_equal(np.array(call["rope"].cos), np.array(want.cos))
    np.testing.assert_array_equal(np.array(call["rope"].sin), np.array(want.sin))

    # y: control slot = all four mask channels and the control image encoded alone; target = mask 0, VAE(0)
    ctrl = P.prepare_images([START], w, h)[0]
    y = np.array(y)
    assert (y[0, 0, ..., :4] == 1).all() and (y[0, 1, ..., :4] == 0).all()
    np.testing.assert_allclose(y[0, 0, ..., 4:], np.array(pipe.vae.encode(mx.array(ctrl)[None, None]))[0, 0], atol=1e-5)
    np.testing.assert_allclose(y[0, 1, ..., 4:], np.array(pipe.vae.encode(mx.zeros((1, 1, h, w, 3))))[0, 0], atol=1e-5)

    # the official-arithmetic DiT (diffusers) with its temporal RoPE rows 0 and 1 replaced by rows 0 and 5
    clip = P.encode_clip(pipe.clip, [P.first_last_pixels(START)[0]])
    t = np.array(call["t"]).reshape(-1)[:1].astype(np.float32)
    ours = dit(
        mx.array(x),
        mx.array(t),
        dit.embed_text([mx.array(ctx[0])]),
        call["rope"],
        y=mx.array(y),
        img=dit.embed_image(clip),
    )
    dm = _diffusers_i2v()
    td = dm.rope.t_dim
    for buf in (dm.rope.freqs_cos, dm.rope.freqs_sin):
        buf[:2, :td] = buf[[0, 5], :td].clone()
    pad = torch.zeros(1, 512, 32)
    pad[0, :6] = torch.from_numpy(ctx[0])
    cf = lambda a: torch.from_numpy(np.ascontiguousarray(np.array(a).transpose(0, 4, 1, 2, 3)))
    with torch.no_grad():
        ref = dm(
            torch.cat([cf(x), cf(y)], 1),
            torch.from_numpy(t),
            pad,
            encoder_hidden_states_image=torch.from_numpy(np.array(clip)),
            return_dict=False,
        )[0]
    e = rel_err(ours, ref.permute(0, 2, 3, 4, 1))
    assert e < 3e-4, e
    default = dit(
        mx.array(x),
        mx.array(t),
        dit.embed_text([mx.array(ctx[0])]),
        dit.rope_tables(grid),
        y=mx.array(y),
        img=dit.embed_image(clip),
    )
    assert rel_err(default, ours) > 1e-2  # positions [0, 1] would give another answer

    # the target slot (1) is what comes back and is decoded to one image
    assert res.latents.shape == (1, 1, h // 8, w // 8, 16) and res.frames.shape == (1, h, w, 3)
    assert res.params["one_frame_inference"] == {"control_index": [0], "target_index": 5}


def test_one_frame_needs_the_right_task_and_images(pipe):
    with pytest.raises(ValueError, match="one-frame inference is for i2v-14B and flf2v-14B"):
        pipe.generate(
            task="i2v-A14B", images=[START], one_frame="control_index=0,target_index=1", control_images=[START]
        )
    with pytest.raises(ValueError, match="2 control image"):
        pipe.generate(
            task="i2v-14B", images=[START], one_frame="control_index=0,target_index=1", control_images=[START, END]
        )
    with pytest.raises(ValueError, match="only used by one-frame"):
        pipe.generate(task="i2v-14B", images=[START], control_images=[START])


def _cli(args, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    return CliRunner().invoke(app, _expand_multi(["generate", *args]))


@pytest.mark.parametrize("example", ["one_frame", "intermediate"])
def test_musubi_examples_write_an_image_and_the_latent(example, tmp_path, monkeypatch):
    """musubi-tuner docs/wan_1f.md examples, on the tiny I2V (control_index=0,target_index=1) and FLF2V
    (control_index=0;2,target_index=1 with start and end images) checkpoints."""
    out = tmp_path / "out.png"
    if example == "one_frame":
        args = [
            "--task",
            "i2v-14B",
            "--ckpt_dir",
            str(I2V21),
            "--output_type",
            "latent_images",
            "--image_path",
            str(START),
            "--control_image_path",
            str(START),
            "--one_frame_inference",
            "control_index=0,target_index=1",
        ]
    else:
        args = [
            "--task",
            "flf2v-14B",
            "--ckpt_dir",
            str(FLF21),
            "--output_type",
            "latent_images",
            "--image_path",
            str(START),
            "--end_image_path",
            str(END),
            "--control_image_path",
            str(START),
            str(END),
            "--one_frame_inference",
            "control_index=0;2,target_index=1",
        ]
    r = _cli(
        args
        + [
            "--prompt",
            "The girl wears a school uniform.",
            "--size",
            "64*48",
            "--sample_steps",
            "2",
            "--save_file",
            str(out),
        ],
        tmp_path,
        monkeypatch,
    )
    assert r.exit_code == 0, r.output
    im = Image.open(out)
    assert im.size == (64, 32)  # 451x300 start image under 64*48 max area (docs/wan.md 8.1)
    meta = json.loads(im.text["parameters"])
    assert meta["one_frame_inference"]["target_index"] == 1 and meta["frame_num"] == 1
    lat = load_safetensors(out.with_suffix(".safetensors"))["latent"]
    assert lat.shape == (1, 1, 4, 8, 16)


def test_cli_one_frame_errors(tmp_path, monkeypatch):
    base = [
        "--task",
        "flf2v-14B",
        "--ckpt_dir",
        str(FLF21),
        "--image_path",
        str(START),
        "--end_image_path",
        str(END),
        "--size",
        "64*48",
        "--save_file",
        str(tmp_path / "o.png"),
    ]
    r = _cli(
        base + ["--control_image_path", str(START), "--one_frame_inference", "control_index=0;2,target_index=1"],
        tmp_path,
        monkeypatch,
    )
    assert r.exit_code == 2 and "2 control_index value(s) but 1 control image(s)" in r.output
    r = _cli(
        base + ["--control_image_path", str(START), "--one_frame_inference", "control_index=1,target_index=1"],
        tmp_path,
        monkeypatch,
    )
    assert r.exit_code == 2 and "also a control_index" in r.output
    r = _cli(
        base[:-2] + ["--control_image_path", str(START), "--save_file", str(tmp_path / "o.png")], tmp_path, monkeypatch
    )
    assert r.exit_code == 2 and "one-frame options" in r.output
    assert not (tmp_path / "o.png").exists()
