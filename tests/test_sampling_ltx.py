"""Parity of the LTX-2 sampling components with ltx-core / ltx-pipelines 1.0.0 (injected noise)."""

import math

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
from ltx_core.components.guiders import CFGGuider, MultiModalGuider, MultiModalGuiderParams, STGGuider
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.types import LatentState
from ltx_pipelines.utils import constants as C
from ltx_pipelines.utils import res2s as R
from ltx_pipelines.utils.helpers import post_process_latent
from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop

from mlx_video.conditioning import add_noise, blend_clean
from mlx_video.sampling import (
    DISTILLED_SIGMAS,
    STAGE2_DISTILLED_SIGMAS,
    GuidanceParams,
    cfg_delta,
    euler_step_x0,
    ltx2_sigmas,
    multimodal_guidance,
    res2s_coefficients,
    res2s_noise,
    res2s_sample,
    res2s_sigmas,
    sde_step,
    stg_delta,
)
from mlx_video.sampling import guidance as G
from mlx_video.sampling.solvers import phi
from tests.oracles import rel_err

TOL = 1e-5
mxa = lambda a: mx.array(np.asarray(a, np.float32))  # noqa: E731
tch = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "steps,latent_shape", [(30, None), (40, None), (15, (1, 128, 16, 17, 30)), (4, (1, 128, 2, 3, 4)), (1, None)]
)
def test_ltx2_sigmas_match_official(steps, latent_shape):
    latent = None if latent_shape is None else torch.empty(latent_shape)
    ref = LTX2Scheduler().execute(steps=steps, latent=latent).numpy()
    tokens = 4096 if latent_shape is None else math.prod(latent_shape[2:])
    ours = ltx2_sigmas(steps, tokens)
    if steps == 1:  # reference divides 0 by 0 when stretching a single step; we keep [1, 0]
        np.testing.assert_array_equal(ours, [1.0, 0.0])
        return
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_ltx2_sigmas_known_values_and_sensitivity():
    s = ltx2_sigmas(30)
    np.testing.assert_allclose(s[[1, 2, 27, 28, 29, 30]], [0.99496, 0.98960, 0.38754, 0.26612, 0.1, 0.0], atol=6e-6)
    hq = ltx2_sigmas(15, 16 * 17 * 30)
    np.testing.assert_allclose(hq[[1, 13, 14]], [0.99349, 0.50338, 0.1], atol=6e-6)
    assert np.abs(ltx2_sigmas(15, 4096) - hq).max() > 1e-2  # the token count matters
    np.testing.assert_array_equal(DISTILLED_SIGMAS, np.float32(C.DISTILLED_SIGMA_VALUES))
    np.testing.assert_array_equal(STAGE2_DISTILLED_SIGMAS, np.float32(C.STAGE_2_DISTILLED_SIGMA_VALUES))
    np.testing.assert_array_equal(
        res2s_sigmas(STAGE2_DISTILLED_SIGMAS), np.float32([0.909375, 0.725, 0.421875, 0.0011, 0])
    )


# ---------------------------------------------------------------- steps and noiser


def test_euler_noiser_blend_match_official():
    rng = np.random.default_rng(0)
    x, x0, clean = (rng.standard_normal((2, 10, 8)).astype(np.float32) for _ in range(3))
    mask = rng.uniform(0, 1, (2, 10, 1)).astype(np.float32)
    sig = torch.tensor([0.909375, 0.725, 0.0])
    for i in range(2):
        ref = EulerDiffusionStep().step(tch(x), tch(x0), sig, i)
        assert rel_err(euler_step_x0(mxa(x), mxa(x0), sig[i].item(), sig[i + 1].item()), ref) < 1e-6
    assert (
        rel_err(blend_clean(mxa(x0), mxa(mask), mxa(clean)), post_process_latent(tch(x0), tch(mask), tch(clean))) < 1e-6
    )
    state = LatentState(latent=tch(clean), denoise_mask=tch(mask), positions=None, clean_latent=tch(clean))
    ref = GaussianNoiser(torch.Generator().manual_seed(7))(state, noise_scale=0.909375).latent
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(7))
    ours = add_noise(mxa(clean), mxa(noise.numpy()), mxa(mask), 0.909375)
    assert rel_err(ours, ref) < 1e-6
    assert rel_err(add_noise(mxa(clean), mxa(noise.numpy()), mxa(mask), 1.0), ref) > 1e-2


def test_res2s_coefficients_match_official():
    for j in (1, 2, 3):
        for z in (-1e-12, -1e-3, -0.3, -2.0):
            # the reference's exp(z) - sum form cancels for small z (phi_3(-1e-3) is off by 4e-7 there)
            rel = 1e-9 if j < 3 or abs(z) > 0.1 else 1e-6
            assert phi(j, z) == pytest.approx(R.phi(j, z), rel=rel, abs=1e-12)
    for h in (1e-12, 0.0065, 0.2, 0.9, 5.9):
        np.testing.assert_allclose(res2s_coefficients(h), R.get_res2s_coefficients(h, {}), rtol=1e-9, atol=1e-11)
    assert abs(res2s_coefficients(0.2)[0] - res2s_coefficients(0.2, c2=0.6)[0]) > 1e-3


