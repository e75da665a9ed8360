"""Guidance: classifier-free (Wan, LTX-2), STG, modality isolation and rescale (LTX-2).

Pure functions over the model's predictions (Wan: velocities; LTX-2: x0 / "denoised"), computed
in float32. LTX-2 follows ltx-core 1.0.0 ``components.guiders.MultiModalGuider`` and the defaults
of ``ltx_pipelines.utils.constants``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx


def cfg_delta(cond: mx.array, uncond: mx.array, scale: float) -> mx.array:
    """ltx CFGGuider.delta: ``(scale - 1) * (cond - uncond)``, added to cond."""
    return (scale - 1.0) * (cond - uncond)


def stg_delta(cond: mx.array, perturbed: mx.array, scale: float) -> mx.array:
    """ltx STGGuider.delta: ``scale * (cond - perturbed)`` (perturbed = self-attention skipped)."""
    return scale * (cond - perturbed)


def _std(x: mx.array) -> mx.array:
    """Unbiased standard deviation over the whole tensor (torch ``Tensor.std()``)."""
    return mx.sqrt(mx.var(x, ddof=1))


def rescale_guidance(pred: mx.array, cond: mx.array, rescale: float) -> mx.array:
    """Pull the guided prediction's spread back toward the conditional one:
    ``pred * (rescale * std(cond) / std(pred) + 1 - rescale)``; std is unbiased over the whole
    tensor (all batch elements and tokens, appended conditioning tokens included)."""
    if rescale == 0:
        return pred
    factor = rescale * (_std(cond) / _std(pred)) + (1.0 - rescale)
    return pred * factor


@dataclass(frozen=True)
class GuidanceParams:
    """One modality's guidance settings (ltx MultiModalGuiderParams).

    cfg_scale: CFG (1 = off); stg_scale: STG strength (0 = off), stg_blocks: blocks whose
    self-attention the perturbed pass skips; modality_scale: guidance away from the pass with the
    audio<->video cross-attention removed (1 = off); rescale_scale: 0 = off; skip_step k > 0
    reuses the previous prediction except on steps where step % (k + 1) == 0.
    """

    cfg_scale: float = 1.0
    stg_scale: float = 0.0
    stg_blocks: tuple[int, ...] = ()
    rescale_scale: float = 0.0
    modality_scale: float = 1.0
    skip_step: int = 0

    @property
    def needs_uncond(self) -> bool:
        """A negative-prompt pass is needed."""
        return abs(self.cfg_scale - 1.0) > 1e-9

    @property
    def needs_perturbed(self) -> bool:
        """An STG (self-attention skipped) pass is needed."""
        return abs(self.stg_scale) > 1e-9

    @property
    def needs_isolated(self) -> bool:
        """A modality-isolated (no A2V / V2A cross-attention) pass is needed."""
        return abs(self.modality_scale - 1.0) > 1e-9

    def skips(self, step: int) -> bool:
        """Whether step ``step`` reuses the previous guided prediction."""
        return self.skip_step > 0 and step % (self.skip_step + 1) != 0


def multimodal_guidance(
    params: GuidanceParams,
    cond: mx.array,
    uncond: mx.array | None = None,
    perturbed: mx.array | None = None,
    isolated: mx.array | None = None,
) -> mx.array:
    """MultiModalGuider.calculate for one modality:
    ``pred = c + (cfg - 1)(c - u) + stg (c - p) + (mod - 1)(c - m)``, then ``rescale_guidance``.

    cond / uncond / perturbed / isolated: the x0 predictions of the four passes (same shape).
    A pass may be None only when its term is off; raises ValueError otherwise.
    """
    pred = cond
    for on, other, delta, scale, name in (
        (params.needs_uncond, uncond, cfg_delta, params.cfg_scale, "uncond"),
        (params.needs_perturbed, perturbed, stg_delta, params.stg_scale, "perturbed"),
        (params.needs_isolated, isolated, cfg_delta, params.modality_scale, "isolated"),
    ):
        if not on:
            continue
        if other is None:
            raise ValueError(f"guidance needs the {name} prediction for {params}")
        pred = pred + delta(cond, other, scale)
    return rescale_guidance(pred, cond, params.rescale_scale)


# Defaults of ltx_pipelines.utils.constants (dev pipelines).
LTX2_VIDEO_GUIDANCE = GuidanceParams(
    cfg_scale=3.0, stg_scale=1.0, stg_blocks=(29,), rescale_scale=0.7, modality_scale=3.0
)
LTX2_AUDIO_GUIDANCE = GuidanceParams(
    cfg_scale=7.0, stg_scale=1.0, stg_blocks=(29,), rescale_scale=0.7, modality_scale=3.0
)
LTX23_VIDEO_GUIDANCE = GuidanceParams(
    cfg_scale=3.0, stg_scale=1.0, stg_blocks=(28,), rescale_scale=0.7, modality_scale=3.0
)
LTX23_AUDIO_GUIDANCE = GuidanceParams(
    cfg_scale=7.0, stg_scale=1.0, stg_blocks=(28,), rescale_scale=0.7, modality_scale=3.0
)
LTX23_HQ_VIDEO_GUIDANCE = GuidanceParams(cfg_scale=3.0, rescale_scale=0.45, modality_scale=3.0)
LTX23_HQ_AUDIO_GUIDANCE = GuidanceParams(cfg_scale=7.0, rescale_scale=1.0, modality_scale=3.0)
LTX2_STEPS, LTX23_STEPS, LTX23_HQ_STEPS = 40, 30, 15
