"""From what a user passes (a Hugging Face repo id, a folder, a single file) to a converted folder.

One path for both families, used by ``mlx_video generate`` (Wan ``--ckpt_dir``, LTX-2 ``--model``),
``mlx_video convert`` and the Python API (``mlx_video.ltx2.loading.resolve_ltx2_model`` calls
:func:`resolve`):

1. :func:`identify`: the family and layout come from the contents (a converted folder's config
   ``format``; a diffusers ``model_index.json`` class; an official Wan DiT config's keys; a safetensors
   file whose embedded ``config`` metadata has a ``transformer`` section), never from the path's name;
2. :func:`locate`: a repo id is downloaded first into huggingface_hub's cache (``HF_HOME``; only the files the
   Wan task or LTX-2 pipeline uses; cached files only with ``local_files_only`` or ``HF_HUB_OFFLINE``); an LTX-2
   folder's parts are picked (checkpoint for the variant, upsamplers, distilled LoRA, Gemma);
3. :func:`resolve`: converted once into the cache (``converted/`` in :func:`mlx_video.io.hub.cache_root`) under a
   key of the sources' content (:func:`mlx_video.io.hub.source_key`) and the dtype / quantization asked for, so new
   weights in the same folder, or ``--dtype float32`` after a bf16 run, convert again; a cached folder
   is checked against its manifest each time it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlx_video.io import hub
from mlx_video.io.checkpoint import MANIFEST, manifest_intact, read_manifest
from mlx_video.io.weights import WeightsError, read_json, read_safetensors_header

FAMILIES = ("wan", "ltx2")
VARIANTS = ("dev", "distilled")  # LTX-2 checkpoints (mlx_video.ltx2.loading.VARIANTS)
WAN_DIT_KEYS = ("dim", "num_heads", "num_layers")  # in every official Wan DiT config.json (WanModel)


@dataclass
class Source:
    """A located checkpoint: ``family`` ('wan' | 'ltx2'), ``layout`` ('converted', 'official',
    'diffusers', 'single-file', 'folder'), ``path`` (folder or file) and for LTX-2 ``parts``
    (checkpoint, upsamplers, distilled_lora, gemma)."""

    family: str
    layout: str
    path: Path
    parts: dict = field(default_factory=dict)

    def files(self) -> list[Path]:
        """Every file or folder the conversion reads (the cache key's content, the paths a conversion
        may not overwrite)."""
        if self.family == "wan":
            return [self.path]
        p = self.parts
        return [p["checkpoint"], *p["upsamplers"], p["distilled_lora"], p["gemma"]]


def _ltx2_config(path: Path) -> dict | None:
    """The embedded ``config`` of an LTX-2 single file (it has a ``transformer`` section), else None."""
    try:
        _, meta = read_safetensors_header(path)
    except WeightsError:
        return None
    if "config" not in meta:
        return None
    from mlx_video.io.weights import metadata_json

    cfg = metadata_json(meta, "config", path)
    return cfg if "transformer" in cfg else None


def identify(path: str | Path) -> tuple[str, str]:
    """(family, layout) of a local file or folder, from its contents only.

    Raises WeightsError naming the path (and the file and key at fault for a corrupt or unknown config).
    """
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix == ".safetensors" and _ltx2_config(p) is not None:
            return "ltx2", "single-file"
        raise WeightsError(
            f"{p}: not an LTX-2 single-file checkpoint (no embedded 'config' metadata with a "
            f"'transformer' section); Wan checkpoints are folders"
        )
    if not p.is_dir():
        raise WeightsError(f"{p}: not found (no such file or folder)")
    cfg_path = p / "config.json"
    cfg = read_json(cfg_path, "config.json") if cfg_path.is_file() else None
    if cfg is not None and "format" in cfg:
        fmt = str(cfg["format"]).split("/")
        if len(fmt) == 3 and fmt[0] == "mlx_video" and fmt[1] in FAMILIES:
            return fmt[1], "converted"
        raise WeightsError(
            f"{cfg_path}: key 'format' is {cfg['format']!r}, not a format this version writes "
            f"(mlx_video/wan/1, mlx_video/ltx2/1); reconvert the model"
        )
    if (p / "model_index.json").is_file():
        index = read_json(p / "model_index.json", "model_index.json")
        cls = str(index.get("_class_name", ""))
        if cls.startswith("Wan"):
            return "wan", "diffusers"
        raise WeightsError(
            f"{p / 'model_index.json'}: key '_class_name' is {cls!r}: not a Wan diffusers "
            f"pipeline (LTX-2 is read from Lightricks' single files)"
        )
    dit_cfg = cfg_path if cfg is not None else p / "high_noise_model" / "config.json"
    if dit_cfg.is_file():
        c = cfg if cfg is not None else read_json(dit_cfg, "config.json")
        if c.get("_class_name") == "WanModel" or all(k in c for k in WAN_DIT_KEYS):
            return "wan", "official"
    if any(_ltx2_config(f) is not None for f in sorted(p.glob("*.safetensors"))):
        return "ltx2", "folder"
    if cfg is not None:
        raise WeightsError(
            f"{cfg_path}: neither a converted folder (key 'format'), nor a Wan DiT config "
            f"(keys {', '.join(WAN_DIT_KEYS)}), and no LTX-2 single file beside it"
        )
    raise WeightsError(
        f"{p}: not a Wan checkpoint (config.json, high_noise_model/ or model_index.json), an "
        f"LTX-2 checkpoint (a .safetensors with an embedded config) or a converted folder"
    )


def _ltx2_repos() -> dict:
    from mlx_video.ltx2.loading import LTX2_REPOS

    return LTX2_REPOS


def family_of(model: str) -> str | None:
    """'wan' or 'ltx2' for a path (by content) or a repo id (Lightricks' known repos are LTX-2, any
    other id is taken as Wan); None when a local path is neither (resolving it then says why)."""
    p = Path(model).expanduser()
    if p.exists():
        try:
            return identify(p)[0]
        except WeightsError:
            return None
    if hub.looks_like_repo_id(model):
        return "ltx2" if model in _ltx2_repos() else "wan"
    return None


def locate(
    model: str,
    family: str | None = None,
    variant: str = "dev",
    gemma: str | Path | None = None,
    task: str | None = None,
    pipeline: str | None = None,
    local_files_only: bool = False,
    progress=None,
) -> Source:
    """Identify ``model`` (a path, or a repo id downloaded first into huggingface_hub's cache: only the files the
    Wan ``task`` or the LTX-2 ``pipeline`` uses, see :func:`mlx_video.io.hub.wan_files` and
    :func:`mlx_video.ltx2.loading.download_parts`; None: what any task / pipeline of ``variant`` uses).
    ``family``: the family the caller runs; another family's checkpoint is a WeightsError saying which it is.
    ``local_files_only``: cached files only (no network); ``progress``: the download's byte reports
    (:mod:`mlx_video.io.progress`).
    Raises WeightsError, DownloadError, ValueError (unknown LTX-2 repo or variant, unknown Wan task)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    p = Path(model).expanduser()
    if p.exists():
        fam, layout = identify(p)
    elif hub.looks_like_repo_id(model):
        fam = family or ("ltx2" if model in _ltx2_repos() else "wan")
        if fam == "ltx2":
            if model not in _ltx2_repos():
                raise ValueError(f"unknown LTX-2 repo {model!r}; known: {', '.join(_ltx2_repos())}")
            from mlx_video.ltx2 import loading as L

            parts = L.download_parts(model, variant, gemma, pipeline, local_files_only, progress)
            return Source("ltx2", "single-file", parts["checkpoint"], parts)
        p = hub.download(
            model,
            hub.wan_files(model, task),
            required=hub.wan_required(model, task),
            local_files_only=local_files_only,
            progress=progress,
        )
        fam, layout = identify(p)
    else:
        raise WeightsError(f"{model}: not found (no such file or folder, and not a Hugging Face repo id)")
    if family is not None and fam != family:
        names = {"wan": "Wan", "ltx2": "LTX-2"}
        raise WeightsError(
            f"{model} is a{'n' if fam == 'ltx2' else ''} {names[fam]} checkpoint ({layout}), "
            f"but {names[family]} options were given"
        )
    src = Source(fam, layout, p)
    if fam == "ltx2" and layout != "converted":
        from mlx_video.ltx2 import loading as L

        src.parts = L.find_parts(p.parent, variant, checkpoint=p) if p.is_file() else L.find_parts(p, variant)
        if gemma is not None:
            src.parts["gemma"] = Path(gemma)
    return src


