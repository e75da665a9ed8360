"""Keyframe interpolation (pipeline keyframes) and retake (pipelines retake / retake-distilled) against
ltx-pipelines 1.0.0 ``KeyframeInterpolationPipeline`` and ``RetakePipeline``, end to end on the tiny components of
tests/test_ltx2_pipelines.py (same weights both sides through our sanitize + strict loaders), injected noise and
contexts, non-square sizes.

Keyframes: the reference is the dev-two-stage driver of tests/test_ltx2_pipelines.py with
``image_conditionings_by_adding_guiding_latent`` in place of ``combined_image_conditionings``, which is exactly
where ``KeyframeInterpolationPipeline.__call__`` differs from ``TI2VidTwoStagesPipeline.__call__`` (both keyframes,
frame 0 included, become guiding tokens), 128x192, 17 frames.

Retake: the body of ``RetakePipeline.__call__`` with the tiny modules on an mp4 (64x96, 17 frames, 24 fps, AAC
audio at 44.1 kHz) written here: the official ``get_videostream_metadata``, ``_encode_video_for_retake``
(``load_video_conditioning``), ``decode_audio_from_file`` + ``_encode_audio_for_retake``, ``TemporalRegionMask``,
``noise_video_state`` / ``noise_audio_state``, ``euler_denoising_loop`` with ``multi_modal_guider_denoising_func``
(dev) or ``simple_denoising_func`` (distilled), the decoder and ``decode_audio``. Ours reads the same file with
:func:`mlx_video.io.video.read_video` and :func:`mlx_video.io.audio.read_audio`.
Per-step latents (video and audio tokens) are compared through the stepper on both sides.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.model.audio_vae import decode_audio as ref_decode_audio
from ltx_core.types import VideoPixelShape
from ltx_pipelines import retake as R
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import (
    image_conditionings_by_adding_guiding_latent,
    multi_modal_guider_denoising_func,
    noise_audio_state,
    noise_video_state,
    simple_denoising_func,
)
from ltx_pipelines.utils.media_io import decode_audio_from_file, get_videostream_metadata
from ltx_pipelines.utils.samplers import euler_denoising_loop

import mlx_video.ltx2.pipelines as P
from mlx_video.io.audio import read_audio
from mlx_video.io.video import VideoError, read_video, video_info, write_video
from mlx_video.ltx2.denoise import TextContext
from mlx_video.ltx2.pipelines import (
    AudioCondition,
    ImageCondition,
    LTX2Components,
    LTXSettings,
    RetakeSource,
    check_retake,
    decode_video,
    generate,
    plan_stages,
)
from tests import test_ltx2_a2vid as a2v
from tests import test_ltx2_pipelines as base
from tests.oracles import rel_err
from tests.test_ltx2_pipelines import (
    AG,
    ANCHOR_STRENGTH,
    FPS,
    FRAMES,
    GUIDE_FRAME,
    GUIDE_STRENGTH,
    TOL,
    VG,
    C,
    H,
    NoiseBank,
    W,
    contexts,
    pixels,
    to_ref_audio,
    to_ref_video,
)

parts, images, encoders, tiny_cli = base.parts, base.images, a2v.encoders, base.tiny_cli  # module fixtures
KF_STEPS, RT_STEPS = 2, 3
RH, RW, START, END = 64, 96, 0.2, 0.5  # retake source size; range over latent frames 1 and 2 (of 0..2)


def _recording(monkeypatch, ref_steps, our_steps):
    """Record every Euler step's output: ltx-core's stepper (reference) and ours (tokens [1, T, C] both)."""

    base.record_our_steps(monkeypatch, our_steps)
    return base.recording_stepper(ref_steps)


def _step_errors(our_steps, ref_steps) -> dict:
    assert len(our_steps) == len(ref_steps) > 0
    return {
        "steps video": max(rel_err(np.array(o), r) for o, r in zip(our_steps[::2], ref_steps[::2])),
        "steps audio": max(rel_err(np.array(o), r) for o, r in zip(our_steps[1::2], ref_steps[1::2])),
    }


# ----------------------------------------------------------------------------- keyframes


def run_keyframes(ours, models, ctx, paths, bank):
    comps = base.ours_comps("keyframes", ours, models)
    s = LTXSettings(
        "keyframes",
        height=H,
        width=W,
        num_frames=FRAMES,
        fps=FPS,
        steps=KF_STEPS,
        video_guidance=VG,
        audio_guidance=AG,
        image_crf=0,
    )
    keyframes = [
        ImageCondition(pixels(paths[0]), 0, ANCHOR_STRENGTH),
        ImageCondition(pixels(paths[1]), GUIDE_FRAME, GUIDE_STRENGTH),
    ]
    (vp, ap), (vn, an) = ctx
    pos, neg = TextContext(mx.array(vp), mx.array(ap)), TextContext(mx.array(vn), mx.array(an))
    return generate(comps, s, pos, neg, keyframes, noise=bank), comps


def keyframes_errors(parts, images, monkeypatch, planted=None) -> dict:
    ref, ours, all_models = parts
    models, ctx, bank = all_models["ltx2"], contexts("ltx2"), NoiseBank()
    ref_steps, our_steps = [], []
    monkeypatch.setattr(base, "EulerDiffusionStep", _recording(monkeypatch, ref_steps, our_steps))
    monkeypatch.setattr(base, "combined_image_conditionings", image_conditionings_by_adding_guiding_latent)
    stages, ref_video, ref_audio = base.run_reference(
        "dev-two-stage", ref, models, ctx, images, bank, KF_STEPS, monkeypatch
    )
    if planted is not None:
        planted()
    res, comps = run_keyframes(ours, models, ctx, images, bank)
    errs = _step_errors(our_steps, ref_steps)
    for k, ((ov, oa), (rv, ra)) in enumerate(zip(res.stage_latents, stages), 1):
        errs[f"stage{k} video"] = rel_err(to_ref_video(ov), rv)
        errs[f"stage{k} audio"] = rel_err(to_ref_audio(oa), ra)
    errs["decoded video"] = rel_err(to_ref_video(decode_video(comps, res.latents)), ref_video)
    errs["decoded audio"] = rel_err(res.audio.T, ref_audio.waveform)
    return errs, res


def test_keyframes_matches_ltx_pipelines(parts, images, monkeypatch):
    errs, res = keyframes_errors(parts, images, monkeypatch)
    print("keyframes parity", {k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) < TOL, errs
    assert len(res.stage_latents) == 2 and res.params["pipeline"] == "keyframes"
    st = plan_stages(LTXSettings("keyframes", height=H, width=W, num_frames=FRAMES, steps=KF_STEPS))
    assert [s.guided for s in st] == [True, False] and (st[0].height, st[1].height) == (H // 2, H)


def test_keyframes_fails_on_a_planted_bug(parts, images, monkeypatch):
    """The comparison catches the keyframes' strengths dropped (every keyframe held fully clean)."""
    real = P.encode_images

    def strength_one(prepared, *a, **k):
        return real([(x, f, 1.0) for x, f, _ in prepared], *a, **k)

    errs, _ = keyframes_errors(
        parts, images, monkeypatch, lambda: monkeypatch.setattr(P, "encode_images", strength_one)
    )
    print("keyframes planted bug", {k: f"{v:.1e}" for k, v in errs.items()})
    assert errs["stage1 video"] > 10 * TOL, errs


