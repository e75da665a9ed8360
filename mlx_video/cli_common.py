"""Helpers shared by the family command lines."""
from __future__ import annotations

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
