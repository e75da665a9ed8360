"""Wan DiT step time and error against bf16 for MLX's quantization modes (one forward, random weights).

    python -m benchmarks.quant_modes --size tiny                  # CPU smoke run (narrow widths)
    python -m benchmarks.quant_modes --size full --out $OUT/quant_modes.json   # TI2V-5B, 704x1280x121, GPU

Modes (``nn.quantize(model, group_size, bits, mode=...)`` on every Linear of the DiT whose input width the
group divides; MLX 0.32): affine 8-bit and 4-bit (group 64, bf16 scale + bias), mxfp8 and mxfp4 (group 32,
e8m0 scales), nvfp4 (group 16, e4m3 scales); with ``--quantize-input`` also the fp modes with
``quantize_input=True`` (activations quantized too, where the backend has such kernels; a mode that
fails is recorded with its error). One bf16 model is drawn; each mode quantizes a fresh module that
shares the bf16 arrays, so the reference stays resident (peak = bf16 weights + quantized weights +
activations; ``weights_gib`` is the quantized model alone).

Per mode: median forward time over ``--repeat`` after ``--warmup`` (batch 1: one CFG branch, i.e. half a
step with sequential CFG), MLX peak, and ``rel_err`` = ||v_q - v_bf16|| / ||v_bf16|| of the velocity, with
TI2V's per-frame timesteps (first latent frame 0, the rest 500). JSON to ``--out``; a table on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from benchmarks.common import mlx_host_info, mlx_random_, random_normal, release_memory, write_json
from benchmarks.random_models import NARROW_DIT, TI2V_5B
from mlx_video.wan.transformer import WanModel, WanModelArgs

GIB = float(1 << 30)
MODES = [
    ("affine8", dict(bits=8, group_size=64, mode="affine")),
    ("affine4", dict(bits=4, group_size=64, mode="affine")),
    ("mxfp8", dict(bits=8, group_size=32, mode="mxfp8")),
    ("mxfp4", dict(bits=4, group_size=32, mode="mxfp4")),
    ("nvfp4", dict(bits=4, group_size=16, mode="nvfp4")),
]
SIZES = {"tiny": (5, 64, 64), "mid": (5, 128, 128), "full": (121, 704, 1280)}


def _forward(model, x, t, ctx, rope):
    return model(x, t, ctx, rope)


def _time(fn, warmup: int, repeat: int):
    out = None
    times = []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        out = fn()
        mx.eval(out)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return out, times


def dit_case(size: str, layers: int | None, video: str | None, seed: int):
    """The DiT these benchmarks time: TI2V-5B widths (narrow at ``tiny``; ``layers`` blocks, default 30 for
    full, 2 otherwise) with bf16 random weights, and its inputs at the size preset (or ``video`` FxHxW) with
    TI2V's per-frame timesteps (first latent frame 0, the rest 500). Returns (model, case): case holds
    args, build_s, x, t, ctx, rope (evaluated) and ``config``, the size fields of the JSON record."""
    dit = dict(TI2V_5B)
    if size == "tiny":
        dit.update(NARROW_DIT)
    dit["num_layers"] = layers or (30 if size == "full" else 2)
    args = WanModelArgs(**dit)
    frames, height, width = tuple(int(v) for v in video.split("x")) if video else SIZES[size]
    T, h, w = 1 + (frames - 1) // 4, height // 16, width // 16
    dtype = mx.bfloat16
    t0 = time.perf_counter()
    model = mlx_random_(WanModel(args), dtype, seed)
    build_s = time.perf_counter() - t0
    x = random_normal((1, T, h, w, args.in_dim), seed + 10**6)
    t = mx.array([[0.0] + [500.0] * (T - 1)])
    ctx = model.embed_text([random_normal((120, args.text_dim), seed + 10**6 + 1).astype(dtype) * 0.1])
    rope = model.rope_tables((T, h // 2, w // 2))
    mx.eval(x, t, ctx, rope.even, rope.odd)
    config = dict(
        size=size,
        layers=args.num_layers,
        video=f"{frames}x{height}x{width}",
        tokens=T * (h // 2) * (w // 2),
        dim=args.dim,
        batch=1,
    )
    return model, SimpleNamespace(args=args, build_s=build_s, x=x, t=t, ctx=ctx, rope=rope, config=config)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--layers", type=int, default=None, help="DiT blocks (default: 30 for full, 2 otherwise)")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--modes", default=",".join(m for m, _ in MODES))
    p.add_argument("--quantize-input", action="store_true", help="also the fp modes with quantize_input=True")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    ref_model, c = dit_case(a.size, a.layers, a.video, a.seed)
    args, x, t, ctx, rope = c.args, c.x, c.t, c.ctx, c.rope
    params = tree_flatten(ref_model.parameters())
    rows = {}

    def measure(name, model, qkw=None):
        release_memory()
        mx.reset_peak_memory()
        out, times = _time(lambda: _forward(model, x, t, ctx, rope), a.warmup, a.repeat)
        wbytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        return out, dict(
            median_s=statistics.median(times),
            times_s=times,
            peak_gib=mx.get_peak_memory() / GIB,
            weights_gib=wbytes / GIB,
            **(qkw or {}),
        )

    v_ref, rows["bf16"] = measure("bf16", ref_model)
    v_ref = v_ref.astype(mx.float32)
    norm = float(mx.linalg.norm(v_ref))
    rows["bf16"]["rel_err"] = 0.0
    todo = [(n, k) for n, k in MODES if n in a.modes.split(",")]
    if a.quantize_input:
        todo += [(n + "+qin", dict(k, quantize_input=True)) for n, k in todo if k["mode"] != "affine"]
    for name, qkw in todo:
        model = WanModel(args)
        model.update(tree_unflatten(params))
        try:
            nn.quantize(
                model,
                **qkw,
                class_predicate=lambda path, m: isinstance(m, nn.Linear) and m.weight.shape[1] % qkw["group_size"] == 0,  # noqa: B023 (used in this iteration)
            )
            v, row = measure(name, model, qkw)
            row["rel_err"] = float(mx.linalg.norm(v.astype(mx.float32) - v_ref)) / max(norm, 1e-30)
            row["vs_bf16"] = row["median_s"] / rows["bf16"]["median_s"]
        except Exception as e:  # noqa: BLE001 - a mode the backend lacks is a result, not a crash
            row = dict(qkw, error=f"{type(e).__name__}: {e}"[:300])
        rows[name] = row
        del model
    record = dict(bench="quant_modes", **c.config, rows=rows, **mlx_host_info())
    write_json(a.out, record)
    print(
        f"\n== quant_modes: Wan DiT dim {args.dim}, {args.num_layers} blocks, {record['video']} "
        f"({record['tokens']} tokens), "
        f"batch 1, MLX {mx.__version__} on {mx.default_device()}"
    )
    print(f"{'mode':<12} {'median s':>9} {'x bf16':>7} {'rel err':>9} {'weights GiB':>11} {'peak GiB':>9}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<12} failed: {r['error']}")
            continue
        print(
            f"{name:<12} {r['median_s']:>9.4f} {r.get('vs_bf16', 1.0):>7.2f} {r['rel_err']:>9.2e} "
            f"{r['weights_gib']:>11.3f} {r['peak_gib']:>9.3f}"
        )
    return record


if __name__ == "__main__":
    main()
