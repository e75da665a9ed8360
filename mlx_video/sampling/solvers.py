"""Flow-matching ODE solvers on a fixed sigma grid (Wan: UniPC, DPM++ 2M, Euler).

Every solver takes the model's *velocity* ``v`` (flow prediction, ``x0 = x - sigma * v``) at step
``i`` and the current latent ``x`` (mx.array float32, any shape) and returns the latent at
``sigmas[i + 1]``. Step coefficients are computed on the host in float64 from the float32 sigma
grid; the array arithmetic runs in the latents' dtype. The references (Wan's
``FlowUniPCMultistepScheduler`` / ``FlowDPMSolverMultistepScheduler``) compute the coefficients
with float32 torch scalars; over 50 random-velocity steps the two agree to ~1e-6 relative.

Multistep solvers keep their history inside: call ``step`` for i = 0, 1, ..., N-1 in order and
``reset()`` before sampling again.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..conditioning import blend_clean
from .schedules import res2s_sigmas, wan_flow_schedule, wan_unipc_schedule


def euler_step(x: mx.array, v: mx.array, sigma: float, sigma_next: float) -> mx.array:
    """Plain flow Euler step ``x + (sigma_next - sigma) * v`` (stateless).

    Equals first-order DPM++ in data-prediction form, which WanFM's bidirectional sampler writes
    out; from sigma = 1 and to sigma = 0 without special cases.
    """
    return x + (float(sigma_next) - float(sigma)) * v


def _lam(sigma: float) -> float:
    """Half log-SNR ``lambda = log(alpha / sigma)`` with alpha = 1 - sigma (finite for 0 < sigma < 1)."""
    return math.log(1.0 - sigma) - math.log(sigma)


class FlowSolver:
    """A sigma grid plus a step rule.

    Attributes: ``timesteps`` (list[int], what the DiT receives at each step), ``sigmas``
    (np.float32 [N + 1], last 0), ``num_steps`` (N).
    """

    def __init__(self, timesteps: list[int], sigmas: np.ndarray):
        if len(sigmas) != len(timesteps) + 1 or sigmas[-1] != 0:
            raise ValueError("sigmas must have one more entry than timesteps and end in 0")
        self.timesteps = list(timesteps)
        self.sigmas = sigmas
        self.num_steps = len(timesteps)
        self.reset()

    def reset(self):
        """Forget the history (start a new trajectory)."""
        self._next = 0

    def _advance(self, i: int):
        if i != self._next:
            raise ValueError(f"{type(self).__name__}.step expects step {self._next}, got {i}; call reset()")
        self._next = i + 1

    def _sigma(self, i: int) -> float:
        return float(self.sigmas[i])

    def step(self, v: mx.array, i: int, x: mx.array) -> mx.array:
        """Latent at ``sigmas[i + 1]`` from velocity ``v`` and latent ``x`` at ``sigmas[i]``."""
        raise NotImplementedError


class FlowEuler(FlowSolver):
    """Flow Euler on the given grid (stateless: any step order is allowed)."""

    def step(self, v, i, x):
        return euler_step(x, v, self._sigma(i), self._sigma(i + 1))


class FlowDPMSolver(FlowSolver):
    """Multistep DPM-Solver++ (data prediction, 2M "midpoint"), Wan's ``sample_solver='dpm++'``.

    Follows ``FlowDPMSolverMultistepScheduler(solver_order=2, final_sigmas_type='zero')``: first
    order at step 0 and at the last step, second order otherwise. In flow form, with
    alpha = 1 - sigma and x0 = x - sigma_i * v:
    ``x' = (s'/s) x + (a' - s' a / s) (D0 + D1 / 2)``, D0 = x0_i, D1 = (h / h_prev)(x0_i - x0_{i-1}).
    A previous step from sigma = 1 has h_prev = inf, so D1 = 0 there (the reference's inf maths).
    """

    def __init__(self, timesteps, sigmas, order: int = 2):
        self.order = order
        super().__init__(timesteps, sigmas)

    def reset(self):
        super().reset()
        self._prev_x0 = None

    def step(self, v, i, x):
        self._advance(i)
        s, s_next = self._sigma(i), self._sigma(i + 1)
        x0 = x - s * v
        d = x0
        second = self.order == 2 and self._prev_x0 is not None and i < self.num_steps - 1
        s_prev = self._sigma(i - 1) if i > 0 else 1.0
        if second and s_prev < 1.0:
            ratio = (_lam(s_next) - _lam(s)) / (_lam(s) - _lam(s_prev))
            d = x0 + (0.5 * ratio) * (x0 - self._prev_x0)
        self._prev_x0 = x0
        return (s_next / s) * x + ((1.0 - s_next) - s_next * (1.0 - s) / s) * d


class FlowUniPC(FlowSolver):
    """UniPC (predictor UniP + corrector UniC, B(h) = e^h - 1 "bh2", data prediction), Wan's default.

    Follows ``FlowUniPCMultistepScheduler(solver_order=2, lower_order_final=True)`` with the
    corrector on from step 1. Order warms up (1, 2, 2, ...) and drops to 1 at the last step, which
    goes to sigma = 0 and returns the current x0 prediction (the reference gets there through
    inf arithmetic).
    """

    def __init__(self, timesteps, sigmas, order: int = 2):
        if order not in (1, 2):
            raise ValueError(f"UniPC order must be 1 or 2, got {order}")
        self.order = order
        super().__init__(timesteps, sigmas)

    def reset(self):
        super().reset()
        self._x0s: list[mx.array] = []  # x0 predictions at steps i-1, i-2 (newest last)
        self._last_x = None  # the (corrected) latent the last predictor started from
        self._last_order = 1

    def _uni_p(self, i, x, x0s, order):
        """Predictor from sigma_i to sigma_{i+1}; x0s[-1] is the x0 prediction at sigma_i."""
        s, s_next = self._sigma(i), self._sigma(i + 1)
        m0 = x0s[-1]
        if s_next == 0.0:
            return m0
        h = _lam(s_next) - _lam(s)
        b_h = math.expm1(-h)
        x_next = (s_next / s) * x - ((1.0 - s_next) * b_h) * m0
        if order == 2:
            r = (_lam(self._sigma(i - 1)) - _lam(s)) / h
            x_next = x_next - ((1.0 - s_next) * b_h * 0.5 / r) * (x0s[-2] - m0)
        return x_next

    def _uni_c(self, i, x, x0_i):
        """Corrector: redo the step sigma_{i-1} -> sigma_i with the new x0 prediction ``x0_i``."""
        s_prev, s = self._sigma(i - 1), self._sigma(i)
        m0 = self._x0s[-1]
        h = _lam(s) - _lam(s_prev)
        hh = -h
        b_h = math.expm1(hh)
        x_new = (s / s_prev) * self._last_x - ((1.0 - s) * b_h) * m0
        if self._last_order == 1:
            return x_new - ((1.0 - s) * b_h * 0.5) * (x0_i - m0)
        # order 2: solve [[1, 1], [r, 1]] rho = [b1, b2] with b_k = k! * h phi_{k+1}(hh) / B(h)
        r = (_lam(self._sigma(i - 2)) - _lam(s_prev)) / h
        phi2 = b_h / hh - 1.0
        phi3 = phi2 / hh - 0.5
        b1, b2 = phi2 / b_h, 2.0 * phi3 / b_h
        rho0 = (b1 - b2) / (1.0 - r)
        rho1 = b1 - rho0
        corr = (rho0 / r) * (self._x0s[-2] - m0) + rho1 * (x0_i - m0)
        return x_new - ((1.0 - s) * b_h) * corr

    def step(self, v, i, x):
        self._advance(i)
        x0 = x - self._sigma(i) * v
        if i > 0:
            x = self._uni_c(i, x, x0)
        self._x0s = (self._x0s + [x0])[-self.order :]
        order = min(self.order, self.num_steps - i, len(self._x0s))
        self._last_x, self._last_order = x, order
        return self._uni_p(i, x, self._x0s, order)


def make_solver(name: str, num_steps: int, shift: float) -> FlowSolver:
    """Wan's solver ``name`` ("unipc" | "dpm++" | "euler") over ``num_steps`` with flow ``shift``.

    "unipc" uses Wan's UniPC grid (sigma from 0.999, first timestep 999); "dpm++" and "euler" use
    ``get_sampling_sigmas`` (sigma from 1, first timestep 1000). Raises ValueError for other names.
    """
    if name == "unipc":
        return FlowUniPC(*wan_unipc_schedule(num_steps, shift))
    if name in ("dpm++", "dpmpp"):
        return FlowDPMSolver(*wan_flow_schedule(num_steps, shift))
    if name == "euler":
        return FlowEuler(*wan_flow_schedule(num_steps, shift))
    raise ValueError(f"unknown solver {name!r}; expected 'unipc', 'dpm++' or 'euler'")


# ---------------------------------------------------------------------------------------------
# LTX-2 steps (ltx-core 1.0.0 `components.diffusion_steps`, `components.noisers`,
# `ltx_pipelines.utils.{samplers,res2s,helpers}`). LTX models predict x0 ("denoised"), not v.
# Masks are per-token denoise masks (1 = generate, 0 = keep clean), broadcastable to the latent.


def euler_step_x0(x: mx.array, x0: mx.array, sigma: float, sigma_next: float) -> mx.array:
    """EulerDiffusionStep: velocity ``(x - x0) / sigma``, then ``x + v * (sigma_next - sigma)``.

    float32 (the reference stores the result in the latent dtype, bf16 in its pipelines). The step
    to sigma_next = 0 returns x0 up to rounding. Raises ValueError for sigma = 0.
    """
    sigma, sigma_next = float(sigma), float(sigma_next)
    if sigma == 0:
        raise ValueError("sigma can't be 0")
    return x + ((x - x0) / sigma) * (sigma_next - sigma)


def phi(j: int, z: float) -> float:
    """Exponential-integrator phi functions: phi_1(z) = (e^z - 1)/z, phi_2(z) = (e^z - 1 - z)/z^2,
    phi_j(z) = (e^z - sum_{k<j} z^k/k!) / z^j; phi_j(0) = 1/j!. Host float64."""
    if abs(z) < 1e-10:
        return 1.0 / math.factorial(j)
    rest = math.expm1(z) - sum(z**k / math.factorial(k) for k in range(1, j))
    return rest / z**j


def res2s_coefficients(h: float, c2: float = 0.5) -> tuple[float, float, float]:
    """res_2s Runge-Kutta weights for a log-sigma step ``h = log(sigma / sigma_next)``:
    ``a21 = c2 * phi_1(-c2 h)``, ``b2 = phi_2(-h) / c2``, ``b1 = phi_1(-h) - b2``."""
    a21 = c2 * phi(1, -h * c2)
    b2 = phi(2, -h) / c2
    return a21, phi(1, -h) - b2, b2


def sde_step(
    x_anchor: mx.array, x_det: mx.array, sigma: float, sigma_next: float, noise: mx.array, eta: float = 0.5
) -> mx.array:
    """Res2sDiffusionStep.step: re-noise the deterministic step ``x_anchor -> x_det`` (sigma ->
    sigma_next) with fresh ``noise`` of std ``sigma_up = eta * sigma_next``.

    With ``eps = (x_anchor - x_det) / (sigma - sigma_next)`` and ``x0 = x_anchor - sigma * eps``:
    ``alpha * (x0 + sigma_down * eps) + sigma_up * noise``, where sigma_res = sqrt(sigma_next^2 -
    sigma_up^2), alpha = 1 - sigma_next + sigma_res, sigma_down = sigma_res / alpha. Returns
    ``x_det`` when sigma_next = 0. Written as ``(alpha + k) x_anchor - k x_det + sigma_up noise``
    with host-float64 k, which avoids float32 cancellation in eps for small steps.
    """
    sigma, sigma_next = float(sigma), float(sigma_next)
    sigma_up = min(eta * sigma_next, 0.9999 * sigma_next)
    if sigma_next == 0 or sigma_up == 0:
        return x_det
    sigma_res = math.sqrt(max(sigma_next**2 - sigma_up**2, 0.0))
    alpha = (1.0 - sigma_next) + sigma_res
    k = (sigma_res - alpha * sigma) / (sigma - sigma_next)
    return (alpha + k) * x_anchor - k * x_det + sigma_up * noise


def res2s_noise(shape, key: mx.array) -> mx.array:
    """The res2s SDE noise: a normal draw standardised over the whole tensor, then per batch
    element over all other axes (unbiased std, as torch.std). float32 (the reference: float64)."""
    n = mx.random.normal(shape, key=key)
    n = (n - n.mean()) / mx.sqrt(mx.var(n, ddof=1))
    axes = tuple(range(1, n.ndim))
    return (n - n.mean(axis=axes, keepdims=True)) / mx.sqrt(mx.var(n, axis=axes, keepdims=True, ddof=1))


def res2s_sample(
    sigmas, latents: list[mx.array], denoise, noise=None, masks=None, cleans=None, bongmath: bool = True, seed: int = 0
) -> list[mx.array]:
    """The res_2s sampler loop over one or more jointly denoised latents (video, audio).

    Follows ``res2s_audio_video_denoising_loop`` (legacy mode, as every pipeline runs it):
    sigmas (float32 schedule ending in 0) -> ``res2s_sigmas``; per step sigma -> sigma_next with
    h = log(sigma / sigma_next) and midpoint sigma_mid = sqrt(sigma sigma_next):
    x0_1 = denoise(x, sigma); x_mid = x + h a21 (x0_1 - x), SDE re-noised to sigma_mid;
    (bong, if h < 0.5 and sigma > 0.03) the anchor becomes the fixed point
    x_a = (x_mid - c x0_1) / (1 - c), c = h a21 (closed form of the reference's 100 iterations);
    x0_2 = denoise(x_mid, sigma_mid); x' = x_a + h (b1 (x0_1 - x_a) + b2 (x0_2 - x_a)), SDE
    re-noised to sigma_next. Every x0 and every re-noised latent is blended with the clean latent
    by the mask. After the last step (to 0.0011) one more denoise gives the result.

    latents: list of mx.array float32. denoise(xs: list, sigma: float) -> list of raw x0.
    noise(step: int, substep: bool, index: int, like: mx.array) -> standard-normal-like array
    (default: ``res2s_noise`` from ``mx.random.key(seed)``; the reference seeds its own torch
    generators with -1 / 9999 and cannot be reproduced). masks / cleans: lists (or None) per latent.
    Deviation: latents stay float32 between steps (the reference rounds them to bf16).
    """
    n = len(latents)
    masks = masks or [None] * n
    cleans = cleans or [None] * n
    num_full = len(sigmas) - 1
    if noise is None:
        keys = mx.random.split(mx.random.key(seed), 2 * n * num_full)

        def noise(step, substep, index, like):
            return res2s_noise(like.shape, keys[(2 * step + (0 if substep else 1)) * n + index])

    blend = lambda xs: [blend_clean(x, m, c) for x, m, c in zip(xs, masks, cleans)]  # noqa: E731
    sig = [float(s) for s in res2s_sigmas(sigmas)]
    xs = list(latents)
    for i in range(num_full):
        s, s_next = sig[i], sig[i + 1]
        h = -math.log(s_next / s)
        a21, b1, b2 = res2s_coefficients(h)
        s_mid = math.sqrt(s * s_next)
        anchors = xs
        x0_1 = blend(denoise(xs, s))
        mids = [a + (h * a21) * (d - a) for a, d in zip(anchors, x0_1)]
        mids = blend([sde_step(a, m, s, s_mid, noise(i, True, k, a)) for k, (a, m) in enumerate(zip(anchors, mids))])
        if bongmath and h < 0.5 and s > 0.03:
            c = h * a21
            anchors = [(m - c * d) / (1.0 - c) for m, d in zip(mids, x0_1)]
        x0_2 = blend(denoise(mids, s_mid))
        nxt = [a + h * (b1 * (d1 - a) + b2 * (d2 - a)) for a, d1, d2 in zip(anchors, x0_1, x0_2)]
        xs = blend([sde_step(a, x, s, s_next, noise(i, False, k, a)) for k, (a, x) in enumerate(zip(anchors, nxt))])
    if sig[-1] == 0:
        xs = blend(denoise(xs, sig[num_full]))
    return xs
