"""`mlx_video generate` for the Wan family (the official Wan spellings: --task, --ckpt_dir, --frame_num, ...).

Reached through :mod:`mlx_video.cli`, which picks the family from the arguments.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..cli_common import fail as _fail, str2bool as _str2bool

app = typer.Typer(add_completion=False)


def resolve_wan_model(ckpt_dir: str, console=None) -> Path:
    """A converted folder for ``ckpt_dir``: used as is, converted once into the cache (official or
    diffusers folder), or downloaded from the Hub first (repo id)."""
    from convert.wan import convert_wan, detect_layout
    from mlx_video.io.hub import (WAN_DIFFUSERS_FILES, WAN_OFFICIAL_FILES, converted_path, download,
                                  looks_like_repo_id)

    p = Path(ckpt_dir).expanduser()
    if not p.exists() and looks_like_repo_id(ckpt_dir):
        files = WAN_DIFFUSERS_FILES if ckpt_dir.lower().endswith("-diffusers") else WAN_OFFICIAL_FILES
        if console:
            console.print(f"downloading {ckpt_dir} (only the files needed) ...")
        p = download(ckpt_dir, files)
    layout = detect_layout(p)
    if layout == "mlx":
        return p
    cfg = p / ("model_index.json" if layout == "diffusers" else "config.json")
    dst = converted_path(str(p.resolve()), tag=str(cfg.stat().st_mtime_ns))
    if not (dst / "config.json").is_file():
        if console:
            console.print(f"converting {p} ({layout} layout) -> {dst} (once)")
        convert_wan(p, dst)
    return dst


@app.command()
def generate(
    task: str = typer.Option("ti2v-5B", "--task", help="t2v-5B | ti2v-5B | mi2v-5B"),
    ckpt_dir: str = typer.Option(..., "--ckpt_dir", "--ckpt-dir", "--model",
                                 help="converted folder, official/diffusers checkpoint folder, or HF repo id"),
    prompt: str = typer.Option("", "--prompt"),
    negative_prompt: Optional[str] = typer.Option(None, "--negative_prompt", "--negative-prompt"),
    image: Optional[Path] = typer.Option(None, "--image", help="first frame (ti2v-5B)"),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="anchor images, in order (mi2v-5B)"),
    size: Optional[str] = typer.Option(None, "--size", help="W*H; with images the max area"),
    frame_num: Optional[int] = typer.Option(None, "--frame_num", "--frame-num"),
    sample_steps: Optional[int] = typer.Option(None, "--sample_steps", "--sample-steps"),
    sample_shift: Optional[float] = typer.Option(None, "--sample_shift", "--sample-shift"),
    sample_solver: Optional[str] = typer.Option(None, "--sample_solver", "--sample-solver",
                                                help="unipc | dpm++ | euler"),
    sample_guide_scale: Optional[float] = typer.Option(None, "--sample_guide_scale", "--sample-guide-scale"),
    seed: int = typer.Option(-1, "--base_seed", "--seed", help="-1: random"),
    offload_model: Optional[str] = typer.Option(None, "--offload_model", "--offload-model",
                                                help="True/False (default True)"),
    save_file: Optional[Path] = typer.Option(None, "--save_file", "--save-file", "--output"),
    dtype: str = typer.Option("bfloat16", "--dtype", help="compute dtype: bfloat16 | float32"),
):
    """Generate a video (or one image) from a prompt and optional images."""
    import random

    import mlx.core as mx
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError
    from mlx_video.io.video import OutputPathError, check_output_path, write_image, write_video
    from mlx_video.io.weights import WeightsError
    from mlx_video.wan.config import TASKS
    from mlx_video.wan.pipeline import WanPipeline, check_frame_num

    console = Console(stderr=True)
    if task not in TASKS:
        _fail(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    imgs = list(images or []) + ([image] if image else [])
    if image and images:
        _fail("give either --image or --images, not both")
    offload = _str2bool(offload_model)
    offload = True if offload is None else offload
    if seed < 0:
        seed = random.randint(0, 2**31 - 1)
    tk = TASKS[task]
    try:
        check_frame_num(tk.frame_num if frame_num is None else frame_num)
        single = (tk.frame_num if frame_num is None else frame_num) == 1
        if save_file is None:
            stamp = time.strftime("%Y%m%d_%H%M%S")
            save_file = Path(f"{task}_{stamp}.{'png' if single else 'mp4'}")
        save_file = check_output_path(save_file, (".png",) if single else (".mp4",))
        for p in imgs:  # fail fast on a missing image before any model is touched
            from mlx_video.io.images import load_image
            load_image(p)
        model_dir = resolve_wan_model(ckpt_dir, console)
        pipe = WanPipeline(model_dir, dtype=mx.float32 if dtype == "float32" else mx.bfloat16, offload=offload)
    except (ValueError, ImageError, WeightsError, OutputPathError, DownloadError) as e:
        _fail(str(e))

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=console) as bar:
        bars: dict[str, int] = {}
        t_start: dict[str, float] = {}

        def progress(stage: str, step: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total, rate="")
                t_start[stage] = time.perf_counter()
            el = time.perf_counter() - t_start[stage]
            bar.update(bars[stage], completed=step, rate=f"{step / el:.2f} it/s" if el > 0 else "")

        try:
            res = pipe.generate(task=task, prompt=prompt, negative_prompt=negative_prompt, images=imgs,
                                size=size, frame_num=frame_num, sample_steps=sample_steps,
                                sample_shift=sample_shift, guide_scale=sample_guide_scale,
                                solver=sample_solver, seed=seed, progress=progress)
        except (ValueError, ImageError, WeightsError) as e:
            _fail(str(e))
    meta = dict(res.params, model=str(ckpt_dir), fps=res.fps, generator="mlx_video")
    if len(res.video) == 1:
        write_image(save_file, res.video[0], meta)
    else:
        write_video(save_file, res.video, res.fps, meta)
    for k, v in res.timings.items():
        console.print(f"{k:>14}: {v:8.2f} s")
    console.print(f"{'peak memory':>14}: {res.peak_memory_gb:8.2f} GB")
    console.print(f"saved {save_file} ({len(res.video)} frames, {res.video.shape[2]}x{res.video.shape[1]}, "
                  f"{res.fps} fps)")


