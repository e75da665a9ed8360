"""One LTX-2 video VAE decode: mlx_video.ltx2.video_vae against ltx-core's VideoDecoder.

    python -m benchmarks.ltx2_vae --size tiny                        # smoke run (narrow widths)
    python -m benchmarks.ltx2_vae --size mid                         # real widths, 9 frames 128x128
    python -m benchmarks.ltx2_vae --size full                        # 121 frames 768x512 (latent 16x16x24), tiled
    python -m benchmarks.ltx2_vae --size full --tiling none          # the same in one piece
    python -m benchmarks.ltx2_vae --size full --model ltx23          # the LTX-2.3 decoder

What one decode is on each side: normalised latent -> frames, with the decoder of the LTX-2 (19B)
or LTX-2.3 checkpoint (block structure from docs/ltx2.md 4.2 / 4.3; 528 M / 407 M parameters).
- ``--tiling default`` (what the official CLIs use, ``TilingConfig.default()``: 512 px tiles with 64 px
  overlap, 64-frame tiles with 24 frames overlap): ltx-core ``VideoDecoder.tiled_decode`` against our
  ``VideoVAE.iter_decode_tiled`` with the same tiles; every yielded chunk is kept.
  ``--tiling none``: ``VideoDecoder(latent)`` against ``VideoVAE.decode``.
- official: built in ``--dtype`` (ltx-pipelines' model ledger builds the VAE in the pipeline dtype,
  bf16), latent in that dtype. MLX: the port's VAE is float32 whatever ``--dtype`` says.
Latents are identical numpy draws; weights are independent random draws (fan-in scaled; the MLX
model is sized from a weight dict with the reference's shapes, as for a real checkpoint).
There is no ``--layers``: the VAE has a fixed depth.
"""

from __future__ import annotations

import numpy as np
from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator
from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

from benchmarks import common
from benchmarks.common import mx, torch
from mlx_video.ltx2 import video_vae as vv
from mlx_video.ltx2.video_vae import VideoVAE, sanitize
from mlx_video.nn.conv import CONV3D_MODES

SIZES = {"tiny": (9, 64, 64), "mid": (9, 128, 128), "full": (121, 512, 768)}  # frames, height, width
TILES = dict(tile_pixels=512, overlap_pixels=64, tile_frames=64, overlap_frames=24)  # TilingConfig.default()


def _res(n):
    return ["res_x", {"num_layers": n}]


DECODERS = {  # decoder_blocks, pixel side first, and spatial padding (docs/ltx2.md 4.2, 4.3)
    "ltx2": (
        [
            _res(5),
            ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5),
            ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5),
            ["compress_all", {"residual": True, "multiplier": 2}],
            _res(5),
        ],
        "reflect",
    ),
    "ltx23": (
        [
            _res(4),
            ["compress_space", {"multiplier": 2}],
            _res(6),
            ["compress_time", {"multiplier": 2}],
            _res(4),
            ["compress_all", {"multiplier": 1}],
            _res(2),
            ["compress_all", {"multiplier": 2}],
            _res(2),
        ],
        "zeros",
    ),
}


def vae_config(model: str, base_channels: int) -> dict:
    blocks, pad = DECODERS[model]
    return {
        "vae": {
            "dims": 3,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 128,
            "patch_size": 4,
            "norm_layer": "pixel_norm",
            "latent_log_var": "uniform",
            "spatial_padding_mode": pad,
            "encoder_blocks": [],
            "decoder_blocks": blocks,
            "causal_decoder": False,
            "timestep_conditioning": False,
            "decoder_base_channels": base_channels,
        }
    }


def single_file_keys(state: dict) -> dict:
    """ltx-core decoder state -> the single file's VAE names (statistics shared at the top)."""
    return {k if k.startswith("per_channel_statistics.") else "decoder." + k: v for k, v in state.items()}


def ref_tiling() -> TilingConfig:
    """ltx-core's TilingConfig for :data:`TILES` (its ``TilingConfig.default()``)."""
    return TilingConfig(
        SpatialTilingConfig(TILES["tile_pixels"], TILES["overlap_pixels"]),
        TemporalTilingConfig(TILES["tile_frames"], TILES["overlap_frames"]),
    )


