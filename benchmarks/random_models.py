"""Random-weights Wan models for whole-run benchmarks: ``WanPipeline`` over a folder that holds only a
``config.json`` (and, for a real text encoder, the tokenizer), with every weights file synthesised in memory.

``random_wan_pipeline(cfg, ...)`` writes the folder and returns a ``WanPipeline`` whose loaders
(``load_dit`` / ``load_vae`` / ``load_text_encoder`` / ``load_clip``, strict loading and casting included)
run unchanged: only ``load_safetensors`` is replaced, by a function that builds the module the file belongs
to from ``cfg``, fills it with random draws at the target dtype (the VAE at the pipeline's ``vae_dtype``; ``common.mlx_random_``: N(0, 1/fan_in),
norms 1), quantizes it as ``cfg["quantization"]`` says, and returns its parameters. The time spent
drawing is recorded per file in ``draw_s`` (it stands in for reading the file).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from benchmarks.common import mlx_random_
from mlx_video.io.weights import quantize_linears
from mlx_video.wan import pipeline as wan_pipeline
from mlx_video.wan import vae21, vae22
from mlx_video.wan.clip import CLIPVisionArgs, CLIPVisionEncoder
from mlx_video.wan.t5 import UMT5Args, UMT5Encoder
from mlx_video.wan.transformer import WanModel, WanModelArgs

TOKENIZER = Path(__file__).resolve().parents[1] / "assets" / "tiny-Wan2.2-TI2V-5B" / "google" / "umt5-xxl"

# Real widths (official configs: wan/configs/wan_ti2v_5B.py, wan_i2v_A14B.py, shared_config.py umt5_xxl)
TI2V_5B = dict(model_type="ti2v", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48)
A14B = dict(model_type="i2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, out_dim=16)
NARROW_DIT = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=64)
NARROW_T5 = dict(dim=64, dim_attn=64, dim_ffn=128, num_heads=2, num_layers=2)


def wan_config(model: str, narrow: bool = False, layers: int | None = None, dim: int | None = None) -> dict:
    """A converted folder's config.json dict for ``model`` ("ti2v-5B" | "i2v-A14B") at real widths, or
    narrow ones (tiny DiT, UMT5 and VAE; real vocabulary so the tokenizer fits); ``layers`` overrides the
    DiT depth, ``dim`` its width (FFN width in the model's ratio, heads of 128 channels; a multiple of 128)."""
    if model not in ("ti2v-5B", "i2v-A14B"):
        raise ValueError(f"unknown model {model!r} (ti2v-5B | i2v-A14B)")
    dit = dict(TI2V_5B if model == "ti2v-5B" else A14B)
    t5 = {}
    if narrow:
        dit.update(NARROW_DIT)
        t5 = dict(NARROW_T5)
    if layers is not None:
        dit["num_layers"] = layers
    if dim is not None:
        if dim % 128:
            raise ValueError(f"DiT width must be a multiple of 128, got {dim}")
        ratio = dit["ffn_dim"] / dit["dim"]
        dit.update(dim=dim, ffn_dim=int(round(dim * ratio / 128)) * 128, num_heads=dim // 128)
    version = "2.2" if model == "ti2v-5B" else "2.1"
    vae_args = ({"dim": 8, "dec_dim": 8} if version == "2.2" else {"dim": 8}) if narrow else {}
    va = (vae22.Wan22VAEArgs if version == "2.2" else vae21.Wan21VAEArgs)(**vae_args)
    s = 2 ** (len(va.dim_mult) - 1) * va.patch_size
    cfg = {
        "format": wan_pipeline.FORMAT,
        "family": "wan",
        "source": "random",
        "layout": "official",
        "dtype": "bfloat16",
        "dit": dit,
        "t5": t5,
        "text_len": 512,
        "vae": {"version": version, "stride": s, "args": vae_args},
        "quantization": {},
    }
    if model == "i2v-A14B":
        cfg["experts"] = ["dit_high", "dit_low"]
    return cfg


def _module(cfg: dict, stem: str):
    if stem.startswith("dit"):
        return WanModel(WanModelArgs(**cfg.get(stem, cfg["dit"])))
    if stem == "vae":
        va = cfg["vae"]["args"]
        return (
            vae22.Wan22VAE(vae22.Wan22VAEArgs(**va))
            if cfg["vae"]["version"] == "2.2"
            else vae21.Wan21VAE(vae21.Wan21VAEArgs(**va))
        )
    if stem == "t5":
        return UMT5Encoder(UMT5Args(**cfg["t5"]))
    if stem == "clip":
        return CLIPVisionEncoder(CLIPVisionArgs(**cfg["clip"]))
    raise ValueError(f"no random module for {stem}.safetensors")


class RandomWeights:
    """Stands in for ``load_safetensors``: ``self(path)`` returns random weights for the module named by
    the file's stem; ``draw_s`` maps each stem to the seconds spent drawing."""

    def __init__(self, cfg: dict, dtype: mx.Dtype, seed: int = 0):
        self.cfg, self.dtype, self.seed = cfg, dtype, seed
        self.draw_s: dict[str, float] = {}
        self.pipe = None  # set by random_wan_pipeline: the VAE is drawn in the pipeline's vae_dtype

    def __call__(self, path) -> dict:
        t0 = time.perf_counter()
        stem = Path(path).stem
        m = _module(self.cfg, stem)
        # the VAE in its compute dtype: a converted folder's float32 VAE is read lazily (mx.load) and cast as it
        # is used, so no float32 copy stays resident; a float32 draw would (until every weight had been used)
        dtype = (self.pipe.vae_dtype if self.pipe is not None else mx.float32) if stem == "vae" else self.dtype
        mlx_random_(m, dtype, self.seed + len(self.draw_s))
        quantize_linears(m, self.cfg.get("quantization", {}).get(stem))
        out = dict(tree_flatten(m.parameters()))
        mx.eval(list(out.values()))
        self.draw_s[stem] = self.draw_s.get(stem, 0.0) + time.perf_counter() - t0
        return out


def random_wan_pipeline(
    cfg: dict,
    dtype: mx.Dtype = mx.bfloat16,
    vae_dtype: mx.Dtype = mx.float32,
    offload: bool = True,
    seed: int = 0,
    folder: Path | None = None,
):
    """(WanPipeline, RandomWeights, folder): the pipeline over a fresh folder holding ``cfg`` as config.json
    and the UMT5 tokenizer of assets/tiny-Wan2.2-TI2V-5B; its weights files are drawn in memory (the
    module's ``load_safetensors`` is replaced for the life of the process)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="random_wan_"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if not (folder / "tokenizer").exists():
        shutil.copytree(TOKENIZER, folder / "tokenizer")
    weights = RandomWeights(cfg, dtype, seed)
    wan_pipeline.load_safetensors = weights
    weights.pipe = wan_pipeline.WanPipeline(folder, dtype=dtype, vae_dtype=vae_dtype, offload=offload)
    return weights.pipe, weights, folder
