"""A fake Hugging Face Hub for the tests: huggingface_hub's functions (HfApi.model_info, hf_hub_download,
snapshot_download, try_to_load_from_cache) replaced by ones serving the bundled tiny checkpoints from a cache folder
in tmp_path, driving the ``tqdm_class`` they are given as huggingface_hub does; its errors are huggingface_hub's own
exception classes, built as its tests build them (an HTTP response of the status)."""

from __future__ import annotations

import sys
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

from mlx_video.ltx2.loading import GEMMA_REPO, LTX2_REPOS
from tests.helpers import ASSETS

WAN5B, LTX = ASSETS / "tiny-Wan2.2-TI2V-5B", ASSETS / "tiny-LTX-2"
SHA = "0123456789abcdef0123456789abcdef01234567"
CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


def _files(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _response(status: int):
    """An HTTP response of ``status``, of the class huggingface_hub's errors take (as its own tests build them)."""
    from huggingface_hub import errors

    http = sys.modules[errors.Response.__module__.split(".")[0]]  # the HTTP library huggingface_hub uses
    return errors.Response(status, request=http.Request("GET", "https://huggingface.co/api/models/x"))


def hub_error(cls, status: int, msg: str = "refused"):
    return cls(msg, response=_response(status))


class FakeHub:
    """Repos {repo id: {repo path: local file}} served into a huggingface_hub-layout cache under ``root``; records
    every call. ``errors``: {repo id: exception raised by every network call for it}."""

    def __init__(self, root: Path, repos: dict, errors: dict | None = None):
        self.root, self.repos, self.errors = root, repos, errors or {}
        self.calls: list[tuple] = []
        self.reports: list[tuple] = []

    def snap(self, repo: str) -> Path:
        return self.root / f"models--{repo.replace('/', '--')}" / "snapshots" / SHA

    def _net(self, repo):
        if constants.HF_HUB_OFFLINE:
            raise AssertionError("a network call while HF_HUB_OFFLINE is set")
        if repo in self.errors:
            raise self.errors[repo]
        if repo not in self.repos:
            raise hub_error(RepositoryNotFoundError, 404, f"404 Client Error: Repository Not Found for url: {repo}")

    def model_info(self, repo_id, files_metadata=False, **kw):
        self.calls.append(("model_info", repo_id))
        self._net(repo_id)
        siblings = [SimpleNamespace(rfilename=f, size=p.stat().st_size) for f, p in self.repos[repo_id].items()]
        return SimpleNamespace(sha=SHA, siblings=siblings)

    def hf_hub_download(self, repo_id, filename, revision=None, tqdm_class=None, **kw):
        self.calls.append(("hf_hub_download", repo_id, filename))
        self._net(repo_id)
        data = self.repos[repo_id][filename].read_bytes()
        out = self.snap(repo_id) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        with tqdm_class(total=len(data), initial=0, desc=filename, unit="B", unit_scale=True) as bar:
            half = len(data) // 2
            for chunk in (data[:half], data[half:]):  # as http_get: update per chunk written
                bar.update(len(chunk))
                bar.update_transfer(len(chunk))
        out.write_bytes(data)
        return str(out)

    def snapshot_download(self, repo_id, allow_patterns=None, local_files_only=False, tqdm_class=None, **kw):
        self.calls.append(("snapshot_download", repo_id, tuple(allow_patterns or ()), local_files_only))
        snap = self.snap(repo_id)
        if local_files_only or constants.HF_HUB_OFFLINE:
            if not snap.is_dir():
                raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder")
            return str(snap)
        self._net(repo_id)
        for f in self.repos[repo_id]:
            if any(fnmatch(f, p) for p in allow_patterns or ["*"]) and not (snap / f).exists():
                self.hf_hub_download(repo_id, f, tqdm_class=tqdm_class)
        return str(snap)

    def try_to_load_from_cache(self, repo_id, filename, revision=None, **kw):
        p = self.snap(repo_id) / filename
        return str(p) if p.is_file() else None

    def downloaded(self, repo: str) -> set[str]:
        return {c[2] for c in self.calls if c[0] == "hf_hub_download" and c[1] == repo}

    def patterns(self, repo: str) -> tuple:
        return next(c[2] for c in self.calls if c[0] == "snapshot_download" and c[1] == repo)


WAN_DECOYS = {  # files of the official repos no TI2V-5B task reads
    "assets/logo.png": WAN5B / "README.md",
    "examples/i2v_input.JPG": WAN5B / "README.md",
    "README.md": WAN5B / "README.md",
    "xlm-roberta-large/tokenizer.json": WAN5B / "google" / "umt5-xxl" / "tokenizer.json",
    CLIP: WAN5B / "README.md",
    "Wan2.1_VAE.pth": WAN5B / "README.md",
}


def install(tmp_path, monkeypatch) -> FakeHub:
    """A fake Hub serving Wan-AI/Wan2.2-TI2V-5B (the tiny official checkpoint plus decoys), Lightricks/LTX-2 (the
    tiny LTX-2 files under the release's names) and the Gemma repo; the cache and MLX_VIDEO_CACHE in tmp_path."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "mlx_video"))
    spec = LTX2_REPOS["Lightricks/LTX-2"]
    ltx = {
        spec["dev"]: LTX / "ltx-2-tiny-dev.safetensors",
        spec["distilled"]: LTX / "ltx-2-tiny-dev.safetensors",
        spec["lora"]: LTX / "ltx-2-tiny-distilled-lora.safetensors",
        spec["upsamplers"][0]: LTX / "ltx-2-tiny-spatial-upscaler-x2.safetensors",
        "ltx-2-19b-dev-fp8.safetensors": LTX / "README.md",
        "ltx-2-temporal-upscaler-x2-1.0.safetensors": LTX / "README.md",
        "vae/diffusion_pytorch_model.safetensors": LTX / "README.md",
    }
    fake = FakeHub(
        cache,
        {
            "Wan-AI/Wan2.2-TI2V-5B": {**{k: v for k, v in _files(WAN5B).items() if k != "README.md"}, **WAN_DECOYS},
            "Lightricks/LTX-2": ltx,
            GEMMA_REPO: {**_files(LTX / "gemma"), "README.md": LTX / "README.md"},
        },
    )
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda api, repo_id, **kw: fake.model_info(repo_id, **kw))
    for name in ("hf_hub_download", "snapshot_download", "try_to_load_from_cache"):
        monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
    return fake
