"""LTX-2 latent upsamplers vs ltx-core 1.0.0 (LatentUpsampler, upsample_video) and diffusers.

Tiny random upsamplers (weights by fan-in) in every variant the reference builds, exported in the
upsampler file's flat layout, converted with our sanitize, loaded strictly, compared channels-last.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2 import upsampler as up
from tests.oracles import randomize_, rel_err

TOL = 1e-4
C, MID = 16, 64

CASES = {  # ltx-core config keys (the upsampler file's metadata)
    "x2-plain": dict(spatial_scale=2.0, rational_resampler=False),
    "x2-rational": dict(spatial_scale=2.0, rational_resampler=True),
    "x1.5-rational": dict(spatial_scale=1.5, rational_resampler=True),
    "temporal-x2": dict(spatial_upsample=False, temporal_upsample=True),
    "spatiotemporal-x2": dict(spatial_upsample=True, temporal_upsample=True),
    "x2-plain-dims2": dict(dims=2),
}


def to_mx(sd):
    return {k: mx.array(v.detach().float().numpy()) for k, v in sd.items()}


def ltx_upsampler(cfg, seed=0):
    from ltx_core.model.upsampler import LatentUpsamplerConfigurator

    m = LatentUpsamplerConfigurator.from_config(cfg).eval()
    randomize_(m, seed=seed, fan_in=True, buffers=False)  # the blur kernel is a constant
    return m


def ours_from(cfg, sd, layout="official"):
    m = up.LatentUpsampler(up.UpsamplerArgs.from_config(cfg))
    return load_strict(m, up.sanitize(to_mx(sd), layout), "upsampler")


def latent(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def run(ours, x):
    """torch [B, C, F, H, W] -> ours channels-last -> back to channels-first numpy."""
    y = ours(mx.array(x.permute(0, 2, 3, 4, 1).numpy()))
    return np.array(y).transpose(0, 4, 1, 2, 3)


@pytest.mark.parametrize("conv3d", ["native", "frames"])
@pytest.mark.parametrize("name", list(CASES))
def test_upsampler_matches_ltx_core(name, conv3d, monkeypatch):
    from mlx_video.ltx2 import video_vae

    monkeypatch.setattr(video_vae, "CONV3D_MODE", conv3d)  # frames: 3-D convolutions as 2-D per temporal tap
    cfg = dict(in_channels=C, mid_channels=MID, num_blocks_per_stage=1, **CASES[name])
    ref = ltx_upsampler(cfg)
    ours = ours_from(cfg, ref.state_dict())
    h = 5 if name == "x1.5-rational" else 4  # odd size: ceil(3h/2)
    x = latent((1, C, 3, h, 6), seed=1)
    with torch.no_grad():
        want = ref(x)
    got = run(ours, x)
    assert got.shape == tuple(want.shape)
    assert rel_err(got, want) <= TOL, rel_err(got, want)
    if name == "x1.5-rational":
        assert got.shape[3:] == (math.ceil(3 * h / 2), 9)
    # the output follows the input, frame by frame where the reference is per-frame
    x2 = x.clone()
    x2[:, :, -1] += 1.0
    with torch.no_grad():
        assert rel_err(run(ours, x2), want) > 100 * TOL


def test_two_blocks_and_batch():
    cfg = dict(in_channels=C, mid_channels=MID, num_blocks_per_stage=2, spatial_scale=1.5, rational_resampler=True)
    ref = ltx_upsampler(cfg, seed=3)
    ours = ours_from(cfg, ref.state_dict())
    x = latent((2, C, 2, 4, 4), seed=2)
    with torch.no_grad():
        want = ref(x)
    assert rel_err(run(ours, x), want) <= TOL


def test_upsample_video_statistics():
    """ltx-core upsample_video: un-normalise with the encoder's per-channel statistics, upsample, re-normalise."""
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.video_vae.ops import PerChannelStatistics

    cfg = dict(in_channels=C, mid_channels=MID, num_blocks_per_stage=1, rational_resampler=True)
    ref = ltx_upsampler(cfg, seed=4)
    ours = ours_from(cfg, ref.state_dict())
    stats = PerChannelStatistics(C)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        stats.get_buffer("mean-of-means").copy_(0.5 * torch.randn(C, generator=g))
        stats.get_buffer("std-of-means").copy_(0.5 + torch.rand(C, generator=g))

    class Encoder:  # upsample_video only reads .per_channel_statistics
        per_channel_statistics = stats

    x = latent((1, C, 2, 4, 4), seed=6)
    with torch.no_grad():
        want = upsample_video(x, Encoder(), ref)
    mean = mx.array(stats.get_buffer("mean-of-means").numpy())
    std = mx.array(stats.get_buffer("std-of-means").numpy())
    xm = mx.array(x.permute(0, 2, 3, 4, 1).numpy())
    got = np.array(up.upsample_video(xm, ours, mean, std)).transpose(0, 4, 1, 2, 3)
    assert rel_err(got, want) <= TOL, rel_err(got, want)
    plain = np.array(up.upsample_video(xm, ours, mx.zeros(C), mx.ones(C))).transpose(0, 4, 1, 2, 3)
    assert rel_err(plain, want) > 100 * TOL


