"""(Re)generate the tensor lists of the real releases: tests/fixtures/releases/<release>/tensors.txt.gz.

Method (the lists are derived, not downloaded): each release's real config (tests/fixtures/releases/<release>/
config.json, see its SOURCE.md) is fed to the official module constructors on torch's ``meta`` device (no memory,
no weights), and the modules' state dicts are listed under the names the release file stores them:

- LTX-2 / LTX-2.3 single file: ltx-core 1.0.0's configurators (LTXModelConfigurator, EmbeddingsProcessor-,
  VideoEncoder-/VideoDecoder-, AudioEncoder-/AudioDecoder-, VocoderConfigurator), their module keys mapped back
  through the inverse of ltx-core's own key maps (LTXV_MODEL_COMFY_RENAMING_MAP, EMBEDDINGS_PROCESSOR_KEY_OPS,
  VAE_*/AUDIO_VAE_*/VOCODER_COMFY_KEYS_FILTER): ``model.diffusion_model.*``, ``text_embedding_projection.*``,
  ``vae.{encoder,decoder,per_channel_statistics}.*``, ``audio_vae.*``, ``vocoder.*``.
- LTX latent upsampler files (``ltx-2*-spatial-upscaler-*.safetensors``): ltx-core's
  LatentUpsamplerConfigurator at the file's ``config`` metadata; names as the module's (the file stores them so).
- Wan official folders: the official ``wan.modules.model.WanModel`` (the installed Wan2.2 package, through
  tests.oracles.wan) at the folder's ``config.json``; for Wan2.1 I2V / FLF2V the CLIP image branch, which that
  package lacks, comes from diffusers' WanTransformer3DModel named back to the official keys (wan21_image_branch).

One line per tensor: ``name<TAB>shape (comma-separated)<TAB>dtype``; the dtype is the module's parameter dtype
(float32 on meta), not the storage dtype of the release (bf16 for most weights; not in the lists).
Needs the oracle extras (torch, ltx-core, wan). Usage: ``python -m scripts.release_tensors [RELEASE ...]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASES = ROOT / "tests" / "fixtures" / "releases"


def _named(module, prefix: str, rename: dict[str, str] | None = None) -> dict[str, tuple]:
    out = {}
    for k, v in module.state_dict().items():
        for src, dst in (rename or {}).items():
            if k.startswith(src):
                k = dst + k[len(src) :]
                break
        else:
            k = prefix + k
        out[k] = (tuple(v.shape), str(v.dtype).removeprefix("torch."))
    return out


def ltx_tensors(config: dict) -> dict[str, tuple]:
    """{file key: (shape, dtype)} of a Lightricks single file with this embedded config."""
    import torch
    from ltx_core.model.audio_vae.model_configurator import (
        AudioDecoderConfigurator,
        AudioEncoderConfigurator,
        VocoderConfigurator,
    )
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator
    from ltx_core.text_encoders.gemma.encoders.encoder_configurator import EmbeddingsProcessorConfigurator

    out = {}
    with torch.device("meta"):
        out.update(_named(LTXModelConfigurator.from_config(config), "model.diffusion_model."))
        out.update(
            _named(
                EmbeddingsProcessorConfigurator.from_config(config),
                "",
                {
                    "feature_extractor.": "text_embedding_projection.",
                    "video_connector.": "model.diffusion_model.video_embeddings_connector.",
                    "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
                },
            )
        )
        for part, conf in (("encoder", VideoEncoderConfigurator), ("decoder", VideoDecoderConfigurator)):
            out.update(
                _named(
                    conf.from_config(config), f"vae.{part}.", {"per_channel_statistics.": "vae.per_channel_statistics."}
                )
            )
        for part, conf in (("encoder", AudioEncoderConfigurator), ("decoder", AudioDecoderConfigurator)):
            out.update(
                _named(
                    conf.from_config(config),
                    f"audio_vae.{part}.",
                    {"per_channel_statistics.": "audio_vae.per_channel_statistics."},
                )
            )
        out.update(_named(VocoderConfigurator.from_config(config), "vocoder."))
    return out


def upsampler_tensors(config: dict) -> dict[str, tuple]:
    """{file key: (shape, dtype)} of an LTX latent upsampler file with this ``config`` metadata."""
    import torch
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator

    with torch.device("meta"):
        return _named(LatentUpsamplerConfigurator.from_config(config), "")


# diffusers' scripts/convert_wan_to_diffusers.py renames (official -> diffusers) of the Wan2.1 CLIP image branch,
# inverted: the branch is built from diffusers' WanTransformer3DModel and named back to the official keys.
WAN21_IMAGE_BRANCH = {
    "condition_embedder.image_embedder.norm1.": "img_emb.proj.0.",
    "condition_embedder.image_embedder.ff.net.0.proj.": "img_emb.proj.1.",
    "condition_embedder.image_embedder.ff.net.2.": "img_emb.proj.3.",
    "condition_embedder.image_embedder.norm2.": "img_emb.proj.4.",
    "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos",
    "attn2.add_k_proj.": "cross_attn.k_img.",
    "attn2.add_v_proj.": "cross_attn.v_img.",
    "attn2.norm_added_k.": "cross_attn.norm_k_img.",
}


def wan21_image_branch(config: dict) -> dict[str, tuple]:
    """The Wan2.1 I2V / FLF2V CLIP image branch (``img_emb.*``, per block ``cross_attn.{k,v,norm_k}_img``), which
    the installed official package (Wan2.2's) lacks: diffusers' WanTransformer3DModel at this config with
    image_dim 1280 and added_kv_proj_dim = dim (FLF2V: pos_embed_seq_len 2 x 257), as diffusers' conversion script
    sets them for these releases, its keys named back through the inverse of that script's renames."""
    import torch
    from diffusers import WanTransformer3DModel

    heads = config["num_heads"]
    kw = dict(
        num_attention_heads=heads,
        attention_head_dim=config["dim"] // heads,
        in_channels=config["in_dim"],
        out_channels=config["out_dim"],
        ffn_dim=config["ffn_dim"],
        num_layers=config["num_layers"],
        image_dim=1280,
        added_kv_proj_dim=config["dim"],
        pos_embed_seq_len=2 * 257 if config["model_type"] == "flf2v" else None,
    )
    with torch.device("meta"):
        sd = WanTransformer3DModel(**kw).state_dict()
    out = {}
    for k, v in sd.items():
        for src, dst in WAN21_IMAGE_BRANCH.items():
            if src in k:
                out[k.replace(src, dst)] = (tuple(v.shape), str(v.dtype).removeprefix("torch."))
    return out


def wan_tensors(config: dict) -> dict[str, tuple]:
    """{file key: (shape, dtype)} of an official Wan DiT with this config.json: the official
    ``wan.modules.model.WanModel`` (Wan2.2's package); for Wan2.1 I2V / FLF2V (model_type i2v with a Wan2.1
    ``_diffusers_version``, or flf2v) built as i2v, plus :func:`wan21_image_branch`."""
    import torch

    from tests.oracles import wan

    wan21_clip = config["model_type"] == "flf2v" or (
        config["model_type"] == "i2v" and config["_diffusers_version"] < "0.33"
    )
    kw = {k: v for k, v in config.items() if not k.startswith("_")}
    if wan21_clip:
        kw["model_type"] = "i2v"
    with torch.device("meta"):
        out = _named(wan().model.WanModel(**kw), "")
    if wan21_clip:
        out.update(wan21_image_branch(config))
    return out


def write(release: Path, tensors: dict[str, tuple]) -> Path:
    lines = "".join(f"{k}\t{','.join(map(str, s))}\t{d}\n" for k, (s, d) in sorted(tensors.items()))
    path = release / "tensors.txt.gz"
    path.write_bytes(gzip.compress(lines.encode(), mtime=0))  # mtime 0: reruns give the same bytes
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("releases", nargs="*", help="release folder names (default: every one with a config.json)")
    a = ap.parse_args(argv)
    names = a.releases or sorted(p.parent.name for p in RELEASES.glob("*/config.json"))
    for name in names:
        release = RELEASES / name
        config = json.loads((release / "config.json").read_text())
        if "transformer" in config:
            tensors = ltx_tensors(config)
        elif "mid_channels" in config:
            tensors = upsampler_tensors(config)
        else:
            tensors = wan_tensors(config)
        print(f"{write(release, tensors)}: {len(tensors)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
