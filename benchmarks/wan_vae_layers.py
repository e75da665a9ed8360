"""Wan VAE decode of one chunk, layer by layer: where the decode's peak memory comes from.

    python -m benchmarks.wan_vae_layers --size tiny                 # CPU smoke run (narrow widths, 128x192)
    python -m benchmarks.wan_vae_layers --size mid                  # CPU, real widths, 128x128 (scale by pixels)
    python -m benchmarks.wan_vae_layers --size full --out $OUT/vae_layers.json   # GPU, Wan2.2 at 704x1280

One random-weights VAE (``tiny``: dim 8; else the real widths), a latent of two frames. Two chunks are
measured: ``first`` (latent frame 0, empty causal cache: one output frame) and ``later`` (latent frame 1 after
frame 0 filled the cache: four output frames at the full-resolution stages). Each chunk runs first whole, as
``decode_chunks`` runs it (``--frames-per-chunk``; its peak is the ``whole`` row; ``whole_lazy``: the same with
no evaluation between blocks, ``vae_blocks.EVAL_BLOCK_BYTES`` off, as before issue 11), then again layer by layer
through a fresh cache (the same calls in the same order, so the same cache slots and values; the last step's
output is checked against the whole chunk): post_quant_conv, the decoder's conv_in, the mid block's residual
blocks and attention, each up stage's residual blocks and upsampler (Wan2.2: with its DupUp3D shortcut), the
head (norm, SiLU, conv_out), unpatchify + clip, and the uint8 conversion. ``--split resnet`` (default) breaks
each residual block into norm1+silu, conv1, norm2+silu, conv2, shortcut+add; ``--split block`` keeps it whole.

Every step is evaluated alone: its input, the cache and the weights are evaluated first, the allocator's cache
is emptied (``mx.clear_cache``) and the peak reset, then the step runs and is evaluated. Per step: ``in_mib`` /
``out_mib`` (its input and output arrays), ``above_in_mib`` (peak minus the active memory before the step,
which holds the weights, the cache and the input: the step's output plus its temporaries), ``temp_mib``
(``above_in`` minus the output: memory no array of the graph accounts for — conv unfold buffers, cuDNN
workspaces, a transposed copy, the arrays a step holds between its own ops), ``ms`` (wall time; a warm-up pass
of the chunk runs first so that convolution plans are cached on the GPU). On the GPU ``peak`` counts every
buffer the CUDA allocator hands out, workspaces included; on the CPU MLX's unfold is counted too.
JSON to ``--out``; tables on stdout.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from benchmarks.common import mlx_host_info, mlx_nbytes, random_normal, random_wan_vae, write_json
from mlx_video.wan import vae21, vae22, vae_blocks
from mlx_video.wan.vae_blocks import CausalCache

MIB = float(1 << 20)
GIB = float(1 << 30)
SIZES = {"tiny": (128, 192), "mid": (128, 128), "full": (704, 1280)}
FULL_2_1 = (480, 832)

Step = tuple[str, Callable[[mx.array], mx.array]]


def _resnet_steps(name: str, block: vae_blocks.ResidualBlock, cache: CausalCache, split: bool) -> list[Step]:
    """The residual block as steps over one carried value (its input is kept in ``state`` for the shortcut)."""
    if not split:
        return [(name, lambda x: block(x, cache))]
    state = {}

    def norm1(x):
        state["x"] = x
        return nn.silu(block.norm1(x))

    def add(h):
        x = state.pop("x")
        return h + (block.conv_shortcut(x) if "conv_shortcut" in block else x)

    return [
        (f"{name}.norm1+silu", norm1),
        (f"{name}.conv1", lambda h: block.conv1(h, cache)),
        (f"{name}.norm2+silu", lambda h: nn.silu(block.norm2(h))),
        (f"{name}.conv2", lambda h: block.conv2(h, cache)),
        (f"{name}.shortcut+add", add),
    ]


def decoder_steps(vae: vae21.Wan21VAE, cache: CausalCache, split: bool = True) -> list[Step]:
    """One chunk's decode as a list of steps, in the order ``decode_chunks`` calls the layers (whole chunk,
    no time split): the last step's output is that chunk's uint8 pixels [B, f, H, W, 3]."""
    dec = vae.decoder
    steps: list[Step] = [
        ("post_quant_conv", lambda x: vae.post_quant_conv(x.astype(vae.dtype))),
        ("conv_in", lambda x: dec.conv_in(x, cache)),
    ]
    mid = dec.mid_block
    steps += _resnet_steps("mid.res0", mid.resnets[0], cache, split)
    steps.append(("mid.attention", lambda x: mid.attentions[0](x)))
    steps += _resnet_steps("mid.res1", mid.resnets[1], cache, split)
    for i, block in enumerate(dec.up_blocks):
        shortcut = isinstance(block, vae22.ResidualUpBlock) and block._shortcut
        state = {}
        if shortcut:  # DupUp3D of the stage's input, added after the upsampler

            def keep(x, state=state):
                state["x"], state["first"] = x, cache.first
                return x

            steps.append((f"up{i}.keep_input", keep))
        for j, resnet in enumerate(block.resnets):
            steps += _resnet_steps(f"up{i}.res{j}", resnet, cache, split)
        if "upsampler" in block:

            def up(x, block=block, state=state, shortcut=shortcut):
                y = block.upsampler(x, cache)
                if shortcut:
                    s = state.pop("x")
                    y = y + vae22.dup_up_3d(s, block._out_dim, block._ft, block._fs, state.pop("first"))
                return y

            steps.append((f"up{i}.upsampler{'+dup_up' if shortcut else ''} ({block.upsampler.mode})", up))
    steps += [
        ("head", lambda x: dec.conv_out(nn.silu(dec.norm_out(x)), cache)),
        ("unpatchify+clip", lambda x: mx.clip(vae._unpatchify(x).astype(mx.float32), -1.0, 1.0)),
        ("to_uint8", vae21.pixels_to_uint8),
    ]
    return steps


def _measure(fn: Callable[[], mx.array], keep: list) -> tuple[mx.array, dict]:
    mx.eval(keep)
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    t0 = time.perf_counter()
    out = fn()
    mx.eval(out, keep)
    mx.synchronize()
    ms = (time.perf_counter() - t0) * 1e3
    peak = mx.get_peak_memory()
    return out, dict(
        ms=ms, above_in_mib=max(0, peak - before) / MIB, active_before_mib=before / MIB, peak_mib=peak / MIB
    )


def _chunk(vae, z, t: int, cache: CausalCache, frames):
    """decode_chunks' work for latent frame t (cache advanced), as uint8 [B, f, H, W, 3]."""
    cache.next_chunk()
    x = vae.decoder(vae.post_quant_conv(z[:, t : t + 1].astype(vae.dtype)), cache, frames)
    return vae21.pixels_to_uint8(mx.clip(vae._unpatchify(x).astype(mx.float32), -1.0, 1.0))