def test_keyframes_defaults():
    s = LTXSettings("keyframes").resolved("2.3")
    assert (s.height, s.width, s.steps, s.lora_strengths) == (1024, 1536, 30, (0.0, 1.0))
    assert s.video_guidance.stg_blocks == (28,) and s.variant == "dev" and s.negative_text == P.DEFAULT_NEGATIVE_PROMPT
    with pytest.raises(ValueError, match="multiple of 64"):
        LTXSettings("keyframes", height=480).validate()


# ----------------------------------------------------------------------------- retake


@pytest.fixture(scope="module")
def source_mp4(tmp_path_factory):
    """An mp4 of moving gradients (64x96, 17 frames, 24 fps) with a 44.1 kHz stereo AAC track."""
    d = tmp_path_factory.mktemp("retake")
    y, x = np.mgrid[0:RH, 0:RW]
    frames = np.stack(
        [np.stack([(x * 2 + 9 * i) % 256, (y * 3 + 5 * i) % 256, (x + y + 13 * i) % 256], -1) for i in range(FRAMES)]
    ).astype(np.uint8)
    t = np.arange(int(44100 * FRAMES / FPS)) / 44100
    audio = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32)
    with_audio = write_video(d / "src.mp4", frames, FPS, audio=audio, sample_rate=44100)
    silent = write_video(d / "silent.mp4", frames, FPS)
    return str(with_audio), str(silent)


