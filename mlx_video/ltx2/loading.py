"""Load the components of a converted LTX-2 / LTX-2.3 folder (made by :func:`mlx_video.ltx2.checkpoint.convert_ltx2`), and find or
make that folder from what a user passes (a converted folder, a Lightricks single file or a folder
holding one, or a Hugging Face repo id).

Each loader builds the module from the init args stored in ``config.json`` (format
``mlx_video/ltx2/1``), re-applies the stored quantization and loads the component's safetensors
with ``load_strict`` (WeightsError naming any missing / unused / mis-shaped key, or the missing or
truncated file). Loaders neither print nor write files; load a component, use it, drop it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from mlx_video.io.weights import (
    WeightsError,
    load_safetensors,
    load_strict,
    metadata_json,
    quantize_linears,
    read_folder_config,
    read_json,
)
from mlx_video.ltx2.checkpoint import FORMAT, TOKENIZER_FILES, read_header

# Hugging Face repos: the files each variant needs (names as listed in docs/ltx2.md 14).
LTX2_REPOS = {
    "Lightricks/LTX-2": {
        "dev": "ltx-2-19b-dev.safetensors",
        "distilled": "ltx-2-19b-distilled.safetensors",
        "lora": "ltx-2-19b-distilled-lora-384.safetensors",
        "upsamplers": ("ltx-2-spatial-upscaler-x2-1.0.safetensors",),
    },
    "Lightricks/LTX-2.3": {
        "dev": "ltx-2.3-22b-dev.safetensors",
        "distilled": "ltx-2.3-22b-distilled-1.1.safetensors",
        "lora": "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
        "upsamplers": ("ltx-2.3-spatial-upscaler-x2-1.1.safetensors",),
    },
}
GEMMA_REPO = "google/gemma-3-12b-it-qat-q4_0-unquantized"
# What the converter reads of the Gemma repo: config, weights (the vision tower is in the same shards), the vision
# preprocessor's config and the tokenizer files (mlx_video.ltx2.checkpoint.TOKENIZER_FILES).
GEMMA_FILES = ["config.json", "model*.safetensors", "model.safetensors.index.json", "preprocessor_config.json"]
GEMMA_FILES += list(TOKENIZER_FILES)
VARIANTS = ("dev", "distilled")


# ----------------------------------------------------------------------------- config


def read_config(model_dir: str | Path) -> dict:
    """The converted folder's config.json; raises WeightsError when it is not an mlx_video LTX-2 folder."""
    return read_folder_config(model_dir, FORMAT, "convert the Lightricks checkpoint first (mlx_video convert)")


def _args(cls, d: dict):
    """Dataclass ``cls`` from stored init args (JSON lists back to tuples where the default is one).
    Raises WeightsError on a field this version does not know (a folder from another version)."""
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = set(d) - set(known)
    if unknown:
        raise WeightsError(f"config.json: unknown {cls.__name__} fields {sorted(unknown)}; reconvert the model")
    kw = {k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple) else v for k, v in d.items()}
    return cls(**kw)


def _load(model: nn.Module, model_dir, name: str, what: str, prefix: str = "", dtype=None) -> nn.Module:
    w = load_safetensors(Path(model_dir) / name)
    if prefix:
        w = {k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}
    return load_strict(model, w, what=what, dtype=dtype)


def decoder_dtype(cfg: dict) -> mx.Dtype:
    """The dtype the VAEs and the vocoder run in for a converted folder: float32 for a float32 folder, else
    bfloat16 (ltx-pipelines' model ledger builds every module in the pipeline dtype, bf16 on CUDA; the files
    store these small components in float32 either way, so float32 stays available)."""
    return mx.float32 if str(cfg.get("dtype", "bfloat16")) == "float32" else mx.bfloat16


# ----------------------------------------------------------------------------- components


