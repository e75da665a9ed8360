"""Flow-matching noise schedules (sigma grids) for Wan and LTX-2.

Flow matching here means ``x_sigma = (1 - sigma) * x0 + sigma * noise``; sigma runs from (about) 1
down to 0 and the DiT receives ``timestep = sigma * 1000``. All tables are computed on the host in
float64 (NumPy) and handed out as float32, as the references store them.
"""
from __future__ import annotations

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
