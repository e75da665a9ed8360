"""Reading checkpoint files in the layouts people download, and writing converted folders."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_video.io.atomic import atomic_folder
from mlx_video.io.torch_pickle import load_pth
from mlx_video.io.weights import (
    WeightsError,
    load_safetensors,
    quantize_linears,
    read_json,
    save_safetensors,
    write_json_atomic,
)


def read_weights(path: Path) -> dict[str, mx.array]:
    """One file: ``.safetensors`` or ``.pth``/``.pt``/``.bin`` (torch zip, read without torch)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        w = load_pth(path)
        for wrap in ("state_dict", "model", "module"):  # some .pth files nest the state dict once
            if set(w) == {wrap}:
                w = w[wrap]
        return w
    raise WeightsError(f"{path}: unknown checkpoint format (expected .safetensors or .pth)")


def read_sharded(folder: Path, stem: str = "diffusion_pytorch_model") -> dict[str, mx.array]:
    """A (possibly sharded) safetensors checkpoint in ``folder``: ``{stem}.safetensors`` or the shards
    listed by ``{stem}.safetensors.index.json``; every listed shard must exist and hold its keys."""
    folder = Path(folder)
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise WeightsError(f"{index}: corrupt safetensors index (no weight_map of key -> shard file)")
        out: dict[str, mx.array] = {}
        for shard in sorted(set(weight_map.values())):
            if Path(shard).name != shard:
                raise WeightsError(f"{index}: shard name {shard!r} is not a file name in {folder}")
            out.update(load_safetensors(folder / shard))
        missing = set(weight_map) - set(out)
        if missing:
            raise WeightsError(
                f"{index}: keys listed in the index but absent from the shards: {', '.join(sorted(missing)[:8])}"
            )
        return out
    if single.is_file():
        return load_safetensors(single)
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return load_safetensors(found[0])
    raise WeightsError(f"no {stem}.safetensors (or its index) in {folder}")


def sharded_files(folder: Path, stem: str = "diffusion_pytorch_model") -> list[Path]:
    """The files :func:`read_sharded` reads in ``folder`` (for progress reports): the shards its index lists that
    exist, else ``{stem}.safetensors``, else a lone ``*.safetensors``; [] when there are none (read_sharded then
    says what is missing). Never raises on a corrupt index (read_sharded does)."""
    folder = Path(folder)
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            names = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (ValueError, AttributeError, OSError):
            return []
        return [folder / n for n in sorted(n for n in names if isinstance(n, str)) if (folder / n).is_file()]
    if (folder / f"{stem}.safetensors").is_file():
        return [folder / f"{stem}.safetensors"]
    found = sorted(folder.glob("*.safetensors"))
    return found if len(found) == 1 else []


def cast(weights: dict[str, mx.array], dtype: mx.Dtype) -> dict[str, mx.array]:
    return {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}


def quantize_module(model: nn.Module, bits: int, group_size: int) -> dict:
    """Quantize the Linear layers whose input width divides ``group_size``; returns the config to store
    (what the loaders hand to ``quantize_linears``)."""
    q = {"bits": bits, "group_size": group_size}
    quantize_linears(model, q)
    return q


class DestinationError(ValueError):
    """A conversion's output folder may not be written (it would destroy what we did not create)."""


MANIFEST = "mlx_video_manifest.json"  # written into every folder we convert; nothing else is "ours"


def is_ours(folder: Path) -> bool:
    """True when ``folder`` is a folder mlx_video converted (it holds our manifest)."""
    try:
        return Path(folder).is_dir() and read_json(Path(folder) / MANIFEST).get("created_by") == "mlx_video"
    except WeightsError:
        return False


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a folder we converted, or None (not ours, or unreadable)."""
    return read_json(Path(folder) / MANIFEST) if is_ours(folder) else None


def check_destination(dst: Path, sources=(), overwrite: bool = False) -> None:
    """Raise DestinationError unless a conversion may write ``dst``: never when ``dst`` is one of
    ``sources``, inside one or above one (even with ``overwrite``); an existing ``dst`` only when it is
    an empty folder, a folder we converted (:func:`is_ours`), or ``overwrite`` is given."""
    d = Path(dst).expanduser().resolve()
    for src in sources:
        if src is None:
            continue
        s = Path(src).expanduser().resolve()
        if d == s:
            raise DestinationError(f"output {dst} is the source itself; choose another folder")
        if s in d.parents:
            raise DestinationError(f"output {dst} is inside the source {src}; choose a folder outside it")
        if d in s.parents:
            raise DestinationError(
                f"output {dst} contains the source {src}; replacing it would delete the source: choose another folder"
            )
    if not (d.exists() or d.is_symlink()) or overwrite or is_ours(d):
        return
    if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
        return
    raise DestinationError(
        f"output {dst} exists and is not a folder mlx_video converted (no {MANIFEST}); "
        f"pass --overwrite to replace it, or choose another folder"
    )


@contextmanager
def staged_folder(dst: Path, sources=(), overwrite: bool = False, manifest: dict | None = None):
    """Yield a new temporary folder beside ``dst``; on success our manifest (``manifest`` plus the size of
    every file written) is added and the folder takes ``dst``'s place; on failure (Ctrl-C and SIGTERM
    included) it is removed, so a converted folder is complete or absent. Refuses, before anything is
    written, what :func:`check_destination` refuses (DestinationError)."""
    dst = Path(dst)
    check_destination(dst, sources, overwrite)
    with atomic_folder(dst) as tmp:
        yield tmp
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json_atomic(
            tmp / MANIFEST, {"created_by": "mlx_video", "manifest_version": 1, **(manifest or {}), "files": files}
        )


def manifest_intact(folder: Path) -> bool:
    """True when ``folder`` is ours and every file its manifest lists is there with its size."""
    m = read_manifest(folder)
    if m is None:
        return False
    return all(
        (Path(folder) / name).is_file() and (Path(folder) / name).stat().st_size == size
        for name, size in m.get("files", {}).items()
    )


def save_module(model: nn.Module, path: Path) -> None:
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    save_safetensors(path, weights)


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy a tokenizer folder (files only); raises WeightsError when it is missing or empty."""
    if not src.is_dir() or not any(src.iterdir()):
        raise WeightsError(f"tokenizer folder missing or empty: {src}")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)
