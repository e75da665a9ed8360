"""`mlx_video generate` for LTX-2 / LTX-2.3 (pipelines distilled, dev, dev-two-stage, dev-two-stage-hq).

Reached through :mod:`mlx_video.cli` (LTX-only options or a --model naming LTX). Parses the options into
:class:`mlx_video.ltx2.settings.LTXSettings` (which owns every default and checks every value before anything
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

from mlx_video.ltx2.loading import (  # module names: tests replace them with tiny ones
    check_ic_loras,
    encode_text,
    enhance_prompt,
    load_components,
    with_ic_loras,
)

from .common import (
    check_stream_blocks,
    file_progress,
    help_panels,
    model_path,
    phase,
    progress_bars,
    progress_mode,
    save_result,
)
from .common import fail as _fail

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


def _memory(model_dir, s, budget_gb, stream_blocks=None, dequantize_blocks=None) -> str:
    """One line: the run's estimated peak per phase (mlx_video.ltx2.memory.ltx_phase_peaks, with ``stream_blocks``
    resident blocks when streaming and the per-block dequantization ``dequantize_blocks`` chooses);
    MemoryBudgetError (a ValueError) when it exceeds ``budget_gb`` GiB (default: what MLX may use here). Loads
    nothing."""
    from mlx_video.ltx2 import memory

    if budget_gb is not None and not (budget_gb > 0 and budget_gb != float("inf")):
        raise ValueError(f"--memory-budget must be a positive number of GB, got {budget_gb}")
    height, width = s.size()  # the pipeline's default where not given
    phases = memory.ltx_phase_peaks(
        model_dir,
        s.pipeline,
        s.num_frames,
        height,
        width,
        stream_blocks=stream_blocks or None,
        dequantize_blocks=dequantize_blocks,
    )
    budget = None if budget_gb is None else budget_gb * memory.GIB
    peak = memory.ltx_check(phases, budget, s.num_frames, height, width)
    streamed = f", transformer blocks streamed ({stream_blocks} resident)" if stream_blocks else ""
    return (
        f"memory estimate for {s.num_frames}x{height}x{width} ({s.pipeline}{streamed}): peak about "
        f"{peak / memory.GIB:.2f} GiB ({', '.join(f'{k} {v / memory.GIB:.2f}' for k, v in phases.items())})"
    )


def _blocks(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"--stg-blocks: expected comma-separated block indices, got {value!r}") from None


def _read_audio(settings, path: str | None, start: float, max_duration: float | None):
    """``--audio`` for pipeline a2vid as an AudioCondition, read and checked against the clip before anything
    loads (default duration: the clip's, as the official CLI). None for other pipelines; ValueError / AudioError
    for audio given to another pipeline, none given to a2vid, or an unreadable or too short file."""
    from mlx_video.io.audio import read_audio
    from mlx_video.ltx2.settings import AudioCondition

    if settings.pipeline != "a2vid":
        if path is not None:
            raise ValueError(f"--audio is for --pipeline a2vid, not {settings.pipeline}")
        return None
    if path is None:
        raise ValueError("--pipeline a2vid needs --audio PATH")
    if max_duration is None:
        max_duration = settings.num_frames / settings.fps
    waveform, rate = read_audio(path, start, max_duration)
    cond = AudioCondition(waveform, rate, start, max_duration)
    cond.check(settings.num_frames, settings.fps)
    return cond


def _read_source(settings, path: str | None, span, keep_video: bool, keep_audio: bool, typed: list[str]):
    """``--video`` + ``--retake START END`` for pipelines retake / retake-distilled as a RetakeSource: the video's
    metadata checked first (8k+1 frames >= 9, sides multiples of 32, the range inside it), then every frame and
    the audio stream (if any) read, all before anything loads. None for other pipelines. ValueError /
    VideoError / AudioError for retake options given to another pipeline, a missing option, size / length
    options given to retake (it keeps the source's), or an unreadable or unsuitable file."""
    from mlx_video.io.audio import read_audio
    from mlx_video.io.video import read_video, video_info
    from mlx_video.ltx2.settings import RETAKE, AudioCondition, RetakeSource, check_retake

    if settings.pipeline not in RETAKE:
        given = [n for n, v in (("--video", path), ("--retake", span)) if v is not None]
        given += [n for n, v in (("--keep-video", keep_video), ("--keep-audio", keep_audio)) if v]
        if given:
            raise ValueError(f"{', '.join(given)}: for --pipeline retake, not {settings.pipeline}")
        return None
    if path is None or span is None:
        raise ValueError("--pipeline retake needs --video PATH and --retake START END (seconds)")
    if typed:
        raise ValueError(f"retake keeps the source video's size, length and fps: drop {', '.join(typed)}")
    info = video_info(path)
    check_retake(info.frames, info.height, info.width, info.fps, *span)
    audio = AudioCondition(*read_audio(path)) if info.has_audio else None
    src = RetakeSource(read_video(path, info.frames), info.fps, *span, audio, not keep_video, not keep_audio)
    src.check()
    return src


def parse_strength_spec(spec: str, option: str) -> tuple[str, float]:
    """``PATH[:STRENGTH]`` -> (path, strength in [0, 1], default 1). Raises typer.BadParameter otherwise."""
    path, _, tail = spec.rpartition(":")
    if not path:
        return spec, 1.0
    try:
        strength = float(tail)
    except ValueError:
        return spec, 1.0  # a ':' inside the path
    if not 0.0 <= strength <= 1.0:
        raise typer.BadParameter(f"{option} {spec!r}: strength must be in [0, 1]")
    return path, strength


def _read_controls(settings, videos, loras, mask_path):
    """ic-lora's control videos (read and checked against the clip before anything loads) and IC-LoRA specs.
    ([], []) for other pipelines. Raises ValueError / WeightsError for options given to another pipeline,
    no control video or no LoRA for ic-lora, a missing file, or a control video too short for the clip."""
    from mlx_video.io.images import bilinear_cover_crop
    from mlx_video.io.video import read_video_frames
    from mlx_video.ltx2.settings import ControlVideo
    from mlx_video.nn.lora import parse_lora_spec

    if settings.pipeline != "ic-lora":
        if videos or loras or mask_path:
            raise ValueError(
                f"--control_video, --lora and the attention mask are for --pipeline ic-lora, not {settings.pipeline}"
            )
        return [], []
    if not videos:
        raise ValueError("--pipeline ic-lora needs --control_video PATH[:STRENGTH]")
    if not loras:
        raise ValueError("--pipeline ic-lora needs --lora PATH (the IC-LoRA)")
    mask = None
    if mask_path is not None:  # official CLI: grayscale of the mask video at stage 1's size, in [0, 1]
        frames = read_video_frames(mask_path, settings.num_frames)
        h, w = (v // 2 for v in settings.size())
        mask = np.stack([bilinear_cover_crop(f, h, w).mean(-1) / 255.0 for f in frames]).clip(0.0, 1.0)
    controls = []
    for i, spec in enumerate(videos):
        path, strength = parse_strength_spec(spec, "--control_video")
        cv = ControlVideo(read_video_frames(path, settings.num_frames), strength, mask)
        cv.check(settings.num_frames, i)
        controls.append(cv)
    return controls, [parse_lora_spec(s) for s in loras]


@app.command()
def generate(
    model: str = typer.Option(
        ...,
        "--model",
        help="converted folder, Lightricks checkpoint (file or folder) or Lightricks/LTX-2 | Lightricks/LTX-2.3",
    ),
    pipeline: Optional[str] = typer.Option(
        None,
        "--pipeline",
        help="distilled (default) | dev | dev-two-stage | dev-two-stage-hq | a2vid | ic-lora | keyframes | retake",
    ),
    prompt: str = typer.Option(..., "--prompt", help="what the video (and its audio) shows"),
    negative_prompt: Optional[str] = typer.Option(
        None, "--negative-prompt", "--negative_prompt", help="what to steer away from (CFG)"
    ),
    image: Optional[list[str]] = typer.Option(
        None,
        "--image",
        help="PATH[:FRAME[:STRENGTH]], repeatable; frame 0 replaces the first latent frame, later frames guide",
    ),
    end_image: Optional[str] = typer.Option(None, "--end-image", help="image for the last frame (a guide)"),
    end_image_strength: float = typer.Option(1.0, "--end-image-strength", help="0..1"),
    image_crf: Optional[int] = typer.Option(
        None, "--image-crf", help="H.264 CRF of the images' round trip, 0..51 (0: none)"
    ),
    audio: Optional[str] = typer.Option(
        None, "--audio", "--audio-path", help="a2vid: the audio file (any format PyAV reads) the video follows"
    ),
    audio_start_time: float = typer.Option(0.0, "--audio-start-time", help="a2vid: seconds into the audio file"),
    audio_max_duration: Optional[float] = typer.Option(
        None, "--audio-max-duration", help="a2vid: seconds of audio to read (default: the clip's length)"
    ),
    video: Optional[str] = typer.Option(
        None, "--video", "--video-path", help="retake: the source video (its size, length and fps are kept)"
    ),
    retake: Optional[tuple[float, float]] = typer.Option(
        None, "--retake", help="retake: START END, the seconds to regenerate (the rest is kept)"
    ),
    distilled: bool = typer.Option(
        False, "--distilled", help="retake on the distilled checkpoint: 8 fixed steps, no guidance"
    ),
    keep_video: bool = typer.Option(False, "--keep-video", help="retake: regenerate only the audio in the range"),
    keep_audio: bool = typer.Option(False, "--keep-audio", help="retake: regenerate only the video in the range"),
    control_video: Optional[list[str]] = typer.Option(
        None,
        "--control_video",
        "--control-video",
        "--video-conditioning",
        help="ic-lora: PATH[:STRENGTH] (repeatable), a control video (depth, pose, edges, ...) as in-context tokens",
    ),
    lora: Optional[list[str]] = typer.Option(
        None, "--lora", help="ic-lora: PATH[:STRENGTH] (repeatable), the IC-LoRA file(s) (ltx-core key format)"
    ),
    conditioning_attention_strength: Optional[float] = typer.Option(
        None, "--conditioning-attention-strength", help="ic-lora: attention to the control tokens in [0, 1] (1)"
    ),
    conditioning_attention_mask: Optional[str] = typer.Option(
        None, "--conditioning-attention-mask", help="ic-lora: a grayscale mask video (white = full attention)"
    ),
    skip_stage_2: bool = typer.Option(False, "--skip-stage-2", help="ic-lora: stop after stage 1 (half size)"),
    enhance: bool = typer.Option(
        False,
        "--enhance_prompt",
        "--enhance-prompt",
        help="rewrite the prompt with Gemma 3 and the official t2v / i2v system prompt (stored in the metadata)",
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="do not decode / mux the (jointly generated) audio"),
    height: Optional[int] = typer.Option(None, "--height", "-H", help="pixels, a multiple of 64 (dev: 32)"),
    width: Optional[int] = typer.Option(None, "--width", "-W", help="pixels, a multiple of 64 (dev: 32)"),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="pixel frames, 8k+1"),
    fps: Optional[float] = typer.Option(None, "--fps", help="frames per second (also sets the audio length)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="denoising steps (dev pipelines)"),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale"),
    audio_cfg_scale: Optional[float] = typer.Option(None, "--audio-cfg-scale"),
    stg_scale: Optional[float] = typer.Option(None, "--stg-scale"),
    audio_stg_scale: Optional[float] = typer.Option(None, "--audio-stg-scale"),
    stg_blocks: Optional[str] = typer.Option(None, "--stg-blocks", help="e.g. 29 (LTX-2) or 28 (LTX-2.3)"),
    rescale_scale: Optional[float] = typer.Option(None, "--rescale-scale"),
    audio_rescale_scale: Optional[float] = typer.Option(None, "--audio-rescale-scale"),
    modality_scale: Optional[float] = typer.Option(None, "--modality-scale", help="video: audio->video guidance"),
    audio_modality_scale: Optional[float] = typer.Option(None, "--audio-modality-scale"),
    lora_strength_stage_1: Optional[float] = typer.Option(
        None, "--lora-strength-stage-1", help="two-stage dev pipelines: the distilled LoRA in stage 1"
    ),
    lora_strength_stage_2: Optional[float] = typer.Option(
        None,
        "--lora-strength-stage-2",
        "--lora-strength",
        help="two-stage dev pipelines: the distilled LoRA in stage 2",
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="any integer (reduced mod 2**32); negative: drawn at random"
    ),
    gemma: Optional[str] = typer.Option(None, "--gemma", help="Gemma 3 folder (when converting a checkpoint)"),
    local_files_only: bool = typer.Option(
        False,
        "--local_files_only",
        "--local-files-only",
        help="use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1)",
    ),
    output_path: Optional[Path] = typer.Option(None, "--output-path", "--output", "-o", help="output .mp4"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing but errors"),
    memory_budget: Optional[float] = typer.Option(
        None,
        "--memory-budget",
        "--memory_budget",
        help="GB (GiB) the run may use (default: what this machine lets MLX use); a run estimated to need more "
        "is refused before loading",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "--dry_run", help="print the memory estimate, load nothing, exit"),
    stream_blocks: Optional[int] = typer.Option(
        None,
        "--stream_blocks",
        "--stream-blocks",
        help="read the transformer blocks from the weights file just in time, N resident at once "
        "(docs/streaming.md); 0: all resident",
    ),
    dequantize_blocks: Optional[bool] = typer.Option(
        None,
        "--dequantize_blocks/--no-dequantize_blocks",
        "--dequantize-blocks/--no-dequantize-blocks",
        help="quantized transformer: dequantize each block to the compute dtype before it runs (fast when "
        "compute-bound), or quantized matmuls; default: chosen per backend and token count",
    ),
    ulysses_size: int = typer.Option(
        1,
        "--ulysses-size",
        "--ulysses_size",
        help="sequence-parallel ranks (mlx.launch world size), docs/distributed.md",
    ),
):
    """Generate a video with audio from a prompt and optional images (LTX-2 / LTX-2.3)."""
    from rich.console import Console

    from mlx_video.io.audio import AudioError
    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError
    from mlx_video.io.video import OutputPathError, check_output_path
    from mlx_video.io.weights import WeightsError
    from mlx_video.ltx2 import pipelines as P
    from mlx_video.ltx2.denoise import TextContext
    from mlx_video.ltx2.loading import read_config, resolve_ltx2_model
    from mlx_video.result import NonFiniteError

    console, drawn = Console(stderr=True, quiet=quiet), seed is not None and seed < 0
    from mlx_video.io.video import VideoError

    errors = (
        ValueError,
        VideoError,
        AudioError,
        ImageError,
        WeightsError,
        OutputPathError,
        DownloadError,
        typer.BadParameter,
        NonFiniteError,
    )
    try:
        from mlx_video.distributed import active, on_root
        from mlx_video.distributed import init as init_sp

        check_stream_blocks(stream_blocks)
        sp = init_sp(ulysses_size)  # None for one rank; else rank 0 prints, writes and encodes text
        blocks = _blocks(stg_blocks)
        if distilled:
            if pipeline != "retake":
                raise ValueError("--distilled is the retake switch (--pipeline retake --distilled)")
            pipeline = "retake-distilled"
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
                skip_stage_2=skip_stage_2 or None,
                conditioning_attention_strength=conditioning_attention_strength,
            )
        )
        if drawn:
            settings.seed = None  # drawn by with_seed
        settings = settings.validate().with_seed()
        if sp is not None:
            console.quiet, settings.seed = quiet or not sp.is_root, sp.same(settings.seed)  # every rank: rank 0's seed
        specs = [parse_image_spec(s) for s in image or []]
        if end_image is not None:
            specs.append((end_image, settings.num_frames - 1, end_image_strength))
        images = [P.ImageCondition(read_image(p), f, s) for p, f, s in specs]
        typed = [n for n, v in (("--height", height), ("--width", width), ("--num-frames", num_frames)) if v]
        source = _read_source(settings, video, retake, keep_video, keep_audio, typed + ["--fps"] * (fps is not None))
        if source is not None:
            if images:
                raise ValueError(f"{settings.pipeline} takes no images")
            settings = source.settings(settings)
        settings.validate(images)
        given_audio = _read_audio(settings, audio, audio_start_time, audio_max_duration)
        controls, loras = _read_controls(settings, control_video, lora, conditioning_attention_mask)
        output_path = check_output_path(
            output_path or Path(f"ltx2_{settings.pipeline}_{time.strftime('%Y%m%d_%H%M%S')}.mp4"), (".mp4",)
        )
        with file_progress(console, progress_mode(console, quiet)) as files:
            model_dir = resolve_ltx2_model(
                model,
                settings.variant,
                gemma,
                pipeline=settings.pipeline,
                local_files_only=local_files_only,
                progress=files,
            )
        cfg = read_config(model_dir)
        if loras:
            check_ic_loras(cfg, loras)  # a LoRA for another model: refused before the text encoder runs
        estimate = _memory(model_dir, settings, memory_budget, stream_blocks, dequantize_blocks)
        if dry_run:
            typer.echo(estimate)
            return
        t0 = time.perf_counter()
        enhanced = None
        if enhance and (sp is None or sp.is_root):  # only rank 0 encodes text
            with phase(console, "enhancing the prompt (Gemma 3)"):
                seed_e = settings.seed if settings.pipeline == "ic-lora" else 42  # ltx-pipelines' choices
                first = images[0].image if images else None  # ltx-pipelines: images[0], the i2v enhancer sees it
                enhanced = enhance_prompt(model_dir, cfg, prompt, first, seed_e)
            console.print(f"enhanced prompt: {enhanced}")
        text = prompt if enhanced is None else enhanced
        with phase(console, "encoding the prompt"):

            def encode():
                p, n = encode_text(model_dir, cfg, text, settings.negative_text)
                return [p.video, p.audio] + ([] if n is None else [n.video, n.audio])

            ctx = on_root(encode, sp.group if sp is not None else None)
            pos, neg = TextContext(*ctx[:2]), (TextContext(*ctx[2:]) if len(ctx) > 2 else None)
        t_text, t0 = time.perf_counter() - t0, time.perf_counter()
        with phase(console, "loading the transformer, VAEs and upsampler"):
            need_encoder = bool(images) or bool(controls) or source is not None
            jit = _given(stream_blocks=stream_blocks or None, dequantize_blocks=dequantize_blocks)  # block weights
            comps = load_components(model_dir, cfg, settings.pipeline, settings.lora_strengths, need_encoder, **jit)
            if loras:
                with_ic_loras(comps, loras)
        t_load = time.perf_counter() - t0
        console.print(f"{settings.pipeline}, seed: {settings.seed}" + (" (drawn at random)" if drawn else ""))
        with (
            progress_bars(console, progress_mode(console, quiet)) as progress,
            active(sp),
        ):  # the transformer splits its tokens over the ranks
            res = P.generate(
                comps,
                settings,
                pos,
                neg,
                images,
                decode_audio=not no_audio,
                progress=progress,
                audio=given_audio,
                source=source,
                controls=controls,
                release=True,  # one run: the transformer's memory goes to the decoders (as ltx-pipelines)
            )
    except errors as e:
        _fail(str(e))
    if sp is not None and not sp.is_root:
        return
    meta = dict(
        res.params,
        family="ltx2",
        model=model_path(model),
        prompt=prompt,
        generator="mlx_video",
        seed_drawn=drawn,
        no_audio=no_audio,
        gemma=gemma,
    )
    meta["images"] = [dict(path=model_path(p), **m) for (p, _, _), m in zip(specs, res.params["images"])]
    if enhanced is not None:
        meta["enhanced_prompt"] = enhanced
    if given_audio is not None:
        meta["audio"] = dict(path=model_path(audio), **res.params["audio"])
    if source is not None:
        meta["retake"] = dict(video=model_path(video), **res.params["retake"])
    if controls:
        paths = [parse_strength_spec(v, "--control_video")[0] for v in control_video]
        meta["controls"] = [dict(path=p, **m) for p, m in zip(paths, res.params["controls"])]
        meta["loras"] = [dict(path=str(p), strength=st) for p, st in loras]
        meta["conditioning_attention_mask"] = conditioning_attention_mask
    res.timings = {"text encode": t_text, "load": t_load, **res.timings}
    save_result(res, output_path, meta, console)


GUIDED = "the pipeline's, see mlx_video tasks"
help_panels(
    generate,
    {
        "memory_budget": ("Memory", "what MLX may use here"),
        "dry_run": ("Memory", None),
        "stream_blocks": ("Memory", "all resident"),
        "dequantize_blocks": ("Memory", "when it pays"),
        "audio": ("Images", None),
        "audio_start_time": ("Images", "0"),
        "audio_max_duration": ("Images", "the clip's length"),
        "video": ("Images", None),
        "retake": ("Images", None),
        "distilled": ("Model", None),
        "keep_video": ("Images", None),
        "keep_audio": ("Images", None),
        "control_video": ("Images", None),
        "lora": ("Model", None),
        "conditioning_attention_strength": ("Images", "1.0"),
        "conditioning_attention_mask": ("Images", None),
        "skip_stage_2": ("Advanced", None),
        "enhance": ("Prompt", None),
        "model": ("Model", None),
        "pipeline": ("Model", "distilled"),
        "gemma": ("Model", "found beside the checkpoint"),
        "local_files_only": ("Model", None),
        "lora_strength_stage_1": ("Model", "0 (HQ 0.25)"),
        "lora_strength_stage_2": ("Model", "1.0 (HQ 0.5)"),
        "prompt": ("Prompt", None),
        "negative_prompt": ("Prompt", "a short list of defects (guided pipelines)"),
        "image": ("Images", None),
        "end_image": ("Images", None),
        "end_image_strength": ("Images", None),
        "image_crf": ("Images", "33"),
        "height": ("Size and length", "the pipeline's: 1024 (dev 512, HQ 1088)"),
        "width": ("Size and length", "the pipeline's: 1536 (dev 768, HQ 1920)"),
        "num_frames": ("Size and length", "121"),
        "fps": ("Size and length", "24"),
        "steps": ("Sampling", "8 fixed (distilled); 40 LTX-2, 30 LTX-2.3, 15 HQ"),
        "cfg_scale": ("Sampling", GUIDED),
        "audio_cfg_scale": ("Sampling", GUIDED),
        "stg_scale": ("Sampling", GUIDED),
        "audio_stg_scale": ("Sampling", GUIDED),
        "stg_blocks": ("Sampling", GUIDED),
        "rescale_scale": ("Sampling", GUIDED),
        "audio_rescale_scale": ("Sampling", GUIDED),
        "modality_scale": ("Sampling", GUIDED),
        "audio_modality_scale": ("Sampling", GUIDED),
        "seed": ("Sampling", "10 (official)"),
        "no_audio": ("Output", None),
        "quiet": ("Output", None),
        "output_path": ("Output", "ltx2_PIPELINE_DATE_TIME.mp4"),
        "ulysses_size": ("Advanced", None),
    },
)
