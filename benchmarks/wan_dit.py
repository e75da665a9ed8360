"""One Wan DiT forward: mlx_video.wan.transformer.WanModel against the official Wan2.2 WanModel.

    python -m benchmarks.wan_dit --size tiny                     # smoke run (narrow widths)
    python -m benchmarks.wan_dit --size mid                      # real TI2V-5B widths, 2 blocks, 192 tokens
    python -m benchmarks.wan_dit --size full                     # TI2V-5B 704x1280x121: 27,280 tokens
    python -m benchmarks.wan_dit --size 480p                     # TI2V-5B 480x832x81: 8,190 tokens
    python -m benchmarks.wan_dit --model i2v-A14B --size full    # one A14B expert at 480x832x81: 32,760 tokens

What one forward is on each side (as each pipeline calls it per step):
- official: ``WanModel(x=[x], t, context=[ctx], seq_len, y)``; text embedding, time embedding and RoPE
  run inside every forward. bf16: weights bf16 under ``torch.autocast(bf16)`` as the official
  pipelines (``convert_model_dtype``); attention is ``torch.nn.functional.scaled_dot_product_attention``
  on the bf16 q/k/v that the official ``flash_attention`` wrapper would hand to flash-attn (no mask:
  one unpadded sample). On a CPU in bf16 the official fp32 regions (time embedding, head), which
  rely on ``autocast('cuda', float32)``, are kept float32 by hand.
- MLX: ``model(x, t, context, rope, y)`` with the text embedding and RoPE tables built once per run
  (their one-off cost is reported as ``prep_s``).
Timesteps: TI2V per token with the first latent frame at 0 (the TI2V image-to-video loop); A14B one
per sample (the official model expands it per token internally). Latents, text (128 tokens of 4096)
and timesteps are identical numpy draws on both sides; weights are independent random draws.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import common
from benchmarks.common import mx, torch
from mlx_video.io.weights import load_strict
from mlx_video.wan.transformer import WanModel, WanModelArgs, sanitize
from tests.oracles import sdpa_flash_attention, wan

A14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, stride=(4, 8))  # both experts, T2V and I2V
MODELS = {  # docs/wan.md section 1 (official config.json values)
    "ti2v-5B": dict(
        model_type="ti2v",
        dim=3072,
        ffn_dim=14336,
        num_heads=24,
        num_layers=30,
        in_dim=48,
        out_dim=48,
        y_dim=0,
        stride=(4, 16),
    ),
    "t2v-A14B": dict(A14B, model_type="t2v", in_dim=16, out_dim=16, y_dim=0),
    "i2v-A14B": dict(A14B, model_type="i2v", in_dim=36, out_dim=16, y_dim=20),
}
TINY_WIDTHS = dict(dim=256, ffn_dim=512, num_heads=2)  # head dim 128 as the real models
# (frames, height, width) per size; None = the model's full-size run
# tiny/mid are given for the 16x VAE (TI2V-5B); A14B models get half the height and width (same tokens).
# mid is small because MLX's CPU backend here has a reference BLAS (~2 GFLOP/s against torch's ~100).
SIZES = {"tiny": (5, 64, 64), "mid": (9, 256, 256), "full": None, "480p": (81, 480, 832)}
FULL = {"ti2v-5B": (121, 704, 1280), "t2v-A14B": (81, 480, 832), "i2v-A14B": (81, 480, 832)}
TEXT_TOKENS = 128


def main():
    p = common.parser(__doc__.split("\n")[0], list(SIZES))
    p.add_argument("--model", choices=list(MODELS), default="ti2v-5B")
    p.add_argument("--video", default=None, help="override the size preset's FxHxW, e.g. 121x704x1280")
    args = p.parse_args()
    spec = dict(MODELS[args.model])
    full_layers = spec["num_layers"]
    if args.size == "tiny":
        spec.update(TINY_WIDTHS)
    layers = args.layers or {"tiny": 2, "mid": 2}.get(args.size, full_layers)
    frames, height, width = (
        tuple(int(v) for v in args.video.split("x")) if args.video else SIZES[args.size] or FULL[args.model]
    )
    if args.size in ("tiny", "mid") and spec["stride"][1] == 8 and not args.video:
        height, width = height // 2, width // 2
    (T, h, w), L = common.video_tokens(frames, height, width, *spec["stride"], patch=2)
    dtype = common.resolve_dtype(args)
    dev = common.torch_device()

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((spec["out_dim"] if spec["y_dim"] else spec["in_dim"], T, h, w)).astype(np.float32)
    y = rng.standard_normal((spec["y_dim"], T, h, w)).astype(np.float32) if spec["y_dim"] else None
    ctx = rng.standard_normal((TEXT_TOKENS, 4096)).astype(np.float32)
    if spec["model_type"] == "ti2v":
        t = np.full((1, L), 870.0, np.float32)
        t[:, : L // T] = 0.0  # first latent frame is the clean image (TI2V i2v)
    else:
        t = np.array([870.0], np.float32)

    W = wan() if not args.skip_reference else None  # imported before any memory is measured
    # the constructor arguments both WanModels take (the official one adds eps, ours has it as a default)
    arch = dict(
        model_type=spec["model_type"],
        dim=spec["dim"],
        ffn_dim=spec["ffn_dim"],
        freq_dim=256,
        num_heads=spec["num_heads"],
        num_layers=layers,
        in_dim=spec["in_dim"],
        out_dim=spec["out_dim"],
        text_dim=4096,
        text_len=512,
    )

    def build_reference() -> common.Side:
        half = dtype == "bf16"
        W.model.flash_attention = _sdpa_attention(half)
        ctor = lambda: W.model.WanModel(**arch, eps=1e-6)  # noqa: E731
        m = common.torch_build(ctor, dev, common.TORCH_DTYPES[dtype], args.seed)
        d = spec["dim"] // spec["num_heads"]  # the constructor's RoPE table (a plain attribute, so still on meta)
        m.freqs = torch.cat(
            [
                W.model.rope_params(1024, d - 4 * (d // 6)),
                W.model.rope_params(1024, 2 * (d // 6)),
                W.model.rope_params(1024, 2 * (d // 6)),
            ],
            dim=1,
        )
        if half and dev.type == "cpu":
            _cpu_fp32_regions(m)
        tx = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
        xs, ts, cs = [tx(x)], tx(t), [tx(ctx)]
        ys = [tx(y)] if y is not None else None

        def run():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=half):
                return m(x=xs, t=ts, context=cs, seq_len=L, y=ys)

        return common.Side(
            run,
            lambda out: out[0].float().cpu().numpy().transpose(1, 2, 3, 0)[None],
            common.torch_nbytes(m),
            common.torch_nbytes(m.blocks[0]),
            dict(attention="torch SDPA, " + ("bf16 q/k/v" if half else "fp32 q/k/v")),
            m,
        )

    def build_mlx(weights) -> common.Side:
        mdt = common.MLX_DTYPES[dtype]
        model = WanModel(WanModelArgs(**arch))
        if weights is None:
            common.mlx_random_(model, mdt, args.seed + 1)
        else:
            load_strict(model, sanitize(weights, "official"), "Wan DiT", dtype=mdt)
        t0 = time.perf_counter()
        context = model.embed_text([mx.array(ctx)])
        rope = model.rope_tables((T, h // 2, w // 2))
        mx.eval(context, *rope)
        prep_s = time.perf_counter() - t0
        xm = mx.array(x.transpose(1, 2, 3, 0)[None])
        ym = mx.array(y.transpose(1, 2, 3, 0)[None]) if y is not None else None
        run = lambda: model(xm, t, context, rope, y=ym)  # noqa: E731
        info = dict(prep_s=round(prep_s, 4), attention=_attention_path(run))
        return common.Side(
            run,
            lambda out: np.array(out.astype(mx.float32)),
            common.mlx_nbytes(model),
            common.mlx_nbytes(model.blocks[0]),
            info,
            model,
        )

    config = dict(
        model=args.model,
        size=args.size,
        video=f"{frames}x{height}x{width}",
        latent=f"{T}x{h}x{w}",
        tokens=L,
        layers=f"{layers}/{full_layers}" if args.size != "tiny" else f"{layers} (narrow)",
        dim=spec["dim"],
    )
    common.bench(
        "wan_dit",
        args,
        config,
        build_reference,
        build_mlx,
        export_weights=lambda side: common.state_to_mlx(side.model),
        layers=None if args.size == "tiny" else (layers, full_layers),
    )


def _sdpa_attention(half: bool):
    """Stand-in for the official ``flash_attention``: same signature and dtype handling (q/k/v to
    bf16 unless already half; output in q's dtype), computed by torch SDPA on [B, H, L, D]."""

    def cast(u, dtype):
        return u.to(dtype) if half and u.dtype not in (torch.float16, torch.bfloat16) else u

    return sdpa_flash_attention(cast, mask_full=False)


def _cpu_fp32_regions(m):
    """On a CPU the official ``autocast('cuda', float32)`` blocks do nothing: keep the time
    embedding, time projection and head in float32 with autocast off, as they are on CUDA, and the
    LayerNorm weights float32 (CUDA autocast runs layer_norm in float32; the CPU kernel refuses
    float32 input with bf16 weights)."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.float()
    for mod in (m.time_embedding, m.time_projection, m.head):
        mod.float()
        fwd = mod.forward

        def forward(*a, _fwd=fwd, **k):
            with torch.autocast("cpu", enabled=False):
                return _fwd(*(u.float() if torch.is_tensor(u) else u for u in a), **k)

        mod.forward = forward


def _attention_path(run) -> str:
    """Run once with ``mx.fast.scaled_dot_product_attention`` wrapped; report what it received."""
    seen = []
    fused = mx.fast.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        seen.append((str(q.dtype), str(k.dtype), str(v.dtype), kw.get("mask") is None))
        return fused(q, k, v, *a, **kw)

    mx.fast.scaled_dot_product_attention = spy
    try:
        mx.eval(run())
    finally:
        mx.fast.scaled_dot_product_attention = fused
    dts = sorted({d for s in seen for d in s[:3]})
    masks = all(s[3] for s in seen)
    return (
        f"mx.fast.scaled_dot_product_attention x{len(seen)} q/k/v {'/'.join(dts)} mask {'none' if masks else 'GIVEN'}"
    )


if __name__ == "__main__":
    main()