def load_transformer(
    model_dir: str | Path, cfg: dict, stream_blocks: int | None = None, dequantize_blocks: bool | None = None
):
    """:class:`~mlx_video.ltx2.transformer.LTXModel` in the stored dtype (quantized if converted so).

    Just-in-time block weights (mlx_video/nn/blockwise.py, docs/streaming.md): ``stream_blocks`` N (>= 1; 0 or
    None: all resident) reads the transformer blocks from ``transformer.safetensors`` as they run, N resident;
    LoRAs merged later (:func:`mlx_video.nn.lora.merge_loras`) are added to each block as it is read. A
    quantized transformer runs each block dequantized when ``blockwise.dequantize_pays`` (``dequantize_blocks``
    True / False forces it). Raises ValueError for a ``stream_blocks`` that is negative or not an int (a bool too)."""
    import mlx.nn as nn

    from ..nn.blockwise import BlockWeights, SafetensorsBlocks
    from .transformer import LTXModel, LTXModelArgs

    if stream_blocks is not None and (
        isinstance(stream_blocks, bool) or not isinstance(stream_blocks, int) or stream_blocks < 0
    ):
        raise ValueError(
            f"stream_blocks must be 0 (all resident) or the number of resident blocks (an int), got {stream_blocks!r}"
        )
    model = LTXModel(_args(LTXModelArgs, cfg["transformer"]))
    q = (cfg.get("quantization") or {}).get("transformer")
    quantize_linears(model, q)
    _load(model, model_dir, "transformer.safetensors", "LTX-2 transformer")
    blocks = model.transformer_blocks
    src = (
        SafetensorsBlocks(Path(model_dir) / "transformer.safetensors", "transformer_blocks.{}.")
        if stream_blocks
        else None
    )
    quantized = bool(blocks) and any(isinstance(m, nn.QuantizedLinear) for _, m in blocks[0].named_modules())
    if src is not None or (quantized and dequantize_blocks is not False):
        model.block_weights = BlockWeights(blocks, src, stream_blocks or 1, dequantize_blocks)
    return model


def load_connectors(model_dir: str | Path, cfg: dict):
    """Text feature extractor + video/audio connectors (:class:`~mlx_video.ltx2.text_encoder.EmbeddingsProcessor`)."""
    from .text_encoder import EmbeddingsProcessor, TextProcessorArgs

    return _load(
        EmbeddingsProcessor(_args(TextProcessorArgs, cfg["connectors"])),
        model_dir,
        "connectors.safetensors",
        "LTX-2 text connectors",
    )


def load_video_vae(model_dir: str | Path, cfg: dict, parts=("encoder", "decoder"), dtype=mx.float32):
    """:class:`~mlx_video.ltx2.video_vae.VideoVAE` in ``dtype`` with the requested ``parts``; widths from the
    weights."""
    from .video_vae import VideoVAE, VideoVAEArgs

    w = load_safetensors(Path(model_dir) / "video_vae.safetensors")
    return VideoVAE.from_weights(w, _args(VideoVAEArgs, cfg["video_vae"]), parts=parts, dtype=dtype)


def load_audio_decoder(model_dir: str | Path, cfg: dict, dtype=mx.float32):
    """:class:`~mlx_video.ltx2.audio_vae.AudioDecoder` in ``dtype``: latent -> mel."""
    from .audio_vae import AudioDecoder, AudioVAEArgs

    return _load(
        AudioDecoder(_args(AudioVAEArgs, cfg["audio_vae"])),
        model_dir,
        "audio_vae.safetensors",
        "LTX-2 audio decoder",
        prefix="decoder.",
        dtype=dtype,
    )


def load_audio_encoder(model_dir: str | Path, cfg: dict, dtype=mx.float32):
    """:class:`~mlx_video.ltx2.audio_vae.AudioEncoder` in ``dtype``: mel -> latent (audio conditioning)."""
    from .audio_vae import AudioEncoder, AudioVAEArgs

    return _load(
        AudioEncoder(_args(AudioVAEArgs, cfg["audio_vae"])),
        model_dir,
        "audio_vae.safetensors",
        "LTX-2 audio encoder",
        prefix="encoder.",
        dtype=dtype,
    )


