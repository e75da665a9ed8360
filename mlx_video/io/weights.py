"""Weights I/O: safetensors read/write (atomic), strict loading into MLX modules.

Strict means every key of the checkpoint is used, every parameter of the module is
filled and every shape matches; anything else raises :class:`WeightsError` naming the keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mlx_video.io.atomic import atomic_path, write_bytes_atomic


class WeightsError(ValueError):
    """A checkpoint does not fit the model: missing, unused or mis-shaped keys, or a corrupt file."""


def _short(keys: Iterable[str], n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# safetensors dtype -> bytes per element (the dtypes MLX reads; F8_* arrive as uint8)
SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"key {k!r} appears twice")
        d[k] = v
    return d


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """Read and check a safetensors header without reading any tensor: ``({name: {"dtype", "shape",
    "data_offsets"}}, metadata)``.

    Checked (format: https://github.com/huggingface/safetensors, "Format"): the 8-byte length fits the
    file and 100 MiB; the header is one JSON object without duplicate keys; ``__metadata__`` maps
    strings to strings; every tensor has a known dtype, a shape of non-negative integers and byte range
    ``[begin, end)`` inside the data section whose length is exactly shape x dtype size; no two ranges
    overlap. So a file that passes cannot make a reader touch bytes outside it, nor allocate more than
    its own size. Raises WeightsError naming the file and the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if not 2 <= n <= min(size - 8, MAX_HEADER_BYTES):
                raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
            header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror or e}") from e
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({e})") from e
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise WeightsError(f"{path}: safetensors __metadata__ must map strings to strings")
    data = size - 8 - n
    ranges = []
    for name, t in header.items():

        def bad(why, name=name):
            return WeightsError(f"{path}: tensor {name!r}: {why} (corrupt or not a safetensors file)")

        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise bad("entry must have exactly dtype, shape and data_offsets")
        dt, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
        if dt not in SAFETENSORS_DTYPES:
            raise bad(f"unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"shape {shape!r} is not a list of non-negative integers")
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(type(o) is int for o in offs)
            and 0 <= offs[0] <= offs[1] <= data
        ):
            raise bad(f"byte range {offs!r} is not inside the {data}-byte data section")
        numel = 1
        for d in shape:
            numel *= d
        if offs[1] - offs[0] != numel * SAFETENSORS_DTYPES[dt]:
            raise bad(f"{dt} {shape} needs {numel * SAFETENSORS_DTYPES[dt]} bytes, its range holds {offs[1] - offs[0]}")
        if offs[1] > offs[0]:
            ranges.append((offs[0], offs[1], name))
    ranges.sort()
    for (_, e0, n0), (b1, _, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise WeightsError(f"{path}: tensors {n0!r} and {n1!r} overlap (corrupt safetensors file)")
    return header, meta


def load_safetensors(path: str | os.PathLike, with_metadata: bool = False):
    """Read a safetensors file into ``{name: mx.array}`` (dtypes as stored; F8_* as uint8).

    The header is checked first (:func:`read_safetensors_header`). Raises WeightsError when the file is
    missing, truncated, corrupt or not safetensors. With ``with_metadata`` returns ``(weights, metadata)``.
    """
    path = Path(path)
    _, meta = read_safetensors_header(path)
    try:
        weights = mx.load(str(path))
    except Exception as e:  # mlx raises RuntimeError/ValueError on what the check above cannot see
        raise WeightsError(f"cannot read {path}: {e} (truncated or not a safetensors file?)") from e
    return (weights, meta) if with_metadata else weights


def save_safetensors(
    path: str | os.PathLike, weights: Mapping[str, mx.array], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``weights`` to ``path`` atomically (temporary file beside it, then a rename; the umask's
    permissions; no temporary file left on an error, Ctrl-C or SIGTERM)."""
    with atomic_path(path) as tmp:
        mx.save_safetensors(str(tmp), dict(weights), metadata=dict(metadata or {}))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` through a temporary file and a rename."""
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; WeightsError with the path for a missing, unreadable or corrupt file
    (one line, never a bare JSONDecodeError)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{what} not found: {path}") from None
    except OSError as e:
        raise WeightsError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise WeightsError(f"{path}: corrupt {what} ({e})") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: corrupt {what} (expected a JSON object, found {type(obj).__name__})")
    return obj


@contextmanager
def config_errors(path, what: str = "config"):
    """Turn a bad config (missing key, wrong type or value) met while building model args into one
    WeightsError naming the file and the key: ``with config_errors(cfg_path): Args.from_config(cfg)``."""
    try:
        yield
    except WeightsError:
        raise
    except KeyError as e:
        raise WeightsError(f"{path}: {what} lacks key {e.args[0]!r}") from e
    except (TypeError, ValueError, AttributeError) as e:
        raise WeightsError(f"{path}: {what}: {e}") from e


def metadata_json(meta: Mapping[str, str], key: str, path) -> dict:
    """The JSON object stored under ``key`` of a safetensors file's metadata (``config`` in Lightricks
    files); WeightsError naming the file and the key when it is not valid JSON."""
    try:
        obj = json.loads(meta[key])
    except (ValueError, RecursionError) as e:
        raise WeightsError(f"{path}: metadata {key!r} is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: metadata {key!r} is not a JSON object")
    return obj


def check_keys(expected: Mapping[str, tuple], got: Mapping[str, mx.array], what: str) -> None:
    """Raise WeightsError unless ``got`` has exactly the keys of ``expected`` with those shapes."""
    missing = set(expected) - set(got)
    unused = set(got) - set(expected)
    shapes = [
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(got))
        if tuple(got[k].shape) != tuple(expected[k])
    ]
    errs = []
    if missing:
        errs.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unused:
        errs.append(f"unused keys ({len(unused)}): {_short(unused)}")
    if shapes:
        errs.append(f"mis-shaped keys ({len(shapes)}): " + "; ".join(shapes[:8]))
    if errs:
        raise WeightsError(f"{what}: " + " | ".join(errs))


def load_strict(
    model: nn.Module, weights: Mapping[str, mx.array], what: str = "model", dtype: mx.Dtype | None = None
) -> nn.Module:
    """Load ``weights`` (flat MLX names) into ``model``; every key used, every parameter set.

    ``dtype``: cast floating weights to this dtype (quantized integer weights are kept).
    Raises WeightsError naming missing, unused and mis-shaped keys.
    """
    expected = {k: v.shape for k, v in tree_flatten(model.parameters())}
    check_keys(expected, weights, what)
    if dtype is not None:
        weights = {k: (v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v) for k, v in weights.items()}
    model.update(tree_unflatten(list(weights.items())))
    return model


class ConfigDict(dict):
    """A config read from ``path``: a missing key is a WeightsError naming the file and the key (one line
    in the CLI), not a bare KeyError traceback."""

    def __init__(self, data, path):
        super().__init__(data)
        self.path = path

    def __missing__(self, key):
        raise WeightsError(
            f"{self.path}: lacks key {key!r}; the folder is damaged or from another version (convert it again)"
        )


def _config_dict(obj, path):
    if isinstance(obj, dict):
        return ConfigDict({k: _config_dict(v, path) for k, v in obj.items()}, path)
    if isinstance(obj, list):
        return [_config_dict(v, path) for v in obj]
    return obj


def read_folder_config(model_dir: str | os.PathLike, fmt: str, hint: str) -> dict:
    """A converted folder's ``config.json`` (a :class:`ConfigDict`: a missing key raises WeightsError with
    the path); WeightsError unless its ``format`` is ``fmt``, or when it is missing or corrupt.
    ``hint`` ends the message when there is no config (how to convert)."""
    p = Path(model_dir) / "config.json"
    if not p.is_file():
        raise WeightsError(f"{model_dir} is not a converted mlx_video folder (no config.json); {hint}")
    cfg = _config_dict(read_json(p, "config.json"), p)
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
    nn.quantize(
        model,
        group_size=gs,
        bits=q["bits"],
        class_predicate=lambda path, m: (
            isinstance(m, nn.Linear) and path.startswith(scope) and m.weight.shape[1] % gs == 0
        ),
    )
