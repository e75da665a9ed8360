"""LTX-2 / LTX-2.3 DISTILLED (or DEV_TWO_STAGE) pipeline, stage by stage: mlx_video.ltx2.pipelines.generate
against ltx-pipelines 1.0.0.

    python -m benchmarks.ltx2_distilled --size tiny                  # smoke run (narrow widths), ~30 s on CPU
    python -m benchmarks.ltx2_distilled --size full --repeat 2       # 768x512 (WxH), 121 frames + audio, 48 blocks
    python -m benchmarks.ltx2_distilled --size full --layers 8       # fewer blocks, labelled extrapolation
    python -m benchmarks.ltx2_distilled --size full --model ltx23    # LTX-2.3 (its decoder, BigVGAN + BWE vocoder)
    python -m benchmarks.ltx2_distilled --size full --video 121x704x1280
    python -m benchmarks.ltx2_distilled --size full --pipeline dev-two-stage --steps 10   # stage 1 projected

``--pipeline dev-two-stage`` (``TI2VidTwoStagesPipeline``): stage 1 at half resolution with the dev model and
the official multimodal guidance (CFG + STG + modality guidance: ``PipelineParams``' video / audio guider
params, ``LTX2Scheduler`` sigmas, ``--steps`` of the official 40 (LTX-2) / 30 (LTX-2.3); with fewer, stage 1
is also stated x official/N, labelled PROJECTED), a negative text context, then the distilled stage 2 as above.
The stage-2 weights (dev + distilled LoRA, fused at load by the official ledger and by our loader) cost the
same per forward as any other weights of that shape, so stage 2 reuses the stage-1 transformer on both sides.
With fewer than 30 blocks (``--layers``, tiny) the STG block is the last one on both sides.

One unit of work = one distilled run with audio, as ``DistilledPipeline.__call__`` composes it after
the prompt encoding. Gemma is not run: both sides get the same injected random text contexts of
1024 tokens (128 at ``--size tiny``), as the LTX-2 embeddings processor outputs them: 3840 wide for
both modalities, projected to 4096 (video) / 2048 (audio) by the transformer's caption projections
(LTX-2 keeps them in the transformer; LTX-2.3 moved them before the connectors).

    stage1        half resolution (384x256, latent 16x8x12), 8 distilled sigmas, Euler, no guidance
    upsample      x2 latent upsampler (un-normalise, upsample, re-normalise)
    stage2        full resolution (latent 16x16x24), re-noised to 0.909375, 3 sigmas, Euler
    decode_video  video VAE decode with the official tiling (TilingConfig.default(): 512 px / 64 px
                  overlap, 64 frames / 24 overlap)
    decode_audio  audio VAE decoder + vocoder (HiFi-GAN, 24 kHz stereo)

official: the building blocks DistilledPipeline calls, in its order: ``denoise_audio_video`` with
``GaussianNoiser``, ``euler_denoising_loop``, ``simple_denoising_func`` on ``X0Model(LTXModel)``,
ltx-core ``upsample_video``, ``decode_video`` (tiled, every uint8 chunk consumed) and
``decode_audio``. Not the class itself: its ModelLedger loads checkpoints and Gemma. Every module
is built in the pipeline dtype (bf16 on CUDA) as the ledger does, and all stay resident for the
whole run (the ledger builds the decoders after freeing the transformer; MLX keeps every component
resident too, so peaks are comparable). ``upsample_video`` reads the per-channel statistics from the
decoder (the checkpoint's encoder and decoder share them); the video encoder is not built (no images).
Each stage ends with ``torch.cuda.synchronize()``; ``torch.cuda.reset_peak_memory_stats()`` before it.
mlx: ``generate(LTX2Components, LTXSettings(pipeline="distilled"))``; its per-stage ``timings`` and
``phase_peak_gib`` (``mx.get_peak_memory``, reset per phase). Its stage2 timer includes the upsampler
(lazy: evaluated with the first stage-2 step), so the upsampler is also timed alone on the stage-1
latent after each run, and the table compares ``stage2+upsample`` on both sides.
Transformer and upsampler in ``--dtype``; our VAEs / vocoder too (as ``loading.load_components`` builds them
for a bf16 folder), or float32 with ``--decoder-dtype fp32`` (the earlier default).
Weights: random at the real widths (LTX-2 19B transformer, 48 blocks; VAE decoder of ltx2_vae.py;
upsampler mid 1024 rational x2; audio decoder ch 128; vocoder 1024 ch), drawn independently per side.
Peak memory includes the resident weights of every component. On a CPU the official side's peak is
the growth of the process RSS high-water mark during the stage (labelled), the MLX side's
``mx.get_peak_memory``.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time
import types
from dataclasses import replace

os.environ.setdefault("TQDM_DISABLE", "1")  # euler_denoising_loop's progress bar
# MLX's CUDA backend keeps one cuDNN graph per convolution configuration (shapes, dtype, strides) in an LRU
# cache of $MLX_CUDA_CONV_CACHE_SIZE entries (default 128), read once when MLX starts. A distilled LTX-2 run at
# 768x512x121 convolves in about 178 configurations (12 decode tiles of distinct shapes x 9 layer shapes, plus
# the audio decoder and vocoder), so with 128 every run rebuilds graphs evicted by the last, and MLX raises
# after 2 x capacity misses in a process (mlx 0.32 lru_cache.h). An entry is a built graph, no activations.
os.environ.setdefault("MLX_CUDA_CONV_CACHE_SIZE", "1024")  # before MLX is imported

import numpy as np  # noqa: E402
from ltx_core.components.diffusion_steps import EulerDiffusionStep  # noqa: E402
from ltx_core.components.guiders import create_multimodal_guider_factory  # noqa: E402
from ltx_core.components.noisers import GaussianNoiser  # noqa: E402
from ltx_core.components.schedulers import LTX2Scheduler  # noqa: E402
from ltx_core.model.audio_vae import AudioDecoderConfigurator, VocoderConfigurator  # noqa: E402
from ltx_core.model.audio_vae import decode_audio as ref_decode_audio  # noqa: E402
from ltx_core.model.transformer import X0Model  # noqa: E402
from ltx_core.model.upsampler import LatentUpsamplerConfigurator  # noqa: E402
from ltx_core.model.upsampler import upsample_video as ref_upsample_video  # noqa: E402
from ltx_core.model.video_vae import decode_video as ref_decode_video  # noqa: E402
from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator  # noqa: E402
from ltx_core.types import VideoPixelShape  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import mx, torch  # noqa: E402
from benchmarks.ltx2_transformer import FULL_LAYERS, REAL, TEXT_TOKENS, TINY, checkpoint_config, ref_transformer_ctor  # noqa: E402
from benchmarks.ltx2_vae import ref_tiling, single_file_keys, vae_config  # noqa: E402

if importlib.util.find_spec("av") is None:  # the GPU machine has no PyAV; ltx_pipelines imports it

    class _NoAV(types.ModuleType):  # for media I/O only (and in annotations), never called here
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _NoAV(f"{self.__name__}.{name}")

    sys.modules["av"] = _NoAV("av")
from ltx_pipelines.utils.constants import (  # noqa: E402
    DISTILLED_SIGMA_VALUES,
    LTX_2_3_PARAMS,
    LTX_2_PARAMS,
    STAGE_2_DISTILLED_SIGMA_VALUES,
)
from ltx_pipelines.utils.helpers import (  # noqa: E402
    denoise_audio_video,
    multi_modal_guider_factory_denoising_func,
    simple_denoising_func,
)
from ltx_pipelines.utils.samplers import euler_denoising_loop  # noqa: E402
from ltx_pipelines.utils.types import PipelineComponents  # noqa: E402

from mlx_video.ltx2 import audio_vae as av  # noqa: E402
from mlx_video.ltx2 import denoise as denoise_mod  # noqa: E402
from mlx_video.ltx2 import upsampler as up  # noqa: E402
from mlx_video.ltx2 import video_vae as vv_mod  # noqa: E402
from mlx_video.ltx2 import vocoder as vc  # noqa: E402
from mlx_video.ltx2.denoise import TextContext  # noqa: E402
from mlx_video.ltx2.loading import load_transformer  # noqa: E402
from mlx_video.ltx2.pipelines import LTX2Components, LTXSettings, generate  # noqa: E402
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs  # noqa: E402
from mlx_video.ltx2.video_vae import VideoVAE  # noqa: E402
from mlx_video.ltx2.video_vae import sanitize as vae_sanitize  # noqa: E402
from mlx_video.nn.conv import CONV3D_MODES  # noqa: E402
from tests.ltx_tiny import audio_vae_config, bwe_vocoder_config  # noqa: E402

FPS = 24.0
SIZES = {"tiny": (9, 128, 192), "full": (121, 512, 768)}  # frames, height, width (output)
TINY_TEXT_TOKENS = 128  # MLX's CPU BLAS here is slow; the real 1024 for every other size
STAGES = ("stage1", "upsample", "stage2", "stage2+upsample", "decode_video", "decode_audio", "total")


def audio_config(tiny: bool, model: str = "ltx2") -> dict:
    """LTX-2 audio VAE (docs/ltx2.md 5): ch 128, ch_mult (1,2,4), 2 res blocks, z 8 x 16 mel bins, causal;
    LTX-2.3: no mid-block attention. tiny: ch_mult (1,1,1), 1 res block (ch stays 128: ltx-core sizes the
    latent statistics by ch)."""
    return audio_vae_config(
        128,
        8,
        64,
        256,
        ch_mult=(1, 1, 1) if tiny else (1, 2, 4),
        num_res_blocks=1 if tiny else 2,
        mid_attention=model == "ltx2",
    )


def vocoder_config(ch: int, model: str = "ltx2") -> dict:
    """LTX-2 HiFi-GAN vocoder (docs/ltx2.md 5): 1024 ch, rates (6,5,2,2,2), ResBlock1 kernels 3/7/11.
    LTX-2.3 (``ch`` = 1536 real): BigVGAN-v2 1536 ch, rates (5,2,2,2,2,2) -> 16 kHz, then the BWE generator
    (ch / 3 = 512 ch, rates (6,5,2,2,2)) -> 48 kHz."""
    if model == "ltx23":
        return bwe_vocoder_config(
            ch, ch // 3, stereo=True, resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3
        )
    return {
        "vocoder": {
            "resblock": "1",
            "stereo": True,
            "upsample_initial_channel": ch,
            "upsample_rates": [6, 5, 2, 2, 2],
            "upsample_kernel_sizes": [16, 15, 8, 4, 4],
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5]] * 3,
            "output_sampling_rate": 24000,
        }
    }


def upsampler_config(mid: int) -> dict:
    """LTX-2 spatial x2 upsampler file metadata (docs/ltx2.md 6): mid 1024, rational resampler, scale 2."""
    return dict(
        in_channels=128,
        mid_channels=mid,
        num_blocks_per_stage=4,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        spatial_scale=2.0,
        rational_resampler=True,
    )


def mlx_video_vae(cfg: dict, seed: int, dtype=mx.float32) -> VideoVAE:
    """Decoder-only VideoVAE sized from random tensors with the reference checkpoint's shapes."""
    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in VideoDecoderConfigurator.from_config(cfg).state_dict().items()}
    converted = {}
    for i, (k, s) in enumerate(single_file_keys(shapes).items()):
        t = (
            common.random_normal(s, seed + i) * (1.0 / np.sqrt(np.prod(s[1:])))
            if len(s) > 1
            else (mx.ones(s) if "std" in k else mx.zeros(s))
        )
        one = vae_sanitize({k: t}, "lightricks")
        mx.eval(list(one.values()))
        converted.update(one)
    return VideoVAE.from_weights(converted, cfg, parts=("decoder",), dtype=dtype)


