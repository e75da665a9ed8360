"""Build the tiny random-weight Wan2.2 TI2V-5B smoke-test checkpoint in the *official* layout.

SMOKE-TEST MODEL: random weights, its videos are noise. It exists so `mlx_video generate` can run end to
end offline through the real checkpoint layout, our converter and our loader.

Files written (as Wan-AI/Wan2.2-TI2V-5B ships them): config.json + diffusion_pytorch_model.safetensors
(DiT, bf16), Wan2.2_VAE.pth (float32), models_t5_umt5-xxl-enc-bf16.pth (bf16), google/umt5-xxl/
(a tiny tokenizer from tests/fixtures). The modules are the official PyTorch ones (package `wan22`),
shrunk; seeded, so the script is reproducible. Needs the oracle extras (torch, wan22).

Usage: python -m scripts.make_tiny_wan [OUT_DIR]   (default assets/tiny-Wan2.2-TI2V-5B)
"""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The only changes to the release's config.json (tests/fixtures/releases/Wan2.2-TI2V-5B): widths and depths;
# text_dim (absent there: the official default 4096) is added to fit the tiny T5.
DIT = dict(dim=64, ffn_dim=128, freq_dim=32, num_heads=2, num_layers=2, text_dim=32)
VAE = dict(dim=4, dec_dim=8, z_dim=48)
T5 = dict(dim=32, dim_attn=32, dim_ffn=64, num_heads=4, num_layers=2, num_buckets=32, shared_pos=False)


def release_config(release: str, tiny: dict) -> tuple[dict, str]:
    """(config, README lines): the release's config.json text (tests/fixtures/releases/<release>, see its
    SOURCE.md) with only ``tiny``'s values changed (a key it lacks is added at the end)."""
    cfg = json.loads((ROOT / "tests" / "fixtures" / "releases" / release / "config.json").read_text())
    rows = []
    for k, v in tiny.items():
        rows.append(f"| `{k}` | {json.dumps(cfg[k]) if k in cfg else '(added)'} | {json.dumps(v)} |")
        cfg[k] = v
    readme = (
        f"The DiT config.json is tests/fixtures/releases/{release}/config.json (its SOURCE.md says where it "
        f"comes from: a reconstruction, no verbatim copy was found) with only these widths and depths "
        f"changed:\n\n| key | release | tiny |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    return cfg, readme


def write_text_encoder(out: Path, seed: int) -> None:
    """The tiny UMT5 encoder (bf16 .pth, official names) and its tokenizer folder, as every Wan
    checkpoint ships them."""
    import torch

    from tests import oracles

    tok_src = ROOT / "tests" / "fixtures" / "tiny-umt5-tokenizer"
    vocab = len(json.loads((tok_src / "tokenizer.json").read_text())["model"]["vocab"])
    t5 = oracles.wan().t5.T5Encoder(vocab=vocab, dropout=0.0, **T5)
    oracles.randomize_(t5, seed=seed, std=0.1)
    torch.save({k: v.to(torch.bfloat16) for k, v in t5.state_dict().items()}, out / "models_t5_umt5-xxl-enc-bf16.pth")
    tok = out / "google" / "umt5-xxl"
    if tok.exists():
        shutil.rmtree(tok)
    shutil.copytree(tok_src, tok)


def build(out: Path, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    from tests import oracles

    w = oracles.wan()
    out.mkdir(parents=True, exist_ok=True)
    cfg, readme = release_config("Wan2.2-TI2V-5B", DIT)
    dit = w.model.WanModel(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    oracles.randomize_(dit, seed=seed, std=0.1, table_std=0.5)  # docs/ORACLES.md: sensitive sizes
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in dit.state_dict().items()},
        str(out / "diffusion_pytorch_model.safetensors"),
        metadata={"format": "pt"},
    )
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    vae = w.vae2_2.WanVAE_(
        dim=VAE["dim"], dec_dim=VAE["dec_dim"], z_dim=VAE["z_dim"], temperal_downsample=[False, True, True]
    )
    oracles.randomize_(vae, seed=seed + 1, fan_in=True)
    torch.save(vae.state_dict(), out / "Wan2.2_VAE.pth")

    write_text_encoder(out, seed + 2)
    (out / "README.md").write_text(
        "# SMOKE-TEST MODEL (random weights): its videos are noise\n\n"
        "A shrunk Wan2.2 TI2V-5B in the official Wan-AI layout, made by `python -m scripts.make_tiny_wan` "
        f"(seed {seed}) from the official PyTorch modules. For offline end-to-end runs and tests only.\n\n" + readme
    )
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets" / "tiny-Wan2.2-TI2V-5B"))
