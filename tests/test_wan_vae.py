"""Parity of the MLX Wan 2.1 / 2.2 VAEs with the official code and diffusers' AutoencoderKLWan.

Tiny random models (base dim 8, the real z_dim 16 / 48 and latent statistics), weights by fan-in,
exported in each reference's own checkpoint layout, converted with our ``sanitize`` and loaded
with ``load_strict``. Encode and decode at F = 1, 5, 9 frames (latent T = 1, 2, 3) through the
chunked causal cache, non-square frames.
"""

from __future__ import annotations

import inspect

import mlx.core as mx
import numpy as np
import pytest
import torch

from benchmarks.common import mlx_random_
from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.wan import vae21, vae22, vae_blocks
from tests.oracles import randomize_, rel_err, wan

TOL = 1e-4
FRAMES = (1, 5, 9)

# name -> (our module, args, pixel H, W, official builder, diffusers kwargs)
CASES = {
    "2.2": dict(
        mod=vae22,
        args=vae22.Wan22VAEArgs(dim=8, dec_dim=8),
        hw=(32, 48),
        official=lambda: wan().vae2_2.WanVAE_(
            dim=8,
            dec_dim=8,
            z_dim=48,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
        ),
        diffusers=dict(
            base_dim=8,
            decoder_base_dim=8,
            z_dim=48,
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            latents_mean=vae22.MEAN48,
            latents_std=vae22.STD48,
        ),
    ),
    "2.1": dict(
        mod=vae21,
        args=vae21.Wan21VAEArgs(dim=8),
        hw=(16, 24),
        official=lambda: wan().vae2_1.WanVAE_(
            dim=8,
            z_dim=16,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
        ),
        diffusers=dict(base_dim=8, z_dim=16),
    ),
}


def _model_cls(mod):
    return mod.Wan22VAE if mod is vae22 else mod.Wan21VAE


def _state(module) -> dict[str, mx.array]:
    return {k: mx.array(v.detach().numpy()) for k, v in module.state_dict().items()}


def _ours(case, state, layout):
    model = _model_cls(case["mod"])(case["args"])
    return load_strict(model, case["mod"].sanitize(state, layout), "wan vae")


def _cl(t: torch.Tensor) -> np.ndarray:
    """torch [B, C, T, H, W] -> numpy channels-last [B, T, H, W, C]."""
    return t.detach().permute(0, 2, 3, 4, 1).numpy()