@pytest.mark.parametrize("rational", [True, False])
def test_upsampler_matches_diffusers(rational):
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    ref = LTX2LatentUpsamplerModel(
        in_channels=C,
        mid_channels=MID,
        num_blocks_per_stage=1,
        rational_spatial_scale=1.5 if rational else 2.0,
        use_rational_resampler=rational,
    ).eval()
    randomize_(ref, seed=7, fan_in=True, buffers=False)
    ours = ours_from(dict(ref.config), ref.state_dict(), layout="diffusers")
    assert ours.args.rational_resampler == rational
    x = latent((1, C, 2, 4, 6), seed=8)
    with torch.no_grad():
        want = ref(x)
    assert rel_err(run(ours, x), want) <= TOL


def test_from_config_defaults():
    a = up.UpsamplerArgs.from_config({})  # ltx-core defaults
    assert (a.mid_channels, a.rational_resampler, a.spatial_scale) == (512, False, 2.0)
    d = up.UpsamplerArgs.from_config({"rational_spatial_scale": 2.0})  # a diffusers key: diffusers defaults
    assert (d.mid_channels, d.rational_resampler) == (1024, True)
    with pytest.raises(ValueError, match="scale"):
        up.UpsamplerArgs.from_config({"spatial_scale": 3.0, "rational_resampler": True})
    with pytest.raises(ValueError):
        up.UpsamplerArgs.from_config({"spatial_upsample": False})


def test_strict_loading_names_the_key():
    cfg = dict(in_channels=C, mid_channels=MID, num_blocks_per_stage=1, spatial_scale=1.5, rational_resampler=True)
    sd = to_mx(ltx_upsampler(cfg).state_dict())
    args = up.UpsamplerArgs.from_config(cfg)
    good = up.sanitize(sd)
    key = "post_upsample_res_blocks.0.conv2.weight"
    bad_cases = (
        ({k: v for k, v in good.items() if k != key}, key),
        ({**good, "res_blocks.1.conv1.weight": good["res_blocks.0.conv1.weight"]}, "res_blocks.1.conv1.weight"),
        ({**good, key: good[key].transpose(0, 4, 1, 2, 3)[:, :3]}, key),
    )
    for bad, name in bad_cases:
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(up.LatentUpsampler(args), bad, "upsampler")
    with pytest.raises(WeightsError, match="blur_down.kernel"):
        up.sanitize({**sd, "upsampler.blur_down.kernel": mx.ones((1, 1, 5, 5))})
    # a plain x2 file does not load into a rational x1.5 model (conv 4·mid vs 9·mid channels)
    plain = up.sanitize(to_mx(ltx_upsampler(dict(cfg, spatial_scale=2.0, rational_resampler=False)).state_dict()))
    with pytest.raises(WeightsError, match=r"upsampler\.conv\.weight"):
        load_strict(up.LatentUpsampler(args), plain, "upsampler")
