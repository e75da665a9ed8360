"""One LTX-2 audio+video transformer forward: mlx_video.ltx2.transformer.LTXModel against ltx-core's LTXModel.

    python -m benchmarks.ltx2_transformer --size tiny                 # smoke run (narrow widths)
    python -m benchmarks.ltx2_transformer --size mid --layers 1       # real LTX-2 widths, 384 video tokens
    python -m benchmarks.ltx2_transformer --size full                 # 768x512, 121 frames + 5 s audio, 48 blocks
    python -m benchmarks.ltx2_transformer --size full --model ltx23   # LTX-2.3 (gated attention, prompt AdaLN)

What one forward is on each side (as a denoising step calls it):
- official: ltx-core ``LTXModel(video, audio, perturbations)`` with ``Modality`` inputs holding
  positions; RoPE tables are computed inside every forward. bf16: the model is built in bf16 (as
  ltx-pipelines' model ledger does) and the latents / text context are bf16; positions float32.
  Attention: ltx-core's default (xformers if installed, else torch SDPA), recorded in the notes.
- MLX: ``model(video, audio, rope)`` with the RoPE tables built once per stage from the same
  positions (their one-off cost is reported as ``prep_s``).
Inputs on both sides: per-token timesteps sigma=0.8 (the pipelines' ``denoise_mask * sigma``),
video/audio positions from ltx-core's latent tools (24 fps; audio 25 latents/s), 1024 text tokens
(the Gemma connectors' output length), no perturbations. Weights are independent random draws.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer import Modality as RefModality
from ltx_core.model.transformer.attention import memory_efficient_attention
from ltx_core.types import AudioLatentShape, VideoLatentShape

from benchmarks import common
from benchmarks.common import mx, torch
from mlx_video.io.weights import load_strict
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, Modality, sanitize
from tests.ltx_tiny import transformer_config
from tests.oracles import ltx_core_positions, ltx_core_transformer

FPS = 24.0
TEXT_TOKENS = 1024
FULL_LAYERS = 48
REAL = dict(
    num_attention_heads=32,
    attention_head_dim=128,
    cross_attention_dim=4096,
    audio_num_attention_heads=32,
    audio_attention_head_dim=64,
    audio_cross_attention_dim=2048,
)
TINY = dict(
    num_attention_heads=2,
    attention_head_dim=128,
    cross_attention_dim=256,
    audio_num_attention_heads=2,
    audio_attention_head_dim=64,
    audio_cross_attention_dim=128,
)
SIZES = {"tiny": (9, 64, 64), "mid": (25, 256, 384), "full": (121, 512, 768)}  # frames, height, width


def checkpoint_config(model: str, widths: dict, layers: int) -> dict:
    """The embedded-checkpoint config of LTX-2 (19B) / LTX-2.3 with the real settings (docs/ltx2.md 2.1)."""
    channels = dict(in_channels=128, out_channels=128, audio_in_channels=128, audio_out_channels=128)
    return transformer_config(model, dict(widths, num_layers=layers, caption_channels=3840, **channels))


def ref_transformer_ctor(a: LTXModelArgs, layers: int):
    """A constructor of ltx-core's LTXModel (audio+video) with ``a``'s widths and ``layers`` blocks, with
    the shipped settings (split RoPE, float64 frequency grid), for ``common.torch_build``."""
    return lambda: ltx_core_transformer(replace(a, num_layers=layers))  # noqa: E731


def main():
    p = common.parser(__doc__.split("\n")[0], list(SIZES))
    p.add_argument("--model", choices=("ltx2", "ltx23"), default="ltx2")
    p.add_argument("--video", default=None, help="override the size preset's FxHxW, e.g. 121x512x768")
    args = p.parse_args()
    widths = TINY if args.size == "tiny" else REAL
    layers = args.layers or {"tiny": 2, "mid": 2}.get(args.size, FULL_LAYERS)
    frames, height, width = tuple(int(v) for v in args.video.split("x")) if args.video else SIZES[args.size]
    a = LTXModelArgs.from_config(checkpoint_config(args.model, widths, layers))
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()
    B = 1

    (T, h, w), n_video = common.video_tokens(frames, height, width, 8, 32)
    ashape = AudioLatentShape.from_duration(B, frames / FPS)
    vpos, apos = ltx_core_positions(VideoLatentShape(B, 128, T, h, w), ashape, FPS)
    n_audio = apos.shape[2]
    rng = np.random.default_rng(args.seed)
    ctx_v = a.caption_channels if a.caption_projection else a.cross_attention_dim
    ctx_a = a.caption_channels if a.caption_projection else a.audio_cross_attention_dim
    x = dict(
        v_lat=rng.standard_normal((B, n_video, 128)),
        a_lat=rng.standard_normal((B, n_audio, 128)),
        v_ctx=rng.standard_normal((B, TEXT_TOKENS, ctx_v)),
        a_ctx=rng.standard_normal((B, TEXT_TOKENS, ctx_a)),
        v_t=np.full((B, n_video), 0.8),
        a_t=np.full((B, n_audio), 0.8),
        sigma=np.full((B,), 0.8),
    )
    x = {k: v.astype(np.float32) for k, v in x.items()}

    def build_reference() -> common.Side:
        ctor = ref_transformer_ctor(a, layers)
        tdt = common.TORCH_DTYPES[dtype]
        m = common.torch_build(ctor, dev, tdt, args.seed)
        t = lambda k, dt=torch.float32: torch.from_numpy(x[k]).to(dev, dt)  # noqa: E731
        pos = lambda p_: torch.from_numpy(p_).to(dev)  # noqa: E731
        video = RefModality(
            latent=t("v_lat", tdt), sigma=t("sigma"), timesteps=t("v_t"), positions=pos(vpos), context=t("v_ctx", tdt)
        )
        audio = RefModality(
            latent=t("a_lat", tdt), sigma=t("sigma"), timesteps=t("a_t"), positions=pos(apos), context=t("a_ctx", tdt)
        )
        pert = BatchedPerturbationConfig.empty(B)
        run = lambda: m(video, audio, pert)  # noqa: E731
        attn = "xformers" if memory_efficient_attention is not None else "torch SDPA"
        return common.Side(
            run,
            _ref_numpy,
            common.torch_nbytes(m),
            common.torch_nbytes(m.transformer_blocks[0]),
            dict(attention=f"ltx-core default ({attn})"),
            m,
        )

    def build_mlx(weights) -> common.Side:
        mdt = common.MLX_DTYPES[dtype]
        model = LTXModel(a)
        if weights is None:
            common.mlx_random_(model, mdt, args.seed + 1)
        else:
            load_strict(model, sanitize(weights, "lightricks"), "LTX-2 transformer", dtype=mdt)
        t0 = time.perf_counter()
        rope = model.rope_tables(vpos, apos)
        mx.eval([u for tab in rope for u in tab])
        prep_s = time.perf_counter() - t0
        m = lambda k: mx.array(x[k])  # noqa: E731
        video = Modality(m("v_lat"), m("v_t"), m("sigma"), m("v_ctx"))
        audio = Modality(m("a_lat"), m("a_t"), m("sigma"), m("a_ctx"))
        run = lambda: model(video, audio, rope)  # noqa: E731
        return common.Side(
            run,
            lambda out: np.concatenate([np.array(o.astype(mx.float32)).reshape(-1) for o in out]),
            common.mlx_nbytes(model),
            common.mlx_nbytes(model.transformer_blocks[0]),
            dict(prep_s=round(prep_s, 4)),
            model,
        )

    def export(side):
        return {"model.diffusion_model." + k: v for k, v in common.state_to_mlx(side.model).items()}

    config = dict(
        model=args.model,
        size=args.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}",
        video_tokens=n_video,
        audio_tokens=n_audio,
        text_tokens=TEXT_TOKENS,
        layers=f"{layers}/{FULL_LAYERS}" if args.size != "tiny" else f"{layers} (narrow)",
    )
    common.bench(
        "ltx2_transformer",
        args,
        config,
        build_reference,
        build_mlx,
        export_weights=export,
        layers=None if args.size == "tiny" else (layers, FULL_LAYERS),
    )


def _ref_numpy(out) -> np.ndarray:
    return np.concatenate([o.float().cpu().numpy().reshape(-1) for o in out])


if __name__ == "__main__":
    main()
