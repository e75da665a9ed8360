"""IC-LoRA (pipeline ic-lora) against ltx-pipelines 1.0.0 ``ICLoraPipeline``, end to end on the tiny components
of tests/test_ltx2_pipelines.py, at 128x192 (non-square), 17 frames, injected noise and contexts.

The reference side is ``ICLoraPipeline.__call__``'s body with the tiny modules: stage 1 on the distilled
transformer with a random IC-LoRA fused by ltx-core's ``apply_loras`` (ours: the same file in ltx-core's key
format, merged by :func:`mlx_video.ltx2.loading.with_ic_loras`), its own ``_create_conditionings`` (the anchor
and guide images, then the control video read from an mp4 by ``load_video_conditioning`` and wrapped with
``ConditioningItemAttentionStrengthWrapper``: a pixel mask times the strength, or the scalar strength),
``denoise_audio_video`` + ``simple_denoising_func``; stage 2 (unless skipped) on the transformer without the
IC-LoRA with the images only; the decoders. Per-step latents (video, audio) through the stepper on both sides.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.loader.fuse_loras import _prepare_deltas
from ltx_core.loader.primitives import LoraStateDictWithStrength, StateDict
from ltx_core.model.audio_vae import decode_audio as ref_decode_audio
from ltx_core.model.upsampler import upsample_video as ref_upsample_video
from ltx_core.types import VideoPixelShape
from ltx_pipelines.ic_lora import ICLoraPipeline
from ltx_pipelines.utils.args import ImageConditioningInput
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import combined_image_conditionings, denoise_audio_video, simple_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop
from safetensors.torch import save_file

from mlx_video.io.video import read_video_frames, write_video
from mlx_video.io.weights import WeightsError
from mlx_video.ltx2.denoise import TextContext
from mlx_video.ltx2.loading import with_ic_loras
from mlx_video.ltx2.pipelines import ControlVideo, ImageCondition, LTX2Components, LTXSettings, decode_video, generate
from tests import test_ltx2_pipelines as base
from tests.oracles import rel_err
from tests.test_ltx2_pipelines import (
    ANCHOR_STRENGTH,
    FPS,
    FRAMES,
    GUIDE_FRAME,
    GUIDE_STRENGTH,
    TOL,
    H,
    NoiseBank,
    W,
    contexts,
    pixels,
    to_ref_audio,
    to_ref_video,
)

parts, images = base.parts, base.images  # the tiny components and the two PNGs (module fixtures)
FLAVOUR, LORA_STRENGTH, CONTROL_STRENGTH = "ltx23", 0.8, 0.9
CASES = {  # name: (skip_stage_2, conditioning_attention_strength, pixel mask, reference_downscale_factor, size)
    "two-stage, mask x 0.7": (False, 0.7, True, 1, (H, W)),
    "skip stage 2, full attention": (True, 1.0, False, 1, (H, W)),
    "downscale factor 2, mask x 0.6": (True, 0.6, True, 2, (2 * H, 2 * W)),
}


def mask_for(case):
    """A random pixel mask at stage 1's size (the official CLI loads it at height // 2, width // 2)."""
    h, w = CASES[case][4]
    return np.random.default_rng(41).uniform(0, 1, (FRAMES, h // 2, w // 2)).astype(np.float32)


@pytest.fixture(scope="module")
def fresh():
    """A distilled transformer pair of its own (ours gets the IC-LoRA merged in place)."""
    return base._transformers(FLAVOUR, 30)


@pytest.fixture(scope="module")
def files(tmp_path_factory, fresh):
    """The IC-LoRA (ltx-core key format, rank 4, on every block's attention and feed-forward) and the control
    video: an mp4 of 20 frames at 80x120 (another aspect than the output), and a random pixel mask."""
    d = tmp_path_factory.mktemp("iclora")
    ref, _ = fresh
    g = torch.Generator().manual_seed(40)
    lora = {}
    for k, v in ref.velocity_model.state_dict().items():
        if k.endswith(("attn1.to_q.weight", "attn1.to_v.weight", "attn2.to_k.weight", "ff.net.2.weight")):
            name = k[: -len(".weight")]
            lora[f"diffusion_model.{name}.lora_A.weight"] = 0.3 * torch.randn(4, v.shape[1], generator=g)
            lora[f"diffusion_model.{name}.lora_B.weight"] = 0.3 * torch.randn(v.shape[0], 4, generator=g)
    paths = {k: str(d / f"ic{k}.safetensors") for k in (1, 2)}
    for k, p in paths.items():
        save_file(lora, p, metadata={"reference_downscale_factor": str(k)})
    rng = np.random.default_rng(41)
    y, x = np.mgrid[0:80, 0:120]
    frames = np.stack(
        [np.stack([(x * 2 + 9 * t) % 256, (y * 3) % 256, (x + y + 5 * t) % 256], -1) for t in range(20)]
    ).astype(np.float32)
    frames = np.clip(frames + rng.normal(0, 15, frames.shape), 0, 255).astype(np.uint8)
    video = str(d / "control.mp4")
    write_video(video, frames, FPS)
    return paths, lora, video


def run_reference(ref, fresh, files, ctx, paths, bank, monkeypatch, case, steps_out):
    skip, cas, use_mask, factor, (H, W) = CASES[case]
    t1, _ = fresh
    _, lora, video = files
    mask = mask_for(case)
    # ltx-core's own delta (fuse_loras._prepare_deltas: strength * B @ A per weight; its apply_loras casts to bf16)
    lsd = [
        LoraStateDictWithStrength(
            StateDict({k[len("diffusion_model.") :]: v for k, v in lora.items()}, "cpu", 0, set()), LORA_STRENGTH
        )
    ]
    fused = {}
    for k, w in t1.velocity_model.state_dict().items():
        d = _prepare_deltas(lsd, k, torch.float32, "cpu") if k.endswith(".weight") else None
        fused[k] = w if d is None else w + d
    t1_lora = copy.deepcopy(t1)
    t1_lora.velocity_model.load_state_dict(fused)
    (vp, ap), _ = [(torch.from_numpy(v), torch.from_numpy(a)) for v, a in ctx]
    comp, noiser, stage = base.reference_setup(monkeypatch, bank)
    Recording = base.recording_stepper(steps_out)

    stepper = Recording()
    imgs = [
        ImageConditioningInput(paths[0], 0, ANCHOR_STRENGTH, 0),
        ImageConditioningInput(paths[1], GUIDE_FRAME, GUIDE_STRENGTH, 0),
    ]
    pipe = object.__new__(ICLoraPipeline)  # only its conditioning builders: no ledger, no weights
    pipe.dtype, pipe.device, pipe.reference_downscale_factor = torch.float32, "cpu", factor

    def loop(transformer):
        return lambda sigmas, vs, as_, stepper: euler_denoising_loop(
            sigmas, vs, as_, stepper, simple_denoising_func(vp, ap, transformer)
        )

    with torch.no_grad():
        stage.update(k=1, draws=0)
        conds = pipe._create_conditionings(
            images=imgs,
            video_conditioning=[(video, CONTROL_STRENGTH)],
            height=H // 2,
            width=W // 2,
            num_frames=FRAMES,
            video_encoder=ref.enc,
            conditioning_attention_strength=cas,
            conditioning_attention_mask=torch.from_numpy(mask)[None, None] if use_mask else None,
        )
        shape1 = VideoPixelShape(batch=1, frames=FRAMES, width=W // 2, height=H // 2, fps=FPS)
        sig = torch.tensor(DISTILLED_SIGMA_VALUES)
        vs, as_ = denoise_audio_video(shape1, conds, noiser, sig, stepper, loop(t1_lora), comp, torch.float32, "cpu")
        stages = [(vs.latent, as_.latent)]
        if not skip:
            up = ref_upsample_video(vs.latent[:1], ref.enc, ref.ups)
            stage.update(k=2, draws=0)
            conds = combined_image_conditionings(imgs, H, W, ref.enc, torch.float32, "cpu")
            shape2 = VideoPixelShape(batch=1, frames=FRAMES, width=W, height=H, fps=FPS)
            s2 = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
            vs, as_ = denoise_audio_video(
                shape2,
                conds,
                noiser,
                s2,
                stepper,
                loop(t1),
                comp,
                torch.float32,
                "cpu",
                noise_scale=s2[0],
                initial_video_latent=up,
                initial_audio_latent=as_.latent,
            )
            stages.append((vs.latent, as_.latent))
        video_out = ref.dec(vs.latent)
        audio_out = ref_decode_audio(as_.latent, ref.adec, ref.voc)
    return stages, video_out, audio_out


def run_ours(ours, m1, files, ctx, paths, bank, case, steps_out=None, monkeypatch=None, lora_strength=LORA_STRENGTH):
    skip, cas, use_mask, factor, (H, W) = CASES[case]
    loras, _, video = files
    lora_path, mask = loras[factor], mask_for(case)
    comps = LTX2Components(m1, ours.vae, ours.adec, ours.voc, ours.ups)
    with_ic_loras(comps, [(lora_path, lora_strength)])
    assert comps.reference_downscale_factor == factor
    if steps_out is not None:
        base.record_our_steps(monkeypatch, steps_out)
    s = LTXSettings(
        "ic-lora",
        height=H,
        width=W,
        num_frames=FRAMES,
        fps=FPS,
        image_crf=0,
        skip_stage_2=skip,
        conditioning_attention_strength=cas,
    )
    controls = [ControlVideo(read_video_frames(video, FRAMES), CONTROL_STRENGTH, mask if use_mask else None)]
    images = [
        ImageCondition(pixels(paths[0]), 0, ANCHOR_STRENGTH),
        ImageCondition(pixels(paths[1]), GUIDE_FRAME, GUIDE_STRENGTH),
    ]
    (vp, ap), _ = ctx
    res = generate(comps, s, TextContext(mx.array(vp), mx.array(ap)), None, images, noise=bank, controls=controls)
    comps.stage2_transformer()  # back to the stored weights for the next run
    return res, comps


@pytest.mark.parametrize("case", list(CASES))
def test_ic_lora_matches_ltx_pipelines(case, parts, images, fresh, files, monkeypatch):
    ref, ours, _ = parts
    ctx = contexts(FLAVOUR)
    bank = NoiseBank()
    ref_steps, our_steps = [], []
    stages, ref_video, ref_audio = run_reference(ref, fresh, files, ctx, images, bank, monkeypatch, case, ref_steps)
    res, comps = run_ours(ours, fresh[1], files, ctx, images, bank, case, our_steps, monkeypatch)
    n_steps = len(DISTILLED_SIGMA_VALUES) - 1 + (0 if CASES[case][0] else len(STAGE_2_DISTILLED_SIGMA_VALUES) - 1)
    assert len(our_steps) == len(ref_steps) == 2 * n_steps
    errs = {
        "steps video": max(rel_err(np.array(o), r) for o, r in zip(our_steps[::2], ref_steps[::2])),
        "steps audio": max(rel_err(np.array(o), r) for o, r in zip(our_steps[1::2], ref_steps[1::2])),
    }
    assert len(res.stage_latents) == len(stages)
    for k, ((ov, oa), (rv, ra)) in enumerate(zip(res.stage_latents, stages), 1):
        errs[f"stage{k} video"] = rel_err(to_ref_video(ov), rv)
        errs[f"stage{k} audio"] = rel_err(to_ref_audio(oa), ra)
    errs["decoded video"] = rel_err(to_ref_video(decode_video(comps, res.latents)), ref_video)
    errs["decoded audio"] = rel_err(res.audio.T, ref_audio.waveform)
    print(f"ic-lora parity [{case}]", {k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) < TOL, errs
    skip, *_, (h, w) = CASES[case]
    assert res.frames.shape == (FRAMES, h // 2 if skip else h, w // 2 if skip else w, 3)
    assert res.params["controls"][0]["strength"] == CONTROL_STRENGTH


def test_ic_lora_fails_on_planted_bugs(parts, images, fresh, files, monkeypatch):
    """The comparison catches the IC-LoRA merged at another strength, and the attention mask left out."""
    ref, ours, _ = parts
    ctx = contexts(FLAVOUR)
    case = "two-stage, mask x 0.7"
    stages, *_ = run_reference(ref, fresh, files, ctx, images, NoiseBank(), monkeypatch, case, [])
    res, _ = run_ours(ours, fresh[1], files, ctx, images, NoiseBank(), case, lora_strength=0.7)
    e_lora = rel_err(to_ref_video(res.stage_latents[0][0]), stages[0][0])
    import mlx_video.ltx2.denoise as D

    monkeypatch.setattr(D, "attention_bias", lambda m: None)
    res, _ = run_ours(ours, fresh[1], files, ctx, images, NoiseBank(), case)
    e_mask = rel_err(to_ref_video(res.stage_latents[0][0]), stages[0][0])
    print(f"planted: LoRA 0.7 for 0.8 -> {e_lora:.1e}; mask dropped -> {e_mask:.1e}")
    assert e_lora > 3 * TOL and e_mask > 3 * TOL, (e_lora, e_mask)


def test_ic_lora_bad_inputs(parts, fresh, files, tmp_path):
    _, ours, models = parts
    _, lora, video = files
    (_, m_other) = base._transformers("ltx2", 31)  # the LTX-2 flavour: other text widths
    wan_like = tmp_path / "wan.safetensors"
    save_file(
        {
            "blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 32),
            "blocks.0.self_attn.q.lora_B.weight": torch.zeros(32, 4),
        },
        str(wan_like),
    )
    with pytest.raises(WeightsError, match="wan.safetensors|LoRA"):
        with_ic_loras(LTX2Components(m_other, ours.vae), [(str(wan_like), 1.0)])
    wrong = tmp_path / "wrong.safetensors"
    save_file(
        {k: torch.zeros(v.shape[0] + (1 if "lora_B" in k else 0), v.shape[1]) for k, v in lora.items()}, str(wrong)
    )
    with pytest.raises(WeightsError, match="does not give the weight's shape"):
        with_ic_loras(LTX2Components(m_other, ours.vae), [(str(wrong), 1.0)])
    comps = LTX2Components(fresh[1], ours.vae, upsampler=ours.ups)
    ctx = TextContext(mx.zeros((1, 5, 32)), mx.zeros((1, 5, 16)))
    s = LTXSettings("ic-lora", height=H, width=W, num_frames=FRAMES)
    short = read_video_frames(video, 9)
    with pytest.raises(ValueError, match="control video 0 has 9 frames; the clip needs 17"):
        generate(comps, s, ctx, controls=[ControlVideo(short)])
    with pytest.raises(ValueError, match="ic-lora needs a control video"):
        generate(comps, s, ctx)
    with pytest.raises(ValueError, match="takes no control video"):
        generate(
            comps, LTXSettings("distilled", height=H, width=W, num_frames=FRAMES), ctx, controls=[ControlVideo(short)]
        )
    with pytest.raises(ValueError, match="for the ic-lora pipeline"):
        LTXSettings("distilled", skip_stage_2=True).validate()
    with pytest.raises(ValueError, match="no video stream"):
        wav = tmp_path / "a.wav"
        import wave

        with wave.open(str(wav), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000), f.writeframes(b"\0\0" * 1600)
        read_video_frames(wav)


tiny_cli = base.tiny_cli


def test_cli_ic_lora(tiny_cli, parts, files, tmp_path, monkeypatch):
    import av as pyav

    import mlx_video.cli.ltx2 as lcli
    import mlx_video.ltx2.loading as loading

    run, seen = tiny_cli
    _, ours, _ = parts
    loras, _, video = files
    lora_path = loras[1]
    (_, m) = base._transformers(FLAVOUR, 32)
    monkeypatch.setattr(lcli, "load_components", lambda *a: LTX2Components(m, ours.vae, ours.adec, ours.voc, ours.ups))
    monkeypatch.setattr(
        lcli, "check_ic_loras", lambda cfg, loras: loading.check_ic_loras({"transformer": asdict(m.args)}, loras)
    )
    out = tmp_path / "ic.mp4"
    common = ["--pipeline", "ic-lora", "--height", "128", "--width", "192", "--num-frames", "17"]
    r = run(*common, "--control_video", f"{video}:0.9", "--lora", f"{lora_path}:0.8", "--output-path", str(out))
    assert r.exit_code == 0, r.output
    with pyav.open(str(out)) as f:
        v = f.streams.video[0]
        assert {s.type for s in f.streams} == {"video", "audio"} and (
            v.codec_context.width,
            v.codec_context.height,
        ) == (
            192,
            128,
        )
        meta = __import__("json").loads(f.metadata["comment"])
    assert meta["controls"][0]["path"] == video and meta["controls"][0]["strength"] == 0.9
    assert meta["loras"][0]["strength"] == 0.8 and meta["pipeline"] == "ic-lora"
    out2 = tmp_path / "ic_half.mp4"
    r = run(
        *common,
        "--control_video",
        video,
        "--lora",
        lora_path,
        "--skip-stage-2",
        "--conditioning-attention-mask",
        video,
        "--conditioning-attention-strength",
        "0.5",
        "--output-path",
        str(out2),
    )
    assert r.exit_code == 0, r.output
    with pyav.open(str(out2)) as f:
        assert f.streams.video[0].codec_context.width == 96
    wan_like = tmp_path / "wan.safetensors"
    save_file(
        {
            "blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 32),
            "blocks.0.self_attn.q.lora_B.weight": torch.zeros(32, 4),
        },
        str(wan_like),
    )
    bad = tmp_path / "bad.mp4"
    for args, msg in (
        (["--control_video", video, "--lora", str(wan_like)], "an IC-LoRA for another model"),
        (["--control_video", video, "--lora", lora_path, "--num-frames", "25"], "has 20 frames; the clip needs 25"),
        (["--lora", lora_path], "needs --control_video"),
        (["--control_video", video], "needs --lora"),
    ):
        r = run(*common, *args, "--output-path", str(bad))
        assert r.exit_code == 2 and msg in r.output and r.output.count("\n") == 1, r.output
    r = run("--control_video", video, "--output-path", str(bad))
    assert r.exit_code == 2 and "for --pipeline ic-lora" in r.output
    assert not bad.exists()