def load_vocoder(model_dir: str | Path, cfg: dict, dtype=mx.float32):
    """:class:`~mlx_video.ltx2.vocoder.Vocoder` (LTX-2) or ``VocoderWithBWE`` (LTX-2.3) in ``dtype``."""
    from .vocoder import BWEVocoderArgs, Vocoder, VocoderArgs, VocoderWithBWE

    a = dict(cfg["vocoder"]["args"])
    if cfg["vocoder"]["bwe"]:
        gens = {k: _args(VocoderArgs, a.pop(k)) for k in ("vocoder", "bwe")}
        model = VocoderWithBWE(_args(BWEVocoderArgs, {**a, **gens}))
    else:
        model = Vocoder(_args(VocoderArgs, a))
    return _load(model, model_dir, "vocoder.safetensors", "LTX-2 vocoder", dtype=dtype)


@dataclass
class TextEncoder:
    """Tokenizer + Gemma 3 + connectors: ``encoder(prompt) -> (video context [1, L, Dv], audio context
    [1, L, Da])`` float32 (:func:`~mlx_video.ltx2.text_encoder.encode_prompt`)."""

    tokenizer: object
    gemma: nn.Module
    processor: nn.Module

    def __call__(self, prompt: str) -> tuple[mx.array, mx.array]:
        from .text_encoder import encode_prompt

        return encode_prompt(prompt, self.tokenizer, self.gemma, self.processor)


def load_text_encoder(model_dir: str | Path, cfg: dict, max_length: int = 1024) -> TextEncoder:
    """Gemma (quantized if converted so) + tokenizer (left padding to ``max_length``) + connectors.
    Raises WeightsError when the folder was converted without a Gemma folder."""
    from mlx_lm.models import gemma3_text

    from .text_encoder import GemmaTextEncoder, GemmaTokenizer

    if not cfg.get("gemma"):
        raise WeightsError(f"{model_dir} was converted without Gemma: reconvert with gemma=<Gemma 3 folder>")
    gemma = GemmaTextEncoder(_args(gemma3_text.ModelArgs, cfg["gemma"]))
    quantize_linears(gemma, (cfg.get("quantization") or {}).get("gemma"))
    _load(gemma, model_dir, "gemma.safetensors", "Gemma 3 text encoder")
    tok = GemmaTokenizer(Path(model_dir) / "tokenizer", max_length=max_length, vocab_size=gemma.args.vocab_size)
    return TextEncoder(tok, gemma, load_connectors(model_dir, cfg))


def load_upsampler(model_dir: str | Path, cfg: dict, name: str = "spatial_x2"):
    """A latent upsampler by its name (the source file's stem) or kind ("spatial_x2", "spatial_x1.5",
    "temporal_x2"; must be unique). Raises WeightsError when there is no such upsampler."""
    from .upsampler import LatentUpsampler, UpsamplerArgs

    ups = cfg.get("upsamplers", {})
    entry = ups.get(name)
    if entry is None:
        hits = [e for e in ups.values() if e["kind"] == name]
        if len(hits) != 1:
            raise WeightsError(
                f"{model_dir}: no single upsampler {name!r} (converted: "
                f"{ {k: e['kind'] for k, e in ups.items()} or 'none' })"
            )
        entry = hits[0]
    return _load(
        LatentUpsampler(_args(UpsamplerArgs, entry["args"])), model_dir, entry["file"], f"latent upsampler {name}"
    )


