"""Whole Wan run, phase by phase, through ``WanPipeline`` with random weights (no checkpoint files).

    python -m benchmarks.e2e --size tiny --out /tmp/e2e.json                 # CPU smoke run, narrow widths
    python -m benchmarks.e2e --size mid --inject-context --steps 1           # real widths, 2 blocks, 64x64
    python -m benchmarks.e2e --size full --case t2v --steps 3 --out $OUT/e2e_t2v.json     # the GPU run
    python -m benchmarks.e2e --size full --case ti2v --steps 3 --out $OUT/e2e_ti2v.json
    python -m benchmarks.e2e --size full --case i2v-A14B --steps 2 --video 81x480x832 --out ...

The same stages as ``mlx_video generate`` / ``WanPipeline.generate``, each measured alone: ``plan`` (settings
checked, images loaded and resized), ``text`` (UMT5 over prompt and negative prompt; with
``--inject-context`` random [n, 4096] contexts instead), ``encode`` (VAE encode of the image anchors / first
frame, CLIP), ``denoise`` (``--steps N`` steps with CFG, per-step times from the progress callback),
``decode`` (``WanPipeline.decode`` to uint8; ``--vae-tile N``: the VAE encodes and decodes in NxN-pixel tiles
with N/4 overlap, as ``mlx_video generate --vae_tile N``), ``write`` (H.264 mp4 with the parameters as
metadata). The weights are drawn on first use inside the phase that loads them (as reading the file would be);
``draw_s`` says how long that took and ``*_s_net`` subtracts it.

``--budget GiB`` runs whatever plan ``mlx_video.memory.plan`` picks, adopted as ``WanPipeline.fit_memory``
does, block streaming and quantize-at-load included: the components those read for real (the DiT(s) when
streamed or quantized at load, UMT5 when quantized at load) are written once, before the first phase, to
safetensors files in the converted folder's layout and dtype (``RandomWeights.write``; seconds in
``weights_written``, counted in no phase) and read through the library's loaders, so a streamed DiT re-reads
its blocks lazily from the file each step. The folder is removed at the end. A 50-step run is stated from fewer: ``denoise_50_s`` = the
median step x 50 (the first step, which compiles kernels, is excluded from the median when N > 1).

Per phase: seconds, MLX peak (``mx.get_peak_memory``, reset at the phase's start), the process's OS
high-water mark (VmHWM, reset through /proc/self/clear_refs at the phase's start; absolute, so it includes
whatever is resident), MLX active memory after the phase and the components resident after it. The
memory planner's estimate (``mlx_video.memory.phase_peaks`` for the same settings) is recorded beside it.
JSON to ``--out`` (and a line to ``$OUT/bench.jsonl`` when set); a short table last on stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from benchmarks.common import _hwm_reset, _status_kib, append_jsonl, mlx_host_info, release_memory, write_json
from benchmarks.random_models import random_wan_pipeline, wan_config
from mlx_video import memory
from mlx_video.backend import BACKENDS, backend, backend_arg
from mlx_video.nn.tiling import Tiling
from mlx_video.wan.settings import WanSettings

GIB = float(1 << 30)
IMAGES = Path(__file__).resolve().parents[1] / "assets" / "images"
CASES = {  # case -> (model, task, number of images)
    "t2v": ("ti2v-5B", "t2v-5B", 0),
    "ti2v": ("ti2v-5B", "ti2v-5B", 1),
    "mi2v": ("ti2v-5B", "mi2v-5B", 3),
    "i2v-A14B": ("i2v-A14B", "i2v-A14B", 1),
}
VIDEO = {
    "tiny": {"ti2v-5B": (5, 64, 64), "i2v-A14B": (5, 32, 32)},
    "mid": {"ti2v-5B": (5, 64, 64), "i2v-A14B": (5, 64, 64)},
    "full": {"ti2v-5B": (121, 704, 1280), "i2v-A14B": (81, 480, 832)},
}


def _resident(pipe) -> list[str]:
    out = list(pipe._dits)
    out += [n for n in ("vae", "text", "clip") if getattr(pipe, f"_{n}") is not None]
    return out


class Phases:
    """Times a phase and records its MLX peak, the OS high-water mark and what stays resident."""

    def __init__(self, pipe, weights):
        self.pipe, self.weights, self.rows = pipe, weights, {}

    def run(self, name: str, fn):
        release_memory()
        mx.reset_peak_memory()
        hwm_ok = _hwm_reset()
        drawn = sum(self.weights.draw_s.values())
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        draw = sum(self.weights.draw_s.values()) - drawn
        self.rows[name] = dict(
            s=dt,
            draw_s=draw,
            s_net=dt - draw,
            mlx_peak_gib=mx.get_peak_memory() / GIB,
            os_hwm_gib=_status_kib("VmHWM") / 2**20 if hwm_ok else None,
            mlx_active_after_gib=mx.get_active_memory() / GIB,
            resident=_resident(self.pipe),
        )
        return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(VIDEO), default="tiny")
    p.add_argument("--case", choices=list(CASES), default="t2v")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--layers", type=int, default=None, help="DiT blocks (default: all for full/tiny, 2 for mid)")
    p.add_argument("--dit-dim", type=int, default=None, help="DiT width (a multiple of 128; default the model's)")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default=None,
        help="DiT/text dtype (default bfloat16 on a GPU, float32 on the CPU)",
    )
    p.add_argument("--vae-dtype", choices=("bfloat16", "float32"), default="float32")
    p.add_argument("--vae-tile", type=int, default=None, help="decode in NxN-pixel tiles (overlap N/4 in strides)")
    p.add_argument("--sequential-cfg", action="store_true", help="the two CFG branches one after the other")
    p.add_argument("--no-offload", action="store_true", help="keep every component resident")
    p.add_argument("--inject-context", action="store_true", help="random text contexts; no UMT5")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="GiB: let mlx_video.memory.plan choose CFG batching, VAE dtype and tiling, offload and "
        "weight quantization for this budget (overrides those flags)",
    )
    p.add_argument(
        "--plan-for",
        type=backend_arg,
        choices=BACKENDS,
        default=None,
        help="plan --budget with this backend's constants (metal, or its older name gpu: a Mac's plan, run here; "
        "default: this machine's); "
        "the estimates recorded beside the measurements stay this machine's",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args(argv)

    model, task, n_images = CASES[a.case]
    frames, height, width = tuple(int(v) for v in a.video.split("x")) if a.video else VIDEO[a.size][model]
    if task == "mi2v-5B" and not a.video:
        frames = max(frames, 4 * n_images + 1)  # one latent frame per anchor image, plus one
    layers = a.layers if a.layers is not None else (2 if a.size == "mid" else None)
    cpu = mx.default_device() == mx.cpu
    dtype = a.dtype or ("float32" if cpu else "bfloat16")
    cfg = wan_config(model, narrow=a.size == "tiny", layers=layers, dim=a.dit_dim)
    pipe, weights, _ = random_wan_pipeline(
        cfg, getattr(mx, dtype), getattr(mx, a.vae_dtype), offload=not a.no_offload, seed=a.seed
    )
    try:
        return _run(a, cfg, pipe, weights, model, task, n_images, frames, height, width, dtype)
    finally:
        weights.cleanup()  # the folder and the weights files written into it


def _run(a, cfg, pipe, weights, model, task, n_images, frames, height, width, dtype):
    images = [str(IMAGES / n) for n in ("astronaut.png", "coffee.png", "rocket.png")[:n_images]]
    settings = WanSettings(
        task=task,
        prompt="a red fox running through fresh snow, cinematic",
        images=images,
        size=f"{width}*{height}",
        frame_num=frames,
        sample_steps=a.steps,
        seed=a.seed,
        batch_cfg=not a.sequential_cfg,
    )
    if a.vae_tile:  # encode and decode, as `mlx_video generate --vae_tile N`
        pipe.tiling = Tiling.square(a.vae_tile, cfg["vae"]["stride"])
    ph = Phases(pipe, weights)
    step_t: list[float] = []
    step_mem: list[tuple[float, float]] = []  # (MLX active, MLX peak since the phase's start) after each step

    def progress(stage, i, n):
        step_t.append(time.perf_counter())
        step_mem.append((mx.get_active_memory() / GIB, mx.get_peak_memory() / GIB))

    plan = ph.run("plan", lambda: pipe.plan(settings))
    qbits, mplan = None, None
    if a.budget is not None:
        mplan = memory.plan(
            _sizes(cfg, plan, images, a),
            plan.settings.frame_num,
            plan.height,
            plan.width,
            a.budget * GIB,
            dtype=dtype,
            backend_name=a.plan_for,
        )
        settings = replace(settings, batch_cfg=mplan.batch_cfg)
        plan = pipe.plan(settings)
        _adopt(pipe, mplan)  # as WanPipeline.fit_memory does
        qbits = mplan.quantize_bits
    tiling = pipe.tiling
    # streamed DiT blocks are re-read from the DiT file each step, and weights quantized at load are read from a
    # float file: those components get a real file, written here (outside every phase, see ``weights_written``)
    for stem in _files_needed(pipe, a):
        weights.write(stem)
    context = None
    if a.inject_context:
        rng = np.random.default_rng(a.seed)
        text_dim = cfg["dit"].get("text_dim", 4096)
        context = [mx.array(rng.standard_normal((n, text_dim)).astype(np.float32) * 0.1) for n in (24, 120)]
    ctx = ph.run("text", lambda: pipe.encode_text(plan, context))
    cond = ph.run("encode", lambda: pipe.encode_images(plan, ctx))

    def denoise():
        step_t.append(time.perf_counter())
        return pipe.denoise(plan, cond, None, progress)

    latent = ph.run("denoise", denoise)

    frames_u8 = ph.run("decode", lambda: pipe.decode(latent))
    out_dir = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="e2e_"))
    mp4 = out_dir / f"e2e_{a.case}_{a.size}.mp4"

    write_error = None

    def write():
        nonlocal write_error
        from mlx_video.io.video import write_video

        try:
            return write_video(mp4, frames_u8, plan.settings.fps, dict(plan.params, generator="mlx_video e2e"))
        except Exception as e:  # noqa: BLE001 - e.g. PyAV missing on the GPU machine: keep the other numbers
            write_error = f"{type(e).__name__}: {e}"[:300]

    ph.run("write", write)

    steps = [b - t for t, b in zip(step_t, step_t[1:])]
    per_step = statistics.median(steps[1:] if len(steps) > 1 else steps)
    est = _estimate(cfg, plan, a, dtype, images, pipe, tiling, qbits)
    record = dict(
        bench="e2e",
        case=a.case,
        task=task,
        model=model,
        size=a.size,
        layers=cfg["dit"]["num_layers"],
        video=f"{len(frames_u8)}x{plan.height}x{plan.width}",
        latent=list(plan.shape),
        tokens=memory.tokens(_sizes(cfg, plan, images, a), len(frames_u8), plan.height, plan.width),
        steps=a.steps,
        step_s=steps,
        step_median_s=per_step,
        step_active_gib=[round(a, 4) for a, _ in step_mem],
        step_peak_gib=[round(b, 4) for _, b in step_mem],
        denoise_50_s=per_step * 50,
        dtype=dtype,
        vae_dtype=str(pipe.vae_dtype).rsplit(".", 1)[-1],
        vae_tile=tiling.tile[0] if tiling else None,
        vae_overlap=tiling.overlap[0] if tiling else None,
        batch_cfg=plan.settings.batch_cfg,
        offload=pipe.offload,
        quantize_bits=qbits,
        stream_blocks=pipe.stream_blocks,
        weights_written={k: round(v, 3) for k, v in weights.write_s.items()},
        weights_folder=str(weights.folder),
        memory_plan=mplan.to_dict() if mplan else None,
        plan_for=(a.plan_for or backend()) if mplan else None,
        inject_context=a.inject_context,
        phases=ph.rows,
        peak_gib=max(r["mlx_peak_gib"] for r in ph.rows.values()),
        os_hwm_gib=max((r["os_hwm_gib"] or 0) for r in ph.rows.values()),
        estimate_gib=est,
        **mlx_host_info(),
        mp4=str(mp4),
        write_error=write_error,
    )
    write_json(a.out, record)
    append_jsonl(record)
    _table(record)
    return record


def _adopt(pipe, mp) -> None:
    """Set ``pipe``'s settings from the memory plan ``mp`` as ``WanPipeline.fit_memory`` does (a float folder:
    ``quantize_bits`` quantizes at load; streamed blocks are read as stored)."""
    pipe.vae_dtype, pipe.offload, pipe.tiling = getattr(mx, mp.vae_dtype), mp.offload, mp.tiling
    pipe.swap_experts, pipe.stream_blocks, pipe.quantize_bits = mp.swap_experts, mp.stream_blocks, mp.quantize_bits
    pipe.memory_plan = mp


def _files_needed(pipe, a) -> list[str]:
    """The weights files this run reads for real: the DiT(s) when streamed or quantized at load, UMT5 when
    quantized at load and not injected."""
    dits = list(pipe.cfg.get("experts") or ["dit"])
    out = dits if (pipe.stream_blocks or pipe.quantize_bits) else []
    if pipe.quantize_bits and not a.inject_context:
        out = [*out, "t5"]
    return out


def _sizes(cfg, plan, images, a):
    return memory.wan_sizes(cfg, plan.task, images=len(images), text_encoder=not a.inject_context)


def _estimate(cfg, plan, a, dtype, images, pipe, tiling, qbits) -> dict:
    """The planner's per-phase estimate (GiB) for the settings this run used."""
    p = memory.MemoryPlan(
        batch_cfg=plan.settings.batch_cfg,
        vae_dtype=str(pipe.vae_dtype).rsplit(".", 1)[-1],
        offload=pipe.offload,
        swap_experts=pipe.swap_experts,
        vae_tile=tiling.tile if tiling else None,
        vae_overlap=tiling.overlap[0] if tiling else 0,
        quantize_bits=qbits,
        stream_blocks=pipe.stream_blocks,
        dtype=dtype,
    )
    peaks = memory.phase_peaks(_sizes(cfg, plan, images, a), plan.settings.frame_num, plan.height, plan.width, p)
    return {k: round(v / GIB, 3) for k, v in peaks.items()}


