"""`mlx_video generate` for LTX-2 / LTX-2.3 (pipelines distilled, dev, dev-two-stage, dev-two-stage-hq).

Reached through :mod:`mlx_video.cli` (LTX-only options or a --model naming LTX). Parses, loads the
components with :mod:`mlx_video.ltx2.loading` (text encoder first, freed before the transformer, as the
official pipelines do), runs :func:`mlx_video.ltx2.pipelines.generate` and writes the mp4 (H.264 +
AAC audio) atomically. Images are read as the official CLI reads them: a CRF-33 H.264 round trip of
the single frame (``--image-crf 0`` skips it), then the pipeline's bilinear cover-resize + crop per stage.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from .common import fail as _fail, progress_bars
from mlx_video.ltx2.loading import encode_text, load_components  # module names: tests replace them with tiny ones

app = typer.Typer(add_completion=False)

# Our own short default (the official default negative prompt is a longer list of the same kind).
DEFAULT_NEGATIVE_PROMPT = ("worst quality, low quality, blurry, out of focus, jittery motion, flicker, distorted "
                           "anatomy, deformed hands and faces, watermark, text, static frame, noisy audio")


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


def read_image(path: str, crf: int) -> np.ndarray:
    """Image file -> float32 [H, W, 3] in [-1, 1] after the CRF round trip. Raises ImageError."""
    from mlx_video.io.images import h264_roundtrip, load_image

    img = np.asarray(load_image(path), dtype=np.uint8)
    return h264_roundtrip(img, crf).astype(np.float32) / 127.5 - 1.0


def _guidance(default, cfg_scale, stg_scale, stg_blocks, rescale, modality):
    """The pipeline's default GuidanceParams with every value the user typed (even one equal to the default)."""
    typed = {k: v for k, v in dict(cfg_scale=cfg_scale, stg_scale=stg_scale, stg_blocks=stg_blocks,
                                   rescale_scale=rescale, modality_scale=modality).items() if v is not None}
    return replace(default, **typed)


def _blocks(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"--stg-blocks: expected comma-separated block indices, got {value!r}") from None


