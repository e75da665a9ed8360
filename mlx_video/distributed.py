"""Sequence parallelism for the Wan and LTX-2 DiTs over ``mx.distributed`` (docs/distributed.md).

One generation runs on the ranks of an ``mx.distributed`` group (started by ``mlx.launch``: ring or JACCL
between Macs, MPI, NCCL on CUDA). Every rank holds all weights and the whole latent; inside a DiT
forward each rank keeps only a contiguous slice of the tokens (the last one zero-padded to equal
length), so the per-token work (projections, FFN, norms, modulation) and the attention compute are
split ``n`` ways. Self-attention exchanges what it needs, as the official Wan code does with
``--ulysses_size`` (``wan/distributed/ulysses.py``, DeepSpeed-Ulysses):

* "ulysses" (heads divisible by the world size): an all-to-all turns token-sharded q/k/v
  [B, H, L/n, D] into head-sharded [B, H/n, L, D], attention runs over the whole sequence for H/n
  heads, and the inverse all-to-all brings the output back to token shards. MLX 0.32 has no
  all-to-all and the ring backend's send/recv reach only ring neighbours, so :func:`all_to_all`
  is an ``all_gather`` followed by slicing: exact, but it moves n times the data of a real one.
* "allgather" (any head count, the ring-attention result in one step): each rank gathers the
  whole K and V and attends its own queries to them. On MLX's collectives this moves less data
  than the emulated Ulysses (2 tensors gathered per layer instead of 4).

The result is the single-device result on every rank (tests/test_distributed.py: bit-equal on CPU).
Text encoding runs on rank 0 and :func:`broadcast` hands its output to the others. A tiled VAE decode
splits its tiles over the ranks (``mlx_video.nn.tiling.tiled_map(group=)``, LTX-2
``VideoVAE.iter_decode_tiled(group=)``). Not split: untiled VAE work and the weights (no tensor
parallelism); see the doc.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import mlx.core as mx

MODES = ("auto", "ulysses", "allgather")
_DTYPES = (mx.float32, mx.float16, mx.bfloat16, mx.int32, mx.int64, mx.uint32, mx.uint8, mx.bool_)
_MAX_NDIM = 8


class SequenceParallel:
    """A group of ranks that split the tokens of every DiT forward.

    group: an ``mx.distributed.Group`` (``mx.distributed.init()``); its size is the sequence-parallel
    world size (the official ``--ulysses_size``). mode: "auto" (Ulysses where the head count
    divides the world size, else all-gather K/V), "ulysses" or "allgather". Pass it as ``sp=`` to
    ``WanModel.__call__`` / ``LTXModel.__call__``; every rank must make the same calls with the same
    inputs. Raises ValueError for an unknown mode.
    """

    def __init__(self, group: mx.distributed.Group, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"sequence-parallel mode must be one of {MODES}, got {mode!r}")
        self.group, self.mode = group, mode
        self.rank, self.size = group.rank(), group.size()

    def __repr__(self) -> str:
        return f"SequenceParallel(rank={self.rank}, size={self.size}, mode={self.mode!r})"

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints and writes."""
        return self.rank == 0

    def split(self, length: int) -> TokenShard:
        """The shard of a sequence of ``length`` tokens held by this rank."""
        return TokenShard(self, int(length), -(-int(length) // self.size))

    def same(self, value: int) -> int:
        """Rank 0's ``value`` (an int, e.g. a random seed) on every rank."""
        return int(broadcast([mx.array([value], mx.int64)] if self.is_root else None, self.group)[0].item())

    def all_gather(self, x: mx.array) -> mx.array:
        """[n, *x.shape]: every rank's ``x`` stacked in rank order (shapes and dtypes must agree)."""
        return mx.distributed.all_gather(x[None], group=self.group)


@dataclass(frozen=True)
class TokenShard:
    """Rows ``[rank·chunk, (rank+1)·chunk)`` of a sequence of ``length`` tokens zero-padded to
    ``size·chunk``; made by :meth:`SequenceParallel.split`."""

    sp: SequenceParallel
    length: int
    chunk: int

    @property
    def start(self) -> int:
        return self.sp.rank * self.chunk

    def take(self, x: mx.array, axis: int = 1) -> mx.array:
        """This rank's ``chunk`` rows of ``x`` along ``axis`` (which must have ``length`` rows); rows past
        the end are zeros. Raises ValueError on a length mismatch."""
        if x.shape[axis] != self.length:
            raise ValueError(
                f"axis {axis} of {tuple(x.shape)} has {x.shape[axis]} rows, the shard is over {self.length}"
            )
        stop = min(self.start + self.chunk, self.length)
        part = mx.take(x, mx.arange(self.start, stop), axis=axis) if stop > self.start else None
        missing = self.chunk - max(stop - self.start, 0)
        if missing:
            shape = list(x.shape)
            shape[axis] = missing
            pad = mx.zeros(shape, x.dtype)
            part = pad if part is None else mx.concatenate([part, pad], axis=axis)
        return part

    def gather(self, x: mx.array, axis: int = 1) -> mx.array:
        """The whole sequence (``length`` rows along ``axis``) from every rank's ``chunk`` rows."""
        g = self.sp.all_gather(mx.moveaxis(x, axis, 0))  # [n, chunk, ...]
        g = g.reshape(-1, *g.shape[2:])[: self.length]
        return mx.moveaxis(g, 0, axis)

    def groups(self, e: mx.array, axis: int = 1) -> mx.array:
        """Per-group rows (timestep modulation) for this rank's tokens. ``e`` has G rows along ``axis``,
        G dividing ``length`` (token i belongs to group i // (length/G)); G = 1 is returned as is.
        Returns whole groups when the shard starts and ends on group borders, else one row per token."""
        G = e.shape[axis]
        if G == 1:
            return e
        if self.length % G:
            raise ValueError(f"{G} modulation groups do not divide {self.length} tokens")
        per = self.length // G
        if self.start % per == 0 and self.chunk % per == 0 and self.start + self.chunk <= self.length:
            return mx.take(e, mx.arange(self.start // per, (self.start + self.chunk) // per), axis=axis)
        tok = mx.minimum(mx.arange(self.start, self.start + self.chunk), self.length - 1)
        return mx.take(e, tok // per, axis=axis)

    def attention(
        self, q: mx.array, k: mx.array, v: mx.array, attend: Callable, local_queries: bool = True
    ) -> mx.array:
        """``attend(q, k, v)`` over the whole sequence from this rank's shard.

        q: [B, H, chunk, D] this rank's queries (or, with ``local_queries=False``, [B, H, Lq, D] queries
        every rank holds whole, e.g. audio attending to sharded video); k, v: [B, H, chunk, D] this
        rank's keys and values (already normed and rotated). Returns [B, H, chunk or Lq, D].
        Ulysses when the mode allows, the queries are local and H divides the world size, else
        all-gather K/V. Raises ValueError in mode "ulysses" when H does not divide.
        """
        sp, H, L = self.sp, q.shape[1], self.length
        if sp.mode == "ulysses" and local_queries and H % sp.size:
            raise ValueError(f"Ulysses needs the head count ({H}) divisible by the world size ({sp.size})")
        if sp.mode == "allgather" or not local_queries or H % sp.size:
            kv = self.gather(mx.stack([k, v]), axis=3)  # [2, B, H, L, D]
            return attend(q, kv[0], kv[1])
        qkv = all_to_all(sp, mx.stack([q, k, v]), split_axis=2, concat_axis=3)  # [3, B, H/n, n·chunk, D]
        out = attend(qkv[0], qkv[1, :, :, :L], qkv[2, :, :, :L])
        return all_to_all(sp, out, split_axis=2, concat_axis=1)  # [B, H, chunk, D]


def all_to_all(sp: SequenceParallel, x: mx.array, split_axis: int, concat_axis: int) -> mx.array:
    """All-to-all: cut ``x`` into ``size`` equal parts along ``split_axis``, part j goes to rank j; the
    parts received from ranks 0..n-1 are concatenated along ``concat_axis`` (same length along it
    on every rank). Emulated with ``all_gather`` + slicing (MLX 0.32 has no all-to-all; the ring
    backend's send/recv only reach neighbours), so every rank receives all parts and keeps its own."""
    n = sp.size
    if x.shape[split_axis] % n:
        raise ValueError(f"axis {split_axis} of {tuple(x.shape)} does not split {n} ways")
    part = x.shape[split_axis] // n
    g = sp.all_gather(x)  # [n, *x.shape]
    g = mx.take(g, mx.arange(sp.rank * part, (sp.rank + 1) * part), axis=split_axis + 1)
    g = mx.moveaxis(g, 0, concat_axis)  # [..., n, chunk, ...]
    shape = list(g.shape)
    shape[concat_axis : concat_axis + 2] = [shape[concat_axis] * shape[concat_axis + 1]]
    return g.reshape(shape)


def broadcast(arrays: Sequence[mx.array] | None, group: mx.distributed.Group, root: int = 0) -> list[mx.array]:
    """Rank ``root``'s list of arrays on every rank (others pass None): shapes and dtypes first, then
    the values, each as an ``all_sum`` with zeros from the other ranks (exact: x + 0 = x).
    Used for the text encoder's output, computed on one rank. Raises ValueError for an array of
    more than 8 dimensions or an unsupported dtype."""
    me = group.rank() == root
    arrays = list(arrays) if me else []
    count = mx.distributed.all_sum(mx.array([len(arrays) if me else 0], mx.int32), group=group).item()
    out = []
    for i in range(count):
        head = [0] * (2 + _MAX_NDIM)
        if me:
            a = arrays[i]
            if a.ndim > _MAX_NDIM or a.dtype not in _DTYPES:
                raise ValueError(f"cannot broadcast an array of shape {tuple(a.shape)} and dtype {a.dtype}")
            head[: 2 + a.ndim] = [_DTYPES.index(a.dtype), a.ndim, *a.shape]
        head = mx.distributed.all_sum(mx.array(head, mx.int32), group=group).tolist()
        dtype, shape = _DTYPES[head[0]], head[2 : 2 + head[1]]
        x = arrays[i] if me else mx.zeros(shape, dtype)
        wire = mx.float32 if dtype == mx.bool_ else dtype
        out.append(mx.distributed.all_sum(x.astype(wire), group=group).astype(dtype))
    mx.eval(out)
    return out


def on_root(fn: Callable[[], Sequence[mx.array]], group: mx.distributed.Group | None) -> list[mx.array]:
    """Run ``fn`` (e.g. the text encoder) on rank 0 only and give its arrays to every rank; without a
    group (or a group of one) just ``fn()``."""
    if group is None or group.size() == 1:
        return list(fn())
    return broadcast(fn() if group.rank() == 0 else None, group)


_ACTIVE: list[SequenceParallel] = []


@contextmanager
def active(sp: SequenceParallel | None):
    """Within the block, DiT calls made without ``sp=`` use ``sp`` (for pipelines that call the model
    themselves, e.g. the LTX-2 stages); ``None`` changes nothing."""
    if sp is None:
        yield
        return
    _ACTIVE.append(sp)
    try:
        yield
    finally:
        _ACTIVE.pop()


def current(sp: SequenceParallel | None = None) -> SequenceParallel | None:
    """``sp`` if given, else the innermost :func:`active` one, else None."""
    return sp if sp is not None else (_ACTIVE[-1] if _ACTIVE else None)


def init(ulysses_size: int | None, backend: str = "any", mode: str = "auto") -> SequenceParallel | None:
    """The sequence-parallel group for a CLI run: ``mx.distributed.init(backend=...)`` and a check that
    ``ulysses_size`` equals the world size that ``mlx.launch`` started. None, 0 or 1 (the default)
    accept any world: launched on n ranks the DiT is still split n ways (the ranks never repeat each
    other's work). Returns None for a world of one. Raises ValueError when the sizes disagree."""
    want = 1 if ulysses_size in (None, 0) else int(ulysses_size)
    group = mx.distributed.init(backend=backend) if want > 1 or _launched() else None
    size = group.size() if group is not None else 1
    if want not in (1, size):
        raise ValueError(f"--ulysses_size {want} needs {want} ranks started by mlx.launch; this world has {size}")
    return SequenceParallel(group, mode) if size > 1 else None


def _launched() -> bool:
    return any(k in os.environ for k in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"))
