"""Random-weights Wan models for whole-run benchmarks: ``WanPipeline`` over a folder in our converted layout
that holds a ``config.json`` (and, for a real text encoder, the tokenizer), with each weights file either
synthesised in memory or written to the folder once, up front.

``random_wan_pipeline(cfg, ...)`` writes the folder and returns a ``WanPipeline`` whose loaders
(``load_dit`` / ``load_vae`` / ``load_text_encoder`` / ``load_clip``, strict loading and casting included)
run unchanged: only ``load_safetensors`` is replaced, by a function that reads a weights file the folder
holds (the library's own reader: ``mx.load``, lazy) and otherwise builds the module the file belongs to from
``cfg``, fills it with random draws at the target dtype (the VAE at the pipeline's ``vae_dtype``;
``common.mlx_random_``: N(0, 1/fan_in), norms 1), quantizes it as ``cfg["quantization"]`` says, and returns
its parameters. The time spent drawing is recorded per file in ``draw_s`` (it stands in for reading the file).

``RandomWeights.write(stem)`` writes ``<stem>.safetensors`` (the same random module, in the folder's dtype,
quantized as ``cfg["quantization"]`` says: what ``mlx_video convert`` would have written) for the runs that
need a real file: DiT blocks streamed from it (``nn/blockwise.SafetensorsBlocks`` re-reads them lazily each
step) and weights quantized at load from a float file (``WanPipeline._quantize``), whose load must not hold
an evaluated float copy. ``write_s`` records the seconds per file; ``cleanup()`` removes the folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from benchmarks.common import mlx_random_, release_memory
from mlx_video.io import weights as weights_io
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
    """Stands in for ``load_safetensors``: ``self(path)`` reads ``path`` when the folder holds it (written by
    :meth:`write`), else returns random weights for the module named by the file's stem; ``draw_s`` maps each
    stem to the seconds spent drawing in memory, ``write_s`` each written file to the seconds its draw and
    write took (outside every measured phase)."""

    def __init__(self, cfg: dict, dtype: mx.Dtype, seed: int = 0, folder: Path | None = None):
        self.cfg, self.dtype, self.seed, self.folder = cfg, dtype, seed, folder
        self.draw_s: dict[str, float] = {}
        self.write_s: dict[str, float] = {}
        self._seeds: dict[str, int] = {}
        self.pipe = None  # set by random_wan_pipeline: the VAE is drawn in the pipeline's vae_dtype

    def _draw(self, stem: str) -> dict:
        """The random module of ``stem`` as {name: evaluated array}, quantized as ``cfg["quantization"]``
        says (one seed per stem, so a file written and a draw in memory hold the same values)."""
        m = _module(self.cfg, stem)
        # the VAE in its compute dtype: a converted folder's float32 VAE is read lazily (mx.load) and cast as it
        # is used, so no float32 copy stays resident; a float32 draw would (until every weight had been used)
        dtype = (self.pipe.vae_dtype if self.pipe is not None else mx.float32) if stem == "vae" else self.dtype
        seed = self._seeds.setdefault(stem, self.seed + 1000 * len(self._seeds))
        mlx_random_(m, dtype, seed)
        quantize_linears(m, self.cfg.get("quantization", {}).get(stem))
        out = dict(tree_flatten(m.parameters()))
        mx.eval(list(out.values()))
        return out

    def __call__(self, path) -> dict:
        if Path(path).is_file():  # written by write(): read as a converted folder's file is (lazily)
            return weights_io.load_safetensors(path)
        t0 = time.perf_counter()
        stem = Path(path).stem
        out = self._draw(stem)
        self.draw_s[stem] = self.draw_s.get(stem, 0.0) + time.perf_counter() - t0
        return out

    def write(self, stem: str) -> Path:
        """Write ``<stem>.safetensors`` into the folder (the random module as :meth:`_draw` makes it, in this
        harness's dtype, which config.json states) and free the draw; returns the path."""
        t0 = time.perf_counter()
        path = Path(self.folder) / f"{stem}.safetensors"
        weights = self._draw(stem)
        weights_io.save_safetensors(path, weights, {"format": "mlx", "source": "random"})
        del weights
        release_memory()
        self.write_s[stem] = time.perf_counter() - t0
        return path

    def cleanup(self) -> None:
        """Remove the folder (config, tokenizer and every written weights file)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def random_wan_pipeline(
    cfg: dict,
    dtype: mx.Dtype = mx.bfloat16,
    vae_dtype: mx.Dtype = mx.float32,
    offload: bool = True,
    seed: int = 0,
    folder: Path | None = None,
):
    """(WanPipeline, RandomWeights, folder): the pipeline over a fresh folder holding ``cfg`` as config.json
    (its ``dtype`` set to ``dtype``: the folder a conversion in that dtype makes) and the UMT5 tokenizer of
    assets/tiny-Wan2.2-TI2V-5B; its weights files are drawn in memory unless written with
    ``RandomWeights.write`` (the module's ``load_safetensors`` is replaced for the life of the process).
    ``RandomWeights.cleanup`` removes the folder."""
    folder = Path(folder or tempfile.mkdtemp(prefix="random_wan_"))
    folder.mkdir(parents=True, exist_ok=True)
    cfg["dtype"] = str(dtype).rsplit(".", 1)[-1]
    (folder / "config.json").write_text(json.dumps(cfg))
    if not (folder / "tokenizer").exists():
        shutil.copytree(TOKENIZER, folder / "tokenizer")
    weights = RandomWeights(cfg, dtype, seed, folder)
    wan_pipeline.load_safetensors = weights
    weights.pipe = wan_pipeline.WanPipeline(folder, dtype=dtype, vae_dtype=vae_dtype, offload=offload)
    return weights.pipe, weights, folder