def load_distilled_lora(model_dir: str | Path, cfg: dict) -> dict[str, mx.array]:
    """The distilled LoRA in our layer names: ``{layer}.lora_A`` [r, in], ``{layer}.lora_B`` [out, r]
    where ``{layer}.weight`` is a transformer parameter; the merge is ``W + strength * B @ A`` (no
    alpha; strengths 1 / 0.25 / 0.5 by pipeline; :func:`mlx_video.nn.lora.merge_loras` with its default
    key map :data:`~mlx_video.nn.lora.OWN_NAMES`).
    Raises WeightsError when the folder has none."""
    entry = cfg.get("distilled_lora")
    if not entry:
        raise WeightsError(f"{model_dir} was converted without a distilled LoRA")
    return load_safetensors(Path(model_dir) / entry["file"])


# ----------------------------------------------------------------------------- resolving a model argument


def _checkpoint_meta(path: Path) -> dict | None:
    """The parsed ``config`` metadata of a safetensors file, or None."""

    try:
        meta, _ = read_header(path)
        return metadata_json(meta, "config", path) if "config" in meta else None
    except WeightsError:
        return None


def find_parts(folder: Path, variant: str = "dev", checkpoint: Path | None = None) -> dict:
    """Classify a folder's files: {"checkpoint", "upsamplers", "distilled_lora", "gemma"}.

    Checkpoint: the one ``.safetensors`` whose metadata config has a ``transformer`` section (several:
    the one whose name says ``variant``, bf16 before fp8). Upsamplers: files with a flat config (no
    ``transformer``). LoRA (dev only): ``*lora*.safetensors``. Gemma: a sub-folder whose config.json is
    a Gemma 3 config. Raises WeightsError when no (or no single) checkpoint is found.
    """
    files = sorted(folder.glob("*.safetensors"))
    metas = {f: _checkpoint_meta(f) for f in files}
    ckpts = [f for f, m in metas.items() if m and "transformer" in m]
    if checkpoint is None:
        if len(ckpts) > 1:
            named = [f for f in ckpts if ("distilled" in f.name) == (variant == "distilled")]
            ckpts = [f for f in named if "fp8" not in f.name] or named
        if len(ckpts) != 1:
            raise WeightsError(
                f"{folder}: expected one LTX-2 {variant} checkpoint (a .safetensors with a "
                f"'config' metadata), found {[f.name for f in ckpts] or 'none'}"
            )
        checkpoint = ckpts[0]
    lora = [f for f in files if "lora" in f.name.lower() and f not in ckpts]
    ups = [f for f, m in metas.items() if m and "transformer" not in m and f not in lora]
    gemma = None
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        cfg = sub / "config.json"
        if cfg.is_file() and str(read_json(cfg, "config.json").get("model_type", "")).startswith("gemma3"):
            gemma = sub
            break
    return {
        "checkpoint": checkpoint,
        "upsamplers": ups,
        "distilled_lora": lora[0] if variant == "dev" and len(lora) == 1 else None,
        "gemma": gemma,
    }


def pipeline_files(repo: str, variant: str, pipeline: str | None = None) -> dict:
    """The files of ``repo`` (a key of :data:`LTX2_REPOS`) the pipeline runs on: {"checkpoint": the ``variant``'s
    single file, "upsamplers": the x2 spatial upsampler for the two-stage pipelines (none for dev, retake),
    "lora": the distilled LoRA for the dev pipelines that use it (dev-two-stage[-hq], a2vid, keyframes) or None}.
    ``pipeline`` None: every file of ``variant`` (what ``mlx_video convert`` takes)."""
    from mlx_video.ltx2.settings import TWO_STAGE, WITH_LORA

    spec = LTX2_REPOS[repo]
    ups = pipeline is None or pipeline in TWO_STAGE
    lora = variant == "dev" and (pipeline is None or pipeline in WITH_LORA)
    return {
        "checkpoint": spec[variant],
        "upsamplers": list(spec["upsamplers"]) if ups else [],
        "lora": spec["lora"] if lora else None,
    }


