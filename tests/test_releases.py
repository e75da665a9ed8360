"""The real release files, proven on their real headers (issue 9): for each release under
tests/fixtures/releases/ (config text found in public code, see each SOURCE.md), the real config converts into our
args, and the real tensor list (tensors.txt.gz: names and shapes of the official modules built at that config on
torch's meta device, scripts/release_tensors.py) maps through the converter's own key map and strict loader with
nothing left over, nothing missing and every shape right. Arrays are lazy ``mx.zeros`` that are never evaluated,
so no weights (and no memory) are needed.
"""

from __future__ import annotations

import gzip
import json
import math

import mlx.core as mx
import pytest

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2 import audio_vae as av
from mlx_video.ltx2 import checkpoint as ck
from mlx_video.ltx2 import text_encoder as te
from mlx_video.ltx2 import transformer as tr
from mlx_video.ltx2 import video_vae as vv
from mlx_video.ltx2 import vocoder as vc
from tests.helpers import FIXTURES

RELEASES = FIXTURES / "releases"
LTX20 = (  # (version, facts the real config must give)
    "2.0",
    dict(
        apply_gated_attention=False,
        caption_projection=True,
        connector_layers=2,
        connector_heads=30,
        bwe=False,
        decoder_padding="reflect",
    ),
)
LTX23 = (
    "2.3",
    dict(
        apply_gated_attention=True,
        caption_projection=False,
        connector_layers=8,
        connector_heads=32,
        bwe=True,
        decoder_padding="zeros",
    ),
)
LTX = {  # release -> (version, facts): dev and distilled give the same facts
    "ltx-2-19b-dev": LTX20,
    "ltx-2-19b-distilled": LTX20,
    "ltx-2.3-22b-dev": LTX23,
    "ltx-2.3-22b-distilled": LTX23,
}


def release_config(name: str) -> dict:
    return json.loads((RELEASES / name / "config.json").read_text())


def release_tensors(name: str) -> dict[str, tuple[int, ...]]:
    """{file key: shape} of a release (its tensors.txt.gz)."""
    path = RELEASES / name / "tensors.txt.gz"
    out = {}
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        key, shape, _dtype = line.split("\t")
        out[key] = tuple(int(s) for s in shape.split(",") if s)
    return out


def lazy(shapes: dict[str, tuple]) -> dict[str, mx.array]:
    """Shape-only arrays: mx.zeros is lazy, nothing is allocated unless evaluated (never, here)."""
    return {k: mx.zeros(s, dtype=mx.bfloat16) for k, s in shapes.items()}


@pytest.mark.parametrize("name", sorted(LTX))
def test_ltx_release_header_converts(name):
    _, want = LTX[name]
    args, ignored = ck.config_args(release_config(name), name)
    t, p, v = args["transformer"], args["connectors"], args["video_vae"]
    got = dict(
        apply_gated_attention=t.apply_gated_attention,
        caption_projection=t.caption_projection,
        connector_layers=p.video_layers,
        connector_heads=p.video_heads,
        bwe=isinstance(args["vocoder"], vc.BWEVocoderArgs),
        decoder_padding=v.decoder_padding,
    )
    assert got == want
    assert (t.num_layers, t.inner_dim, t.audio_inner_dim, t.double_precision_rope) == (48, 4096, 2048, True)
    assert "transformer._class_name" in ignored  # the key that broke issue 9 is read by nobody
    read = {
        "transformer.num_layers",
        "transformer.rope_type",
        "transformer.frequencies_precision",
        "transformer.connector_num_layers",
        "vae.encoder_blocks",
        "vae.decoder_blocks",
        "vocoder.resblock",
    }
    assert not read & set(ignored)


@pytest.mark.parametrize("name", sorted(LTX))
def test_ltx_release_tensors_map_completely(name):
    """Every tensor of the real file is owned by a component, renamed by the converter's key map and
    loaded strictly into our module at the real config: nothing left over, nothing missing."""
    args, _ = ck.config_args(release_config(name), name)
    parts = ck.sanitize_parts(ck.split_checkpoint(lazy(release_tensors(name)), name))
    load_strict(tr.LTXModel(args["transformer"]), parts["transformer"], what=f"{name} transformer")
    p_args = ck.processor_args(args["connectors"], parts["connectors"])
    load_strict(te.EmbeddingsProcessor(p_args), parts["connectors"], what=f"{name} connectors")
    vv.VideoVAE.from_weights(parts["video_vae"], args["video_vae"])
    load_strict(av.AudioDecoder(args["audio_vae"]), parts["audio_decoder"], what=f"{name} audio decoder")
    load_strict(av.AudioEncoder(args["audio_vae"]), parts["audio_encoder"], what=f"{name} audio encoder")
    a = args["vocoder"]
    voc = vc.VocoderWithBWE(a) if isinstance(a, vc.BWEVocoderArgs) else vc.Vocoder(a)
    load_strict(voc, parts["vocoder"], what=f"{name} vocoder")
    assert p_args.registers == 128 and p_args.text_layers == 49


