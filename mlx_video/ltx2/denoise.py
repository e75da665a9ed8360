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
guiding tokens included, as the reference). The pass count, kinds and order per step are the reference's
(``multi_modal_guider_denoising_func``: at most 4 passes, each at the state's batch and token count).
By default the passes run one after another at batch 1, as the reference; ``guidance_batch`` k > 1 stacks
up to k of them (in that order) along the batch axis of one transformer call, with per-item contexts and
perturbations (docs/ltx2.md §8): the same arithmetic per item (float rounding aside), larger matmuls, about
k x the activations; the modality-isolated item then computes its audio<->video attention and zeroes it
instead of skipping it (~3% more FLOPs for the 4 passes of LTX-2 at 1536 video tokens).

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
GUIDANCE_BATCH = 1
"""Default ``guidance_batch`` of :func:`denoise` (1: one pass per transformer call, as the reference)."""
ISOLATED = {"a2v_cross_attn": None, "v2a_cross_attn": None}  # the modality-isolated pass's perturbations
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
    ``batch``: at most this many guidance passes per transformer call (1: one call per pass, as the
    reference; see the module docstring). Raises ValueError when guidance needs a negative context that is
    missing, when video and audio use different ``skip_step`` values (the reference then disables one
    modality's stream inside a pass, which this transformer does not model), or when ``batch`` < 1.
    """

    def __init__(
        self,
        model: LTXModel,
        video: TokenState,
        audio: TokenState,
        positive: TextContext,
        negative: TextContext | None = None,
        guidance: tuple[GuidanceParams, GuidanceParams] | None = None,
        batch: int = 1,
    ):
        if int(batch) < 1:
            raise ValueError(f"guidance_batch must be >= 1, got {batch!r}")
        self.batch = int(batch)
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

    def _pass(self, xs: list[mx.array], sigma: float, items: list[tuple[TextContext, dict]]) -> list[list[mx.array]]:
        """One transformer call over ``len(items)`` passes stacked along the batch axis: item i sees
        context ``items[i][0]`` and perturbations ``items[i][1]`` (a :class:`Perturbations` item). Returns the
        x0 predictions [video, audio] of each item, in the states' batch."""
        n, b = len(items), xs[0].shape[0]
        rep = (lambda x: x) if n == 1 else (lambda x: mx.concatenate([x] * n, axis=0))  # noqa: E731
        s = mx.full((n * b,), sigma, mx.float32)
        ts = [s if m is None else rep((m * sigma).reshape(b, -1)) for m in self.masks]
        lat = [rep(x) for x in xs]
        cat = lambda arrays: arrays[0] if n == 1 else mx.concatenate(arrays, axis=0)  # noqa: E731
        v = Modality(lat[0], ts[0], s, cat([c.video for c, _ in items]), None if self.bias is None else rep(self.bias))
        a = Modality(lat[1], ts[1], s, cat([c.audio for c, _ in items]))
        perturb = tuple(p for _, p in items for _ in range(b))
        vel = self.model(v, a, self.rope, Perturbations(perturb) if any(perturb) else None)
        x0 = [to_x0(x, u, t) for x, u, t in zip(lat, vel, ts)]
        return [[x[i * b : (i + 1) * b] for x in x0] for i in range(n)] if n > 1 else [x0]

    def _passes(self, xs: list[mx.array], sigma: float, items: list[tuple[TextContext, dict]]) -> list[list[mx.array]]:
        """The passes ``items`` in order, up to ``self.batch`` per call (consecutive items with contexts of the
        same shapes)."""
        out, group = [], []

        def flush():
            if group:
                out.extend(self._pass(xs, sigma, group))
                group.clear()

        for item in items:
            if group and (
                len(group) == self.batch
                or item[0].video.shape != group[0][0].video.shape
                or item[0].audio.shape != group[0][0].audio.shape
            ):
                flush()
            group.append(item)
        flush()
        return out

    def __call__(self, xs: list[mx.array], sigma: float, step: int = 0) -> list[mx.array]:
        """Raw (not yet mask-blended) x0 for latents ``xs = [video, audio]`` at noise level ``sigma``.
        ``step`` only matters for guidance ``skip_step`` (res2s midpoints pass 0)."""
        if self.guidance is None:
            return self._pass(xs, sigma, [(self.positive, {})])[0]
        gv, ga = self.guidance
        if gv.skips(step) and self._last is not None:
            return self._last
        # the reference's passes, in its order: cond, uncond, perturbed (STG), modality-isolated
        names, items = ["cond"], [(self.positive, {})]
        if gv.needs_uncond or ga.needs_uncond:
            names.append("uncond")
            items.append((self.negative, {}))
        if gv.needs_perturbed or ga.needs_perturbed:
            kinds = {}
            if gv.needs_perturbed:
                kinds["video_self_attn"] = list(gv.stg_blocks)
            if ga.needs_perturbed:
                kinds["audio_self_attn"] = list(ga.stg_blocks)
            names.append("perturbed")
            items.append((self.positive, kinds))
        if gv.needs_isolated or ga.needs_isolated:
            names.append("isolated")
            items.append((self.positive, dict(ISOLATED)))
        got = dict(zip(names, self._passes(xs, sigma, items)))
        none = (None, None)
        cond = got["cond"]
        uncond, perturbed, isolated = (got.get(k, none) for k in ("uncond", "perturbed", "isolated"))
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
    guidance_batch: int | None = None,
) -> tuple[TokenState, TokenState]:
    """Run one stage over the schedule ``sigmas`` (float32, decreasing, usually ending in 0).

    sampler "euler": ``euler_denoising_loop`` (x0 -> blend -> EulerDiffusionStep). "res2s": the
    res_2s loop of :func:`mlx_video.sampling.solvers.res2s_sample` (2 evaluations per step plus a final
    one at sigma 0.0011; SDE noise from ``res2s_noise``, default drawn from ``seed``).
    ``on_step(i, n)`` is called after each step. ``guidance_batch``: guidance passes per transformer call
    (see :class:`Denoiser`; None: :data:`GUIDANCE_BATCH`). Returns the updated (video, audio) states; the
    caller strips guiding tokens with ``grid_latent()``. Raises ValueError for an unknown sampler and
    :class:`mlx_video.result.NonFiniteError` (naming ``label`` and the step) as soon as the latents (Euler) or
    the x0 predictions (res2s) hold NaN or inf.
    """

    def finite(arrays, what):
        for x, kind in zip(arrays, ("video", "audio")):
            check_finite(x, f"in {label}'s {kind} {what}", NONFINITE_HINT)

    den = Denoiser(
        model, video, audio, positive, negative, guidance, GUIDANCE_BATCH if guidance_batch is None else guidance_batch
    )
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