def download_parts(
    repo: str,
    variant: str,
    gemma: str | Path | None,
    pipeline: str | None = None,
    local_files_only: bool = False,
    progress=None,
) -> dict:
    """Download only the files ``pipeline`` (None: any pipeline of ``variant``) of ``repo`` needs
    (:func:`pipeline_files`) and the Gemma 3 text encoder unless ``gemma`` is given, into huggingface_hub's cache;
    the variant's other files already in that cache are taken too, so a conversion made for a pipeline that
    needed them is reused. Returns :func:`find_parts`'s dict. ``local_files_only``: cached files only;
    ``progress``: the downloads' byte reports (:mod:`mlx_video.io.progress`). Raises DownloadError (offline,
    gated, unknown repo: one line, naming the files), ValueError for an unknown repo or variant."""
    from huggingface_hub import try_to_load_from_cache

    from mlx_video.io.hub import DownloadError, download

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    need, every = pipeline_files(repo, variant, pipeline), pipeline_files(repo, variant)
    cached = lambda f: isinstance(try_to_load_from_cache(repo, f), str)  # noqa: E731
    ups = [u for u in every["upsamplers"] if u in need["upsamplers"] or cached(u)]
    lora = every["lora"] if every["lora"] and (need["lora"] or cached(every["lora"])) else None
    from huggingface_hub import constants

    files = [need["checkpoint"], *ups] + ([lora] if lora else [])
    offline, missing = local_files_only or constants.HF_HUB_OFFLINE, []
    fetch = {"checkpoint": (repo, files, files)}
    if gemma is None:  # first: a gated repo refuses before the checkpoint's gigabytes are fetched
        fetch = {"gemma": (GEMMA_REPO, GEMMA_FILES, ["config.json"]), **fetch}
    got = {}
    for part, (repo_id, patterns, required) in fetch.items():
        try:
            got[part] = download(repo_id, patterns, required, local_files_only, progress)
        except DownloadError as e:
            if not offline:
                raise
            missing.insert(0, str(e))  # offline: say everything that is missing, the checkpoint first
    if missing:
        raise DownloadError("; and ".join(missing))
    root, gemma = got["checkpoint"], got.get("gemma", gemma)
    return {
        "checkpoint": root / need["checkpoint"],
        "upsamplers": [root / u for u in ups],
        "distilled_lora": root / lora if lora else None,
        "gemma": Path(gemma),
    }


def resolve_ltx2_model(
    model: str,
    variant: str = "dev",
    gemma: str | Path | None = None,
    dtype: str = "bfloat16",
    quantize: int | None = None,
    pipeline: str | None = None,
    local_files_only: bool = False,
    progress=None,
    log=None,
) -> Path:
    """A converted folder for ``model``:

    - a converted folder: returned as is;
    - a Lightricks single ``.safetensors`` file, or a folder holding one (with ``variant`` choosing
      among several): converted once into the cache (``mlx_video.io.hub.converted_path``) together with
      the upsamplers, the distilled LoRA (dev) and the Gemma folder found beside it (see
      :func:`find_parts`; ``gemma`` overrides the Gemma folder); later calls reuse the conversion while
      the files' content, ``dtype`` and ``quantize`` are the same (:func:`mlx_video.resolve.resolve`);
    - ``Lightricks/LTX-2`` or ``Lightricks/LTX-2.3``: only the files ``pipeline`` needs are downloaded
      (:func:`download_parts`: the variant's checkpoint, the x2 upsampler for two-stage pipelines, the distilled
      LoRA for the dev pipelines that use it, and Gemma 3 from its gated repo unless ``gemma`` is given), then
      converted once. ``local_files_only``: cached files only; ``progress``: the download's and conversion's
      per-file reports (:mod:`mlx_video.io.progress`); ``log``: a callable taking the "converting" line.
    Raises ValueError (unknown variant / repo), DownloadError (offline, gated, unknown repo; saying
    which files are needed), WeightsError (nothing convertible found, bad weights).
    """
    from mlx_video.resolve import resolve

    return resolve(
        model,
        "ltx2",
        dtype=dtype,
        quantize=quantize,
        variant=variant,
        gemma=gemma,
        log=log,
        pipeline=pipeline,
        local_files_only=local_files_only,
        progress=progress,
    )