def test_release_lists_catch_a_renamed_or_missing_tensor():
    """The comparison can fail: a tensor the converter does not know, or one it needs and the file lacks."""
    name = "ltx-2.3-22b-dev"
    args, _ = ck.config_args(release_config(name), name)
    shapes = release_tensors(name)
    key = "model.diffusion_model.transformer_blocks.7.attn2.to_gate_logits.weight"
    renamed = dict(shapes, **{key.replace("to_gate_logits", "gate_logits"): shapes.pop(key)})
    parts = ck.sanitize_parts(ck.split_checkpoint(lazy(renamed), name))
    with pytest.raises(WeightsError, match="to_gate_logits"):
        load_strict(tr.LTXModel(args["transformer"]), parts["transformer"])


def test_missing_section_or_key_names_it_and_the_file():
    cfg = release_config("ltx-2.3-22b-dev")
    with pytest.raises(WeightsError, match=r"x\.safetensors.*audio_vae"):
        ck.config_args({k: v for k, v in cfg.items() if k != "audio_vae"}, "x.safetensors")
    del cfg["vocoder"]["bwe"]["n_fft"]
    with pytest.raises(WeightsError, match=r"x\.safetensors.*vocoder\.bwe\.n_fft"):
        ck.config_args(cfg, "x.safetensors")


# ----------------------------------------------------------------------------- the CLI on the real headers


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """version -> the tiny single file (real release config text, widths shrunk): the committed LTX-2 asset,
    and an LTX-2.3 one built by the same script."""
    from scripts import make_tiny_ltx2 as tiny
    from tests.helpers import ASSETS

    built = tiny.build(tmp_path_factory.mktemp("tiny23"), "2.3")
    return {"2.0": ASSETS / "tiny-LTX-2" / "ltx-2-tiny-dev.safetensors", "2.3": built["checkpoint"]}


@pytest.mark.parametrize("version", ["2.0", "2.3"])
def test_cli_convert_and_generate_accept_the_real_header(version, tiny_files, tmp_path, monkeypatch):
    """`mlx_video convert FILE` and `mlx_video generate --model FILE` on a tiny single file whose embedded config
    is the release's (with "_class_name": "AVTransformer3DModel"): the files issue 9 saw refused."""
    from typer.testing import CliRunner

    from mlx_video.cli import app

    ckpt = tiny_files[version]
    meta, _ = ck.read_header(ckpt)
    assert json.loads(meta["config"])["transformer"]["_class_name"] == "AVTransformer3DModel"
    r = CliRunner().invoke(app, ["convert", str(ckpt), str(tmp_path / "out"), "--dtype", "float32", "--verbose"])
    assert r.exit_code == 0, r.output
    assert "ignored config keys:" in r.output and "transformer._class_name" in r.output
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "v.mp4"
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "--model",
            str(ckpt),
            "--prompt",
            "a cat",
            "--pipeline",
            "dev",
            "--steps",
            "1",
            "--height",
            "64",
            "--width",
            "64",
            "--num-frames",
            "9",
            "--seed",
            "1",
            "--stg-blocks",
            "1",
            "--output-path",
            str(out),
        ],
    )  # 2 blocks
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0


# ----------------------------------------------------------------------------- Wan official folders

WAN = {  # release -> (model_type, dim, in_dim, out_dim, CLIP image branch)
    "Wan2.1-T2V-1.3B": ("t2v", 1536, 16, 16, False),
    "Wan2.1-T2V-14B": ("t2v", 5120, 16, 16, False),
    "Wan2.1-I2V-14B-480P": ("i2v", 5120, 36, 16, True),
    "Wan2.1-I2V-14B-720P": ("i2v", 5120, 36, 16, True),
    "Wan2.1-FLF2V-14B-720P": ("flf2v", 5120, 36, 16, True),
    "Wan2.2-TI2V-5B": ("ti2v", 3072, 48, 48, False),
    **{
        f"Wan2.2-{t}-A14B-{e}_noise_model": ("t2v" if t == "T2V" else "i2v", 5120, 16 if t == "T2V" else 36, 16, False)
        for t in ("T2V", "I2V")
        for e in ("high", "low")
    },
}


