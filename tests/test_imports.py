"""Every library module imports on its own in a fresh interpreter (no import cycles, no hidden import order),
and the library never imports the checkout's scripts, tests, benchmarks or convert/ entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import ROOT

PACKAGE = ROOT / "mlx_video"
OUTSIDE = ("tests", "scripts", "benchmarks", "convert")


def _modules() -> list[str]:
    mods = []
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods


def _import(mod: str) -> tuple[str, int, str]:
    r = subprocess.run(
        [sys.executable, "-c", f"import {mod}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return mod, r.returncode, r.stderr[-2000:]


def test_every_module_imports_alone():
    mods = _modules()
    assert len(mods) > 20
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [(m, err) for m, rc, err in pool.map(_import, mods) if rc]
    assert not failed, "\n\n".join(f"{m}:\n{err}" for m, err in failed)


def test_library_imports_nothing_outside_the_package():
    bad = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bad += [f"{p.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in OUTSIDE]
    assert not bad, "\n".join(bad)