def convert(
    src: Source,
    dst: str | Path,
    dtype: str = "bfloat16",
    quantize: int | None = None,
    group_size: int = 64,
    overwrite: bool = False,
    key: str | None = None,
    progress=None,
) -> Path:
    """Convert a located source into ``dst`` with the family's converter (strict; written beside ``dst``
    and renamed into place; refuses to replace what we did not create, see
    :func:`mlx_video.io.checkpoint.check_destination`). ``progress``: the conversion's reports, one per source
    tensor file as it starts and ends (:mod:`mlx_video.io.progress`). Returns ``dst``."""
    if src.layout == "converted":
        raise WeightsError(f"{src.path} is already converted")
    if src.family == "wan":
        from mlx_video.wan import checkpoint as W

        return W.convert_wan(
            src.path,
            dst,
            dtype=dtype,
            quantize=quantize,
            group_size=group_size,
            overwrite=overwrite,
            key=key,
            progress=progress,
        )
    from mlx_video.ltx2 import checkpoint as C

    p = src.parts
    return C.convert_ltx2(
        p["checkpoint"],
        dst,
        dtype=dtype,
        quantize=quantize,
        group_size=group_size,
        gemma=p["gemma"],
        upsamplers=p["upsamplers"],
        distilled_lora=p["distilled_lora"],
        overwrite=overwrite,
        key=key,
        sources=[src.path],
        progress=progress,
    )


