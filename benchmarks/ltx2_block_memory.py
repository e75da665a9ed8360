"""LTX-2 transformer activation memory, phase by phase, at the stage-1 and stage-2 token counts (MLX only).

    python -m benchmarks.ltx2_block_memory                                  # CPU smoke run, narrow widths
    python -m benchmarks.ltx2_block_memory --size full --layers 2           # LTX-2 19B widths, 768x512x121
    python -m benchmarks.ltx2_block_memory --size full --layers 8 --model ltx23 --out $OUT/ltx2_act.json

One transformer forward (batch 1, with audio, 1024 text tokens, random weights at the model's widths) at the
two token counts of the two-stage pipelines: stage 1 (half resolution, 1/4 of the tokens) and stage 2 (the
full ``--video`` size; 768x512x121: 1,536 and 6,144 video tokens, 126 audio tokens at 25 latents/s).
Timesteps: one per item (the pipelines' case when every token is denoised), ``--per-token`` for per-token
timesteps (conditioned runs: image or IC-LoRA tokens carry their own).

phases: the forward run with ``mx.eval`` at every pace point of ``ltx2.transformer.PHASES``, the peak reset at
each, so each row is what that sub-step alone needs on top of what is resident when it starts (``peak``) and
what it leaves resident (``resident``). The first phase of block 0 also builds the stream inputs (AdaLN
modulation, caption projection); rows are the maximum over blocks 1.. (block 0 when ``--layers 1``).
``output`` is the final norm and projection. On the CPU the attention phases include the score matrix
[heads, q, k] that MLX's CPU attention materialises (Metal and CUDA run a fused kernel).

pacing: the same forward under each evaluation pacing (``--modes``), peak above the resident weights and
inputs, median time of ``--repeat`` forwards after ``--warmup``:
``graph`` (one lazy graph, evaluated at the end), ``block-eval`` (``mx.eval`` after each block),
``block-ahead`` (``OneBlockAhead`` per block: the default before issue 11's fix, and still the default below
``LTXModel.substep_pacing_tokens``), ``substep-ahead`` (``OneBlockAhead`` at every phase: the default at
stage-2 sizes), ``substep-eval`` (``mx.eval`` at every phase). MLX holds the inputs of queued kernels until
they finish (CUDA: until the CUDA graph of up to 100 kernels they were batched into completes), which is what
separates these (docs/ltx2.md §2.9).

JSON to ``--out``; a short table last on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

from benchmarks import common
from benchmarks.ltx2_transformer import REAL, TINY, checkpoint_config
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, Modality
from mlx_video.nn.evaluation import OneBlockAhead, SubstepPacing

GIB = float(1 << 30)
FPS, AUDIO_RATE, TEXT_TOKENS = 24.0, 25.0, 1024
SIZES = {"tiny": (121, 256, 384), "mid": (17, 128, 192), "full": (121, 512, 768)}  # frames, height, width
MODES = ("graph", "block-eval", "block-ahead", "substep-ahead", "substep-eval")


def _live(arrays):
    return [a for a in arrays if a is not None]


def make_pace(mode: str):
    """The ``pace`` callable of one pacing mode (see the module docstring)."""
    if mode == "graph":
        return lambda phase, *xs: None
    if mode == "block-eval":
        return lambda phase, *xs: mx.eval(*_live(xs)) if phase == "block" else None
    if mode == "substep-eval":
        return lambda phase, *xs: mx.eval(*_live(xs))
    if mode in ("block-ahead", "substep-ahead"):
        p = SubstepPacing(1, 1 if mode == "substep-ahead" else 2)
        assert p.fine == (mode == "substep-ahead") and isinstance(p.ahead, OneBlockAhead)
        return p
    raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")


class PhaseRecorder:
    """A ``pace`` that evaluates at every phase and records (block, phase, peak above the start, resident)."""

    def __init__(self):
        self.rows, self.block = [], 0
        self._start()

    def _start(self):
        mx.reset_peak_memory()
        self.base = mx.get_active_memory()

    def __call__(self, phase: str, *arrays):
        mx.eval(*_live(arrays))
        active = mx.get_active_memory()
        self.rows.append((self.block, phase, mx.get_peak_memory() - self.base, active))
        self.block += phase == "block"
        self._start()


def positions(frames: int, h: int, w: int, n_audio: int):
    """[1, 3, T, 2] video positions (seconds, pixels at 32 px per latent, [start, end)) and [1, 1, A, 2] audio
    positions (seconds), laid out as ltx-core's latent tools make them (the values do not change the memory)."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(h), np.arange(w), indexing="ij")
    start = np.stack([t.ravel() * 8 / FPS, y.ravel() * 32.0, x.ravel() * 32.0])
    end = start + np.array([8 / FPS, 32.0, 32.0])[:, None]
    vpos = np.stack([start, end], -1)[None].astype(np.float32)
    a = np.arange(n_audio) / AUDIO_RATE
    apos = np.stack([a, a + 1 / AUDIO_RATE], -1)[None, None].astype(np.float32)
    return vpos, apos


