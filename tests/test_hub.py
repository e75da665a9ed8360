"""Hugging Face conventions: huggingface_hub's cache (HF_HOME), --local_files_only and HF_HUB_OFFLINE, only the files a
task or pipeline uses, one-line errors for gated / unknown / uncached repos, and the per-file download reports.

No network here: a fake Hub (tests/fake_hub.py) replaces huggingface_hub's functions and raises its own exception
classes; the local_files_only cases also run for real against an empty HF_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from typer.testing import CliRunner

from mlx_video import resolve
from mlx_video.cli import app
from mlx_video.io import hub
from mlx_video.io.hub import DownloadError
from mlx_video.ltx2.loading import GEMMA_REPO, LTX2_REPOS
from tests.fake_hub import CLIP, WAN5B, hub_error, install
from tests.helpers import ROOT


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    return install(tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- which files


@pytest.mark.parametrize(
    "task,clip,vae",
    [("ti2v-5B", False, "Wan2.2_VAE.pth"), ("t2v-A14B", False, "Wan2.1_VAE.pth"), ("i2v-14B", True, "Wan2.1_VAE.pth")],
)
def test_wan_patterns_per_task(task, clip, vae):
    pats = hub.wan_files("Wan-AI/Wan2.x", task)
    assert (CLIP in pats) == clip and vae in pats and len([p for p in pats if p.endswith("_VAE.pth")]) == 1
    for unused in ("assets/logo.png", "examples/x.jpg", "xlm-roberta-large/tokenizer.json", "README.md"):
        assert not any(fnmatch(unused, p) for p in pats), unused
    for used in ("high_noise_model/diffusion_pytorch_model-00001-of-00006.safetensors", "google/umt5-xxl/spiece.model"):
        assert any(fnmatch(used, p) for p in pats), used
    diff = hub.wan_files("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", task)
    assert ("image_encoder/*" in diff) == clip and not any(fnmatch("image_processor/x.json", p) for p in diff)
    assert CLIP in hub.wan_files("Wan-AI/Wan2.x")  # convert (no task): what any task may need
    with pytest.raises(ValueError, match="unknown task"):
        hub.wan_files("Wan-AI/Wan2.x", "t2v-9B")


def test_ti2v_5b_repo_downloads_only_what_the_task_reads_and_converts(fake_hub):
    ev = []
    out = resolve.resolve("Wan-AI/Wan2.2-TI2V-5B", "wan", task="ti2v-5B", progress=ev.append, dtype="float32")
    got = fake_hub.downloaded("Wan-AI/Wan2.2-TI2V-5B")
    assert got == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "Wan2.2_VAE.pth",
        "models_t5_umt5-xxl-enc-bf16.pth",
        "google/umt5-xxl/special_tokens_map.json",
        "google/umt5-xxl/tokenizer.json",
        "google/umt5-xxl/tokenizer_config.json",
    }, got
    assert fake_hub.patterns("Wan-AI/Wan2.2-TI2V-5B") == tuple(hub.wan_files("Wan-AI/Wan2.2-TI2V-5B", "ti2v-5B"))
    assert out.parent == Path(os.environ["MLX_VIDEO_CACHE"]) / "converted" and out.name.startswith("wan-Wan2.2-TI2V")
    assert (out / "dit.safetensors").is_file() and not (out / "clip.safetensors").exists()
    # each downloaded file: a start (0), its bytes as they arrive, its size at the end; then the conversion
    dl = [e for e in ev if e.phase == "download"]
    assert (
        dl[0].file is None and dl[0].files == len(got) and dl[0].total == sum((WAN5B / f).stat().st_size for f in got)
    )
    for f in got:
        done = [e.done for e in dl if e.file == f]
        size = (WAN5B / f).stat().st_size
        assert (
            done[0] == 0
            and done[-1] == size
            and done == sorted(done)
            and all(e.total == size for e in dl if e.file == f)
        )
    assert dl[-1].finished and [e for e in ev if e.phase == "convert"][-1].finished
    # a second run: nothing downloaded, nothing converted, no reports
    n, ev2 = len(fake_hub.calls), []
    assert resolve.resolve("Wan-AI/Wan2.2-TI2V-5B", "wan", task="ti2v-5B", progress=ev2.append, dtype="float32") == out
    assert ev2 == [] and not [c for c in fake_hub.calls[n:] if c[0] == "hf_hub_download"]


@pytest.mark.parametrize(
    "pipeline,variant,want",
    [
        ("distilled", "distilled", {"distilled", "upsampler"}),
        ("dev", "dev", {"dev"}),
        ("retake", "dev", {"dev"}),
        ("dev-two-stage", "dev", {"dev", "upsampler", "lora"}),
        ("ic-lora", "distilled", {"distilled", "upsampler"}),
    ],
)
def test_ltx2_downloads_only_what_the_pipeline_runs_on(fake_hub, pipeline, variant, want):
    spec = LTX2_REPOS["Lightricks/LTX-2"]
    names = {
        "dev": spec["dev"],
        "distilled": spec["distilled"],
        "lora": spec["lora"],
        "upsampler": spec["upsamplers"][0],
    }
    src = resolve.locate("Lightricks/LTX-2", "ltx2", variant=variant, pipeline=pipeline)
    assert fake_hub.downloaded("Lightricks/LTX-2") == {names[k] for k in want}
    assert src.parts["checkpoint"].name == names[variant]
    assert bool(src.parts["upsamplers"]) == ("upsampler" in want) and bool(src.parts["distilled_lora"]) == (
        "lora" in want
    )
    assert fake_hub.downloaded(GEMMA_REPO) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }


def test_ltx2_takes_the_variants_cached_files_so_an_earlier_conversion_is_reused(fake_hub):
    resolve.locate("Lightricks/LTX-2", "ltx2", variant="dev", pipeline="dev-two-stage")
    n = len(fake_hub.calls)
    src = resolve.locate("Lightricks/LTX-2", "ltx2", variant="dev", pipeline="dev")  # one stage, no LoRA needed
    assert src.parts["distilled_lora"] is not None and src.parts["upsamplers"]  # already cached: taken
    assert not [c for c in fake_hub.calls[n:] if c[0] == "hf_hub_download"]


# ----------------------------------------------------------------------------- errors: one line, exit 2


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


LTX_RUN = ["generate", "--model", "Lightricks/LTX-2", "--prompt", "a cat", "--num-frames", "9"]
LTX_RUN += ["--height", "64", "--width", "64"]


def test_gated_gemma_says_accept_the_licence_and_log_in(fake_hub, tmp_path):
    fake_hub.errors[GEMMA_REPO] = hub_error(GatedRepoError, 401, "401 Client Error. Cannot access gated repo")
    out = tmp_path / "o.mp4"
    r = CliRunner().invoke(app, [*LTX_RUN, "--output", str(out)])
    line = _one_line_exit_2(r, GEMMA_REPO, "gated", f"https://huggingface.co/{GEMMA_REPO}", "hf auth login", "HF_TOKEN")
    assert "licence" in line and not out.exists()
    assert not (tmp_path / "mlx_video" / "converted").exists()  # nothing converted or written


@pytest.mark.parametrize("status", [401, 404])
def test_unknown_or_private_repo_is_one_line(fake_hub, tmp_path, status):
    fake_hub.errors["Wan-AI/Wan9-T2V"] = hub_error(RepositoryNotFoundError, status)
    out = tmp_path / "o.mp4"
    args = ["generate", "--task", "t2v-5B", "--ckpt_dir", "Wan-AI/Wan9-T2V", "--prompt", "x", "--save_file", str(out)]
    line = _one_line_exit_2(CliRunner().invoke(app, args), "Wan-AI/Wan9-T2V", "no such model repo")
    assert ("not authorized" in line) == (status == 401) and "hf auth login" in line and not out.exists()


def test_local_files_only_needs_no_network_and_says_how_to_download(fake_hub, tmp_path):
    out = tmp_path / "o.mp4"
    args = ["generate", "--task", "ti2v-5B", "--ckpt_dir", "Wan-AI/Wan2.2-TI2V-5B", "--prompt", "x"]
    r = CliRunner().invoke(app, [*args, "--local_files_only", "--save_file", str(out)])
    line = _one_line_exit_2(r, "Wan-AI/Wan2.2-TI2V-5B", "local_files_only", "hf download Wan-AI/Wan2.2-TI2V-5B")
    assert "--include Wan2.2_VAE.pth" in line and CLIP not in line and not out.exists()
    assert not [c for c in fake_hub.calls if c[0] in ("model_info", "hf_hub_download")]
    # once downloaded, the same run works offline (HF_HUB_OFFLINE; any network call would fail the fake Hub)
    resolve.locate("Wan-AI/Wan2.2-TI2V-5B", "wan", task="ti2v-5B")
    fake_hub.calls.clear()
    constants.HF_HUB_OFFLINE = True  # restored by the fixture's monkeypatch
    assert resolve.locate("Wan-AI/Wan2.2-TI2V-5B", "wan", task="ti2v-5B").layout == "official"
    assert [c[0] for c in fake_hub.calls] == ["snapshot_download"] and fake_hub.calls[0][3] is True


def test_ltx2_local_files_only_names_the_files(fake_hub):
    with pytest.raises(DownloadError) as e:
        resolve.locate("Lightricks/LTX-2", "ltx2", variant="distilled", pipeline="distilled", local_files_only=True)
    msg = str(e.value)
    spec = LTX2_REPOS["Lightricks/LTX-2"]
    assert "\n" not in msg and f"--include {spec['distilled']}" in msg and spec["dev"] not in msg and "lora" not in msg


def test_convert_local_files_only_exit_2(fake_hub, tmp_path):
    r = CliRunner().invoke(app, ["convert", "Wan-AI/Wan2.2-TI2V-5B", str(tmp_path / "dst"), "--local_files_only"])
    _one_line_exit_2(r, "Wan-AI/Wan2.2-TI2V-5B", "hf download")
    assert not (tmp_path / "dst").exists()


def test_local_files_only_for_real_against_an_empty_hf_home(tmp_path, monkeypatch):
    """huggingface_hub's own snapshot_download (no fake), the cache from HF_HOME in a fresh process."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "MLX_VIDEO_CACHE": str(tmp_path / "mlx")}
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    out = tmp_path / "o.mp4"
    args = ["generate", "--model", "Lightricks/LTX-2", "--pipeline", "distilled", "--prompt", "x"]
    r = subprocess.run(
        [sys.executable, "-c", "from mlx_video.cli import main; main()", *args, "--local_files_only", "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "Lightricks/LTX-2" in lines[0] and str(tmp_path / "hf" / "hub") in lines[0] and "hf download" in lines[0]
    assert not out.exists() and not (tmp_path / "mlx").exists()
    # and in-process, HF_HUB_OFFLINE as huggingface_hub reads it
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match=r"HF_HUB_OFFLINE is set.*hf download Wan-AI/Wan2.2-TI2V-5B"):
        hub.download("Wan-AI/Wan2.2-TI2V-5B", hub.wan_files("Wan-AI/Wan2.2-TI2V-5B", "ti2v-5B"))


# ----------------------------------------------------------------------------- where files go


def test_cache_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("MLX_VIDEO_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_root() == Path.home() / ".cache" / "mlx_video"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_root() == tmp_path / "xdg" / "mlx_video"
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "mine"))
    assert hub.cache_root() == tmp_path / "mine"
    assert hub.converted_path("wan-x", "ab" * 32).parent == tmp_path / "mine" / "converted"


