"""Issue 16, classes 1, 2, 4, 6, 7: hostile files, conversions that destroy nothing, caches keyed on
content, routing by content, faults that leave no trace.

Property-based (hypothesis) on the .pth, safetensors and LoRA readers: random and mutated files either
load or raise WeightsError (never another exception, never a crash); what loads is exactly bytes of the
file (nothing read outside it) and within a memory bound. Subprocess CLI table: exit 2, one line on
stderr, no "Traceback", no new files.
"""

import collections
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_video import resolve
from mlx_video.io.atomic import TMP_MARK, atomic_path
from mlx_video.io.checkpoint import MANIFEST, DestinationError, is_ours
from mlx_video.io.torch_pickle import byte_budget, load_pth
from mlx_video.io.weights import SAFETENSORS_DTYPES, WeightsError, load_safetensors, save_safetensors
from tests.helpers import ASSETS, ROOT, run_cli

WAN = ASSETS / "tiny-Wan2.2-TI2V-5B"
LTX = ASSETS / "tiny-LTX-2"
FUZZ = settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NP = {
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "U8": np.uint8,
    "I8": np.int8,
    "BF16": np.uint16,
    "BOOL": np.bool_,
}


# ----------------------------------------------------------------------------- hand-made torch zips


class _Global:
    """A pickle global written as ``module.name`` (no such object needs to exist here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):  # pickle wants REDUCE's callable to be callable
        raise AssertionError

    def __reduce__(self):
        return self.name


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Pid:
    def __init__(self, pid):
        self.pid = pid


class _Pickler(pickle._Pickler):
    def save_global(self, obj, name=None):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return self.memoize(obj)
        return super().save_global(obj, name)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Pid) else None


def tensor(key, storage="FloatStorage", numel=4, offset=0, size=(4,), stride=(1,)):
    """The pickled form torch.save gives a tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""
    pid = _Pid(("storage", _Global("torch", storage), key, "cpu", numel))
    return _Reduce(
        _Global("torch._utils", "_rebuild_tensor_v2"),
        (pid, offset, tuple(size), tuple(stride), False, collections.OrderedDict()),
    )


def write_pth(path, obj, storages: dict, compress=zipfile.ZIP_STORED, pkl: bytes | None = None):
    """A torch-style zip: archive/data.pkl (``obj`` pickled, or raw ``pkl``) + archive/data/<key>."""
    import io

    if pkl is None:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
        pkl = buf.getvalue()
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pkl)
        for k, b in storages.items():
            z.writestr(f"archive/data/{k}", b)
    return path


def peak_bytes(fn):
    """(result or exception, peak traced Python + numpy bytes) of ``fn()``."""
    tracemalloc.start()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - returned to the caller to check its type
        out = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, peak


def loads_or_weights_error(fn):
    """``fn()``'s result, or None when it raised WeightsError; any other exception fails the test."""
    try:
        return fn()
    except WeightsError as e:
        assert "\n" not in str(e), "errors are one line"
        return None


# ----------------------------------------------------------------------------- class 2: .pth


@FUZZ
@given(
    numel=st.integers(0, 40),
    offset=st.integers(0, 50),
    size=st.lists(st.integers(0, 7), max_size=3),
    data=st.data(),
    kind=st.sampled_from(["FloatStorage", "HalfStorage", "LongStorage", "BFloat16Storage"]),
    declared=st.sampled_from([0, 0, 0, 0, 1, -1, 10**6]),
)
def test_pth_views_are_checked_against_their_storage(tmp_path, numel, offset, size, data, kind, declared):
    """Any (offset, shape, strides) on any storage, declared with its true element count or not: the
    values torch would give when the count is true and the view lies inside the storage, WeightsError
    otherwise (numpy's as_strided would read past it)."""
    stride = data.draw(st.lists(st.integers(0, 9), min_size=len(size), max_size=len(size)))
    dt = {"FloatStorage": np.float32, "HalfStorage": np.float16, "LongStorage": np.int64, "BFloat16Storage": np.uint16}[
        kind
    ]
    store = np.arange(numel).astype(dt)
    claim = max(0, numel + declared)
    p = write_pth(tmp_path / "v.pth", {"w": tensor("0", kind, claim, offset, size, stride)}, {"0": store.tobytes()})
    inside = claim == numel and (0 in size or (offset + sum((s - 1) * t for s, t in zip(size, stride)) < numel))
    got = loads_or_weights_error(lambda: load_pth(p))
    assert (got is not None) == inside
    if got is not None:
        want = (
            np.lib.stride_tricks.as_strided(store[offset:], shape=size, strides=[t * store.itemsize for t in stride])
            if 0 not in size
            else np.zeros(size, dt)
        )
        arr = got["w"].view(mx.uint16) if kind == "BFloat16Storage" else got["w"]
        np.testing.assert_array_equal(np.array(arr), want)