# ----------------------------------------------------------------------------- pipeline parts


def encode_text(model_dir: Path, cfg: dict, prompt: str, negative: str | None):
    """Prompt (and negative prompt) -> (TextContext, TextContext | None), loading Gemma + connectors
    and freeing them before returning (the transformer is loaded only after)."""
    from mlx_video.ltx2.denoise import TextContext

    enc = load_text_encoder(model_dir, cfg)
    pos = TextContext(*enc(prompt))
    neg = TextContext(*enc(negative)) if negative is not None else None
    mx.eval(pos.video, pos.audio, *(() if neg is None else (neg.video, neg.audio)))
    del enc
    mx.clear_cache()
    return pos, neg


def load_components(
    model_dir: Path,
    cfg: dict,
    pipeline: str,
    lora: tuple[float, float],
    need_encoder: bool,
    dtype=None,
    stream_blocks: int | None = None,
    dequantize_blocks: bool | None = None,
):
    """LTX2Components for ``pipeline`` from a converted folder. Two-stage dev pipelines use the
    distilled LoRA: stage 1 at ``lora[0]`` (HQ 0.25, else none), stage 2 at ``lora[1]`` (1.0 / HQ 0.5).
    As ltx-pipelines builds each stage's transformer from the checkpoint, each stage's weights are
    the stored ones plus that stage's LoRA (:func:`mlx_video.nn.lora.merge_loras` from
    ``transformer.safetensors``, layer by layer, into the one transformer), so every generation runs
    the same weights however many came before. ``need_encoder``: load the video VAE's encoder too
    (image conditioning). a2vid: as dev-two-stage, plus the audio VAE's encoder. keyframes: as dev-two-stage.
    retake / retake-distilled: one stage (no upsampler), the audio VAE's encoder (the source's audio).
    ``dtype``: what the VAEs and the vocoder compute in (None: :func:`decoder_dtype` of the folder).
    ``stream_blocks`` / ``dequantize_blocks``: the transformer's just-in-time block weights
    (:func:`load_transformer`); with streamed blocks the LoRA merges (distilled LoRA, IC-LoRAs) become a hook
    adding each block's deltas as it is read (:func:`mlx_video.nn.lora.merge_loras`)."""
    from mlx_video.ltx2.pipelines import LTX2Components

    dt = decoder_dtype(cfg) if dtype is None else dtype
    stored = Path(model_dir) / "transformer.safetensors"
    transformer = load_transformer(model_dir, cfg, stream_blocks, dequantize_blocks)
    stage1 = stage2 = None
    if pipeline in ("dev-two-stage", "dev-two-stage-hq", "a2vid", "keyframes"):
        stage1, stage2 = _lora_stages(transformer, model_dir, cfg, lora)
    parts = ("encoder", "decoder") if need_encoder else ("decoder",)
    return LTX2Components(
        transformer=transformer,
        video_vae=load_video_vae(model_dir, cfg, parts, dt),
        audio_decoder=load_audio_decoder(model_dir, cfg, dt),
        vocoder=load_vocoder(model_dir, cfg, dt),
        upsampler=load_upsampler(model_dir, cfg) if pipeline not in ("dev", "retake", "retake-distilled") else None,
        stage1_transformer=stage1,
        stage2_transformer=stage2,
        version=cfg.get("model_version") or None,
        audio_encoder=load_audio_encoder(model_dir, cfg, dt)
        if pipeline in ("a2vid", "retake", "retake-distilled")
        else None,
        transformer_file=stored,
    )


