"""Convert Lightricks' LTX-2 / LTX-2.3 checkpoints to an mlx_video folder.

Input: the single safetensors file Lightricks ships (``ltx-2-19b-dev.safetensors``,
``ltx-2.3-22b-distilled.safetensors``, ...): header metadata ``config`` (JSON with ``transformer``,
``vae``, ``audio_vae``, ``vocoder`` sections) and ``model_version``; key prefixes
``model.diffusion_model.*`` (transformer and text connectors), ``text_embedding_projection.*``,
``vae.*``, ``audio_vae.*``, ``vocoder.*`` (docs/ltx2.md 0, 2.2, 14). Optionally the Gemma 3
folder (HF safetensors + tokenizer), latent upsampler files (each with its own ``config``
metadata) and the distilled LoRA (ComfyUI keys ``diffusion_model.*.lora_A/B.weight``).

Output folder (written to a temporary folder, renamed when complete):

    config.json               format "mlx_video/ltx2/1": model_version, each component's init args,
                              quantization, the source's embedded config
    transformer.safetensors   LTXModel (dtype; optionally 4/8-bit)
    connectors.safetensors    EmbeddingsProcessor: feature extractor + video/audio connectors (dtype)
    video_vae.safetensors     VideoVAE encoder + decoder + statistics (float32)
    audio_vae.safetensors     decoder.* and encoder.* (float32)
    vocoder.safetensors       Vocoder / VocoderWithBWE (float32)
    gemma.safetensors, tokenizer/          with ``gemma=`` (dtype; optionally 4/8-bit)
    gemma_vision.safetensors               with ``gemma=`` when it has the vision tower (dtype; i2v enhancer)
    upsamplers/<name>.safetensors          with ``upsamplers=`` (dtype)
    distilled_lora.safetensors             with ``distilled_lora=``: {our_layer}.lora_A [r, in] and
                                           .lora_B [out, r] (delta = B @ A, no alpha), dtype

Strict: every key of the single file is claimed by exactly one component (a key nobody owns is a
WeightsError naming it), every shape is checked by ``load_strict``. fp8 checkpoints
(``float8_e4m3fn`` weights, with or without a per-tensor ``weight_scale``) are dequantized
(``w * weight_scale``, as ltx-core's LoRA fusion does); ``input_scale`` (the static activation scale of
the fp8 matmul kernels, unused once weights are dequantized) is dropped; other fp8 formats raise.

Usage: ``python convert/ltx2.py CHECKPOINT DST [--gemma DIR] [--upsampler FILE ...] [--distilled-lora FILE]
[--dtype bfloat16] [--quantize 4|8] [--group-size 64]``.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, fields, replace
from pathlib import Path

import mlx.core as mx

from mlx_video.checks import ConfigKeys
from mlx_video.io.checkpoint import cast, check_destination, read_sharded, save_module, sharded_files, staged_folder
from mlx_video.io.progress import ConvertSteps
from mlx_video.io.weights import (
    WeightsError,
    config_errors,
    load_safetensors,
    load_strict,
    metadata_json,
    quantize_linears,
    read_json,
    read_safetensors_header,
    save_safetensors,
    write_json_atomic,
)
from mlx_video.ltx2 import audio_vae as av
from mlx_video.ltx2 import gemma_vision as gv
from mlx_video.ltx2 import text_encoder as te
from mlx_video.ltx2 import transformer as tr
from mlx_video.ltx2 import upsampler as up
from mlx_video.ltx2 import video_vae as vv
from mlx_video.ltx2 import vocoder as vc

FORMAT = "mlx_video/ltx2/1"
# Quantized Linear layers: those under these module paths whose input width divides group_size (the
# embeddings, AdaLN, projections in/out and the text connectors stay in the storage dtype).
QUANT_SCOPES = {"transformer": "transformer_blocks.", "gemma": "model.layers."}
DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}

# Which component owns which keys of the single file; the first matching entry wins (the connectors
# live under the transformer's prefix). A key no entry claims is an error.
COMPONENTS = {
    "connectors": (
        "text_embedding_projection.",
        "model.diffusion_model.video_embeddings_connector.",
        "model.diffusion_model.audio_embeddings_connector.",
    ),
    "transformer": ("model.diffusion_model.",),
    "video_vae": ("vae.",),
    "audio_vae": ("audio_vae.encoder.", "audio_vae.decoder.", "audio_vae.per_channel_statistics."),
    "vocoder": ("vocoder.",),
}
# Sections of the single file's embedded ``config`` the converter needs (the released files also carry
# ``scheduler``, which nothing here reads).
SECTIONS = ("transformer", "vae", "audio_vae", "vocoder")
# Tokenizer files of a Gemma folder (the rest is weights, configs of the vision processor, ...).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
)


# ----------------------------------------------------------------------------- reading


def read_header(path: str | Path) -> tuple[dict, dict[str, str]]:
    """(metadata, {key: safetensors dtype string}) from a safetensors header, without reading tensors.

    Raises WeightsError when the file is missing or its header is not safetensors.
    """
    header, meta = read_safetensors_header(path)  # checked: dtypes, shapes, byte ranges
    return meta, {k: v["dtype"] for k, v in header.items()}


def _dequantize_fp8(weights: dict, dtypes: dict[str, str], path: Path) -> dict:
    """float8_e4m3fn weights (read by MLX as uint8) -> float32 ``w * weight_scale`` (scale 1 when the
    file has none: ltx-core's "cast" fp8). Raises WeightsError for other fp8 formats."""
    out = {}
    for k, v in weights.items():
        dt = dtypes.get(k, "")
        if dt == "F8_E4M3":
            v = mx.from_fp8(v, dtype=mx.float32)
            scale = weights.get(k + "_scale") if k.endswith(".weight") else None
            if scale is not None:
                v = v * scale.astype(mx.float32)
        elif dt.startswith("F8"):
            raise WeightsError(f"{path}: {k} is stored as {dt}; only float8_e4m3fn checkpoints are supported")
        elif k.endswith(".input_scale") or (k.endswith(".weight_scale") and dtypes.get(k[:-6]) == "F8_E4M3"):
            continue  # folded into the weight above / fp8-kernel activation scale (unused here)
        out[k] = v
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, mx.array], dict, str]:
    """(weights, embedded config, model_version) of a Lightricks single file; fp8 weights dequantized.

    Raises WeightsError for a missing / truncated file or one without ``config`` metadata.
    """
    path = Path(path)
    meta, dtypes = read_header(path)
    if "config" not in meta:
        raise WeightsError(f"{path}: no 'config' metadata: not a Lightricks LTX-2 single-file checkpoint")
    weights = load_safetensors(path)
    if any(d.startswith("F8") for d in dtypes.values()):
        weights = _dequantize_fp8(weights, dtypes, path)
    return weights, metadata_json(meta, "config", path), meta.get("model_version", "")