@pytest.mark.parametrize("name", sorted(WAN))
def test_wan_release_config_converts(name):
    from mlx_video.wan import checkpoint as wck

    kind, dim, in_dim, out_dim, clip = WAN[name]
    branch = {"img_emb.proj.0.weight": (1280,), **({"img_emb.emb_pos": (1, 514, 1280)} if kind == "flf2v" else {})}
    args, ignored = wck.dit_config_args(release_config(name), name, lazy(branch) if clip else {})  # the CLIP branch
    assert (args.model_type, args.dim, args.in_dim, args.out_dim, args.image_dim is not None) == (
        kind,
        dim,
        in_dim,
        out_dim,
        clip,
    )
    assert sorted(ignored) == ["_class_name", "_diffusers_version"]


@pytest.mark.parametrize("name", sorted(n for n in WAN if (RELEASES / n / "tensors.txt.gz").is_file()))
def test_wan_release_tensors_map_completely(name):
    from mlx_video.wan import checkpoint as wck
    from mlx_video.wan import transformer as wt

    w = lazy(release_tensors(name))
    args, _ = wck.dit_config_args(release_config(name), name, w)
    load_strict(wt.WanModel(args), wt.sanitize(w, "official"), what=f"{name} DiT")


def test_wan_missing_key_names_it_and_the_file():
    from mlx_video.wan import checkpoint as wck

    cfg = release_config("Wan2.2-TI2V-5B")
    del cfg["num_layers"]
    with pytest.raises(WeightsError, match=r"cfg\.json.*num_layers"):
        wck.dit_config_args(cfg, "cfg.json")


DIFFUSERS = {  # -Diffusers release -> (in_channels, inner dim, image_dim, pos_embed_seq_len, experts)
    "Wan2.1-T2V-1.3B-Diffusers": (16, 1536, None, None, 1),
    "Wan2.1-T2V-14B-Diffusers": (16, 5120, None, None, 1),
    "Wan2.1-I2V-14B-480P-Diffusers": (36, 5120, 1280, None, 1),
    "Wan2.1-I2V-14B-720P-Diffusers": (36, 5120, 1280, None, 1),
    "Wan2.1-FLF2V-14B-720P-diffusers": (36, 5120, 1280, 514, 1),
    "Wan2.2-TI2V-5B-Diffusers": (48, 3072, None, None, 1),
    "Wan2.2-T2V-A14B-Diffusers": (16, 5120, None, None, 2),
    "Wan2.2-I2V-A14B-Diffusers": (36, 5120, None, None, 2),
}


@pytest.mark.parametrize("name", sorted(DIFFUSERS))
def test_wan_diffusers_release_configs_convert(name, tmp_path):
    """Each -Diffusers release's configs (see its SOURCE.md): laid out as the release folder, the folder is taken
    for the diffusers layout (by its model_index.json, the real one where found), each transformer config
    converts with nothing needed missing and only diffusers' own unread keys left, and the Wan2.2 VAE config
    gives the Wan2.2 VAE."""
    import shutil

    from mlx_video.wan import checkpoint as wck

    in_ch, dim, image_dim, pos_len, experts = DIFFUSERS[name]
    release = RELEASES / name
    shutil.copytree(release, tmp_path / name, ignore=shutil.ignore_patterns("*.md"))
    root = tmp_path / name
    if not (root / "model_index.json").is_file():  # not found for this release: the layout's marker file only
        (root / "model_index.json").write_text("{}")
    assert wck.detect_layout(root) == "diffusers"
    subs = ["transformer", "transformer_2"][:experts]
    assert sorted(p.name for p in root.glob("transformer*")) == subs
    for sub in subs:
        args, ignored = wck.dit_config_args(json.loads((root / sub / "config.json").read_text()), sub)
        assert (args.in_dim, args.dim, args.image_dim, args.pos_embed_seq_len) == (in_ch, dim, image_dim, pos_len)
        assert set(ignored) <= {"_class_name", "_diffusers_version", "added_kv_proj_dim", "rope_max_seq_len"}
    if (root / "text_encoder" / "config.json").is_file():
        from mlx_video.wan import t5

        t5_args = t5.UMT5Args.from_config(json.loads((root / "text_encoder" / "config.json").read_text()))
        assert (t5_args.dim, t5_args.num_layers, t5_args.vocab_size) == (4096, 24, 256384)
    if (root / "vae" / "config.json").is_file():
        from mlx_video.wan import vae21, vae22

        vae_cfg = json.loads((root / "vae" / "config.json").read_text())
        vae_args = (vae22.Wan22VAEArgs if in_ch == 48 else vae21.Wan21VAEArgs).from_config(vae_cfg)
        assert vae_args.z_dim == len(vae_args.latents_mean) == (48 if in_ch == 48 else 16)
    index = root / "model_index.json"
    listed = {k for k, v in json.loads(index.read_text()).items() if isinstance(v, list) and v[0]}
    assert not listed or {"transformer", "vae", "text_encoder", "tokenizer"} <= listed
    assert not listed or ("transformer_2" in listed) == (experts == 2)  # TI2V-5B: "transformer_2": [null, null]
    assert not listed or ("image_encoder" in listed) == (image_dim is not None)


