"""Re-running a generation from its output: ``mlx_video info VIDEO.mp4`` and ``mlx_video generate --from VIDEO.mp4``.

``mlx_video generate`` stores every parameter of a run (resolved: the task's or pipeline's defaults filled in,
the seed given or drawn) as JSON in the output's metadata (:func:`mlx_video.io.video.read_metadata` reads it).
:func:`args_from` turns that back into the family's command line; :func:`expand` puts the options typed after
``--from FILE`` over it (a typed option replaces every stored value of that option; any typed image option
replaces all stored images).
"""

from __future__ import annotations

from pathlib import Path

FROM = "--from"


def family_of_meta(meta: dict) -> str:
    """'wan' or 'ltx2' for stored parameters (the ``family`` key, or the fields of older files)."""
    fam = meta.get("family") or ("ltx2" if "pipeline" in meta else "wan" if "task" in meta else None)
    if fam not in ("wan", "ltx2"):
        raise ValueError("the stored parameters name no model family (neither a Wan task nor an LTX-2 pipeline)")
    return fam


def _opt(out: list[str], flag: str, value) -> None:
    if value is not None:
        out += [flag, value if isinstance(value, str) else str(value)]


def wan_args(meta: dict) -> list[str]:
    """The Wan command line (official spellings) that re-runs ``meta``."""
    from mlx_video.wan.config import TASKS

    m, out = meta, []
    task = m.get("task", "ti2v-5B")
    for flag, key in [
        ("--task", "task"),
        ("--ckpt_dir", "model"),
        ("--prompt", "prompt"),
        ("--negative_prompt", "negative_prompt"),
        ("--size", "size"),
        ("--frame_num", "frame_num"),
        ("--sample_steps", "sample_steps"),
        ("--sample_shift", "sample_shift"),
        ("--sample_solver", "sample_solver"),
        ("--base_seed", "seed"),
        ("--fps", "fps"),
        ("--preset", "preset"),
        ("--video", "video"),
        ("--strength", "strength"),
        ("--extend", "extend"),
        ("--overlap", "overlap"),
        ("--segments", "segments"),
        ("--dtype", "dtype"),
        ("--vae_dtype", "vae_dtype"),
        ("--offload_model", "offload_model"),
        ("--output_type", "output_type"),
    ]:
        _opt(out, flag, m.get(key))
    g = m.get("sample_guide_scale")
    _opt(out, "--sample_guide_scale", ",".join(str(v) for v in g) if isinstance(g, list) else g)
    if m.get("bidirectional_sampling"):
        out += ["--bidirectional_sampling", "--bidirectional_mode", str(m["bidirectional_sampling"])]
    images = [str(i) for i in m.get("images") or []]
    one = m.get("one_frame_inference")
    if one:
        ci = ";".join(str(i) for i in one["control_index"])
        out += ["--one_frame_inference", f"control_index={ci},target_index={one['target_index']}"]
        out += [x for c in m.get("control_images") or [] for x in ("--control_image_path", str(c))]
        for flag, img in zip(("--image_path", "--end_image_path"), images):
            out += [flag, img]
    elif task in TASKS and TASKS[task].images == "first_last" and len(images) == 2:
        out += ["--first_frame", images[0], "--last_frame", images[1]]
    else:
        out += [x for i in images for x in ("--images", i)]
    for key in ("lora", "lora_high", "lora_low"):
        out += [x for spec in m.get(key) or [] for x in (f"--{key}", str(spec))]
    return out


