"""Build a tiny random-weight LTX-2 (or LTX-2.3) smoke-test checkpoint in Lightricks' layout.

SMOKE-TEST MODEL: random weights, its videos and sounds are noise. It exists so the converter, the
loaders and the pipelines can run end to end offline through the real file layout.

Files written (as Lightricks/LTX-2 ships them, shrunk):
- ``ltx-2-tiny-dev.safetensors``: one bf16 single file with the transformer and text connectors
  (``model.diffusion_model.*``), the text feature projection (``text_embedding_projection.*``), the
  video VAE (``vae.*``), the audio VAE (``audio_vae.*``) and the vocoder (``vocoder.*``); header
  metadata ``config`` (JSON with transformer / vae / audio_vae / vocoder / scheduler sections) and
  ``model_version``;
- ``ltx-2-tiny-spatial-upscaler-x2.safetensors``: latent upsampler with its own flat ``config``;
- ``ltx-2-tiny-distilled-lora.safetensors``: ComfyUI-style LoRA (``diffusion_model.*.lora_A/B.weight``);
- ``gemma/``: a tiny Gemma 3 (transformers 4.x key layout ``language_model.model.*`` with a vision
  tower, as google/gemma-3-12b-it ships), ``config.json`` and a word-level tokenizer built from a
  fixed word list (no training, so two runs give the same files).

Every module is the official ltx-core 1.0.0 (or transformers) module at tiny sizes, filled from
seeded generators (tests/oracles.randomize_), rounded to bf16 before saving so that
:func:`reference_modules` returns modules equal to the files. Needs the oracle extras (torch,
ltx-core, transformers).

Usage: python -m scripts.make_tiny_ltx2 [OUT_DIR] [--version 2.0|2.3] [--seed 0]
(default OUT_DIR: assets/tiny-LTX-2 for 2.0, assets/tiny-LTX-2.3 for 2.3)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

C = 8  # video latent channels (128 in the real checkpoints)
GEMMA_HIDDEN, GEMMA_LAYERS = 32, 2
REGISTERS = 8  # connector learnable registers (128 in the real ones; text length must divide)
WORDS = (
    "a an the cat dog man woman bird car walks runs flies drives on in at over under beach street "
    "city forest sky sea sunset night morning red blue green white black slowly fast camera pans "
    "zooms left right close wide shot music rain wind speaks sings quietly loud"
).split()
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
NAMES = {
    "2.0": ("ltx-2-tiny-dev", "ltx-2-tiny-spatial-upscaler-x2", "ltx-2-tiny-distilled-lora"),
    "2.3": ("ltx-2.3-tiny-dev", "ltx-2.3-tiny-spatial-upscaler-x2", "ltx-2.3-tiny-distilled-lora"),
}


RELEASES = {"2.0": "ltx-2-19b-dev", "2.3": "ltx-2.3-22b-dev"}  # tests/fixtures/releases/<name>/config.json
# The only changes to the release's config text: widths and depths ("section.key" -> tiny value). A key the
# release lacks is added at the end of its section (listed as added in the asset README).
_TRANSFORMER = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": C,
    "out_channels": C,
    "num_layers": 2,
    "cross_attention_dim": 32,
    "caption_channels": GEMMA_HIDDEN,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 8,
    "audio_cross_attention_dim": 16,
    "audio_in_channels": 16,
    "audio_out_channels": 16,
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 16,
    "connector_num_layers": 2,
    "connector_num_learnable_registers": REGISTERS,
}
# ltx-core sizes the audio statistics by ch, which must equal z_channels x mel_bins / 4 (128 = 8 x 16 released)
_AUDIO = {"ch": 16, "num_res_blocks": 1, "z_channels": 1}
_HIFI = {"resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}
TINY = {
    "2.0": {
        **{f"transformer.{k}": v for k, v in _TRANSFORMER.items()},
        "vae.latent_channels": C,
        "vae.decoder_base_channels": 4,
        **{f"audio_vae.model.params.ddconfig.{k}": v for k, v in _AUDIO.items()},
        "vocoder.upsample_initial_channel": 32,
        **{f"vocoder.{k}": v for k, v in _HIFI.items()},
    },
    "2.3": {
        **{f"transformer.{k}": v for k, v in _TRANSFORMER.items()},
        "transformer.audio_connector_num_attention_heads": 2,
        "transformer.audio_connector_attention_head_dim": 8,
        "vae.latent_channels": C,
        "vae.decoder_base_channels": 4,
        **{f"audio_vae.model.params.ddconfig.{k}": v for k, v in _AUDIO.items()},
        "vocoder.vocoder.upsample_initial_channel": 64,
        "vocoder.bwe.upsample_initial_channel": 32,
        **{f"vocoder.{g}.{k}": v for g in ("vocoder", "bwe") for k, v in _HIFI.items()},
    },
}


def checkpoint_config(version: str) -> tuple[dict, list[tuple[str, object, object]]]:
    """The embedded ``config`` metadata: the release's real config text (tests/fixtures/releases, see its
    SOURCE.md) with only :data:`TINY`'s widths and depths changed, and every res_x block's ``num_layers`` set
    to 1. Returns (config, [(dotted key, real value or "(added)", tiny value)])."""
    cfg = json.loads((ROOT / "tests" / "fixtures" / "releases" / RELEASES[version] / "config.json").read_text())
    changes = []
    for path, value in TINY[version].items():
        *outer, key = path.split(".")
        d = cfg
        for k in outer:
            d = d[k]
        if d.get(key) != value:
            changes.append((path, d.get(key, "(added)"), value))
        d[key] = value
    for side in ("encoder_blocks", "decoder_blocks"):
        for i, (name, params) in enumerate(cfg["vae"][side]):
            if name == "res_x" and params["num_layers"] != 1:
                changes.append((f"vae.{side}[{i}].num_layers", params["num_layers"], 1))
                params["num_layers"] = 1
    return cfg, changes


def upsampler_config(version: str) -> dict:
    return {
        "_class_name": "LatentUpsampler",
        "in_channels": C,
        "mid_channels": 32,
        "num_blocks_per_stage": 1,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
        "spatial_scale": 2.0,
        "rational_resampler": version == "2.0",
    }


GEMMA_TEXT = dict(
    model_type="gemma3_text",
    hidden_size=GEMMA_HIDDEN,
    intermediate_size=64,
    num_hidden_layers=GEMMA_LAYERS,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    query_pre_attn_scalar=16,
    vocab_size=len(SPECIALS) + len(WORDS),
    sliding_window=4,
    sliding_window_pattern=2,
    rope_theta=1e6,
    rope_local_base_freq=1e4,
    rope_scaling={"rope_type": "linear", "factor": 8.0},
    max_position_embeddings=2048,
)
GEMMA_VISION = dict(
    model_type="siglip_vision_model",
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=28,
    patch_size=14,
)


def _bf16_(module):
    """Round every float tensor of the state dict to bf16 (the stored precision), in place.
    Non-persistent buffers (the BWE resampler's sinc filter) are not in the file and stay exact."""
    import torch

    with torch.no_grad():
        for t in module.state_dict().values():
            if t.dtype.is_floating_point:
                t.copy_(t.to(torch.bfloat16).to(t.dtype))
    return module


def _fill(module, seed: int, **kw):
    """randomize_ the parameters; constant buffers (sinc filters, blur kernel) keep their values."""

    from tests.oracles import randomize_

    return randomize_(module, seed=seed, buffers=False, **kw).eval()


def _statistics(module, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    stats = module.per_channel_statistics
    n = stats.get_buffer("mean-of-means").shape[0]
    with torch.no_grad():
        stats.get_buffer("mean-of-means").copy_(0.3 * torch.randn(n, generator=g))
        stats.get_buffer("std-of-means").copy_(0.5 + torch.rand(n, generator=g))


def _transformer(cfg: dict, seed: int):
    from ltx_core.model.transformer import LTXModel
    from ltx_core.model.transformer.model import LTXModelType
    from ltx_core.model.transformer.rope import LTXRopeType
    from ltx_core.model.transformer.text_projection import PixArtAlphaTextProjection

    t = cfg["transformer"]
    vd = t["num_attention_heads"] * t["attention_head_dim"]
    ad = t["audio_num_attention_heads"] * t["audio_attention_head_dim"]
    proj = not t.get("caption_proj_before_connector", False)
    keys = (
        "num_attention_heads",
        "attention_head_dim",
        "in_channels",
        "out_channels",
        "num_layers",
        "cross_attention_dim",
        "audio_num_attention_heads",
        "audio_attention_head_dim",
        "audio_in_channels",
        "audio_out_channels",
        "audio_cross_attention_dim",
        "av_ca_timestep_scale_multiplier",
        "norm_eps",
        "positional_embedding_theta",
        "positional_embedding_max_pos",
        "audio_positional_embedding_max_pos",
        "timestep_scale_multiplier",
    )
    m = LTXModel(
        model_type=LTXModelType.AudioVideo,
        rope_type=LTXRopeType.SPLIT,
        double_precision_rope=True,
        apply_gated_attention=t.get("apply_gated_attention", False),
        cross_attention_adaln=t.get("cross_attention_adaln", False),
        caption_projection=PixArtAlphaTextProjection(t["caption_channels"], vd) if proj else None,
        audio_caption_projection=PixArtAlphaTextProjection(t["caption_channels"], ad) if proj else None,
        **{k: t[k] for k in keys if k in t},
    )
    return _fill(m, seed, std=0.1)


def _processor(cfg: dict, seed: int):
    """Feature extractor + connectors, built directly (ltx-core's configurator pins Gemma 12B sizes)."""
    import torch
    from ltx_core.model.transformer.rope import LTXRopeType
    from ltx_core.text_encoders.gemma.embeddings_connector import Embeddings1DConnector
    from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
    from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV1, FeatureExtractorV2

    t = cfg["transformer"]
    flat = GEMMA_HIDDEN * (GEMMA_LAYERS + 1)
    gated = t.get("connector_apply_gated_attention", False)

    def conn(heads, dim):
        return Embeddings1DConnector(
            attention_head_dim=dim,
            num_attention_heads=heads,
            num_layers=t["connector_num_layers"],
            positional_embedding_max_pos=t["connector_positional_embedding_max_pos"],
            num_learnable_registers=t["connector_num_learnable_registers"],
            rope_type=LTXRopeType.SPLIT,
            double_precision_rope=True,
            apply_gated_attention=gated,
        )

    video = conn(t["connector_num_attention_heads"], t["connector_attention_head_dim"])
    if t.get("caption_proj_before_connector", False):
        audio = conn(t["audio_connector_num_attention_heads"], t["audio_connector_attention_head_dim"])
        fe = FeatureExtractorV2(
            torch.nn.Linear(flat, video.inner_dim), GEMMA_HIDDEN, torch.nn.Linear(flat, audio.inner_dim)
        )
    else:
        audio = conn(t["connector_num_attention_heads"], t["connector_attention_head_dim"])
        fe = FeatureExtractorV1(torch.nn.Linear(flat, GEMMA_HIDDEN, bias=False), is_av=True)
    return _fill(EmbeddingsProcessor(feature_extractor=fe, video_connector=video, audio_connector=audio), seed)


def _vocoder(cfg: dict, seed: int):
    import numpy as np
    import torch
    from ltx_core.model.audio_vae import VocoderConfigurator

    voc = _fill(VocoderConfigurator.from_config(cfg), seed, fan_in=True)
    mel = torch.randn(1, 2, 12, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if hasattr(voc, "mel_stft"):  # LTX-2.3 BWE: STFT and mel bases are checkpoint buffers
            from mlx_video.ltx2.audio_vae import _slaney_mel_fb

            stft = voc.mel_stft.stft_fn
            n = stft.forward_basis.shape[-1]
            f = n // 2 + 1
            ang = 2 * np.pi * np.outer(np.arange(f), np.arange(n)) / n
            win = np.hanning(n + 1)[:-1]
            basis = np.concatenate([np.cos(ang), -np.sin(ang)]) * win
            stft.forward_basis.copy_(torch.from_numpy(basis[:, None, :]).float())
            stft.inverse_basis.copy_(torch.from_numpy(basis[:, None, :]).float())
            mel_fb = _slaney_mel_fb(f, voc.mel_stft.mel_basis.shape[0], voc.input_sampling_rate)
            voc.mel_stft.mel_basis.copy_(torch.from_numpy(mel_fb.T).float())
        # random generators saturate the output: scale the last conv(s) to a moderate amplitude
        for gen, run, target in (
            (getattr(voc, "vocoder", voc), lambda: getattr(voc, "vocoder", voc)(mel), 0.4),
            (getattr(voc, "bwe_generator", None), lambda: voc(mel), 0.3),
        ):
            if gen is None:
                continue
            seen = []
            h = gen.conv_post.register_forward_hook(lambda m, i, o: seen.append(float(o.std())))  # noqa: B023
            run()
            h.remove()
            gen.conv_post.weight.mul_(target / seen[-1])
            if gen.conv_post.bias is not None:
                gen.conv_post.bias.mul_(target / seen[-1])
    return voc


def _gemma(seed: int):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    hf = Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=dict(GEMMA_TEXT), vision_config=GEMMA_VISION, mm_tokens_per_image=4)
    ).eval()
    from tests.oracles import randomize_

    return randomize_(hf, seed=seed, std=0.1, buffers=False)  # embed_scale, RoPE inv_freq: constants


def reference_modules(version: str = "2.0", seed: int = 0) -> dict:
    """The official modules (ltx-core 1.0.0 / transformers) of the tiny checkpoint, in float32 with
    bf16-rounded values: exactly what the written files hold."""
    from ltx_core.model.audio_vae import AudioDecoderConfigurator, AudioEncoderConfigurator
    from ltx_core.model.upsampler import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator

    cfg, changes = checkpoint_config(version)
    mods = {
        "transformer": _transformer(cfg, seed),
        "processor": _processor(cfg, seed + 1),
        "vae_encoder": _fill(VideoEncoderConfigurator.from_config(cfg), seed + 2, fan_in=True),
        "vae_decoder": _fill(VideoDecoderConfigurator.from_config(cfg), seed + 3, fan_in=True),
        "audio_encoder": _fill(AudioEncoderConfigurator.from_config(cfg), seed + 4, fan_in=True),
        "audio_decoder": _fill(AudioDecoderConfigurator.from_config(cfg), seed + 5, fan_in=True),
        "vocoder": _vocoder(cfg, seed + 6),
        "upsampler": _fill(LatentUpsamplerConfigurator.from_config(upsampler_config(version)), seed + 7, fan_in=True),
        "gemma": _gemma(seed + 8),
    }
    for enc, dec, s in (("vae_encoder", "vae_decoder", 9), ("audio_encoder", "audio_decoder", 10)):
        _statistics(mods[enc], seed + s)  # one set of statistics, shared by encoder and decoder
        mods[dec].per_channel_statistics.load_state_dict(mods[enc].per_channel_statistics.state_dict())
    for m in mods.values():
        _bf16_(m)
    mods["config"], mods["changes"] = cfg, changes
    return mods


def single_file(mods: dict) -> dict:
    """{key: torch tensor} in the Lightricks single-file layout."""
    import torch

    sd = {f"model.diffusion_model.{k}": v for k, v in mods["transformer"].state_dict().items()}
    ren = {
        "feature_extractor.": "text_embedding_projection.",
        "video_connector.": "model.diffusion_model.video_embeddings_connector.",
        "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
    }
    for k, v in mods["processor"].state_dict().items():
        p = next(p for p in ren if k.startswith(p))
        sd[ren[p] + k[len(p) :]] = v
    for prefix, enc, dec in (("vae.", "vae_encoder", "vae_decoder"), ("audio_vae.", "audio_encoder", "audio_decoder")):
        for part, name in (("encoder.", enc), ("decoder.", dec)):
            for k, v in mods[name].state_dict().items():
                sd[prefix + k if k.startswith("per_channel_statistics.") else prefix + part + k] = v
    n = mods["vae_encoder"].per_channel_statistics.get_buffer("mean-of-means").shape[0]
    for extra in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):  # real files carry these too
        sd[f"vae.per_channel_statistics.{extra}"] = (
            torch.arange(n, dtype=torch.float32) if extra == "channel" else torch.ones(n)
        )
    sd.update({f"vocoder.{k}": v for k, v in mods["vocoder"].state_dict().items()})
    return sd