def run_size(model: LTXModel, frames: int, height: int, width: int, args, dtype) -> dict:
    (T, h, w), n_video = common.video_tokens(frames, height, width, 8, 32)
    n_audio = int(round(frames / FPS * AUDIO_RATE))
    vpos, apos = positions(T, h, w, n_audio)
    rope = model.rope_tables(vpos, apos)
    a = model.args
    rng = np.random.default_rng(args.seed)

    def arr(*shape):
        return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)

    ctx_v = a.caption_channels if a.caption_projection else a.cross_attention_dim
    ctx_a = a.caption_channels if a.caption_projection else a.audio_cross_attention_dim
    sigma = mx.full((1,), 0.8)
    tv, ta = (mx.full((1, n_video), 0.8), mx.full((1, n_audio), 0.8)) if args.per_token else (sigma, sigma)
    video = Modality(arr(1, n_video, a.in_channels), tv, sigma, arr(1, args.text_tokens, ctx_v))
    audio = Modality(arr(1, n_audio, a.audio_in_channels), ta, sigma, arr(1, args.text_tokens, ctx_a))
    mx.eval(rope, video.latent, video.context, audio.latent, audio.context, tv, ta, sigma)

    def forward(pace):
        out = model(video, audio, rope, pace=pace)
        mx.eval(out)
        return out

    forward(make_pace("block-eval"))  # compile the kernels once
    resident = mx.get_active_memory()
    rec = PhaseRecorder()
    out = model(video, audio, rope, pace=rec)
    mx.eval(out)
    rows = rec.rows + [(rec.block, "output", mx.get_peak_memory() - rec.base, mx.get_active_memory())]
    del out
    phases = {}
    for blk, name, peak, active in rows:
        if name == "video_qkv" and blk == 0:
            name = "block0 video_qkv (+ stream inputs)"
        elif blk == 0 and model.args.num_layers > 1 and name != "output":
            continue  # block 0's other phases: the same as every block's
        ph = phases.setdefault(name, dict(peak_gib=0.0, resident_gib=0.0))
        ph["peak_gib"] = max(ph["peak_gib"], peak / GIB)
        ph["resident_gib"] = max(ph["resident_gib"], (active - resident) / GIB)

    pacing = {}
    for mode in args.modes:
        pace_times = []
        for i in range(args.warmup + args.repeat):
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            o = forward(make_pace(mode))
            dt = time.perf_counter() - t0
            peak = mx.get_peak_memory() - resident
            del o
            if i >= args.warmup:
                pace_times.append(dt)
        pacing[mode] = dict(peak_gib=peak / GIB, median_s=statistics.median(pace_times), times_s=pace_times)
    return dict(
        latent=f"{T}x{h}x{w}",
        video_tokens=n_video,
        audio_tokens=n_audio,
        phases=phases,
        pacing=pacing,
        default_mode="substep-ahead" if n_video >= model.substep_pacing_tokens else "block-ahead",
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny", help="tiny: narrow widths; mid/full: real widths")
    p.add_argument("--model", choices=("ltx2", "ltx23"), default="ltx2")
    p.add_argument(
        "--layers", type=int, default=2, help="transformer blocks (memory per forward does not grow with it)"
    )
    p.add_argument("--video", default=None, help="override the size preset's FxHxW (stage 2; stage 1 is half of H, W)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="default: bf16 on a GPU, fp32 on the CPU")
    p.add_argument("--per-token", action="store_true", help="per-token timesteps (conditioned runs)")
    p.add_argument("--modes", default=",".join(MODES), help="pacing modes, comma-separated")
    p.add_argument("--stages", default="1,2", help="which token counts: 1 (half resolution), 2 (full), or both")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--text-tokens", type=int, default=TEXT_TOKENS, help="text context length (the connectors': 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        make_pace(m)
    gpu = mx.default_device().type == mx.DeviceType.gpu
    dt_name = args.dtype or ("bf16" if gpu else "fp32")
    dtype = common.MLX_DTYPES[dt_name]
    widths = TINY if args.size == "tiny" else REAL
    cfg = LTXModelArgs.from_config(checkpoint_config(args.model, widths, args.layers))
    model = common.mlx_random_(LTXModel(cfg), dtype, args.seed)
    frames, height, width = tuple(int(v) for v in args.video.split("x")) if args.video else SIZES[args.size]
    stages = {}
    for s in args.stages.split(","):
        div = 2 if s == "1" else 1
        stages[f"stage{s}"] = run_size(model, frames, height // div, width // div, args, dtype)
    result = dict(
        bench="ltx2_block_memory",
        model=args.model,
        size=args.size,
        video=f"{frames}x{height}x{width}",
        layers=args.layers,
        dtype=dt_name,
        per_token=args.per_token,
        text_tokens=args.text_tokens,
        device=str(mx.default_device()),
        mlx_version=mx.__version__,
        weights_gib=common.mlx_nbytes(model) / GIB,
        substep_pacing_tokens=model.substep_pacing_tokens,
        stages=stages,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"ltx2_block_memory {args.model} {args.size} {result['video']} {dt_name} layers={args.layers} "
        f"weights {result['weights_gib']:.2f} GiB ({result['device']})"
    )
    for name, st in stages.items():
        print(f"{name}: latent {st['latent']}, {st['video_tokens']} video + {st['audio_tokens']} audio tokens")
        for ph, v in st["phases"].items():
            print(f"  phase {ph:38s} peak {v['peak_gib']:7.3f} GiB  resident {v['resident_gib']:7.3f} GiB")
        for mode, v in st["pacing"].items():
            mark = " (default)" if mode == st["default_mode"] else ""
            print(f"  pacing {mode:14s} peak {v['peak_gib']:7.3f} GiB  {v['median_s']:8.4f} s{mark}")
    return result


if __name__ == "__main__":
    main()
