"""Transformer passes per guided step: ours against ltx-pipelines 1.0.0's ``multi_modal_guider_factory_denoising_func``
(``TI2VidTwoStagesPipeline``'s stage 1) for the official LTX-2 / LTX-2.3 dev defaults.

Each transformer call is recorded on both sides as its items: (step, text context positive / negative, perturbations,
video tokens, audio tokens). The item lists must be equal (same passes, same kinds, same order, same sizes);
``guidance_batch`` only changes how many items one call carries. Tiny random 2-block transformers (STG block = the
last one, as benchmarks/ltx2_distilled.py does for short models), 17 frames at 64x96, 3 steps, float32.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.guiders import create_multimodal_guider_factory
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.types import VideoPixelShape
from ltx_pipelines.utils import constants as official
from ltx_pipelines.utils.helpers import denoise_audio_video, multi_modal_guider_factory_denoising_func
from ltx_pipelines.utils.samplers import euler_denoising_loop

from mlx_video.ltx2 import denoise as denoise_mod
from mlx_video.ltx2.denoise import TextContext
from mlx_video.ltx2.pipelines import LTX2Components, LTXSettings, generate
from mlx_video.ltx2.transformer import LTXModel
from tests.oracles import rel_err
from tests.test_ltx2_pipelines import FPS, FRAMES, NoiseBank, _transformers, contexts, reference_setup, to_ref_video

H, W, STEPS = 64, 96, 3
KIND = {
    "SKIP_VIDEO_SELF_ATTN": "video_self_attn",
    "SKIP_AUDIO_SELF_ATTN": "audio_self_attn",
    "SKIP_A2V_CROSS_ATTN": "a2v_cross_attn",
    "SKIP_V2A_CROSS_ATTN": "v2a_cross_attn",
}
# (transformer flavour, model version, official PipelineParams, overrides of both guiders' params)
CASES = {
    "ltx2-dev": ("ltx2", "2", official.LTX_2_PARAMS, {}),
    "ltx23-dev": ("ltx23", "2.3", official.LTX_2_3_PARAMS, {}),
    "ltx23-skip-step": ("ltx23", "2.3", official.LTX_2_3_PARAMS, {"skip_step": 1}),
    "ltx23-audio-stg-only": ("ltx23", "2.3", official.LTX_2_3_PARAMS, {"video": {"stg_scale": 0.0}}),
}


@pytest.fixture(scope="module")
def models():
    return {f: _transformers(f, 10) for f in ("ltx2", "ltx23")}


def _params(params, overrides: dict):
    """The official (video, audio) guider params with the STG block moved to the tiny model's last block."""
    out = []
    for name, p in (("video", params.video_guider_params), ("audio", params.audio_guider_params)):
        kw = {k: v for k, v in overrides.items() if k not in ("video", "audio")} | overrides.get(name, {})
        out.append(replace(p, stg_blocks=[1], **kw))
    return out


def _perturbed(items) -> frozenset:
    return frozenset((k, None if b is None else tuple(b)) for k, b in items)


def official_items(ref, ctx, params, bank, monkeypatch):
    """Every item of every official transformer call: (sigma, context, perturbations, video tokens, audio tokens)."""
    (vp, ap), (vn, an) = [(torch.from_numpy(v), torch.from_numpy(a)) for v, a in ctx]
    comp, noiser, stage = reference_setup(monkeypatch, bank)
    stage.update(k=1, draws=0)
    items = []

    def call(video, audio, perturbations):
        tag = "positive" if torch.equal(video.context, vp) else "negative" if torch.equal(video.context, vn) else "?"
        b = video.latent.shape[0]
        per = perturbations.perturbations if perturbations is not None else [None] * b
        for cfg in per:
            kinds = [] if cfg is None else [(KIND[p.type.name], p.blocks) for p in cfg.perturbations]
            sigma = round(float(video.timesteps.max()), 6)
            items.append((sigma, tag, _perturbed(kinds), video.latent.shape[1], audio.latent.shape[1]))
        return ref(video=video, audio=audio, perturbations=perturbations)

    gv, ga = params
    den = multi_modal_guider_factory_denoising_func(
        create_multimodal_guider_factory(gv, vn), create_multimodal_guider_factory(ga, an), vp, ap, call
    )
    sig = LTX2Scheduler().execute(steps=STEPS).float()
    shape = VideoPixelShape(batch=1, frames=FRAMES, width=W, height=H, fps=FPS)
    with torch.no_grad():
        vs, as_ = denoise_audio_video(
            shape,
            [],
            noiser,
            sig,
            EulerDiffusionStep(),
            lambda *a: euler_denoising_loop(*a, denoise_fn=den),
            comp,
            torch.float32,
            "cpu",
        )
    return items, vs.latent


