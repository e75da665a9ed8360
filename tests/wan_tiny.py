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
