"""Shared plumbing of the benchmarks: MLX against the official PyTorch code, one process, one machine.

Each benchmark script supplies two builders, one per side. A builder allocates its model with random
weights at the requested widths on its own device (torch: CUDA if available, else CPU; MLX: its
default device) and returns a ``Side``: a ``run()`` closure doing one timed unit of work, plus
bookkeeping. :func:`bench` runs the reference side first and frees it, then the MLX side, so that
only one model is resident at a time (a full LTX-2 19B transformer is ~35 GiB in bf16). Each side:
build, ``warmup`` untimed runs, ``repeat`` timed runs (``torch.cuda.synchronize`` / ``mx.eval``),
median time, peak memory.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` and ``mx.get_peak_memory`` (reset before the
side's model is built, so weights are included). On the CPU both sides are measured the same way,
as the growth of the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs) over the side's build and runs; ``mx.get_peak_memory`` is recorded as well.

Weights on the two sides are independent random draws (timing does not depend on values), except
with ``--check``: the reference's weights then go through our ``sanitize`` + ``load_strict`` into
the MLX model and the two outputs are compared (small sizes only: both models are then resident).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch
from mlx.utils import tree_flatten, tree_unflatten

ROOT = Path(__file__).resolve().parents[1]

GiB = float(2**30)
# the official Wan code wraps float32 regions in autocast('cuda'); on a CPU torch warns once per call
warnings.filterwarnings("ignore", message=".*CUDA is not available.*Disabling autocast.*")
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
MLX_DTYPES = {"bf16": mx.bfloat16, "fp32": mx.float32}


# ----------------------------------------------------------------------------- arguments


def parser(description: str, sizes: Sequence[str], layers: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes (``--layers`` only for the transformers)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--size",
        choices=list(sizes),
        default="tiny",
        help="tiny: smoke run, narrow widths; mid: real widths, CPU-sized input; full: the GPU run",
    )
    if layers:
        p.add_argument(
            "--layers",
            type=int,
            default=None,
            help="number of transformer blocks (default: the preset's); times for the full depth "
            "are then extrapolated linearly and labelled as such",
        )
    p.add_argument(
        "--dtype",
        choices=sorted(TORCH_DTYPES),
        default=None,
        help="weights/compute dtype (default: bf16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per side")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per side (median reported)")
    p.add_argument("--skip-reference", action="store_true", help="run only the MLX side")
    p.add_argument("--skip-mlx", action="store_true", help="run only the official PyTorch side")
    p.add_argument(
        "--check",
        action="store_true",
        help="load the reference's weights into the MLX model (our sanitize + load_strict) and "
        "report the outputs' relative error; both models stay resident (small sizes only)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def torch_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_dtype(args) -> str:
    return args.dtype or ("bf16" if torch.cuda.is_available() else "fp32")


# ----------------------------------------------------------------------------- random weights


def _kind(name: str, ndim: int) -> str:
    low = name.lower()
    if "gamma" in low or ("norm" in low and ndim <= 1) or "std" in low:
        return "one"  # norm weights, VAE latent std statistics
    if "mean" in low:
        return "zero"  # VAE latent mean statistics
    if "modulation" in low or "scale_shift" in low:
        return "table"
    return "fan_in" if ndim >= 2 else "bias"


def _scale(kind: str, shape) -> float:
    if kind == "table":
        return 0.1
    if kind == "bias":
        return 0.02
    return 1.0 / math.sqrt(max(1, math.prod(shape[1:])))


def torch_random_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every float parameter and buffer in place on its device (fast; values keep activations
    O(1): weights N(0, 1/fan_in), norms 1, tables N(0, 0.1), biases N(0, 0.02))."""
    dev = next(iter(module.parameters())).device
    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.dtype.is_floating_point:
                continue
            kind = _kind(name, t.dim())
            if kind in ("one", "zero"):
                t.fill_(1.0 if kind == "one" else 0.0)
            else:
                t.normal_(0.0, _scale(kind, t.shape), generator=g)
    return module