# ----------------------------------------------------------------------------- LTX latent upsampler files

UPSAMPLERS = ("ltx-2-spatial-upscaler-x2-1.0", "ltx-2.3-spatial-upscaler-x2-1.1")


@pytest.mark.parametrize("name", UPSAMPLERS)
def test_upsampler_header_converts_and_tensors_map_completely(name):
    """The real ``config`` metadata gives our upsampler args, and the real tensor list loads strictly into it;
    the list is the size of the published file (995,743,560 bytes for x2-1.1: bf16 weights + a 7,752-byte
    header, see SOURCE.md)."""
    from mlx_video.checks import ConfigKeys
    from mlx_video.ltx2 import checkpoint as lck
    from mlx_video.ltx2 import upsampler as up

    cfg = ConfigKeys(release_config(name))
    args = up.UpsamplerArgs.from_config(cfg)
    assert (args.mid_channels, lck.upsampler_kind(args), sorted(cfg.unread())) == (1024, "spatial_x2", ["_class_name"])
    shapes = release_tensors(name)
    assert 995_735_808 == 2 * sum(math.prod(s) for s in shapes.values())
    load_strict(up.LatentUpsampler(args), up.sanitize(lazy(shapes), "official"), what=f"{name} upsampler")


# ----------------------------------------------------------------------------- LTX distilled LoRA targets


@pytest.mark.parametrize("name", ["ltx-2-19b-dev", "ltx-2.3-22b-dev"])
def test_every_real_linear_layer_is_a_lora_target(name):
    """The distilled LoRAs' own tensor lists were not found (see README.md); what can be proven is the superset:
    a rank-384 LoRA in the distilled files' key form (``diffusion_model.<layer>.lora_{A,B}.weight``) on every
    linear layer of the real transformer resolves through the project's LTX LoRA key map onto our transformer,
    each with the shape of the layer it names, so whichever of them the real LoRA touches maps completely."""
    from mlx_video.nn import lora as nl

    args, _ = ck.config_args(release_config(name), name)
    prefix = "model.diffusion_model."
    layers = {
        k[len(prefix) : -len(".weight")]: s
        for k, s in release_tensors(name).items()
        if k.startswith(prefix) and k.endswith(".weight") and len(s) == 2 and "embeddings_connector" not in k
    }
    shapes = {}
    for layer, (out, inp) in layers.items():
        shapes[f"diffusion_model.{layer}.lora_A.weight"] = (384, inp)
        shapes[f"diffusion_model.{layer}.lora_B.weight"] = (out, 384)
    from mlx.utils import tree_flatten

    model = tr.LTXModel(args["transformer"])
    resolved = nl.resolve_lora(model, lazy(shapes), tr.lora_key_map(), what=name)
    assert len(resolved) == len(layers) > 1000
    flat = {k: v.shape for k, v in tree_flatten(model.parameters())}
    wrong = [
        t
        for t, (b, a, _) in resolved.items()
        if (b.shape[0], a.shape[1]) != tuple(flat[t if t in flat else t + ".weight"])
    ]
    assert not wrong
