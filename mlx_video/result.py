"""The one result type both families' pipelines return, and the run meter that fills its timings and peak memory."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np


@dataclass
class GenerationResult:
    """What a generation returns, for Wan and LTX-2 alike.

    - ``frames``: uint8 numpy [F, H, W, 3] (RGB; F = 1 for one-frame inference), or None when not decoded.
    - ``fps``: frames per second of the video (int).
    - ``latents``: the final video latents, float32 MLX array (Wan [1, T, h, w, C]; LTX-2 [1, T, h, w, C]).
    - ``audio``: float32 numpy [samples, channels] in [-1, 1] and ``sample_rate`` in Hz (LTX-2 with audio), else None.
    - ``audio_latents``: LTX-2's final audio latents [1, t, C_a], else None.
    - ``params``: the full parameter set of the run (JSON-able), written into the video's metadata.
    - ``timings``: seconds per phase (``text``, ``encode``, ``denoise``, ``decode``, ...).
    - ``peak_memory_gib``: MLX peak memory over the run in GiB (2**30 bytes); ``phase_peak_gib`` per phase.
    - ``stage_latents``: per-stage latents of multi-stage pipelines (list of arrays), else empty.
    """

    frames: np.ndarray | None
    fps: int
    latents: mx.array | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    audio_latents: mx.array | None = None
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    peak_memory_gib: float = 0.0
    phase_peak_gib: dict = field(default_factory=dict)
    stage_latents: list = field(default_factory=list)


GIB = float(1 << 30)


class Meter:
    """Times named phases and records MLX peak memory (GiB) per phase and over the whole run.

    ``with meter.phase("denoise"): ...`` adds the elapsed seconds to ``timings["denoise"]``; ``fill(result)``
    copies timings and peaks into a :class:`GenerationResult`. Peak memory is ``mx.get_peak_memory`` (reset at
    construction and at the start of each phase; the run's peak is the maximum over phases).
    """

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.phase_peak_gib: dict[str, float] = {}
        mx.reset_peak_memory()

    @contextmanager
    def phase(self, name: str):
        mx.reset_peak_memory()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
            peak = mx.get_peak_memory() / GIB
            self.phase_peak_gib[name] = max(self.phase_peak_gib.get(name, 0.0), peak)

    @property
    def peak_gib(self) -> float:
        return max(self.phase_peak_gib.values(), default=mx.get_peak_memory() / GIB)

    def fill(self, result: GenerationResult) -> GenerationResult:
        result.timings = dict(self.timings)
        result.phase_peak_gib = dict(self.phase_peak_gib)
        result.peak_memory_gib = self.peak_gib
        return result


class NonFiniteError(RuntimeError):
    """Latents or decoded frames became NaN or infinite (names the step and the likely cause)."""


def check_finite(x: mx.array | bool, where: str, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming ``where`` (e.g. ``"after step 3"``) if ``x`` holds NaN or inf
    (``x`` a bool: whether the values, checked elsewhere, were all finite)."""
    finite = x if isinstance(x, bool) else bool(mx.all(mx.isfinite(x)).item())
    if not finite:
        msg = f"non-finite values (NaN or inf) {where}"
        raise NonFiniteError(msg + (f"; {hint}" if hint else ""))