def ltx_args(meta: dict) -> list[str]:
    """The LTX-2 command line that re-runs ``meta``."""
    m, out = meta, []
    for flag, key in [
        ("--model", "model"),
        ("--pipeline", "pipeline"),
        ("--prompt", "prompt"),
        ("--negative-prompt", "negative_prompt"),
        ("--height", "height"),
        ("--width", "width"),
        ("--num-frames", "num_frames"),
        ("--fps", "fps"),
        ("--steps", "steps"),
        ("--image-crf", "image_crf"),
        ("--seed", "seed"),
        ("--lora-strength-stage-1", "lora_strength_stage_1"),
        ("--lora-strength-stage-2", "lora_strength_stage_2"),
        ("--gemma", "gemma"),
    ]:
        _opt(out, flag, m.get(key))
    for prefix, key in (("", "video_guidance"), ("audio-", "audio_guidance")):
        g = m.get(key) or {}
        for field in ("cfg_scale", "stg_scale", "rescale_scale", "modality_scale"):
            _opt(out, f"--{prefix}{field.replace('_', '-')}", g.get(field))
    blocks = (m.get("video_guidance") or {}).get("stg_blocks")
    if blocks:
        out += ["--stg-blocks", ",".join(str(b) for b in blocks)]
    for img in m.get("images") or []:
        out += ["--image", f"{img['path']}:{img.get('frame', 0)}:{img.get('strength', 1.0)}"]
    if m.get("no_audio"):
        out.append("--no-audio")
    return out


def args_from(meta: dict) -> tuple[str, list[str]]:
    """(family, command line) that re-runs the stored parameters ``meta``. Raises ValueError."""
    fam = family_of_meta(meta)
    return fam, wan_args(meta) if fam == "wan" else ltx_args(meta)


# options that together say which images a run uses: typing any of them replaces all stored ones
IMAGE_OPTIONS = {
    "wan": {"image", "images", "first_frame", "last_frame", "image_path", "end_image_path", "control_image_path"},
    "ltx2": {"image", "end_image", "end_image_strength"},
}


def _split(args: list[str], params: dict) -> list[tuple[str | None, list[str]]]:
    """Group a command line into (parameter name, tokens) per option occurrence (None for what is unknown)."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        p = params.get(a.split("=", 1)[0]) if a.startswith("-") else None
        if p is None:
            out.append((None, [a]))
            i += 1
        elif "=" in a or p.is_flag or i + 1 >= len(args):
            out.append((p.name, [a]))
            i += 1
        else:
            out.append((p.name, [a, args[i + 1]]))
            i += 2
    return out


def merge(family: str, base: list[str], overrides: list[str]) -> list[str]:
    """``base`` with each option typed in ``overrides`` replacing the stored one (all stored values of it)."""
    import typer.main

    if family == "ltx2":
        from mlx_video.cli.ltx2 import app
    else:
        from mlx_video.cli.wan import app
    cmd = typer.main.get_command(app)
    params = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    typed = _split(overrides, params)
    names = {n for n, _ in typed if n is not None}
    if names & IMAGE_OPTIONS[family]:
        names |= IMAGE_OPTIONS[family]
    kept = [toks for n, toks in _split(base, params) if n not in names]
    return [t for toks in kept for t in toks] + overrides


def expand(args: list[str]) -> tuple[str, list[str]]:
    """``[..., --from FILE, ...]`` -> (family, the stored command line with the other options over it).
    Raises ValueError (no FILE, a file without mlx_video parameters)."""
    from mlx_video.io.video import read_metadata

    rest, src, i = [], None, 0
    while i < len(args):
        a = args[i]
        if a == FROM:
            if i + 1 >= len(args):
                raise ValueError("--from needs a file written by mlx_video generate")
            src, i = args[i + 1], i + 2
        elif a.startswith(FROM + "="):
            src, i = a.split("=", 1)[1], i + 1
        else:
            rest.append(a)
            i += 1
    fam, base = args_from(read_metadata(Path(src)))
    return fam, merge(fam, base, rest)


def describe(meta: dict) -> list[tuple[str, str]]:
    """(name, value) rows for ``mlx_video info``: every stored parameter, nested ones flattened."""
    import json

    rows = []
    for k in sorted(meta):
        v = meta[k]
        if isinstance(v, dict):
            rows += [(f"{k}.{kk}", json.dumps(vv)) for kk, vv in v.items()]
        elif isinstance(v, str):
            rows.append((k, v))
        else:
            rows.append((k, json.dumps(v)))
    return rows
