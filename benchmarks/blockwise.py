"""Wan DiT forward with just-in-time block weights (mlx_video/nn/blockwise.py): per-block dequantization and
block streaming against bf16 and ``mx.quantized_matmul``, one random model, every mode alone or together.

    python -m benchmarks.blockwise --size tiny                                  # CPU smoke run, narrow widths
    python -m benchmarks.blockwise --size full --out $OUT/blockwise.json         # TI2V-5B 704x1280x121, GPU
    python -m benchmarks.blockwise --size full --modes bf16,dequant-affine4      # some modes only
    python -m benchmarks.blockwise --crossover --out $OUT/crossover.json         # one linear: where dequant pays
    python -m benchmarks.blockwise --crossover --rows 16,128,1024 --shapes 1024x1024   # the same, CPU-sized

Modes (``--modes``, comma-separated; ``bf16`` is always run first, as the reference):

- ``bf16``: resident bf16 weights, dense matmuls;
- ``qmm-Q``: weights quantized with Q, ``mx.quantized_matmul`` (what ``nn.quantize`` gives);
- ``dequant-Q``: weights quantized with Q, each block dequantized to bf16 just before it runs;
- ``stream-N``: the blocks' bf16 weights read from a safetensors file (written once to ``--tmp``), N resident;
- ``stream-N-Q``: the same from a Q-quantized file, dequantized per block where the policy says so;

Q is one of affine4, affine8 (group 64), mxfp8, mxfp4 (group 32). The bf16 model is drawn once; quantized modes
quantize a fresh module sharing its arrays (so their peak includes the resident bf16 reference; ``weights_gib``
is the mode's own weights); stream modes run last, after the in-memory bf16 blocks are dropped, so their peak is
the non-block weights + N blocks + activations. The stream files sit in the OS page cache after being written:
the reads measured are from RAM, not from disk. Per mode: 1 warmup + ``--repeat`` (2) forwards, median,
``rel_err`` = ||v - v_bf16|| / ||v_bf16||, MLX peak. Batch 1 (one CFG branch), TI2V per-frame timesteps.

``--crossover``: one Linear (3072 -> 3072 and 3072 -> 14336, the 5B DiT's widths) at M rows from 64 to 32768:
quantized_matmul vs dequantize + matmul vs bf16, 4 and 8 bit; the row count from which dequantizing wins is the
``DEQUANTIZE_MIN_TOKENS`` of this backend (mlx_video/nn/blockwise.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from benchmarks.common import mlx_host_info, random_normal, release_memory, write_json
from benchmarks.quant_modes import SIZES, dit_case
from mlx_video.backend import backend
from mlx_video.io.weights import save_safetensors
from mlx_video.nn.blockwise import BlockWeights, SafetensorsBlocks, dequantize_pays, dequantized_linear
from mlx_video.wan.transformer import WanModel

GIB = float(1 << 30)
QUANT = {
    "affine4": dict(bits=4, group_size=64, mode="affine"),
    "affine8": dict(bits=8, group_size=64, mode="affine"),
    "mxfp8": dict(bits=8, group_size=32, mode="mxfp8"),
    "mxfp4": dict(bits=4, group_size=32, mode="mxfp4"),
}
DEFAULT_MODES = "bf16,qmm-affine4,dequant-affine4,dequant-affine8,dequant-mxfp8,dequant-mxfp4,stream-2,stream-2-affine8"


def parse_mode(name: str) -> tuple[str, int | None, str | None]:
    """("bf16" | "qmm" | "dequant" | "stream", resident blocks or None, quantization or None)."""
    parts = name.split("-")
    try:
        if parts == ["bf16"]:
            return "bf16", None, None
        if parts[0] in ("qmm", "dequant") and len(parts) == 2 and parts[1] in QUANT:
            return parts[0], None, parts[1]
        if parts[0] == "stream" and len(parts) in (2, 3) and int(parts[1]) >= 1:
            q = parts[2] if len(parts) == 3 else None
            if q is None or q in QUANT:
                return "stream", int(parts[1]), q
    except ValueError:
        pass
    raise SystemExit(f"unknown mode {name!r}: bf16 | qmm-Q | dequant-Q | stream-N | stream-N-Q, Q in {sorted(QUANT)}")


def _quantize(model: nn.Module, q: dict) -> None:
    gs = q["group_size"]
    nn.quantize(model, **q, class_predicate=lambda p, m: isinstance(m, nn.Linear) and m.weight.shape[1] % gs == 0)


def _timed(fn, warmup: int, repeat: int, max_s: float):
    """(last output, timed seconds): ``warmup`` untimed calls, then ``repeat`` timed ones; only one timed
    call when the warmup alone took more than a third of ``max_s``."""
    t0 = time.perf_counter()
    out = None
    for _ in range(warmup):
        out = fn()
        mx.eval(out)
    if warmup and time.perf_counter() - t0 > max_s / 3:
        repeat = 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        mx.eval(out)
        times.append(time.perf_counter() - t0)
    return out, times


def crossover(rows=(64, 256, 1024, 4096, 16384, 32768), shapes=((3072, 3072), (3072, 14336)), repeat: int = 3):
    """Per (bits, K -> N, M): milliseconds of quantized_matmul, dequantize + matmul, bf16 matmul."""
    out = []
    for K, N in shapes:
        w = (random_normal((N, K), 0) / K**0.5).astype(mx.bfloat16)
        mx.eval(w)
        for bits in (4, 8):
            lin = nn.Linear(K, N)
            lin.weight, lin.bias = w, mx.zeros((N,), mx.bfloat16)
            q = nn.QuantizedLinear.from_linear(lin, 64, bits)
            mx.eval(q.parameters())
            for M in rows:
                x = random_normal((M, K), 1).astype(mx.bfloat16)
                mx.eval(x)
                fns = {"qmm": lambda: q(x), "dequant": lambda: dequantized_linear(q)(x), "bf16": lambda: lin(x)}  # noqa: B023
                ms = {}
                for name, fn in fns.items():
                    _, times = _timed(fn, 1, repeat, 1e9)
                    ms[name] = 1e3 * statistics.median(times)
                out.append(dict(K=K, N=N, M=M, bits=bits, **{f"{k}_ms": v for k, v in ms.items()}))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--layers", type=int, default=None, help="DiT blocks (default: 30 for full, 2 otherwise)")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument("--modes", default=DEFAULT_MODES)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--max-mode-s", type=float, default=60.0, help="a mode whose warmup exceeds a third: 1 timed run")
    p.add_argument("--tmp", default=None, help="folder for the stream modes' safetensors files (deleted after)")
    p.add_argument("--crossover", action="store_true", help="the one-Linear sweep instead of the DiT modes")
    p.add_argument("--rows", default="64,256,1024,4096,16384,32768", help="--crossover: the M values")
    p.add_argument("--shapes", default="3072x3072,3072x14336", help="--crossover: KxN weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    info = dict(mlx_host_info(), backend=backend())
    if a.crossover:
        shapes = [tuple(int(v) for v in sh.split("x")) for sh in a.shapes.split(",")]
        rows = crossover(tuple(int(m) for m in a.rows.split(",")), shapes)
        record = dict(bench="blockwise_crossover", rows=rows, **info)
        print(f"{'K->N':>11} {'bits':>4} {'M':>6} {'qmm ms':>9} {'dequant ms':>10} {'bf16 ms':>9}")
        for r in rows:
            print(
                f"{r['K']:>5}->{r['N']:<5} {r['bits']:>4} {r['M']:>6} {r['qmm_ms']:>9.3f} "
                f"{r['dequant_ms']:>10.3f} {r['bf16_ms']:>9.3f}"
            )
        write_json(a.out, record)
        return record

    modes = [m for m in a.modes.split(",") if m]
    parsed = {m: parse_mode(m) for m in modes}
    ref, c = dit_case(a.size, a.layers, a.video, a.seed)
    args, x, t, ctx, rope, tokens = c.args, c.x, c.t, c.ctx, c.rope, c.config["tokens"]
    rows, v_ref, norm = {}, None, 1.0

    def measure(name, model, extra):
        nonlocal v_ref, norm
        release_memory()
        mx.reset_peak_memory()
        t_mode = time.perf_counter()
        v, times = _timed(lambda: model(x, t, ctx, rope), 1, a.repeat, a.max_mode_s)
        row = dict(
            median_s=statistics.median(times),
            times_s=times,
            mode_s=time.perf_counter() - t_mode,
            peak_gib=mx.get_peak_memory() / GIB,
            **extra,
        )
        v = v.astype(mx.float32)
        if v_ref is None:
            v_ref, norm = v, max(float(mx.linalg.norm(v)), 1e-30)
        row["rel_err"] = float(mx.linalg.norm(v - v_ref)) / norm
        row["vs_bf16"] = row["median_s"] / rows["bf16"]["median_s"] if "bf16" in rows else 1.0
        rows[name] = row

    weights = sum(v.nbytes for _, v in tree_flatten(ref.parameters()))
    measure("bf16", ref, dict(weights_gib=weights / GIB))
    params = tree_flatten(ref.parameters())
    for name, (kind, _, q) in parsed.items():
        if kind not in ("qmm", "dequant"):
            continue
        model = WanModel(args)
        model.update(tree_unflatten(params))
        _quantize(model, QUANT[q])
        mx.eval(model.parameters())
        if kind == "dequant":
            model.block_weights = BlockWeights(model.blocks, dequantize=True)
        wq = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        measure(name, model, dict(QUANT[q], weights_gib=wq / GIB, dequantized=kind == "dequant"))
        del model
    streams = {n: v for n, v in parsed.items() if v[0] == "stream"}
    if streams:
        tmp = Path(tempfile.mkdtemp(prefix="blockwise_", dir=a.tmp))
        files = {}
        t0 = time.perf_counter()
        for q in sorted({v[2] for v in streams.values()}, key=str):
            src = ref
            if q is not None:
                src = WanModel(args)
                src.update(tree_unflatten(params))
                _quantize(src, QUANT[q])
            files[q] = tmp / f"blocks_{q or 'bf16'}.safetensors"
            blocks = {k: v for k, v in tree_flatten(src.parameters()) if k.startswith("blocks.")}
            mx.eval(list(blocks.values()))
            save_safetensors(files[q], blocks)
            del src, blocks
        write_s = time.perf_counter() - t0
        outside = [(k, v) for k, v in params if not k.startswith("blocks.")]
        del ref, params  # the in-memory bf16 blocks go; the file holds them now
        for name, (_, n, q) in streams.items():
            model = WanModel(args)
            model.update(tree_unflatten(outside))
            if q is not None:  # the blocks' (never evaluated) init arrays are replaced from the file below
                _quantize(model, QUANT[q])
            model.block_weights = BlockWeights(model.blocks, SafetensorsBlocks(files[q]), resident=n)
            mx.eval([v for k, v in tree_flatten(model.parameters()) if not k.startswith("blocks.")])
            block = sum(v.nbytes for _, v in tree_flatten(model.blocks[0].parameters()))
            extra = dict(QUANT.get(q, {}), resident=n, block_gib=block / GIB, file_write_s=write_s)
            extra["dequantized"] = q is not None and dequantize_pays(tokens)
            measure(name, model, extra)
            del model
        for f in files.values():
            f.unlink()
        tmp.rmdir()

    record = dict(bench="blockwise", **c.config, build_s=c.build_s, rows=rows, **info)
    write_json(a.out, record)
    print(
        f"\n== blockwise: Wan DiT dim {args.dim}, {args.num_layers} blocks, {record['video']} ({tokens} tokens), "
        f"batch 1, MLX {mx.__version__} on {mx.default_device()} ({backend()})"
    )
    print(f"{'mode':<18} {'median s':>9} {'x bf16':>7} {'rel err':>9} {'peak GiB':>9} {'mode s':>7}")
    for name, r in rows.items():
        print(
            f"{name:<18} {r['median_s']:>9.4f} {r['vs_bf16']:>7.2f} {r['rel_err']:>9.2e} "
            f"{r['peak_gib']:>9.3f} {r['mode_s']:>7.1f}"
        )
    return record


if __name__ == "__main__":
    main()
