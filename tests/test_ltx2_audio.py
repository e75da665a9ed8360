"""Parity of the LTX-2 audio VAE, mel front end and vocoders with ltx-core 1.0.0 (and diffusers).

Tiny random models in the real checkpoint layouts ("lightricks" single-file keys, diffusers state
dicts), converted with our sanitize and loaded with load_strict; identical inputs; rel L2 errors.
torch is channels-first (B, C, T, F) / (B, C, samples); MLX is channels-last.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2 import audio_vae as av
from mlx_video.ltx2 import vocoder as vc
from tests.ltx_tiny import AMP, audio_vae_config, bwe_vocoder_config, vocoder_config
from tests.oracles import randomize_, rel_err

TOL = 1e-4
VOC_TOL = 3e-4

VAE_CFG = audio_vae_config(ch=16, z_channels=4, mel_bins=16, resolution=16, attn_resolutions=[8])

HIFI_CFG = vocoder_config([3, 5], [[1, 3, 5], [1, 2, 3]])

_AMP = dict(AMP, stereo=True, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]])
BWE_CFG = bwe_vocoder_config(16, 32, [2, 2], [4, 4], **_AMP)


def _mx(t: torch.Tensor, *perm) -> mx.array:
    return mx.array((t.permute(*perm) if perm else t).detach().numpy())


def _cl(t: torch.Tensor) -> mx.array:  # (B, C, T, F) -> [B, T, F, C]
    return _mx(t, 0, 2, 3, 1)


def _weights(sd: dict, prefix: str = "") -> dict:
    return {prefix + k: mx.array(v.detach().numpy()) for k, v in sd.items()}


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------
# audio VAE
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae():
    """ltx-core decoder + encoder sharing per-channel statistics, exported as the single file does."""
    from ltx_core.model.audio_vae import AudioDecoderConfigurator, AudioEncoderConfigurator

    dec = randomize_(AudioDecoderConfigurator.from_config(VAE_CFG).eval(), 1, fan_in=True)
    enc = randomize_(AudioEncoderConfigurator.from_config(VAE_CFG).eval(), 2, fan_in=True)
    g = torch.Generator().manual_seed(3)
    stats = {"std-of-means": 0.5 + torch.rand(16, generator=g), "mean-of-means": 0.3 * torch.randn(16, generator=g)}
    with torch.no_grad():
        for m in (dec, enc):
            for k, v in stats.items():
                m.per_channel_statistics.get_buffer(k).copy_(v)
    sd = {f"audio_vae.per_channel_statistics.{k}": v for k, v in stats.items()}
    sd.update({f"audio_vae.decoder.{k}": v for k, v in dec.state_dict().items() if "per_channel" not in k})
    sd.update({f"audio_vae.encoder.{k}": v for k, v in enc.state_dict().items() if "per_channel" not in k})
    args = av.AudioVAEArgs.from_config(VAE_CFG)
    w = _weights(sd)
    mdec = load_strict(av.AudioDecoder(args), av.sanitize(w, "lightricks", "decoder"), "audio decoder")
    menc = load_strict(av.AudioEncoder(args), av.sanitize(w, "lightricks", "encoder"), "audio encoder")
    return dec, enc, mdec, menc, w


def test_decoder_matches_ltx_core(vae):
    dec, _, mdec, _, _ = vae
    z = _randn(1, 4, 5, 4, seed=10)  # (B, z, t, F')
    with torch.no_grad():
        ref = dec(z).permute(0, 2, 3, 1)  # [1, 17, 16, 2]
    out = mdec(_cl(z))
    assert out.shape == (1, 17, 16, 2)
    assert rel_err(out, ref) < TOL
    tokens = av.patchify(_cl(z))  # the transformer's [B, t, z*F'] layout, feature order (c, f)
    assert np.allclose(np.array(tokens), z.permute(0, 2, 1, 3).reshape(1, 5, 16).numpy())
    assert rel_err(mdec(tokens), ref) < TOL
    z2 = z.clone()
    z2[:, :, -1] += 1.0  # one latent frame
    assert rel_err(mdec(_cl(z2)), ref) > 100 * TOL


def test_encoder_matches_ltx_core(vae):
    _, enc, _, menc, _ = vae
    mel = _randn(1, 2, 17, 16, seed=11)
    with torch.no_grad():
        ref = enc(mel).permute(0, 2, 3, 1)
    out = menc(_cl(mel))
    assert out.shape == (1, 5, 4, 4)
    assert rel_err(out, ref) < TOL
    mel2 = mel.clone()
    mel2[:, 1, 8] += 1.0  # one frame of the right channel
    assert rel_err(menc(_cl(mel2)), ref) > 100 * TOL


def test_audio_vae_diffusers_layout():
    """Second opinion: diffusers' AutoencoderKLLTX2Audio (statistics applied outside the decoder)."""
    from diffusers import AutoencoderKLLTX2Audio

    ref_vae = AutoencoderKLLTX2Audio(
        base_channels=16,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        attn_resolutions=(8,),
        resolution=16,
        latent_channels=4,
        mid_block_add_attention=True,
        mel_bins=16,
    )
    randomize_(ref_vae.eval(), 4, fan_in=True)
    with torch.no_grad():
        ref_vae.latents_std.copy_(0.5 + torch.rand(16, generator=torch.Generator().manual_seed(5)))
    args = av.AudioVAEArgs.from_config(dict(ref_vae.config))
    w = _weights(ref_vae.state_dict())
    dec = load_strict(av.AudioDecoder(args), av.sanitize(w, "diffusers", "decoder"))
    enc = load_strict(av.AudioEncoder(args), av.sanitize(w, "diffusers", "encoder"))
    mean, std = ref_vae.latents_mean, ref_vae.latents_std
    tokens = _randn(1, 5, 16, seed=12)
    with torch.no_grad():
        ref = ref_vae.decode((tokens * std + mean).reshape(1, 5, 4, 4).permute(0, 2, 1, 3)).sample
    assert rel_err(dec(mx.array(tokens.numpy())), ref.permute(0, 2, 3, 1)) < TOL
    mel = _randn(1, 2, 17, 16, seed=13)
    with torch.no_grad():
        h = ref_vae.encoder(mel)[:, :4].permute(0, 2, 1, 3).reshape(1, 5, 16)
    assert rel_err(av.patchify(enc(_cl(mel))), (h - mean) / std) < TOL


