"""Hugging Face downloads (only the files a pipeline needs) and the conversion cache."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Files each known Wan repo layout needs (huggingface_hub allow_patterns).
WAN_OFFICIAL_FILES = ["config.json", "diffusion_pytorch_model*", "Wan2.2_VAE.pth", "Wan2.1_VAE.pth",
                      "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/*"]
WAN_DIFFUSERS_FILES = ["model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*"]


class DownloadError(RuntimeError):
    """A model could not be downloaded (no network, unknown repo, no access)."""


def cache_root() -> Path:
    """Where converted models live: $MLX_VIDEO_CACHE, else ~/.cache/mlx_video."""
    return Path(os.environ.get("MLX_VIDEO_CACHE", Path.home() / ".cache" / "mlx_video")).expanduser()


def converted_path(source: str, tag: str = "") -> Path:
    """Stable cache folder for the conversion of ``source`` (a resolved path or a repo id)."""
    digest = hashlib.sha1(f"{source}|{tag}".encode()).hexdigest()[:12]
    return cache_root() / "converted" / f"{Path(source).name}-{digest}"


def looks_like_repo_id(s: str) -> bool:
    """True for ``owner/name`` strings that are not an existing local path."""
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~")) and not Path(s).exists()


def download(repo_id: str, allow_patterns: list[str]) -> Path:
    """Download only ``allow_patterns`` of ``repo_id`` (reusing the HF cache) and return the folder.

    Raises DownloadError saying exactly why (no network, unknown repo, gated repo).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except GatedRepoError as e:
        raise DownloadError(f"{repo_id} is gated: accept its licence on huggingface.co and log in "
                            f"(huggingface-cli login)") from e
    except RepositoryNotFoundError as e:
        raise DownloadError(f"{repo_id}: no such Hugging Face repo (or no access)") from e
    except (LocalEntryNotFoundError, OSError) as e:
        raise DownloadError(f"cannot download {repo_id}: no network connection to the Hugging Face Hub "
                            f"and it is not in the local cache. Download it on a connected machine "
                            f"and pass the folder with --ckpt_dir") from e
    except Exception as e:  # huggingface_hub wraps connection errors in several types
        raise DownloadError(f"cannot download {repo_id}: {e}") from e