def _inputs(case, seed=1):
    """Videos with F = 1, 5, 9 and normalised latents with T = 1, 2, 3 (torch, channels-first)."""
    g = torch.Generator().manual_seed(seed)
    h, w = case["hw"]
    s = 16 if case["mod"] is vae22 else 8
    z_dim = case["args"].z_dim
    videos = [torch.rand(1, 3, f, h, w, generator=g) * 2 - 1 for f in FRAMES]
    latents = [torch.randn(1, z_dim, 1 + (f - 1) // 4, h // s, w // s, generator=g) for f in FRAMES]
    return videos, latents


def _stats(case):
    a = case["args"]
    return torch.tensor(a.latents_mean), torch.tensor(a.latents_std)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    c = dict(CASES[request.param], name=request.param)
    torch.manual_seed(0)
    ref = randomize_(c["official"]().eval(), seed=0, fan_in=True)
    c["ref"] = ref
    c["ours"] = _ours(c, _state(ref), "official")
    c["videos"], c["latents"] = _inputs(c)
    return c


def test_official_encode_decode(case):
    ref, ours = case["ref"], case["ours"]
    mean, std = _stats(case)
    scale = [mean, 1.0 / std]
    for video, z in zip(case["videos"], case["latents"]):
        with torch.no_grad():
            mu_ref = ref.encode(video, scale)
            x_ref = ref.decode(z, scale).clamp(-1, 1)
        mu = ours.encode(mx.array(_cl(video)))
        x = ours.decode(mx.array(_cl(z)))
        assert mu.shape == _cl(mu_ref).shape and mu.dtype == mx.float32
        assert x.shape == _cl(x_ref).shape and x.dtype == mx.float32
        e_enc, e_dec = rel_err(mu, _cl(mu_ref)), rel_err(x, _cl(x_ref))
        assert e_enc <= TOL, (case["name"], video.shape, e_enc)
        assert e_dec <= TOL, (case["name"], z.shape, e_dec)
        # the comparison is not blind: outputs are mostly not clamped
        assert float(np.mean(np.abs(np.array(x)) >= 1)) < 0.2


def test_diffusers_encode_decode(case):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    ref = randomize_(AutoencoderKLWan(**case["diffusers"]).eval(), seed=3, fan_in=True)
    ours = _ours(case, _state(ref), "diffusers")
    mean, std = (t.view(1, -1, 1, 1, 1) for t in _stats(case))
    for video, z in zip(case["videos"], case["latents"]):
        with torch.no_grad():
            mu_ref = (ref.encode(video).latent_dist.mode() - mean) / std  # diffusers: un-normalised
            x_ref = ref.decode(z * std + mean).sample  # and takes de-normalised z
        e_enc = rel_err(ours.encode(mx.array(_cl(video))), _cl(mu_ref))
        e_dec = rel_err(ours.decode(mx.array(_cl(z))), _cl(x_ref))
        assert e_enc <= TOL and e_dec <= TOL, (case["name"], video.shape, e_enc, e_dec)


class _NoHistory(vae21.CausalCache):
    """A cache that forgets: every chunk sees zeros instead of the previous chunk's frames."""

    def write(self, value):
        super().write(None if value is None else mx.zeros_like(value))


def test_cache_matters(case, monkeypatch):
    ours = case["ours"]
    video, z = mx.array(_cl(case["videos"][-1])), mx.array(_cl(case["latents"][-1]))
    mu, x = ours.encode(video), ours.decode(z)
    monkeypatch.setattr(vae21, "CausalCache", _NoHistory)
    mu0, x0 = ours.encode(video), ours.decode(z)
    # the first chunk has no history either way; later chunks must depend on it
    assert rel_err(mu0[:, :1], mu[:, :1]) < 1e-6 and rel_err(x0[:, :1], x[:, :1]) < 1e-6
    assert rel_err(mu0[:, 1:], mu[:, 1:]) > 100 * TOL
    assert rel_err(x0[:, 1:], x[:, 1:]) > 100 * TOL


def test_inputs_matter(case):
    """Each latent frame and each video chunk changes what it should (and causality holds)."""
    ours = case["ours"]
    video, z = mx.array(_cl(case["videos"][-1])), mx.array(_cl(case["latents"][-1]))
    mu, x = ours.encode(video), ours.decode(z)
    video2 = mx.concatenate([video[:, :5], -video[:, 5:]], axis=1)  # change the last chunk only
    mu2 = ours.encode(video2)
    assert rel_err(mu2[:, :2], mu[:, :2]) < 1e-6 and rel_err(mu2[:, 2:], mu[:, 2:]) > 100 * TOL
    z2 = mx.concatenate([z[:, :1], -z[:, 1:]], axis=1)
    x2 = ours.decode(z2)
    assert rel_err(x2[:, :1], x[:, :1]) < 1e-6 and rel_err(x2[:, 1:], x[:, 1:]) > 100 * TOL


def test_shapes_and_errors():
    for cls, args, s in (
        (vae22.Wan22VAE, vae22.Wan22VAEArgs(dim=4, dec_dim=4), 16),
        (vae21.Wan21VAE, vae21.Wan21VAEArgs(dim=4), 8),
    ):
        m = cls(args)
        assert m.stride == (4, s, s) and m.z_dim == args.z_dim
        with pytest.raises(ValueError, match="1 \\+ 4k"):
            m.encode(mx.zeros((1, 4, s, s, 3)))
        with pytest.raises(ValueError, match="multiples"):
            m.encode(mx.zeros((1, 5, s, s + s // 2, 3)))
        with pytest.raises(ValueError):
            m.encode(mx.zeros((1, 5, s, s, 4)))
        with pytest.raises(ValueError):
            m.decode(mx.zeros((1, 2, 1, 1, args.z_dim + 1)))
    with pytest.raises(ValueError):
        vae22.Wan22VAE(vae21.Wan21VAEArgs())


def test_defaults_and_from_config():
    a22, a21 = vae22.Wan22VAEArgs(), vae21.Wan21VAEArgs()
    assert (a22.dim, a22.dec_dim, a22.z_dim, a22.patch_size) == (160, 256, 48, 2)
    assert (a21.dim, a21.dec_dim, a21.z_dim, a21.patch_size) == (96, None, 16, 1)
    assert a21.dim_mult == [1, 2, 4, 4] and a21.temperal_downsample == [False, True, True]
    from diffusers import AutoencoderKLWan

    d22 = {
        "base_dim": 160,
        "decoder_base_dim": 256,
        "z_dim": 48,
        "is_residual": True,
        "patch_size": 2,
        "in_channels": 12,
        "out_channels": 12,
        "attn_scales": [],
        "latents_mean": vae22.MEAN48,
        "latents_std": vae22.STD48,
        "temperal_downsample": [False, True, True],
        "dim_mult": [1, 2, 4, 4],
    }
    assert vae22.Wan22VAEArgs.from_config(d22) == a22
    d21 = {
        k: p.default
        for k, p in inspect.signature(  # diffusers' 2.1 defaults, without building the model
            AutoencoderKLWan.__init__
        ).parameters.items()
        if k != "self"
    }
    assert vae21.Wan21VAEArgs.from_config(d21) == a21
    with pytest.raises(ValueError):
        vae21.Wan21VAEArgs.from_config(d22)
    with pytest.raises(ValueError):
        vae22.Wan22VAEArgs.from_config(d21)
    assert vae21.Wan21VAEArgs.from_config({"dim": 8, "z_dim": 16}).dim == 8


def test_strict_loading_names_the_key(case):
    state = _state(case["ref"])
    good = case["mod"].sanitize(state, "official")
    key = "decoder.up_blocks.0.resnets.0.conv1.weight"
    assert key in good
    model = _model_cls(case["mod"])(case["args"])
    missing = {k: v for k, v in good.items() if k != key}
    with pytest.raises(WeightsError, match=key.replace(".", r"\.")):
        load_strict(model, missing, "vae")
    extra = dict(good, **{"encoder.not_a_layer.weight": mx.zeros((2,))})
    with pytest.raises(WeightsError, match=r"encoder\.not_a_layer\.weight"):
        load_strict(model, extra, "vae")
    bad = dict(good, **{key: good[key][..., :-1]})
    with pytest.raises(WeightsError, match=key.replace(".", r"\.")):
        load_strict(model, bad, "vae")
    with pytest.raises(ValueError):
        case["mod"].sanitize(state, "nonsense")


@pytest.mark.parametrize("frames,unfold", [(1, None), (2, None), (1, 20_000)])
def test_frames_per_chunk_is_the_same_decode(case, frames, unfold):
    """Chunks split in time at the up stages (``frames_per_chunk``; with a tiny conv unfold budget: row
    bands too) give the unsplit decode (bit-equal here, within 1e-6 allowed) and so match the official one."""
    ref, ours = case["ref"], case["ours"]
    mean, std = _stats(case)
    for z in case["latents"][1:]:  # T = 2, 3: chunks of 4 frames at full resolution
        with torch.no_grad():
            x_ref = ref.decode(z, [mean, 1.0 / std]).clamp(-1, 1)
        zm = mx.array(_cl(z))
        whole = np.array(ours.decode(zm))
        x = ours.decode(zm, frames_per_chunk=frames, max_unfold_bytes=unfold)
        assert x.shape == whole.shape
        assert float(np.abs(np.array(x) - whole).max()) <= 1e-6, (case["name"], frames, unfold)
        assert rel_err(x, _cl(x_ref)) <= TOL
        chunks = list(ours.decode_chunks(zm, frames, unfold))
        assert [c.shape[1] for c in chunks] == [1] + [4] * (z.shape[2] - 1)
        np.testing.assert_array_equal(np.concatenate([np.array(c) for c in chunks], axis=1), np.array(x))


def test_pixels_to_uint8_matches_the_host_conversion():
    """The device conversion gives to_uint8's bytes, also at the half steps (round half to even) and outside
    [-1, 1]."""
    from mlx_video.io.images import to_uint8

    rng = np.random.default_rng(0)
    x = rng.uniform(-1.2, 1.2, 100_000).astype(np.float32)
    halves = (np.arange(256, dtype=np.float32) + 0.5) / np.float32(127.5) - np.float32(1.0)
    x = np.concatenate([x, halves, np.float32([-1.0, 1.0, 0.0, -3.0, 3.0])])
    np.testing.assert_array_equal(np.array(vae21.pixels_to_uint8(mx.array(x))), to_uint8(x))
    np.testing.assert_array_equal(
        np.array(vae21.pixels_to_uint8(mx.array(x).astype(mx.bfloat16))),
        to_uint8(np.array(mx.array(x).astype(mx.bfloat16).astype(mx.float32))),
    )


@pytest.mark.parametrize("frames", [None, 1])
def test_decode_frames_is_uint8_of_the_decode(case, frames):
    """decode_frames (uint8 on the device, next chunk started before the caller gets this one) gives the bytes
    the host's to_uint8 gives for decode_chunks' float32 chunks, chunk by chunk; NaN latents are flagged."""
    from mlx_video.io.images import to_uint8

    zm = mx.array(_cl(case["latents"][2]))  # T = 3
    ours = case["ours"]
    chunks = list(ours.decode_chunks(zm, frames))
    got = list(ours.decode_frames(zm, frames))
    assert [c.shape for c, _ in got] == [tuple(c.shape) for c in chunks] and all(ok for _, ok in got)
    for (u8, _), c in zip(got, chunks):
        assert u8.dtype == np.uint8
        np.testing.assert_array_equal(u8, to_uint8(np.array(c)))
    bad = mx.concatenate([zm[:, :2], mx.full(zm[:, 2:].shape, float("nan"))], axis=1)
    assert [ok for _, ok in ours.decode_frames(bad, frames)] == [True, True, False]


def test_frames_per_chunk_lowers_the_peak():
    """One frame at a time at the full-resolution stages holds less than the 4-frame chunk (CPU peak)."""
    m = mlx_random_(vae22.Wan22VAE(vae22.Wan22VAEArgs(dim=8, dec_dim=8)), mx.float32, 0)
    z = mx.random.normal((1, 2, 4, 6, 48), key=mx.random.key(0))
    peaks = {}
    for frames in (None, 1):
        mx.eval(m.decode(z, frames_per_chunk=frames))  # warm
        mx.clear_cache()
        mx.reset_peak_memory()
        mx.eval(m.decode(z, frames_per_chunk=frames))
        peaks[frames] = mx.get_peak_memory()
    assert peaks[1] < 0.6 * peaks[None], peaks


def test_evaluating_between_blocks_is_the_same_and_holds_less(case, monkeypatch):
    """EVAL_BLOCK_BYTES = 0 (every block evaluated with the cache before the next one is built, every cache copy
    started at once) gives the same encode and decode bytes as one lazy graph per chunk, with a lower CPU peak."""
    ours = case["ours"]
    zm, video = mx.array(_cl(case["latents"][2])), mx.array(_cl(case["videos"][2]))
    peaks, outs = {}, {}
    for name, limit in (("lazy", 1 << 62), ("blocks", 0)):
        monkeypatch.setattr(vae_blocks, "EVAL_BLOCK_BYTES", limit)  # where CausalCache reads it
        mx.eval(ours.decode(zm))  # warm
        mx.clear_cache()
        mx.reset_peak_memory()
        outs[name] = [np.array(ours.decode(zm)), np.array(ours.decode(zm, frames_per_chunk=1))]
        peaks[name] = mx.get_peak_memory()
        outs[name].append(np.array(ours.encode(video)))
    for a, b in zip(outs["lazy"], outs["blocks"]):
        np.testing.assert_array_equal(a, b)
    assert peaks["blocks"] < 0.95 * peaks["lazy"], peaks


def test_frames_per_chunk_must_be_positive(case):
    z = mx.array(_cl(case["latents"][1]))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="frames_per_chunk"):
            case["ours"].decode(z, frames_per_chunk=bad)
