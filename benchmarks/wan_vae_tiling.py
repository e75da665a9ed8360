"""Wan VAE decode untiled against tiled (mlx_video.nn.tiling): time, MLX peak, and the tiles' difference.

    python -m benchmarks.wan_vae_tiling --size tiny                       # CPU smoke run (narrow widths)
    python -m benchmarks.wan_vae_tiling --size full --out $OUT/vae_tiling.json    # Wan2.2, 121x704x1280, GPU
    python -m benchmarks.wan_vae_tiling --size full --version 2.1         # Wan2.1 VAE, 81x480x832

    python -m benchmarks.wan_vae_tiling --size full --dtypes bfloat16 --tiles none --frames-per-chunk 4,2,1 \
        --unfold-gb 4,1 --pixels u8                                         # the lean untiled decodes

One random-weights VAE (real widths; ``tiny``: dim 8), one latent draw. For each VAE dtype in ``--dtypes``:
the reference row, the untiled ``decode(z)`` with the default settings, then one row per combination of
``--tiles`` (``none``, ``n[:o]`` or ``HxW[:o]`` pixels; o defaults to n/4 in whole strides),
``--frames-per-chunk`` (``4``: the whole chunk; 2, 1: split in time at the up stages, same values) and
``--unfold-gb`` (the conv unfold budget, nn/conv.py; ``default``: $MLX_VIDEO_CONV_UNFOLD_GB) and
``--eval-block`` (``default``: blocks of at least ``vae_blocks.EVAL_BLOCK_BYTES`` are evaluated one by one; ``off``:
each chunk is one lazy graph, as before; or a size in MiB).
``--pixels f32`` times ``decode`` (float32 video on the device); ``u8`` consumes ``decode_frames`` (untiled:
each chunk converted to uint8 on the device while the next one runs; tiled: tile by tile, uint8 at once where one
tile covers a pixel and float32 sums over the overlap bands on the host; what ``WanPipeline.decode`` uses), so the
float32 video never exists; ``u8host`` (untiled only): the earlier
way, ``decode_chunks`` with each float32 chunk copied to the host and converted there.
Per run: median time over ``--repeat`` after ``--warmup``, MLX peak (reset before the run, weights
included), and for tiled runs the max / mean absolute difference to the untiled decode of the same dtype
(frames in [-1, 1]; u8 rows: of their uint8 frames to the reference's, in units of 1/127.5). The official
Wan2.2 decode at this size (H100, bf16 autocast) is 6.90 s / 21.25 GiB (benchmarks/README.md). JSON to ``--out``; a table on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import time

import mlx.core as mx
import numpy as np

from benchmarks.common import mlx_host_info, random_normal, random_wan_vae, release_memory, write_json
from mlx_video.nn.tiling import Tiling
from mlx_video.wan import vae_blocks

GIB = float(1 << 30)
SIZES = {
    "tiny": {"2.2": (5, 128, 192), "2.1": (5, 64, 96)},
    "mid": {"2.2": (5, 256, 256), "2.1": (5, 256, 256)},
    "full": {"2.2": (121, 704, 1280), "2.1": (81, 480, 832)},
}
DEFAULT_TILES = {
    "tiny": {"2.2": "64,96", "2.1": "32,48"},
    "mid": {"2.2": "128", "2.1": "128"},
    "full": {"2.2": "none,704x704:128,512:128", "2.1": "none,480x480:96,384:96"},
}
# --size full defaults: one GPU call of a few minutes (bf16 only; the lean settings against the reference)
FULL_DEFAULTS = dict(dtypes="bfloat16", frames_per_chunk="4,1", unfold_gb="default", pixels="f32,u8")


def _tiling(spec: str, s: int) -> Tiling | None:
    """``none`` | ``n[:o]`` | ``HxW[:o]`` pixels -> Tiling (default overlap: a quarter of the smaller side)."""
    if spec == "none":
        return None
    size, _, ov = spec.partition(":")
    hw = tuple(int(u) for u in size.split("x"))
    if len(hw) == 1:
        hw = hw * 2
    return Tiling(hw, int(ov)) if ov else Tiling(hw, max(s, min(hw) // 4 // s * s))


def _eval_bytes(spec: str, default: int) -> int:
    """``--eval-block`` value -> vae_blocks.EVAL_BLOCK_BYTES (``off``: never evaluate between blocks)."""
    if spec == "default":
        return default
    return 1 << 62 if spec == "off" else int(float(spec) * (1 << 20))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--version", choices=("2.2", "2.1"), default="2.2")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument("--dtypes", default=None, help="VAE compute dtypes, comma-separated (bfloat16,float32)")
    p.add_argument(
        "--tiles",
        default=None,
        help="none | TILE[:OVERLAP] | HxW[:OVERLAP] pixels, comma-separated (default overlap: a quarter of the tile)",
    )
    p.add_argument("--frames-per-chunk", default=None, help="comma-separated; 4: whole chunks (the reference)")
    p.add_argument(
        "--unfold-gb", default=None, help="conv unfold budgets (GiB at 4 B/element, or default), comma-separated"
    )
    p.add_argument(
        "--eval-block", default="default", help="default | off | MiB: vae_blocks.EVAL_BLOCK_BYTES, comma-separated"
    )
    p.add_argument(
        "--pixels",
        default=None,
        help="f32 (decode) | u8 (decode_frames: uint8 per chunk on the device) | u8host (decode_chunks, "
        "uint8 on the host), comma-separated",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the default untiled decode (no diffs)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    base = (
        FULL_DEFAULTS
        if a.size == "full"
        else dict(dtypes="bfloat16,float32", frames_per_chunk="4", unfold_gb="default", pixels="f32")
    )
    for k, val in base.items():
        if getattr(a, k) is None:
            setattr(a, k, val)

    v = a.version
    narrow = a.size == "tiny"
    vae, args = random_wan_vae(v, a.seed, 8 if narrow else None)
    frames, height, width = tuple(int(u) for u in a.video.split("x")) if a.video else SIZES[a.size][v]
    st, s, _ = vae.stride
    T, h, w = 1 + (frames - 1) // st, height // s, width // s
    z = random_normal((1, T, h, w, args.z_dim), a.seed + 1)
    mx.eval(z)
    tiles = (a.tiles or DEFAULT_TILES[a.size][v]).split(",")
    fpcs = [int(u) for u in a.frames_per_chunk.split(",")]
    unfolds = [None if u == "default" else float(u) for u in a.unfold_gb.split(",")]
    evals = a.eval_block.split(",")
    configs = [
        (t, f, u, px, e) for t in tiles for f in fpcs for u in unfolds for px in a.pixels.split(",") for e in evals
    ]
    configs = [c for c in configs if not (c[3] == "u8host" and c[0] != "none")]  # decode_chunks is untiled
    first = ("none", 4, None, "f32", evals[0])
    if not a.no_reference:
        configs = [first, *[c for c in configs if c != first]]
    default_eval = vae_blocks.EVAL_BLOCK_BYTES
    rows = []
    for dt in a.dtypes.split(","):
        vae.set_dtype(getattr(mx, dt))
        ref = None
        for spec, fpc, ugb, px, ev in configs:
            vae_blocks.EVAL_BLOCK_BYTES = _eval_bytes(ev, default_eval)
            tiling = _tiling(spec, s)
            unfold = None if ugb is None else int(ugb * (1 << 30))
            release_memory()
            mx.reset_peak_memory()
            times, out = [], None
            for i in range(a.warmup + a.repeat):
                out = None
                t0 = time.perf_counter()
                if px == "u8":
                    out = np.concatenate([c[0] for c, _ in vae.decode_frames(z, fpc, unfold, tiling)])
                elif px == "u8host":
                    out = np.concatenate([_u8(np.array(c[0])) for c in vae.decode_chunks(z, fpc, unfold)])
                else:
                    out = vae.decode(z, tiling, frames_per_chunk=fpc, max_unfold_bytes=unfold)
                    mx.eval(out)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t0)
            row = dict(
                dtype=dt,
                tile=None if tiling is None else list(tiling.tile),
                overlap=None if tiling is None else tiling.overlap[0],
                frames_per_chunk=fpc,
                unfold_gb=ugb,
                eval_block=ev,
                pixels=px,
                median_s=statistics.median(times),
                times_s=times,
                peak_gib=mx.get_peak_memory() / GIB,
            )
            out_np = out if px != "f32" else np.array(out[0])
            del out
            if ref is None and not a.no_reference:
                ref = out_np
            elif ref is not None:
                if px != "f32":
                    d = np.abs(out_np.astype(np.float32) - _u8(ref).astype(np.float32)) / 127.5
                else:
                    d = np.abs(out_np - ref)
                row.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()))
            rows.append(row)
            del out_np
    vae_blocks.EVAL_BLOCK_BYTES = default_eval
    record = dict(
        bench="wan_vae_tiling",
        vae=v,
        size=a.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}x{args.z_dim}",
        widths="narrow" if narrow else "real",
        rows=rows,
        **mlx_host_info(),
    )
    write_json(a.out, record)
    print(
        f"\n== wan_vae_tiling: Wan{v} VAE ({record['widths']} widths), {record['video']} "
        f"(latent {record['latent']}), "
        f"MLX {mx.__version__} on {mx.default_device()}"
    )
    print(
        f"{'dtype':<9} {'tile':>9} {'ovl':>4} {'fpc':>3} {'unfold':>7} {'eval':>7} {'px':>6} {'median s':>9} "
        f"{'peak GiB':>9} "
        f"{'max diff':>9} {'mean diff':>10}"
    )
    for r in rows:
        tile = "-" if r["tile"] is None else "x".join(map(str, r["tile"]))
        ov = "-" if r["overlap"] is None else str(r["overlap"])
        ug = "dflt" if r["unfold_gb"] is None else f"{r['unfold_gb']:g}"
        md = f"{r['max_abs_diff']:.4f}" if "max_abs_diff" in r else "-"
        mn = f"{r['mean_abs_diff']:.5f}" if "mean_abs_diff" in r else "-"
        print(
            f"{r['dtype']:<9} {tile:>9} {ov:>4} {r['frames_per_chunk']:>3} {ug:>7} {r['eval_block']:>7} "
            f"{r['pixels']:>6} "
            f"{r['median_s']:>9.3f} {r['peak_gib']:>9.3f} {md:>9} {mn:>10}"
        )
    return record


if __name__ == "__main__":
    main()
