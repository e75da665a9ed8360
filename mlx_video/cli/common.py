"""Helpers shared by the family command lines."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import typer


def str2bool(v: str | None) -> bool | None:
    """'True'/'False' (and 1/0, yes/no) as the official CLIs take them; None stays None."""
    if v is None:
        return None
    s = v.strip().lower()
    if s in ("1", "true", "yes", "y", "on"):
        return True
    if s in ("0", "false", "no", "n", "off"):
        return False
    raise typer.BadParameter(f"expected True or False, got {v!r}")


def fail(msg: str) -> None:
    """Print ``error: msg`` in red on stderr and exit with status 2."""
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


@contextmanager
def progress_bars(console):
    """A rich progress display; yields ``progress(stage, step, total)``, the callback the pipelines take.
    One bar per stage with steps done, it/s (stages of more than one step) and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        bars: dict[str, int] = {}
        t_start: dict[str, float] = {}

        def progress(stage: str, step: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total, rate="")
                t_start[stage] = time.perf_counter()
            el = time.perf_counter() - t_start[stage]
            rate = f"{step / el:.2f} it/s" if el > 0 and total > 1 else ""
            bar.update(bars[stage], completed=step, rate=rate)

        yield progress


def model_path(model: str | Path) -> str:
    """What to store as the model of a run: an existing local path made absolute (so ``--from`` finds it from
    any folder), a repo id as typed."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else str(model)


def dtype_of(name: str | None, option: str = "--dtype"):
    """An MLX dtype from its name ("float32", "bfloat16", "float16"); None stays None (the library's default).
    Raises ValueError naming ``option`` for any other name."""
    if name is None:
        return None
    import mlx.core as mx

    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{option} takes float32, bfloat16 or float16, got {name!r}")
    return getattr(mx, name)


def save_result(res, path: Path, meta: dict, console, latent: bool = False) -> None:
    """Write a GenerationResult: one frame as PNG, else mp4 (with audio when the result has it), ``meta`` as
    the file's metadata; ``latent`` also writes ``res.latents`` beside it (.safetensors). Then report the
    timings, peak memory (GiB) and what was saved on ``console``."""
    import json

    from mlx_video.io.video import write_image, write_video
    from mlx_video.io.weights import save_safetensors

    frames = res.frames
    if len(frames) == 1 and path.suffix.lower() == ".png":
        write_image(path, frames[0], meta)
    else:
        write_video(path, frames, res.fps, meta, audio=res.audio, sample_rate=res.sample_rate)
    if latent:
        lat = path.with_suffix(".safetensors")
        save_safetensors(lat, {"latent": res.latents}, metadata={"parameters": json.dumps(meta, default=str)})
        console.print(f"saved latent {lat} {tuple(res.latents.shape)} [B, T, h, w, C]")
    for k, v in res.timings.items():
        peak = res.phase_peak_gib.get(k)
        console.print(f"{k:>14}: {v:8.2f} s" + (f"   peak {peak:6.2f} GiB" if peak is not None else ""))
    console.print(f"{'peak memory':>14}: {res.peak_memory_gib:8.2f} GiB")
    console.print(f"saved {path} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {res.fps:g} fps)")


PANELS = ("Model", "Prompt", "Images", "Size and length", "Sampling", "Memory", "Output", "Advanced")


def help_panels(command, spec: dict[str, tuple[str, str | None]]) -> None:
    """Put each option of the typer ``command`` function in its ``--help`` panel: ``spec`` maps every parameter
    name to (panel, shown default or None). The shown default replaces typer's for options whose default is
    None (the task's or pipeline's official value). KeyError for a parameter missing from ``spec``, ValueError
    for a panel not in :data:`PANELS` (so a new option cannot land outside the panels)."""
    import inspect

    sig = inspect.signature(command)
    for name, param in sig.parameters.items():
        panel, default = spec[name]
        if panel not in PANELS:
            raise ValueError(f"{name}: unknown help panel {panel!r}")
        param.default.rich_help_panel = panel
        if default is not None:
            param.default.show_default = default
    # typer lists the panels in the order of their first option: the signature in panel order (called by keyword)
    order = sorted(sig.parameters.values(), key=lambda p: PANELS.index(spec[p.name][0]))
    command.__signature__ = sig.replace(parameters=order)
