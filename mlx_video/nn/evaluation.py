"""Evaluation pacing for deep stacks of blocks over long sequences."""

from __future__ import annotations

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