def run_chunk(vae, z, which: str, split: bool, frames, unfold) -> dict:
    """Measure chunk ``which`` (first | later) whole and step by step; the step outputs' last equals the whole."""
    t = 0 if which == "first" else 1

    def fresh():
        cache = CausalCache(unfold)
        for prev in range(t):
            mx.eval(_chunk(vae, z, prev, cache, None), cache.arrays())
        return cache

    cache = fresh()  # warm-up (GPU conv plans), then the whole chunk as decode_chunks runs it
    mx.eval(_chunk(vae, z, t, cache, frames))
    cache = fresh()
    whole, whole_row = _measure(lambda: _chunk(vae, z, t, cache, frames), [z, cache.arrays()])
    whole = np.array(whole)
    default, vae_blocks.EVAL_BLOCK_BYTES = vae_blocks.EVAL_BLOCK_BYTES, 1 << 62
    try:  # the chunk as one lazy graph (no evaluation between blocks; before issue 11's fix)
        cache = fresh()
        lazy, lazy_row = _measure(lambda: _chunk(vae, z, t, cache, frames), [z, cache.arrays()])
        lazy_row["equal_to_whole"] = bool(np.array_equal(np.array(lazy), whole))
        del lazy
    finally:
        vae_blocks.EVAL_BLOCK_BYTES = default

    cache = fresh()
    cache.next_chunk()
    x = z[:, t : t + 1]
    rows = []
    for name, fn in decoder_steps(vae, cache, split):
        mx.eval(x)
        in_bytes = x.nbytes
        y, row = _measure(lambda fn=fn, x=x: fn(x), [x, z, cache.arrays()])
        out_bytes = y.nbytes
        row.update(
            step=name,
            shape=list(y.shape),
            dtype=str(y.dtype).replace("mlx.core.", ""),
            in_mib=in_bytes / MIB,
            out_mib=out_bytes / MIB,
            temp_mib=max(0.0, row["above_in_mib"] - out_bytes / MIB),
        )
        rows.append(row)
        x = y
    exact = bool(np.array_equal(np.array(x), whole))
    return dict(
        chunk=which, whole=whole_row, whole_lazy=lazy_row, steps=rows, equal_to_whole=exact, cache_mib=_cache_mib(cache)
    )


