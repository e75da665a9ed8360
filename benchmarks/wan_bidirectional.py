"""Cost of one WanFM bidirectional sampling step (FLF2V on the Wan2.2 I2V-A14B expert), MLX only.

Times one denoising step of ``mlx_video.wan.denoise.denoise`` (batched CFG) in each mode at
480x832x81 (32,760 tokens) on one A14B expert with random bf16 weights:
  euler              forward pass only (what the faithful mode equals; tests/test_wan_flf2v.py)
  faithful           forward + time-reversed pass with reversed temporal RoPE, fused 0.5/0.5
  faithful-skip      the faithful mode with the redundant pass skipped (the default)
  reverse            forward + reversed pass keeping forward positions (a true time reversal)
The official WanFM code is not packaged, so there is no reference side; its step is the same two
passes (4 DiT forwards with CFG). Usage: python -m benchmarks.wan_bidirectional [--size tiny|full]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import mlx.core as mx
import numpy as np

from benchmarks import common
from mlx_video.sampling.solvers import make_solver
from mlx_video.wan.denoise import BackwardPass, denoise
from mlx_video.wan.transformer import WanModel, WanModelArgs

SIZES = {
    "tiny": ((9, 64, 64), dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2)),
    "full": ((81, 480, 832), dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--layers", type=int, default=None, help="fewer blocks (times scaled, labelled)")
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    (frames, height, width), widths = SIZES[a.size]
    full_layers = widths["num_layers"]
    layers = a.layers or full_layers
    model = WanModel(
        WanModelArgs(
            model_type="i2v", in_dim=36, out_dim=16, freq_dim=256, text_dim=4096, **dict(widths, num_layers=layers)
        )
    )
    common.mlx_random_(model, mx.bfloat16, 0)
    T, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    rng = np.random.default_rng(0)
    x = mx.array(rng.standard_normal((1, T, h, w, 16)).astype(np.float32))
    y = mx.array(rng.standard_normal((1, T, h, w, 20)).astype(np.float32))
    ctx = model.embed_text([mx.array(rng.standard_normal((64, 4096)).astype(np.float32))] * 2)
    grid = (T, h // 2, w // 2)
    rope, rope_rev = model.rope_tables(grid), model.rope_tables(grid, t_positions=list(range(T))[::-1])
    y_rev = y[:, ::-1]
    modes = {
        "euler": None,
        "faithful": BackwardPass(rope_rev, y_rev),
        "faithful-skip": BackwardPass(rope_rev, y_rev, skip=True),
        "reverse": BackwardPass(rope, y_rev),
    }
    rows = []
    for name, back in modes.items():
        times = []
        for _ in range(a.repeat + 1):
            solver = make_solver("euler", 40, 16.0)
            mx.eval(x)
            t0 = time.perf_counter()
            out = denoise(model, x, solver, ctx, rope, 5.0, y=y, steps=range(1), backward=back)
            mx.eval(out)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times[1:])) * full_layers / layers
        rows.append(dict(mode=name, step_s=round(med, 4)))
    base = rows[0]["step_s"]
    print(
        f"== wan_bidirectional: A14B expert, {frames}x{height}x{width}, {T * grid[1] * grid[2]} tokens, "
        f"layers {layers}/{full_layers}{' (times scaled to full depth)' if layers != full_layers else ''}, "
        f"bf16, MLX on {mx.default_device()}"
    )
    print(f"{'mode':<16}{'s/step':>10}{'x euler':>10}")
    for r in rows:
        print(f"{r['mode']:<16}{r['step_s']:>10.4f}{r['step_s'] / base:>10.2f}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "bench.jsonl"), "a") as f:
            f.write(json.dumps(dict(bench="wan_bidirectional", size=a.size, layers=layers, rows=rows)) + "\n")


if __name__ == "__main__":
    main()
