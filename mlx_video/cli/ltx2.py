"""`mlx_video generate` for LTX-2 / LTX-2.3 (pipelines distilled, dev, dev-two-stage, dev-two-stage-hq).

Reached through :mod:`mlx_video.cli` (LTX-only options or a --model naming LTX). Parses the options into
:class:`mlx_video.ltx2.pipelines.LTXSettings` (which owns every default and checks every value before anything
loads: a bad value is one line on stderr, exit 2, no file written), loads the components with
:mod:`mlx_video.ltx2.loading` (text encoder first, freed before the transformer, as the official pipelines do),
runs :func:`mlx_video.ltx2.pipelines.generate` (which also makes the images' CRF round trip) and writes the mp4
(H.264 + AAC audio) atomically, with the full parameter set in its metadata; then reports timings and memory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from mlx_video.ltx2.loading import encode_text, load_components  # module names: tests replace them with tiny ones

from .common import fail as _fail
from .common import progress_bars, save_result

app = typer.Typer(add_completion=False)


def parse_image_spec(spec: str) -> tuple[str, int, float]:
    """``PATH[:FRAME[:STRENGTH]]`` -> (path, pixel frame, strength); frame 0 and strength 1 by default.
    Raises typer.BadParameter for a non-integer frame or a strength outside [0, 1]."""
    parts = spec.rsplit(":", 2)
    nums = []
    while len(parts) > 1 and len(nums) < 2:
        try:
            float(parts[-1])
        except ValueError:
            break
        nums.insert(0, parts.pop())
    path = ":".join(parts)
    frame, strength = 0, 1.0
    try:
        if nums:
            frame = int(nums[0])
        if len(nums) > 1:
            strength = float(nums[1])
    except ValueError:
        raise typer.BadParameter(f"--image {spec!r}: expected PATH[:FRAME[:STRENGTH]] with an integer frame") from None
    if not 0.0 <= strength <= 1.0:
        raise typer.BadParameter(f"--image {spec!r}: strength must be in [0, 1]")
    return path, frame, strength


def read_image(path: str) -> np.ndarray:
    """Image file -> uint8 RGB [H, W, 3] (the pipeline makes the CRF round trip). Raises ImageError."""
    from mlx_video.io.images import load_image

    return np.asarray(load_image(path), dtype=np.uint8)


def _given(**kw) -> dict:
    """The options the user typed (the library fills in every default)."""
    return {k: v for k, v in kw.items() if v is not None}


def _memory(model_dir, s, budget_gb) -> str:
    """One line: the run's estimated peak per phase (mlx_video.memory.ltx_phase_peaks); MemoryBudgetError (a
    ValueError) when it exceeds ``budget_gb`` GiB (default: what MLX may use here). Loads nothing."""
    from mlx_video import memory

    if budget_gb is not None and not (budget_gb > 0 and budget_gb != float("inf")):
        raise ValueError(f"--memory-budget must be a positive number of GB, got {budget_gb}")
    phases = memory.ltx_phase_peaks(model_dir, s.pipeline, s.num_frames, s.height, s.width)
    budget = None if budget_gb is None else budget_gb * memory.GIB
    peak = memory.ltx_check(phases, budget, s.num_frames, s.height, s.width)
    return (
        f"memory estimate for {s.num_frames}x{s.height}x{s.width} ({s.pipeline}): peak about {peak / memory.GIB:.2f}"
        f" GiB ({', '.join(f'{k} {v / memory.GIB:.2f}' for k, v in phases.items())})"
    )


def _blocks(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"--stg-blocks: expected comma-separated block indices, got {value!r}") from None


@app.command()
def generate(
    model: str = typer.Option(
        ...,
        "--model",
        help="converted folder, Lightricks checkpoint (file or folder) or Lightricks/LTX-2 | Lightricks/LTX-2.3",
    ),
    pipeline: Optional[str] = typer.Option(
        None, "--pipeline", help="distilled (default) | dev | dev-two-stage | dev-two-stage-hq"
    ),
    prompt: str = typer.Option(..., "--prompt"),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", "--negative_prompt"),
    image: Optional[list[str]] = typer.Option(
        None,
        "--image",
        help="PATH[:FRAME[:STRENGTH]], repeatable; frame 0 replaces the first latent frame, later frames guide",
    ),
    end_image: Optional[str] = typer.Option(None, "--end-image", help="image for the last frame (a guide)"),
    end_image_strength: float = typer.Option(1.0, "--end-image-strength"),
    image_crf: Optional[int] = typer.Option(
        None, "--image-crf", help="H.264 CRF of the image round trip (default 33, 0: none)"
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="do not decode / mux the (jointly generated) audio"),
    height: Optional[int] = typer.Option(None, "--height", "-H", help="default: the pipeline's official size"),
    width: Optional[int] = typer.Option(None, "--width", "-W"),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="8k+1 (default 121)"),
    fps: Optional[float] = typer.Option(None, "--fps", help="default 24"),
    steps: Optional[int] = typer.Option(None, "--steps", help="dev pipelines (default: 40 LTX-2, 30 LTX-2.3, 15 HQ)"),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale"),
    audio_cfg_scale: Optional[float] = typer.Option(None, "--audio-cfg-scale"),
    stg_scale: Optional[float] = typer.Option(None, "--stg-scale"),
    audio_stg_scale: Optional[float] = typer.Option(None, "--audio-stg-scale"),
    stg_blocks: Optional[str] = typer.Option(None, "--stg-blocks", help="e.g. 29 (LTX-2) or 28 (LTX-2.3)"),
    rescale_scale: Optional[float] = typer.Option(None, "--rescale-scale"),
    audio_rescale_scale: Optional[float] = typer.Option(None, "--audio-rescale-scale"),
    modality_scale: Optional[float] = typer.Option(None, "--modality-scale", help="video: audio->video guidance"),
    audio_modality_scale: Optional[float] = typer.Option(None, "--audio-modality-scale"),
    lora_strength_stage_1: Optional[float] = typer.Option(None, "--lora-strength-stage-1", help="HQ (0.25)"),
    lora_strength_stage_2: Optional[float] = typer.Option(
        None, "--lora-strength-stage-2", "--lora-strength", help="two-stage dev pipelines (1.0, HQ 0.5)"
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="default 10 (official); negative: drawn at random"),
    gemma: Optional[str] = typer.Option(None, "--gemma", help="Gemma 3 folder (when converting a checkpoint)"),
    output_path: Optional[Path] = typer.Option(None, "--output-path", "--output", "-o"),
    memory_budget: Optional[float] = typer.Option(
        None,
        "--memory-budget",
        "--memory_budget",
        help="GB (GiB) the run may use (default: what this machine lets MLX use); a run estimated to need more "
        "is refused before loading",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "--dry_run", help="print the memory estimate, load nothing, exit"),
    ulysses_size: int = typer.Option(
        1,
        "--ulysses-size",
        "--ulysses_size",
        help="sequence-parallel ranks (mlx.launch world size), docs/distributed.md",
    ),
):
    """Generate a video with audio from a prompt and optional images (LTX-2 / LTX-2.3)."""
    from rich.console import Console

    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError
    from mlx_video.io.video import OutputPathError, check_output_path
    from mlx_video.io.weights import WeightsError
    from mlx_video.ltx2 import pipelines as P
    from mlx_video.ltx2.denoise import TextContext
    from mlx_video.ltx2.loading import read_config, resolve_ltx2_model
    from mlx_video.result import NonFiniteError

    console, drawn = Console(stderr=True), seed is not None and seed < 0
    errors = (ValueError, ImageError, WeightsError, OutputPathError, DownloadError, typer.BadParameter, NonFiniteError)
    try:
        from mlx_video.distributed import active, on_root
        from mlx_video.distributed import init as init_sp

        sp = init_sp(ulysses_size)  # None for one rank; else rank 0 prints, writes and encodes text
        blocks = _blocks(stg_blocks)
        settings = P.LTXSettings(
            **_given(
                pipeline=pipeline,
                height=height,
                width=width,
                num_frames=num_frames,
                fps=fps,
                steps=steps,
                video_guidance=_given(
                    cfg_scale=cfg_scale,
                    stg_scale=stg_scale,
                    stg_blocks=blocks,
                    rescale_scale=rescale_scale,
                    modality_scale=modality_scale,
                )
                or None,
                audio_guidance=_given(
                    cfg_scale=audio_cfg_scale,
                    stg_scale=audio_stg_scale,
                    stg_blocks=blocks,
                    rescale_scale=audio_rescale_scale,
                    modality_scale=audio_modality_scale,
                )
                or None,
                lora_strength_stage_1=lora_strength_stage_1,
                lora_strength_stage_2=lora_strength_stage_2,
                negative_prompt=negative_prompt,
                image_crf=image_crf,
                seed=seed,
            )
        )
        if drawn:
            settings.seed = None  # drawn by with_seed
        settings = settings.validate().with_seed()
        if sp is not None:
            console.quiet, settings.seed = not sp.is_root, sp.same(settings.seed)  # every rank: rank 0's seed
        specs = [parse_image_spec(s) for s in image or []]
        if end_image is not None:
            specs.append((end_image, settings.num_frames - 1, end_image_strength))
        images = [P.ImageCondition(read_image(p), f, s) for p, f, s in specs]
        settings.validate(images)
        output_path = check_output_path(
            output_path or Path(f"ltx2_{settings.pipeline}_{time.strftime('%Y%m%d_%H%M%S')}.mp4"), (".mp4",)
        )
        model_dir = resolve_ltx2_model(model, settings.variant, gemma)
        cfg = read_config(model_dir)
        estimate = _memory(model_dir, settings, memory_budget)
        if dry_run:
            typer.echo(estimate)
            return
        t0 = time.perf_counter()
        with console.status("encoding the prompt"):

            def encode():
                p, n = encode_text(model_dir, cfg, prompt, settings.negative_text)
                return [p.video, p.audio] + ([] if n is None else [n.video, n.audio])

            ctx = on_root(encode, sp.group if sp is not None else None)
            pos, neg = TextContext(*ctx[:2]), (TextContext(*ctx[2:]) if len(ctx) > 2 else None)
        t_text, t0 = time.perf_counter() - t0, time.perf_counter()
        with console.status("loading the transformer, VAEs and upsampler"):
            comps = load_components(model_dir, cfg, settings.pipeline, settings.lora_strengths, bool(images))
        t_load = time.perf_counter() - t0
        console.print(f"{settings.pipeline}, seed: {settings.seed}" + (" (drawn at random)" if drawn else ""))
        with progress_bars(console) as progress, active(sp):  # the transformer splits its tokens over the ranks
            res = P.generate(comps, settings, pos, neg, images, decode_audio=not no_audio, progress=progress)
    except errors as e:
        _fail(str(e))
    if sp is not None and not sp.is_root:
        return
    meta = dict(res.params, model=str(model), prompt=prompt, generator="mlx_video", seed_drawn=drawn)
    meta["images"] = [dict(path=p, **m) for (p, _, _), m in zip(specs, res.params["images"])]
    res.timings = {"text encode": t_text, "load": t_load, **res.timings}
    save_result(res, output_path, meta, console)