def test_mel_front_end_matches_audio_processor():
    from ltx_core.model.audio_vae import AudioProcessor
    from ltx_core.types import Audio

    proc = AudioProcessor(target_sample_rate=16000, mel_bins=64, mel_hop_length=160, n_fft=1024)
    for rate, n in ((16000, 3200), (44100, 4410)):
        wav = 0.3 * _randn(1, 2, n, seed=rate)
        ref = proc.waveform_to_mel(Audio(waveform=wav, sampling_rate=rate)).permute(0, 2, 3, 1)
        out = av.waveform_to_mel(_mx(wav, 0, 2, 1), input_rate=rate)
        assert out.shape == tuple(ref.shape)
        assert rel_err(out, ref) < TOL
    wav2 = wav.clone()
    wav2[..., 2000:2100] += 0.3
    assert rel_err(av.waveform_to_mel(_mx(wav2, 0, 2, 1), input_rate=44100), ref) > 100 * TOL


# ------------------------------------------------------------------------------------------------
# vocoders
# ------------------------------------------------------------------------------------------------


def _scale_conv_post(gen: torch.nn.Module, conv: torch.nn.Module, run, target: float) -> None:
    """Random BigVGAN stacks saturate the final clamp; rescale ``conv`` (bias-free) so its output
    has std ``target`` on the test input (keeps the comparison sensitive)."""
    seen = []
    h = conv.register_forward_hook(lambda m, i, o: seen.append(float(o.std())))
    with torch.no_grad():
        run()
        conv.weight.mul_(target / seen[-1])
    h.remove()


