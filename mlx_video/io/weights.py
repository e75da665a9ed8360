"""Weights I/O: safetensors read/write (atomic), strict loading into MLX modules.

Strict means every key of the checkpoint is used, every parameter of the module is
filled and every shape matches; anything else raises :class:`WeightsError` naming the keys.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten


class WeightsError(ValueError):
    """A checkpoint does not fit the model: missing, unused or mis-shaped keys, or a corrupt file."""


def _short(keys: Iterable[str], n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_safetensors(path: str | os.PathLike, with_metadata: bool = False):
    """Read a safetensors file into ``{name: mx.array}`` (dtypes as stored).

    Raises WeightsError when the file is missing, truncated or not safetensors.
    With ``with_metadata`` returns ``(weights, metadata_dict)``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}")
    try:
        out = mx.load(str(path), return_metadata=True)
    except Exception as e:  # mlx raises RuntimeError/ValueError on bad headers or short files
        raise WeightsError(f"cannot read {path}: {e} (truncated or not a safetensors file?)") from e
    weights, meta = out
    return (weights, dict(meta or {})) if with_metadata else weights


def save_safetensors(path: str | os.PathLike, weights: Mapping[str, mx.array],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``weights`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        mx.save_safetensors(tmp, dict(weights), metadata=dict(metadata or {}))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def check_keys(expected: Mapping[str, tuple], got: Mapping[str, mx.array], what: str) -> None:
    """Raise WeightsError unless ``got`` has exactly the keys of ``expected`` with those shapes."""
    missing = set(expected) - set(got)
    unused = set(got) - set(expected)
    shapes = [f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k])}"
              for k in sorted(set(expected) & set(got)) if tuple(got[k].shape) != tuple(expected[k])]
    errs = []
    if missing:
        errs.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unused:
        errs.append(f"unused keys ({len(unused)}): {_short(unused)}")
    if shapes:
        errs.append(f"mis-shaped keys ({len(shapes)}): " + "; ".join(shapes[:8]))
    if errs:
        raise WeightsError(f"{what}: " + " | ".join(errs))


def load_strict(model: nn.Module, weights: Mapping[str, mx.array], what: str = "model",
                dtype: mx.Dtype | None = None) -> nn.Module:
    """Load ``weights`` (flat MLX names) into ``model``; every key used, every parameter set.

    ``dtype``: cast floating weights to this dtype (quantized integer weights are kept).
    Raises WeightsError naming missing, unused and mis-shaped keys.
    """
    expected = {k: v.shape for k, v in tree_flatten(model.parameters())}
    check_keys(expected, weights, what)
    if dtype is not None:
        weights = {k: (v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v)
                   for k, v in weights.items()}
    model.update(tree_unflatten(list(weights.items())))
    return model


def read_folder_config(model_dir: str | os.PathLike, fmt: str, hint: str) -> dict:
    """A converted folder's ``config.json``; WeightsError unless its ``format`` is ``fmt``.
    ``hint`` ends the message when there is no config (how to convert)."""
    p = Path(model_dir) / "config.json"
    if not p.is_file():
        raise WeightsError(f"{model_dir} is not a converted mlx_video folder (no config.json); {hint}")
    cfg = json.loads(p.read_text())
    if cfg.get("format") != fmt:
        raise WeightsError(f"{p}: not an mlx_video folder of format {fmt!r} (found {cfg.get('format')!r})")
    return cfg


def quantize_linears(model: nn.Module, q: Mapping | None) -> None:
    """Quantize ``model`` in place as the stored ``q`` = {"bits", "group_size"[, "scope"]} says (None:
    nothing): every nn.Linear (under module path ``scope`` when given) whose input width divides the
    group size. Converters and loaders call this with the same ``q``, so the structures match."""
    if not q:
        return
    gs, scope = q["group_size"], q.get("scope", "")
    nn.quantize(model, group_size=gs, bits=q["bits"],
                class_predicate=lambda path, m: isinstance(m, nn.Linear) and path.startswith(scope)
                and m.weight.shape[1] % gs == 0)
