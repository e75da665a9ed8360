"""Convert Wan checkpoints (Wan2.1 T2V/I2V/FLF2V, Wan2.2 A14B, Wan2.2 TI2V-5B) to an mlx_video folder.

Layouts read:
- official Wan-AI: DiT ``config.json`` + ``diffusion_pytorch_model*.safetensors`` (sharded, with index),
  or for A14B two such folders ``high_noise_model/`` and ``low_noise_model/``; ``Wan2.2_VAE.pth`` or
  ``Wan2.1_VAE.pth``; ``models_t5_umt5-xxl-enc-bf16.pth``; tokenizer ``google/umt5-xxl/``; Wan2.1
  I2V/FLF2V also ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`` (only its visual tower is
  used, so the ``xlm-roberta-large/`` tokenizer is not needed);
- diffusers (``Wan-AI/Wan2.x-*-Diffusers``): ``model_index.json`` with ``transformer/`` (A14B: the
  high-noise expert, and ``transformer_2/`` the low-noise one), ``vae/``, ``text_encoder/``,
  ``tokenizer/``, and for Wan2.1 I2V/FLF2V ``image_encoder/`` (CLIP vision model).
Output folder: ``config.json`` (format ``mlx_video/wan/1``), ``dit.safetensors`` (A14B:
``dit_high.safetensors`` + ``dit_low.safetensors``, config ``experts``), ``vae.safetensors``,
``t5.safetensors``, ``clip.safetensors`` (Wan2.1 I2V/FLF2V), ``tokenizer/``. Every checkpoint key is
used and every shape checked (WeightsError names the key). Written to a temporary folder and renamed
when complete.

Usage: ``python convert/wan.py SRC DST [--dtype bfloat16] [--quantize 4|8] [--group-size 64]``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import mlx.core as mx

from mlx_video.checks import ConfigKeys
from mlx_video.io.checkpoint import (
    cast,
    check_destination,
    copy_tokenizer,
    quantize_module,
    read_sharded,
    read_weights,
    save_module,
    sharded_files,
    staged_folder,
)
from mlx_video.io.progress import ConvertSteps
from mlx_video.io.weights import WeightsError, config_errors, load_strict, read_json, write_json_atomic
from mlx_video.wan import clip as clip_mod
from mlx_video.wan import t5 as t5_mod
from mlx_video.wan import transformer as dit_mod
from mlx_video.wan.pipeline import FORMAT

DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
VAE_FILES = {"Wan2.2_VAE.pth": "2.2", "Wan2.1_VAE.pth": "2.1"}
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
EXPERTS = {"dit_high": "high_noise_model", "dit_low": "low_noise_model"}  # ours: official folder
DIFFUSERS_EXPERTS = {"dit_high": "transformer", "dit_low": "transformer_2"}
CLIP_HEAD_DIM = 80  # ViT-H/14 (1280 wide, 16 heads): the only CLIP tower Wan2.1 ships


def detect_layout(src: Path) -> str:
    """'mlx' (already converted), 'official' or 'diffusers'; raises WeightsError otherwise."""
    src = Path(src)
    if not src.is_dir():
        raise WeightsError(f"checkpoint folder not found: {src}")
    cfg = src / "config.json"
    if cfg.is_file() and str(read_json(cfg, "config.json").get("format", "")).startswith("mlx_video/"):
        return "mlx"
    if (src / "model_index.json").is_file():
        return "diffusers"
    has_dit = cfg.is_file() or (src / EXPERTS["dit_high"] / "config.json").is_file()
    if has_dit and any((src / f).exists() for f in VAE_FILES):
        return "official"
    raise WeightsError(
        f"{src}: neither an official Wan checkpoint (config.json or high_noise_model/ + "
        f"Wan2.x_VAE.pth + {T5_FILE}) nor a diffusers repo (model_index.json) nor a converted folder"
    )


def _vae_module(version: str):
    if version == "2.2":
        from mlx_video.wan import vae22 as m
    else:
        from mlx_video.wan import vae21 as m
    return m


def _init_fields(args) -> dict:
    """The dataclass fields a constructor takes (what the converted config stores)."""
    from dataclasses import fields

    return {f.name: getattr(args, f.name) for f in fields(args) if f.init}


def vae_args_from_weights(version: str, w: dict):
    """Official Wan VAE ``.pth`` files carry no config: read the widths off the weights.

    dim = encoder.conv1 output channels, z = conv2 (post-quant) width, Wan 2.2 dec_dim = decoder.conv1
    output channels / dim_mult[-1] (the official dim_mult [1, 2, 4, 4] is assumed; a checkpoint built
    otherwise fails strict loading, naming the key).
    """
    for k in ("encoder.conv1.weight", "conv2.weight", "decoder.conv1.weight"):
        if k not in w:
            raise WeightsError(f"Wan{version} VAE checkpoint lacks {k}")
    vm = _vae_module(version)
    dim, z = int(w["encoder.conv1.weight"].shape[0]), int(w["conv2.weight"].shape[0])
    if version == "2.2":
        return vm.Wan22VAEArgs(dim=dim, z_dim=z, dec_dim=int(w["decoder.conv1.weight"].shape[0]) // 4)
    return vm.Wan21VAEArgs(dim=dim, z_dim=z)


def t5_args_from_weights(w: dict):
    """Official ``models_t5_umt5-xxl-enc-bf16.pth`` carries no config: read sizes off the weights."""
    try:
        vocab, dim = w["token_embedding.weight"].shape
        layers = 1 + max(int(k.split(".")[1]) for k in w if k.startswith("blocks."))
        buckets, heads = w["blocks.0.pos_embedding.embedding.weight"].shape
        return t5_mod.UMT5Args(
            vocab_size=int(vocab),
            dim=int(dim),
            dim_attn=int(w["blocks.0.attn.q.weight"].shape[0]),
            dim_ffn=int(w["blocks.0.ffn.fc1.weight"].shape[0]),
            num_heads=int(heads),
            num_layers=layers,
            num_buckets=int(buckets),
            shared_pos=False,
        )
    except (KeyError, ValueError) as e:
        raise WeightsError(f"not a UMT5 encoder checkpoint (per-block relative positions): missing {e}") from e


def dit_args_from(config: dict, weights: dict):
    """DiT args from its config, with the CLIP branch sizes read off the weights: official configs do
    not state them (the official code hard-codes 1280 and 2x257), diffusers configs do."""
    args = dit_mod.WanModelArgs.from_config(config, weights=weights)
    emb = weights.get("img_emb.proj.0.weight")
    if emb is not None:
        pos = weights.get("img_emb.emb_pos")
        args = dataclasses.replace(
            args, image_dim=int(emb.shape[0]), pos_embed_seq_len=None if pos is None else int(pos.shape[1])
        )
    return args


# Keys every released DiT config.json has that the reader needs (the official Wan-AI files: _class_name,
# _diffusers_version and these; diffusers WanTransformer3DModel configs: their own names).
OFFICIAL_DIT_KEYS = ("model_type", "dim", "ffn_dim", "freq_dim", "num_heads", "num_layers", "in_dim", "out_dim")
DIFFUSERS_DIT_KEYS = ("num_attention_heads", "attention_head_dim", "in_channels", "ffn_dim", "num_layers")


def dit_config_args(config: dict, source: str = "config.json", weights: dict | None = None):
    """(WanModelArgs, names of the config keys no reader used) for a DiT ``config.json`` (official or
    diffusers layout, told apart by diffusers' ``num_attention_heads``); ``weights`` as in :func:`dit_args_from`.
    Raises WeightsError naming ``source`` and a needed key it lacks, ValueError for unsupported settings."""
    need = DIFFUSERS_DIT_KEYS if "num_attention_heads" in config else OFFICIAL_DIT_KEYS
    missing = [k for k in need if k not in config]
    if missing:
        raise WeightsError(f"{source}: DiT config lacks the needed key(s) {', '.join(missing)}")
    c = ConfigKeys(config)
    return dit_args_from(c, weights or {}), sorted(c.unread())


def clip_args_from_weights(w: dict):
    """Official open-clip ``.pth`` files carry no config: read the visual tower's sizes off the weights
    (heads = width / 80, the ViT-H/14 head width)."""
    try:
        pe = w["visual.patch_embedding.weight"]
        dim, patch = int(pe.shape[0]), int(pe.shape[2])
        grid = math.isqrt(int(w["visual.pos_embedding"].shape[1]) - 1)
        layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("visual.transformer."))
        mlp = int(w["visual.transformer.0.mlp.0.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise WeightsError(f"not an open-clip ViT checkpoint (visual tower): missing {e}") from e
    if dim % CLIP_HEAD_DIM:
        raise WeightsError(f"CLIP width {dim} is not a multiple of the ViT-H head width {CLIP_HEAD_DIM}")
    return clip_mod.CLIPVisionArgs(
        image_size=grid * patch,
        patch_size=patch,
        dim=dim,
        mlp_dim=mlp,
        num_heads=dim // CLIP_HEAD_DIM,
        num_layers=layers,
    )


def _read_official(src: Path):
    folders, ignored = {"dit": src}, []
    if not (src / "config.json").is_file():
        folders = {name: src / sub for name, sub in EXPERTS.items()}
    dits = {}
    for name, folder in folders.items():
        if not (folder / "config.json").is_file():
            raise WeightsError(
                f"{src}: missing {folder.name}/config.json (a two-expert checkpoint needs "
                f"{' and '.join(EXPERTS.values())})"
            )
        w = read_sharded(folder)
        with config_errors(folder / "config.json", "Wan DiT config"):
            args, unread = dit_config_args(
                read_json(folder / "config.json", "Wan DiT config.json"), folder / "config.json", w
            )
        dits[name] = (args, w, "official")
        ignored += [f"{folder.relative_to(src) / 'config.json'}:{k}" for k in unread]
    vae_file = next((f for f in VAE_FILES if (src / f).exists()), None)
    version = VAE_FILES[vae_file]
    vae_w = read_weights(src / vae_file)
    vae_args = vae_args_from_weights(version, vae_w)
    t5_w = read_weights(src / T5_FILE)
    t5_args = t5_args_from_weights(t5_w)
    tok = src / "google" / "umt5-xxl"
    clip = None
    if (src / CLIP_FILE).exists():
        clip_w = read_weights(src / CLIP_FILE)
        clip = (clip_args_from_weights(clip_w), clip_w, "official")
    return dict(
        dits=dits,
        vae=(version, vae_args, vae_w, "official"),
        t5=(t5_args, t5_w, "official"),
        tokenizer=tok,
        clip=clip,
        ignored=ignored,
    )


def _read_diffusers(src: Path):
    seen = []  # the component configs read, as ConfigKeys (for the ignored-key list)

    def raw(sub):
        p = src / sub / "config.json"
        if not p.is_file():
            raise WeightsError(f"{src}: missing {sub}/config.json")
        return read_json(p, f"{sub} config.json")

    def cfg(sub):
        seen.append(ConfigKeys(raw(sub), f"{sub}/config.json:"))
        return seen[-1]

    vae_cfg, t5_cfg = cfg("vae"), cfg("text_encoder")
    version = "2.2" if vae_cfg.get("z_dim", 16) == 48 or vae_cfg.get("is_residual") else "2.1"
    vm = _vae_module(version)
    with config_errors(src / "vae" / "config.json", "Wan VAE config"):
        vae_args = (vm.Wan22VAEArgs if version == "2.2" else vm.Wan21VAEArgs).from_config(vae_cfg)
    with config_errors(src / "text_encoder" / "config.json", "UMT5 config"):
        t5_args = t5_mod.UMT5Args.from_config(t5_cfg)
    subs = DIFFUSERS_EXPERTS if (src / DIFFUSERS_EXPERTS["dit_low"]).is_dir() else {"dit": "transformer"}
    dits, ignored = {}, []
    for name, sub in subs.items():
        with config_errors(src / sub / "config.json", "Wan DiT config"):
            args, unread = dit_config_args(raw(sub), f"{src / sub / 'config.json'}")
        dits[name] = (args, read_sharded(src / sub), "diffusers")
        ignored += [f"{sub}/config.json:{k}" for k in unread]
    clip = None
    if (src / "image_encoder").is_dir():
        w = read_sharded(src / "image_encoder", stem="model")
        if not any(k.startswith("vision_model.") for k in w):  # transformers >= 5 saves CLIPVisionModel unprefixed
            w = {f"vision_model.{k}": v for k, v in w.items()}
        clip = (clip_mod.CLIPVisionArgs.from_config(cfg("image_encoder")), w, "hf")
    with config_errors(src / "vae" / "config.json", "Wan VAE config"):
        vae_args = (vm.Wan22VAEArgs if version == "2.2" else vm.Wan21VAEArgs).from_config(vae_cfg)
    with config_errors(src / "text_encoder" / "config.json", "UMT5 config"):
        t5_args = t5_mod.UMT5Args.from_config(t5_cfg)
    ignored += [k for c in seen for k in c.unread()]
    return dict(
        dits=dits,
        vae=(version, vae_args, read_sharded(src / "vae"), "diffusers"),
        t5=(t5_args, read_sharded(src / "text_encoder", stem="model"), "hf"),
        tokenizer=src / "tokenizer",
        clip=clip,
        ignored=ignored,
    )


def source_files(src: Path, layout: str) -> dict[str, list[Path]]:
    """The tensor files of each component of an official or diffusers folder, for progress reports:
    {"dit" | "dit_high" | "dit_low", "vae", "t5", "clip": [files]} (a component absent: no entry)."""
    src = Path(src)
    if layout == "official":
        dits = {"dit": src} if (src / "config.json").is_file() else {n: src / sub for n, sub in EXPERTS.items()}
        out = {name: sharded_files(folder) for name, folder in dits.items()}
        out["vae"] = [src / f for f in VAE_FILES if (src / f).is_file()][:1]
        out["t5"] = [src / T5_FILE] if (src / T5_FILE).is_file() else []
        out["clip"] = [src / CLIP_FILE] if (src / CLIP_FILE).is_file() else []
    else:
        subs = DIFFUSERS_EXPERTS if (src / DIFFUSERS_EXPERTS["dit_low"]).is_dir() else {"dit": "transformer"}
        out = {name: sharded_files(src / sub) for name, sub in subs.items()}
        out["vae"] = sharded_files(src / "vae")
        out["t5"] = sharded_files(src / "text_encoder", stem="model")
        out["clip"] = sharded_files(src / "image_encoder", stem="model")
    return {k: v for k, v in out.items() if v}


def convert_wan(
    src: str | Path,
    dst: str | Path,
    dtype: str = "bfloat16",
    quantize: int | None = None,
    group_size: int = 64,
    overwrite: bool = False,
    key: str | None = None,
    progress=None,
) -> Path:
    """Convert ``src`` (official or diffusers layout) into the mlx_video folder ``dst``.

    dtype: storage dtype of the DiT and text encoder (the VAE stays float32, as the reference runs it).
    quantize: 4 or 8 bits for the DiT and T5 Linear layers (affine, ``group_size``).
    The converted config.json lists under ``ignored_config_keys`` the source config keys no reader used
    (``mlx_video convert --verbose`` shows them).
    overwrite: replace an existing ``dst`` that is not a folder we converted (never the source, a
    folder inside it or above it: DestinationError). key: the cache key stored in the manifest.
    progress: optional callable taking :class:`mlx_video.io.progress.FileProgress` reports, one "convert" phase
    over the source tensor files (:func:`source_files`), each file reported when its component starts and when it
    is written.
    Raises WeightsError (missing/unused/mis-shaped key, a needed config key missing, truncated file,
    unknown layout), TokenizerError.
    """
    src, dst = Path(src), Path(dst)
    layout = detect_layout(src)
    if layout == "mlx":
        raise WeightsError(f"{src} is already converted")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    if quantize not in (None, 4, 8):
        raise ValueError("quantize must be 4 or 8 bits")
    check_destination(dst, [src], overwrite)  # before reading gigabytes
    steps = ConvertSteps(progress, dst, source_files(src, layout), root=src)
    try:
        parts = _read_official(src) if layout == "official" else _read_diffusers(src)
    except KeyError as e:  # a ConfigKeys names the file and the key
        raise WeightsError(f"{src}: a config lacks the needed key {e.args[0]}") from None
    manifest = {
        "family": "wan",
        "source": str(src),
        "source_key": key,
        "dtype": dtype,
        "quantize": quantize,
        "group_size": group_size,
    }
    with staged_folder(dst, [src], overwrite, manifest) as tmp:
        quant = {}
        dits = parts.pop("dits")
        dit_args = next(iter(dits.values()))[0]
        for name in list(dits):
            steps.start(name)
            args, w, lay = dits.pop(name)
            if args != dit_args:
                raise WeightsError(f"{src}: the two experts differ in shape ({args} vs {dit_args})")
            dit = load_strict(
                dit_mod.WanModel(args), cast(dit_mod.sanitize(w, lay), DTYPES[dtype]), what=f"Wan DiT {name} ({src})"
            )
            del w
            if quantize:
                quant[name] = quantize_module(dit, quantize, group_size)
            save_module(dit, tmp / f"{name}.safetensors")
            steps.done(name)
            del dit

        steps.start("vae")
        version, vae_args, vae_w, lay = parts["vae"]
        vm = _vae_module(version)
        vae = load_strict(
            vm.Wan22VAE(vae_args) if version == "2.2" else vm.Wan21VAE(vae_args),
            cast(vm.sanitize(vae_w, lay), mx.float32),
            what=f"Wan VAE ({src})",
        )
        save_module(vae, tmp / "vae.safetensors")
        steps.done("vae")
        steps.start("t5")

        t5_args, t5_w, lay = parts["t5"]
        t5 = load_strict(
            t5_mod.UMT5Encoder(t5_args), cast(t5_mod.sanitize(t5_w, lay), DTYPES[dtype]), what=f"UMT5 encoder ({src})"
        )
        del t5_w
        if quantize:
            quant["t5"] = quantize_module(t5, quantize, group_size)
        save_module(t5, tmp / "t5.safetensors")
        steps.done("t5")
        del t5

        extra = {}
        if parts["clip"] is not None:
            steps.start("clip")
            clip_args, clip_w, lay = parts["clip"]
            clip = load_strict(
                clip_mod.CLIPVisionEncoder(clip_args),
                cast(clip_mod.sanitize(clip_w, lay), DTYPES[dtype]),
                what=f"CLIP visual tower ({src})",
            )
            save_module(clip, tmp / "clip.safetensors")
            steps.done("clip")
            extra["clip"] = dataclasses.asdict(clip_args)
            del clip, clip_w
        experts = [n for n in EXPERTS if (tmp / f"{n}.safetensors").exists()]
        if experts:
            extra["experts"] = experts

        copy_tokenizer(parts["tokenizer"], tmp / "tokenizer")
        t5_mod.load_tokenizer(tmp / "tokenizer")  # a corrupt tokenizer fails here, never lands in dst
        write_json_atomic(
            tmp / "config.json",
            {
                "format": FORMAT,
                "family": "wan",
                "source": str(src),
                "layout": layout,
                "dtype": dtype,
                "dit": _init_fields(dit_args),
                "t5": _init_fields(t5_args),
                "text_len": 512,
                "vae": {"version": version, "stride": vae.stride[1], "args": _init_fields(vae_args)},
                "quantization": quant,
                "ignored_config_keys": parts["ignored"],
                **extra,
            },
        )
    steps.finish()
    return dst