def test_downloads_go_to_huggingface_hubs_cache(fake_hub, tmp_path):
    folder = hub.download("Wan-AI/Wan2.2-TI2V-5B", ["config.json"])
    assert folder.is_relative_to(Path(constants.HF_HUB_CACHE)) and (folder / "config.json").is_file()
    calls = [c for c in fake_hub.calls if c[0] == "snapshot_download"]
    assert calls and all(c[2] == ("config.json",) for c in calls)  # no cache_dir / local_dir of our own


# ----------------------------------------------------------------------------- conversion reports


@pytest.mark.parametrize("name", ["tiny-Wan2.2-I2V-A14B", "tiny-LTX-2"])
def test_conversion_reports_each_source_tensor_file_with_its_size(name, tmp_path):
    from tests.helpers import ASSETS

    src, ev = ASSETS / name, []
    resolve.convert(resolve.locate(str(src)), tmp_path / "out", progress=ev.append)
    files = {e.file for e in ev if e.file is not None}
    want = {
        "tiny-Wan2.2-I2V-A14B": {
            *(str(p.relative_to(src)) for p in src.glob("*_noise_model/*.safetensors")),
            "Wan2.1_VAE.pth",
            "models_t5_umt5-xxl-enc-bf16.pth",
        },
        "tiny-LTX-2": {p.name for p in src.rglob("*.safetensors")},
    }[name]
    assert files == want and any(f.startswith("high_noise_model/") for f in files) == (name != "tiny-LTX-2")
    sizes = {f: next(p for p in src.rglob("*") if str(p).endswith(f)).stat().st_size for f in files}
    for f in files:
        mine = [e for e in ev if e.file == f]
        assert [e.done for e in mine] == [0, sizes[f]] and {e.total for e in mine} == {sizes[f]}, (f, mine)
    phase = [e for e in ev if e.file is None]
    assert phase[0].done == 0 and phase[0].total == sum(sizes.values()) and phase[0].files == len(files)
    assert phase[-1].finished and phase[-1].done == phase[-1].total and sum(e.finished for e in phase) == 1
    assert all(e.phase == "convert" and e.what == "out" for e in ev)


def test_diffusers_source_files_are_the_shards_read(tmp_path):
    from mlx_video.wan.checkpoint import source_files
    from tests.test_wan_convert import _diffusers_folder

    root = tmp_path / "Wan2.2-TI2V-5B-Diffusers"
    _diffusers_folder(root)
    got = source_files(root, "diffusers")
    assert set(got) == {"dit", "vae", "t5"}  # no image_encoder/ in this release
    assert got["dit"] == sorted((root / "transformer").glob("*.safetensors")) and len(got["dit"]) > 1
    assert got["vae"] == [root / "vae" / "diffusion_pytorch_model.safetensors"]
    assert got["t5"] == sorted((root / "text_encoder").glob("*.safetensors"))
