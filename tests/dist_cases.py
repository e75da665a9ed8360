"""The cases of tests/test_distributed.py, run the same way in one process and on every rank of a launch.

``python -m tests.dist_cases OUT_DIR CONVERTED_WAN_DIR`` (under ``mlx.launch`` or with MLX_RANK /
MLX_HOSTFILE set) runs every case with sequence parallelism over the launched group and writes
``OUT_DIR/rank{r}.npz``; :func:`run_all` with ``sp=None`` gives the one-device values to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_video.distributed import SequenceParallel, on_root
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, Modality, Perturbations
from mlx_video.nn.tiling import Tiling
from mlx_video.wan import pipeline as P

# Wan DiT inputs: (T, h, w) latent sizes -> (T, h/2, w/2) tokens; 16 tokens split on frame borders,
# 27 tokens (odd: the last shard is padded, shards cut frames)
WAN_GRIDS = {"aligned": (2, 8, 4), "odd": (3, 6, 6)}
LTX_TOKENS = (2, 3, 4)  # latent frames, rows, columns of video tokens; +3 appended guiding tokens = 27
LTX_AUDIO = 5


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def wan_forward(dit, grid, sp: SequenceParallel | None, seed: int = 0) -> mx.array:
    """The tiny TI2V DiT on noise with per-frame timesteps (frame 0 clean), a CFG batch of 2."""
    g = _rng(seed)
    T, h, w = grid
    a = dit.args
    x = mx.array(g.standard_normal((2, T, h, w, a.in_dim)).astype(np.float32))
    t = np.full((2, T), 700.0)
    t[:, 0] = 0.0
    ctx = dit.embed_text([mx.array(g.standard_normal((n, a.text_dim)).astype(np.float32)) for n in (5, 9)])
    rope = dit.rope_tables((T, h // 2, w // 2))
    return dit(x, t, ctx, rope, sp=sp)


def text_on_root(group, text_dim: int, calls: list) -> list[mx.array]:
    """Stand-in text embeddings [7, text_dim], [11, text_dim] made on rank 0 only (through ``on_root``,
    as the pipeline runs its T5) and broadcast; every other rank would make different ones."""

    def encode():
        calls.append(1)
        rank = group.rank() if group is not None else 0
        g = _rng(10 + rank)
        return [mx.array(g.standard_normal((n, text_dim)).astype(np.float32)) for n in (7, 11)]

    return on_root(encode, group)


def wan_pipeline(model_dir: Path, group, calls: list) -> tuple[mx.array, np.ndarray, np.ndarray]:
    """A 2-step ti2v-5B run (96x64, 9 frames, seeded noise, CFG batch) of the tiny checkpoint on ``group``.
    The tiny T5's tokenizer alone takes ~6 s to load, so the text embeddings come from :func:`text_on_root`.
    Returns the latents, the frames, and the frames of a tiled decode of the latents (tiles over the ranks)."""
    pipe = P.WanPipeline(model_dir, dtype=mx.float32, offload=False, group=group)
    context = text_on_root(group, pipe.cfg["dit"]["text_dim"], calls)
    res = pipe.generate(task="ti2v-5B", size="96*64", frame_num=9, sample_steps=2, seed=3, context=context)
    pipe.tiling = Tiling((32, 48), 16)  # 96x64: 3x3 tiles of 2x3 latent pixels, split over the ranks
    return res.latents, res.frames, pipe.decode(res.latents)


# tiled VAE decodes split over the ranks: name -> (VAE version, latent (T, h, w), tile, overlap in pixels);
# 3x3 tiles (up to 4 overlap at a pixel; one rank idle in the last round of 2) and 1 tile (fewer tiles than ranks)
VAE_CASES = {"v22_9tiles": ("2.2", (2, 14, 22), (32, 40), 16), "v21_1tile": ("2.1", (2, 6, 6), (32, 32), 8)}


def vae_model(version: str):
    """A tiny random Wan2.1 / Wan2.2 VAE (two levels: spatial stride 2 / 4), seeded."""
    from benchmarks.common import mlx_random_
    from mlx_video.wan import vae21, vae22

    if version == "2.2":
        m = vae22.Wan22VAE(vae22.Wan22VAEArgs(dim=8, dec_dim=8, dim_mult=[1, 1], temperal_downsample=[True]))
    else:
        m = vae21.Wan21VAE(vae21.Wan21VAEArgs(dim=8, dim_mult=[1, 2], temperal_downsample=[True]))
    return mlx_random_(m, mx.float32, 0)


def vae_tiled(name: str, group) -> mx.array:
    """The tiled decode of case ``name`` on seeded latents, its tiles split over ``group`` (None: one process)."""
    version, (T, h, w), tile, overlap = VAE_CASES[name]
    m = vae_model(version)
    z = mx.array(_rng(5).standard_normal((1, T, h, w, m.z_dim)).astype(np.float32))
    return m.decode(z, Tiling(tile, overlap), group=group)


def ltx_vae_tiled(group) -> mx.array:
    """The tiny LTX-2 video VAE's tiled decode (ltx-core tiling: 96 px tiles overlapping by 32, 16-frame
    temporal tiles overlapping by 8) of seeded latents [1, 4, 4, 6, C]: 3 temporal chunks of 3x3 spatial tiles,
    the last column narrower (padded for the gather), split over ``group``."""
    from mlx_video.ltx2.video_vae import load_video_vae
    from tests.helpers import ASSETS

    vae = load_video_vae(str(ASSETS / "tiny-LTX-2" / "ltx-2-tiny-dev.safetensors"), parts=("decoder",))
    z = mx.array(_rng(6).standard_normal((1, 4, 4, 6, vae.latents_mean.shape[0])).astype(np.float32))
    return vae.decode_tiled(z, 96, 32, 16, 8, group=group)


def _ltx_config(flavour: str) -> LTXModelArgs:
    from tests.ltx_tiny import SPLIT_ROPE, transformer_config

    return LTXModelArgs.from_config(transformer_config(flavour, settings=SPLIT_ROPE))


def ltx_model(flavour: str, seed: int = 0) -> LTXModel:
    """A tiny LTX-2 / LTX-2.3 audio+video transformer with seeded random weights (N(0, 0.2²))."""
    m = LTXModel(_ltx_config(flavour))
    g = _rng(seed)
    m.update(
        tree_unflatten(
            [
                (k, mx.array((0.2 * g.standard_normal(v.shape)).astype(np.float32)))
                for k, v in tree_flatten(m.parameters())
            ]
        )
    )
    return m


def ltx_forward(model: LTXModel, sp: SequenceParallel | None, seed: int = 1) -> tuple[mx.array, mx.array]:
    """Video (grid + 3 appended guiding tokens, per-token sigma) and audio, a batch of 2 (the second
    item perturbed as in STG and modality-isolation guidance passes)."""
    g = _rng(seed)
    F, H, W = LTX_TOKENS
    ti, hi, wi = np.meshgrid(np.arange(F), np.arange(H), np.arange(W), indexing="ij")
    start = np.stack([ti.ravel() * 8 / 24.0, hi.ravel() * 32.0, wi.ravel() * 32.0])  # [3, N]
    start = np.concatenate([start, np.array([[9 / 24.0] * 3, [0.0] * 3, [0.0, 32.0, 64.0]])], 1)
    size = np.array([8 / 24.0, 32.0, 32.0])[:, None]
    vpos = np.broadcast_to(np.stack([start, start + size], -1), (2, 3, start.shape[1], 2)).astype(np.float32)
    a_start = np.arange(LTX_AUDIO, dtype=np.float32) * 0.04
    apos = np.broadcast_to(np.stack([a_start, a_start + 0.04], -1), (2, 1, LTX_AUDIO, 2)).astype(np.float32)
    n_v = vpos.shape[2]
    sigma = np.array([0.7, 0.4], np.float32)
    v_t = np.ones((2, n_v), np.float32) * sigma[:, None]
    v_t[:, : H * W] = 0.0
    v_t[:, -3:] *= 0.25
    arr = lambda *s: mx.array(g.standard_normal(s).astype(np.float32))  # noqa: E731
    ctx_v = 16 if not model.args.cross_attention_adaln else 32
    video = Modality(arr(2, n_v, 8), mx.array(v_t), mx.array(sigma), arr(2, 4, ctx_v))
    audio = Modality(
        arr(2, LTX_AUDIO, 8), mx.array(np.repeat(sigma[:, None], LTX_AUDIO, 1)), mx.array(sigma * 0.5), arr(2, 4, 16)
    )
    # item 1 as a guidance pass perturbs it: STG on block 1 (both streams), no audio<->video in block 0
    perturb = Perturbations(
        ({}, {"video_self_attn": [1], "audio_self_attn": [1], "a2v_cross_attn": [0], "v2a_cross_attn": [0]})
    )
    return model(video, audio, model.rope_tables(vpos, apos), perturb, sp=sp)


def run_all(sp_for, model_dir: Path, group=None) -> dict[str, np.ndarray]:
    """Every case's output as numpy. ``sp_for(mode)`` gives the SequenceParallel for a mode (or None);
    ``group`` goes to the Wan pipeline."""
    out = {}
    dit = P.WanPipeline(model_dir, dtype=mx.float32, offload=False).dit
    for name, grid in WAN_GRIDS.items():
        for mode in ("ulysses", "allgather"):
            out[f"wan_{name}_{mode}"] = wan_forward(dit, grid, sp_for(mode))
    for flavour in ("ltx2", "ltx23"):
        m = ltx_model(flavour)
        for mode in ("ulysses", "allgather"):
            out[f"{flavour}_video_{mode}"], out[f"{flavour}_audio_{mode}"] = ltx_forward(m, sp_for(mode))
    for name in VAE_CASES:
        out[f"vae_{name}"] = vae_tiled(name, group)
    out["vae_ltx2_tiled"] = ltx_vae_tiled(group)
    calls = []
    out["pipe_latent"], out["pipe_video"], out["pipe_video_tiled"] = wan_pipeline(model_dir, group, calls)
    out["text_encoder_calls"] = len(calls)
    return {k: np.array(v) for k, v in out.items()}


# the DiT of tests/test_memory.py (600 tokens, width 192), 4 heads: Ulysses on 2 ranks
MEM_DIT = dict(model_type="ti2v", dim=192, ffn_dim=768, num_heads=4, num_layers=2, in_dim=48, out_dim=48, text_dim=256)
MEM_GRID = (3, 20, 40)


def dit_peak(sp: SequenceParallel | None) -> int:
    """MLX's peak bytes of one forward of the ``MEM_DIT`` model over its weights and inputs (its activations),
    split over ``sp`` (the per-rank number the memory planner estimates)."""
    import gc

    from mlx_video.wan.transformer import WanModel, WanModelArgs

    m = WanModel(WanModelArgs(**MEM_DIT))
    T, h, w = MEM_GRID
    x = mx.random.normal((1, T, h, w, 48), key=mx.random.key(0))
    ctx = m.embed_text([mx.random.normal((20, 256), key=mx.random.key(1))])
    rope = m.rope_tables((T, h // 2, w // 2))
    mx.eval(m.parameters(), x, ctx, rope.even, rope.odd)
    gc.collect()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(m(x, mx.array([500.0]), ctx, rope, sp=sp))
    return mx.get_peak_memory() - base


def main(out_dir: str, model_dir: str) -> None:
    group = mx.distributed.init(strict=True, backend="ring")
    res = run_all(lambda mode: SequenceParallel(group, mode), Path(model_dir), group)
    peak = dit_peak(SequenceParallel(group, "ulysses"))
    np.savez(Path(out_dir) / f"rank{group.rank()}.npz", size=group.size(), dit_peak=peak, **res)


if __name__ == "__main__":
    main(*sys.argv[1:3])
