"""Audio-to-video (pipeline a2vid) against ltx-pipelines 1.0.0 ``A2VidPipelineTwoStage``, end to end on the tiny
components of tests/test_ltx2_pipelines.py (same weights both sides, through our sanitize + strict loaders),
with an audio encoder, injected noise and contexts, at 128x192 (non-square), 17 frames.

The reference side is ``A2VidPipelineTwoStage.__call__``'s body with the tiny modules: the official
``decode_audio_from_file`` on the same WAV file (start time and max duration as the official CLI passes them),
``encode_audio`` with ltx-core's ``AudioProcessor``, ``combined_image_conditionings``, ``denoise_video_only``
(audio mask 0, noise scale 0) with ``multi_modal_guider_denoising_func`` (audio guider default, no negative
audio context) then ``simple_denoising_func``, ``upsample_video``, the decoder; the returned audio is the input.
Per-step latents (video and audio) are compared through the stepper on both sides.
"""

from __future__ import annotations

import types
import wave

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.model.audio_vae import AudioEncoderConfigurator
from ltx_core.model.audio_vae import encode_audio as ref_encode_audio
from ltx_core.model.upsampler import upsample_video as ref_upsample_video
from ltx_core.types import AudioLatentShape, VideoPixelShape
from ltx_pipelines.utils.args import ImageConditioningInput
from ltx_pipelines.utils.constants import STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import (
    combined_image_conditionings,
    denoise_video_only,
    multi_modal_guider_denoising_func,
    simple_denoising_func,
)
from ltx_pipelines.utils.media_io import decode_audio_from_file
from ltx_pipelines.utils.samplers import euler_denoising_loop

from mlx_video.io.audio import AudioError, read_audio
from mlx_video.io.weights import load_strict
from mlx_video.ltx2 import audio_vae as av
from mlx_video.ltx2.denoise import TextContext
from mlx_video.ltx2.pipelines import AudioCondition, ImageCondition, LTX2Components, LTXSettings, decode_video, generate
from tests import test_ltx2_pipelines as base
from tests.oracles import randomize_, rel_err
from tests.test_ltx2_pipelines import (
    AF,
    ANCHOR_STRENGTH,
    AUDIO_CFG,
    AZ,
    FPS,
    FRAMES,
    GUIDE_FRAME,
    GUIDE_STRENGTH,
    TOL,
    VG,
    H,
    NoiseBank,
    W,
    contexts,
    pixels,
    to_ref_audio,
    to_ref_video,
)

parts, images = base.parts, base.images  # the tiny components and the two PNGs (module fixtures)
STEPS, START, DURATION = 2, 0.3, FRAMES / FPS  # the official CLI's default max duration: the clip's length


def write_wav(path, rate: int, seconds: float, channels: int = 2, seed: int = 0):
    g = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = np.stack([0.4 * np.sin(2 * np.pi * (220 + 330 * c) * t) for c in range(channels)], 1)
    x = np.clip(x + 0.1 * g.standard_normal(x.shape), -1, 1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((x * 32767).astype("<i2").tobytes())
    return str(path)


@pytest.fixture(scope="module")
def encoders(parts):
    """ltx-core AudioEncoder and ours, same random weights, sharing the decoder's per-channel statistics."""
    ref, _, _ = parts
    enc = randomize_(AudioEncoderConfigurator.from_config(AUDIO_CFG).eval(), 8, fan_in=True)
    stats = {k: ref.adec.per_channel_statistics.get_buffer(k) for k in ("std-of-means", "mean-of-means")}
    w = base.audio_vae_file(enc, stats, "encoder")
    ours = load_strict(
        av.AudioEncoder(av.AudioVAEArgs.from_config(AUDIO_CFG)), av.sanitize(w, "lightricks", "encoder"), "enc"
    )
    return enc, ours


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("a2v") / "in.wav", 16000, 1.5)