def mlx_random_(model, dtype: mx.Dtype, seed: int):
    """Replace every parameter of an MLX module by a random draw in ``dtype`` (same scheme as
    :func:`torch_random_`), evaluated tensor by tensor so no float32 copy of the model ever exists."""
    new = []
    for name, p in tree_flatten(model.parameters()):
        kind = _kind(name, p.ndim)
        if kind in ("one", "zero"):
            v = (mx.ones if kind == "one" else mx.zeros)(p.shape, dtype=dtype)
        else:
            v = (random_normal(p.shape, seed) * _scale(kind, p.shape)).astype(dtype)
            seed += 1
        mx.eval(v)
        new.append((name, v))
    model.update(tree_unflatten(new))
    return model


def random_normal(shape, seed: int) -> mx.array:
    """N(0, 1) float32 draw: MLX's generator on a GPU; NumPy's on the CPU, where MLX's generator
    runs at ~3 M numbers/s (two minutes for the 400 M parameters of a 2-block 5B DiT)."""
    if mx.default_device() == mx.cpu:
        return mx.array(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
    return mx.random.normal(shape, key=mx.random.key(seed))


def torch_build(
    ctor: Callable[[], torch.nn.Module], device: torch.device, dtype: torch.dtype, seed: int
) -> torch.nn.Module:
    """Construct a reference module on the meta device in ``dtype`` (no host copy, no float32
    detour), materialise it on ``device`` and fill it with :func:`torch_random_`. Tensors the
    constructor keeps as plain attributes (not parameters/buffers) are the caller's to fix."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            m = ctor()
    finally:
        torch.set_default_dtype(prev)
    return torch_random_(m.to_empty(device=device), seed).eval()


def torch_nbytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def mlx_nbytes(module) -> int:
    return sum(v.nbytes for _, v in tree_flatten(module.parameters()))


def state_to_mlx(module: torch.nn.Module, dtype: mx.Dtype | None = None) -> dict:
    """The reference's state dict as MLX arrays (for ``--check``), keys unchanged."""
    out = {}
    for k, v in module.state_dict().items():
        a = mx.array(v.detach().float().cpu().numpy())
        out[k] = a.astype(dtype) if dtype is not None and mx.issubdtype(a.dtype, mx.floating) else a
    return out


# ----------------------------------------------------------------------------- memory


def _hwm_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def release_memory() -> None:
    """Return freed memory of both frameworks (and of glibc's heap) before the next side runs."""
    gc.collect()
    mx.clear_cache()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class RssWatermark:
    """Growth of the resident-set high-water mark (bytes) between ``start()`` and ``peak()``."""

    def start(self) -> None:
        self.ok = _hwm_reset()
        self.base = _status_kib("VmRSS") * 1024

    def peak(self) -> float | None:
        return (_status_kib("VmHWM") * 1024 - self.base) if self.ok else None


# ----------------------------------------------------------------------------- one side


@dataclass
class Side:
    """What a builder returns: ``run()`` does one unit of work and returns its outputs (torch
    tensors or MLX arrays, nested in tuples/lists). ``to_numpy(out)`` maps them to a comparable
    numpy array (channels-last, for ``--check``). ``block_bytes``: weight bytes of one block (for
    the memory estimate at full depth). ``info``: anything worth recording (dtypes, fused paths)."""

    run: Callable[[], object]
    to_numpy: Callable[[object], np.ndarray]
    param_bytes: int
    block_bytes: int = 0
    info: dict = field(default_factory=dict)
    model: object = None


@dataclass
class Result:
    name: str
    times: list
    build_s: float
    peak_bytes: float | None
    peak_how: str
    param_bytes: int
    block_bytes: int
    info: dict
    output: np.ndarray | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def _leaves(out):
    if isinstance(out, (tuple, list)):
        return [y for x in out for y in _leaves(x)]
    return [] if out is None else [out]


def measure(
    name: str, build: Callable[[], Side], framework: str, warmup: int, repeat: int, keep_output: bool = False
) -> tuple[Result, Side]:
    """Build one side, warm it up, time it; peak memory includes the weights."""
    release_memory()
    cuda = torch.cuda.is_available()
    if framework == "torch":
        sync = (lambda out: torch.cuda.synchronize()) if cuda else (lambda out: None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
    else:
        sync = lambda out: mx.eval(*_leaves(out))  # noqa: E731
        mx.reset_peak_memory()
    rss = RssWatermark()
    rss.start()
    t0 = time.perf_counter()
    side = build()
    if framework == "torch" and cuda:
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    times, out = [], None
    with torch.inference_mode():
        for i in range(warmup + repeat):
            t = time.perf_counter()
            out = side.run()
            sync(out)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    info = dict(side.info)
    if framework == "torch" and cuda:
        peak, how = float(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    elif framework == "mlx" and cuda:  # MLX on its CUDA backend
        peak, how = float(mx.get_peak_memory()), "mx.get_peak_memory"
    else:
        peak, how = rss.peak(), "RSS high-water growth"
        if framework == "mlx":
            info["mx_peak_gib"] = round(mx.get_peak_memory() / GiB, 3)
    output = side.to_numpy(out) if keep_output else None
    del out
    return Result(name, times, build_s, peak, how, side.param_bytes, side.block_bytes, info, output), side


# ----------------------------------------------------------------------------- the run


def _fmt_gib(b):
    return "n/a" if b is None else f"{b / GiB:.2f}"


def bench(
    bench_name: str,
    args,
    config: dict,
    build_reference: Callable[[], Side],
    build_mlx: Callable[[dict | None], Side],
    export_weights: Callable[[Side], dict] | None = None,
    layers: tuple[int, int] | None = None,
) -> dict:
    """Run both sides, print a short table last, append a JSON line to ``$OUT/bench.jsonl``.

    config: what was run (model, size, input shapes, tokens, dtype, ...), printed and recorded.
    build_mlx(weights): ``weights`` is None (random) or, with ``--check``, ``export_weights(ref_side)``
    (the reference's state dict as MLX arrays, before sanitize). layers: (run, full) block counts for
    the labelled extrapolation. Returns the JSON record.
    """
    dtype = resolve_dtype(args)
    results: dict[str, Result] = {}
    check = bool(args.check) and not args.skip_reference and not args.skip_mlx
    weights = None
    print(f"[{bench_name}] " + " ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    if not args.skip_reference:
        res, side = measure("official", build_reference, "torch", args.warmup, args.repeat, keep_output=check)
        if check:
            weights = export_weights(side)
        results["official"] = res
        print(f"  official: median {res.median:.4f} s", flush=True)
        del side
    if not args.skip_mlx:
        res, side = measure("mlx", lambda: build_mlx(weights), "mlx", args.warmup, args.repeat, keep_output=check)
        results["mlx"] = res
        print(f"  mlx:      median {res.median:.4f} s", flush=True)
        del side
    weights = None
    release_memory()

    record = dict(bench=bench_name, **config, **torch_run_info(args, dtype))
    for name, r in results.items():
        record[name] = dict(
            median_s=r.median,
            times_s=r.times,
            build_s=r.build_s,
            peak_gib=None if r.peak_bytes is None else r.peak_bytes / GiB,
            peak_how=r.peak_how,
            param_gib=r.param_bytes / GiB,
            **r.info,
        )
    if len(results) == 2:
        record["ratio_official_over_mlx"] = results["official"].median / results["mlx"].median
    if check:
        a, b = results["mlx"].output, results["official"].output
        record["check_rel_err"] = float(
            np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30)
        )
    if layers is not None and layers[0] != layers[1]:
        n, full = layers
        for name, r in results.items():
            record[name]["extrapolated_full_depth_s"] = r.median * full / n
            if r.peak_bytes is not None and r.block_bytes:
                record[name]["extrapolated_full_depth_peak_gib"] = (r.peak_bytes + (full - n) * r.block_bytes) / GiB

    append_jsonl(record)
    _table(bench_name, config, dtype, results, record, layers)
    return record


def _table(bench_name, config, dtype, results, record, layers) -> None:
    print()
    print(
        f"== {bench_name}: "
        + ", ".join(f"{k} {v}" for k, v in config.items())
        + f", dtype {dtype}, torch on {torch_device()}, MLX on {mx.default_device()}"
    )
    print(f"{'side':<9} {'median s':>10} {'min s':>10} {'peak GiB':>9} {'weights GiB':>12} {'build s':>8}")
    for name, r in results.items():
        print(
            f"{name:<9} {r.median:>10.4f} {min(r.times):>10.4f} {_fmt_gib(r.peak_bytes):>9} "
            f"{r.param_bytes / GiB:>12.2f} {r.build_s:>8.1f}"
        )
    hows = sorted({r.peak_how for r in results.values()})
    print(f"peak memory: {'; '.join(hows)}")
    if "ratio_official_over_mlx" in record:
        print(f"ratio official/MLX: {record['ratio_official_over_mlx']:.2f}x  (>1: MLX faster)")
    if "check_rel_err" in record:
        print(f"check (same weights through sanitize + load_strict): rel_err {record['check_rel_err']:.2e}")
    if layers is not None and layers[0] != layers[1]:
        n, full = layers
        parts = []
        for name, r in results.items():
            e = record[name]
            mem = e.get("extrapolated_full_depth_peak_gib")
            parts.append(
                f"{name} {r.median / n * 1e3:.1f} ms/block -> ~{e['extrapolated_full_depth_s']:.3f} s"
                + (f", ~{mem:.1f} GiB" if mem is not None else "")
            )
        print(
            f"EXTRAPOLATED to {full} blocks from {n} (time x {full}/{n}; peak + weights of the missing "
            f"blocks; an estimate, not a measurement): " + "; ".join(parts)
        )
    for name, r in results.items():
        if r.info:
            print(f"{name} notes: " + ", ".join(f"{k}={v}" for k, v in r.info.items()))


def video_tokens(frames: int, height: int, width: int, t_stride: int, s_stride: int, patch: int = 1) -> tuple:
    """Latent grid (T, h, w) of a pixel video and the token count after a (1, patch, patch) patchify."""
    T = 1 + (frames - 1) // t_stride
    h, w = height // s_stride, width // s_stride
    return (T, h, w), T * (h // patch) * (w // patch)


def mlx_host_info() -> dict:
    """Where an MLX-only benchmark ran: MLX device and version, host name, local time."""
    return dict(
        mlx_device=str(mx.default_device()),
        mlx_version=mx.__version__,
        host=platform.node(),
        time=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def write_json(out, record: dict) -> None:
    """``record`` as indented JSON at ``out`` (folders made); nothing when ``out`` is empty."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1))


def torch_run_info(args, dtype: str) -> dict:
    """Where a benchmark of both sides ran and how: ``dtype``, torch and MLX devices and versions, host,
    ``args.warmup`` / ``args.repeat``, the TF32 settings of both frameworks, local time."""
    return dict(
        dtype=dtype,
        torch_device=str(torch_device()),
        torch_version=torch.__version__,
        **mlx_host_info(),
        warmup=args.warmup,
        repeat=args.repeat,
        mlx_enable_tf32=os.environ.get("MLX_ENABLE_TF32"),
        torch_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
    )


def append_jsonl(record: dict) -> None:
    """``record`` as one line of ``$OUT/bench.jsonl`` (folder made); nothing when ``$OUT`` is not set."""
    out_dir = os.environ.get("OUT")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(out_dir) / "bench.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def random_wan_vae(version: str, seed: int, dim: int | None = None, dtype: mx.Dtype = mx.float32):
    """A Wan VAE (``version`` "2.2" or "2.1") with random weights (:func:`mlx_random_`) in ``dtype``, and its
    args. ``dim``: narrow widths for smoke runs (2.2: encoder base 8, decoder base ``dim``; 2.1: base ``dim``);
    None: the real widths."""
    from mlx_video.wan import vae21, vae22

    if version == "2.2":
        args = vae22.Wan22VAEArgs(**({} if dim is None else {"dim": 8, "dec_dim": dim}))
        vae = vae22.Wan22VAE(args)
    else:
        args = vae21.Wan21VAEArgs(**({} if dim is None else {"dim": dim}))
        vae = vae21.Wan21VAE(args)
    return mlx_random_(vae, dtype, seed), args