def config_args(config: dict, source: str = "checkpoint") -> tuple[dict, list[str]]:
    """Each component's args from a single file's embedded ``config``, and the dotted names of the
    config keys no reader used (sorted; what ``mlx_video convert --verbose`` lists as ignored).

    Returns ({"transformer": LTXModelArgs, "connectors": TextProcessorArgs (Gemma sizes not yet read off
    the weights), "video_vae": VideoVAEArgs, "audio_vae": AudioVAEArgs, "vocoder": VocoderArgs |
    BWEVocoderArgs}, ignored). Raises WeightsError naming ``source`` and the missing section or key,
    ValueError for a setting this port does not implement.
    """
    missing = [s for s in SECTIONS if not isinstance(config.get(s), dict)]
    if missing:
        raise WeightsError(
            f"{source}: embedded config has no {', '.join(missing)} section "
            f"(a Lightricks single file has {', '.join(SECTIONS)})"
        )
    c = ConfigKeys(config)
    try:
        args = {
            "transformer": tr.LTXModelArgs.from_config(c),
            "connectors": te.TextProcessorArgs.from_config(c),
            "video_vae": vv.VideoVAEArgs.from_config(c),
            "audio_vae": av.AudioVAEArgs.from_config(c),
            "vocoder": vc.vocoder_args(c),
        }
    except KeyError as e:
        raise WeightsError(f"{source}: embedded config lacks the needed key {e.args[0]}") from None
    return args, sorted(c.unread())