def _mutations(span: int, most: int) -> dict:
    """``given`` strategies of a file mutation: 1..``most`` (position < ``span``, byte) overwrites, maybe a cut
    at a position < ``span``, and whether the LoRA reader reads it."""
    return dict(
        flips=st.lists(st.tuples(st.integers(0, span), st.integers(0, 255)), min_size=1, max_size=most),
        cut=st.one_of(st.none(), st.integers(0, span)),
        lora=st.booleans(),
    )


@FUZZ
@given(**_mutations(10**6, 12))
def test_mutated_pth_never_crashes_and_stays_bounded(tmp_path, flips, cut, lora):
    """A valid checkpoint with random bytes overwritten (and maybe truncated), read as a checkpoint or
    (``lora``) through the LoRA reader: loads or WeightsError; the tensors built total at most
    byte_budget(file size), and so does the traced memory."""
    from mlx_video.nn.lora import load_lora

    base = tmp_path / "base.pth"
    if not base.exists():
        obj = {"a": tensor("0", numel=6, size=(2, 3), stride=(3, 1)), "b": tensor("1", "LongStorage", 3, size=(3,))}
        write_pth(base, obj, {"0": np.arange(6, dtype=np.float32).tobytes(), "1": np.arange(3).tobytes()})
    data = bytearray(base.read_bytes())
    for pos, val in flips:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    p = tmp_path / "m.pth"
    p.write_bytes(bytes(data))
    got, peak = peak_bytes(lambda: (load_lora if lora else load_pth)(p))
    assert isinstance(got, (dict, WeightsError)), repr(got)
    assert peak < 2 * byte_budget(len(data)) + (4 << 20)
    if isinstance(got, dict):
        assert sum(v.nbytes for v in got.values() if isinstance(v, mx.array)) <= byte_budget(len(data))


def test_pth_declared_sizes_and_zip_bombs_are_refused(tmp_path):
    """The issue's cases: a storage declared 4096x4096 holding a few bytes; a small zip that inflates
    to 64 MiB; a stride-0 view expanding one element to 10^10; a view past its storage."""
    cases = {
        "declared": (
            {"w": tensor("0", numel=4096 * 4096, size=(4096, 4096), stride=(4096, 1))},
            {"0": b"\0" * 16},
            zipfile.ZIP_STORED,
            "declares",
        ),
        "bomb": (
            {"w": tensor("0", "ByteStorage", 64 << 20, size=(64 << 20,))},
            {"0": b"\0" * (64 << 20)},
            zipfile.ZIP_DEFLATED,
            "zip bomb",
        ),
        "expand": (
            {"w": tensor("0", numel=1, size=(10**5, 10**5), stride=(0, 0))},
            {"0": b"\0" * 4},
            zipfile.ZIP_STORED,
            "exceed",
        ),
        "outside": (
            {"w": tensor("0", numel=4, offset=2, size=(4,), stride=(1,))},
            {"0": b"\0" * 16},
            zipfile.ZIP_STORED,
            "reaches element 5 of a 4-element storage",
        ),
        "negative": (
            {"w": tensor("0", numel=4, offset=0, size=(2,), stride=(-1,))},
            {"0": b"\0" * 16},
            zipfile.ZIP_STORED,
            "malformed",
        ),
        "missing": ({"w": tensor("7")}, {"0": b"\0" * 16}, zipfile.ZIP_STORED, "missing from the zip"),
    }
    for name, (obj, stores, comp, msg) in cases.items():
        p = write_pth(tmp_path / f"{name}.pth", obj, stores, comp)
        err, peak = peak_bytes(lambda p=p: load_pth(p))
        assert isinstance(err, WeightsError) and msg in str(err) and str(p) in str(err), (name, err)
        assert peak < 8 << 20, (name, peak)  # never allocated what the header claims


