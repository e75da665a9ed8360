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

``--pass`` picks what one unit of work is (the passes of a guided dev step, docs/ltx2.md §8):
    cond      one forward, no perturbations (the default; the distilled pipelines' only pass)
    stg       one forward with video and audio self-attention skipped in the STG block (29 LTX-2, 28 LTX-2.3;
              the last block when --layers is smaller)
    isolated  one forward without audio<->video cross-attention (the modality-isolated pass)
    step      one dev guided step of the official defaults: cond, uncond (a second random text context), STG,
              isolated. official: the 4 forwards in a row, as ``multi_modal_guider_denoising_func``; MLX: our
              :class:`~mlx_video.ltx2.denoise.Denoiser` (the same 4 passes + the guidance combination), with
              ``--guidance-batch`` passes per transformer call (1 = as the official, 4 = one batch-4 call)
    python -m benchmarks.ltx2_transformer --size full --model ltx23 --video 121x256x384 --pass step --guidance-batch 4
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from ltx_core.guidance.perturbations import (
    BatchedPerturbationConfig,
    Perturbation,
    PerturbationConfig,
    PerturbationType,
)
from ltx_core.model.transformer import Modality as RefModality
from ltx_core.model.transformer.attention import memory_efficient_attention
from ltx_core.types import AudioLatentShape, VideoLatentShape

from benchmarks import common
from benchmarks.common import mx, torch
from mlx_video.io.weights import load_strict
from mlx_video.ltx2.conditioning import TokenState
from mlx_video.ltx2.denoise import ISOLATED, Denoiser, TextContext
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, Modality, Perturbations, sanitize
from mlx_video.sampling.guidance import (
    LTX2_AUDIO_GUIDANCE,
    LTX2_VIDEO_GUIDANCE,
    LTX23_AUDIO_GUIDANCE,
    LTX23_VIDEO_GUIDANCE,
)
from tests.ltx_tiny import attention_widths, transformer_config
from tests.oracles import ltx_core_positions, ltx_core_transformer

FPS = 24.0
PASSES = ("cond", "stg", "isolated", "step")
TEXT_TOKENS = 1024
FULL_LAYERS = 48
REAL = attention_widths(32, 128, 4096, 32, 64, 2048)
TINY = attention_widths(2, 128, 256, 2, 64, 128)
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
    p.add_argument("--pass", dest="pass_", choices=PASSES, default="cond", help="the unit of work (see above)")
    p.add_argument("--guidance-batch", type=int, default=1, help="--pass step: our passes per transformer call")
    args = p.parse_args()
    if args.check and args.pass_ == "step":
        p.error("--check compares one forward: use it with --pass cond, stg or isolated")
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
        v_neg=rng.standard_normal((B, TEXT_TOKENS, ctx_v)),
        a_neg=rng.standard_normal((B, TEXT_TOKENS, ctx_a)),
        v_t=np.full((B, n_video), 0.8),
        a_t=np.full((B, n_audio), 0.8),
        sigma=np.full((B,), 0.8),
    )
    x = {k: v.astype(np.float32) for k, v in x.items()}
    ltx23 = args.model == "ltx23"
    stg_block = min(28 if ltx23 else 29, layers - 1)
    guidance = (LTX23_VIDEO_GUIDANCE, LTX23_AUDIO_GUIDANCE) if ltx23 else (LTX2_VIDEO_GUIDANCE, LTX2_AUDIO_GUIDANCE)
    guidance = tuple(replace(g, stg_blocks=(stg_block,)) for g in guidance)
    stg_kinds = {"video_self_attn": [stg_block], "audio_self_attn": [stg_block]}

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
        one = lambda *kinds: BatchedPerturbationConfig([PerturbationConfig(list(kinds))] * B)  # noqa: E731
        pt = PerturbationType
        stg = one(
            Perturbation(pt.SKIP_VIDEO_SELF_ATTN, [stg_block]), Perturbation(pt.SKIP_AUDIO_SELF_ATTN, [stg_block])
        )
        iso = one(Perturbation(pt.SKIP_A2V_CROSS_ATTN, None), Perturbation(pt.SKIP_V2A_CROSS_ATTN, None))
        plain = BatchedPerturbationConfig.empty(B)
        if args.pass_ == "step":  # multi_modal_guider_denoising_func's 4 forwards
            neg_v = replace(video, context=t("v_neg", tdt))
            neg_a = replace(audio, context=t("a_neg", tdt))
            run = lambda: (m(video, audio, plain), m(neg_v, neg_a, plain), m(video, audio, stg), m(video, audio, iso))  # noqa: E731
        else:
            pert = {"cond": plain, "stg": stg, "isolated": iso}[args.pass_]
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
        if args.pass_ == "step":  # the Denoiser's guided step (its RoPE tables built here, outside the timing)

            def state(lat, pos):
                latent = m(lat)
                return TokenState(latent, latent, mx.ones((*latent.shape[:2], 1)), pos, latent.shape[1])

            den = Denoiser(
                model,
                state("v_lat", vpos),
                state("a_lat", apos),
                TextContext(m("v_ctx"), m("a_ctx")),
                TextContext(m("v_neg"), m("a_neg")),
                guidance,
                args.guidance_batch,
            )
            run = lambda: den([m("v_lat"), m("a_lat")], float(x["sigma"][0]))  # noqa: E731
        else:
            pert = {"cond": None, "stg": Perturbations((stg_kinds,) * B), "isolated": Perturbations((ISOLATED,) * B)}
            run = lambda: model(video, audio, rope, pert[args.pass_])  # noqa: E731
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
        unit=args.pass_ + (f" (STG block {stg_block})" if args.pass_ in ("stg", "step") else ""),
    )
    if args.pass_ == "step":
        config["mlx_guidance_batch"] = args.guidance_batch
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
