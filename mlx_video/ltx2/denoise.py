"""The LTX-2 denoise engine: one stage of joint audio+video denoising.

Follows ltx-pipelines 1.0.0 ``utils.samplers`` (``euler_denoising_loop``,
``res2s_audio_video_denoising_loop``) and ``utils.helpers`` (``simple_denoising_func``,
``multi_modal_guider_denoising_func``); docs/ltx2.md §8.

State: a video :class:`~mlx_video.ltx2.conditioning.TokenState` (grid tokens + guiding tokens) and
an audio one. Every transformer pass sees the whole video state, guiding tokens included, with
per-token timesteps ``mask * sigma``; its x0 predictions are blended with the clean tokens by the
mask (``post_process_latent``) before the stepper. RoPE tables for the stage's positions (video
grid + guiding tokens, audio, both cross-modal tables) are built once, before the loop: positions
never change within a stage.

Guidance (dev stage 1): cond pass; uncond (negative contexts) if either modality's cfg != 1; STG
pass (self-attention skipped in ``stg_blocks`` for each modality with stg != 0) if any; modality-
isolated pass (no audio<->video attention anywhere) if either modality_scale != 1; combined per
modality by :func:`mlx_video.sampling.guidance.multimodal_guidance` (rescale std over all tokens,
guiding tokens included, as the reference). Passes run one after another at batch 1, as the reference.

Numerics: latents, x0 and the steppers are float32 between steps (the reference rounds the
trajectory to bf16 between steps in its bf16 pipelines); the transformer computes in its weights' dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import mlx.core as mx
import numpy as np

from mlx_video.conditioning import blend_clean
from mlx_video.ltx2.conditioning import TokenState
from mlx_video.ltx2.transformer import LTXModel, Modality, Perturbations, attention_bias, to_x0
from mlx_video.result import check_finite
from mlx_video.sampling.guidance import GuidanceParams, multimodal_guidance
from mlx_video.sampling.solvers import euler_step_x0, res2s_sample

Res2sNoise = Callable[[int, bool, int, mx.array], mx.array]
"""res2s SDE noise: ``(step, substep, index, like) -> array like ``like````; index 0 = video, 1 = audio."""
StepCallback = Callable[[int, int], None]
NONFINITE_HINT = (
    "likely causes: a guidance scale too large for this schedule, a transformer in float16 "
    "overflowing, or corrupt weights"
)


@dataclass
class TextContext:
    """Per-modality text conditioning from the embeddings processor: video [B, S, Dv], audio [B, S, Da]."""

    video: mx.array
    audio: mx.array


def _per_item_or_token(mask: mx.array) -> mx.array | None:
    """None when every token has mask 1 (one timestep per item suffices), else the mask."""
    return None if bool(mx.all(mask == 1.0).item()) else mask


class Denoiser:
    """x0 predictions (video, audio) for one stage; RoPE tables are built here, once.

    model: LTXModel with audio; video / audio: the stage's states (their positions and masks are
    fixed for the stage); positive: the prompt's contexts; negative + guidance: (video, audio)
    :class:`GuidanceParams` for guided stages (None: one plain conditional pass per call).
    Raises ValueError when guidance needs a negative context that is missing, or when video and
    audio use different ``skip_step`` values (the reference then disables one modality's stream
    inside a pass, which this transformer does not model).
    """

    def __init__(
        self,
        model: LTXModel,
        video: TokenState,
        audio: TokenState,
        positive: TextContext,
        negative: TextContext | None = None,
        guidance: tuple[GuidanceParams, GuidanceParams] | None = None,
    ):
        self.model = model
        self.rope = model.rope_tables(video.positions, audio.positions)
        self.masks = (_per_item_or_token(video.mask), _per_item_or_token(audio.mask))
        self.bias = None if video.attention_mask is None else attention_bias(mx.array(video.attention_mask))
        self.positive, self.negative, self.guidance = positive, negative, guidance
        if guidance is not None:
            gv, ga = guidance
            if (gv.needs_uncond or ga.needs_uncond) and negative is None:
                raise ValueError("CFG needs a negative text context")
            if gv.skip_step != ga.skip_step:
                raise ValueError("video and audio guidance must share skip_step")
        self._last = None

    def _pass(
        self, xs: list[mx.array], sigma: float, ctx: TextContext, perturb: Perturbations | None = None
    ) -> list[mx.array]:
        b = xs[0].shape[0]
        s = mx.full((b,), sigma, mx.float32)
        ts = [s if m is None else (m * sigma).reshape(b, -1) for m in self.masks]
        v = Modality(xs[0], ts[0], s, ctx.video, self.bias)
        a = Modality(xs[1], ts[1], s, ctx.audio)
        vel = self.model(v, a, self.rope, perturb)
        return [to_x0(x, u, t) for x, u, t in zip(xs, vel, ts)]

    def __call__(self, xs: list[mx.array], sigma: float, step: int = 0) -> list[mx.array]:
        """Raw (not yet mask-blended) x0 for latents ``xs = [video, audio]`` at noise level ``sigma``.
        ``step`` only matters for guidance ``skip_step`` (res2s midpoints pass 0)."""
        cond = self._pass(xs, sigma, self.positive)
        if self.guidance is None:
            return cond
        gv, ga = self.guidance
        if gv.skips(step) and self._last is not None:
            return self._last
        uncond = perturbed = isolated = (None, None)
        if gv.needs_uncond or ga.needs_uncond:
            uncond = self._pass(xs, sigma, self.negative)
        if gv.needs_perturbed or ga.needs_perturbed:
            kinds = {}
            if gv.needs_perturbed:
                kinds["video_self_attn"] = list(gv.stg_blocks)
            if ga.needs_perturbed:
                kinds["audio_self_attn"] = list(ga.stg_blocks)
            perturbed = self._pass(xs, sigma, self.positive, Perturbations((kinds,)))
        if gv.needs_isolated or ga.needs_isolated:
            isolated = self._pass(
                xs, sigma, self.positive, Perturbations(({"a2v_cross_attn": None, "v2a_cross_attn": None},))
            )
        self._last = [
            multimodal_guidance(p, c, u, q, m) for p, c, u, q, m in zip((gv, ga), cond, uncond, perturbed, isolated)
        ]
        return self._last


def denoise(
    model: LTXModel,
    video: TokenState,
    audio: TokenState,
    sigmas: np.ndarray,
    positive: TextContext,
    *,
    negative: TextContext | None = None,
    guidance: tuple[GuidanceParams, GuidanceParams] | None = None,
    sampler: str = "euler",
    res2s_noise: Res2sNoise | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
    label: str = "denoise",
) -> tuple[TokenState, TokenState]:
    """Run one stage over the schedule ``sigmas`` (float32, decreasing, usually ending in 0).

    sampler "euler": ``euler_denoising_loop`` (x0 -> blend -> EulerDiffusionStep). "res2s": the
    res_2s loop of :func:`mlx_video.sampling.solvers.res2s_sample` (2 evaluations per step plus a final
    one at sigma 0.0011; SDE noise from ``res2s_noise``, default drawn from ``seed``).
    ``on_step(i, n)`` is called after each step. Returns the updated (video, audio) states; the
    caller strips guiding tokens with ``grid_latent()``. Raises ValueError for an unknown sampler and
    :class:`mlx_video.result.NonFiniteError` (naming ``label`` and the step) as soon as the latents (Euler) or
    the x0 predictions (res2s) hold NaN or inf.
    """

    def finite(arrays, what):
        for x, kind in zip(arrays, ("video", "audio")):
            check_finite(x, f"in {label}'s {kind} {what}", NONFINITE_HINT)

    den = Denoiser(model, video, audio, positive, negative, guidance)
    masks, cleans = [video.mask, audio.mask], [video.clean, audio.clean]
    xs = [video.latent, audio.latent]
    n = len(sigmas) - 1
    if sampler == "euler":
        for i in range(n):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            x0 = [blend_clean(d, m, c) for d, m, c in zip(den(xs, s, i), masks, cleans)]
            xs = [euler_step_x0(x, d, s, s_next) for x, d in zip(xs, x0)]
            mx.eval(xs)
            finite(xs, f"latents after step {i + 1}/{n}")
            if on_step is not None:
                on_step(i + 1, n)
    elif sampler == "res2s":
        calls = {"i": 0}

        def evaluate(latents, sigma):
            # res2s_sample evaluates at each step's start (index i) then its midpoint (index 0, as
            # the reference), and once more at the end (index n)
            k = calls["i"]
            out = den(latents, sigma, k // 2 if k % 2 == 0 else 0)
            mx.eval(out)
            finite(out, f"x0 prediction at step {min(k // 2 + 1, n)}/{n}")
            calls["i"] += 1
            if on_step is not None and calls["i"] % 2 == 0 and calls["i"] // 2 <= n:
                on_step(calls["i"] // 2, n)
            return out

        xs = res2s_sample(sigmas, xs, evaluate, noise=res2s_noise, masks=masks, cleans=cleans, seed=seed)
        mx.eval(xs)
        finite(xs, f"latents after step {n}/{n}")
    else:
        raise ValueError(f"unknown sampler {sampler!r} (expected 'euler' or 'res2s')")
    return replace(video, latent=xs[0]), replace(audio, latent=xs[1])
