"""Build tiny random-weight Wan2.1 I2V-14B, Wan2.1 FLF2V-14B and Wan2.2 I2V-A14B smoke-test checkpoints
in the *official* Wan-AI layouts.

SMOKE-TEST MODELS: random weights, their videos are noise. They exist so `mlx_video generate` can run the
I2V / FLF2V / A14B / one-frame paths end to end offline through the real checkpoint layouts, our
converter and our loader.

Files written, as the real repos ship them:
- Wan2.1 (tiny-Wan2.1-I2V-14B, tiny-Wan2.1-FLF2V-14B): config.json + diffusion_pytorch_model.safetensors
  (DiT with the CLIP image branch, official key names, bf16), Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth,
  google/umt5-xxl/ (tiny tokenizer), models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (open-clip names:
  visual tower + a token text tower / head / post-norm that Wan never reads; fp16). The DiT is a diffusers
  ``WanTransformer3DModel`` renamed to the official keys (tests/test_wan_transformer.py's independent table),
  since the installed official package (Wan2.2) no longer has the CLIP branch. Stand-in sizes: CLIP width 80
  (1 head of 80) and 5 tokens (28 px, patch 14) instead of 1280 and 257; FLF2V position table 2x5.
- Wan2.2 (tiny-Wan2.2-I2V-A14B): high_noise_model/ and low_noise_model/ (config.json + safetensors, the
  official ``WanModel(model_type='i2v')``, in_dim 36, different seeds), Wan2.1_VAE.pth, T5, tokenizer.
Seeded, so the script is reproducible. Needs the oracle extras (torch, wan22, diffusers, transformers).

Usage: python -m scripts.make_tiny_wan21 [OUT_ROOT]   (default assets/)
"""

import json
import sys
from pathlib import Path

from scripts.make_tiny_wan import release_config, write_text_encoder

ROOT = Path(__file__).resolve().parents[1]

# The only changes to the releases' config.json: widths and depths (text_dim added to fit the tiny T5).
DIT = dict(dim=32, ffn_dim=64, freq_dim=32, num_heads=2, num_layers=2, text_dim=32)
RELEASES = {"i2v": "Wan2.1-I2V-14B-480P", "flf2v": "Wan2.1-FLF2V-14B-720P", "a14b": "Wan2.2-I2V-A14B-high_noise_model"}
VAE21 = dict(dim=4, z_dim=16)
CLIP = dict(
    hidden_size=80,
    intermediate_size=160,
    num_attention_heads=1,
    num_hidden_layers=2,
    image_size=28,
    patch_size=14,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
CLIP_TOKENS = (CLIP["image_size"] // CLIP["patch_size"]) ** 2 + 1
README = (
    "# SMOKE-TEST MODEL (random weights): its videos are noise\n\n"
    "A shrunk {what} in the official Wan-AI layout, made by `python -m scripts.make_tiny_wan21` (seed {seed}) "
    "from the official / diffusers PyTorch modules. For offline end-to-end runs and tests only.\n\n"
)


def _common(out: Path, seed: int):
    """Wan2.1 VAE, T5 and tokenizer, shared by every task here."""
    import torch

    from tests import oracles

    w = oracles.wan()
    vae = w.vae2_1.WanVAE_(
        dim=VAE21["dim"],
        z_dim=VAE21["z_dim"],
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
    )
    oracles.randomize_(vae, seed=seed + 1, fan_in=True)
    torch.save(vae.state_dict(), out / "Wan2.1_VAE.pth")
    write_text_encoder(out, seed + 2)


def _save_dit(sd: dict, folder: Path, cfg: dict) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()},
        str(folder / "diffusion_pytorch_model.safetensors"),
        metadata={"format": "pt"},
    )
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def open_clip_state(seed: int) -> dict:
    """A tiny CLIP ViT (transformers) under Wan2.1's open-clip names, plus unused text-tower keys."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from tests import oracles
    from tests.test_wan_clip import open_clip_visual

    m = CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=16, **CLIP)).eval()
    oracles.randomize_(m, seed=seed, std=0.1)
    with torch.no_grad():
        m.vision_model.embeddings.class_embedding.mul_(5.0)
        m.vision_model.embeddings.position_embedding.weight.mul_(5.0)
    out = open_clip_visual(m.state_dict(), CLIP["num_hidden_layers"])
    g = torch.Generator().manual_seed(seed)
    out["visual.head"] = torch.randn(CLIP["hidden_size"], 16, generator=g)
    out["textual.token_embedding.weight"] = torch.randn(10, 8, generator=g)
    out["log_scale"] = torch.tensor(4.6)
    return {k: t.to(torch.float16).contiguous() for k, t in out.items()}


def wan21_dit(flf: bool, seed: int):
    """A tiny diffusers Wan2.1 I2V/FLF2V DiT (CLIP branch), random weights as the parity tests draw them."""
    from tests import oracles
    from tests.test_wan_transformer import sharpen_cross_attention_
    from tests.wan_tiny import diffusers_dit

    head = DIT["dim"] // DIT["num_heads"]
    dm = diffusers_dit(DIT, 36, 16, image_dim=CLIP["hidden_size"], pos_embed_seq_len=2 * CLIP_TOKENS if flf else None)
    sharpen_cross_attention_(oracles.randomize_(dm, seed=seed))
    dm.rope = type(dm.rope)(head, (1, 2, 2), 1024)  # randomize_ also filled the RoPE buffers
    return dm


def build_wan21(out: Path, flf: bool, seed: int = 0) -> Path:
    import torch

    from tests.test_wan_transformer import diffusers_to_official

    out.mkdir(parents=True, exist_ok=True)
    _common(out, seed)
    dm = wan21_dit(flf, seed)
    sd = {k: v for k, v in dm.state_dict().items() if not k.startswith("rope.")}
    cfg, readme = release_config(RELEASES["flf2v" if flf else "i2v"], DIT)
    _save_dit(diffusers_to_official(sd), out, cfg)
    torch.save(open_clip_state(seed + 3), out / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    (out / "README.md").write_text(README.format(what=f"Wan2.1 {'FLF2V' if flf else 'I2V'}-14B", seed=seed) + readme)
    return out


def build_a14b(out: Path, seed: int = 0) -> Path:
    from tests import oracles

    w = oracles.wan()
    out.mkdir(parents=True, exist_ok=True)
    _common(out, seed)
    cfg, readme = release_config(RELEASES["a14b"], DIT)  # the high and low experts' configs are the same
    kw = {k: v for k, v in cfg.items() if not k.startswith("_")}
    for i, sub in enumerate(("high_noise_model", "low_noise_model")):
        dit = w.model.WanModel(**kw).eval()
        oracles.randomize_(dit, seed=seed + 10 + i, std=0.1, table_std=0.5)
        _save_dit(dit.state_dict(), out / sub, cfg)
    (out / "README.md").write_text(README.format(what="Wan2.2 I2V-A14B (two experts)", seed=seed) + readme)
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets"
    print(build_wan21(root / "tiny-Wan2.1-I2V-14B", flf=False))
    print(build_wan21(root / "tiny-Wan2.1-FLF2V-14B", flf=True))
    print(build_a14b(root / "tiny-Wan2.2-I2V-A14B"))