@pytest.mark.parametrize("s,s_next", [(1.0, 0.99674), (0.5, 0.4), (0.421875, 0.0011), (0.5, 0.0)])
def test_sde_step_matches_official(s, s_next):
    rng = np.random.default_rng(1)
    xa, xd, n = (rng.standard_normal((2, 12, 8)).astype(np.float32) for _ in range(3))
    sig = torch.tensor([s, s_next], dtype=torch.float64)
    ref = Res2sDiffusionStep().step(tch(xa).double(), tch(xd).double(), sig, 0, noise=tch(n).double())
    ours = sde_step(mxa(xa), mxa(xd), s, s_next, mxa(n))
    assert rel_err(ours, ref) < 1e-6
    if s_next > 0:  # the noise enters with weight sigma_next / 2
        assert rel_err(sde_step(mxa(xa), mxa(xd), s, s_next, mxa(-n)), ref) > 1e-3


def test_res2s_noise_is_standardised():
    n = np.array(res2s_noise((2, 50, 8), mx.random.key(3)), np.float64)
    for b in range(2):
        assert abs(n[b].mean()) < 1e-5 and abs(n[b].std(ddof=1) - 1) < 1e-5


# ---------------------------------------------------------------- loops with a fake denoiser

SHAPES = [(1, 12, 8), (1, 6, 4)]  # video and audio tokens [B, T, C]


def _fake_model(seed=0):
    """A deterministic nonlinear x0 predictor, identical for both frameworks (float64 NumPy)."""
    rng = np.random.default_rng(seed)
    mats = [rng.standard_normal((s[-1], s[-1])) / np.sqrt(s[-1]) for s in SHAPES]
    return lambda k, x, sigma: (
        np.tanh(np.asarray(x, np.float64) @ mats[k]) * (1 - 0.5 * sigma) + 0.3 * sigma * np.asarray(x, np.float64)
    ).astype(np.float32)


def _states(seed=2):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    cleans = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    vmask = np.ones(SHAPES[0][:2] + (1,), np.float32)
    vmask[:, :3] = 0.0  # replaced first-frame tokens
    vmask[:, -2:] = 0.4  # appended guiding tokens at strength 0.6
    masks = [vmask, np.ones(SHAPES[1][:2] + (1,), np.float32)]
    torch_states = [
        LatentState(latent=tch(x), denoise_mask=tch(m), positions=None, clean_latent=tch(c))
        for x, m, c in zip(xs, masks, cleans)
    ]
    return xs, masks, cleans, torch_states


def _run_official_res2s(sigmas, noises, model):
    xs, masks, cleans, (vs, as_) = _states()
    order = iter(sorted(noises, key=lambda k: (k[0], not k[1], k[2])))  # per step: mid v, mid a, step v, step a

    def denoise_fn(video_state, audio_state, sigmas, step_index):
        s = float(sigmas[step_index])
        return tuple(tch(model(k, st.latent.numpy(), s)) for k, st in enumerate((video_state, audio_state)))

    new_noise = lambda latent, gen: torch.from_numpy(noises[next(order)])  # noqa: E731
    v, a = res2s_audio_video_denoising_loop(
        torch.from_numpy(sigmas),
        vs,
        as_,
        Res2sDiffusionStep(),
        denoise_fn,
        new_noise_fn=new_noise,
        model_dtype=torch.float32,
    )
    return [v.latent, a.latent]


def _run_ours_res2s(sigmas, noises, model, **kw):
    xs, masks, cleans, _ = _states()
    denoise = lambda xs, s: [mxa(model(k, np.array(x), s)) for k, x in enumerate(xs)]  # noqa: E731
    noise = lambda i, sub, k, like: mxa(noises[(i, sub, k)])  # noqa: E731
    return res2s_sample(
        sigmas,
        [mxa(x) for x in xs],
        denoise,
        noise=noise,
        masks=[mxa(m) for m in masks],
        cleans=[mxa(c) for c in cleans],
        **kw,
    )


@pytest.mark.parametrize("sigmas", [ltx2_sigmas(4, 2 * 3 * 4), STAGE2_DISTILLED_SIGMAS])
def test_res2s_loop_matches_official(sigmas):
    rng = np.random.default_rng(3)
    noises = {
        (i, sub, k): rng.standard_normal(SHAPES[k])
        for i in range(len(sigmas) - 1)
        for sub in (True, False)
        for k in range(2)
    }
    model = _fake_model()
    ref = _run_official_res2s(sigmas, noises, model)
    ours = _run_ours_res2s(sigmas, noises, model)
    for o, r in zip(ours, ref):
        assert rel_err(o, r) < TOL
    # sensitivity: the SDE noise, its substep/step assignment and the bong re-anchoring all matter
    # (bong runs on steps with h < 0.5 and sigma > 0.03, the first two of both grids)
    swapped = {(i, not sub, k): n for (i, sub, k), n in noises.items()}
    assert rel_err(_run_ours_res2s(sigmas, swapped, model)[0], ref[0]) > 100 * TOL
    assert rel_err(_run_ours_res2s(sigmas, noises, model, bongmath=False)[0], ref[0]) > 100 * TOL


