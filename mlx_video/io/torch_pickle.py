"""Read PyTorch ``.pth`` checkpoints (zip format) into MLX arrays without importing torch.

A ``torch.save`` file is a zip holding ``<name>/data.pkl`` (a pickle whose tensors point to
storages by key) and one raw little-endian file per storage under ``<name>/data/``.

The file is not trusted (format as torch/serialization.py writes it; pickle opcodes as in CPython's
``pickletools``):

- the pickle runs on a stack machine that knows only the opcodes a state dict needs (containers,
  numbers, strings, globals, REDUCE, persistent ids, BUILD onto an OrderedDict); anything else, and
  every global other than tensor rebuilding, storage types and OrderedDict, is refused, so a hostile
  pickle cannot run code;
- a storage must be the size its persistent id declares (elements x dtype size), and the bytes read
  out of the zip (pickle and storages, after decompression) may total at most :func:`byte_budget`
  of the file's real size, so a small zip cannot expand into gigabytes;
- every tensor view (offset, shape, strides) must lie inside its storage, and the tensors built may
  total at most the same budget (stride-0 views cannot blow up either).
Anything else raises WeightsError naming the file.
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
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}

# The opcodes torch.save's pickles (protocol 2) use, and no others.
_OPCODES = (
    "PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 "
    "BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8 SHORT_BINBYTES BINBYTES EMPTY_DICT "
    "EMPTY_LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 LIST DICT APPEND APPENDS SETITEM SETITEMS "
    "BINPUT LONG_BINPUT BINGET LONG_BINGET MEMOIZE GLOBAL STACK_GLOBAL REDUCE BINPERSID BUILD"
).split()
_ALLOWED = {getattr(pickle, name)[0] for name in _OPCODES}


def byte_budget(file_size: int) -> int:
    """Bytes a ``.pth`` of ``file_size`` bytes may decompress to, and may build as tensors: 4x its size
    plus 1 MiB (torch.save stores entries uncompressed, so a real file needs at most 1x; tied weights
    that share one storage count once per name)."""
    return 4 * file_size + (1 << 20)


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TorchDtype:
    def __init__(self, name):
        self.name = _TORCH_DTYPES[name]


class _Storage:
    """One storage's elements (numpy, bf16 as uint16) and whether they are bf16."""

    def __init__(self, data: np.ndarray, bf16: bool):
        self.data, self.bf16 = data, bf16


class _Tensor:
    def __init__(self, data: np.ndarray, bf16: bool):
        self.data, self.bf16 = data, bf16


def _is_ints(seq, n=None) -> bool:
    return isinstance(seq, tuple) and (n is None or len(seq) == n) and all(type(v) is int for v in seq)