def run_reference(ref, models, ref_enc, ctx, paths, audio_path, bank, monkeypatch, steps_out):
    """A2VidPipelineTwoStage.__call__ with the tiny modules, float32 and injected noise. Returns the
    (video, audio) latents per stage, the decoded video, the returned audio and the encoded audio latent."""
    (t1, _), (t2, _) = models
    (vp, ap), (vn, _) = [(torch.from_numpy(v), torch.from_numpy(a)) for v, a in ctx]
    comp, noiser, stage = base.reference_setup(monkeypatch, bank)
    Recording = base.recording_stepper(steps_out)

    stepper, finals = Recording(), []

    def loop(denoise_fn):
        def fn(sigmas, video_state, audio_state, stepper):
            vs, as_ = euler_denoising_loop(sigmas, video_state, audio_state, stepper, denoise_fn)
            finals.append(as_.latent)
            return vs, as_

        return fn

    images = [
        ImageConditioningInput(paths[0], 0, ANCHOR_STRENGTH, 0),
        ImageConditioningInput(paths[1], GUIDE_FRAME, GUIDE_STRENGTH, 0),
    ]
    p = MultiModalGuiderParams(
        cfg_scale=VG.cfg_scale,
        stg_scale=VG.stg_scale,
        stg_blocks=list(VG.stg_blocks),
        rescale_scale=VG.rescale_scale,
        modality_scale=VG.modality_scale,
    )
    with torch.no_grad():
        decoded = decode_audio_from_file(audio_path, "cpu", START, DURATION)
        encoded = ref_encode_audio(decoded, ref_enc)
        frames = AudioLatentShape.from_duration(batch=1, duration=FRAMES / FPS, channels=AZ, mel_bins=AF).frames
        encoded = encoded[:, :, :frames]
        stage.update(k=1, draws=0)
        shape1 = VideoPixelShape(batch=1, frames=FRAMES, width=W // 2, height=H // 2, fps=FPS)
        conds = combined_image_conditionings(images, H // 2, W // 2, ref.enc, torch.float32, "cpu")
        den1 = multi_modal_guider_denoising_func(
            MultiModalGuider(params=p, negative_context=vn),
            MultiModalGuider(params=MultiModalGuiderParams()),
            vp,
            ap,
            t1,
        )
        sig = LTX2Scheduler().execute(steps=STEPS).float()
        vs = denoise_video_only(
            shape1, conds, noiser, sig, stepper, loop(den1), comp, torch.float32, "cpu", initial_audio_latent=encoded
        )
        stages = [(vs.latent, finals[-1])]
        up = ref_upsample_video(vs.latent[:1], ref.enc, ref.ups)
        stage.update(k=2, draws=0)
        shape2 = VideoPixelShape(batch=1, frames=FRAMES, width=W, height=H, fps=FPS)
        conds = combined_image_conditionings(images, H, W, ref.enc, torch.float32, "cpu")
        s2 = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
        vs = denoise_video_only(
            shape2,
            conds,
            noiser,
            s2,
            stepper,
            loop(simple_denoising_func(vp, ap, t2)),
            comp,
            torch.float32,
            "cpu",
            noise_scale=s2[0],
            initial_video_latent=up,
            initial_audio_latent=encoded,
        )
        stages.append((vs.latent, finals[-1]))
        video = ref.dec(vs.latent)
    return stages, video, decoded.waveform.squeeze(0), decoded.sampling_rate, encoded


def run_ours(ours, models, our_enc, ctx, paths, audio_path, bank, steps_out=None, monkeypatch=None, **kw):
    (_, m1), (_, m2) = models
    comps = LTX2Components(m1, ours.vae, ours.adec, ours.voc, ours.ups, stage2_transformer=lambda: m2)
    comps.audio_encoder = our_enc
    if steps_out is not None:
        base.record_our_steps(monkeypatch, steps_out)
    wav, rate = read_audio(audio_path, START, DURATION)
    s = LTXSettings("a2vid", height=H, width=W, num_frames=FRAMES, fps=FPS, steps=STEPS, video_guidance=VG, image_crf=0)
    images = kw.pop(
        "images",
        [
            ImageCondition(pixels(paths[0]), 0, ANCHOR_STRENGTH),
            ImageCondition(pixels(paths[1]), GUIDE_FRAME, GUIDE_STRENGTH),
        ],
    )
    (vp, ap), (vn, an) = kw.pop("ctx", ctx)
    res = generate(
        comps,
        s,
        TextContext(mx.array(vp), mx.array(ap)),
        TextContext(mx.array(vn), mx.array(an)),
        images,
        noise=bank,
        audio=AudioCondition(wav, rate, START, DURATION),
        **kw,
    )
    return res, comps


def test_a2vid_matches_ltx_pipelines(parts, images, encoders, wav, monkeypatch):
    ref, ours, all_models = parts
    models = all_models["ltx2"]
    ctx = contexts("ltx2")
    bank = NoiseBank()
    ref_steps, our_steps = [], []
    stages, ref_video, ref_wave, ref_rate, encoded = run_reference(
        ref, models, encoders[0], ctx, images, wav, bank, monkeypatch, ref_steps
    )
    res, comps = run_ours(ours, models, encoders[1], ctx, images, wav, bank, our_steps, monkeypatch)
    # per step (video then audio at each Euler step, both stages): 2 + 3 steps
    assert len(our_steps) == len(ref_steps) == 2 * (STEPS + 3)
    # tokens both sides: video [1, T, C] (guiding tokens included), audio [1, t, z*F']
    errs = {
        "steps video": max(rel_err(np.array(o), r) for o, r in zip(our_steps[::2], ref_steps[::2])),
        "steps audio": max(rel_err(np.array(o), r) for o, r in zip(our_steps[1::2], ref_steps[1::2])),
    }
    errs["audio latent"] = rel_err(to_ref_audio(res.audio_latents), encoded)
    for k, ((ov, oa), (rv, ra)) in enumerate(zip(res.stage_latents, stages), 1):
        errs[f"stage{k} video"] = rel_err(to_ref_video(ov), rv)
        errs[f"stage{k} audio"] = rel_err(np.array(oa), ra)
    video = decode_video(comps, res.latents)
    errs["decoded video"] = rel_err(to_ref_video(video), ref_video)
    errs["returned audio"] = rel_err(res.audio.T, ref_wave)
    print("a2vid parity", {k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) < TOL, errs
    # the audio is held fixed: every stage ends on the encoded latent exactly
    for _, oa in res.stage_latents:
        np.testing.assert_array_equal(np.array(oa), np.array(res.audio_latents))
    assert res.sample_rate == ref_rate == 16000 and res.params["audio"]["audio_start_time"] == START


def test_a2vid_fails_on_a_planted_bug(parts, images, encoders, wav, monkeypatch):
    """The comparison catches the negative audio context in the uncond pass (the official audio guider has none,
    so its uncond pass sees the positive audio context)."""
    ref, ours, all_models = parts
    models = all_models["ltx2"]
    ctx = contexts("ltx2")
    bank = NoiseBank()
    stages, *_ = run_reference(ref, models, encoders[0], ctx, images, wav, bank, monkeypatch, [])
    import mlx_video.ltx2.pipelines as P

    real, negative_audio = P.TextContext, mx.array(ctx[1][1])
    monkeypatch.setattr(P, "TextContext", lambda v, a: real(v, negative_audio))  # the swap forgotten
    res, _ = run_ours(ours, models, encoders[1], ctx, images, wav, bank)
    err = rel_err(to_ref_video(res.stage_latents[0][0]), stages[0][0])
    assert err > 3 * TOL, err


@pytest.mark.parametrize("rate,channels", [(44100, 2), (22050, 1)])
def test_read_audio_matches_decode_audio_from_file(tmp_path, encoders, rate, channels):
    """Our reader = the official one (same samples, mono duplicated to stereo); the encoded latent of a 44.1 kHz
    file matches ltx-core's (torchaudio's resampler both sides)."""
    path = write_wav(tmp_path / "a.wav", rate, 1.2, channels, seed=rate)
    ref = decode_audio_from_file(path, "cpu", 0.25, 0.8)
    wave_, r = read_audio(path, 0.25, 0.8)
    assert r == rate and wave_.shape == (round(0.8 * rate), 2)
    ref_w = ref.waveform[0].numpy()
    np.testing.assert_allclose(wave_.T, np.broadcast_to(ref_w, (2, ref_w.shape[1])), atol=1e-6)
    if channels == 2:
        enc, ours = encoders
        with torch.no_grad():
            want = ref_encode_audio(ref, enc)
        comps = types.SimpleNamespace(audio_encoder=ours)
        from mlx_video.ltx2.pipelines import encode_audio

        got = encode_audio(comps, AudioCondition(wave_, r), want.shape[2])
        assert rel_err(to_ref_audio(got), want) < TOL


def test_a2vid_bad_inputs(parts, encoders, tmp_path):
    from PIL import Image

    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    with pytest.raises(AudioError, match="no audio stream|cannot read audio"):
        read_audio(png)
    short = write_wav(tmp_path / "short.wav", 16000, 0.2)
    with pytest.raises(AudioError, match="no audio from 5 s"):
        read_audio(short, 5.0)
    _, ours, models = parts
    (_, m1), _ = models["ltx2"]
    comps = LTX2Components(m1, ours.vae, upsampler=ours.ups, audio_encoder=encoders[1])
    ctx = TextContext(mx.zeros((1, 5, 16)), mx.zeros((1, 5, 16)))
    s = LTXSettings("a2vid", height=H, width=W, num_frames=FRAMES, steps=1, video_guidance=dict(stg_blocks=(1,)))
    w, r = read_audio(short)
    with pytest.raises(ValueError, match="audio lasts 0.200 s"):
        generate(comps, s, ctx, ctx, audio=AudioCondition(w, r))
    with pytest.raises(ValueError, match="a2vid needs an audio input"):
        generate(comps, s, ctx, ctx)
    with pytest.raises(ValueError, match="takes no audio"):
        generate(comps, LTXSettings("distilled", height=H, width=W, num_frames=FRAMES), ctx, audio=AudioCondition(w, r))
    with pytest.raises(ValueError, match="leave audio guidance unset"):
        LTXSettings("a2vid", audio_guidance=dict(cfg_scale=7.0)).validate()


tiny_cli = base.tiny_cli


def test_cli_a2vid_writes_the_given_audio(tiny_cli, encoders, images, tmp_path, monkeypatch):
    import av as pyav

    import mlx_video.cli.ltx2 as lcli

    run, seen = tiny_cli
    load = lcli.load_components

    def with_encoder(*a):
        comps = load(*a)
        comps.audio_encoder = encoders[1]
        return comps

    monkeypatch.setattr(lcli, "load_components", with_encoder)
    audio = write_wav(tmp_path / "in.wav", 16000, 2.0)
    out = tmp_path / "a2v.mp4"
    common = ["--pipeline", "a2vid", "--height", "128", "--width", "128", "--num-frames", "9", "--steps", "1"]
    r = run(*common, "--stg-blocks", "1", "--audio", audio, "--audio-start-time", "0.5", "--output-path", str(out))
    assert r.exit_code == 0, r.output
    assert seen["variant"] == "dev" and seen["lora"] == (0.0, 1.0) and seen["negative"] is not None
    with pyav.open(str(out)) as f:
        assert {s.type for s in f.streams} == {"video", "audio"} and f.streams.audio[0].rate == 16000
        meta = __import__("json").loads(f.metadata["comment"])
    assert meta["audio"]["path"] == audio and meta["audio"]["audio_start_time"] == 0.5
    assert meta["audio"]["audio_max_duration"] == 9 / 24
    bad = tmp_path / "bad.mp4"
    for args, msg in (
        (["--audio", images[0]], "has no audio stream"),
        (["--audio", audio, "--audio-start-time", "1.9"], "audio lasts 0.100 s"),
        ([], "needs --audio"),
    ):
        r = run(*common, *args, "--output-path", str(bad))
        assert r.exit_code == 2 and msg in r.output and r.output.count("\n") == 1, r.output
    r = run("--audio", audio, "--output-path", str(bad))
    assert r.exit_code == 2 and "--audio is for --pipeline a2vid" in r.output
    assert not bad.exists()
