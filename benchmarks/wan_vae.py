"""One Wan VAE decode: mlx_video.wan.vae22 / vae21 against the official WanVAE_ (Wan2.2 code).

    python -m benchmarks.wan_vae --size tiny                   # smoke run (narrow widths)
    python -m benchmarks.wan_vae --size mid                    # real widths, 9 frames 128x128
    python -m benchmarks.wan_vae --size full                   # Wan2.2 VAE: 121 frames 704x1280 (latent 31x44x80)
    python -m benchmarks.wan_vae --size full --version 2.1     # Wan2.1 VAE (A14B): 81 frames 480x832

What one decode is on each side: normalised latents [1, T, h, w, z] -> frames clamped to [-1, 1],
one latent frame per chunk through the causal feature cache on both sides.
- official: ``WanVAE_.decode(z, scale)`` then ``.float().clamp_(-1, 1)``, exactly what the
  ``Wan2_2_VAE`` / ``Wan2_1_VAE`` wrappers do; float32 weights, under ``torch.autocast(bf16)`` with
  ``--dtype bf16`` (the wrappers' ``dtype`` argument). The pipelines use the default, float32.
- MLX: ``Wan22VAE.decode`` / ``Wan21VAE.decode``. The port computes its VAEs in float32 whatever
  ``--dtype`` says (ARCHITECTURE.md numerics policy), so ``--dtype bf16`` only changes the reference.
Latents are identical numpy draws; weights are independent random draws (fan-in scaled).
There is no ``--layers``: the VAE has a fixed depth.
"""

from __future__ import annotations

import numpy as np

from benchmarks import common
from benchmarks.common import mx, torch
from mlx_video.io.weights import load_strict
from mlx_video.wan import vae21, vae22
from tests.oracles import wan

SIZES = {"tiny": (5, 64, 64), "mid": (9, 128, 128), "full": None}  # frames, height, width
FULL = {"2.2": (121, 704, 1280), "2.1": (81, 480, 832)}
REAL = {"2.2": dict(dim=160, dec_dim=256), "2.1": dict(dim=96)}
NARROW = {"2.2": dict(dim=16, dec_dim=32), "2.1": dict(dim=16)}


def main():
    p = common.parser(__doc__.split("\n")[0], list(SIZES), layers=False)
    p.add_argument("--version", choices=("2.2", "2.1"), default="2.2")
    p.add_argument("--video", default=None, help="override the size preset's FxHxW, e.g. 121x704x1280")
    p.add_argument(
        "--mlx-dtype", choices=("fp32", "bf16"), default="fp32", help="our VAE's compute dtype (WanPipeline vae_dtype)"
    )
    args = p.parse_args()
    v = args.version
    mod = vae22 if v == "2.2" else vae21
    margs = (vae22.Wan22VAEArgs if v == "2.2" else vae21.Wan21VAEArgs)(**(NARROW if args.size == "tiny" else REAL)[v])
    frames, height, width = tuple(int(u) for u in args.video.split("x")) if args.video else SIZES[args.size] or FULL[v]
    s = 16 if v == "2.2" else 8
    (T, h, w), _ = common.video_tokens(frames, height, width, 4, s)
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()
    z = np.random.default_rng(args.seed).standard_normal((1, margs.z_dim, T, h, w)).astype(np.float32)
    W = wan() if not args.skip_reference else None

    def build_reference() -> common.Side:
        kw = dict(
            dim=margs.dim,
            z_dim=margs.z_dim,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
            dropout=0.0,
        )
        if v == "2.2":
            kw["dec_dim"] = margs.dec_dim
        ref = common.torch_build(
            lambda: (W.vae2_2 if v == "2.2" else W.vae2_1).WanVAE_(**kw), dev, torch.float32, args.seed
        )
        scale = [torch.tensor(margs.latents_mean, device=dev), 1.0 / torch.tensor(margs.latents_std, device=dev)]
        zt = torch.from_numpy(z).to(dev)
        half = dtype == "bf16"

        def run():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=half):
                return ref.decode(zt, scale).float().clamp_(-1, 1)

        return common.Side(
            run,
            lambda out: out.cpu().numpy().transpose(0, 2, 3, 4, 1),
            common.torch_nbytes(ref),
            info=dict(compute="bf16 autocast" if half else "fp32"),
            model=ref,
        )

    def build_mlx(weights) -> common.Side:
        model = (vae22.Wan22VAE if v == "2.2" else vae21.Wan21VAE)(margs)
        if weights is None:
            common.mlx_random_(model, mx.float32, args.seed + 1)
        else:
            load_strict(model, mod.sanitize(weights, "official"), "Wan VAE")
        model.set_dtype(common.MLX_DTYPES[args.mlx_dtype])
        zm = mx.array(z.transpose(0, 2, 3, 4, 1))
        return common.Side(
            lambda: model.decode(zm),
            lambda out: np.array(out),
            common.mlx_nbytes(model),
            info=dict(compute=args.mlx_dtype),
            model=model,
        )

    config = dict(
        vae=v,
        size=args.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}x{margs.z_dim}",
        widths="narrow" if args.size == "tiny" else "real",
    )
    common.bench(
        "wan_vae", args, config, build_reference, build_mlx, export_weights=lambda side: common.state_to_mlx(side.model)
    )


if __name__ == "__main__":
    main()
