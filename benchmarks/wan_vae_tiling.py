"""Wan VAE decode untiled against tiled (mlx_video.nn.tiling): time, MLX peak, and the tiles' difference.

    python -m benchmarks.wan_vae_tiling --size tiny                       # CPU smoke run (narrow widths)
    python -m benchmarks.wan_vae_tiling --size full --out $OUT/vae_tiling.json    # Wan2.2, 121x704x1280, GPU
    python -m benchmarks.wan_vae_tiling --size full --version 2.1         # Wan2.1 VAE, 81x480x832

One random-weights VAE (real widths; ``tiny``: dim 8), one latent draw. For each VAE dtype in ``--dtypes``:
the untiled ``decode(z)``, then ``decode(z, Tiling((n, n), o))`` for each ``n[:o]`` in ``--tiles`` (pixels;
o defaults to n/4 in whole strides).
Per run: median time over ``--repeat`` after ``--warmup``, MLX peak (reset before the run, weights
included), and for tiled runs the max / mean absolute difference to the untiled decode of the same dtype
(frames in [-1, 1]). The official Wan2.2 decode at this size (H100, bf16 autocast) is 6.97 s / 21.3 GiB
(benchmarks/README.md). JSON to ``--out``; a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

from benchmarks.common import mlx_random_, random_normal, release_memory
from mlx_video.nn.tiling import Tiling
from mlx_video.wan import vae21, vae22

GIB = float(1 << 30)
SIZES = {
    "tiny": {"2.2": (5, 128, 192), "2.1": (5, 64, 96)},
    "mid": {"2.2": (5, 256, 256), "2.1": (5, 256, 256)},
    "full": {"2.2": (121, 704, 1280), "2.1": (81, 480, 832)},
}
DEFAULT_TILES = {
    "tiny": {"2.2": "64,96", "2.1": "32,48"},
    "mid": {"2.2": "128", "2.1": "128"},
    "full": {"2.2": "256,384,512,512:192", "2.1": "256,384,384:128"},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--version", choices=("2.2", "2.1"), default="2.2")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument("--dtypes", default="bfloat16,float32", help="VAE compute dtypes, comma-separated")
    p.add_argument(
        "--tiles",
        default=None,
        help="TILE[:OVERLAP] pixels, comma-separated (default overlap: a quarter of the tile, in whole strides)",
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    v = a.version
    narrow = a.size == "tiny"
    args = (
        vae22.Wan22VAEArgs(**({"dim": 8, "dec_dim": 8} if narrow else {}))
        if v == "2.2"
        else vae21.Wan21VAEArgs(**({"dim": 8} if narrow else {}))
    )
    vae = mlx_random_((vae22.Wan22VAE if v == "2.2" else vae21.Wan21VAE)(args), mx.float32, a.seed)
    frames, height, width = tuple(int(u) for u in a.video.split("x")) if a.video else SIZES[a.size][v]
    st, s, _ = vae.stride
    T, h, w = 1 + (frames - 1) // st, height // s, width // s
    z = random_normal((1, T, h, w, args.z_dim), a.seed + 1)
    mx.eval(z)
    tiles = [tuple(int(x) for x in u.split(":")) for u in (a.tiles or DEFAULT_TILES[a.size][v]).split(",")]
    rows = []
    for dt in a.dtypes.split(","):
        vae.set_dtype(getattr(mx, dt))
        ref = None
        for tile in [None, *tiles]:
            tiling = (
                None
                if tile is None
                else (Tiling((tile[0],) * 2, tile[1]) if len(tile) > 1 else Tiling.square(tile[0], s))
            )
            release_memory()
            mx.reset_peak_memory()
            times, out = [], None
            for i in range(a.warmup + a.repeat):
                out = None
                t0 = time.perf_counter()
                out = vae.decode(z, tiling)
                mx.eval(out)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t0)
            row = dict(
                dtype=dt,
                tile=None if tile is None else tile[0],
                overlap=None if tiling is None else tiling.overlap[0],
                median_s=statistics.median(times),
                times_s=times,
                peak_gib=mx.get_peak_memory() / GIB,
            )
            out_np = np.array(out)
            del out
            if tile is None:
                ref = out_np
            else:
                d = np.abs(out_np - ref)
                row.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()))
            rows.append(row)
            del out_np
    record = dict(
        bench="wan_vae_tiling",
        vae=v,
        size=a.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}x{args.z_dim}",
        widths="narrow" if narrow else "real",
        rows=rows,
        mlx_device=str(mx.default_device()),
        mlx_version=mx.__version__,
        host=platform.node(),
        time=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(record, indent=1))
    print(
        f"\n== wan_vae_tiling: Wan{v} VAE ({record['widths']} widths), {record['video']} "
        f"(latent {record['latent']}), "
        f"MLX {mx.__version__} on {mx.default_device()}"
    )
    print(f"{'dtype':<9} {'tile':>6} {'overlap':>7} {'median s':>9} {'peak GiB':>9} {'max diff':>9} {'mean diff':>10}")
    for r in rows:
        tile = "-" if r["tile"] is None else str(r["tile"])
        ov = "-" if r["overlap"] is None else str(r["overlap"])
        md = f"{r['max_abs_diff']:.4f}" if "max_abs_diff" in r else "-"
        mn = f"{r['mean_abs_diff']:.5f}" if "mean_abs_diff" in r else "-"
        print(f"{r['dtype']:<9} {tile:>6} {ov:>7} {r['median_s']:>9.3f} {r['peak_gib']:>9.3f} {md:>9} {mn:>10}")
    return record


if __name__ == "__main__":
    main()