def our_items(model, version, ctx, params, bank, monkeypatch):
    """Every item of every transformer call of our dev pipeline, and the batch size of each call."""
    (vp, ap), (vn, an) = ctx
    items, batches = [], []
    orig = LTXModel.__call__

    def call(self, video, audio, rope, perturbations=None, sp=None):
        b = video.latent.shape[0]
        batches.append(b)
        per = perturbations.items if perturbations is not None else ({},) * b
        for i in range(b):
            c = np.array(video.context[i : i + 1])
            tag = "positive" if np.array_equal(c, vp) else "negative" if np.array_equal(c, vn) else "?"
            sigma = round(float(video.timesteps[i].max()), 6)
            items.append((sigma, tag, _perturbed(per[i].items()), video.latent.shape[1], audio.latent.shape[1]))
        return orig(self, video, audio, rope, perturbations, sp)

    monkeypatch.setattr(LTXModel, "__call__", call)
    gv, ga = (
        {f: getattr(p, f) for f in ("cfg_scale", "stg_scale", "rescale_scale", "modality_scale", "skip_step")}
        | {"stg_blocks": tuple(p.stg_blocks)}
        for p in params
    )
    s = LTXSettings(
        "dev", height=H, width=W, num_frames=FRAMES, fps=FPS, steps=STEPS, video_guidance=gv, audio_guidance=ga
    )
    comps = LTX2Components(model, None, version=version)
    res = generate(
        comps,
        s,
        TextContext(mx.array(vp), mx.array(ap)),
        TextContext(mx.array(vn), mx.array(an)),
        noise=bank,
        decode=False,
    )
    monkeypatch.setattr(LTXModel, "__call__", orig)
    return items, batches, res.latents


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("guidance_batch", [1, 4])
def test_passes_per_step_match_official(case, guidance_batch, models, monkeypatch):
    flavour, version, pipeline_params, overrides = CASES[case]
    (ref, ours) = models[flavour]
    ctx = contexts(flavour)
    params = _params(pipeline_params, overrides)
    want, ref_latent = official_items(ref, ctx, params, NoiseBank(), monkeypatch)
    monkeypatch.setattr(denoise_mod, "GUIDANCE_BATCH", guidance_batch)
    got, batches, latent = our_items(ours, version, ctx, params, NoiseBank(), monkeypatch)
    assert got == want
    per_step = Counter(s for s, *_ in want)
    n_passes = {"ltx2-dev": 4, "ltx23-dev": 4, "ltx23-audio-stg-only": 4}.get(case)
    if n_passes is not None:  # the dev defaults: cond, uncond, STG, modality-isolated on every step
        assert list(per_step.values()) == [n_passes] * STEPS
    if case == "ltx23-skip-step":  # skip_step 1: steps 0 and 2 guided (4 passes), step 1 reuses step 0's x0
        assert list(per_step.values()) == [4, 4] and len(per_step) == STEPS - 1
    if case == "ltx23-audio-stg-only":
        assert {p for _, _, p, _, _ in want if p and "a2v_cross_attn" not in dict(p)} == {
            frozenset({("audio_self_attn", (1,))})
        }
    # one call per pass at guidance_batch 1 (as the official); all of a step's passes in one call at 4
    assert batches == ([1] * len(want) if guidance_batch == 1 else [n for n in per_step.values()])
    assert rel_err(to_ref_video(latent), ref_latent.numpy()) < 1e-3  # the same trajectory
