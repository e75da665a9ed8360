"""The Wan sampling loop as plain functions over arrays: the A14B experts' step runs, the CFG velocity, the
denoising steps (with re-anchoring and WanFM's backward pass), SDEdit's start, and lightx2v's few-step solvers.

:class:`mlx_video.wan.pipeline.WanPipeline` composes them (its ``denoise`` stage loads the DiT(s) and builds the
RoPE tables; these functions take them as arguments). Nothing here prints or writes files.

References: Wan2.2 ``image2video.py`` / ``text2video.py`` (expert switch at ``boundary``, CFG, docs/wan.md 7),
WanFM ``first_last_frame2video.py`` (``generate_bidirectional``, docs/wan.md 10), diffusers' video-to-video
pipelines (SDEdit's start step, docs/wan.md 9.2) and lightx2v's step-distill schedulers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ..conditioning import blend_clean
from ..result import check_finite
from ..sampling.solvers import FlowEuler, FlowSolver, make_solver

Progress = Callable[[str, int, int], None]


def expert_segments(timesteps: Sequence[int], boundary: float | None) -> list[tuple[str, int, int]]:
    """Runs of consecutive steps per DiT: [(name, first step, end step)], name "dit" without experts,
    else "dit_high" while ``t >= boundary·1000`` and "dit_low" below (Wan2.2 A14B, docs/wan.md 7)."""
    if boundary is None:
        return [("dit", 0, len(timesteps))]
    names = ["dit_high" if t >= boundary * 1000 else "dit_low" for t in timesteps]
    out: list[tuple[str, int, int]] = []
    for i, n in enumerate(names):
        if out and out[-1][0] == n:
            out[-1] = (n, out[-1][1], i + 1)
        else:
            out.append((n, i, i + 1))
    return out


def velocity(
    model,
    x: mx.array,
    t,
    context: mx.array,
    rope,
    guide_scale: float,
    y: mx.array | None = None,
    img: mx.array | None = None,
    batch_cfg: bool = True,
) -> mx.array:
    """Classifier-free guided velocity ``v_u + g·(v_c − v_u)``; context [2, 512, C] (cond, uncond);
    the same ``y`` and CLIP tokens ``img`` go to both branches (as the references). t: [1] or [1, T].
    guide_scale 1 is ``v_c``: one DiT pass, no unconditional one (CFG-distilled models, lightx2v ``enable_cfg``
    false)."""
    kw = {}
    if img is not None:
        kw["img"] = img
    if guide_scale == 1.0:
        return model(x, t, context[:1], rope, **kw, **({"y": y} if y is not None else {}))
    if batch_cfg:
        if y is not None:
            kw["y"] = mx.concatenate([y, y])
        tt = mx.concatenate([t, t]) if t.ndim == 2 else t
        v = model(mx.concatenate([x, x]), tt, context, rope, **kw)
        v_cond, v_uncond = v[:1], v[1:]
    else:
        if y is not None:
            kw["y"] = y
        v_cond = model(x, t, context[:1], rope, **kw)
        v_uncond = model(x, t, context[1:], rope, **kw)
    return v_uncond + guide_scale * (v_cond - v_uncond)


@dataclass
class BackwardPass:
    """WanFM's time-reversed pass (docs/wan.md 10): the model sees the latent and ``y`` flipped in time with
    RoPE ``rope`` (reversed temporal positions in the faithful mode, forward positions in the
    "reverse" mode). ``skip``: use the forward result for it (valid only in the faithful mode, where
    tests/test_wan_flf2v.py shows flip(backward) == forward to float32 rounding)."""

    rope: object
    y: mx.array | None
    skip: bool = False


def denoise(
    model,
    latent: mx.array,
    solver,
    context: mx.array,
    rope,
    guide_scale: float,
    mask: mx.array | None = None,
    clean: mx.array | None = None,
    batch_cfg: bool = True,
    progress: Progress | None = None,
    *,
    y: mx.array | None = None,
    img: mx.array | None = None,
    steps: range | None = None,
    backward: BackwardPass | None = None,
) -> mx.array:
    """Denoising steps ``steps`` (default all) of one DiT: CFG velocity, a solver step, re-anchoring.

    latent [1, T, h, w, C] float32 (already anchored); context [2, 512, dim] (cond, uncond) from
    ``model.embed_text``. mask/clean from ``anchor_arrays`` (TI2V anchors: per-latent-frame
    timesteps ``mask·t`` and re-anchoring), or None (one timestep for all tokens). y: I2V/FLF2V
    channels [1, T, h, w, 20]; img: ``model.embed_image`` tokens. backward: WanFM bidirectional
    sampling; needs the stateless Euler solver: ``x = ½·x_f + ½·flip(x_b)``. Several calls with
    consecutive ``steps`` and the same solver (its history carries over) run the two A14B experts.
    Returns the latent after the last step; raises NonFiniteError (naming the step and the likely cause)
    as soon as a step's latent holds NaN or inf.
    """
    steps = range(solver.num_steps) if steps is None else steps
    if backward is not None and (not isinstance(solver, FlowEuler) or mask is not None):
        raise ValueError("bidirectional sampling needs the Euler solver and no latent anchors")
    n = solver.num_steps
    for i in steps:
        t = solver.timesteps[i]
        tt = mask.reshape(1, -1) * float(t) if mask is not None else mx.array([float(t)])
        v = velocity(model, latent, tt, context, rope, guide_scale, y, img, batch_cfg)
        x_next = solver.step(v, i, latent)
        if backward is not None and not backward.skip:
            x_rev = latent[:, ::-1]
            v_b = velocity(model, x_rev, tt, context, backward.rope, guide_scale, backward.y, img, batch_cfg)
            x_next = 0.5 * x_next + 0.5 * solver.step(v_b, i, x_rev)[:, ::-1]
        latent = blend_clean(x_next, mask, clean)
        mx.eval(latent)
        check_finite(latent, f"in the latent after denoising step {i + 1} of {n}", _nan_hint(model, guide_scale))
        if progress:
            progress("denoise", i + 1, n)
    return latent


def _nan_hint(model, guide_scale: float) -> str:
    dtype = str(getattr(model, "dtype", "")).replace("mlx.core.", "")
    return (
        f"likely causes: a guide scale too large for this model ({guide_scale:g}), or an overflow of the "
        f"{dtype or 'compute'} dtype (try float32)"
    )


def sdedit_start(strength: float, steps: int) -> int:
    """First step index of an SDEdit run at ``strength`` S in [0, 1]: ``int((1 − S)·steps)`` (a 1e-6 tolerance
    keeps float rounding from losing a step, e.g. S = 0.9 of 10 steps starts at 1). S = 1 runs every step,
    S = 0 none. diffusers' video-to-video pipelines use ``steps − int(S·steps)``: the same for integer S·steps."""
    return min(steps, int(math.floor((1.0 - strength) * steps + 1e-6)))


