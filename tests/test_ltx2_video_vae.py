"""LTX-2 / LTX-2.3 video VAE: parity with ltx-core 1.0.0 (both block layouts, timestep-conditioned
decoder, tiled decode) and diffusers' AutoencoderKLLTX2Video, through our sanitize + strict loader."""

from __future__ import annotations

import copy
import json

import mlx.core as mx
import pytest
import torch
from diffusers import AutoencoderKLLTX2Video
from ltx_core.model.video_vae.model_configurator import VideoDecoderConfigurator, VideoEncoderConfigurator
from ltx_core.model.video_vae.tiling import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

from mlx_video.io.weights import WeightsError, save_safetensors
from mlx_video.ltx2.video_vae import VideoVAE, load_video_vae, sanitize
from tests.oracles import randomize_, rel_err, to_np

TOL = 1e-4
C = 8  # latent channels (128 in the checkpoints)


def _res(n=1):
    return ["res_x", {"num_layers": n}]


# ltx-core block lists with the real checkpoints' structure (docs/ltx2.md 4.2 / 4.3), 1-2 layers per res_x
LTX2_ENC = [
    _res(),
    ["compress_space_res", {"multiplier": 2}],
    _res(),
    ["compress_time_res", {"multiplier": 2}],
    _res(),
    ["compress_all_res", {"multiplier": 2}],
    _res(),
    ["compress_all_res", {"multiplier": 2}],
    _res(),
]
LTX23_ENC = [
    _res(),
    ["compress_space_res", {"multiplier": 2}],
    _res(2),
    ["compress_time_res", {"multiplier": 2}],
    _res(),
    ["compress_all_res", {"multiplier": 2}],
    _res(),
    ["compress_all_res", {"multiplier": 1}],
    _res(),
]
LTX2_DEC = [
    _res(),
    ["compress_all", {"residual": True, "multiplier": 2}],
    _res(),
    ["compress_all", {"residual": True, "multiplier": 2}],
    _res(),
    ["compress_all", {"residual": True, "multiplier": 2}],
    _res(),
]
LTX23_DEC = [
    _res(),
    ["compress_space", {"multiplier": 2}],
    _res(2),
    ["compress_time", {"multiplier": 2}],
    _res(),
    ["compress_all", {"multiplier": 1}],
    _res(),
    ["compress_all", {"multiplier": 2}],
    _res(),
]


def vae_config(enc, dec, padding, tc=False):
    return {
        "vae": {
            "dims": 3,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": C,
            "patch_size": 4,
            "norm_layer": "pixel_norm",
            "latent_log_var": "uniform",
            "spatial_padding_mode": padding,
            "encoder_blocks": enc,
            "decoder_blocks": dec,
            "causal_decoder": False,
            "timestep_conditioning": tc,
            "decoder_base_channels": 4,
        }
    }


def _stats(seed):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(C, generator=g), 0.5 + torch.rand(C, generator=g)


def torch_vae(config, seed=0):
    """ltx-core encoder + decoder with seeded weights and shared per-channel statistics."""
    enc = VideoEncoderConfigurator.from_config(config).eval()
    dec = VideoDecoderConfigurator.from_config(config).eval()
    randomize_(enc, seed, fan_in=True)
    randomize_(dec, seed + 1, fan_in=True)
    mean, std = _stats(seed + 2)
    with torch.no_grad():
        for m in (enc, dec):
            m.per_channel_statistics.get_buffer("mean-of-means").copy_(mean)
            m.per_channel_statistics.get_buffer("std-of-means").copy_(std)
        if config["vae"]["timestep_conditioning"]:
            dec.timestep_scale_multiplier.fill_(1000.0)
    return enc, dec


