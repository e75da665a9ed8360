"""Reading checkpoint files in the layouts people download, and writing converted folders."""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_video.io.torch_pickle import load_pth
from mlx_video.io.weights import WeightsError, load_safetensors, quantize_linears, save_safetensors


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
        weight_map = json.loads(index.read_text())["weight_map"]
        out: dict[str, mx.array] = {}
        for shard in sorted(set(weight_map.values())):
            out.update(load_safetensors(folder / shard))
        missing = set(weight_map) - set(out)
        if missing:
            raise WeightsError(f"{index}: keys listed in the index but absent from the shards: "
                               f"{', '.join(sorted(missing)[:8])}")
        return out
    if single.is_file():
        return load_safetensors(single)
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return load_safetensors(found[0])
    raise WeightsError(f"no {stem}.safetensors (or its index) in {folder}")


def cast(weights: dict[str, mx.array], dtype: mx.Dtype) -> dict[str, mx.array]:
    return {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}


def quantize_module(model: nn.Module, bits: int, group_size: int) -> dict:
    """Quantize the Linear layers whose input width divides ``group_size``; returns the config to store
    (what the loaders hand to ``quantize_linears``)."""
    q = {"bits": bits, "group_size": group_size}
    quantize_linears(model, q)
    return q


@contextmanager
def staged_folder(dst: Path):
    """Yield a temporary folder beside ``dst``; on success it replaces ``dst``, on failure it is removed,
    so a converted folder is either complete or absent."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dst.name + ".tmp-", dir=dst.parent))
    try:
        yield tmp
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


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
