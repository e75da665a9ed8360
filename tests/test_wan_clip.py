"""Wan2.1 CLIP visual tower parity against transformers' CLIPVisionModel (hidden_states[-2]), through both
checkpoint layouts, and Wan's preprocessing (torch bicubic resize + CLIP normalisation)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.wan.clip import CLIP_MEAN, CLIP_STD, CLIPVisionArgs, CLIPVisionEncoder, preprocess, sanitize
from tests.oracles import randomize_, rel_err

# Measured 3e-7. Tighter than the 3e-4 ORACLES allows for attention stacks so that tanh-GELU in
# place of the exact one (8.7e-5 at these sizes) fails.
TOL = 1e-5
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_hidden_layers=3,
    image_size=28,
    patch_size=7,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)


def _hf(seed=0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(projection_dim=16, attn_implementation="eager", **TINY)
    m = CLIPVisionModelWithProjection(cfg).eval()
    randomize_(m, seed=seed, std=0.1)
    with torch.no_grad():  # class / position tables: std 0.5
        m.vision_model.embeddings.class_embedding.mul_(5.0)
        m.vision_model.embeddings.position_embedding.weight.mul_(5.0)
    return m, cfg


def _to_mx(sd) -> dict:
    return {k: mx.array(v.detach().float().numpy()) for k, v in sd.items()}


def open_clip_visual(sd: dict, layers: int) -> dict:
    """A transformers CLIP vision state dict ``sd`` (``layers`` encoder layers) under Wan2.1's open-clip
    ``visual.*`` names (what models_clip_*.pth holds), post-norm included; built here independently of
    ``sanitize``."""
    v = "vision_model."
    out = {
        "visual.patch_embedding.weight": sd[v + "embeddings.patch_embedding.weight"],
        "visual.cls_embedding": sd[v + "embeddings.class_embedding"].reshape(1, 1, -1),
        "visual.pos_embedding": sd[v + "embeddings.position_embedding.weight"][None],
    }
    for leaf in ("weight", "bias"):
        out[f"visual.pre_norm.{leaf}"] = sd[f"{v}pre_layrnorm.{leaf}"]
        out[f"visual.post_norm.{leaf}"] = sd[f"{v}post_layernorm.{leaf}"]
        for i in range(layers):
            p, q = f"{v}encoder.layers.{i}.", f"visual.transformer.{i}."
            out[q + "attn.to_qkv." + leaf] = torch.cat([sd[p + f"self_attn.{x}_proj.{leaf}"] for x in "qkv"])
            for a, b in (
                ("layer_norm1", "norm1"),
                ("layer_norm2", "norm2"),
                ("self_attn.out_proj", "attn.proj"),
                ("mlp.fc1", "mlp.0"),
                ("mlp.fc2", "mlp.2"),
            ):
                out[f"{q}{b}.{leaf}"] = sd[f"{p}{a}.{leaf}"]
    return out


def _open_clip_names(sd: dict) -> dict:
    """The same weights under Wan2.1's open-clip names, plus the keys Wan never reads (text tower, head,
    post-norm)."""
    out = open_clip_visual(sd, TINY["num_hidden_layers"])
    out["visual.head"] = torch.randn(32, 16)
    out["textual.token_embedding.weight"] = torch.randn(10, 8)
    out["log_scale"] = torch.tensor(2.0)
    return out


def _torch_preprocess(images_nhwc: np.ndarray, size: int) -> torch.Tensor:
    """Wan2.1 CLIPModel.visual's preprocessing on NCHW torch tensors."""
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = x.mul(0.5).add(0.5)
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def _images(seed=0, n=2, h=40, w=52):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, h, w, 3)).astype(np.float32)


def test_preprocess_matches_wan():
    x = _images(2, 2, 96, 160)
    want = _torch_preprocess(x, 224).permute(0, 2, 3, 1).numpy()
    got = preprocess(mx.array(x), 224)
    assert got.shape == (2, 224, 224, 3)
    assert rel_err(got, want) < 2e-6


@pytest.mark.parametrize("layout", ["hf", "official"])
def test_visual_tower_parity(layout):
    ref, cfg = _hf()
    images = _images(3)
    with torch.no_grad():
        out = ref(pixel_values=_torch_preprocess(images, 28), output_hidden_states=True)
    want = out.hidden_states[-2].numpy()  # after the first n-1 blocks, no post-norm (Wan's use_31_block)
    sd = ref.state_dict()
    weights = _to_mx(sd if layout == "hf" else _open_clip_names(sd))
    args = CLIPVisionArgs.from_config(cfg.to_dict())
    model = load_strict(CLIPVisionEncoder(args), sanitize(weights, layout), "clip")
    got = model.encode_images(mx.array(images))
    assert got.shape == (2, 17, 32) and got.dtype == mx.float32
    err = rel_err(got, want)
    assert err <= TOL, err

    # Sensitivity: the positions, the class token, the input image, and stopping before the last block.
    assert rel_err(out.hidden_states[-1], want) > 100 * TOL
    assert rel_err(model.encode_images(mx.array(images[:, ::-1].copy())), want) > 100 * TOL  # flipped image
    model.pos_embedding = mx.zeros_like(model.pos_embedding)
    assert rel_err(model.encode_images(mx.array(images)), want) > 100 * TOL
    model = load_strict(CLIPVisionEncoder(args), sanitize(weights, layout), "clip")
    model.cls_embedding = mx.zeros_like(model.cls_embedding)
    assert rel_err(model.encode_images(mx.array(images))[:, 0], want[:, 0]) > 100 * TOL


def test_config_readers():
    vit_h = CLIPVisionArgs.from_config(
        {
            "embed_dim": 1024,
            "image_size": 224,
            "patch_size": 14,
            "vision_dim": 1280,
            "vision_mlp_ratio": 4,
            "vision_heads": 16,
            "vision_layers": 32,
            "vision_pool": "token",
            "activation": "gelu",
        }
    )
    assert vit_h == CLIPVisionArgs()
    hf = {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_attention_heads": 16,
        "num_hidden_layers": 32,
        "image_size": 224,
        "patch_size": 14,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    }
    assert CLIPVisionArgs.from_config({"vision_config": hf}) == CLIPVisionArgs()
    with pytest.raises(ValueError):
        CLIPVisionArgs.from_config({**hf, "hidden_act": "quick_gelu"})


def test_strict_loading_names_keys():
    ref, cfg = _hf()
    w = sanitize(_to_mx(ref.state_dict()), "hf")
    model = CLIPVisionEncoder(CLIPVisionArgs.from_config(cfg.to_dict()))
    k = "blocks.2.attn.to_qkv.weight"
    for bad, name in [
        ({kk: v for kk, v in w.items() if kk != k}, k),
        ({**w, "blocks.2.attn.extra": w[k]}, "blocks.2.attn.extra"),
        ({**w, k: w[k][:64]}, k),
    ]:
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(model, bad, "clip")
    # an unknown checkpoint key is passed on, not dropped; an incomplete q/k/v is reported, not fused
    sd = _to_mx(ref.state_dict())
    with pytest.raises(WeightsError, match=r"vision_model\.foo"):
        load_strict(model, sanitize({**sd, "vision_model.foo": sd["visual_projection.weight"]}, "hf"), "clip")
    del sd["vision_model.encoder.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(WeightsError, match=r"layers\.1\.self_attn\.q_proj\.bias"):
        load_strict(model, sanitize(sd, "hf"), "clip")
    with pytest.raises(ValueError):
        sanitize(sd, "diffusers")