def run_reference_retake(ref, model, ref_enc, ctx, path, bank, distilled, regen, steps, monkeypatch, stepper_cls):
    """``RetakePipeline.__call__``'s body with the tiny modules, float32 and injected noise."""
    (vp, ap), (vn, an) = [(torch.from_numpy(v), torch.from_numpy(a)) for v, a in ctx]
    comp, noiser, stage = base.reference_setup(monkeypatch, bank)
    stage["k"] = 1  # one stage: its draws are stage1.video, stage1.audio
    regen_v, regen_a = regen
    with torch.no_grad():
        fps, n, w, h = get_videostream_metadata(path)
        shape = VideoPixelShape(batch=1, frames=n, width=w, height=h, fps=fps)
        init_v = R._encode_video_for_retake(ref.enc, path, shape, torch.float32, "cpu")
        vconds = [R.TemporalRegionMask(START if regen_v else 0.0, END if regen_v else 0.0, fps)]
        audio_in = decode_audio_from_file(path, "cpu")
        init_a, aconds = None, []
        if audio_in is not None:
            init_a = R._encode_audio_for_retake(
                ref_enc, audio_in.waveform.squeeze(0), audio_in.sampling_rate, shape, torch.float32
            )
            aconds = [R.TemporalRegionMask(START if regen_a else 0.0, END if regen_a else 0.0, fps)]
        if distilled:
            sigmas = torch.tensor(DISTILLED_SIGMA_VALUES).float()
            den = simple_denoising_func(vp, ap, model)
        else:
            sigmas = LTX2Scheduler().execute(steps=steps).float()

            def p(g):
                return MultiModalGuiderParams(
                    cfg_scale=g.cfg_scale,
                    stg_scale=g.stg_scale,
                    stg_blocks=list(g.stg_blocks),
                    rescale_scale=g.rescale_scale,
                    modality_scale=g.modality_scale,
                )

            den = multi_modal_guider_denoising_func(
                MultiModalGuider(params=p(VG), negative_context=vn),
                MultiModalGuider(params=p(AG), negative_context=an),
                v_context=vp,
                a_context=ap,
                transformer=model,
            )
        vs, vt = noise_video_state(shape, noiser, vconds, comp, torch.float32, "cpu", initial_latent=init_v)
        as_, at = noise_audio_state(shape, noiser, aconds, comp, torch.float32, "cpu", initial_latent=init_a)
        masks = (vs.denoise_mask.clone(), as_.denoise_mask.clone())
        vs, as_ = euler_denoising_loop(sigmas, vs, as_, stepper_cls(), den)
        vs, as_ = vt.unpatchify(vt.clear_conditioning(vs)), at.unpatchify(at.clear_conditioning(as_))
        video = ref.dec(vs.latent)
        audio = ref_decode_audio(as_.latent, ref.adec, ref.voc)
    return dict(
        video_latent=vs.latent, audio_latent=as_.latent, video=video, audio=audio, init=(init_v, init_a), masks=masks
    )


def run_ours_retake(ours, model, our_enc, ctx, path, bank, distilled, regen, steps):
    info = video_info(path)
    audio = AudioCondition(*read_audio(path)) if info.has_audio else None
    src = RetakeSource(read_video(path), info.fps, START, END, audio, *regen)
    comps = LTX2Components(model, ours.vae, ours.adec, ours.voc, audio_encoder=our_enc)
    if distilled:
        s = LTXSettings("retake-distilled")
    else:
        s = LTXSettings("retake", steps=steps, video_guidance=VG, audio_guidance=AG)
    (vp, ap), (vn, an) = ctx
    pos, neg = TextContext(mx.array(vp), mx.array(ap)), TextContext(mx.array(vn), mx.array(an))
    return generate(comps, s, pos, None if distilled else neg, noise=bank, source=src), comps