def _lora_stages(transformer: nn.Module, model_dir: Path, cfg: dict, strengths: tuple[float, float]):
    """(stage 1, stage 2) zero-argument callables returning ``transformer`` holding its stored weights
    plus the distilled LoRA at ``strengths[0]`` / ``strengths[1]``, merged only when the strength
    changes, from the stored weights (re-read layer by layer from ``transformer.safetensors`` once a
    LoRA is in); stage 1's weights are merged now."""
    from mlx_video.nn.lora import merge_loras

    load_distilled_lora(model_dir, cfg)  # refuses a folder without one now
    weights = lambda: load_distilled_lora(model_dir, cfg)  # noqa: E731  (read lazily at each merge / streamed block)
    stored = lambda: load_safetensors(Path(model_dir) / "transformer.safetensors")  # noqa: E731
    merged = [0.0]  # the strength the transformer holds now (as loaded: none)

    def at(strength: float):
        def model():
            if merged[0] != strength:  # from the weights as loaded (no re-read while they are unmerged)
                merge_loras(transformer, [(weights, strength)], base=None if merged[0] == 0.0 else stored)
                merged[0] = strength
            return transformer

        return model

    stage1, stage2 = at(strengths[0]), at(strengths[1])
    stage1()
    return stage1, stage2


def read_ic_lora(path: str | Path) -> tuple[dict[str, mx.array], int]:
    """An IC-LoRA file (ltx-core key format, ``diffusion_model.<module>.lora_A.weight`` / ``.lora_B.weight``) ->
    (its state dict, ``reference_downscale_factor`` from the safetensors metadata, 1 when absent; as
    ``ic_lora._read_lora_reference_downscale_factor``). Raises WeightsError for an unreadable file or a factor
    that is not a whole number >= 1."""
    from mlx_video.nn.lora import load_lora

    weights = load_lora(path)
    factor = 1
    if str(path).endswith(".safetensors"):
        meta, _ = read_header(Path(path))
        raw = (meta or {}).get("reference_downscale_factor", "1")
        try:
            factor = int(raw)
        except (TypeError, ValueError):
            factor = 0
        if factor < 1:
            raise WeightsError(f"{path}: reference_downscale_factor must be a whole number >= 1, got {raw!r}")
    return weights, factor


def check_ic_loras(cfg: dict, loras) -> None:
    """Refuse, before anything loads, IC-LoRA files ``[(path, strength), ...]`` that do not fit this model's
    transformer (checked on an unloaded skeleton built from ``cfg``: key names and shapes only) or that disagree
    on the reference downscale factor. Raises WeightsError / ValueError naming the file."""
    from mlx_video.nn.lora import check_lora

    from .transformer import LTXModel, LTXModelArgs, lora_key_map

    skeleton = LTXModel(_args(LTXModelArgs, cfg["transformer"]))  # lazy arrays: nothing is allocated
    factors = set()
    for path, _ in loras:
        weights, k = read_ic_lora(path)
        try:
            check_lora(skeleton, weights, lora_key_map(), f"IC-LoRA {path}")
        except WeightsError as e:
            raise WeightsError(f"{e} (an IC-LoRA for another model?)") from None
        factors.add(k)
    if len(factors - {1}) > 1:
        raise ValueError(f"IC-LoRAs with different reference downscale factors: {sorted(factors)}")


