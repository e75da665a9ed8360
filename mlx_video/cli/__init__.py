"""`mlx_video` command line: generate, convert, info, tasks, serve.

``generate`` picks the model family from its arguments and hands them to that family's command
(:mod:`mlx_video.cli.wan`, :mod:`mlx_video.cli.ltx2`). Only the CLI modules print and write files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Wan 2.1/2.2 and LTX-2 video generation in MLX.")

_MULTI = (
    "--images",
    "--control_image_path",
    "--control-image-path",
)  # options that take several values after one flag (argparse nargs='+')


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
    """'ltx2' or 'wan', from the arguments: an LTX-only option, or the contents of the --model / --ckpt_dir
    folder or file (:func:`mlx_video.resolve.family_of`; never its name). Unknown goes to Wan, whose
    resolver then says what the path is not."""
    if any(a.split("=")[0] in LTX_ONLY for a in args):
        return "ltx2"
    for i, a in enumerate(args):
        name, _, value = a.partition("=")
        if name in ("--model", "--ckpt_dir", "--ckpt-dir") and (value or i + 1 < len(args)):
            from mlx_video.resolve import family_of as by_content

            return by_content(value or args[i + 1]) or "wan"
    return "wan"


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
def generate(ctx: typer.Context):
    """Generate a video. Wan: --task t2v-5B|ti2v-5B|mi2v-5B --ckpt_dir ...; LTX-2: --model ... --pipeline ...;
    --from VIDEO.mp4 [options]: re-run the parameters stored in a video, with the options given replacing them
    (add --help after the family's options for all of them)."""
    args = list(ctx.args)
    fam = None
    if any(a == "--from" or a.startswith("--from=") for a in args):
        from mlx_video.cli.common import fail as _fail
        from mlx_video.cli.replay import expand

        try:
            fam, args = expand(args)
        except ValueError as e:
            _fail(str(e))
    elif "--help" in args and not selects_family(args):  # no model or family option: both families' options
        from mlx_video.cli.ltx2 import app as ltx2
        from mlx_video.cli.wan import app as wan

        for name, family in (("Wan", wan), ("LTX-2", ltx2)):
            typer.secho(f"\n{name} (mlx_video generate {'--task' if name == 'Wan' else '--pipeline'} ...)", bold=True)
            try:
                family(args=["--help"], prog_name="mlx_video generate")
            except SystemExit:
                pass
        return
    if (fam or family_of(args)) == "ltx2":
        from mlx_video.cli.ltx2 import app as family
    else:
        from mlx_video.cli.wan import app as family
    family(args=args, prog_name="mlx_video generate")


def selects_family(args: list[str]) -> bool:
    """Whether the arguments name a family: a model path or id, a Wan task or an LTX-only option."""
    names = {a.split("=")[0] for a in args}
    return bool(names & {"--model", "--ckpt_dir", "--ckpt-dir", "--task", *LTX_ONLY})


@app.command()
def convert(
    src: str = typer.Argument(
        ...,
        help="Wan: official or diffusers folder or HF repo id; LTX-2: single-file "
        ".safetensors, a folder holding it, or Lightricks/LTX-2(.3)",
    ),
    dst: Path = typer.Argument(..., help="output folder"),
    dtype: str = typer.Option("bfloat16", "--dtype"),
    quantize: Optional[int] = typer.Option(None, "--quantize", help="4 or 8 bits (DiT/transformer, T5/Gemma linears)"),
    group_size: int = typer.Option(64, "--group-size"),
    variant: str = typer.Option("dev", "--variant", help="LTX-2: dev | distilled"),
    verbose: bool = typer.Option(False, "--verbose", help="list the checkpoint config keys the converter ignored"),
    gemma: Optional[Path] = typer.Option(None, "--gemma", help="LTX-2: Gemma 3 folder (default: found beside SRC)"),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="replace a DST that is not an mlx_video folder (never SRC, a folder inside it or above it)",
    ),
    local_files_only: bool = typer.Option(
        False,
        "--local_files_only",
        "--local-files-only",
        help="a repo id: use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1)",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing but errors"),
):
    """Convert a checkpoint to an mlx_video folder (strict: every key used, every shape checked). The family
    comes from SRC's contents; DST is written beside itself and renamed into place when complete. A repo id is
    downloaded first into the Hugging Face cache (HF_HOME), only the files the family's tasks use."""
    from rich.console import Console

    from mlx_video import resolve
    from mlx_video.cli.common import fail as _fail
    from mlx_video.cli.common import file_progress, progress_mode
    from mlx_video.io.hub import DownloadError
    from mlx_video.io.weights import WeightsError

    console = Console(stderr=True, quiet=quiet)
    try:
        with file_progress(console, progress_mode(console, quiet)) as progress:
            src_info = resolve.locate(
                src, variant=variant, gemma=gemma, local_files_only=local_files_only, progress=progress
            )
            out = resolve.convert(
                src_info,
                dst,
                dtype=dtype,
                quantize=quantize,
                group_size=group_size,
                overwrite=overwrite,
                progress=progress,
            )
    except (ValueError, WeightsError, DownloadError, OSError) as e:
        _fail(str(e))
    if quiet:
        return
    typer.echo(f"converted -> {out}")
    if verbose:
        import json

        ignored = json.loads((Path(out) / "config.json").read_text()).get("ignored_config_keys", [])
        typer.echo("ignored config keys: " + (", ".join(ignored) or "none"))


@app.command()
def info(
    path: Path = typer.Argument(..., help="a converted folder, or a video / image written by mlx_video generate"),
    as_json: bool = typer.Option(False, "--json", help="print the stored parameters as JSON"),
):
    """Show a converted folder's configuration, or the parameters stored in a generated video (and the command
    that re-runs them: mlx_video generate --from FILE)."""
    import json

    from mlx_video.cli.common import fail as _fail
    from mlx_video.io.weights import WeightsError, read_json

    if Path(path).is_file():
        from mlx_video.cli import replay
        from mlx_video.io.video import read_metadata

        try:
            meta = read_metadata(path)
            fam, argv = replay.args_from(meta)
        except ValueError as e:
            _fail(str(e))
        if as_json:
            typer.echo(json.dumps(meta, indent=2, sort_keys=True))
            return
        rows = replay.describe(meta)
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            typer.echo(f"{k:>{width}}: {v}")
        import shlex

        typer.echo(f"\nre-run: mlx_video generate --from {shlex.quote(str(path))}")
        typer.echo("same as: mlx_video generate " + " ".join(shlex.quote(a) for a in argv))
        return
    p = Path(path) / "config.json"
    if not p.is_file():
        _fail(f"{path} is not a converted mlx_video folder (no config.json) nor a generated video")
    try:
        cfg = read_json(p, "config.json")
    except WeightsError as e:
        _fail(str(e))
    if not str(cfg.get("format", "")).startswith("mlx_video/"):
        _fail(f"{p}: not an mlx_video folder")
    typer.echo(json.dumps(cfg, indent=2))


@app.command()
def tasks(as_json: bool = typer.Option(False, "--json", help="print the tables as JSON")):
    """List the Wan tasks, few-step presets and LTX-2 pipelines with their official defaults."""
    from rich.console import Console

    from mlx_video.cli.tasks import print_catalog

    print_catalog(Console(), as_json)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def served_models(specs: list[str]) -> list:
    """``[NAME=]PATH`` specs -> server Models (name: the folder's name when not given; family by content).
    Raises ValueError for a spec whose family cannot be told or a name given twice."""
    from mlx_video.resolve import family_of as by_content
    from mlx_video.server.runner import Model

    out = []
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq or "/" in name or Path(spec).exists():
            name, path = Path(spec.rstrip("/")).name or spec, spec
        fam = by_content(path)
        if fam is None:
            raise ValueError(f"--model {spec}: neither a Wan nor an LTX-2 checkpoint or repo id")
        if any(m.name == name for m in out):
            raise ValueError(f"--model {spec}: the name {name!r} is given twice (use NAME=PATH)")
        out.append(Model(name, str(Path(path).expanduser().resolve()) if Path(path).exists() else path, fam))
    return out


@app.command()
def serve(
    model: list[str] = typer.Option(
        ...,
        "--model",
        help="[NAME=]PATH or repo id, repeatable: the models requests may name (the first is the default)",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; any but loopback needs --api_key"),
    port: int = typer.Option(8000, "--port"),
    api_key: Optional[str] = typer.Option(
        None, "--api_key", "--api-key", envvar="MLX_VIDEO_API_KEY", help="require Authorization: Bearer KEY"
    ),
    jobs_dir: Optional[Path] = typer.Option(
        None, "--dir", help="where jobs and videos are kept [default: $MLX_VIDEO_CACHE/server]"
    ),
    max_upload_mb: int = typer.Option(64, "--max_upload_mb", "--max-upload-mb", help="largest request, MiB"),
    memory_budget: Optional[float] = typer.Option(
        None,
        "--memory_budget",
        "--memory-budget",
        help="GB (GiB) each job may use, planned as generate plans a run; default: what this machine lets MLX use",
    ),
):
    """Serve an OpenAI-style video API (POST /v1/videos, ...) and a page at / (needs the serve extra:
    pip install 'mlx-video[serve]')."""
    from mlx_video.cli.common import fail as _fail

    if host not in LOOPBACK and not api_key:
        _fail(f"--host {host} reaches beyond this machine: give --api_key (or MLX_VIDEO_API_KEY)")
    if not 1 <= port <= 65535 or max_upload_mb < 1:
        _fail("--port must be in 1..65535 and --max_upload_mb at least 1")
    if memory_budget is not None and not (0 < memory_budget < float("inf")):
        _fail(f"--memory_budget must be a positive number of GB, got {memory_budget}")
    try:
        import uvicorn

        from mlx_video.server.app import create_app
    except ImportError as e:
        _fail(f"serve needs the serve extra ({e.name} is missing): pip install 'mlx-video[serve]'")
    try:
        models = served_models(model)
    except ValueError as e:
        _fail(str(e))
    from mlx_video.io.hub import cache_root

    root = jobs_dir or cache_root() / "server"
    budget = None if memory_budget is None else memory_budget * (1 << 30)
    app_ = create_app(models, root, api_key=api_key, max_upload_bytes=max_upload_mb << 20, memory_budget=budget)
    typer.echo(f"serving {', '.join(m.name for m in models)} at http://{host}:{port}/ (jobs in {root})")
    # open event streams (the page) must not hold Ctrl-C: connections get 3 s to finish
    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)


def main(argv: list[str] | None = None) -> None:
    """Console entry (``mlx_video``): runs the typer app on ``argv`` (default sys.argv[1:])."""
    from mlx_video.io import atomic

    argv = sys.argv[1:] if argv is None else argv
    atomic.terminate_as_exception()  # SIGTERM unwinds like Ctrl-C: finally blocks remove temporary files
    try:
        rc = app(args=_expand_multi(list(argv)), prog_name="mlx_video", standalone_mode=False)
    except click.exceptions.ClickException as e:  # usage errors: exit 2
        e.show()
        rc = e.exit_code
    except click.exceptions.Abort:
        rc = 130
    except SystemExit as e:  # the family commands run their own typer app
        rc = e.code
    if atomic.TERMINATED or rc == 130:  # typer turns KeyboardInterrupt (and so SIGTERM) into exit 130
        typer.secho(
            f"error: {'terminated (SIGTERM)' if atomic.TERMINATED else 'interrupted'}; no partial output was left",
            fg="red",
            err=True,
        )
        sys.exit(143 if atomic.TERMINATED else 130)
    sys.exit(rc if isinstance(rc, int) else 0 if rc is None else rc)
