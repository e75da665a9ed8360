"""LTX-2 / LTX-2.3 tiled video decode, formulations of ours side by side, against ltx-core's in the same process.

    python -m benchmarks.ltx2_vae_decode --size tiny                           # smoke run (narrow widths, CPU)
    python -m benchmarks.ltx2_vae_decode --size full --model ltx2              # 121x512x768 (latent 16x16x24)
    python -m benchmarks.ltx2_vae_decode --size full --model ltx23 --variants native,taps,stacked+async

One unit of work = the pipelines' video decode: ltx-core ``decode_video`` (``VideoDecoder.tiled_decode`` with
``TilingConfig.default()``: 512 px / 64 px overlap, 64 frames / 24 overlap; uint8 chunks, moved to the host) against
our :func:`mlx_video.ltx2.pipelines.decode_frames` (``iter_decode_tiled`` with the same tiles, uint8 chunks to
NumPy). Both decoders in ``--dtype`` (bf16 on CUDA, as ltx-pipelines' ledger builds it), random weights of the real
checkpoint's shapes (docs/ltx2.md §4), the same latent. Both sides run 12 tile decodes of 45 convolutions each
(540 3x3x3 convolutions, ~97 TFLOP for LTX-2; counted equal on the CPU, docs/ltx2.md §4.5).

A variant is ``+``-joined settings of ours (all give the same values up to float rounding; the table shows the
largest difference from the first variant, in uint8 levels):
    native | frames | taps | stacked   CausalConv3d formulation (``video_vae.CONV3D_MODE``):
        native   mx.conv3d on the padded frames; frames: a 2-D convolution per temporal tap on the padded frames;
        taps     a 2-D convolution per tap on the unpadded frames, shifted sums (zero padding inside the convs);
        stacked  one 2-D convolution with the 3 taps stacked along channels
    unchunked      no output chunking in ``mlx_video.nn.conv.conv3d`` (default: chunks under a 4 GiB unfold, each
                   evaluated before the next; only the native formulation chunks)
    async          ``mx.async_eval`` per tile instead of ``mx.eval`` (``video_vae.TILE_EVAL``)
Default variants: native, native+unchunked, native+async, frames, taps, stacked, taps+async, stacked+async.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from ltx_core.model.video_vae import decode_video as ref_decode_video
from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator

from benchmarks import common
from benchmarks.common import mx, torch
from benchmarks.ltx2_distilled import mlx_video_vae
from benchmarks.ltx2_vae import DECODERS, SIZES, TILES, decode_case, ref_tiling
from mlx_video.ltx2 import video_vae as vv
from mlx_video.ltx2.pipelines import LTX2Components, decode_frames
from mlx_video.nn import conv

DEFAULT_VARIANTS = "native,native+unchunked,native+async,frames,taps,stacked,taps+async,stacked+async"
FLAGS = ("unchunked", "async")


def parse_variant(v: str) -> dict:
    """ "taps+async" -> {"mode": "taps", "unchunked": False, "async": True}; raises ValueError for unknown parts."""
    parts = v.split("+")
    modes = [p for p in parts if p in conv.CONV3D_MODES]
    bad = [p for p in parts if p not in conv.CONV3D_MODES and p not in FLAGS]
    if bad or len(modes) != 1:
        raise ValueError(f"variant {v!r}: one of {conv.CONV3D_MODES} plus any of {FLAGS}, joined by '+'")
    return {"mode": modes[0], **{f: f in parts for f in FLAGS}}


def apply(settings: dict) -> None:
    vv.CONV3D_MODE = settings["mode"]
    vv.TILE_EVAL = "async" if settings["async"] else "sync"
    conv.MAX_UNFOLD_BYTES = (1 << 50) if settings["unchunked"] else DEFAULT_UNFOLD


DEFAULT_UNFOLD = conv.MAX_UNFOLD_BYTES


def time_runs(run, warmup: int, repeat: int, sync) -> tuple[list[float], object]:
    out = None
    for _ in range(warmup):
        out = run()
        sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        sync()
        times.append(time.perf_counter() - t0)
    return times, out


def main():
    p = common.parser(__doc__.split("\n")[0], list(SIZES), layers=False)
    p.add_argument("--model", choices=list(DECODERS), default="ltx2")
    p.add_argument("--video", default=None, help="override the size preset's FxHxW, e.g. 121x512x768")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated variants of ours (see above)")
    p.set_defaults(repeat=3)
    args = p.parse_args()
    try:
        variants = [(v, parse_variant(v)) for v in args.variants.split(",")]
    except ValueError as e:
        p.error(str(e))
    cfg, (frames, height, width), (T, h, w), z = decode_case(args)
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()
    rows = []  # (name, times, peak GiB, uint8 frames)

    if not args.skip_reference:
        tdt = common.TORCH_DTYPES[dtype]
        dec = common.torch_build(lambda: VideoDecoderConfigurator.from_config(cfg), dev, tdt, args.seed)
        zt = torch.from_numpy(z).to(dev, tdt)
        tiling = ref_tiling()
        cuda = torch.cuda.is_available()
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            times, out = time_runs(
                lambda: [c.cpu() for c in ref_decode_video(zt, dec, tiling, torch.Generator(dev).manual_seed(0))],
                args.warmup,
                args.repeat,
                sync,
            )
        peak = torch.cuda.max_memory_allocated() / common.GiB if cuda else None
        rows.append(("official (ltx-core)", times, peak, torch.cat(out).numpy()))
        print(f"  official: median {statistics.median(times):.3f} s", flush=True)
        del dec, zt, out
        common.release_memory()

    if not args.skip_mlx:
        mdt = common.MLX_DTYPES[dtype]
        comps = LTX2Components(None, mlx_video_vae(cfg, args.seed + 1000, mdt))
        zm = mx.array(z.transpose(0, 2, 3, 4, 1))
        for name, settings in variants:
            apply(settings)
            mx.reset_peak_memory()
            times, out = time_runs(lambda: decode_frames(comps, zm), args.warmup, args.repeat, lambda: None)
            rows.append((name, times, mx.get_peak_memory() / common.GiB, out))
            print(f"  {name}: median {statistics.median(times):.3f} s", flush=True)
        apply(parse_variant("native"))

    ref = rows[0][3] if rows else None
    official = rows[0][1] if rows and rows[0][0].startswith("official") else None
    first_ours = next((r[3] for r in rows if not r[0].startswith("official")), None)
    print(
        f"\n== ltx2_vae_decode: model {args.model}, video {frames}x{height}x{width}, latent {T}x{h}x{w}, tiles {TILES}, "
        f"dtype {dtype}, torch on {dev}, MLX on {mx.default_device()}, {args.warmup} warmup + {args.repeat} runs"
    )
    print(f"{'variant':<24}{'median s':>10}{'min s':>9}{'peak GiB':>10}{'official/x':>12}{'max|d| u8':>11}")
    record = []
    for name, times, peak, frames_u8 in rows:
        med = statistics.median(times)
        ratio = statistics.median(official) / med if official else None
        base = first_ours if not name.startswith("official") else ref
        diff = int(np.abs(frames_u8.astype(np.int16) - base.astype(np.int16)).max()) if base is not None else None
        print(
            f"{name:<24}{med:>10.3f}{min(times):>9.3f}{'n/a' if peak is None else f'{peak:.2f}':>10}"
            f"{'' if ratio is None else f'{ratio:.2f}x':>12}{'' if diff is None else diff:>11}"
        )
        record.append(dict(variant=name, median_s=med, times_s=times, peak_gib=peak, max_abs_u8_vs_first=diff))
    print(
        "official/x > 1: that variant is faster than ltx-core; max|d| u8: largest frame difference from the first "
        "variant of ours (the official row: from itself; independent random weights, so no cross-side comparison)"
    )
    out_dir = os.environ.get("OUT")
    if out_dir:
        import json
        from pathlib import Path

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(out_dir) / "bench.jsonl", "a") as f:
            f.write(
                json.dumps(
                    dict(
                        bench="ltx2_vae_decode",
                        model=args.model,
                        video=f"{frames}x{height}x{width}",
                        dtype=dtype,
                        mlx_version=mx.__version__,
                        torch_version=torch.__version__,
                        time=time.strftime("%Y-%m-%d %H:%M:%S"),
                        rows=record,
                    )
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
