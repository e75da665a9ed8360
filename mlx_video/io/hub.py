"""Hugging Face downloads (only the files a pipeline needs) and the conversion cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# Files each known Wan repo layout needs (huggingface_hub allow_patterns).
WAN_OFFICIAL_FILES = [
    "config.json",
    "diffusion_pytorch_model*",
    "Wan2.2_VAE.pth",
    "Wan2.1_VAE.pth",
    "models_t5_umt5-xxl-enc-bf16.pth",
    "google/umt5-xxl/*",
]
WAN_DIFFUSERS_FILES = ["model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*"]


class DownloadError(RuntimeError):
    """A model could not be downloaded (no network, unknown repo, no access)."""


def cache_root() -> Path:
    """Where converted models live: $MLX_VIDEO_CACHE, else ~/.cache/mlx_video."""
    return Path(os.environ.get("MLX_VIDEO_CACHE", Path.home() / ".cache" / "mlx_video")).expanduser()


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


def download(repo_id: str, allow_patterns: list[str]) -> Path:
    """Download only ``allow_patterns`` of ``repo_id`` (reusing the HF cache) and return the folder.

    Raises DownloadError saying exactly why (no network, unknown repo, gated repo).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except GatedRepoError as e:
        raise DownloadError(
            f"{repo_id} is gated: accept its licence on huggingface.co and log in (huggingface-cli login)"
        ) from e
    except RepositoryNotFoundError as e:
        raise DownloadError(f"{repo_id}: no such Hugging Face repo (or no access)") from e
    except (LocalEntryNotFoundError, OSError) as e:
        raise DownloadError(
            f"cannot download {repo_id}: no network connection to the Hugging Face Hub "
            f"and it is not in the local cache. Download it on a connected machine "
            f"and pass the folder with --ckpt_dir"
        ) from e
    except Exception as e:  # huggingface_hub wraps connection errors in several types
        raise DownloadError(f"cannot download {repo_id}: {e}") from e