def single_file(enc, dec):
    """State dicts in the LTX-2 single-file layout (prefix vae., shared statistics, extra buffers)."""
    sd = {}
    for part, m in (("encoder", enc), ("decoder", dec)):
        for k, v in m.state_dict().items():
            sd[f"vae.{k}" if k.startswith("per_channel_statistics.") else f"vae.{part}.{k}"] = v
    for extra in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):  # real files carry these
        sd[f"vae.per_channel_statistics.{extra}"] = torch.ones(C)
    sd["model.diffusion_model.patchify_proj.weight"] = torch.zeros(4, 4)  # another component of the file
    return {k: mx.array(v.detach().float().numpy()) for k, v in sd.items()}


def video_mx(v):  # torch [B, 3, F, H, W] -> MLX [B, F, H, W, 3]
    return mx.array(to_np(v).transpose(0, 2, 3, 4, 1))


def to_torch_layout(x):  # MLX [B, F, H, W, C] -> numpy [B, C, F, H, W]
    return to_np(x).transpose(0, 4, 1, 2, 3)


def inputs(seed=3, frames=9, size=64, lat=(2, 2, 2)):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1
    latent = torch.randn(1, C, *lat, generator=g)
    return video, latent


@pytest.fixture(scope="module")
def ltx2():
    cfg = vae_config(LTX2_ENC, LTX2_DEC, "reflect")
    enc, dec = torch_vae(cfg, 0)
    return cfg, enc, dec, VideoVAE.from_weights(sanitize(single_file(enc, dec), "lightricks"), cfg)


@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_encode_decode_match_ltx_core(flavour, ltx2):
    if flavour == "ltx2":
        cfg, enc, dec, vae = ltx2
    else:
        cfg = vae_config(LTX23_ENC, LTX23_DEC, "zeros")
        enc, dec = torch_vae(cfg, 10)
        vae = VideoVAE.from_weights(sanitize(single_file(enc, dec), "lightricks"), cfg)
    video, latent = inputs()
    with torch.no_grad():
        z_ref, x_ref = enc(video), dec(latent)
    z = vae.encode(video_mx(video))
    x = vae.decode(video_mx(latent))
    assert z.shape == (1, 2, 2, 2, C) and x.shape == (1, 9, 64, 64, 3)
    assert rel_err(to_torch_layout(z), z_ref) < TOL
    assert rel_err(to_torch_layout(x), x_ref) < TOL
    # the statistics matter: un-normalised vs normalised differ by far more than the tolerance
    raw = vae.encoder(video_mx(video))
    assert rel_err(to_torch_layout(raw), z_ref) > 100 * TOL
    with torch.no_grad():
        assert rel_err(x, to_np(dec(latent * 1.1)).transpose(0, 2, 3, 4, 1)) > 100 * TOL


def test_timestep_conditioned_decoder_matches_ltx_core():
    cfg = vae_config(LTX2_ENC, LTX2_DEC, "reflect", tc=True)
    _, dec = torch_vae(cfg, 20)
    w = sanitize(single_file(*torch_vae(vae_config(LTX2_ENC, LTX2_DEC, "reflect"), 20)[:1], dec), "lightricks")
    vae = VideoVAE.from_weights(w, cfg, parts=("decoder",))
    _, latent = inputs(4)
    outs = {}
    for t in (0.05, 0.5):
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(7))  # ltx-core's first draw
        with torch.no_grad():
            ref = dec(latent, torch.tensor([t]), torch.Generator().manual_seed(7))
        outs[t] = vae.decode(video_mx(latent), t, noise=video_mx(noise))
        assert rel_err(to_torch_layout(outs[t]), ref) < TOL
    assert rel_err(outs[0.5], outs[0.05]) > 100 * TOL  # the timestep is really used
    other = vae.decode(video_mx(latent), 0.05, noise=mx.zeros((1, 2, 2, 2, C)))
    assert rel_err(other, outs[0.05]) > 10 * TOL  # and so is the noise


