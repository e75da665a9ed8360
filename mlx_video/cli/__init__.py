"""`mlx_video` command line: generate, convert, info.

``generate`` picks the model family from its arguments and hands them to that family's command
(:mod:`mlx_video.cli.wan`, :mod:`mlx_video.cli.ltx2`). Only the CLI modules print and write files.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Wan 2.1/2.2 and LTX-2 video generation in MLX.")

_MULTI = ("--images", "--control_image_path", "--control-image-path")  # options that take several values after one flag (argparse nargs='+')


def _expand_multi(argv: list[str]) -> list[str]:
    """``--images a b c`` -> ``--images a --images b --images c`` (typer takes repeated flags)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in _MULTI:
            i += 1
            vals = []
            while i < len(argv) and not argv[i].startswith("--"):
                vals.append(argv[i])
                i += 1
            out += [x for v in vals for x in (a, v)] or [a]
            continue
        out.append(a)
        i += 1
    return out


LTX_ONLY = ("--pipeline", "--end-image", "--end-image-strength", "--no-audio")


def family_of(args: list[str]) -> str:
    """'ltx2' or 'wan', from the arguments: an LTX-only option, or a --model / --ckpt_dir naming LTX."""
    if any(a.split("=")[0] in LTX_ONLY for a in args):
        return "ltx2"
    for i, a in enumerate(args):
        if a in ("--model", "--ckpt_dir", "--ckpt-dir") and i + 1 < len(args):
            v = args[i + 1]
            cfg = Path(v).expanduser() / "config.json"
            if "ltx" in v.lower() or (cfg.is_file() and '"mlx_video/ltx2' in cfg.read_text()[:4000]):
                return "ltx2"
    return "wan"


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
def generate(ctx: typer.Context):
    """Generate a video. Wan: --task t2v-5B|ti2v-5B|mi2v-5B --ckpt_dir ...; LTX-2: --model ... --pipeline ...
    (add --help after the family's options for all of them)."""
    args = list(ctx.args)
    if family_of(args) == "ltx2":
        from mlx_video.cli.ltx2 import app as family
    else:
        from mlx_video.cli.wan import app as family
    family(args=args, prog_name="mlx_video generate")


def _is_ltx2_source(src: str) -> bool:
    p = Path(src).expanduser()
    if p.suffix == ".safetensors" or "ltx" in src.lower():
        return True
    return p.is_dir() and any(p.glob("*.safetensors")) and not (p / "model_index.json").exists() \
        and not (p / "config.json").exists()


@app.command()
def convert(
    src: str = typer.Argument(..., help="Wan: official or diffusers folder or HF repo id; LTX-2: single-file "
                                        ".safetensors, a folder holding it, or Lightricks/LTX-2(.3)"),
    dst: Path = typer.Argument(..., help="output folder"),
    dtype: str = typer.Option("bfloat16", "--dtype"),
    quantize: Optional[int] = typer.Option(None, "--quantize", help="4 or 8 bits (DiT/transformer, T5/Gemma linears)"),
    group_size: int = typer.Option(64, "--group-size"),
    variant: str = typer.Option("dev", "--variant", help="LTX-2: dev | distilled"),
    verbose: bool = typer.Option(False, "--verbose", help="list the checkpoint config keys the converter ignored"),
):
    """Convert a checkpoint to an mlx_video folder (strict: every key used, every shape checked)."""
    from mlx_video.cli.common import fail as _fail
    from mlx_video.io.hub import DownloadError
    from mlx_video.io.weights import WeightsError

    try:
        if _is_ltx2_source(src):
            from mlx_video.ltx2.checkpoint import convert_ltx2
            from mlx_video.ltx2.loading import download_parts, find_parts

            p = Path(src).expanduser()
            if p.exists():
                parts = find_parts(p.parent, variant, checkpoint=p) if p.is_file() else find_parts(p, variant)
            else:
                parts = download_parts(src, variant, None)
            out = convert_ltx2(parts["checkpoint"], dst, dtype=dtype, quantize=quantize, group_size=group_size,
                               gemma=parts["gemma"], upsamplers=parts["upsamplers"],
                               distilled_lora=parts["distilled_lora"])
        else:
            from mlx_video.wan.checkpoint import convert_wan
            from mlx_video.io.hub import WAN_DIFFUSERS_FILES, WAN_OFFICIAL_FILES, download, looks_like_repo_id

            p = Path(src).expanduser()
            if not p.exists() and looks_like_repo_id(src):
                p = download(src, WAN_DIFFUSERS_FILES if src.lower().endswith("-diffusers") else WAN_OFFICIAL_FILES)
            out = convert_wan(p, dst, dtype=dtype, quantize=quantize, group_size=group_size)
    except (ValueError, WeightsError, DownloadError) as e:
        _fail(str(e))
    typer.echo(f"converted -> {out}")
    if verbose:
        import json
        ignored = json.loads((Path(out) / "config.json").read_text()).get("ignored_config_keys", [])
        typer.echo("ignored config keys: " + (", ".join(ignored) or "none"))


@app.command()
def info(path: Path = typer.Argument(..., help="a converted folder")):
    """Show a converted folder's configuration."""
    import json

    from mlx_video.cli.common import fail as _fail

    p = Path(path) / "config.json"
    if not p.is_file():
        _fail(f"{path} is not a converted mlx_video folder (no config.json)")
    cfg = json.loads(p.read_text())
    if not str(cfg.get("format", "")).startswith("mlx_video/"):
        _fail(f"{p}: not an mlx_video folder")
    typer.echo(json.dumps(cfg, indent=2))


def main(argv: list[str] | None = None) -> None:
    """Console entry (``mlx_video``): runs the typer app on ``argv`` (default sys.argv[1:])."""
    argv = sys.argv[1:] if argv is None else argv
    app(args=_expand_multi(list(argv)), prog_name="mlx_video")