def write_random_transformer(folder, a: LTXModelArgs, dtype, q: dict | None, seed: int) -> dict:
    """Random LTX-2 transformer weights (``common.mlx_random_``'s scheme) written to ``folder/transformer.safetensors``
    in a converted folder's layout (our names; the blocks affine-quantized as ``q`` says, as the converter's
    ``quantize_linears``), with a config.json; one block in memory at a time while drawing. Returns the config dict
    ``loading.load_transformer`` takes."""
    import json

    from mlx.utils import tree_flatten

    from mlx_video.io.weights import quantize_linears, save_safetensors
    from mlx_video.ltx2.checkpoint import FORMAT, init_args

    model = LTXModel(a)  # lazy: nothing allocated until drawn
    blocks, model.transformer_blocks = model.transformer_blocks, []
    common.mlx_random_(model, dtype, seed)
    for i, block in enumerate(blocks):
        common.mlx_random_(block, dtype, seed + 1000 * (i + 1))
        if q:
            quantize_linears(block, {"bits": q["bits"], "group_size": q["group_size"]})
        mx.eval(block.parameters())
    model.transformer_blocks = blocks
    save_safetensors(folder / "transformer.safetensors", dict(tree_flatten(model.parameters())))
    del model, blocks
    common.release_memory()
    cfg = {
        "format": FORMAT,
        "family": "ltx2",
        "dtype": str(dtype).rsplit(".", 1)[-1],
        "transformer": init_args(a),
        "quantization": {"transformer": q} if q else {},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    return cfg


def _estimate(folder, video: tuple[int, int, int], stream_blocks, others) -> float:
    """mlx_video.ltx2.memory's LTX estimate of the run's peak for the written transformer folder (its streaming and
    quantization; distilled), plus the other components' weights, which live in memory here (GiB)."""
    from mlx_video.ltx2 import memory

    peaks = memory.ltx_phase_peaks(folder, "distilled", *video, False, stream_blocks)
    return (peaks["generate"] + sum(common.mlx_nbytes(m) for m in others)) / common.GiB


class StageClock:
    """Per-stage wall time and peak memory of the torch side (CUDA allocator, else RSS growth)."""

    def __init__(self):
        self.cuda = torch.cuda.is_available()
        self.how = "torch.cuda.max_memory_allocated" if self.cuda else "RSS high-water growth during the stage"
        self.times, self.peaks = {}, {}

    def __call__(self, name, fn):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss = common.RssWatermark()
        rss.start()
        t0 = time.perf_counter()
        out = fn()
        if self.cuda:
            torch.cuda.synchronize()
        self.times[name] = time.perf_counter() - t0
        self.peaks[name] = float(torch.cuda.max_memory_allocated()) if self.cuda else rss.peak()
        return out


def _combine(times: dict, peaks: dict) -> None:
    """Add the derived rows stage2+upsample and total (peaks: max of the parts)."""
    times["stage2+upsample"] = times["stage2"] + times["upsample"]
    peaks["stage2+upsample"] = _max(peaks["stage2"], peaks["upsample"])
    times["total"] = sum(times[k] for k in ("stage1", "upsample", "stage2", "decode_video", "decode_audio"))
    peaks["total"] = _max(*(peaks[k] for k in ("stage1", "upsample", "stage2", "decode_video", "decode_audio")))


def _max(*v):
    v = [x for x in v if x is not None]
    return max(v) if v else None


def run_side(name, build, run_once, warmup, repeat) -> dict:
    """Build, ``warmup`` untimed runs, ``repeat`` timed runs; per stage: median time, max peak."""
    common.release_memory()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    ctx = build()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    runs, first = [], None
    with torch.inference_mode():
        for i in range(warmup + repeat):
            times, peaks = run_once(ctx)
            _combine(times, peaks)
            first = first or dict(times)
            if i >= warmup:
                runs.append((times, peaks))
            print(
                f"  {name} run {i + 1}/{warmup + repeat}{' (warmup)' if i < warmup else ''}: "
                + ", ".join(f"{k} {v:.3f}s" for k, v in times.items()),
                flush=True,
            )
    stages = {}
    for k in STAGES:
        ts = [t[k] for t, _ in runs]
        stages[k] = dict(median_s=statistics.median(ts), times_s=ts, peak_gib=_gib(_max(*(p[k] for _, p in runs))))
    out = dict(
        build_s=build_s,
        first_run_s=first,  # the process's first run (compile / kernel warm-up included)
        first_run_extra_s=first["total"] - stages["total"]["median_s"],
        param_gib=ctx["param_bytes"] / common.GiB,
        block_gib=ctx["block_bytes"] / common.GiB,
        peak_how=ctx["peak_how"],
        stages=stages,
        **ctx.get("info", {}),
    )
    del ctx
    common.release_memory()
    return out


def _fmt(g):
    return "n/a" if g is None else f"{g:.2f}"


def _gib(b):
    return None if b is None else b / common.GiB


def main(argv=None):
    p = common.parser(__doc__.split("\n")[0], list(SIZES))
    p.add_argument("--video", default=None, help="override the output FxHxW, e.g. 121x512x768")
    p.add_argument(
        "--text-tokens",
        type=int,
        default=None,
        help=f"text context length (default {TEXT_TOKENS}; {TINY_TEXT_TOKENS} at --size tiny)",
    )
    p.add_argument("--model", choices=("ltx2", "ltx23"), default="ltx2")
    p.add_argument("--pipeline", choices=("distilled", "dev-two-stage"), default="distilled")
    p.add_argument(
        "--steps", type=int, default=None, help="dev-two-stage stage-1 steps (default: the official 40 / 30)"
    )
    p.add_argument(
        "--decoder-dtype",
        choices=("same", "fp32"),
        default="same",
        help="our video/audio VAE decoders and vocoder: the --dtype (as load_components) or float32",
    )
    p.add_argument(
        "--conv3d",
        choices=CONV3D_MODES,
        default=vv_mod.CONV3D_MODE,
        help="our video VAE's CausalConv3d: mx.conv3d in chunks, or a 2-D convolution per temporal tap",
    )
    p.add_argument(
        "--quantize",
        type=int,
        choices=(4, 8),
        default=None,
        help="MLX side: the transformer blocks affine-quantized (group 64; 32 at tiny), as a folder converted with "
        "--quantize stores them; they run dequantized per block where blockwise.dequantize_pays says so",
    )
    p.add_argument(
        "--stream-blocks",
        type=int,
        default=None,
        help="MLX side: the transformer blocks read just in time from the weights file, N resident (docs/streaming.md)",
    )
    p.add_argument(
        "--tmp-dir",
        default=None,
        help="where the random transformer file for --quantize / --stream-blocks is written (default: $TMPDIR)",
    )
    p.add_argument(
        "--guidance-batch",
        type=int,
        default=1,
        help="dev-two-stage: our guidance passes per transformer call (1: one call per pass, as the official)",
    )
    p.add_argument(
        "--release",
        action="store_true",
        help="ours drops its transformer before the decode (generate(release=True), what the CLI runs) in the timed "
        "run, which must then be the last: implies --repeat 1",
    )
    p.add_argument("--out", default=None, help="also write the record as JSON to this file")
    p.set_defaults(repeat=2)
    args = p.parse_args(argv)
    if args.release:
        args.repeat = 1
    if args.stream_blocks is not None and args.stream_blocks < 1:
        p.error("--stream-blocks must be at least 1")
    vv_mod.CONV3D_MODE = args.conv3d
    denoise_mod.GUIDANCE_BATCH = args.guidance_batch
    if args.check:
        p.error("--check is not supported here (each module has its own parity test and --check benchmark)")
    tiny = args.size == "tiny"
    layers = args.layers or (2 if tiny else FULL_LAYERS)
    frames, height, width = tuple(int(v) for v in args.video.split("x")) if args.video else SIZES[args.size]
    a = LTXModelArgs.from_config(checkpoint_config(args.model, TINY if tiny else REAL, layers))
    vae_cfg = vae_config(args.model, 16 if tiny else 128)
    ups_cfg = upsampler_config(32 if tiny else 1024)
    aud_cfg = audio_config(tiny, args.model)
    ltx23 = args.model == "ltx23"
    voc_cfg = vocoder_config((128 if ltx23 else 32) if tiny else (1536 if ltx23 else 1024), args.model)
    two_stage = args.pipeline == "dev-two-stage"
    params = LTX_2_3_PARAMS if ltx23 else LTX_2_PARAMS
    official_steps = params.num_inference_steps
    n_steps = (args.steps or official_steps) if two_stage else len(DISTILLED_SIGMA_VALUES) - 1
    stg = [min(b, layers - 1) for b in params.video_guider_params.stg_blocks]  # [29] / [28] at full depth
    vparams = replace(params.video_guider_params, stg_blocks=stg)
    aparams = replace(params.audio_guider_params, stg_blocks=stg)
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()
    ctx_v = a.caption_channels if a.caption_projection else a.cross_attention_dim
    ctx_a = a.caption_channels if a.caption_projection else a.audio_cross_attention_dim
    n_text = args.text_tokens or (TINY_TEXT_TOKENS if tiny else TEXT_TOKENS)
    rng = np.random.default_rng(args.seed)
    text = [rng.standard_normal((1, n_text, d)).astype(np.float32) for d in (ctx_v, ctx_a)]
    negative = [rng.standard_normal((1, n_text, d)).astype(np.float32) for d in (ctx_v, ctx_a)]
    (T1, h1, w1), n1 = common.video_tokens(frames, height // 2, width // 2, 8, 32)
    (T2, h2, w2), n2 = common.video_tokens(frames, height, width, 8, 32)
    tiling = ref_tiling()

    # ------------------------------------------------------------------ official building blocks
    def build_reference() -> dict:
        tdt = common.TORCH_DTYPES[dtype]
        m = common.torch_build(ref_transformer_ctor(a, layers), dev, tdt, args.seed)
        dec = common.torch_build(lambda: VideoDecoderConfigurator.from_config(vae_cfg), dev, tdt, args.seed + 1)
        ups = common.torch_build(lambda: LatentUpsamplerConfigurator.from_config(ups_cfg), dev, tdt, args.seed + 2)
        adec = common.torch_build(lambda: AudioDecoderConfigurator.from_config(aud_cfg), dev, tdt, args.seed + 3)
        voc = common.torch_build(lambda: VocoderConfigurator.from_config(voc_cfg), dev, tdt, args.seed + 4)
        mods = (m, dec, ups, adec, voc)
        return dict(
            x0=X0Model(m).eval(),
            dec=dec,
            ups=ups,
            adec=adec,
            voc=voc,
            stats=types.SimpleNamespace(per_channel_statistics=dec.per_channel_statistics),
            vctx=torch.from_numpy(text[0]).to(dev, tdt),
            actx=torch.from_numpy(text[1]).to(dev, tdt),
            vctx_n=torch.from_numpy(negative[0]).to(dev, tdt),
            actx_n=torch.from_numpy(negative[1]).to(dev, tdt),
            tdt=tdt,
            param_bytes=sum(common.torch_nbytes(x) for x in mods),
            block_bytes=common.torch_nbytes(m.transformer_blocks[0]),
            peak_how=StageClock().how,
        )

    def run_reference(r: dict):
        clock = StageClock()
        tdt = r["tdt"]
        noiser = GaussianNoiser(generator=torch.Generator(device=dev).manual_seed(args.seed))
        stepper = EulerDiffusionStep()
        comps = PipelineComponents(dtype=tdt, device=dev)
        denoise_fn = simple_denoising_func(video_context=r["vctx"], audio_context=r["actx"], transformer=r["x0"])

        def loop(sigmas, video_state, audio_state, stepper_):
            return euler_denoising_loop(
                sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper_, denoise_fn=denoise_fn
            )

        def guided_loop(sigmas, video_state, audio_state, stepper_):  # TI2VidTwoStagesPipeline's stage 1
            fn = multi_modal_guider_factory_denoising_func(
                video_guider_factory=create_multimodal_guider_factory(params=vparams, negative_context=r["vctx_n"]),
                audio_guider_factory=create_multimodal_guider_factory(params=aparams, negative_context=r["actx_n"]),
                v_context=r["vctx"],
                a_context=r["actx"],
                transformer=r["x0"],
            )
            return euler_denoising_loop(
                sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper_, denoise_fn=fn
            )

        def stage(h, w, sigmas, loop_fn=loop, **kw):
            shape = VideoPixelShape(batch=1, frames=frames, width=w, height=h, fps=FPS)
            return denoise_audio_video(
                output_shape=shape,
                conditionings=[],
                noiser=noiser,
                sigmas=sigmas,
                stepper=stepper,
                denoising_loop_fn=loop_fn,
                components=comps,
                dtype=tdt,
                device=dev,
                **kw,
            )

        if two_stage:
            s1 = LTX2Scheduler().execute(steps=n_steps).to(dtype=torch.float32, device=dev)
        else:
            s1 = torch.Tensor(DISTILLED_SIGMA_VALUES).to(dev)
        s2 = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES).to(dev)
        v, au = clock("stage1", lambda: stage(height // 2, width // 2, s1, loop_fn=guided_loop if two_stage else loop))
        lat = clock(
            "upsample", lambda: ref_upsample_video(latent=v.latent[:1], video_encoder=r["stats"], upsampler=r["ups"])
        )
        v, au = clock(
            "stage2",
            lambda: stage(
                height, width, s2, noise_scale=s2[0], initial_video_latent=lat, initial_audio_latent=au.latent
            ),
        )
        gen = torch.Generator(device=dev).manual_seed(args.seed)
        clock("decode_video", lambda: list(ref_decode_video(v.latent, r["dec"], tiling, gen)))
        clock("decode_audio", lambda: ref_decode_audio(au.latent, r["adec"], r["voc"]).waveform)
        return clock.times, clock.peaks

    # ------------------------------------------------------------------ MLX
    def build_mlx() -> dict:
        mdt = common.MLX_DTYPES[dtype]
        if args.quantize or args.stream_blocks:  # from a file, as load_components loads a converted folder
            model = load_transformer(folder, transformer_cfg, args.stream_blocks, None)
        else:
            model = common.mlx_random_(LTXModel(a), mdt, args.seed + 10)
        ddt = mdt if args.decoder_dtype == "same" else mx.float32
        vae = mlx_video_vae(vae_cfg, args.seed + 1000, ddt)
        ups = common.mlx_random_(up.LatentUpsampler(up.UpsamplerArgs.from_config(ups_cfg)), mdt, args.seed + 2000)
        adec = common.mlx_random_(av.AudioDecoder(av.AudioVAEArgs.from_config(aud_cfg)), ddt, args.seed + 3000)
        voc = common.mlx_random_(vc.vocoder_from_config(voc_cfg), ddt, args.seed + 4000)
        comps = LTX2Components(model, vae, adec, voc, ups, version="2.3" if ltx23 else "2")
        mods = (model, vae, ups, adec, voc)
        return dict(
            comps=comps,
            ctx=TextContext(mx.array(text[0]), mx.array(text[1])),
            neg=TextContext(mx.array(negative[0]), mx.array(negative[1])),
            param_bytes=sum(common.mlx_nbytes(x) for x in mods),
            block_bytes=common.mlx_nbytes(model.transformer_blocks[0]),
            peak_how="mx.get_peak_memory",
            info=dict(
                compute=f"transformer + upsampler {dtype}; VAEs and vocoder "
                + (dtype if args.decoder_dtype == "same" else "fp32")
                + f"; VAE conv3d {args.conv3d}"
                + (f"; transformer {args.quantize}-bit (group {group_size})" if args.quantize else "")
                + (f"; blocks streamed, {args.stream_blocks} resident" if args.stream_blocks else "")
                + (f"; guidance passes per call {args.guidance_batch}" if two_stage else ""),
                quantize=args.quantize,
                stream_blocks=args.stream_blocks,
                transformer_file_gib=file_gib,
                estimate_gib=None
                if folder is None
                else _estimate(folder, (frames, height, width), args.stream_blocks, (vae, ups, adec, voc)),
            ),
        )

    def run_mlx(r: dict):
        c = r["comps"]
        s = LTXSettings(pipeline=args.pipeline, height=height, width=width, num_frames=frames, fps=FPS, seed=args.seed)
        if two_stage:
            g = dict(stg_blocks=tuple(stg))
            s = replace(s, steps=n_steps, video_guidance=g, audio_guidance=g)
        r["runs"] = r.get("runs", 0) + 1  # with --release the last (the one timed) run drops the transformer
        last = args.release and r["runs"] == args.warmup + args.repeat
        res = generate(c, s, r["ctx"], r["neg"] if two_stage else None, release=last)
        times = dict(res.timings)
        peaks = {k: v * 2**30 for k, v in res.phase_peak_gib.items()}
        lat1 = res.stage_latents[0][0]
        mx.reset_peak_memory()
        t0 = time.perf_counter()
        x = up.upsample_video(lat1, c.upsampler, c.video_vae.latents_mean, c.video_vae.latents_std)
        mx.eval(x)
        times["upsample"] = time.perf_counter() - t0
        peaks["upsample"] = float(mx.get_peak_memory())
        times["stage2"] = max(0.0, times["stage2"] - times["upsample"])  # denoising part only (derived)
        del x, res
        return times, peaks

    group_size = 32 if tiny else 64  # the tiny widths (32) do not divide 64
    folder, transformer_cfg, file_gib = None, None, None
    if not args.skip_mlx and (args.quantize or args.stream_blocks):
        import atexit
        import shutil
        import signal
        import tempfile
        from pathlib import Path

        folder = Path(tempfile.mkdtemp(prefix="ltx2_distilled_", dir=args.tmp_dir))
        # removed at exit, also after a `timeout`'s SIGTERM (the file is ~20 GiB at full size, 8-bit)
        atexit.register(shutil.rmtree, folder, True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        q = {"bits": args.quantize, "group_size": group_size, "scope": "transformer_blocks."} if args.quantize else None
        transformer_cfg = write_random_transformer(folder, a, common.MLX_DTYPES[dtype], q, args.seed + 10)
        file_gib = (folder / "transformer.safetensors").stat().st_size / common.GiB
        print(f"[ltx2_distilled] random transformer written to {folder} ({file_gib:.2f} GiB)", flush=True)

    config = dict(
        model=f"{args.model} {args.pipeline}",
        size=args.size,
        video=f"{frames}x{height}x{width}",
        stage1_latent=f"{T1}x{h1}x{w1} ({n1} tokens)",
        stage2_latent=f"{T2}x{h2}x{w2} ({n2} tokens)",
        text_tokens=n_text,
        text_widths=f"{ctx_v}/{ctx_a}",
        steps=f"{n_steps}+{len(STAGE_2_DISTILLED_SIGMA_VALUES) - 1}",
        layers=f"{layers} (narrow)" if tiny else f"{layers}/{FULL_LAYERS}",
    )
    print("[ltx2_distilled] " + " ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    results = {}
    if not args.skip_reference:
        results["official"] = run_side("official", build_reference, run_reference, args.warmup, args.repeat)
    if not args.skip_mlx:
        try:
            results["mlx"] = run_side("mlx", build_mlx, run_mlx, args.warmup, args.repeat)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    if two_stage:
        config["guidance"] = (
            f"video cfg {vparams.cfg_scale} stg {vparams.stg_scale} blocks {stg} modality {vparams.modality_scale}"
            f" rescale {vparams.rescale_scale}; audio cfg {aparams.cfg_scale}"
        )
    report(
        args,
        config,
        dtype,
        results,
        None if tiny else (layers, FULL_LAYERS),
        (n_steps, official_steps) if two_stage and n_steps != official_steps else None,
    )


def report(args, config, dtype, results, layers, steps=None) -> None:
    record = dict(
        bench="ltx2_distilled",
        **config,
        **common.torch_run_info(args, dtype),
        reference="ltx-pipelines building blocks in DistilledPipeline's order (not the class: no ledger, "
        "no Gemma); stage2 of MLX's generate includes the lazy upsample, which is also timed alone",
        **results,
    )
    extra = {}
    if layers is not None and layers[0] != layers[1]:
        n, full = layers
        for name, r in results.items():
            st, add = r["stages"], (full - n) * r["block_gib"]
            t = {
                k: st[k]["median_s"] * (full / n if k in ("stage1", "stage2") else 1.0)
                for k in ("stage1", "upsample", "stage2", "decode_video", "decode_audio")
            }
            t["stage2+upsample"] = t["stage2"] + t["upsample"]
            t["total"] = sum(t[k] for k in ("stage1", "upsample", "stage2", "decode_video", "decode_audio"))
            extra[name] = {
                k: dict(s=t[k], peak_gib=None if st[k]["peak_gib"] is None else st[k]["peak_gib"] + add) for k in STAGES
            }
        record["extrapolated_full_depth"] = extra
    projected = {}
    if steps is not None:  # dev-two-stage with fewer stage-1 steps than the official count
        n, full = steps
        for name, r in results.items():
            st = r["stages"]
            s1 = st["stage1"]["median_s"] * full / n
            projected[name] = dict(stage1_s=s1, total_s=st["total"]["median_s"] - st["stage1"]["median_s"] + s1)
        record["projected_official_steps"] = dict(steps=full, **projected)
    if len(results) == 2:
        record["ratio_official_over_mlx"] = {
            k: results["official"]["stages"][k]["median_s"] / max(results["mlx"]["stages"][k]["median_s"], 1e-12)
            for k in STAGES
        }
    common.write_json(args.out, record)
    common.append_jsonl(record)

    print()
    for name, r in results.items():
        print(
            f"{name}: weights {r['param_gib']:.2f} GiB, build {r['build_s']:.1f} s, first run "
            f"{r['first_run_extra_s']:+.2f} s vs warm, peak memory: {r['peak_how']}"
            + (f", {r['compute']}" if "compute" in r else "")
            + (f"; mlx_video.ltx2.memory estimate {r['estimate_gib']:.2f} GiB" if r.get("estimate_gib") else "")
        )
    print(
        "official = ltx-pipelines 1.0.0 building blocks in "
        + (
            "TI2VidTwoStagesPipeline's order (stage 1: multi_modal_guider_factory_denoising_func"
            if "two-stage" in config["model"]
            else "DistilledPipeline's order (denoise_audio_video"
        )
        + " + euler_denoising_loop + X0Model, upsample_video, tiled decode_video, decode_audio); not the class "
        "itself. MLX stage2 = generate's stage2 timer minus the upsampler timed alone."
    )
    print(
        "\n== ltx2_distilled: "
        + ", ".join(f"{k} {v}" for k, v in config.items())
        + f", dtype {dtype}, torch on {record['torch_device']}, MLX on {mx.default_device()}, median of {args.repeat}"
    )
    sides = list(results)
    head = (
        f"{'stage':<16}"
        + "".join(f"{s + ' s':>13}" for s in sides)
        + ("" if len(sides) < 2 else f"{'ratio':>8}")
        + "".join(f"{s + ' GiB':>14}" for s in sides)
    )
    print(head)
    for k in STAGES:
        row = f"{k:<16}" + "".join(f"{results[s]['stages'][k]['median_s']:>13.3f}" for s in sides)
        if len(sides) == 2:
            row += f"{record['ratio_official_over_mlx'][k]:>7.2f}x"
        row += "".join(f"{_fmt(results[s]['stages'][k]['peak_gib']):>14}" for s in sides)
        print(row)
    if len(sides) == 2:
        print("ratio = official/MLX (>1: MLX faster)")
    if extra:
        n, full = layers
        parts = []
        for sd in sides:
            e = extra[sd]
            mem = e["total"]["peak_gib"]
            parts.append(
                f"{sd} "
                + ", ".join(f"{k} ~{e[k]['s']:.2f} s" for k in ("stage1", "stage2+upsample", "total"))
                + ("" if mem is None else f", peak ~{mem:.1f} GiB")
            )
        print(
            f"EXTRAPOLATED to {full} blocks from {n} (denoising stages x {full}/{n}; decodes as measured; "
            f"peak + weights of the missing blocks; an estimate, not a measurement): " + "; ".join(parts)
        )
    if projected:
        n, full = steps
        parts = [f"{sd} stage1 ~{v['stage1_s']:.2f} s, total ~{v['total_s']:.2f} s" for sd, v in projected.items()]
        if len(projected) == 2:
            parts.append(f"ratio {projected['official']['total_s'] / projected['mlx']['total_s']:.2f}x")
        print(f"PROJECTED to the official {full} stage-1 steps from {n} (stage 1 x {full}/{n}): " + "; ".join(parts))


if __name__ == "__main__":
    main()
