"""`mlx_video generate` for the Wan family (the official Wan spellings: --task, --ckpt_dir, --frame_num, ...).

Reached through :mod:`mlx_video.cli`, which picks the family from the arguments.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from .common import fail as _fail, progress_bars, str2bool as _str2bool

app = typer.Typer(add_completion=False)


def resolve_wan_model(ckpt_dir: str, console=None) -> Path:
    """A converted folder for ``ckpt_dir``: used as is, converted once into the cache (official or
    diffusers folder), or downloaded from the Hub first (repo id)."""
    from mlx_video.wan.checkpoint import convert_wan, detect_layout
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
    if not cfg.is_file():  # official A14B: two expert folders
        cfg = p / "high_noise_model" / "config.json"
    dst = converted_path(str(p.resolve()), tag=str(cfg.stat().st_mtime_ns))
    if not (dst / "config.json").is_file():
        if console:
            console.print(f"converting {p} ({layout} layout) -> {dst} (once)")
        convert_wan(p, dst)
    return dst


def parse_guide(value: str | None):
    """--sample_guide_scale: one number, or 'LOW,HIGH' for the two A14B experts. Raises BadParameter."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected a number or LOW,HIGH, got {value!r}") from None
    if len(parts) not in (1, 2):
        raise typer.BadParameter(f"expected a number or LOW,HIGH, got {value!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


@app.command()
def generate(
    task: str = typer.Option("ti2v-5B", "--task", help="t2v-5B | ti2v-5B | mi2v-5B | t2v-1.3B | t2v-14B | i2v-14B | "
                             "flf2v-14B | t2v-A14B | i2v-A14B | flf2v-A14B"),
    ckpt_dir: str = typer.Option(..., "--ckpt_dir", "--ckpt-dir", "--model",
                                 help="converted folder, official/diffusers checkpoint folder, or HF repo id"),
    prompt: str = typer.Option("", "--prompt"),
    negative_prompt: Optional[str] = typer.Option(None, "--negative_prompt", "--negative-prompt"),
    image: Optional[Path] = typer.Option(None, "--image", help="first frame (ti2v-5B, i2v-*)"),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="anchor images, in order (mi2v-5B)"),
    first_frame: Optional[Path] = typer.Option(None, "--first_frame", "--first-frame", help="flf2v-*: first frame"),
    last_frame: Optional[Path] = typer.Option(None, "--last_frame", "--last-frame", help="flf2v-*: last frame"),
    bidirectional_sampling: bool = typer.Option(False, "--bidirectional_sampling", "--bidirectional-sampling",
                                                help="flf2v-*: WanFM forward + time-reversed passes (Euler)"),
    bidirectional_mode: str = typer.Option("faithful", "--bidirectional_mode", "--bidirectional-mode",
                                           help="faithful (WanFM: reversed RoPE, equals forward Euler) | reverse "
                                                "(backward pass keeps forward positions)"),
    one_frame_inference: Optional[str] = typer.Option(None, "--one_frame_inference", "--one-frame-inference",
                                                      help='musubi one-frame: "control_index=0;2,target_index=1"'),
    control_image_path: Optional[List[Path]] = typer.Option(None, "--control_image_path", "--control-image-path",
                                                            help="one-frame control images, in index order"),
    image_path: Optional[Path] = typer.Option(None, "--image_path", "--image-path", help="one-frame: CLIP start image"),
    end_image_path: Optional[Path] = typer.Option(None, "--end_image_path", "--end-image-path",
                                                  help="one-frame flf2v-14B: CLIP end image"),
    output_type: Optional[str] = typer.Option(None, "--output_type", "--output-type",
                                              help="video | images | latent_images (also saves the latent)"),
    size: Optional[str] = typer.Option(None, "--size", help="W*H; with images the max area"),
    frame_num: Optional[int] = typer.Option(None, "--frame_num", "--frame-num"),
    sample_steps: Optional[int] = typer.Option(None, "--sample_steps", "--sample-steps"),
    sample_shift: Optional[float] = typer.Option(None, "--sample_shift", "--sample-shift"),
    sample_solver: Optional[str] = typer.Option(None, "--sample_solver", "--sample-solver",
                                                help="unipc | dpm++ | euler"),
    sample_guide_scale: Optional[str] = typer.Option(None, "--sample_guide_scale", "--sample-guide-scale",
                                                     help="a number, or LOW,HIGH for the A14B experts"),
    seed: int = typer.Option(-1, "--base_seed", "--seed", help="-1: random"),
    offload_model: Optional[str] = typer.Option(None, "--offload_model", "--offload-model",
                                                help="True/False (default True)"),
    save_file: Optional[Path] = typer.Option(None, "--save_file", "--save-file", "--output", "--save_path"),
    dtype: str = typer.Option("bfloat16", "--dtype", help="compute dtype: bfloat16 | float32"),
    vae_dtype: str = typer.Option("float32", "--vae_dtype", "--vae-dtype",
                                  help="VAE compute dtype: float32 | bfloat16 (half the decode memory)"),
    convert_model_dtype: bool = typer.Option(False, "--convert_model_dtype", "--convert-model-dtype",
                                             help="accepted as in the official CLI: the DiT already runs in --dtype"),
    t5_cpu: bool = typer.Option(False, "--t5_cpu", "--t5-cpu",
                                help="accepted as in the official CLI: with unified memory there is no separate "
                                     "device memory to spare; the text encoder is freed before the DiT runs"),
    lora: Optional[List[str]] = typer.Option(None, "--lora", help="PATH[:STRENGTH], repeatable: merged into every DiT"),
    lora_high: Optional[List[str]] = typer.Option(None, "--lora_high", "--lora-high",
                                                  help="PATH[:STRENGTH], repeatable: A14B high-noise expert only"),
    lora_low: Optional[List[str]] = typer.Option(None, "--lora_low", "--lora-low",
                                                 help="PATH[:STRENGTH], repeatable: A14B low-noise expert only"),
):
    """Generate a video (or one image) from a prompt and optional images."""
    import random

    import mlx.core as mx
    from rich.console import Console

    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError, load_image
    from mlx_video.io.video import OutputPathError, check_output_path, write_image, write_video
    from mlx_video.io.weights import WeightsError, save_safetensors
    from mlx_video.wan.config import TASKS
    from mlx_video.wan.conditions import OneFrameSpec, check_frame_num
    from mlx_video.wan.pipeline import WanPipeline

    console = Console(stderr=True)
    if task not in TASKS:
        _fail(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    tk = TASKS[task]
    if image and images:
        _fail("give either --image or --images, not both")
    if bidirectional_mode not in ("faithful", "reverse"):
        _fail(f"--bidirectional_mode must be faithful or reverse, got {bidirectional_mode!r}")
    if output_type not in (None, "video", "images", "latent_images"):
        _fail(f"--output_type must be video, images or latent_images, got {output_type!r}")
    controls = list(control_image_path or [])
    if one_frame_inference is not None:
        if image_path is None:
            _fail("one-frame inference needs --image_path (the CLIP start image)")
        imgs = [image_path] + ([end_image_path] if end_image_path else [])
        if not controls:
            _fail("one-frame inference needs --control_image_path (one image per control index)")
    elif controls or image_path or end_image_path:
        _fail("--control_image_path / --image_path / --end_image_path are one-frame options "
              "(add --one_frame_inference)")
    elif tk.images == "first_last":
        if not (first_frame and last_frame):
            _fail(f"task {task} needs --first_frame and --last_frame")
        imgs = [first_frame, last_frame]
    elif first_frame or last_frame:
        _fail("--first_frame / --last_frame are for the flf2v tasks")
    else:
        imgs = list(images or []) + ([image] if image else [])
    if bidirectional_sampling and tk.images != "first_last":
        _fail("--bidirectional_sampling is for the flf2v tasks")
    offload = _str2bool(offload_model)
    offload = True if offload is None else offload
    if seed < 0:
        seed = random.randint(0, 2**31 - 1)
    guide = parse_guide(sample_guide_scale)
    try:
        spec = OneFrameSpec.parse(one_frame_inference, len(controls)) if one_frame_inference is not None else None
        if spec is None:
            check_frame_num(tk.frame_num if frame_num is None else frame_num)
        single = spec is not None or (tk.frame_num if frame_num is None else frame_num) == 1
        if save_file is None:
            stamp = time.strftime("%Y%m%d_%H%M%S")
            save_file = Path(f"{task}_{stamp}.{'png' if single else 'mp4'}")
        save_file = check_output_path(save_file, (".png",) if single else (".mp4",))
        for p in imgs + controls:  # fail fast on a missing image before any model is touched
            load_image(p)
        model_dir = resolve_wan_model(ckpt_dir, console)
        if {dtype, vae_dtype} - {"float32", "bfloat16"}:
            raise ValueError("--dtype and --vae_dtype take float32 or bfloat16")
        pipe = WanPipeline(model_dir, dtype=getattr(mx, dtype), vae_dtype=getattr(mx, vae_dtype), offload=offload,
                           loras=lora or (), loras_high=lora_high or (), loras_low=lora_low or ())
        pipe.check_task(tk)
    except (ValueError, ImageError, WeightsError, OutputPathError, DownloadError) as e:
        _fail(str(e))

    with progress_bars(console) as progress:
        try:
            res = pipe.generate(task=task, prompt=prompt, negative_prompt=negative_prompt, images=imgs,
                                size=size, frame_num=frame_num, sample_steps=sample_steps,
                                sample_shift=sample_shift, guide_scale=guide, solver=sample_solver, seed=seed,
                                progress=progress, bidirectional=bidirectional_mode if bidirectional_sampling else None,
                                one_frame=spec, control_images=controls)
        except (ValueError, ImageError, WeightsError) as e:
            _fail(str(e))
    meta = dict(res.params, model=str(ckpt_dir), fps=res.fps, generator="mlx_video")
    for k, v in (("lora", lora), ("lora_high", lora_high), ("lora_low", lora_low)):
        if v:
            meta[k] = list(v)
    if len(res.video) == 1:
        write_image(save_file, res.video[0], meta)
    else:
        write_video(save_file, res.video, res.fps, meta)
    if output_type == "latent_images":
        lat = save_file.with_suffix(".safetensors")
        save_safetensors(lat, {"latent": res.latents}, metadata={"parameters": json.dumps(meta, default=str)})
        console.print(f"saved latent {lat} {tuple(res.latents.shape)} [B, T, h, w, C]")
    for k, v in res.timings.items():
        console.print(f"{k:>14}: {v:8.2f} s")
    console.print(f"{'peak memory':>14}: {res.peak_memory_gb:8.2f} GB")
    console.print(f"saved {save_file} ({len(res.video)} frames, {res.video.shape[2]}x{res.video.shape[1]}, "
                  f"{res.fps} fps)")