CASES = {  # name: (distilled, (regenerate_video, regenerate_audio), source with audio)
    "dev": (False, (True, True), True),
    "distilled": (True, (True, True), True),
    "distilled, audio kept": (True, (True, False), True),
    "distilled, video kept": (True, (False, True), True),
    "distilled, no source audio": (True, (True, True), False),
}


def retake_errors(case, parts, encoders, source_mp4, monkeypatch, planted=None):
    ref, ours, all_models = parts
    distilled, regen, with_audio = CASES[case]
    flavour = "ltx23" if distilled else "ltx2"
    (t1, m1), _ = all_models[flavour]
    ctx, bank = contexts(flavour), NoiseBank()
    path = source_mp4[0 if with_audio else 1]
    ref_steps, our_steps = [], []
    cls = _recording(monkeypatch, ref_steps, our_steps)
    r = run_reference_retake(ref, t1, encoders[0], ctx, path, bank, distilled, regen, RT_STEPS, monkeypatch, cls)
    if planted is not None:
        planted()
    res, comps = run_ours_retake(ours, m1, encoders[1], ctx, path, bank, distilled, regen, RT_STEPS)
    errs = _step_errors(our_steps, ref_steps)
    errs["video latent"] = rel_err(to_ref_video(res.latents), r["video_latent"])
    errs["audio latent"] = rel_err(to_ref_audio(res.audio_latents), r["audio_latent"])
    errs["decoded video"] = rel_err(to_ref_video(decode_video(comps, res.latents)), r["video"])
    errs["decoded audio"] = rel_err(res.audio.T, r["audio"].waveform)
    return errs, res, r


