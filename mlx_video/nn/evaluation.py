"""Evaluation pacing for deep stacks of blocks over long sequences."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx


class OneBlockAhead:
    """Evaluate block outputs with one block in flight: ``async_eval`` the newest, wait for the previous.

    Building a whole deep forward as one lazy graph lets MLX hold many blocks' activations at once.
    Measured on an H100 (MLX CUDA, bf16, benchmarks/README.md), LTX-2 transformer at 768x512x121 with
    audio, 48 blocks: one graph 0.60 s / 50.3 GiB peak; ``mx.eval`` after every block 0.65 s / 40.7 GiB
    (short blocks: the GPU idles at each sync); this pacing 0.54 s / 44.5 GiB. For the Wan DiT's long
    blocks the plain per-block ``mx.eval`` costs only 2.6% and keeps the peak lowest, so Wan uses that.
    Use: ``pace = OneBlockAhead()``, then ``pace(h)`` after each block.
    """

    def __init__(self):
        self.prev: tuple = ()

    def __call__(self, *arrays: mx.array | None) -> None:
        arrays = tuple(a for a in arrays if a is not None)
        mx.async_eval(*arrays)
        if self.prev:
            mx.eval(*self.prev)
        self.prev = arrays


Pace = Callable[..., None]
"""``pace(phase, *arrays)``: called inside a block loop with the name of the sub-step ("phase") that just ran and
the arrays it produced (None entries allowed), e.g. to evaluate them; phase "block" is a block's output. A model
names its phases (e.g. :data:`mlx_video.ltx2.transformer.PHASES`)."""


def no_pace(phase: str, *arrays) -> None:
    """The :data:`Pace` that evaluates nothing (the whole loop stays one lazy graph)."""


class SubstepPacing:
    """A :data:`Pace`: :class:`OneBlockAhead` (``async_eval`` the newest outputs, wait for the previous ones) at
    every phase when the forward has at least ``min_tokens`` tokens (``tokens``; per rank), else only at block
    ends (phase "block"). ``fine``: whether it paces every phase.

    Why (docs/ltx2.md §2.9): MLX keeps every input of the kernels it has queued but not finished (the CUDA
    backend until the whole CUDA graph they were batched into completes: up to 100 kernels on an H100), so a
    lazily built block holds all its intermediates at once, and one block in flight two blocks' worth:
    ~8 GiB at 6,144 LTX-2 video tokens. Pacing inside the block bounds that by the largest sub-step pair.
    """

    def __init__(self, tokens: int, min_tokens: int):
        self.fine = tokens >= min_tokens
        self.ahead = OneBlockAhead()

    def __call__(self, phase: str, *arrays) -> None:
        if self.fine or phase == "block":
            self.ahead(*arrays)