def test_pth_only_the_opcodes_and_globals_tensors_need(tmp_path):
    stores = {"0": b"\0" * 16}
    evil = [
        pickle.dumps({1, 2}, protocol=4),  # EMPTY_SET / ADDITEMS
        b"\x80\x02cbuiltins\neval\nX\x06\x00\x00\x001 + 1q\x00\x85R.",  # a global that is not ours
        _Reduce(_Global("torch", "load"), ("x",)),  # a torch global that is not ours
        b"\x80\x02(cbuiltins\nobject\no.",
    ]  # OBJ
    for i, pkl in enumerate(evil):
        p = write_pth(tmp_path / f"e{i}.pth", pkl, stores, pkl=pkl if isinstance(pkl, bytes) else None)
        with pytest.raises(WeightsError, match="not allowed|refusing"):
            load_pth(p)


# ----------------------------------------------------------------------------- class 2: safetensors


def st_file(path, entries: dict, data: bytes, meta=None, raw_header: bytes | None = None):
    header = dict(entries)
    if meta is not None:
        header["__metadata__"] = meta
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return path


def check_inside(path, got: dict):
    """Every loaded tensor is exactly the bytes its header range names (read independently here)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    for k, v in got.items():
        b, e = header[k]["data_offsets"]
        want = raw[8 + n + b : 8 + n + e]
        v = v.view(mx.uint16) if v.dtype == mx.bfloat16 else v
        assert np.array(v).tobytes() == want, k


@FUZZ
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from(sorted(NP) + ["F99"]),
            st.lists(st.integers(-1, 4), max_size=3),
            st.integers(0, 60),
            st.sampled_from([0, 0, 0, 0, 1, -1, -3]),
        ),
        max_size=4,
    ),
    extra=st.integers(-6, 12),
    meta=st.sampled_from([None, {"a": "b"}, {"a": 1}, []]),
)
def test_safetensors_headers_random(tmp_path, specs, extra, meta):
    """Random headers (mostly self-consistent, some ranges off by a few bytes, overlapping or past the
    end) over random data: a header is accepted only when every range lies in the file, holds exactly
    dtype x shape bytes and overlaps no other; what loads is the file's own bytes."""
    entries = {}
    for i, (d, shape, begin, delta) in enumerate(specs):
        n = int(np.prod(shape)) * SAFETENSORS_DTYPES.get(d, 1) if min(shape, default=0) >= 0 else 4
        entries[f"t{i}"] = {"dtype": d, "shape": shape, "data_offsets": [begin, max(0, begin + n + delta)]}
    data_len = max([e["data_offsets"][1] for e in entries.values()] + [0]) + extra
    p = st_file(tmp_path / "r.safetensors", entries, os.urandom(max(0, data_len)), meta)
    got = loads_or_weights_error(lambda: load_safetensors(p))
    if got is not None:
        check_inside(p, got)
        spans = sorted(
            tuple(e["data_offsets"]) for e in entries.values() if e["data_offsets"][1] > e["data_offsets"][0]
        )
        assert all(b1 >= e0 for (_, e0), (b1, _) in zip(spans, spans[1:])), "overlapping tensors accepted"
        assert max([e for _, e in spans] + [0]) <= max(0, data_len), "a range past the end accepted"
        for k, e in entries.items():
            assert e["dtype"] in SAFETENSORS_DTYPES and min(e["shape"], default=0) >= 0
            assert got[k].nbytes == e["data_offsets"][1] - e["data_offsets"][0]


@FUZZ
@given(**_mutations(10**5, 8))
def test_mutated_safetensors_and_lora_files(tmp_path, flips, cut, lora):
    """A valid file (a LoRA file when ``lora``) with bytes flipped and maybe truncated: the reader
    (load_safetensors, or the LoRA reader nn.lora.load_lora) loads the file's own bytes or raises WeightsError."""
    from mlx_video.nn.lora import load_lora

    base = tmp_path / "base.safetensors"
    if not base.exists():
        save_safetensors(
            base,
            {
                "blocks.0.attn.q.lora_A.weight": mx.arange(8, dtype=mx.float32).reshape(2, 4),
                "blocks.0.attn.q.lora_B.weight": mx.ones((4, 2), dtype=mx.bfloat16),
            },
            metadata={"ss_network_alpha": "2"},
        )
    data = bytearray(base.read_bytes())
    n = int.from_bytes(data[:8], "little")
    for pos, val in flips:
        data[pos % (n + 8 if pos % 3 else len(data))] = val  # mostly in the header
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    p = tmp_path / "m.safetensors"
    p.write_bytes(bytes(data))
    got, peak = peak_bytes(lambda: (load_lora if lora else load_safetensors)(p))
    assert isinstance(got, (dict, WeightsError)), repr(got)
    assert peak < (4 << 20)
    if isinstance(got, dict):
        check_inside(p, got)


