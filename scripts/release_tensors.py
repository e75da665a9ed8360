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
  tests.oracles.wan) at the folder's ``config.json``; Wan2.1 I2V / FLF2V are skipped (that package has no CLIP
  image branch).

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
                k = dst + k[len(src):]
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
        out.update(_named(EmbeddingsProcessorConfigurator.from_config(config), "",
                          {"feature_extractor.": "text_embedding_projection.",
                           "video_connector.": "model.diffusion_model.video_embeddings_connector.",
                           "audio_connector.": "model.diffusion_model.audio_embeddings_connector."}))
        for part, conf in (("encoder", VideoEncoderConfigurator), ("decoder", VideoDecoderConfigurator)):
            out.update(_named(conf.from_config(config), f"vae.{part}.",
                              {"per_channel_statistics.": "vae.per_channel_statistics."}))
        for part, conf in (("encoder", AudioEncoderConfigurator), ("decoder", AudioDecoderConfigurator)):
            out.update(_named(conf.from_config(config), f"audio_vae.{part}.",
                              {"per_channel_statistics.": "audio_vae.per_channel_statistics."}))
        out.update(_named(VocoderConfigurator.from_config(config), "vocoder."))
    return out


def upsampler_tensors(config: dict) -> dict[str, tuple]:
    """{file key: (shape, dtype)} of an LTX latent upsampler file with this ``config`` metadata."""
    import torch
    from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator

    with torch.device("meta"):
        return _named(LatentUpsamplerConfigurator.from_config(config), "")


def wan_tensors(config: dict) -> dict[str, tuple] | None:
    """{file key: (shape, dtype)} of an official Wan DiT with this config.json, or None for the Wan2.1 CLIP
    branch (model_type i2v with in_dim 36 in Wan2.1, flf2v): the installed official package is Wan2.2's,
    whose WanModel has no ``img_emb``."""
    import torch

    from tests.oracles import wan

    if config["model_type"] == "flf2v" or (config["model_type"] == "i2v" and config["_diffusers_version"] < "0.33"):
        return None
    kw = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        return _named(wan().model.WanModel(**kw), "")


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
        if tensors is None:
            print(f"{release}: no official module to build (see SOURCE.md)", file=sys.stderr)
            continue
        print(f"{write(release, tensors)}: {len(tensors)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
