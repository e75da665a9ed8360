"""`mlx_video generate` for the Wan family (the official Wan spellings: --task, --ckpt_dir, --frame_num, ...).

Reached through :mod:`mlx_video.cli`, which picks the family from the arguments.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from .common import (
    check_stream_blocks,
    dtype_of,
    fail,
    file_progress,
    help_panels,
    model_path,
    progress_bars,
    progress_mode,
    save_result,
    str2bool,
)

app = typer.Typer(add_completion=False)


def resolve_wan_model(
    ckpt_dir: str,
    console=None,
    dtype: str = "bfloat16",
    task: str | None = None,
    local_files_only: bool = False,
    mode: str | None = None,
) -> Path:
    """A converted folder for ``ckpt_dir`` (:func:`mlx_video.resolve.resolve`): used as is, or converted
    once in ``dtype`` into the cache (official or diffusers folder, or a repo id downloaded first: only the files
    ``task`` uses; cached files only with ``local_files_only``). With a ``console``, the download and conversion
    progress is shown on it (``mode``: see :func:`mlx_video.cli.common.progress_mode`)."""
    from mlx_video.resolve import resolve

    if console is None:
        return resolve(ckpt_dir, "wan", dtype=dtype, task=task, local_files_only=local_files_only)
    with file_progress(console, mode) as progress:
        return resolve(
            ckpt_dir,
            "wan",
            dtype=dtype,
            log=console.print,
            task=task,
            local_files_only=local_files_only,
            progress=progress,
        )


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
    task: str = typer.Option(
        "ti2v-5B",
        "--task",
        help="t2v-5B | ti2v-5B | mi2v-5B | t2v-1.3B | t2v-14B | i2v-14B | flf2v-14B | t2v-A14B | i2v-A14B | flf2v-A14B",
    ),
    ckpt_dir: str = typer.Option(
        ...,
        "--ckpt_dir",
        "--ckpt-dir",
        "--model",
        help="converted folder, official/diffusers checkpoint folder, or HF repo id",
    ),
    prompt: Optional[list[str]] = typer.Option(
        None, "--prompt", help="the prompt; with --segments K, repeat it K times for a prompt per segment"
    ),
    negative_prompt: Optional[str] = typer.Option(
        None, "--negative_prompt", "--negative-prompt", help="what to steer away from (CFG)"
    ),
    image: Optional[Path] = typer.Option(None, "--image", help="first frame (ti2v-5B, i2v-*)"),
    images: Optional[list[Path]] = typer.Option(
        None,
        "--images",
        help="anchor images (mi2v-5B, ti2v-5B): PATH, or PATH@FRAME[:STRENGTH] "
        "at a pixel frame (negative from the end), strength 0..1",
    ),
    first_frame: Optional[Path] = typer.Option(None, "--first_frame", "--first-frame", help="flf2v-*: first frame"),
    last_frame: Optional[Path] = typer.Option(None, "--last_frame", "--last-frame", help="flf2v-*: last frame"),
    bidirectional_sampling: bool = typer.Option(
        False,
        "--bidirectional_sampling",
        "--bidirectional-sampling",
        help="flf2v-*: WanFM forward + time-reversed passes (Euler)",
    ),
    bidirectional_mode: str = typer.Option(
        "faithful",
        "--bidirectional_mode",
        "--bidirectional-mode",
        help="faithful (WanFM: reversed RoPE, equals forward Euler) | reverse (backward pass keeps forward positions)",
    ),
    one_frame_inference: Optional[str] = typer.Option(
        None,
        "--one_frame_inference",
        "--one-frame-inference",
        help='musubi one-frame: "control_index=0;2,target_index=1"',
    ),
    control_image_path: Optional[list[Path]] = typer.Option(
        None, "--control_image_path", "--control-image-path", help="one-frame control images, in index order"
    ),
    image_path: Optional[Path] = typer.Option(None, "--image_path", "--image-path", help="one-frame: CLIP start image"),
    end_image_path: Optional[Path] = typer.Option(
        None, "--end_image_path", "--end-image-path", help="one-frame flf2v-14B: CLIP end image"
    ),
    video: Optional[Path] = typer.Option(
        None,
        "--video",
        help="video to video (SDEdit): the input video (t2v, "
        "ti2v-5B, mi2v-5B); frames and size from it unless --frame_num / --size",
    ),
    strength: Optional[float] = typer.Option(
        None,
        "--strength",
        help="video to video, 0..1: 0 keeps the input (VAE round trip), 1 ignores it (plain generation)",
    ),
    extend: Optional[Path] = typer.Option(
        None,
        "--extend",
        help="continue this video: t2v-5B / ti2v-5B anchor its last --overlap frames; i2v-* take its last frame "
        "as the first image, flf2v-* as the first frame (with --last_frame)",
    ),
    overlap: Optional[int] = typer.Option(
        None, "--overlap", help="extension: pixel frames shared by windows, crossfaded; 4j+1 (default 5), I2V: 1"
    ),
    segments: int = typer.Option(
        1, "--segments", help="windows to chain into one video (t2v-5B / ti2v-5B / i2v-*), each from the last"
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        help="few-step LoRA recipe: lightx2v-4step (Wan2.1 "
        "distill) | lightx2v-a14b-4step (Wan2.2 A14B): steps, guide 1, shift, solver",
    ),
    output_type: Optional[str] = typer.Option(
        None, "--output_type", "--output-type", help="video | images | latent_images (also saves the latent)"
    ),
    size: Optional[str] = typer.Option(None, "--size", help="W*H in pixels; with images the maximum area"),
    frame_num: Optional[int] = typer.Option(None, "--frame_num", "--frame-num", help="pixel frames, 4k+1"),
    sample_steps: Optional[int] = typer.Option(None, "--sample_steps", "--sample-steps", help="denoising steps"),
    sample_shift: Optional[float] = typer.Option(
        None, "--sample_shift", "--sample-shift", help="flow shift of the sigma schedule (> 0)"
    ),
    sample_solver: Optional[str] = typer.Option(
        None, "--sample_solver", "--sample-solver", help="unipc | dpm++ | euler | lightx2v | lightx2v-euler"
    ),
    sample_guide_scale: Optional[str] = typer.Option(
        None, "--sample_guide_scale", "--sample-guide-scale", help="a number, or LOW,HIGH for the A14B experts"
    ),
    seed: Optional[int] = typer.Option(
        None, "--base_seed", "--seed", help="any integer (reduced mod 2**32); negative: drawn at random"
    ),
    fps: Optional[int] = typer.Option(None, "--fps", help="output frames per second"),
    offload_model: Optional[str] = typer.Option(
        None,
        "--offload_model",
        "--offload-model",
        help="True/False: free the text encoder before the DiT runs and the DiT before the VAE decodes",
    ),
    save_file: Optional[Path] = typer.Option(
        None, "--save_file", "--save-file", "--output", "--save_path", help="output .mp4 (or .png for one frame)"
    ),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="compute dtype: bfloat16 | float32"),
    vae_dtype: Optional[str] = typer.Option(
        None, "--vae_dtype", "--vae-dtype", help="VAE compute dtype: float32 | bfloat16 (half the memory)"
    ),
    convert_model_dtype: bool = typer.Option(
        False,
        "--convert_model_dtype",
        "--convert-model-dtype",
        help="accepted as in the official CLI: the DiT already runs in --dtype",
    ),
    t5_cpu: bool = typer.Option(
        False,
        "--t5_cpu",
        "--t5-cpu",
        help="accepted as in the official CLI: with unified memory there is no separate "
        "device memory to spare; the text encoder is freed before the DiT runs",
    ),
    lora: Optional[list[str]] = typer.Option(None, "--lora", help="PATH[:STRENGTH], repeatable: merged into every DiT"),
    lora_high: Optional[list[str]] = typer.Option(
        None, "--lora_high", "--lora-high", help="PATH[:STRENGTH], repeatable: A14B high-noise expert only"
    ),
    lora_low: Optional[list[str]] = typer.Option(
        None, "--lora_low", "--lora-low", help="PATH[:STRENGTH], repeatable: A14B low-noise expert only"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing but errors"),
    local_files_only: bool = typer.Option(
        False,
        "--local_files_only",
        "--local-files-only",
        help="use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1)",
    ),
    # memory plan (mlx_video/memory.py, docs/memory.md)
    memory_budget: Optional[float] = typer.Option(
        None,
        "--memory_budget",
        "--memory-budget",
        help="GB (GiB) the run may use; default: what this machine lets MLX use (Metal: its recommended working "
        "set). Settings not given explicitly are chosen to fit; a run that cannot fit is refused before loading",
    ),
    dry_run: bool = typer.Option(
        False, "--dry_run", "--dry-run", help="print the memory plan and the estimated peak, load nothing, exit"
    ),
    batch_cfg: Optional[str] = typer.Option(
        None, "--batch_cfg", "--batch-cfg", help="True: both CFG branches in one batch (more memory); False: one by one"
    ),
    vae_tile: Optional[int] = typer.Option(
        None,
        "--vae_tile",
        "--vae-tile",
        help="VAE encode/decode in NxN-pixel tiles (overlap N/4; under mlx.launch split over the ranks); 0: untiled",
    ),
    quantize_bits: Optional[int] = typer.Option(
        None, "--quantize_bits", "--quantize-bits", help="quantize DiT and text encoder weights at load: 4 | 8 | 0 (no)"
    ),
    stream_blocks: Optional[int] = typer.Option(
        None,
        "--stream_blocks",
        "--stream-blocks",
        help="read the DiT blocks from the weights file just in time, N resident at once (docs/streaming.md); "
        "0: all resident",
    ),
    dequantize_blocks: Optional[str] = typer.Option(
        None,
        "--dequantize_blocks",
        "--dequantize-blocks",
        help="quantized DiT: True: dequantize each block to the compute dtype before it runs (fast when "
        "compute-bound); False: quantized matmuls; default: chosen per backend and token count",
    ),
    # several ranks (mlx.launch), docs/distributed.md
    ulysses_size: int = typer.Option(
        1, "--ulysses_size", "--ulysses-size", help="sequence-parallel ranks; must equal the mlx.launch world size"
    ),
    dit_fsdp: bool = typer.Option(
        False, "--dit_fsdp", "--dit-fsdp", help="accepted as in the official CLI: every rank holds the whole DiT here"
    ),
    t5_fsdp: bool = typer.Option(
        False,
        "--t5_fsdp",
        "--t5-fsdp",
        help="accepted as in the official CLI: T5 runs on rank 0 only, output broadcast",
    ),
):
    """Generate a video (or one image) from a prompt and optional images."""
    from rich.console import Console

    from mlx_video.io.hub import DownloadError
    from mlx_video.io.images import ImageError
    from mlx_video.io.video import OutputPathError, check_output_path
    from mlx_video.io.weights import WeightsError
    from mlx_video.nn.lora import parse_lora_spec
    from mlx_video.result import NonFiniteError
    from mlx_video.wan.pipeline import WanPipeline
    from mlx_video.wan.settings import WanSettings

    console, drawn = Console(stderr=True, quiet=quiet), seed is None or seed < 0  # official: a negative seed draws one
    loras = {"loras": lora or (), "loras_high": lora_high or (), "loras_low": lora_low or ()}
    try:
        from mlx_video.distributed import init as init_sp

        sp = init_sp(ulysses_size)  # None for one rank; else rank 0 prints and writes, all ranks use its seed
        if sp is not None:
            console.quiet = quiet or not sp.is_root
        elif dit_fsdp or t5_fsdp:  # the official generate.py refuses them in a world of one as well
            raise ValueError(
                f"--{'dit' if dit_fsdp else 't5'}_fsdp is for several ranks; this world has 1 "
                f"(start the ranks with mlx.launch, docs/distributed.md)"
            )
        imgs, controls = _image_args(
            task,
            image,
            images,
            first_frame,
            last_frame,
            one_frame_inference,
            control_image_path,
            image_path,
            end_image_path,
            extend,
        )
        if output_type not in (None, "video", "images", "latent_images"):
            raise ValueError(f"--output_type must be video, images or latent_images, got {output_type!r}")
        settings = WanSettings(
            task=task,
            prompt=prompt[0] if prompt and len(prompt) == 1 else "",
            prompts=tuple(prompt) if prompt and len(prompt) > 1 else (),
            negative_prompt=negative_prompt,
            images=imgs,
            size=size,
            frame_num=frame_num,
            sample_steps=sample_steps,
            sample_shift=sample_shift,
            guide_scale=parse_guide(sample_guide_scale),
            solver=sample_solver,
            fps=fps,
            seed=None if drawn else seed,
            bidirectional=bidirectional_mode if bidirectional_sampling else None,
            one_frame=one_frame_inference,
            control_images=controls,
            video=video,
            strength=strength,
            recipe=preset,
            extend=extend,
            overlap=overlap,
            segments=segments,
        ).validate()
        if sp is not None:
            settings = replace(settings, seed=sp.same(settings.seed))
        for spec in (s for v in loras.values() for s in v):
            parse_lora_spec(spec)
        single = settings.frame_num == 1
        default = f"{task}_{time.strftime('%Y%m%d_%H%M%S')}.{'png' if single else 'mp4'}"
        save_file = check_output_path(save_file or default, (".png",) if single else (".mp4",))
        kw = dict(
            dtype=dtype_of(dtype, "--dtype"),
            vae_dtype=dtype_of(vae_dtype, "--vae_dtype"),
            offload=str2bool(offload_model),
            dequantize_blocks=str2bool(dequantize_blocks),
        )
        model_dir = resolve_wan_model(  # converted in the dtype asked for
            ckpt_dir, console, dtype or "bfloat16", task, local_files_only, progress_mode(console, quiet)
        )
        pipe = WanPipeline(
            model_dir,
            **{k: v for k, v in kw.items() if v is not None},
            **loras,
            group=sp.group if sp is not None else None,
        )
        pipe.check_task(settings.preset)
        settings, mplan = _fit_memory(
            pipe, settings, memory_budget, batch_cfg, vae_dtype, offload_model, vae_tile, quantize_bits, stream_blocks
        )
    except (ValueError, ImageError, WeightsError, OutputPathError, DownloadError) as e:
        fail(str(e))
    if dry_run:
        typer.echo(mplan)
        return
    console.print(mplan)
    console.print(f"seed: {settings.seed}" + (" (drawn at random)" if drawn else ""))
    with progress_bars(console, progress_mode(console, quiet)) as progress:
        try:
            res = pipe.generate(settings, progress=progress)
        except (ValueError, ImageError, WeightsError, NonFiniteError) as e:
            fail(str(e))
    if sp is not None and not sp.is_root:
        return
    meta = dict(
        res.params,
        family="wan",
        model=model_path(ckpt_dir),
        generator="mlx_video",
        seed_drawn=drawn,
        dtype=dtype,
        vae_dtype=vae_dtype,
        offload_model=offload_model,
        output_type=output_type,
        **({"vae_tiling": t.to_dict()} if (t := pipe.vae_tiling or getattr(pipe, "tiling", None)) else {}),
        **({"ranks": sp.size} if sp is not None else {}),
        **{k: list(v) for k, v in (("lora", lora), ("lora_high", lora_high), ("lora_low", lora_low)) if v},
    )
    save_result(res, save_file, meta, console, latent=output_type == "latent_images")


def _fit_memory(pipe, settings, budget_gb, batch_cfg, vae_dtype, offload, vae_tile, quantize_bits, stream_blocks=None):
    """(settings, the plan's two-line summary): ``pipe.fit_memory`` for ``--memory_budget`` with the
    flags the user gave kept fixed (offload defaults to on: in a one-shot run freeing costs nothing).
    Loads the images only; raises MemoryBudgetError (a ValueError) when nothing fits."""
    if budget_gb is not None and not (budget_gb > 0 and budget_gb != float("inf")):
        raise ValueError(f"--memory_budget must be a positive number of GB, got {budget_gb}")
    if vae_tile is not None and vae_tile < 0:
        raise ValueError(f"--vae_tile must be 0 (untiled) or a tile side in pixels, got {vae_tile}")
    if quantize_bits not in (None, 0, 4, 8):
        raise ValueError(f"--quantize_bits must be 4, 8 or 0, got {quantize_bits}")
    check_stream_blocks(stream_blocks)
    fixed = {"offload": True if offload is None else str2bool(offload)}
    if stream_blocks is not None:
        fixed["stream_blocks"] = stream_blocks or None
    if batch_cfg is not None:
        fixed["batch_cfg"] = str2bool(batch_cfg)
    if vae_dtype is not None:
        fixed["vae_dtype"] = str(dtype_of(vae_dtype, "--vae_dtype")).rsplit(".", 1)[-1]
    if vae_tile is not None:
        stride = pipe.cfg["vae"]["stride"]
        if vae_tile:
            from mlx_video.nn.tiling import Tiling

            t = Tiling.square(vae_tile, stride)  # overlap a quarter, rounded to the VAE's stride
            fixed.update(vae_tile=t.tile, vae_overlap=t.overlap[0] if isinstance(t.overlap, tuple) else t.overlap)
        else:
            fixed.update(vae_tile=None, vae_overlap=0)
    if quantize_bits is not None:
        fixed["quantize_bits"] = quantize_bits or None
    plan = pipe.plan(settings)
    budget = None if budget_gb is None else budget_gb * float(1 << 30)
    mp = pipe.fit_memory(plan, budget, **fixed)
    return replace(settings, batch_cfg=mp.batch_cfg), mp.summary(1 + 4 * (plan.shape[1] - 1), plan.height, plan.width)


def _image_args(
    task, image, images, first_frame, last_frame, one_frame, controls, image_path, end_image_path, extend=None
):
    """(images, control images) from the official spellings of the image options; ValueError for a mix
    that does not go together."""
    from mlx_video.wan.config import TASKS

    controls = list(controls or [])
    if image and images:
        raise ValueError("give either --image or --images, not both")
    if one_frame is not None:
        if image_path is None:
            raise ValueError("one-frame inference needs --image_path (the CLIP start image)")
        if not controls:
            raise ValueError("one-frame inference needs --control_image_path (one image per control index)")
        return [image_path] + ([end_image_path] if end_image_path else []), controls
    if controls or image_path or end_image_path:
        raise ValueError(
            "--control_image_path / --image_path / --end_image_path are one-frame options (add --one_frame_inference)"
        )
    if task in TASKS and TASKS[task].images == "first_last":
        if extend is not None:  # the clip's last frame is the first frame
            if first_frame or not last_frame:
                raise ValueError(f"task {task} with --extend takes --last_frame only (the first is the clip's last)")
            return [last_frame], []
        if not (first_frame and last_frame):
            raise ValueError(f"task {task} needs --first_frame and --last_frame")
        return [first_frame, last_frame], []
    if first_frame or last_frame:
        raise ValueError("--first_frame / --last_frame are for the flf2v tasks")
    return list(images or []) + ([image] if image else []), []


TASK_DEFAULT = "the task's, see mlx_video tasks"
help_panels(
    generate,
    {
        "memory_budget": ("Memory", "what MLX may use here"),
        "dry_run": ("Memory", None),
        "batch_cfg": ("Memory", "chosen by the plan"),
        "quantize_bits": ("Memory", "chosen by the plan"),
        "stream_blocks": ("Memory", "chosen by the plan"),
        "dequantize_blocks": ("Memory", "when it pays"),
        "task": ("Model", None),
        "ckpt_dir": ("Model", None),
        "local_files_only": ("Model", None),
        "preset": ("Model", "none"),
        "lora": ("Model", "none"),
        "lora_high": ("Model", "none"),
        "lora_low": ("Model", "none"),
        "dtype": ("Model", "bfloat16"),
        "convert_model_dtype": ("Model", None),
        "prompt": ("Prompt", None),
        "negative_prompt": ("Prompt", TASK_DEFAULT),
        "image": ("Images", None),
        "images": ("Images", None),
        "first_frame": ("Images", None),
        "last_frame": ("Images", None),
        "one_frame_inference": ("Images", None),
        "control_image_path": ("Images", None),
        "image_path": ("Images", None),
        "end_image_path": ("Images", None),
        "video": ("Images", None),
        "strength": ("Images", "0.8"),
        "extend": ("Images", None),
        "size": ("Size and length", "the task's: 1280*704 (5B), 832*480 (1.3B), 1280*720 (14B)"),
        "frame_num": ("Size and length", "the task's: 121 (5B), 81 (others); from --video"),
        "fps": ("Size and length", "the task's: 24 (5B), 16 (others)"),
        "overlap": ("Size and length", "5"),
        "segments": ("Size and length", None),
        "sample_steps": ("Sampling", TASK_DEFAULT),
        "sample_shift": ("Sampling", TASK_DEFAULT),
        "sample_solver": ("Sampling", "unipc"),
        "sample_guide_scale": ("Sampling", TASK_DEFAULT),
        "seed": ("Sampling", "drawn at random, printed and stored"),
        "bidirectional_sampling": ("Sampling", None),
        "bidirectional_mode": ("Sampling", None),
        "offload_model": ("Memory", "True"),
        "vae_dtype": ("Memory", "float32"),
        "vae_tile": ("Memory", None),
        "t5_cpu": ("Memory", None),
        "save_file": ("Output", "TASK_DATE_TIME.mp4 (.png for one frame)"),
        "output_type": ("Output", "video"),
        "quiet": ("Output", None),
        "ulysses_size": ("Advanced", None),
        "dit_fsdp": ("Advanced", None),
        "t5_fsdp": ("Advanced", None),
    },
)