def _table(r: dict) -> None:
    print(
        f"\n== e2e {r['case']} ({r['task']}, {r['model']}, {r['layers']} blocks), {r['video']}, {r['tokens']} "
        f"tokens, {r['steps']} steps, dtype {r['dtype']}, VAE {r['vae_dtype']}"
        f"{' tiled ' + str(r['vae_tile']) if r['vae_tile'] else ''}, "
        f"CFG {'batched' if r['batch_cfg'] else 'sequential'}"
        f", MLX {r['mlx_version']} on {r['mlx_device']}"
    )
    if r["memory_plan"]:
        mp = r["memory_plan"]
        print(
            f"memory plan for {mp['budget_gib']:.2f} GiB: {', '.join(mp['steps']) or 'defaults'} "
            f"(estimated peak {mp['peak_gib']:.2f} GiB)"
        )
    print(f"{'phase':<8} {'s':>8} {'draw s':>7} {'MLX peak GiB':>12} {'est GiB':>8} {'OS HWM GiB':>10}  resident after")
    est_key = {"text": "text", "encode": "image", "denoise": "denoise", "decode": "decode"}
    for name, row in r["phases"].items():
        est = r["estimate_gib"].get(est_key.get(name, ""), None)
        hwm = "n/a" if row["os_hwm_gib"] is None else f"{row['os_hwm_gib']:.2f}"
        print(
            f"{name:<8} {row['s']:>8.3f} {row['draw_s']:>7.2f} {row['mlx_peak_gib']:>12.3f} "
            f"{'' if est is None else f'{est:.3f}':>8} {hwm:>10}  {', '.join(row['resident']) or '-'}"
        )
    if r["write_error"]:
        print(f"mp4 write failed: {r['write_error']}")
    print(
        f"per step: median {r['step_median_s']:.3f} s ({', '.join(f'{s:.3f}' for s in r['step_s'])}); "
        f"50 steps ~ {r['denoise_50_s']:.1f} s; peak {r['peak_gib']:.2f} GiB (MLX), {r['os_hwm_gib']:.2f} GiB (OS)"
    )
    print(
        "after each step: MLX active "
        + ", ".join(f"{v:.3f}" for v in r["step_active_gib"])
        + " GiB; denoise peak so far "
        + ", ".join(f"{v:.3f}" for v in r["step_peak_gib"])
        + " GiB"
    )


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