def test_safetensors_header_cases(tmp_path):
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    cases = {
        "overlap": ({"a": f32, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, "overlap"),
        "past end": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, "not inside"),
        "shape vs range": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, "needs 12 bytes"),
        "dtype": ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, 8, "unknown dtype"),
        "negative": ({"a": {"dtype": "U8", "shape": [-8], "data_offsets": [0, 8]}}, 8, "non-negative"),
        "extra field": ({"a": dict(f32, extra=1)}, 8, "exactly"),
    }
    for name, (entries, n, msg) in cases.items():
        p = st_file(tmp_path / f"{name}.safetensors", entries, b"\0" * n)
        with pytest.raises(WeightsError, match=msg):
            load_safetensors(p)
    for raw, msg in [
        (b'{"a": 1, "a": 2}', "twice"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not a safetensors"),
    ]:
        with pytest.raises(WeightsError, match=msg):
            load_safetensors(st_file(tmp_path / "raw.safetensors", {}, b"", raw_header=raw))
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((1 << 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match="does not fit"):
        load_safetensors(huge)


# ----------------------------------------------------------------------------- class 2: tokenizers


def test_corrupt_tokenizer_names_its_path_and_is_never_cached(tmp_path, monkeypatch):
    from mlx_video.io.tokenizers import TokenizerError
    from mlx_video.wan.t5 import load_tokenizer

    src = tmp_path / "wan"
    shutil.copytree(WAN, src)
    tok = src / "google" / "umt5-xxl" / "tokenizer.json"
    tok.write_text(tok.read_text()[:500])
    with pytest.raises(TokenizerError, match=str(tok).replace(".", r"\.")):
        load_tokenizer(tok.parent)
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        resolve.resolve(str(src), "wan", dtype="float32")
    assert not any((tmp_path / "cache").rglob("config.json"))  # nothing cached
    assert not [p for p in tmp_path.rglob(f"*{TMP_MARK}*")]


# ----------------------------------------------------------------------------- class 1: conversion


def tree(p: Path) -> dict:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def test_existing_destination_survives_every_refused_conversion(tmp_path):
    """DST = SRC, inside SRC, above SRC (with and without --overwrite), a user's folder or file without
    --overwrite, and a conversion that fails half way: the user's files and SRC are byte-identical after."""
    from typer.testing import CliRunner

    from mlx_video.cli import app

    def convert(*args):
        return CliRunner().invoke(app, ["convert", *map(str, args), "--dtype", "float32"])

    root = tmp_path / "models"
    src = root / "wan"
    shutil.copytree(WAN, src)
    (root / "notes.txt").write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    before = tree(tmp_path)
    refused = [
        ((src, src), "source itself"),
        ((src, src, "--overwrite"), "source itself"),
        ((src, src / "out"), "inside the source"),
        ((src, src / "out", "--overwrite"), "inside the source"),
        ((src, root), "contains the source"),
        ((src, root, "--overwrite"), "contains the source"),
        ((src, tmp_path, "--overwrite"), "contains the source"),
        ((src, mine), "pass --overwrite"),
        ((src, a_file), "pass --overwrite"),
    ]
    ltx = tmp_path / "ltx"
    shutil.copytree(LTX, ltx)
    before = tree(tmp_path)
    refused += [
        ((ltx / "ltx-2-tiny-dev.safetensors", ltx), "contains the source"),
        ((ltx, ltx / "sub", "--overwrite"), "inside the source"),
        ((ltx, ltx / "gemma", "--overwrite"), "source itself"),
        ((ltx, mine), "pass --overwrite"),
    ]
    for args, msg in refused:
        r = convert(*args)
        assert r.exit_code == 2 and msg in r.output and r.output.count("\n") == 1, (args, r.output)
        assert tree(tmp_path) == before, args
    # ours is replaced without asking; a failing conversion leaves the previous one as it was
    out = tmp_path / "out"
    assert convert(src, out).exit_code == 0 and is_ours(out)
    assert convert(src, out).exit_code == 0
    good = tree(out)
    (src / "Wan2.2_VAE.pth").write_bytes((src / "Wan2.2_VAE.pth").read_bytes()[:3000])
    r = convert(src, out)
    assert r.exit_code == 2 and "Wan2.2_VAE.pth" in r.output
    assert tree(out) == good
    # --overwrite replaces a user's folder, as asked
    shutil.copy(WAN / "Wan2.2_VAE.pth", src / "Wan2.2_VAE.pth")
    r = convert(src, mine, "--overwrite")
    assert r.exit_code == 0 and is_ours(mine) and not (mine / "thesis.tex").exists()
    assert not [p for p in tmp_path.rglob(f"*{TMP_MARK}*")]
    with pytest.raises(DestinationError):
        resolve.convert(resolve.locate(str(src)), src / "x")


# ----------------------------------------------------------------------------- class 6: routing


def test_family_comes_from_contents_not_the_path(tmp_path):
    from mlx_video.cli import family_of

    wan = tmp_path / "ltx-2-models" / "LTX"
    shutil.copytree(WAN, wan)
    ltx = tmp_path / "wan-stuff"
    shutil.copytree(LTX, ltx)
    assert family_of(["--ckpt_dir", str(wan)]) == "wan" and resolve.identify(wan) == ("wan", "official")
    assert family_of(["--model", str(ltx)]) == "ltx2" and resolve.identify(ltx) == ("ltx2", "folder")
    assert resolve.identify(ltx / "ltx-2-tiny-dev.safetensors") == ("ltx2", "single-file")
    assert family_of([f"--model={ltx / 'ltx-2-tiny-dev.safetensors'}"]) == "ltx2"
    assert family_of(["--model", "Lightricks/LTX-2"]) == "ltx2" and family_of(["--model", "Wan-AI/x"]) == "wan"
    with pytest.raises(WeightsError, match="is a Wan checkpoint"):
        resolve.locate(str(wan), "ltx2")
    # corrupt or unknown configs: one line naming the file (and the key)
    (wan / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"config\.json: corrupt config\.json"):
        resolve.identify(wan)
    (wan / "config.json").write_text(json.dumps({"format": "mlx_video/sd/9"}))
    with pytest.raises(WeightsError, match="key 'format'"):
        resolve.identify(wan)
    cfg = json.loads((WAN / "config.json").read_text())
    (wan / "config.json").write_text(json.dumps(dict(cfg, model_type="v2v")))
    with pytest.raises(WeightsError, match=r"config\.json: Wan DiT config: model_type must be one of"):
        resolve.convert(resolve.locate(str(wan)), tmp_path / "o")


# ----------------------------------------------------------------------------- classes 1 + 7: cache


def test_cache_is_keyed_on_content_dtype_and_checked_when_used(tmp_path, monkeypatch):
    from mlx_video.wan import checkpoint as W

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "wan"
    shutil.copytree(WAN, src)
    calls = []
    real = W.convert_wan
    monkeypatch.setattr(W, "convert_wan", lambda *a, **k: (calls.append(k["dtype"]), real(*a, **k))[1])
    bf16 = resolve.resolve(str(src), "wan")
    assert resolve.resolve(str(src), "wan") == bf16 and calls == ["bfloat16"]  # reused
    f32 = resolve.resolve(str(src), "wan", dtype="float32")  # class 7
    assert f32 != bf16 and calls == ["bfloat16", "float32"]
    assert json.loads((f32 / "config.json").read_text())["dtype"] == "float32"
    assert mx.load(str(f32 / "dit.safetensors"))["blocks.0.self_attn.q.weight"].dtype == mx.float32
    # new weights of the same shapes written in place, modification time put back: converted again
    dit = src / "diffusion_pytorch_model.safetensors"
    st = dit.stat()
    raw = bytearray(dit.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start:] = bytes(b ^ 1 for b in raw[start:])  # other values, same header, same size
    dit.write_bytes(bytes(raw))
    os.utime(dit, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dit.stat().st_size == st.st_size
    f32b = resolve.resolve(str(src), "wan", dtype="float32")
    assert f32b != f32 and calls[-1] == "float32" and len(calls) == 3
    # a cached folder that lost a file is converted again, not used
    (f32b / "vae.safetensors").unlink()
    assert resolve.resolve(str(src), "wan", dtype="float32") == f32b and len(calls) == 4
    assert (f32b / "vae.safetensors").is_file()


def test_generate_float32_converts_in_float32(tmp_path, monkeypatch):
    """The CLI path: --dtype reaches the resolver (the run stops right after the model is resolved)."""
    from typer.testing import CliRunner

    import mlx_video.resolve as R
    from mlx_video.cli import app

    seen = []

    def fake(model, family=None, dtype="bfloat16", **k):
        seen.append((family, dtype))
        raise WeightsError("stop here")

    monkeypatch.setattr(R, "resolve", fake)
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "--ckpt_dir",
            str(WAN),
            "--dtype",
            "float32",
            "--prompt",
            "x",
            "--save_file",
            str(tmp_path / "x.mp4"),
        ],
    )
    assert r.exit_code == 2 and "stop here" in r.output and seen == [("wan", "float32")]


# ----------------------------------------------------------------------------- class 4: faults


def test_outputs_get_the_umask_and_mp4_is_faststart(tmp_path):
    from mlx_video.io.video import write_image, write_video

    old = os.umask(0o027)
    try:
        v = write_video(tmp_path / "v.mp4", np.zeros((3, 32, 32, 3), np.uint8), 8)
        i = write_image(tmp_path / "i.png", np.zeros((8, 8, 3), np.uint8))
        save_safetensors(tmp_path / "w.safetensors", {"a": mx.ones(2)})
        resolve.convert(resolve.locate(str(WAN)), tmp_path / "conv", dtype="float32")
    finally:
        os.umask(old)
    for f in (v, i, tmp_path / "w.safetensors", tmp_path / "conv" / "dit.safetensors", tmp_path / "conv" / MANIFEST):
        assert f.stat().st_mode & 0o777 == 0o640, f
    for d in (tmp_path / "conv", tmp_path / "conv" / "tokenizer"):
        assert d.stat().st_mode & 0o777 == 0o750, d
    raw = v.read_bytes()
    assert 0 < raw.find(b"moov") < raw.find(b"mdat")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "k.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv", "i.png", "v.mp4", "w.safetensors"]