def test_tiled_decode_matches_ltx_core(ltx2):
    _, _, dec, vae = ltx2
    _, latent = inputs(5, lat=(3, 3, 3))
    tiling = TilingConfig(SpatialTilingConfig(64, 32), TemporalTilingConfig(16, 8))
    with torch.no_grad():
        chunks_ref = list(dec.tiled_decode(latent, tiling))
        full_ref = dec(latent)
    chunks = list(vae.iter_decode_tiled(video_mx(latent), 64, 32, 16, 8))
    assert [c.shape[1] for c in chunks] == [c.shape[2] for c in chunks_ref if c.shape[2]]
    ref = torch.cat(chunks_ref, dim=2)
    out = vae.decode_tiled(video_mx(latent), 64, 32, 16, 8)
    assert out.shape == (1, 17, 96, 96, 3)
    assert rel_err(to_torch_layout(out), ref) < TOL
    assert rel_err(ref, full_ref) > 100 * TOL  # tiles really differ from one full decode


def test_bf16_tiled_decode_and_encode_match_ltx_core_bf16(ltx2):
    """The pipelines' setting (ltx-pipelines' ledger builds the VAE in bf16): our VAE loaded in bf16, tiled
    decode and encode, against ltx-core's in bf16 and in float32: our error against float32 stays within twice
    ltx-core's own bf16 error plus a floor; outputs are float32 latents / bf16 frames."""
    cfg, enc, dec, _ = ltx2
    vae = VideoVAE.from_weights(sanitize(single_file(enc, dec), "lightricks"), cfg, dtype=mx.bfloat16)
    assert vae.dtype == mx.bfloat16
    video, _ = inputs(6)
    _, latent = inputs(5, lat=(3, 3, 3))
    tiling = TilingConfig(SpatialTilingConfig(64, 32), TemporalTilingConfig(16, 8))
    with torch.no_grad():
        refs32 = torch.cat(list(dec.tiled_decode(latent, tiling)), dim=2), enc(video)
        dec16, enc16 = copy.deepcopy(dec).to(torch.bfloat16), copy.deepcopy(enc).to(torch.bfloat16)
        refs16 = torch.cat(list(dec16.tiled_decode(latent.bfloat16(), tiling)), dim=2).float(), enc16(video.bfloat16())
    x = vae.decode_tiled(video_mx(latent), 64, 32, 16, 8)
    z = vae.encode(video_mx(video))
    assert z.dtype == mx.float32 and vae.decode(video_mx(latent)).dtype == mx.bfloat16
    for out, ref32, ref16 in zip((x, z), refs32, refs16):
        bound = 2 * rel_err(ref16.float(), ref32) + 1e-2
        assert rel_err(to_torch_layout(out), ref32) < bound
        assert rel_err(to_torch_layout(out), ref16.float()) < bound
    assert rel_err(to_torch_layout(vae.decode_tiled(video_mx(latent.flip(2)), 64, 32, 16, 8)), refs32[0]) > 0.3


def test_diffusers_layout_matches_diffusers():
    # LTX-2.3-shaped diffusers config: last downsample keeps the width, mixed upsample factors/types
    cfg = dict(
        in_channels=3,
        out_channels=3,
        latent_channels=C,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_block_out_channels=(8, 16, 16, 32),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True,) * 4,
        decoder_spatio_temporal_scaling=(True,) * 4,
        decoder_inject_noise=(False,) * 5,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
        upsample_residual=(False,) * 4,
        upsample_factor=(2, 2, 1, 2),
        timestep_conditioning=False,
        patch_size=4,
        encoder_causal=True,
        decoder_causal=False,
        encoder_spatial_padding_mode="zeros",
        decoder_spatial_padding_mode="zeros",
    )
    ref = AutoencoderKLLTX2Video(**cfg).eval()
    randomize_(ref, 30, fan_in=True)
    mean, std = _stats(31)
    with torch.no_grad():
        ref.latents_mean.copy_(mean)
        ref.latents_std.copy_(std)
    w = {k: mx.array(v.float().numpy()) for k, v in ref.state_dict().items()}
    vae = VideoVAE.from_weights(sanitize(w, "diffusers"), dict(ref.config))
    video, latent = inputs(6)
    m, s = mean.view(1, -1, 1, 1, 1), std.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        z_ref = (ref.encode(video).latent_dist.mean - m) / s  # diffusers returns the raw latent
        x_ref = ref.decode(latent * s + m).sample
    assert rel_err(to_torch_layout(vae.encode(video_mx(video))), z_ref) < TOL
    assert rel_err(to_torch_layout(vae.decode(video_mx(latent))), x_ref) < TOL