def sdedit(solver: FlowSolver, strength: float, clean: mx.array, noise: mx.array) -> tuple[mx.array, FlowSolver]:
    """Video to video (SDEdit, flow matching): the input video's latent ``clean`` [1, T, h, w, C] noised to the
    schedule's sigma at ``k = sdedit_start(strength, N)``: ``x = (1 − σ_k)·clean + σ_k·noise``, and a fresh solver
    of the same kind over the remaining grid (timesteps[k:], sigmas[k:]; a multistep solver warms up again, as
    diffusers' schedulers do from their begin index). k = 0 returns ``noise`` itself and the solver unchanged:
    plain generation, which the references start from pure noise at sigmas[0] (0.999 on Wan's UniPC grid).
    k = N returns ``clean`` (σ_N = 0) and a solver of no steps."""
    k = sdedit_start(strength, solver.num_steps)
    if k == 0:
        return noise, solver
    sigma = float(solver.sigmas[k])
    x = (1.0 - sigma) * clean.astype(mx.float32) + sigma * noise
    tail = copy.copy(solver)  # same kind and options, fresh history
    FlowSolver.__init__(tail, solver.timesteps[k:], solver.sigmas[k:])
    return x, tail


def step_distill_grid(num_steps: int, shift: float) -> tuple[list[float], np.ndarray]:
    """lightx2v's few-step grid (``WanStepDistillScheduler.set_denoising_timesteps``): of the 1000 shifted training
    sigmas ``shift(linspace(1, 0, 1001)[:-1])``, those at ``denoising_step_list`` = 1000·(1 − i/N) (N = 4:
    [1000, 750, 500, 250]); timesteps ``σ·1000`` kept as floats (not truncated). Returns (timesteps, sigmas + [0])."""
    base = np.linspace(1.0, 0.0, 1001, dtype=np.float32)[:-1]
    base = shift * base / (1 + (shift - 1) * base)
    idx = [round(1000 * i / num_steps) for i in range(num_steps)]
    sig = np.append(base[idx], np.float32(0.0)).astype(np.float32)
    return [float(v) * 1000 for v in sig[:-1]], sig


class StepDistillSolver(FlowSolver):
    """lightx2v's few-step samplers (``lightx2v/models/schedulers/wan/step_distill/scheduler.py``): predict
    ``x0 = x − σ_i·v``; the last step returns x0. Before it, ``renoise`` (Wan2.1 distill LoRAs,
    ``WanStepDistillScheduler``) draws fresh noise ε (from ``key``, one split per step) and returns
    ``(1 − σ_{i+1})·x0 + σ_{i+1}·ε``; without (Wan2.2 A14B distill, ``Wan22StepDistillScheduler``) it is the
    Euler step ``x0 + σ_{i+1}·v``. Stateless in the step order; the torch generator's draws cannot be matched."""

    def __init__(self, timesteps, sigmas, renoise: bool = True, key: mx.array | None = None):
        self.renoise, self.key = renoise, mx.random.key(0) if key is None else key
        super().__init__(timesteps, sigmas)

    def step(self, v, i, x):
        s, s_next = self._sigma(i), self._sigma(i + 1)
        x0 = x - s * v
        if s_next == 0.0:
            return x0
        if not self.renoise:
            return x0 + s_next * v
        eps = mx.random.normal(x.shape, dtype=x.dtype, key=mx.random.split(self.key, i + 1)[i])
        return (1.0 - s_next) * x0 + s_next * eps


def make_wan_solver(name: str, num_steps: int, shift: float, seed: int = 0) -> FlowSolver:
    """``make_solver`` plus lightx2v's few-step samplers: "lightx2v" (x0 + fresh noise, Wan2.1 distill LoRAs)
    and "lightx2v-euler" (Wan2.2 A14B distill), both on ``step_distill_grid``; ``seed`` seeds the re-noising."""
    if name in ("lightx2v", "lightx2v-euler"):
        return StepDistillSolver(
            *step_distill_grid(num_steps, shift), renoise=name == "lightx2v", key=mx.random.key((seed + 1) % 2**32)
        )
    return make_solver(name, num_steps, shift)