SLOW = """
import sys, time
import mlx_video.io.checkpoint as c, mlx_video.io.video as v
real = c.save_module
def slow(*a):
    real(*a)
    print("written", flush=True)
    time.sleep(60)
c.save_module = slow
import av
real_frame = av.VideoFrame.from_ndarray
def slow_frame(*a, **k):
    print("written", flush=True)
    time.sleep(60)
av.VideoFrame.from_ndarray = slow_frame
from mlx_video.cli import main
if sys.argv[1] == "video":
    import numpy as np
    from mlx_video.io.atomic import terminate_as_exception
    terminate_as_exception()
    try:
        v.write_video(sys.argv[2], np.zeros((2, 16, 16, 3), np.uint8), 8)
    except KeyboardInterrupt:
        sys.exit(143)
else:
    main(sys.argv[1:])
"""


@pytest.mark.parametrize("what", ["convert", "video"])
def test_sigterm_mid_write_leaves_nothing(tmp_path, what):
    out = tmp_path / "out"
    out.mkdir()
    args = (
        ["convert", str(WAN), str(out / "conv"), "--dtype", "float32"]
        if what == "convert"
        else ["video", str(out / "v.mp4")]
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout.readline().strip() == "written"  # a temporary file or folder exists now
    assert any(TMP_MARK in p.name for p in out.rglob("*"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- the CLI, in a subprocess


def _cases(tmp: Path) -> list[tuple[list[str], str]]:
    """argv -> a fragment of the one-line error."""
    good = tmp / "good"
    shutil.copytree(WAN, good)
    bad_cfg = tmp / "bad_cfg"
    shutil.copytree(WAN, bad_cfg)
    (bad_cfg / "config.json").write_text('{"dim": ')
    bad_pth = tmp / "bad_pth"
    shutil.copytree(WAN, bad_pth)
    write_pth(
        bad_pth / "Wan2.2_VAE.pth",
        {"encoder.conv1.weight": tensor("0", numel=4, size=(4, 4), stride=(4, 1))},
        {"0": b"\0" * 16},
    )
    bad_st = tmp / "bad_st"
    shutil.copytree(WAN, bad_st)
    dit = bad_st / "diffusion_pytorch_model.safetensors"
    dit.write_bytes(dit.read_bytes()[:-100])
    bad_index = tmp / "bad_index"
    shutil.copytree(WAN, bad_index)
    (bad_index / "diffusion_pytorch_model.safetensors.index.json").write_text("{")
    user = tmp / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    out = str(tmp / "new" / "o.mp4")  # a folder that does not exist yet: still absent after each refusal
    gen = ["generate", "--prompt", "x", "--save_file", out, "--ckpt_dir"]
    return [
        (["convert", str(tmp / "nothing"), str(tmp / "d")], "not found"),
        (["convert", str(good), str(good)], "source itself"),
        (["convert", str(good), str(good / "out")], "inside the source"),
        (["convert", str(good), str(tmp)], "contains the source"),
        (["convert", str(WAN), str(user)], "pass --overwrite"),
        (["convert", str(bad_cfg), str(tmp / "d")], f"{bad_cfg / 'config.json'}: corrupt config.json"),
        (["convert", str(bad_pth), str(tmp / "d")], "reaches element 15 of a 4-element storage"),
        (["convert", str(bad_st), str(tmp / "d")], "not inside the"),
        (["convert", str(bad_index), str(tmp / "d")], "corrupt safetensors index"),
        (["info", str(bad_cfg)], "corrupt config.json"),
        (gen + [str(bad_cfg)], "corrupt config.json"),
        (gen + [str(bad_st)], str(dit)),
        (
            ["generate", "--prompt", "x", "--pipeline", "distilled", "--output-path", out, "--model", str(WAN)],
            "is a Wan checkpoint",
        ),
    ]


def test_cli_bad_files_one_line_exit_2_no_traceback_no_files(tmp_path):
    cases = _cases(tmp_path)
    for argv, fragment in cases:
        before = sorted(tmp_path.rglob("*"))
        r = run_cli(argv, tmp_path, MLX_VIDEO_CACHE=str(tmp_path / "cache"))
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # after any progress line
        assert r.returncode == 2 and len(errors) == 1 and r.stderr.strip().endswith(errors[0]), (argv, r.stderr)
        assert fragment in errors[0] and "Traceback" not in r.stderr, (argv, r.stderr)
        assert sorted(tmp_path.rglob("*")) == before, argv  # no output, no cache entry, no temporary file


def test_damaged_converted_config_names_file_and_key(tmp_path):
    from mlx_video.ltx2.loading import load_transformer, read_config

    out = resolve.convert(resolve.locate(str(LTX)), tmp_path / "ltx", dtype="float32")
    cfg = json.loads((out / "config.json").read_text())
    del cfg["transformer"]
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match=r"config\.json: lacks key 'transformer'"):
        load_transformer(out, read_config(out))
    # the Lightricks file's embedded config: the error names the file, the section and the key
    src = tmp_path / "src"
    shutil.copytree(LTX, src)
    f = src / "ltx-2-tiny-dev.safetensors"
    w, meta = mx.load(str(f), return_metadata=True)
    c = json.loads(meta["config"])
    c["transformer"]["rope_type"] = "bogus"
    mx.save_safetensors(str(f), w, metadata=dict(meta, config=json.dumps(c)))
    with pytest.raises(
        WeightsError,
        match=r"ltx-2-tiny-dev\.safetensors \(embedded 'config' metadata\): "
        r"config: rope_type",
    ):
        resolve.convert(resolve.locate(str(src)), tmp_path / "o")


def test_ltx2_cache_follows_dtype(tmp_path, monkeypatch):
    from mlx_video.ltx2.loading import read_config, resolve_ltx2_model

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    bf16, f32 = resolve_ltx2_model(str(LTX)), resolve_ltx2_model(str(LTX), dtype="float32")
    assert bf16 != f32 and read_config(f32)["dtype"] == "float32" and read_config(bf16)["dtype"] == "bfloat16"
    assert resolve_ltx2_model(str(LTX / "ltx-2-tiny-dev.safetensors"), dtype="float32") == f32
