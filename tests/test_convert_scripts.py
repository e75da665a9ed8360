"""The thin ``convert/*.py`` scripts (README's conversion command): they convert, and a bad source is one line
on stderr with exit code 2 and no traceback."""

import subprocess
import sys

from tests.helpers import ASSETS, ROOT


def _run(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "convert" / script), *map(str, args)], capture_output=True, text=True
    )


def test_wan_script_converts(tmp_path):
    r = _run("wan.py", ASSETS / "tiny-Wan2.2-TI2V-5B", tmp_path / "out", "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "out") and (tmp_path / "out" / "config.json").is_file()


def test_scripts_refuse_bad_sources(tmp_path):
    for script in ("wan.py", "ltx2.py"):
        r = _run(script, tmp_path / "missing", tmp_path / "out")
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
        assert not (tmp_path / "out").exists()