def test_euler_loop_matches_official():
    sigmas = DISTILLED_SIGMAS
    model = _fake_model(1)
    xs, masks, cleans, (vs, as_) = _states()

    def denoise_fn(video_state, audio_state, sigmas, step_index):
        s = float(sigmas[step_index])
        return tuple(tch(model(k, st.latent.numpy(), s)) for k, st in enumerate((video_state, audio_state)))

    ref = euler_denoising_loop(torch.from_numpy(sigmas), vs, as_, EulerDiffusionStep(), denoise_fn)
    xs = [mxa(x) for x in xs]
    for i in range(len(sigmas) - 1):
        x0s = [
            blend_clean(mxa(model(k, np.array(x), float(sigmas[i]))), mxa(m), mxa(c))
            for k, (x, m, c) in enumerate(zip(xs, masks, cleans))
        ]
        xs = [euler_step_x0(x, x0, sigmas[i], sigmas[i + 1]) for x, x0 in zip(xs, x0s)]
    for o, r in zip(xs, ref):
        assert rel_err(o, r.latent) < TOL


# ---------------------------------------------------------------- guidance


def _official_params(p: GuidanceParams) -> MultiModalGuiderParams:
    return MultiModalGuiderParams(
        cfg_scale=p.cfg_scale,
        stg_scale=p.stg_scale,
        stg_blocks=list(p.stg_blocks),
        rescale_scale=p.rescale_scale,
        modality_scale=p.modality_scale,
        skip_step=p.skip_step,
    )


def test_guidance_defaults_match_official():
    pairs = [
        (C.LTX_2_PARAMS, G.LTX2_VIDEO_GUIDANCE, G.LTX2_AUDIO_GUIDANCE, G.LTX2_STEPS),
        (C.LTX_2_3_PARAMS, G.LTX23_VIDEO_GUIDANCE, G.LTX23_AUDIO_GUIDANCE, G.LTX23_STEPS),
        (C.LTX_2_3_HQ_PARAMS, G.LTX23_HQ_VIDEO_GUIDANCE, G.LTX23_HQ_AUDIO_GUIDANCE, G.LTX23_HQ_STEPS),
    ]
    for ref, video, audio, steps in pairs:
        assert _official_params(video) == ref.video_guider_params
        assert _official_params(audio) == ref.audio_guider_params
        assert steps == ref.num_inference_steps


@pytest.mark.parametrize(
    "params",
    [
        G.LTX2_VIDEO_GUIDANCE,
        G.LTX2_AUDIO_GUIDANCE,
        G.LTX23_HQ_VIDEO_GUIDANCE,
        G.LTX23_HQ_AUDIO_GUIDANCE,
        GuidanceParams(cfg_scale=4.0),
        GuidanceParams(stg_scale=1.5, skip_step=1),
    ],
)
def test_multimodal_guidance_matches_official(params):
    rng = np.random.default_rng(4)
    # batch elements with different spreads: the rescale std is over the whole tensor
    c, u, p, m = (rng.standard_normal((2, 10, 8)) * np.array([1.0, 3.0])[:, None, None] for _ in range(4))
    guider = MultiModalGuider(params=_official_params(params))
    run = lambda on, x: tch(x) if on else 0.0  # noqa: E731 -- the official passes 0.0 for skipped passes
    ref = guider.calculate(
        tch(c),
        run(guider.do_unconditional_generation(), u),
        run(guider.do_perturbed_generation(), p),
        run(guider.do_isolated_modality_generation(), m),
    )
    args = [
        mxa(x) if on else None
        for x, on in ((u, params.needs_uncond), (p, params.needs_perturbed), (m, params.needs_isolated))
    ]
    ours = multimodal_guidance(params, mxa(c), *args)
    assert rel_err(ours, ref) < 1e-6
    assert [params.skips(k) for k in range(4)] == [guider.should_skip_step(k) for k in range(4)]
    if params.needs_perturbed and params.needs_isolated:  # swapped passes are detected
        assert rel_err(multimodal_guidance(params, mxa(c), args[0], args[2], args[1]), ref) > 1e-2


def test_guidance_deltas_and_errors():
    rng = np.random.default_rng(5)
    c, u = rng.standard_normal((2, 3, 4, 5))
    assert rel_err(cfg_delta(mxa(c), mxa(u), 3.5), CFGGuider(3.5).delta(tch(c), tch(u))) < 1e-6
    assert rel_err(stg_delta(mxa(c), mxa(u), 1.5), STGGuider(1.5).delta(tch(c), tch(u))) < 1e-6
    with pytest.raises(ValueError, match="uncond"):
        multimodal_guidance(GuidanceParams(cfg_scale=3.0), mxa(c))
