"""`mlx_video generate --help` in panels, per family, and `mlx_video tasks` (the official defaults)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlx_video.cli import app
from mlx_video.cli.common import PANELS
from tests.helpers import ASSETS
from tests.wan_tiny import TINY

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # option names unwrapped


def panels_in(text: str) -> list[str]:
    """Panel titles in the order they appear."""
    found = [(text.find(f"─ {p} ─"), p) for p in PANELS]
    return [p for i, p in sorted(found) if i >= 0]


@pytest.mark.parametrize(
    "argv,family",
    [
        (["--task", "t2v-5B"], "wan"),
        (["--ckpt_dir", str(TINY)], "wan"),
        (["--model", str(ASSETS / "tiny-LTX-2")], "ltx2"),
        (["--pipeline", "dev"], "ltx2"),
        ([], "both"),
    ],
)
def test_help_shows_the_selected_familys_options_in_panels(argv, family):
    r = runner.invoke(app, ["generate", *argv, "--help"])
    assert r.exit_code == 0, r.output
    out = r.output
    wan, ltx = "--sample_steps" in out, "--cfg-scale" in out
    assert (wan, ltx) == {"wan": (True, False), "ltx2": (False, True), "both": (True, True)}[family]
    if family == "wan":
        assert panels_in(out) == list(PANELS)  # every panel, in order
        assert "[default: (the task's, see mlx_video tasks)]" in out and "drawn at random" in out
        assert "W*H in pixels" in out and "pixel frames, 4k+1" in out
    if family == "ltx2":
        assert panels_in(out) == list(PANELS)  # --memory-budget / --dry-run: the Memory panel too
        assert "[default: (distilled)]" in out and "pixel frames, 8k+1" in out
    if family == "both":
        assert out.index("--sample_steps") < out.index("--cfg-scale")


def test_every_option_spelling_is_in_a_panel():
    import typer.main

    from mlx_video.cli.ltx2 import app as ltx2
    from mlx_video.cli.wan import app as wan

    for family in (wan, ltx2):
        cmd = typer.main.get_command(family)
        assert all(p.rich_help_panel in PANELS for p in cmd.params)
    opts = {o for p in typer.main.get_command(wan).params for o in p.opts}
    assert {"--base_seed", "--seed", "--ckpt_dir", "--ckpt-dir", "--model", "--save_path", "--output"} <= opts


def test_tasks_lists_the_official_defaults():
    from mlx_video.ltx2 import pipelines as P
    from mlx_video.wan.config import TASKS

    r = runner.invoke(app, ["tasks"])
    assert r.exit_code == 0, r.output
    assert all(t in r.output for t in (*TASKS, *P.PIPELINES, "lightx2v-4step"))
    cat = json.loads(runner.invoke(app, ["tasks", "--json"]).output)
    rows = {row["task"]: row for row in cat["wan"]}
    assert rows["t2v-A14B"]["sample_guide_scale"] == [3.0, 4.0] and rows["ti2v-5B"]["size"] == "1280*704"
    ltx = {row["pipeline"]: row for row in cat["ltx2"]}
    assert ltx["dev"]["steps"] == "40 (LTX-2) / 30 (LTX-2.3)" and ltx["dev-two-stage-hq"]["size"] == "1920*1088"