def lora_state_dict(transformer, rank: int = 4, seed: int = 0) -> dict:
    """A ComfyUI-style LoRA over every Linear of the transformer blocks (delta = B @ A, no alpha)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, m in transformer.named_modules():
        if name.startswith("transformer_blocks.") and isinstance(m, torch.nn.Linear):
            a = 0.1 * torch.randn(rank, m.in_features, generator=g)
            b = 0.1 * torch.randn(m.out_features, rank, generator=g)
            sd[f"diffusion_model.{name}.lora_A.weight"] = a.to(torch.bfloat16)
            sd[f"diffusion_model.{name}.lora_B.weight"] = b.to(torch.bfloat16)
    return sd


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(str(folder))


def write(out: Path, mods: dict, version: str) -> dict[str, Path]:
    """Write the checkpoint files of ``mods`` into ``out``; returns their paths by role."""
    import torch
    from safetensors.torch import save_file

    from tests.ltx_tiny import gemma_legacy_names

    out.mkdir(parents=True, exist_ok=True)
    ckpt, ups, lora = (out / f"{n}.safetensors" for n in NAMES[version])

    def bf16(sd):
        return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in sd.items()}

    save_file(
        bf16(single_file(mods)),
        str(ckpt),
        metadata={"config": json.dumps(mods["config"]), "model_version": f"{version}.0-tiny"},
    )
    save_file(
        bf16(mods["upsampler"].state_dict()), str(ups), metadata={"config": json.dumps(upsampler_config(version))}
    )
    save_file(lora_state_dict(mods["transformer"]), str(lora), metadata={"format": "pt"})

    gemma = out / "gemma"
    gemma.mkdir(exist_ok=True)
    sd = gemma_legacy_names(mods["gemma"].state_dict(), lm_head=False)  # tied to the embeddings: not stored
    save_file(bf16(sd), str(gemma / "model.safetensors"), metadata={"format": "pt"})
    (gemma / "config.json").write_text(mods["gemma"].config.to_json_string())
    write_tokenizer(gemma)
    return {"checkpoint": ckpt, "upsampler": ups, "lora": lora, "gemma": gemma}


def build(out: Path, version: str = "2.0", seed: int = 0) -> dict[str, Path]:
    """Build the tiny checkpoint into ``out`` (files listed in the module docstring) plus a README."""
    mods = reference_modules(version, seed)
    paths = write(Path(out), mods, version)
    rows = "".join(
        f"| `{k}` | {json.dumps(a) if a != '(added)' else a} | {json.dumps(b)} |\n" for k, a, b in mods["changes"]
    )
    (Path(out) / "README.md").write_text(
        f"# SMOKE-TEST MODEL (random weights): its videos and sounds are noise\n\n"
        f"A shrunk LTX-{version} in Lightricks' single-file layout (+ x2 upsampler, distilled LoRA and a tiny "
        f"Gemma 3 folder), made by `python -m scripts.make_tiny_ltx2 --version {version} --seed {seed}` from the "
        f"official ltx-core 1.0.0 / transformers modules. For offline end-to-end runs and tests only.\n\n"
        f"The single file's embedded `config` is the real {RELEASES[version]} header text "
        f"(tests/fixtures/releases/{RELEASES[version]}/; its SOURCE.md gives the sources and the parts not found, "
        f"reconstructed there): every key, in the release's "
        f"order, with only these widths and depths changed:\n\n| key | release | tiny |\n|---|---|---|\n{rows}\n"
        f"The upsampler's `config` is not a release header (none was found quoted; see "
        f"tests/fixtures/releases/README.md).\n"
    )
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--version", default="2.0", choices=sorted(NAMES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else ROOT / "assets" / ("tiny-LTX-2" if a.version == "2.0" else "tiny-LTX-2.3")
    for role, p in build(out, a.version, a.seed).items():
        print(f"{role}: {p}")


if __name__ == "__main__":
    main()