def test_stale_spacetodepth_width_in_config_still_loads():
    # LTX-2.3 weights (last compress_all_res keeps 64 channels) with the LTX-2 block list, which
    # declares x2 there: widths come from the weights, so it loads and reproduces ltx-core.
    cfg = vae_config(LTX23_ENC, LTX23_DEC, "zeros")
    enc, dec = torch_vae(cfg, 40)
    stale = copy.deepcopy(cfg)
    stale["vae"]["encoder_blocks"][7] = ["compress_all_res", {"multiplier": 2}]
    stale["vae"]["decoder_blocks"][5] = ["compress_all", {"multiplier": 2}]
    vae = VideoVAE.from_weights(sanitize(single_file(enc, dec), "lightricks"), stale)
    assert (
        vae.encoder.down_blocks[7].group == 8 and vae.encoder.down_blocks[8].res_blocks[0].conv1.weight.shape[0] == 64
    )
    video, latent = inputs(8)
    with torch.no_grad():
        z_ref, x_ref = enc(video), dec(latent)
    assert rel_err(to_torch_layout(vae.encode(video_mx(video))), z_ref) < TOL
    assert rel_err(to_torch_layout(vae.decode(video_mx(latent))), x_ref) < TOL


def test_inconsistent_checkpoint_names_the_block(ltx2):
    cfg, enc, dec, _ = ltx2
    w = sanitize(single_file(enc, dec), "lightricks")
    bad = dict(w)
    bad["encoder.down_blocks.3.conv.weight"] = w["encoder.down_blocks.3.conv.weight"][..., :8]
    with pytest.raises(WeightsError, match=r"down_blocks\.3"):
        VideoVAE.from_weights(bad, cfg)
    bad = dict(w)
    bad["decoder.up_blocks.2.res_blocks.0.conv1.weight"] = mx.zeros((8, 3, 3, 3, 8))
    with pytest.raises(WeightsError, match=r"up_blocks\.2"):
        VideoVAE.from_weights(bad, cfg)
    wrong_depth = copy.deepcopy(cfg)
    wrong_depth["vae"]["encoder_blocks"][4] = _res(2)
    with pytest.raises(WeightsError, match=r"down_blocks\.4"):
        VideoVAE.from_weights(w, wrong_depth)


def test_strict_loading_names_the_key(ltx2):
    cfg, enc, dec, _ = ltx2
    w = sanitize(single_file(enc, dec), "lightricks")
    key = "encoder.down_blocks.0.res_blocks.0.conv2.bias"
    missing = {k: v for k, v in w.items() if k != key}
    with pytest.raises(WeightsError, match=key):
        VideoVAE.from_weights(missing, cfg)
    with pytest.raises(WeightsError, match="decoder.up_blocks.0.extra.weight"):
        VideoVAE.from_weights({**w, "decoder.up_blocks.0.extra.weight": mx.zeros((2,))}, cfg)
    key = "decoder.up_blocks.0.res_blocks.0.conv2.weight"
    with pytest.raises(WeightsError, match=key):
        VideoVAE.from_weights({**w, key: w[key][:, :2]}, cfg)


def test_frame_count_must_be_1_plus_8k(ltx2):
    vae = ltx2[3]
    with pytest.raises(ValueError, match="frames"):
        vae.encode(mx.zeros((1, 8, 64, 64, 3)))


def test_load_video_vae_from_single_file(tmp_path, ltx2):
    cfg, enc, dec, vae = ltx2
    path = tmp_path / "ltx-2-tiny.safetensors"
    save_safetensors(path, single_file(enc, dec), metadata={"config": json.dumps(cfg), "model_version": "2.0"})
    dec_only = load_video_vae(str(path), parts=("decoder",))
    assert "encoder" not in dec_only
    latent = video_mx(inputs(9)[1])
    assert rel_err(dec_only.decode(latent), vae.decode(latent)) < 1e-6