def with_ic_loras(comps, loras, stored=None):
    """Pipeline ic-lora's weights (``ICLoraPipeline``): stage 1 = the distilled transformer + the IC-LoRAs
    ``[(path, strength), ...]`` (ltx-core ``fuse_loras``: ``W + strength * B @ A``, no alpha), stage 2 = the
    distilled transformer alone. Sets ``comps.stage1_transformer`` / ``stage2_transformer`` (zero-argument
    callables merging or unmerging in place, from ``stored``: a callable returning the stored weights; default:
    ``comps.transformer_file`` read again layer by layer when set (as :func:`load_components` sets it), else
    references to the weights as they are now, which then stay resident beside the merged layers) and
    ``comps.reference_downscale_factor``. The LoRAs are resolved and merged now, so a
    file for another model fails here, before any denoising: WeightsError (unmatched keys, shapes that do not
    fit this transformer), ValueError for LoRAs with different reference downscale factors. Returns ``comps``."""
    from mlx.utils import tree_flatten

    from mlx_video.ltx2.transformer import lora_key_map
    from mlx_video.nn.lora import merge_loras

    transformer = comps.transformer
    read, factor = [], 1
    for path, strength in loras:
        weights, k = read_ic_lora(path)
        if k != 1 and factor not in (1, k):
            raise ValueError(f"IC-LoRAs with different reference downscale factors ({factor} and {k}, {path})")
        factor = k if k != 1 else factor
        if str(path).endswith(".safetensors"):  # read lazily again at each merge / streamed block: never resident
            weights = lambda p=path: read_ic_lora(p)[0]  # noqa: E731
        read.append((weights, float(strength)))
    if stored is None and getattr(comps, "transformer_file", None) is not None:
        path = comps.transformer_file
        stored = lambda: load_safetensors(path)  # noqa: E731  (memory-mapped: no second copy of the weights)
    elif stored is None:
        snapshot = dict(tree_flatten(transformer.parameters()))
        stored = lambda: snapshot  # noqa: E731
    key_map, merged = lora_key_map(), [False]

    def stage1():
        if not merged[0]:
            merge_loras(transformer, read, key_map, base=stored)
            merged[0] = True
        return transformer

    def stage2():
        if merged[0]:
            merge_loras(transformer, [(w, 0.0) for w, _ in read], key_map, base=stored)
            merged[0] = False
        return transformer

    stage1()
    comps.stage1_transformer, comps.stage2_transformer = stage1, stage2
    comps.reference_downscale_factor = factor
    return comps


def load_gemma_vision(model_dir: str | Path, cfg: dict):
    """Gemma 3's vision tower + projector (:class:`~mlx_video.ltx2.gemma_vision.GemmaVision`). Raises WeightsError
    when the folder has none (converted from a text-only Gemma, or by a version that dropped it)."""
    from .gemma_vision import GemmaVision, VisionArgs

    if not cfg.get("gemma_vision"):
        raise WeightsError(
            f"{model_dir} has no Gemma 3 vision tower, which i2v prompt enhancement needs: reconvert with the full "
            "Gemma 3 folder (gemma=<folder with vision_tower.* weights>) or run without --enhance_prompt"
        )
    vision = GemmaVision(_args(VisionArgs, cfg["gemma_vision"]))
    return _load(vision, model_dir, "gemma_vision.safetensors", "Gemma 3 vision tower")


def enhance_prompt(model_dir: Path, cfg: dict, prompt: str, image=None, seed: int = 42) -> str:
    """``--enhance_prompt``: the prompt rewritten by the folder's Gemma 3 with the official system prompt, t2v, or
    i2v seeing ``image`` (uint8 RGB [H, W, 3], the run's first conditioning image) through Gemma 3's vision tower
    (see :mod:`mlx_video.ltx2.enhance`), sampled with ``seed`` (ltx-pipelines: 42, ICLoraPipeline its own seed).
    Loads Gemma and frees it before returning. Raises WeightsError when the folder has no Gemma (or, with an image,
    no vision tower), ValueError for an empty prompt."""
    from .enhance import PromptEnhancer

    vision = None if image is None else load_gemma_vision(model_dir, cfg)
    enc = load_text_encoder(model_dir, cfg)
    try:
        return PromptEnhancer.from_text_encoder(enc.gemma, enc.tokenizer.tokenizer, vision)(prompt, image, seed)
    finally:
        del enc, vision
        mx.clear_cache()