class _Unpickler(pickle._Unpickler):  # the pure-Python machine: its opcode table can be restricted
    dispatch = {k: v for k, v in pickle._Unpickler.dispatch.items() if k in _ALLOWED}

    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str, path: Path, budget: list[int]):
        super().__init__(fh)
        self.zf, self.prefix, self.path, self.budget, self.cache = zf, prefix, path, budget, {}
        self.built = 0

    def load(self):
        try:
            return super().load()
        except KeyError as e:  # an opcode missing from the table above
            if isinstance(e.args[0], int):
                raise pickle.UnpicklingError(
                    f"pickle opcode {bytes([e.args[0]])!r} is not allowed in a checkpoint"
                ) from None
            raise

    def load_build(self):  # BUILD: only OrderedDict state (torch's ``_metadata``), which is dropped
        state = self.stack.pop()
        if not isinstance(self.stack[-1], collections.OrderedDict) or not isinstance(state, (dict, tuple)):
            raise pickle.UnpicklingError("BUILD is allowed on an OrderedDict only")

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self.rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType("ByteStorage")
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def take(self, n: int, what: str) -> None:
        if n > self.budget[0]:
            raise WeightsError(
                f"{self.path}: {what} would exceed {byte_budget(self.path.stat().st_size)} bytes, "
                f"more than a file of this size can hold (corrupt or a zip bomb)"
            )
        self.budget[0] -= n

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], (_StorageType, _TorchDtype))
            and isinstance(pid[2], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _loc, numel = pid
        if key not in self.cache:
            dtype = np.dtype(_DTYPES[stype.name])
            name = f"{self.prefix}/data/{key}" if self.prefix else f"data/{key}"
            try:
                info = self.zf.getinfo(name)
            except KeyError:
                raise WeightsError(f"{self.path}: storage {key!r} is missing from the zip") from None
            want = numel * dtype.itemsize
            if info.file_size != want:
                raise WeightsError(
                    f"{self.path}: storage {key!r} declares {numel} x {dtype.itemsize} bytes, "
                    f"the zip holds {info.file_size}"
                )
            self.take(want, f"storage {key!r}")
            with self.zf.open(info) as f:
                data = f.read(want + 1)
            if len(data) != want:
                raise WeightsError(f"{self.path}: storage {key!r} is truncated")
            self.cache[key] = _Storage(np.frombuffer(data, dtype=dtype), stype.name == "BFloat16Storage")
        return self.cache[key]

    def rebuild_tensor(self, storage, offset, size, stride, *args):
        """torch._utils._rebuild_tensor_v2: a view of ``storage`` checked to lie inside it."""
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
        size, stride = (
            tuple(size) if isinstance(size, (tuple, list)) else size,
            tuple(stride) if isinstance(stride, (tuple, list)) else stride,
        )
        if (
            type(offset) is not int
            or not _is_ints(size)
            or not _is_ints(stride, len(size))
            or offset < 0
            or any(v < 0 for v in size + stride)
        ):
            raise WeightsError(
                f"{self.path}: tensor view offset {offset!r:.40}, shape {size!r:.60}, "
                f"strides {stride!r:.60} is malformed"
            )
        n = storage.data.size
        numel = int(np.prod(size, dtype=object)) if size else 1
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= n:
                raise WeightsError(
                    f"{self.path}: tensor view shape {size}, strides {stride}, offset {offset} "
                    f"reaches element {last} of a {n}-element storage"
                )
        self.take(numel * storage.data.itemsize, f"tensor of shape {size}")
        if not numel:
            out = np.zeros(size, dtype=storage.data.dtype)
        else:
            item = storage.data.itemsize
            out = np.lib.stride_tricks.as_strided(
                storage.data[offset:], shape=size, strides=tuple(s * item for s in stride)
            )
            out = np.ascontiguousarray(out)
        return _Tensor(out, storage.bf16)


def _rebuild_parameter(data, *args):
    return data


def _to_mx(x):
    if isinstance(x, _Tensor):
        a = mx.array(x.data)
        return a.view(mx.bfloat16) if x.bf16 else a
    if isinstance(x, dict):
        return {k: _to_mx(v) for k, v in x.items()}
    return x


def load_pth(path: str | Path) -> dict[str, mx.array]:
    """Load a ``torch.save``'d state dict (zip format) as ``{name: mx.array}``.

    bf16 tensors stay bf16; nested dicts like ``{"state_dict": {...}}`` are converted but not unwrapped
    here. Raises WeightsError for a missing, truncated, corrupt or non-zip file, a disallowed pickle
    opcode or global, a storage or view that does not fit, or more bytes than :func:`byte_budget`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}")
    budget = [byte_budget(path.stat().st_size)]
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise WeightsError(f"{path}: no data.pkl inside (not a torch zip checkpoint)")
            prefix = pkl[0][: -len("/data.pkl")] if "/" in pkl[0] else ""
            info = zf.getinfo(pkl[0])
            with zf.open(info) as fh:
                u = _Unpickler(fh, zf, prefix, path, budget)
                u.take(info.file_size, "data.pkl")
                obj = u.load()
    except WeightsError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        NotImplementedError,
        RecursionError,
        MemoryError,
        UnicodeDecodeError,
        OSError,
    ) as e:
        raise WeightsError(
            f"cannot read {path}: {type(e).__name__}: {str(e)[:200]} (truncated, corrupt or not a torch checkpoint?)"
        ) from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return _to_mx(obj)
