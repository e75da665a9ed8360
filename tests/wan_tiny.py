"""Shared fixtures for Wan pipeline tests: the tiny official-layout checkpoint, converted once per session."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "assets" / "tiny-Wan2.2-TI2V-5B"


# Wan2.2 VAE latent statistics (wan/modules/vae2_2.py, Wan2_2_VAE.__init__)
def official_vae22_scale():
    import torch

    from mlx_video.wan.vae22 import Wan22VAEArgs

    a = Wan22VAEArgs()
    mean = torch.tensor(a.latents_mean, dtype=torch.float32)
    std = torch.tensor(a.latents_std, dtype=torch.float32)
    return [mean, 1.0 / std]


def load_official(src: Path):
    """The official torch DiT and VAE of an official-layout folder (float32), as the reference runs them."""
    import json

    import torch
    from safetensors.torch import load_file

    from tests import oracles

    w = oracles.wan()
    cfg = json.loads((src / "config.json").read_text())
    kw = {k: v for k, v in cfg.items() if not k.startswith("_")}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    dit = w.model.WanModel(**kw).eval()
    dit.load_state_dict({k: v.float() for k, v in load_file(str(src / "diffusion_pytorch_model.safetensors")).items()})
    sd = torch.load(src / "Wan2.2_VAE.pth", map_location="cpu")
    dim = sd["encoder.conv1.weight"].shape[0]
    z = sd["conv1.weight"].shape[0] // 2
    dec_dim = sd["decoder.conv1.weight"].shape[0] // 4
    vae = w.vae2_2.WanVAE_(dim=dim, dec_dim=dec_dim, z_dim=z, temperal_downsample=[False, True, True]).eval()
    vae.load_state_dict(sd)
    return dit, vae


def contexts(dim: int, lengths=(5, 6)):
    """Seeded conditional and unconditional text contexts ([5, dim] and [6, dim] mx arrays, keys 0 and 1)."""
    import mlx.core as mx

    return [mx.random.normal((n, dim), key=mx.random.key(i)) for i, n in enumerate(lengths)]


def tiny_pipeline(tmp_path_factory):
    """The tiny TI2V-5B converted in float32 into a fresh temporary folder and loaded resident (no offload)."""
    import mlx.core as mx

    from mlx_video.wan.checkpoint import convert_wan
    from mlx_video.wan.pipeline import WanPipeline

    conv = convert_wan(TINY, tmp_path_factory.mktemp("conv") / "tiny", dtype="float32")
    return WanPipeline(conv, dtype=mx.float32, offload=False)


def tiny_inputs(pipe, noise_shape=None, **kw) -> dict:
    """``generate`` keywords for the tiny TI2V-5B at 64*64, 9 frames, shift 5, guide scale 5, with the seeded
    :func:`contexts` and, given ``noise_shape``, seeded noise (key 2); ``kw`` adds to or replaces them."""
    import mlx.core as mx

    run = dict(context=contexts(pipe.cfg["dit"]["text_dim"]), size="64*64", frame_num=9)
    run.update(sample_shift=5.0, guide_scale=5.0)
    if noise_shape is not None:
        run["noise"] = mx.random.normal(noise_shape, key=mx.random.key(2))
    return dict(run, **kw)


def _latent_and_timesteps(x, t, ctx, rope, **kw):
    import numpy as np

    return np.array(x), np.array(t)


class DiTSpy:
    """Stands for a Wan DiT (attributes pass through) and appends ``record(x, t, ctx, rope, **kw)`` of every
    call to ``calls``; by default the latent and timesteps as numpy arrays."""

    def __init__(self, model, record=_latent_and_timesteps):
        self.model, self.record, self.calls = model, record, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, x, t, ctx, rope, **kw):
        self.calls.append(self.record(x, t, ctx, rope, **kw))
        return self.model(x, t, ctx, rope, **kw)


def spy_on(pipe, monkeypatch, record=_latent_and_timesteps) -> DiTSpy:
    """A DiTSpy of ``pipe.dit`` that ``pipe.model(name)`` returns for every expert name."""
    spy = DiTSpy(pipe.dit, record)
    monkeypatch.setattr(pipe, "model", lambda name="dit": spy)
    return spy


def diffusers_dit(cfg: dict, in_channels: int, out_channels: int, image_dim=None, pos_embed_seq_len=None):
    """diffusers' ``WanTransformer3DModel`` (eval mode, its own init) at the widths of an official ``config.json``
    dict (dim, num_heads, text_dim, freq_dim, ffn_dim, num_layers); ``image_dim`` adds the Wan2.1 CLIP branch."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=cfg["num_heads"],
        attention_head_dim=cfg["dim"] // cfg["num_heads"],
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=cfg["text_dim"],
        freq_dim=cfg["freq_dim"],
        ffn_dim=cfg["ffn_dim"],
        num_layers=cfg["num_layers"],
        image_dim=image_dim,
        added_kv_proj_dim=cfg["dim"] if image_dim else None,
        pos_embed_seq_len=pos_embed_seq_len,
    ).eval()


def run_cli(*args, task: str = "t2v-5B", ckpt_dir=TINY):
    """``mlx_video generate --task TASK --ckpt_dir CKPT_DIR ARGS`` in-process (multi-value flags expanded as
    the console script does; ARGS made strings); the click Result. Default checkpoint: the tiny TI2V-5B."""
    from typer.testing import CliRunner

    from mlx_video.cli import _expand_multi, app

    argv = ["generate", "--task", task, "--ckpt_dir", str(ckpt_dir), *(str(a) for a in args)]
    return CliRunner().invoke(app, _expand_multi(argv))