def test_hifigan_vocoder_matches_ltx_core():
    from ltx_core.model.audio_vae import VocoderConfigurator

    ref_voc = randomize_(VocoderConfigurator.from_config(HIFI_CFG).eval(), 1, fan_in=True)
    voc = vc.vocoder_from_config(HIFI_CFG)
    assert isinstance(voc, vc.Vocoder) and voc.sample_rate == 24000
    load_strict(voc, vc.sanitize(_weights(ref_voc.state_dict(), "vocoder."), "lightricks"), "vocoder")
    mel = _randn(1, 2, 6, 64, seed=20)
    with torch.no_grad():
        ref = ref_voc(mel).permute(0, 2, 1)
    out = voc(_cl(mel))
    assert out.shape == (1, 36, 2) and out.dtype == mx.float32
    assert rel_err(out, ref) < VOC_TOL
    assert rel_err(voc(_cl(mel.flip(1))), ref) > 100 * VOC_TOL  # stereo channel order matters


def test_amp_snake_vocoder_matches_ltx_core():
    """BigVGAN generator with plain Snake (alpha only) blocks and tanh, built directly."""
    from ltx_core.model.audio_vae import Vocoder as RefVocoder

    cfg = {
        **_AMP,
        "activation": "snake",
        "use_tanh_at_final": True,
        "use_bias_at_final": True,
        "upsample_initial_channel": 16,
        "upsample_rates": [2, 2],
        "upsample_kernel_sizes": [4, 4],
    }
    ref_voc = RefVocoder(
        resblock_kernel_sizes=[3],
        upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4],
        resblock_dilation_sizes=[[1, 3, 5]],
        upsample_initial_channel=16,
        resblock="AMP1",
        activation="snake",
        use_tanh_at_final=True,
        use_bias_at_final=True,
    )
    randomize_(ref_voc.eval(), 6, fan_in=True)
    mel = _randn(1, 2, 9, 64, seed=21)
    _scale_conv_post(ref_voc, ref_voc.conv_post, lambda: ref_voc(mel), 0.5)
    voc = load_strict(
        vc.Vocoder(vc.VocoderArgs.from_config(cfg)),
        vc.sanitize(_weights(ref_voc.state_dict(), "vocoder."), "lightricks"),
    )
    with torch.no_grad():
        ref = ref_voc(mel).permute(0, 2, 1)
    assert rel_err(voc(_cl(mel)), ref) < VOC_TOL


def _bwe_reference(ref, mel, vocoder_conv, bwe_conv, resampler_cls, **resampler_kw):
    """Seeded weights, a positive mel filterbank, the (non-checkpoint) resampler filter restored,
    and both final convs scaled out of saturation."""
    randomize_(ref.eval(), 2, fan_in=True)
    with torch.no_grad():
        ref.resampler.filter.copy_(resampler_cls(ratio=3, window_type="hann", **resampler_kw).filter)
        ref.mel_stft.mel_basis.abs_()
    _scale_conv_post(ref.vocoder, vocoder_conv(ref.vocoder), lambda: ref.vocoder(mel), 0.4)
    _scale_conv_post(ref.bwe_generator, bwe_conv(ref.bwe_generator), lambda: ref(mel), 0.3)
    return ref