def _cache_mib(cache: CausalCache) -> float:
    return sum(a.nbytes for a in cache.arrays()) / MIB


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--version", choices=("2.2", "2.1"), default="2.2")
    p.add_argument("--video", default=None, help="HxW pixels, overrides the size preset")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--chunks", default="first,later", help="first,later (comma-separated)")
    p.add_argument("--split", choices=("resnet", "block"), default="resnet")
    p.add_argument("--frames-per-chunk", type=int, default=None, help="for the whole-chunk row (default: 4)")
    p.add_argument("--unfold-gb", type=float, default=None, help="conv unfold budget (default: the env's)")
    p.add_argument(
        "--dec-dim",
        type=int,
        default=None,
        help="decoder base width (default: the preset's; tiny 8). Activations scale with it: a narrow run at the "
        "real spatial size, times real/narrow, estimates the real widths' activation bytes (not the weights)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    v = a.version
    dim = a.dec_dim or (8 if a.size == "tiny" else None)
    narrow = dim is not None
    vae, args = random_wan_vae(v, a.seed, dim)
    vae.set_dtype(getattr(mx, a.dtype))
    del vae.encoder  # decode only: the weights counted are the decoder's
    mx.eval(vae.parameters())
    if a.video:
        height, width = (int(u) for u in a.video.split("x"))
    else:
        height, width = FULL_2_1 if (a.size == "full" and v == "2.1") else SIZES[a.size]
    _, s, _ = vae.stride
    z = random_normal((1, 2, height // s, width // s, args.z_dim), a.seed + 1)
    mx.eval(z)
    unfold = None if a.unfold_gb is None else int(a.unfold_gb * GIB)
    weights = mlx_nbytes(vae) / MIB
    chunks = [run_chunk(vae, z, c, a.split == "resnet", a.frames_per_chunk, unfold) for c in a.chunks.split(",")]
    record = dict(
        bench="wan_vae_layers",
        vae=v,
        size=a.size,
        video=f"{height}x{width}",
        latent=f"{height // s}x{width // s}x{args.z_dim}",
        widths=f"narrow (decoder base {dim})" if narrow else "real",
        dtype=a.dtype,
        frames_per_chunk=a.frames_per_chunk,
        unfold_gb=a.unfold_gb,
        weights_mib=weights,
        chunks=chunks,
        **mlx_host_info(),
    )
    write_json(a.out, record)
    print(
        f"\n== wan_vae_layers: Wan{v} VAE decoder ({record['widths']} widths, {a.dtype}), {record['video']} "
        f"(latent {record['latent']}), weights {weights:.0f} MiB, MLX {mx.__version__} on {mx.default_device()}"
    )
    for c in chunks:
        w = c["whole"]
        print(
            f"-- chunk {c['chunk']}: whole {w['ms']:.1f} ms, peak {w['peak_mib']:.0f} MiB "
            f"({w['above_in_mib']:.0f} above weights+cache), cache {c['cache_mib']:.1f} MiB, "
            f"steps equal to whole: {c['equal_to_whole']}"
        )
        w = c["whole_lazy"]
        print(
            f"   as one lazy graph (no evaluation between blocks): {w['ms']:.1f} ms, peak {w['peak_mib']:.0f} MiB "
            f"({w['above_in_mib']:.0f} above), equal: {w['equal_to_whole']}"
        )
        print(f"{'step':<40} {'shape':>24} {'in MiB':>9} {'out MiB':>9} {'above in':>9} {'temp':>9} {'ms':>8}")
        for r in c["steps"]:
            shape = "x".join(map(str, r["shape"]))
            print(
                f"{r['step']:<40} {shape:>24} {r['in_mib']:>9.1f} {r['out_mib']:>9.1f} {r['above_in_mib']:>9.1f} "
                f"{r['temp_mib']:>9.1f} {r['ms']:>8.1f}"
            )
    return record


if __name__ == "__main__":
    main()
