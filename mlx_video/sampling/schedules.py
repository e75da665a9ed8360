"""Flow-matching noise schedules (sigma grids) for Wan and LTX-2.

Flow matching here means ``x_sigma = (1 - sigma) * x0 + sigma * noise``; sigma runs from (about) 1
down to 0 and the DiT receives ``timestep = sigma * 1000``. All tables are computed on the host in
float64 (NumPy) and handed out as float32, as the references store them.
"""

from __future__ import annotations

import math

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigma, shift: float):
    """Flow shift ``s * sigma / (1 + (s - 1) * sigma)`` (Wan / SD3 "shift"; s > 1 spends more steps
    at high noise). ``sigma``: float or NumPy array in [0, 1]; returns the same kind, float64."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def _grid(sigmas: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Official timesteps (int64-truncated ``sigma * 1000``) and float32 sigmas with 0 appended."""
    timesteps = (sigmas * NUM_TRAIN_TIMESTEPS).astype(np.int64)
    return [int(t) for t in timesteps], np.append(sigmas, 0.0).astype(np.float32)


def wan_unipc_schedule(num_steps: int, shift: float) -> tuple[list[int], np.ndarray]:
    """Wan's UniPC grid (``FlowUniPCMultistepScheduler(shift=1).set_timesteps(N, shift=s)``).

    Starts at the training schedule's sigma_max, 1 - 1/1000 rounded to float32 (so the first
    timestep is 999), linearly spaced to 0, then shifted. Returns (timesteps: N ints,
    sigmas: float32 [N + 1], last 0).
    """
    sigma_max = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))
    sigmas = np.linspace(sigma_max, 0.0, num_steps + 1)[:-1]
    return _grid(shift_sigmas(sigmas, shift))


def wan_flow_schedule(num_steps: int, shift: float) -> tuple[list[int], np.ndarray]:
    """Wan's DPM++ / Euler grid (``get_sampling_sigmas(N, s)`` passed to ``retrieve_timesteps``).

    Starts at sigma = 1 (first timestep 1000). Returns (timesteps: N ints, sigmas: float32 [N + 1],
    last 0).
    """
    sigmas = np.linspace(1.0, 0.0, num_steps + 1)[:num_steps]
    return _grid(shift_sigmas(sigmas, shift))


# ---------------------------------------------------------------------------------------------
# LTX-2 (ltx-core 1.0.0 `components.schedulers.LTX2Scheduler`, `ltx_pipelines.utils.constants`)

DISTILLED_SIGMAS = np.array([1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0], dtype=np.float32)
"""LTX-2 distilled stage-1 schedule (8 steps)."""
STAGE2_DISTILLED_SIGMAS = np.array([0.909375, 0.725, 0.421875, 0.0], dtype=np.float32)
"""LTX-2 stage-2 / refinement schedule (3 steps); the stage-2 input is re-noised to its first sigma."""

LTX2_DEFAULT_TOKENS = 4096  # what every pipeline but HQ uses (they pass no latent to the scheduler)


def ltx2_token_shift(num_tokens: int, base_shift: float = 0.95, max_shift: float = 2.05) -> float:
    """LTX-2's log-shift, linear in the token count through (1024, base) and (4096, max), unclamped."""
    slope = (max_shift - base_shift) / (4096 - 1024)
    return num_tokens * slope + (base_shift - slope * 1024)


def ltx2_sigmas(
    steps: int,
    num_tokens: int = LTX2_DEFAULT_TOKENS,
    base_shift: float = 0.95,
    max_shift: float = 2.05,
    terminal: float | None = 0.1,
) -> np.ndarray:
    """LTX2Scheduler: token-aware shifted schedule, float32 [steps + 1] from 1 to 0.

    ``num_tokens`` = F·H·W of the stage's latent grid (HQ) or 4096 (dev, two-stage). Non-zero
    sigmas get ``e^s / (e^s + 1/sigma - 1)`` and are then stretched so the last non-zero one equals
    ``terminal`` (None: no stretch). Computed in float64 (the reference uses float32; they agree
    to ~1e-7).
    """
    s = ltx2_token_shift(num_tokens, base_shift, max_shift)
    sigmas = np.linspace(1.0, 0.0, steps + 1)
    nz = sigmas != 0
    sigmas[nz] = math.exp(s) / (math.exp(s) + (1.0 / sigmas[nz] - 1.0))
    if terminal is not None and sigmas[nz][-1] < 1.0:  # one step: nothing to stretch
        one_minus = 1.0 - sigmas[nz]
        sigmas[nz] = 1.0 - one_minus * (1.0 - terminal) / one_minus[-1]
    return sigmas.astype(np.float32)


RES2S_LAST_SIGMA = 0.0011


def res2s_sigmas(sigmas: np.ndarray) -> np.ndarray:
    """The grid res2s actually steps on: a final 0 becomes ``[..., 0.0011, 0]`` (the last RK step
    ends at 0.0011 and a plain denoise there gives the result). float32."""
    sigmas = np.asarray(sigmas, dtype=np.float32)
    if sigmas[-1] != 0:
        return sigmas
    return np.concatenate([sigmas[:-1], np.array([RES2S_LAST_SIGMA, 0.0], np.float32)])