def split_checkpoint(weights: dict[str, mx.array], source: str = "checkpoint") -> dict[str, dict[str, mx.array]]:
    """Partition the single file's keys among :data:`COMPONENTS`; raises WeightsError naming every key
    no component owns (including keys under the transformer prefix that ``transformer.sanitize``
    would skip, e.g. a video-only model's ``embeddings_connector``)."""
    parts: dict[str, dict] = {name: {} for name in COMPONENTS}
    orphans = []
    for k, v in weights.items():
        owner = next((name for name, pre in COMPONENTS.items() if k.startswith(pre)), None)
        if owner == "transformer" and k.startswith(tr.OTHER_MODULES):
            owner = None
        if owner is None:
            orphans.append(k)
        else:
            parts[owner][k] = v
    if orphans:
        shown = ", ".join(sorted(orphans)[:8]) + (f" ... (+{len(orphans) - 8} more)" if len(orphans) > 8 else "")
        raise WeightsError(f"{source}: keys no LTX-2 component owns ({len(orphans)}): {shown}")
    return parts


def sanitize_parts(parts: dict[str, dict[str, mx.array]]) -> dict[str, dict[str, mx.array]]:
    """:func:`split_checkpoint`'s parts under this port's module names (the converter's whole key map):
    "transformer" (LTXModel), "connectors" (EmbeddingsProcessor), "video_vae" (VideoVAE.from_weights),
    "audio_decoder" / "audio_encoder" (AudioDecoder / AudioEncoder), "vocoder". Layout changes are lazy."""
    audio = parts["audio_vae"]
    return {
        "transformer": tr.sanitize(parts["transformer"], "lightricks"),
        "connectors": te.sanitize(parts["connectors"], "official"),
        "video_vae": vv.sanitize(parts["video_vae"], "lightricks"),
        "audio_decoder": av.sanitize(audio, "lightricks", "decoder"),
        "audio_encoder": av.sanitize(audio, "lightricks", "encoder"),
        "vocoder": vc.sanitize(parts["vocoder"], "lightricks"),
    }


# ----------------------------------------------------------------------------- components


def init_args(args) -> dict:
    """The dataclass fields a constructor takes, JSON-ready (nested dataclasses as dicts)."""
    d = asdict(args)
    return {f.name: d[f.name] for f in fields(args) if f.init}


