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


def check_stream_blocks(n: int | None) -> None:
    """``--stream_blocks``: None (not given), 0 (all resident) or the number of resident blocks (>= 1).
    Raises ValueError otherwise (the CLIs print it as one line, exit 2)."""
    if n is not None and n < 0:
        raise ValueError(f"--stream_blocks must be 0 (all resident) or the number of resident blocks, got {n}")


def fail(msg: str) -> None:
    """Print ``error: msg`` in red on stderr and exit with status 2."""
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


class Rate:
    """Steps per second of one stage, measured from its first tick (the first step includes warm-up: compiling,
    loading, allocating), so the rate and ETA exist from the second tick on."""

    def __init__(self):
        self.first: tuple[int, float] | None = None

    def update(self, step: int, total: int, now: float) -> tuple[float | None, float | None]:
        """(steps/s, seconds left) after ``step`` of ``total``; None before there are two ticks."""
        if self.first is None or step < self.first[0]:
            self.first = (step, now)
            return None, None
        done, dt = step - self.first[0], now - self.first[1]
        if done <= 0 or dt <= 0:
            return None, None
        rate = done / dt
        return rate, (total - step) / rate


@contextmanager
def phase(console, what: str):
    """A wait without steps: a spinner on a terminal, else a line when it starts and one when it ends."""
    if console.is_terminal:
        with console.status(what):
            yield
        return
    t0 = time.perf_counter()
    console.print(f"{what} ...")
    yield
    console.print(f"{what}: done in {time.perf_counter() - t0:.2f} s")


def progress_mode(console, quiet: bool = False) -> str:
    """ "quiet" (--quiet), "rich" (bars, on a terminal) or "plain" (one line per phase, for logs)."""
    return "quiet" if quiet else "rich" if console.is_terminal else "plain"


@contextmanager
def progress_bars(console, mode: str | None = None):
    """Yields ``progress(stage, step, total)``, the callback the pipelines take (step 0 announces a stage).
    mode "rich": one bar per stage with steps, it/s and ETA (both from the second tick on, :class:`Rate`);
    "plain": a line when a stage starts and one when it ends (with its time and rate); "quiet": nothing."""
    mode = mode or progress_mode(console)
    t_start: dict[str, float] = {}
    rates: dict[str, Rate] = {}
    if mode != "rich":
        last: dict[str, int] = {}

        def plain(stage: str, step: int, total: int) -> None:
            now = time.perf_counter()
            if stage not in last or step <= last[stage]:  # a new stage (or the next window of one)
                t_start[stage], rates[stage] = now, Rate()
                if mode == "plain":
                    console.print(f"{stage}: started" + (f" ({total} steps)" if total > 1 else ""))
            last[stage] = step
            rate, _ = rates[stage].update(step, total, now)
            if step == total and mode == "plain":
                el = now - t_start[stage]
                console.print(f"{stage}: done in {el:.2f} s" + (f" ({rate:.2f} it/s)" if rate and total > 1 else ""))

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=console,
    ) as bar:
        bars: dict[str, int] = {}

        def progress(stage: str, step: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = bar.add_task(stage, total=total, rate="", eta="")
                rates[stage] = Rate()
            rate, left = rates[stage].update(step, total, time.perf_counter())
            shown = dict(rate=f"{rate:.2f} it/s", eta=f"ETA {left:.0f} s") if rate and total > 1 else {}
            bar.update(bars[stage], completed=step, **shown)

        yield progress


def _size(n: float) -> str:
    """Bytes as B / KB / MB / GB (powers of 1000, as huggingface_hub and rich show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


@contextmanager
def file_progress(console, mode: str | None = None):
    """Yields the callback the library reports downloads and conversions through
    (:class:`mlx_video.io.progress.FileProgress`). mode "rich": a bar per phase (bytes, speed, time left) and one per
    file (a download's bytes as they arrive, a conversion's source files as their components are written); "plain":
    a line when a phase starts (its files and bytes) and one when it ends (time, MB/s); "quiet": nothing."""
    mode = mode or progress_mode(console)
    if mode != "rich":
        t0: dict[tuple[str, str], float] = {}

        def plain(ev) -> None:
            if ev.file is not None or mode == "quiet":
                return
            k, now = (ev.phase, ev.what), time.perf_counter()
            if k not in t0 and not ev.finished:
                t0[k] = now
                console.print(f"{ev.phase} {ev.what}: started ({ev.files} files, {_size(ev.total or 0)})")
            elif k in t0 and ev.finished:
                el = now - t0.pop(k)
                rate = f", {_size((ev.total or 0) / el)}/s" if el > 0 else ""
                console.print(f"{ev.phase} {ev.what}: done in {el:.2f} s ({_size(ev.total or 0)}{rate})")

        yield plain
        return
    import threading

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[tuple, int] = {}

        def rich(ev) -> None:
            with lock:
                k = (ev.phase, ev.what, ev.file)
                if k not in tasks:
                    label = f"[bold]{ev.phase} {ev.what}" if ev.file is None else f"  {ev.file}"
                    tasks[k] = bar.add_task(label, total=ev.total)
                bar.update(tasks[k], completed=ev.done, total=ev.total)

        yield rich


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

    frames, t0 = res.frames, time.perf_counter()
    with phase(console, f"writing {path.name}"):
        if len(frames) == 1 and path.suffix.lower() == ".png":
            write_image(path, frames[0], meta)
        else:
            write_video(path, frames, res.fps, meta, audio=res.audio, sample_rate=res.sample_rate)
    res.timings = {**res.timings, "write": time.perf_counter() - t0}
    if latent:
        lat = path.with_suffix(".safetensors")
        save_safetensors(lat, {"latent": res.latents}, metadata={"parameters": json.dumps(meta, default=str)})
        console.print(f"saved latent {lat} {tuple(res.latents.shape)} [B, T, h, w, C]")
    for k, v in res.timings.items():
        peak = res.phase_peak_gib.get(k)
        console.print(f"{k:>14}: {v:8.2f} s" + (f"   peak {peak:6.2f} GiB" if peak is not None else ""))
    console.print(f"{'peak memory':>14}: {res.peak_memory_gib:8.2f} GiB")
    console.print(f"saved {path} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {res.fps:g} fps)")


def run_conversion(parser, convert) -> None:
    """Entry point of the ``convert/*.py`` scripts: parse argv with ``parser`` (argparse), call
    ``convert(args)`` -> output folder, print it. A bad source or destination exits 2 with one line; Ctrl-C or
    SIGTERM exits 130 (the staged folder is removed by the converter)."""
    from mlx_video.io.atomic import terminate_as_exception

    args = parser.parse_args()
    terminate_as_exception()
    try:
        print(convert(args))
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, "error: interrupted; no partial output was left\n")


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