def test_bwe_vocoder_matches_ltx_core():
    from ltx_core.model.audio_vae import VocoderConfigurator
    from ltx_core.model.audio_vae.vocoder import UpSample1d

    mel = _randn(1, 2, 23, 64, seed=22)  # 92 samples at "16 kHz": not a multiple of the hop (padded)
    ref_voc = _bwe_reference(
        VocoderConfigurator.from_config(BWE_CFG),
        mel,
        lambda g: g.conv_post,
        lambda g: g.conv_post,
        UpSample1d,
        persistent=False,
    )
    sd = ref_voc.state_dict()
    assert "mel_stft.stft_fn.inverse_basis" in sd  # stored, never used: sanitize drops it
    voc = vc.vocoder_from_config(BWE_CFG)
    assert isinstance(voc, vc.VocoderWithBWE) and voc.sample_rate == 48000
    load_strict(voc, vc.sanitize(_weights(sd, "vocoder."), "lightricks"), "vocoder")
    with torch.no_grad():
        ref = ref_voc(mel).permute(0, 2, 1)
        ref1 = ref_voc.vocoder(mel).permute(0, 2, 1)
    assert float((ref.abs() >= 1).float().mean()) < 0.2  # mostly unclamped: a sensitive comparison
    x = _cl(mel)
    assert rel_err(voc.vocoder(x), ref1) < VOC_TOL
    out = voc(x)
    assert out.shape == (1, 276, 2)
    assert rel_err(out, ref) < VOC_TOL
    # the bandwidth-extension residual and the causal-STFT mel both matter
    skip_only = mx.clip(voc.resampler(voc.vocoder(x)), -1, 1)
    assert rel_err(skip_only, ref) > 100 * VOC_TOL
    voc.mel_stft.mel_basis = voc.mel_stft.mel_basis * 2
    assert rel_err(voc(x), ref) > 100 * VOC_TOL


def test_bwe_vocoder_matches_diffusers():
    """Second opinion: diffusers' LTX2VocoderWithBWE through the diffusers key layout."""
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE, UpSample1d

    cfg = dict(
        hidden_channels=16,
        upsample_kernel_sizes=[4, 4],
        upsample_factors=[2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        final_act_fn="clamp",
        bwe_hidden_channels=32,
        bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4],
        bwe_upsample_factors=[6, 5, 2, 2, 2],
        bwe_resnet_kernel_sizes=[3],
        bwe_resnet_dilations=[[1, 3, 5]],
    )
    mel = _randn(1, 2, 23, 64, seed=23)
    ref_voc = _bwe_reference(
        LTX2VocoderWithBWE(**cfg), mel, lambda g: g.conv_out, lambda g: g.conv_out, UpSample1d, persistent=False
    )
    voc = vc.vocoder_from_config(dict(ref_voc.config))
    load_strict(voc, vc.sanitize(_weights(ref_voc.state_dict()), "diffusers"), "vocoder")
    with torch.no_grad():
        ref = ref_voc(mel).permute(0, 2, 1)
    assert float((ref.abs() >= 1).float().mean()) < 0.2
    assert rel_err(voc(_cl(mel)), ref) < VOC_TOL


# ------------------------------------------------------------------------------------------------
# configs and strict loading
# ------------------------------------------------------------------------------------------------


def test_config_parsing_real_sizes():
    ltx2 = vc.VocoderArgs.from_config({"resblock": "1", "stereo": True})
    assert ltx2.upsample_rates == (6, 5, 2, 2, 2) and ltx2.final_activation == "tanh"
    bwe = vc.BWEVocoderArgs.from_config(bwe_vocoder_config(1536, 512))
    assert bwe.vocoder.final_activation == "clamp" and bwe.vocoder.output_sampling_rate == 16000
    assert bwe.bwe.final_activation is None and bwe.output_sampling_rate == 48000
    args = av.AudioVAEArgs.from_config(
        {
            "audio_vae": {
                "model": {"params": {"ddconfig": {"mid_block_add_attention": False, "causality_axis": "height"}}},
                "preprocessing": {"mel": {"n_mel_channels": 64}},
            }
        }
    )
    assert (args.ch, args.z_channels, args.mel_bins, args.mid_block_add_attention) == (128, 8, 64, False)
    with pytest.raises(ValueError):
        vc.sanitize({}, "comfy")
    with pytest.raises(ValueError):
        av.sanitize({}, "lightricks", "vocoder")