def processor_args(config, weights: dict[str, mx.array], gemma=None) -> te.TextProcessorArgs:
    """Connector sizes from the config (or its parsed ``TextProcessorArgs``), Gemma width / hidden-state count /
    register count from the (sanitized) weights and the Gemma args when given (ltx-core pins Gemma 3 12B: 3840 wide, 49 states).
    Raises WeightsError when they do not fit together."""
    args = config if isinstance(config, te.TextProcessorArgs) else te.TextProcessorArgs.from_config(config)
    key = (
        "feature_extractor.aggregate_embed.weight"
        if args.version == 1
        else "feature_extractor.video_aggregate_embed.weight"
    )
    regs = "video_connector.learnable_registers"
    for k in (key, regs):
        if k not in weights:
            raise WeightsError(f"text connectors: missing {k}")
    out_dim, flat = weights[key].shape
    hidden = (
        gemma.hidden_size if gemma is not None else (out_dim if args.version == 1 else te.GEMMA3_12B["hidden_size"])
    )
    if flat % hidden:
        raise WeightsError(
            f"text connectors: {key} takes {flat} features, not a multiple of the Gemma width "
            f"{hidden} (pass the matching Gemma folder)"
        )
    if gemma is not None and flat // hidden != gemma.num_hidden_layers + 1:
        raise WeightsError(
            f"text connectors: {key} takes {flat // hidden} hidden states of width {hidden}, "
            f"the Gemma model gives {gemma.num_hidden_layers + 1}"
        )
    return replace(args, text_hidden=hidden, text_layers=flat // hidden, registers=int(weights[regs].shape[0]))


def _gemma(folder: Path, dtype, quantize, group_size, tmp: Path):
    """Gemma 3 folder -> gemma.safetensors + tokenizer/ (+ gemma_vision.safetensors when the checkpoint has the
    vision tower, never quantized); returns (mlx-lm args, quantization or None, vision args or None)."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise WeightsError(f"Gemma folder {folder}: no config.json")
    config = read_json(cfg_path, "Gemma config.json")
    args = te.gemma_args(config)
    weights = read_sharded(folder, stem="model")
    model = load_strict(
        te.GemmaTextEncoder(args),
        cast(te.sanitize_gemma(weights), dtype),
        what=f"Gemma 3 text encoder ({folder})",
    )
    vision = None
    if gv.has_vision(weights):
        pre = folder / "preprocessor_config.json"
        with config_errors(folder / "config.json", "Gemma vision config"):
            vision = gv.VisionArgs.from_config(
                config, read_json(pre, "Gemma preprocessor_config.json") if pre.is_file() else None
            )
        tower = gv.GemmaVision(vision)
        load_strict(tower, cast(gv.sanitize(weights), dtype), what=f"Gemma 3 vision tower ({folder})")
        save_module(tower, tmp / "gemma_vision.safetensors")
        del tower
    del weights
    q = None
    if quantize:
        q = {"bits": quantize, "group_size": group_size, "scope": QUANT_SCOPES["gemma"]}
        quantize_linears(model, q)
    save_module(model, tmp / "gemma.safetensors")
    tok = tmp / "tokenizer"
    tok.mkdir()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, tok / name)
    te.GemmaTokenizer(tok, vocab_size=args.vocab_size)  # raises unless it loads and fits the embeddings
    return args, q, vision


def upsampler_kind(args: up.UpsamplerArgs) -> str:
    """'spatial_x2', 'spatial_x1.5', 'temporal_x2' or 'spatiotemporal_x2'."""
    if args.temporal_upsample:
        return "spatiotemporal_x2" if args.spatial_upsample else "temporal_x2"
    return f"spatial_x{args.spatial_scale:g}"


def _upsampler(path: Path, dtype, tmp: Path) -> tuple[str, dict]:
    weights, meta = load_safetensors(path, with_metadata=True)
    if "config" not in meta:
        raise WeightsError(f"{path}: no 'config' metadata: not an LTX-2 latent upsampler file")
    cfg = ConfigKeys(metadata_json(meta, "config", path))
    args = up.UpsamplerArgs.from_config(cfg)
    model = load_strict(
        up.LatentUpsampler(args), cast(up.sanitize(weights, "official"), dtype), what=f"latent upsampler ({path})"
    )
    name = path.stem
    save_module(model, tmp / "upsamplers" / f"{name}.safetensors")
    return name, {
        "file": f"upsamplers/{name}.safetensors",
        "kind": upsampler_kind(args),
        "args": init_args(args),
        "source": path.name,
        "ignored_config_keys": sorted(cfg.unread()),
    }


def convert_lora(weights: dict[str, mx.array], model: tr.LTXModel, source: str = "LoRA") -> dict[str, mx.array]:
    """ComfyUI-style LTX-2 LoRA -> ``{our_layer}.lora_A`` [r, in] / ``.lora_B`` [out, r].

    Keys ``diffusion_model.<layer>.lora_{A,B}.weight`` (``model.diffusion_model.`` accepted too).
    Layers of the text connectors are dropped: ltx-core fuses LoRAs into the transformer's state dict
    only, so the reference never applies them. Raises WeightsError naming keys that are not A/B pairs
    or whose target layer does not exist in ``model`` or does not match ``B @ A``'s shape.
    """
    from mlx.utils import tree_flatten

    params = {k: v.shape for k, v in tree_flatten(model.parameters())}
    pairs: dict[str, dict[str, mx.array]] = {}
    bad = []
    for k, v in weights.items():
        base = k[len("model.") :] if k.startswith("model.diffusion_model.") else k
        ok = base.startswith("diffusion_model.") and base.endswith((".lora_A.weight", ".lora_B.weight"))
        if not ok:
            bad.append(k)
            continue
        layer, which = base[len("diffusion_model.") : -len(".lora_A.weight")], base[-len("A.weight")]  # "A" | "B"
        pairs.setdefault(layer, {})[which] = v
    out = {}
    for layer, ab in pairs.items():
        full = tr.LIGHTRICKS_PREFIX + layer + ".weight"
        if full.startswith(COMPONENTS["connectors"]):
            continue  # see docstring: the reference never applies connector LoRA weights
        ours = next(iter(tr.sanitize({full: mx.zeros((1,))}, "lightricks")), None)
        if set(ab) != {"A", "B"} or ours not in params:
            bad.append(f"{layer} ({'no such transformer layer' if ours not in params else 'A/B pair incomplete'})")
            continue
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or (b.shape[0], a.shape[1]) != tuple(params[ours]):
            bad.append(f"{layer} (A {tuple(a.shape)}, B {tuple(b.shape)} vs weight {tuple(params[ours])})")
            continue
        stem = ours[: -len(".weight")]
        out[stem + ".lora_A"], out[stem + ".lora_B"] = a, b
    if bad:
        raise WeightsError(
            f"{source}: keys that are not a LoRA of this transformer ({len(bad)}): "
            + ", ".join(sorted(bad)[:8])
            + (" ..." if len(bad) > 8 else "")
        )
    return out


# ----------------------------------------------------------------------------- conversion


def convert_ltx2(
    src: str | Path,
    dst: str | Path,
    dtype: str = "bfloat16",
    quantize: int | None = None,
    group_size: int = 64,
    gemma: str | Path | None = None,
    upsamplers=(),
    distilled_lora: str | Path | None = None,
    overwrite: bool = False,
    key: str | None = None,
    sources=(),
    progress=None,
) -> Path:
    """Convert the Lightricks single file ``src`` (plus optional Gemma folder, upsampler files and
    distilled LoRA) into the mlx_video folder ``dst`` (layout in the module docstring).

    dtype: storage dtype of the transformer, connectors, Gemma, upsamplers and LoRA (the VAEs and the
    vocoder stay float32, as the reference runs them). quantize: 4 or 8 bits (affine, ``group_size``)
    for the Linear layers of the transformer blocks and of Gemma's decoder layers.
    The converted config.json lists under ``ignored_config_keys`` the embedded config keys no reader used
    (dotted; an upsampler's prefixed by its file name), which ``mlx_video convert --verbose`` shows.
    progress: optional callable taking :class:`mlx_video.io.progress.FileProgress` reports, one "convert" phase
    over the source tensor files (the single file, the LoRA, Gemma's shards, each upsampler), each reported when
    its components start and when they are written.
    Raises WeightsError (a key no component owns, missing / unused / mis-shaped key, a missing config section
    or needed key, truncated file, unsupported fp8 format), ValueError (bad dtype / bits, a config this port
    does not implement).
    """
    src, dst = Path(src), Path(dst)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    if quantize not in (None, 4, 8):
        raise ValueError("quantize must be 4 or 8 bits")
    dt = DTYPES[dtype]
    inputs = [src, gemma, distilled_lora, *upsamplers, *sources]
    check_destination(dst, inputs, overwrite)  # before reading gigabytes
    groups = {"checkpoint": [src], "lora": [Path(distilled_lora)] if distilled_lora is not None else []}
    groups["gemma"] = sharded_files(Path(gemma), stem="model") if gemma is not None else []
    groups.update({f"upsampler:{p}": [Path(p)] for p in upsamplers})
    steps = ConvertSteps(progress, dst, groups)
    steps.start("checkpoint")
    weights, config, version = read_checkpoint(src)
    with config_errors(f"{src} (embedded 'config' metadata)", "config"):  # ValueError: a setting not implemented
        cargs, ignored = config_args(config, str(src))
    parts = sanitize_parts(split_checkpoint(weights, str(src)))
    del weights
    manifest = {
        "family": "ltx2",
        "source": str(src),
        "source_key": key,
        "dtype": dtype,
        "quantize": quantize,
        "group_size": group_size,
    }
    with staged_folder(dst, inputs, overwrite, manifest) as tmp:
        out = {
            "format": FORMAT,
            "family": "ltx2",
            "model_version": version,
            "source": str(src),
            "dtype": dtype,
            "source_config": config,
            "ignored_config_keys": ignored,
            "quantization": {},
            "upsamplers": {},
            "gemma": None,
            "gemma_vision": None,
            "distilled_lora": None,
        }

        t_args = cargs["transformer"]
        transformer = load_strict(
            tr.LTXModel(t_args), cast(parts.pop("transformer"), dt), what=f"LTX-2 transformer ({src})"
        )
        out["transformer"] = init_args(t_args)
        if distilled_lora is not None:
            steps.start("lora")
            lora_path = Path(distilled_lora)
            lora = cast(convert_lora(load_safetensors(lora_path), transformer, str(lora_path)), dt)
            save_safetensors(tmp / "distilled_lora.safetensors", lora)
            out["distilled_lora"] = {
                "file": "distilled_lora.safetensors",
                "source": lora_path.name,
                "rank": int(next(iter(lora.values())).shape[0]) if lora else 0,
            }
            steps.done("lora")
        if quantize:
            q = {"bits": quantize, "group_size": group_size, "scope": QUANT_SCOPES["transformer"]}
            quantize_linears(transformer, q)
            out["quantization"]["transformer"] = q
        save_module(transformer, tmp / "transformer.safetensors")
        del transformer

        gemma_args = None
        if gemma is not None:
            steps.start("gemma")
            gemma_args, q, vision = _gemma(Path(gemma), dt, quantize, group_size, tmp)
            steps.done("gemma")
            out["gemma"] = init_args(gemma_args)
            out["gemma_vision"] = init_args(vision) if vision else None
            if q:
                out["quantization"]["gemma"] = q
        conn_w = parts.pop("connectors")
        p_args = processor_args(cargs["connectors"], conn_w, gemma_args)
        save_module(
            load_strict(te.EmbeddingsProcessor(p_args), cast(conn_w, dt), what=f"LTX-2 text connectors ({src})"),
            tmp / "connectors.safetensors",
        )
        out["connectors"] = init_args(p_args)

        v_args = cargs["video_vae"]
        save_module(vv.VideoVAE.from_weights(parts.pop("video_vae"), v_args), tmp / "video_vae.safetensors")
        out["video_vae"] = init_args(v_args)

        a_args = cargs["audio_vae"]
        audio = {}
        for part, cls in (("decoder", av.AudioDecoder), ("encoder", av.AudioEncoder)):
            m = load_strict(
                cls(a_args), cast(parts.pop(f"audio_{part}"), mx.float32), what=f"LTX-2 audio {part} ({src})"
            )
            audio.update({f"{part}.{k}": v for k, v in _flat(m).items()})
        save_safetensors(tmp / "audio_vae.safetensors", audio)
        out["audio_vae"] = init_args(a_args)

        v_cls = vc.VocoderWithBWE if isinstance(cargs["vocoder"], vc.BWEVocoderArgs) else vc.Vocoder
        voc = v_cls(cargs["vocoder"])
        load_strict(voc, cast(parts.pop("vocoder"), mx.float32), what=f"LTX-2 vocoder ({src})")
        save_module(voc, tmp / "vocoder.safetensors")
        out["vocoder"] = {"bwe": isinstance(voc, vc.VocoderWithBWE), "args": init_args(voc.args)}
        steps.done("checkpoint")

        for path in upsamplers:
            steps.start(f"upsampler:{path}")
            name, entry = _upsampler(Path(path), dt, tmp)
            steps.done(f"upsampler:{path}")
            out["upsamplers"][name] = entry
            out["ignored_config_keys"] += [f"{entry['source']}:{k}" for k in entry["ignored_config_keys"]]

        write_json_atomic(tmp / "config.json", out)
    steps.finish()
    return dst


def _flat(model) -> dict[str, mx.array]:
    from mlx.utils import tree_flatten

    return dict(tree_flatten(model.parameters()))
