"""``mlx_video tasks``: the Wan tasks, few-step presets and LTX-2 pipelines with their official defaults.

The numbers come from the settings' own tables (:data:`mlx_video.wan.config.TASKS`,
:data:`mlx_video.wan.settings.RECIPES`, :func:`mlx_video.ltx2.settings.default_guidance` and
:data:`mlx_video.ltx2.settings.DEFAULT_SIZE`), so what is listed is what a run without options does.
"""

from __future__ import annotations

IMAGES = {
    "none": "text only",
    "optional": "0-1 (first-frame anchor)",
    "many": "1+ anchors (PATH@FRAME)",
    "first": "first frame",
    "first_last": "first + last frame",
}


def _guide(g) -> str:
    return g if isinstance(g, str) else f"{g[0]:g} low / {g[1]:g} high" if isinstance(g, tuple) else f"{g:g}"


def catalog() -> dict:
    """{"wan": [task rows], "wan_presets": [preset rows], "ltx2": [pipeline rows]}, JSON-able dicts of defaults
    (sizes "W*H" in pixels, frames in pixel frames, fps in frames per second)."""
    from mlx_video.ltx2 import settings as S
    from mlx_video.wan.config import TASKS
    from mlx_video.wan.settings import RECIPES

    wan = [
        dict(
            task=t.name,
            images=IMAGES.get(t.images, t.images),
            size=t.size,
            frame_num=t.frame_num,
            fps=t.fps,
            sample_steps=t.sample_steps,
            sample_shift=t.sample_shift if t.shift_480p is None else f"{t.sample_shift:g} ({t.shift_480p:g} at 480p)",
            sample_guide_scale=list(t.guide_scale) if isinstance(t.guide_scale, tuple) else t.guide_scale,
            sample_solver=t.solver,
        )
        for t in TASKS.values()
    ]
    presets = [
        dict(
            preset=k,
            sample_steps=r.sample_steps,
            guide_scale=r.guide_scale,
            sample_shift=r.sample_shift,
            solver=r.solver,
        )
        for k, r in RECIPES.items()
    ]
    ltx = []
    for name in S.PIPELINES:
        h, w = S.DEFAULT_SIZE.get(name, ("the source video's", None))
        size = f"{w}*{h}" if w is not None else h
        row = dict(pipeline=name, size=size, num_frames=S.LTXSettings.num_frames, fps=S.LTXSettings.fps)
        per = [S.default_guidance(name, ver) for ver in ("2", "2.3")]  # (steps, video, audio) for LTX-2, LTX-2.3

        def both(f, per=per):
            a, b = (f(*x) for x in per)
            return a if a == b else f"{a} (LTX-2) / {b} (LTX-2.3)"

        row["steps"] = both(lambda n, v, a: n)
        for col, f in [
            ("video cfg", lambda n, v, a: v and v.cfg_scale),
            ("audio cfg", lambda n, v, a: a and a.cfg_scale),
            ("stg blocks", lambda n, v, a: v and ",".join(map(str, v.stg_blocks)) or None),
        ]:
            row[col] = both(f)
        row["lora strengths"] = "{:g} / {:g}".format(*S.DEFAULT_LORA[name]) if name in S.DEFAULT_LORA else None
        ltx.append(row)
    return {"wan": wan, "wan_presets": presets, "ltx2": ltx}


def print_catalog(console, as_json: bool = False) -> None:
    """Print :func:`catalog` on a rich ``console`` as three tables (or as JSON)."""
    import json

    from rich.table import Table

    cat = catalog()
    if as_json:
        console.print_json(json.dumps(cat))
        return
    titles = {
        "wan": "Wan tasks (mlx_video generate --task TASK --ckpt_dir ...)",
        "wan_presets": "Wan few-step presets (--preset NAME, with the matching --lora)",
        "ltx2": "LTX-2 pipelines (mlx_video generate --model ... --pipeline NAME)",
    }
    for key, rows in cat.items():
        table = Table(title=titles[key], title_justify="left")
        for col in rows[0]:
            table.add_column(col)
        for r in rows:
            table.add_row(
                *("-" if v is None else _guide(v) if isinstance(v, (float, tuple)) else str(v) for v in r.values())
            )
        console.print(table)