@pytest.mark.parametrize("mode", ["frames", "taps", "stacked"])
@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_conv3d_modes_match_ltx_core(mode, flavour, ltx2, monkeypatch):
    """Every CONV3D_MODE decodes (non-causal frame padding) and encodes (causal) as ltx-core, with the LTX-2
    decoder's reflect and LTX-2.3's zero spatial padding."""
    import mlx_video.ltx2.video_vae as vv

    if flavour == "ltx2":
        cfg, enc, dec, vae = ltx2
    else:
        cfg = vae_config(LTX23_ENC, LTX23_DEC, "zeros")
        enc, dec = torch_vae(cfg, 10)
        vae = VideoVAE.from_weights(sanitize(single_file(enc, dec), "lightricks"), cfg)
    video, latent = inputs(7)
    with torch.no_grad():
        z_ref, x_ref = enc(video), dec(latent)
    monkeypatch.setattr(vv, "CONV3D_MODE", mode)
    assert rel_err(to_torch_layout(vae.decode(video_mx(latent))), x_ref) < TOL
    assert rel_err(to_torch_layout(vae.encode(video_mx(video))), z_ref) < TOL
    monkeypatch.setattr(vv, "CONV3D_MODE", "bogus")
    with pytest.raises(ValueError, match="unknown conv3d mode"):
        vae.decode(video_mx(latent))


def test_conv3d_formulations_match_mx_conv3d():
    """The formulations behind the modes against mx.conv3d on the padded input (frame groups, causal and centred
    replicate padding, zero spatial padding done by the 2-D convolutions)."""
    from mlx_video.nn.conv import conv3d_replicate_taps, conv3d_stacked_taps, conv3d_summed_taps

    x = mx.random.normal((2, 6, 5, 7, 4), key=mx.random.key(1))
    w = mx.random.normal((3, 3, 3, 3, 4), key=mx.random.key(2))
    assert rel_err(conv3d_summed_taps(x, w, max_out_bytes=200), mx.conv3d(x, w)) < 1e-5  # in frame groups
    zero = ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0))
    for lead in (0, 1, 2):
        padded = mx.concatenate([x[:, :1]] * lead + [x] + [x[:, -1:]] * (2 - lead), axis=1)
        ref = mx.conv3d(mx.pad(padded, zero), w)
        assert rel_err(conv3d_replicate_taps(x, w, lead, (1, 1)), ref) < 1e-5
        assert rel_err(conv3d_stacked_taps(padded, w, (1, 1)), ref) < 1e-5
        assert rel_err(conv3d_replicate_taps(mx.pad(x, zero), w, lead), ref) < 1e-5
    assert rel_err(conv3d_replicate_taps(x, w, 0, (1, 1)), conv3d_replicate_taps(x, w, 2, (1, 1))) > 0.1
    with pytest.raises(ValueError, match="lead"):
        conv3d_replicate_taps(x, w, 3)


def test_decode_frames_is_to_uint8_of_the_decode(ltx2):
    """The pipeline's device-side uint8 conversion per temporal chunk gives to_uint8 of the float decode."""
    import numpy as np

    from mlx_video.io.images import to_uint8
    from mlx_video.ltx2.pipelines import LTX2Components, decode_frames, decode_video

    _, _, _, vae = ltx2
    _, latent = inputs(8, lat=(9, 2, 2))  # 65 frames: more than one temporal chunk with the default tiling
    comps = LTX2Components(None, vae)
    got = decode_frames(comps, video_mx(latent) * 3)  # large values: clipping on both ends
    want = to_uint8(np.array(decode_video(comps, video_mx(latent) * 3)[0]))
    assert got.dtype == np.uint8 and got.shape == (65, 64, 64, 3)
    np.testing.assert_array_equal(got, want)
