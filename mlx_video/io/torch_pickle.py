"""Read PyTorch ``.pth`` checkpoints (zip format) into MLX arrays without importing torch.

A ``torch.save`` file is a zip holding ``<name>/data.pkl`` (a pickle whose tensors point to
storages by key) and one raw little-endian file per storage under ``<name>/data/``. This module
unpickles only the few globals such files use (tensor rebuild, storage types, OrderedDict) and
refuses everything else, so a hostile pickle cannot run code.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np

from .weights import WeightsError

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bf16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                 "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
                 "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TorchDtype:
    def __init__(self, name):
        self.name = _TORCH_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *args):
    kind, buf = storage
    if kind == "bf16":
        arr = np.frombuffer(buf, dtype=np.uint16)
    else:
        arr = np.frombuffer(buf, dtype=kind)
    size, stride = tuple(size), tuple(stride)
    if len(size) == 0:
        out = arr[offset:offset + 1].reshape(())
    else:
        item = arr.itemsize
        out = np.lib.stride_tricks.as_strided(arr[offset:], shape=size,
                                              strides=tuple(s * item for s in stride))
    out = np.ascontiguousarray(out)
    return ("bf16", out) if kind == "bf16" else out


def _rebuild_parameter(data, *args):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.zf, self.prefix, self.cache = zf, prefix, {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType("ByteStorage")
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        _, stype, key, _loc, _numel = pid
        if key not in self.cache:
            name = stype.name
            data = self.zf.read(f"{self.prefix}/data/{key}")
            kind = _DTYPES[name]
            self.cache[key] = (kind, data)
        return self.cache[key]


def _to_mx(x):
    if isinstance(x, tuple) and len(x) == 2 and x[0] == "bf16":
        return mx.array(x[1]).view(mx.bfloat16)
    if isinstance(x, np.ndarray):
        return mx.array(x)
    return x


def load_pth(path: str | Path) -> dict[str, mx.array]:
    """Load a ``torch.save``'d state dict (zip format) as ``{name: mx.array}``.

    bf16 tensors stay bf16; nested dicts like ``{"state_dict": {...}}`` are not unwrapped here.
    Raises WeightsError for a missing, truncated or non-zip file, or an unexpected pickle global.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise WeightsError(f"{path}: no data.pkl inside (not a torch zip checkpoint)")
            prefix = pkl[0][: -len("/data.pkl")] if "/" in pkl[0] else ""
            with zf.open(pkl[0]) as fh:
                obj = _Unpickler(fh, zf, prefix).load()
    except WeightsError:
        raise
    except (zipfile.BadZipFile, EOFError, KeyError, pickle.UnpicklingError, ValueError) as e:
        raise WeightsError(f"cannot read {path}: {e} (truncated or not a torch checkpoint?)") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: _to_mx(v) for k, v in obj.items()}
