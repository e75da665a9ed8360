"""Paths the tests share: the repo root and its bundled assets (the repo runs alone from a bare clone)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
IMAGES = ASSETS / "images"
FIXTURES = ROOT / "tests" / "fixtures"


def run_cli(argv, cwd, timeout: float = 300, **env):
    """``python cli.py ARGV`` in a fresh process (the repo on PYTHONPATH, ``env`` added to the environment), run in
    ``cwd``: the CompletedProcess, stdout and stderr as text."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, argv)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        cwd=cwd,
        timeout=timeout,
    )