def decode_case(args) -> tuple[dict, tuple, tuple, np.ndarray]:
    """What a decode benchmark decodes for ``args`` (--model, --size, --video, --seed): the decoder config
    (base channels 16 at tiny, else the real 128), the video (frames, height, width), its latent grid (T, h, w)
    and the latent drawn from ``args.seed``, float32 [1, 128, T, h, w]."""
    cfg = vae_config(args.model, 16 if args.size == "tiny" else 128)
    frames, height, width = tuple(int(u) for u in args.video.split("x")) if args.video else SIZES[args.size]
    (T, h, w), _ = common.video_tokens(frames, height, width, 8, 32)
    z = np.random.default_rng(args.seed).standard_normal((1, 128, T, h, w)).astype(np.float32)
    return cfg, (frames, height, width), (T, h, w), z


def main():
    p = common.parser(__doc__.split("\n")[0], list(SIZES), layers=False)
    p.add_argument("--model", choices=list(DECODERS), default="ltx2")
    p.add_argument("--tiling", choices=("default", "none"), default="default")
    p.add_argument("--mlx-dtype", choices=("fp32", "bf16"), default="fp32", help="our decoder's weights/compute dtype")
    p.add_argument("--video", default=None, help="override the size preset's FxHxW, e.g. 121x512x768")
    p.add_argument(
        "--conv3d",
        choices=CONV3D_MODES,
        default=vv.CONV3D_MODE,
        help="our CausalConv3d: mx.conv3d in chunks, or a 2-D convolution per temporal tap",
    )
    args = p.parse_args()
    vv.CONV3D_MODE = args.conv3d
    cfg, (frames, height, width), (T, h, w), z = decode_case(args)
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()
    tiled = args.tiling == "default"

    def build_reference() -> common.Side:
        tdt = common.TORCH_DTYPES[dtype]
        dec = common.torch_build(lambda: VideoDecoderConfigurator.from_config(cfg), dev, tdt, args.seed)
        zt = torch.from_numpy(z).to(dev, tdt)
        tiling = ref_tiling()
        run = (lambda: list(dec.tiled_decode(zt, tiling))) if tiled else (lambda: dec(zt))
        return common.Side(
            run,
            lambda out: _frames(out, lambda c: c.float().cpu().numpy().transpose(0, 2, 3, 4, 1)),
            common.torch_nbytes(dec),
            info=dict(compute=dtype),
            model=dec,
        )

    def build_mlx(weights) -> common.Side:
        if weights is None:  # random tensors with the real checkpoint's shapes, converted one at a time
            with torch.device("meta"):
                shapes = {k: tuple(t.shape) for k, t in VideoDecoderConfigurator.from_config(cfg).state_dict().items()}
            converted = {}
            for i, (k, s) in enumerate(single_file_keys(shapes).items()):
                t = (
                    common.random_normal(s, args.seed + 1 + i) * (1.0 / np.sqrt(np.prod(s[1:])))
                    if len(s) > 1
                    else (mx.ones(s) if "std" in k else mx.zeros(s))
                )
                one = sanitize({k: t}, "lightricks")
                mx.eval(list(one.values()))
                converted.update(one)
        else:
            converted = sanitize(single_file_keys(weights), "lightricks")
        vae = VideoVAE.from_weights(converted, cfg, parts=("decoder",))
        vae.set_dtype(common.MLX_DTYPES[args.mlx_dtype])
        zm = mx.array(z.transpose(0, 2, 3, 4, 1)).astype(common.MLX_DTYPES[args.mlx_dtype])
        run = (lambda: list(vae.iter_decode_tiled(zm, **TILES))) if tiled else (lambda: vae.decode(zm))
        return common.Side(
            run,
            lambda out: _frames(out, np.array),
            common.mlx_nbytes(vae),
            info=dict(compute=args.mlx_dtype, conv3d=args.conv3d),
            model=vae,
        )

    config = dict(
        model=args.model,
        size=args.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}x128",
        tiling=f"default {TILES}" if tiled else "none",
        widths="narrow" if args.size == "tiny" else "real",
    )
    common.bench(
        "ltx2_vae",
        args,
        config,
        build_reference,
        build_mlx,
        export_weights=lambda side: common.state_to_mlx(side.model),
    )


def _frames(out, to_np) -> np.ndarray:
    """Decoded frames (one array or a list of temporal chunks) -> one channels-last numpy video."""
    chunks = out if isinstance(out, list) else [out]
    return np.concatenate([to_np(c) for c in chunks], axis=1)


if __name__ == "__main__":
    main()