def cache_key(src: Source, dtype: str, quantize: int | None, group_size: int) -> str:
    """The content + settings key of a conversion (see :func:`mlx_video.io.hub.source_key`)."""
    return hub.source_key(
        src.files(), family=src.family, dtype=dtype, quantize=quantize, group_size=group_size if quantize else None
    )


def resolve(
    model: str,
    family: str | None = None,
    dtype: str = "bfloat16",
    quantize: int | None = None,
    group_size: int = 64,
    variant: str = "dev",
    gemma: str | Path | None = None,
    log=None,
    task: str | None = None,
    pipeline: str | None = None,
    local_files_only: bool = False,
    progress=None,
) -> Path:
    """A converted folder for ``model``: a converted folder as is; anything else converted once into the
    cache and reused while its sources' content, ``dtype`` and quantization are the same (checked on
    every call: a cached folder whose key or files do not match its manifest is converted again).
    A repo id is downloaded first (only what ``task`` / ``pipeline`` uses, see :func:`locate`; cached files only
    with ``local_files_only``). ``log``: optional callable taking one line (the CLI prints the "converting" line
    with it); ``progress``: the download's and conversion's per-file reports (:mod:`mlx_video.io.progress`).
    Raises WeightsError, DownloadError, ValueError (see :func:`locate`)."""
    src = locate(model, family, variant, gemma, task, pipeline, local_files_only, progress)
    if src.layout == "converted":
        stored = read_json(src.path / "config.json", "config.json").get("dtype")
        if log and stored and stored != dtype:
            log(
                f"note: {src.path} stores {stored} weights; they run as {dtype} but keep {stored}'s rounding "
                f"(pass the original checkpoint, or convert it with --dtype {dtype})"
            )
        return src.path
    key = cache_key(src, dtype, quantize, group_size)
    stem = (src.parts.get("checkpoint") or src.path).stem
    if src.family == "wan" and not Path(model).expanduser().exists():  # a snapshot folder is named by its commit
        stem = model.rsplit("/", 1)[-1]
    name = f"{src.family}-{stem}"
    dst = hub.converted_path(name, key)
    m = read_manifest(dst) if dst.is_dir() else None
    if m is not None and m.get("source_key") == key and manifest_intact(dst):
        return dst
    if log:
        log(
            f"converting {src.path} ({src.family}, {src.layout}, {dtype}"
            f"{f', {quantize}-bit' if quantize else ''}) -> {dst} (once)"
        )
    convert(src, dst, dtype=dtype, quantize=quantize, group_size=group_size, overwrite=True, key=key, progress=progress)
    return dst


__all__ = ["MANIFEST", "Source", "identify", "family_of", "locate", "convert", "cache_key", "resolve"]
