"""Hugging Face downloads (only the files a task needs, into huggingface_hub's own cache) and the conversion cache.

Downloads go through huggingface_hub, so its cache and settings apply unchanged: ``HF_HOME`` / ``HF_HUB_CACHE``
(where files go, default ``~/.cache/huggingface/hub``), ``HF_HUB_OFFLINE=1`` (no network: cached files only),
``HF_TOKEN`` or ``hf auth login`` (gated and private repos). mlx_video keeps no download folder of its own. Converted
models live in :func:`cache_root` (``$MLX_VIDEO_CACHE``, else ``$XDG_CACHE_HOME/mlx_video``, else
``~/.cache/mlx_video``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlx_video.io.progress import Phase, Progress

# Files each Wan repo layout needs (huggingface_hub allow_patterns, fnmatch on repo paths): the DiT (A14B: two
# expert folders), the task's VAE, the T5 encoder and its tokenizer; Wan2.1 I2V/FLF2V also the CLIP file. Never the
# repos' assets/, examples/ or xlm-roberta-large/ tokenizer (only CLIP's visual tower is used).
WAN_T5 = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_OFFICIAL_FILES = [
    "config.json",
    "diffusion_pytorch_model*",
    "high_noise_model/*",
    "low_noise_model/*",
    WAN_T5,
    "google/umt5-xxl/*",
]
WAN_OFFICIAL_VAE = {"2.2": "Wan2.2_VAE.pth", "2.1": "Wan2.1_VAE.pth"}
WAN_OFFICIAL_CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
WAN_DIFFUSERS_FILES = ["model_index.json", "transformer/*", "transformer_2/*", "vae/*", "text_encoder/*", "tokenizer/*"]
WAN_DIFFUSERS_CLIP = "image_encoder/*"
MAX_WORKERS = 8  # files downloaded at once (as huggingface_hub's snapshot_download)


def wan_files(repo_id: str, task: str | None = None) -> list[str]:
    """The allow_patterns of a Wan repo (``*-Diffusers``: the diffusers layout, else the official one) for
    ``task`` (a key of :data:`mlx_video.wan.config.TASKS`): its VAE only, the CLIP image encoder only for tasks
    that use it (Wan2.1 i2v-14B / flf2v-14B). ``task`` None: what any task of the repo may need (``convert``).
    Raises ValueError for an unknown task."""
    from mlx_video.wan.config import TASKS

    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    t = TASKS.get(task)
    clip = t is None or t.clip
    if repo_id.lower().endswith("-diffusers"):
        return WAN_DIFFUSERS_FILES + ([WAN_DIFFUSERS_CLIP] if clip else [])
    vaes = list(WAN_OFFICIAL_VAE.values()) if t is None else [WAN_OFFICIAL_VAE[t.vae]]
    return WAN_OFFICIAL_FILES + vaes + ([WAN_OFFICIAL_CLIP] if clip else [])


def wan_required(repo_id: str, task: str | None = None) -> list[str]:
    """Files a Wan repo's snapshot must hold for ``task`` (None: any task): ``model_index.json`` (diffusers); the
    T5 encoder, and for a known task its VAE and, when it uses one, the CLIP file (official layout)."""
    from mlx_video.wan.config import TASKS

    if repo_id.lower().endswith("-diffusers"):
        return ["model_index.json"]
    t = TASKS.get(task)
    if t is None:
        return [WAN_T5]
    return [WAN_T5, WAN_OFFICIAL_VAE[t.vae]] + ([WAN_OFFICIAL_CLIP] if t.clip else [])


class DownloadError(RuntimeError):
    """A model could not be downloaded or found in the Hugging Face cache (offline, unknown repo, no access)."""


def cache_root() -> Path:
    """Where mlx_video keeps converted models (``converted/``) and the server's jobs: ``$MLX_VIDEO_CACHE``, else
    ``$XDG_CACHE_HOME/mlx_video``, else ``~/.cache/mlx_video``. Downloads are not kept here (huggingface_hub's
    cache, see the module docstring)."""
    if os.environ.get("MLX_VIDEO_CACHE"):
        return Path(os.environ["MLX_VIDEO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mlx_video"


SAMPLES, SAMPLE_BYTES, WHOLE_BELOW = 64, 64 << 10, 4 << 20


def file_key(path: Path) -> str:
    """A digest of one file's content: size, plus the whole file when under 4 MiB, else its first and
    last MiB (safetensors header, zip directory with every entry's CRC) and 64 evenly spaced 64 KiB
    samples. New weights written over old ones change it, whatever the modification time says; it costs
    about 6 MiB of reading per file, not the whole file."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= WHOLE_BELOW:
            h.update(f.read())
        else:
            starts = [0, size - (1 << 20)] + [i * (size - SAMPLE_BYTES) // (SAMPLES - 1) for i in range(SAMPLES)]
            for i, start in enumerate(starts):
                f.seek(start)
                h.update(f.read((1 << 20) if i < 2 else SAMPLE_BYTES))
    return h.hexdigest()


def source_key(paths, **settings) -> str:
    """The cache key of a conversion: the content (:func:`file_key`) of every file of ``paths`` (files,
    or folders walked recursively, hidden entries skipped; relative names included) and the
    ``settings`` that shape the result (dtype, quantization, variant ...). Raises OSError on unreadable
    files."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        files = (
            [p]
            if p.is_file()
            else sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        )
        h.update(f"|{p.name}|{len(files)}".encode())
        for f in files:
            h.update(f"|{f.relative_to(p) if f != p else f.name}:{file_key(f)}".encode())
    return h.hexdigest()


def converted_path(name: str, key: str) -> Path:
    """The cache folder for a conversion with cache key ``key`` (:func:`source_key`): converted/NAME-KEY."""
    return cache_root() / "converted" / f"{Path(name).name}-{key[:16]}"


def looks_like_repo_id(s: str) -> bool:
    """True for ``owner/name`` strings that are not an existing local path."""
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~")) and not Path(s).exists()


def _bar_class(report=None):
    """A tqdm class for huggingface_hub's ``tqdm_class`` that draws nothing and hands each update's byte count
    to ``report(done, total)`` (a file's bytes so far and its size). It takes the transfer updates of Xet downloads
    as no-ops (so bytes are counted once, as written)."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kw):
            kw["disable"] = True
            kw.pop("name", None)
            super().__init__(*args, **kw)
            self.done = int(kw.get("initial") or 0)
            if report is not None:
                report(self.done, self.total)

        def update(self, n=1):
            self.done += int(n or 0)
            if report is not None:
                report(self.done, self.total)

        def update_transfer(self, n=1):
            pass

        def set_transfer_postfix_str(self, *args, **kw):
            pass

    return _Bar


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _include(repo_id: str, allow_patterns: list[str]) -> str:
    """The ``hf download`` command that fetches exactly these files."""
    return f"hf download {repo_id} " + " ".join(f"--include {shlex.quote(p)}" for p in allow_patterns)


def _why(repo_id: str, e: BaseException, allow_patterns: list[str], offline: str | None) -> str:
    """One line saying why ``repo_id`` could not be had, and what to do."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    page = f"https://huggingface.co/{repo_id}"
    login = "log in with `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, GatedRepoError):
        return f"{repo_id} is a gated repo: accept its licence on {page} with your account, then {login}"
    if isinstance(e, RepositoryNotFoundError):
        return (
            f"{repo_id}: no such model repo on the Hugging Face Hub, or it is private"
            f"{' and this request was not authorized' if status == 401 else ''} (check the id; for a private "
            f"repo {login})"
        )
    if isinstance(e, HfHubHTTPError) and status in (401, 403):
        return f"{repo_id}: access refused by the Hugging Face Hub (HTTP {status}): {login}"
    if isinstance(e, LocalEntryNotFoundError) or offline:
        why = offline or "the Hugging Face Hub cannot be reached"
        return (
            f"{repo_id} is not in the Hugging Face cache ({_hf_cache()}), or only partly, and {why}: download "
            f"it first with `{_include(repo_id, allow_patterns)}`"
            + ("" if offline else " on a connected machine (or pass a local folder)")
        )
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"cannot download {repo_id}: {first}"


def _fetch(repo_id: str, allow_patterns: list[str], progress: Progress | None) -> None:
    """Download the files of ``repo_id`` matching ``allow_patterns`` that are not in the cache yet, one
    huggingface_hub download per file (several at once) reporting its bytes (a "download" phase, see
    :mod:`mlx_video.io.progress`). Raises what huggingface_hub raises."""
    from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    info = HfApi().model_info(repo_id, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    wanted = list(filter_repo_objects(list(sizes), allow_patterns=allow_patterns))
    missing = [f for f in wanted if not isinstance(try_to_load_from_cache(repo_id, f, revision=info.sha), str)]
    if not missing:
        return
    phase = Phase(progress, "download", repo_id, {f: sizes[f] for f in missing})

    def one(name: str) -> None:
        bar = _bar_class(lambda done, total: phase.file(name, done, total))
        hf_hub_download(repo_id, name, revision=info.sha, tqdm_class=bar)
        phase.finish_files([name])

    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(missing)))
    try:
        list(pool.map(one, missing))
    except BaseException:  # Ctrl-C or a failed file: start no other file (those under way finish or fail)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    phase.finish()


def download(
    repo_id: str,
    allow_patterns: list[str],
    required: list[str] = (),
    local_files_only: bool = False,
    progress: Progress | None = None,
) -> Path:
    """The snapshot folder (in huggingface_hub's cache) of ``repo_id`` holding the files matching
    ``allow_patterns``, downloading the missing ones first (each file's bytes reported to ``progress``, see
    :mod:`mlx_video.io.progress`; nothing is printed). ``local_files_only`` (or ``HF_HUB_OFFLINE=1``): cached files
    only, no network. ``required``: repo paths that must be in the folder (else DownloadError).

    Raises DownloadError, one line saying why and what to do: a gated repo (accept the licence, log in), an unknown
    or private repo (401/404), no access, not cached while offline (the ``hf download`` command to run)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    offline = "downloads are off (local_files_only)" if local_files_only else None
    if offline is None and constants.HF_HUB_OFFLINE:
        offline = "downloads are off (HF_HUB_OFFLINE is set)"
    quiet = _bar_class()
    try:
        if offline is None:
            try:
                _fetch(repo_id, allow_patterns, progress)
            except HfHubHTTPError as e:  # a refusal is final; other failures (network, Hub down): the cache may do
                status = getattr(getattr(e, "response", None), "status_code", None)
                if isinstance(e, (GatedRepoError, RepositoryNotFoundError)) or status in (401, 403):
                    raise
            except (TypeError, AttributeError, NameError, KeyError):  # a bug, not the network
                raise
            except Exception:  # no connection: snapshot_download below falls back to the cache, or says so
                pass
        folder = Path(
            snapshot_download(
                repo_id, allow_patterns=allow_patterns, local_files_only=offline is not None, tqdm_class=quiet
            )
        )
    except Exception as e:  # huggingface_hub's exceptions (and the network library's) have no common base
        raise DownloadError(_why(repo_id, e, allow_patterns, offline)) from e
    missing = [r for r in required if not (folder / r).exists()]
    if missing:
        where = f"{offline}" if offline else "they are not in the repo, or could not be downloaded"
        raise DownloadError(
            f"{repo_id}: {', '.join(missing)} not in the Hugging Face cache ({folder}) and {where}: "
            f"`{_include(repo_id, allow_patterns)}` fetches them"
        )
    return folder