@pytest.mark.parametrize("case", list(CASES))
def test_retake_matches_ltx_pipelines(case, parts, encoders, source_mp4, monkeypatch):
    errs, res, r = retake_errors(case, parts, encoders, source_mp4, monkeypatch)
    print(f"retake {case} parity", {k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) < TOL, errs
    assert res.frames.shape == (FRAMES, RH, RW, 3) and res.fps == FPS
    # kept tokens end exactly on the encoded source (mask 0: clean in, clean out), on both sides
    init_v, init_a = r["init"]
    keep = r["masks"][0].numpy().reshape(-1) == 0
    assert keep.any() and keep.all() == (not CASES[case][1][0])  # (0, 0): every video token kept
    ours_tokens = np.array(res.latents).reshape(-1, C)
    src_tokens = init_v[0].permute(1, 2, 3, 0).reshape(-1, C).numpy()
    np.testing.assert_allclose(ours_tokens[keep], src_tokens[keep], rtol=1e-4, atol=1e-5)
    if not CASES[case][1][1]:  # audio kept whole: the result's audio latent is the encoded source audio
        assert rel_err(to_ref_audio(res.audio_latents), init_a) < TOL
    assert res.params["retake"]["start_time"] == START and res.params["pipeline"].startswith("retake")


@pytest.mark.parametrize("case", ["dev", "distilled"])
def test_retake_fails_on_a_planted_bug(case, parts, encoders, source_mp4, monkeypatch):
    """The comparison catches a region test that drops the tokens straddling START (t0 >= start instead of
    t1 > start: latent frame 1, pixel frames [1, 9) / 24 s, is then kept)."""

    def buggy(positions, start, end):
        t = np.asarray(positions)[:, 0]
        return mx.array(((t[..., 0] >= start) & (t[..., 0] < end))[..., None].astype(np.float32))

    errs, _, _ = retake_errors(
        case, parts, encoders, source_mp4, monkeypatch, lambda: monkeypatch.setattr(P, "time_region_mask", buggy)
    )
    print(f"retake {case} planted bug", {k: f"{v:.1e}" for k, v in errs.items()})
    assert errs["video latent"] > 10 * TOL, errs


def test_read_video_matches_load_video_conditioning(source_mp4):
    """Our reader + video_pixels = ltx-pipelines' load_video_conditioning (frame cap, resize + crop to another
    aspect, [-1, 1]); video_info = get_videostream_metadata."""
    from ltx_pipelines.utils.media_io import load_video_conditioning

    path = source_mp4[0]
    info = video_info(path)
    assert (info.fps, info.frames, info.width, info.height, info.has_audio) == (*get_videostream_metadata(path), True)
    assert not video_info(source_mp4[1]).has_audio
    for h, w, cap in ((RH, RW, FRAMES), (64, 64, 9), (96, 160, 5)):
        ref = load_video_conditioning(path, h, w, cap, torch.float32, "cpu")  # [1, C, F, H, W]
        ours = P.video_pixels(read_video(path, cap), h, w)
        assert ours.shape == (cap, h, w, 3)
        np.testing.assert_allclose(ours, ref[0].numpy().transpose(1, 2, 3, 0), atol=1e-5)


def test_retake_bad_inputs(parts, encoders, source_mp4, tmp_path):
    for args, msg in (
        ((17, 64, 96, 24.0, 0.5, 0.2), "0 <= START < END"),
        ((17, 64, 96, 24.0, 0.2, 0.9), "0 <= START < END <= 0.708333 s"),
        ((17, 64, 96, 24.0, -0.1, 0.2), "0 <= START"),
        ((5, 64, 96, 24.0, 0.0, 0.1), "5 frames; retake needs at least 9"),
        ((20, 64, 96, 24.0, 0.0, 0.1), "8k\\+1 \\(cut it to 17\\)"),
        ((17, 60, 96, 24.0, 0.0, 0.1), "multiples of 32"),
    ):
        with pytest.raises(ValueError, match=msg):
            check_retake(*args)
    wav = a2v.write_wav(tmp_path / "a.wav", 16000, 0.5)
    with pytest.raises(VideoError, match="has no video stream"):
        video_info(wav)
    with pytest.raises(VideoError, match="cannot read video"):
        read_video(tmp_path / "missing.mp4")
    _, ours, models = parts
    (_, m1), _ = models["ltx23"]
    comps = LTX2Components(m1, ours.vae, audio_encoder=encoders[1])
    ctx = TextContext(mx.zeros((1, 5, 32)), mx.zeros((1, 5, 16)))
    src = RetakeSource(read_video(source_mp4[1]), 24.0, START, END)
    with pytest.raises(ValueError, match="needs a source video"):
        generate(comps, LTXSettings("retake-distilled"), ctx)
    with pytest.raises(ValueError, match="takes no video"):
        generate(comps, LTXSettings("distilled"), ctx, source=src)
    with pytest.raises(ValueError, match="takes no images"):
        generate(
            comps,
            LTXSettings("retake-distilled"),
            ctx,
            images=[ImageCondition(np.zeros((8, 8, 3), np.uint8))],
            source=src,
        )
    with pytest.raises(ValueError, match="keeps the source video's size 96x64"):
        generate(comps, LTXSettings("retake-distilled", height=128), ctx, source=src)
    with pytest.raises(ValueError, match="outside|START"):
        generate(comps, LTXSettings("retake-distilled"), ctx, source=RetakeSource(src.frames, 24.0, 0.6, 0.8))


def test_retake_defaults():
    s = LTXSettings("retake").resolved("2.3")
    assert s.steps == 40 and s.video_guidance.stg_blocks == (28,) and s.negative_text == "" and s.variant == "dev"
    d = LTXSettings("retake-distilled").resolved("2")
    assert d.variant == "distilled" and not d.guided and d.negative_text is None
    assert [
        len(st.sigmas) - 1 for st in plan_stages(LTXSettings("retake-distilled", height=64, width=96, num_frames=17))
    ] == [8]
    st = plan_stages(LTXSettings("retake", height=64, width=96, num_frames=17))
    assert len(st) == 1 and (st[0].height, st[0].width, st[0].guided) == (64, 96, True)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture()
def cli(tiny_cli, encoders, monkeypatch):
    import mlx_video.cli.ltx2 as lcli

    run, seen = tiny_cli
    load = lcli.load_components

    def with_encoder(*a):
        seen["need_encoder"] = a[-1]
        comps = load(*a)
        comps.audio_encoder = encoders[1]
        return comps

    monkeypatch.setattr(lcli, "load_components", with_encoder)
    return run, seen


def _streams(path):
    import json

    import av as pyav

    with pyav.open(str(path)) as f:
        v = f.streams.video[0]
        out = ({s.type for s in f.streams}, (v.codec_context.width, v.codec_context.height))
        return (*out, sum(1 for _ in f.decode(video=0)), json.loads(f.metadata["comment"]))


def test_cli_keyframes(cli, images, tmp_path):
    run, seen = cli
    out = tmp_path / "kf.mp4"
    args = ["--pipeline", "keyframes", "--image", f"{images[0]}:0", "--image", f"{images[1]}:8:0.7"]
    r = run(
        *args,
        "--height",
        "128",
        "--width",
        "192",
        "--num-frames",
        "9",
        "--steps",
        "1",
        "--stg-blocks",
        "1",
        "--output-path",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert seen["variant"] == "dev" and seen["lora"] == (0.0, 1.0) and seen["negative"] is not None
    kinds, size, frames, meta = _streams(out)
    assert kinds == {"video", "audio"} and size == (192, 128) and frames == 9 and meta["pipeline"] == "keyframes"
    assert [im["frame"] for im in meta["images"]] == [0, 8]


@pytest.mark.parametrize("distilled", [False, True])
def test_cli_retake(cli, source_mp4, tmp_path, distilled):
    run, seen = cli
    out = tmp_path / "rt.mp4"
    extra = ["--distilled"] if distilled else ["--steps", "1", "--stg-blocks", "1"]
    r = run(
        "--pipeline", "retake", "--video", source_mp4[0], "--retake", "0.2", "0.5", *extra, "--output-path", str(out)
    )
    assert r.exit_code == 0, r.output
    assert seen["variant"] == ("distilled" if distilled else "dev") and seen["need_encoder"]
    assert (seen["negative"] is None) == distilled and (distilled or seen["negative"] == "")
    kinds, size, frames, meta = _streams(out)
    assert kinds == {"video", "audio"} and size == (RW, RH) and frames == FRAMES
    assert meta["pipeline"] == ("retake-distilled" if distilled else "retake") and meta["retake"]["end_time"] == 0.5
    assert meta["retake"]["video"] == source_mp4[0] and meta["fps"] == FPS


def test_cli_retake_errors(cli, source_mp4, images, tmp_path):
    """Bad inputs: one line, exit 2, before any model runs (nothing resolved or loaded), no file."""
    run, seen = cli
    bad = tmp_path / "bad.mp4"
    short = write_video(tmp_path / "short.mp4", np.zeros((5, RH, RW, 3), np.uint8), FPS)
    odd = write_video(tmp_path / "odd.mp4", np.zeros((12, RH, RW, 3), np.uint8), FPS)
    wav = a2v.write_wav(tmp_path / "a.wav", 16000, 0.5)
    rt = ["--pipeline", "retake"]
    for args, msg in (
        ([*rt, "--video", source_mp4[0], "--retake", "0.5", "0.9"], "<= 0.708333 s (the video's length)"),
        ([*rt, "--video", source_mp4[0], "--retake", "0.4", "0.3"], "0 <= START < END"),
        ([*rt, "--video", str(short), "--retake", "0", "0.1"], "5 frames; retake needs at least 9"),
        ([*rt, "--video", str(odd), "--retake", "0", "0.1"], "needs 8k+1 (cut it to 9)"),
        ([*rt, "--video", wav, "--retake", "0", "0.1"], "has no video stream"),
        ([*rt, "--video", str(tmp_path / "none.mp4"), "--retake", "0", "0.1"], "cannot read video"),
        ([*rt, "--video", source_mp4[0]], "needs --video PATH and --retake START END"),
        ([*rt, "--video", source_mp4[0], "--retake", "0", "0.1", "--num-frames", "9"], "drop --num-frames"),
        ([*rt, "--video", source_mp4[0], "--retake", "0", "0.1", "--image", images[0]], "takes no images"),
        (["--video", source_mp4[0], "--retake", "0", "0.1"], "for --pipeline retake, not distilled"),
        (["--pipeline", "dev", "--distilled"], "--distilled is the retake switch"),
    ):
        seen.clear()
        r = run(*args, "--output-path", str(bad))
        assert r.exit_code == 2 and msg in r.output and r.output.count("\n") == 1, (args, r.output)
        assert "variant" not in seen, args
    assert not bad.exists()