@app.command()
def generate(
    model: str = typer.Option(..., "--model", help="converted folder, Lightricks checkpoint (file or folder) or "
                              "Lightricks/LTX-2 | Lightricks/LTX-2.3"),
    pipeline: str = typer.Option("distilled", "--pipeline", help="distilled | dev | dev-two-stage | dev-two-stage-hq"),
    prompt: str = typer.Option(..., "--prompt"),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", "--negative_prompt"),
    image: Optional[List[str]] = typer.Option(None, "--image", help="PATH[:FRAME[:STRENGTH]], repeatable; frame 0 "
                                              "replaces the first latent frame, later frames guide"),
    end_image: Optional[str] = typer.Option(None, "--end-image", help="image for the last frame (a guide)"),
    end_image_strength: float = typer.Option(1.0, "--end-image-strength"),
    image_crf: int = typer.Option(33, "--image-crf", help="H.264 CRF of the image round trip (0: none)"),
    no_audio: bool = typer.Option(False, "--no-audio", help="do not decode / mux the (jointly generated) audio"),
    height: int = typer.Option(512, "--height", "-H"),
    width: int = typer.Option(768, "--width", "-W"),
    num_frames: int = typer.Option(121, "--num-frames", help="8k+1"),
    fps: float = typer.Option(24.0, "--fps"),
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
    lora_strength: Optional[float] = typer.Option(None, "--lora-strength", help="dev-two-stage stage 2 (1.0)"),
    lora_strength_stage_1: Optional[float] = typer.Option(None, "--lora-strength-stage-1", help="HQ (0.25)"),
    lora_strength_stage_2: Optional[float] = typer.Option(None, "--lora-strength-stage-2", help="HQ (0.5)"),
    seed: int = typer.Option(-1, "--seed", help="-1: random"),
    gemma: Optional[str] = typer.Option(None, "--gemma", help="Gemma 3 folder (when converting a checkpoint)"),
    output_path: Optional[Path] = typer.Option(None, "--output-path", "--output", "-o"),
    ulysses_size: int = typer.Option(1, "--ulysses-size", "--ulysses_size",
                                     help="sequence-parallel ranks (mlx.launch world size), docs/distributed.md"),
):
    """Generate a video with audio from a prompt and optional images (LTX-2 / LTX-2.3)."""
    import random

    import mlx.core as mx
    from rich.console import Console

    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError, to_uint8
    from mlx_video.io.video import OutputPathError, check_output_path, write_video
    from mlx_video.io.weights import WeightsError
    from mlx_video.ltx2 import pipelines as P
    from mlx_video.ltx2.denoise import TextContext

    console = Console(stderr=True)
    try:
        from mlx_video.distributed import active, on_root
        from mlx_video.distributed import init as init_sp

        sp = init_sp(ulysses_size)  # None for one rank; else rank 0 prints, writes and encodes text
        P.check_pipeline(pipeline)
        specs = [parse_image_spec(s) for s in image or []]
        if end_image is not None:
            if not 0.0 <= end_image_strength <= 1.0:
                raise ValueError("--end-image-strength must be in [0, 1]")
            specs.append((end_image, num_frames - 1, end_image_strength))
        blocks = _blocks(stg_blocks)
        guided = (cfg_scale, audio_cfg_scale, stg_scale, audio_stg_scale, blocks, rescale_scale, audio_rescale_scale,
                  modality_scale, audio_modality_scale, steps)
        if pipeline == "distilled" and any(v is not None for v in guided):
            raise ValueError("the distilled pipeline has fixed steps and no guidance: drop the guidance options")
        two = pipeline == "dev-two-stage"
        hq = pipeline == "dev-two-stage-hq"
        if (lora_strength is not None and not two) or \
                ((lora_strength_stage_1, lora_strength_stage_2) != (None, None) and not hq):
            raise ValueError("--lora-strength is for dev-two-stage, --lora-strength-stage-1/2 for dev-two-stage-hq")
        lora = (lora_strength_stage_1 if lora_strength_stage_1 is not None else 0.25,
                lora_strength_stage_2 if lora_strength_stage_2 is not None else 0.5) if hq else \
            (0.0, lora_strength if lora_strength is not None else 1.0)
        if seed < 0:
            seed = random.randint(0, 2 ** 31 - 1)
        if sp is not None:
            console.quiet, seed = not sp.is_root, sp.same(seed)
        settings = P.Settings(pipeline, height, width, num_frames, fps, steps, seed=seed)
        P.plan_stages(settings)  # sizes and frame count, before anything is loaded
        for path, frame, _ in specs:
            if not 0 <= frame < num_frames:
                raise ValueError(f"image {path}: frame index {frame} is past the last frame ({num_frames - 1})")
        images = [P.ImageCondition(read_image(p, image_crf), f, s) for p, f, s in specs]
        if output_path is None:
            output_path = Path(f"ltx2_{pipeline}_{time.strftime('%Y%m%d_%H%M%S')}.mp4")
        output_path = check_output_path(output_path, (".mp4",))
        from mlx_video.ltx2.loading import read_config, resolve_ltx2_model

        model_dir = resolve_ltx2_model(model, "distilled" if pipeline == "distilled" else "dev", gemma)
        cfg = read_config(model_dir)
        version = cfg.get("model_version") or "2"
        _, dv, da = P.default_guidance(pipeline, version)
        if dv is not None:
            settings.video_guidance = _guidance(dv, cfg_scale, stg_scale, blocks, rescale_scale, modality_scale)
            settings.audio_guidance = _guidance(da, audio_cfg_scale, audio_stg_scale, blocks, audio_rescale_scale,
                                                audio_modality_scale)
        t0 = time.perf_counter()
        neg = (negative_prompt if negative_prompt is not None else DEFAULT_NEGATIVE_PROMPT) if dv is not None else None
        with console.status("encoding the prompt"):
            def encode():
                p, n = encode_text(model_dir, cfg, prompt, neg)
                return [p.video, p.audio] + ([] if n is None else [n.video, n.audio])
            ctx = on_root(encode, sp.group if sp is not None else None)
            pos, neg_ctx = TextContext(*ctx[:2]), (TextContext(*ctx[2:]) if len(ctx) > 2 else None)
        t_text = time.perf_counter() - t0
        with console.status("loading the transformer, VAEs and upsampler"):
            t0 = time.perf_counter()
            comps = load_components(model_dir, cfg, pipeline, lora, bool(images))
            t_load = time.perf_counter() - t0
    except (ValueError, ImageError, WeightsError, OutputPathError, DownloadError, typer.BadParameter) as e:
        _fail(str(e))

    with progress_bars(console) as progress:
        try:
            with active(sp):  # the transformer calls split their video tokens over the ranks
                res = P.generate(comps, settings, pos, neg_ctx, images, decode_audio=not no_audio, progress=progress)
        except (ValueError, ImageError, WeightsError) as e:
            _fail(str(e))
    if sp is not None and not sp.is_root:
        return
    frames = to_uint8(np.array(res.video[0].astype(mx.float32)))
    audio = None if res.audio is None else np.array(res.audio.astype(mx.float32))
    meta = dict(model=str(model), pipeline=pipeline, prompt=prompt, seed=seed, height=height, width=width,
                num_frames=num_frames, fps=fps, steps=steps, images=[list(s) for s in specs],
                generator="mlx_video")
    write_video(output_path, frames, fps, meta, audio=audio, sample_rate=res.sample_rate)
    timings = {"text encode": t_text, "load": t_load, **res.timings}
    for k, v in timings.items():
        peak = res.stage_peak_gb.get(k)
        console.print(f"{k:>14}: {v:8.2f} s" + (f"   peak {peak:6.2f} GB" if peak is not None else ""))
    console.print(f"{'peak memory':>14}: {res.peak_memory_gb:8.2f} GB")
    console.print(f"saved {output_path} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {fps:g} fps"
                  + (f", audio {res.sample_rate} Hz" if audio is not None else "") + ")")