def _assert_strict(model, weights: dict, key: str, what: str):
    """Missing, unused and mis-shaped ``key`` each raise WeightsError naming it."""
    bad = [
        {k: v for k, v in weights.items() if k != key},
        {**weights, key.rsplit(".", 1)[0] + ".extra_weight": weights[key]},
        {**weights, key: mx.zeros(weights[key].shape[:-1] + (weights[key].shape[-1] + 1,))},
    ]
    names = [key, key.rsplit(".", 1)[0] + ".extra_weight", key]
    for w, name in zip(bad, names):
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(model, w, what)


def test_strict_loading_names_the_key(vae):
    _, _, _, _, w = vae
    args = av.AudioVAEArgs.from_config(VAE_CFG)
    dec_w = av.sanitize(w, "lightricks", "decoder")
    _assert_strict(av.AudioDecoder(args), dec_w, "up.1.block.0.conv1.conv.weight", "audio decoder")
    _assert_strict(av.AudioDecoder(args), dec_w, "per_channel_statistics.std", "audio decoder")
    # an unknown statistic in the checkpoint is surfaced, not dropped
    with pytest.raises(WeightsError, match="per_channel_statistics.channel"):
        load_strict(
            av.AudioDecoder(args),
            av.sanitize({**w, "audio_vae.per_channel_statistics.channel": mx.zeros((16,))}, "lightricks", "decoder"),
        )
    voc = vc.vocoder_from_config(BWE_CFG)
    from mlx.utils import tree_flatten

    voc_w = dict(tree_flatten(voc.parameters()))
    _assert_strict(voc, voc_w, "bwe_generator.resblocks.2.acts1.0.downsample.filter", "vocoder")
    _assert_strict(voc, voc_w, "mel_stft.forward_basis", "vocoder")


def test_bf16_decode_and_vocoder_match_ltx_core_bf16(vae):
    """The pipelines' setting (ltx-pipelines builds both in bf16): our bf16 decoder and HiFi-GAN, loaded through
    sanitize + load_strict(dtype=bf16), against ltx-core's in bf16 and in float32. Our bf16 error against the
    float32 result stays within twice ltx-core's own bf16 error plus a floor."""
    from ltx_core.model.audio_vae import VocoderConfigurator

    dec, _, _, _, w = vae
    ref_voc = randomize_(VocoderConfigurator.from_config(HIFI_CFG).eval(), 1, fan_in=True)
    args = av.AudioVAEArgs.from_config(VAE_CFG)
    mdec = load_strict(av.AudioDecoder(args), av.sanitize(w, "lightricks", "decoder"), "decoder", dtype=mx.bfloat16)
    voc = vc.vocoder_from_config(HIFI_CFG)
    load_strict(voc, vc.sanitize(_weights(ref_voc.state_dict(), "vocoder."), "lightricks"), "vocoder", mx.bfloat16)
    z, mel = _randn(1, 4, 5, 4, seed=12), _randn(1, 2, 6, 64, seed=21)
    with torch.no_grad():
        refs32 = dec(z).permute(0, 2, 3, 1), ref_voc(mel).permute(0, 2, 1)
        refs16 = (
            dec.to(torch.bfloat16)(z.bfloat16()).float().permute(0, 2, 3, 1),
            ref_voc.to(torch.bfloat16)(mel.bfloat16()).float().permute(0, 2, 1),
        )
    dec.float(), ref_voc.float()
    outs = mdec(_cl(z)), voc(_cl(mel))
    for out, ref32, ref16 in zip(outs, refs32, refs16):
        assert out.dtype == mx.bfloat16 and out.shape == ref32.shape
        bound = 2 * rel_err(ref16, ref32) + 1e-2
        assert rel_err(out.astype(mx.float32), ref32) < bound
        assert rel_err(out.astype(mx.float32), ref16) < bound
    assert rel_err(mdec(_cl(z.flip(2))).astype(mx.float32), refs32[0]) > 10 * (
        2 * rel_err(*refs16[:1], refs32[0]) + 1e-2
    )
