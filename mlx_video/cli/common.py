"""Helpers shared by the family command lines."""
from __future__ import annotations

import time
from contextlib import contextmanager

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
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

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
            rate = f"{step / el:.2f} it/s" if el > 0 and total > 1 else ""
            bar.update(bars[stage], completed=step, rate=rate)

        yield progress
