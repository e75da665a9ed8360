"""Just-in-time block weights: a transformer's blocks get their weights right before they run.

Two uses of one mechanism (docs/streaming.md), for any model that runs a list of blocks one after the other:

1. **Per-block dequantization.** The weights stay quantized in memory; before a block runs, each of its
   ``nn.QuantizedLinear`` layers is swapped for a plain ``nn.Linear`` whose weight is ``mx.dequantize`` of the
   stored one (in the compute dtype), the block runs ordinary matmuls, and the layers are swapped back after it,
   dropping the dequantized copy. MLX arrays are immutable, so there is no buffer to write into; the freed copy
   goes to MLX's buffer cache and the next block's dequantize (the same sizes) reuses it. Peak: the quantized
   weights + one block in the compute dtype + activations.
2. **Block streaming.** The blocks' weights stay in the safetensors file. ``mx.load`` is lazy: it reads the header
   and returns arrays that are read from the file only when evaluated (checked in tests/test_blockwise.py and
   docs/streaming.md), and an array that is never evaluated holds no memory. So a block is "released" by giving it
   fresh, unevaluated arrays from ``mx.load`` and "loaded" by evaluating them: at most ``resident`` blocks hold
   data at once (the running one and the ones prefetched with ``mx.async_eval`` while it computes). Weights outside
   the blocks (embeddings, head) stay resident. Quantized files stream the same way (and dequantize per block as
   in 1 when the policy says so).

Policy (``dequantize_pays``): dequantizing costs ~one read of the quantized weights and one write + read of the
dequantized ones per block (memory-bound, independent of the token count), while ``mx.quantized_matmul`` is slower
than a dense matmul once the product is compute-bound (many tokens). So per-block dequantization is chosen when a
forward has at least ``DEQUANTIZE_MIN_TOKENS[backend()]`` tokens (batch x sequence; ``mlx_video.backend``), else the
quantized matmul. The numbers behind each threshold are in docs/streaming.md (``python -m benchmarks.blockwise
--crossover`` measures them); ``dequantize=True / False`` on :class:`BlockWeights` overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..backend import backend

# Fewest tokens per forward (batch x sequence) from which dequantize-per-block beats mx.quantized_matmul.
# cpu: MLX 0.32.4's CPU quantized matmul is 15-27x slower than dequantize + matmul at every size measured
#   (1024x1024 weights, 16 to 4096 rows, 4 and 8 bit; docs/streaming.md), so always.
# cuda: lent H100, MLX 0.32.4: the Wan TI2V-5B DiT at 27,280 tokens runs 2.25x slower with 4-bit weights
#   through quantized_matmul; below ~1k rows the products are memory-bound and the quantized read pays.
# metal: not measured here; MLX's Metal quantized kernels are its best-tuned ones, so only large products
#   dequantize. Re-measure with ``python -m benchmarks.blockwise --crossover``.
DEQUANTIZE_MIN_TOKENS = {"cpu": 1, "cuda": 1024, "metal": 4096}


def dequantize_pays(tokens: int, backend_name: str | None = None) -> bool:
    """Whether a forward over ``tokens`` tokens (batch x sequence) should run its quantized linears as
    dequantize-per-block + dense matmul rather than ``mx.quantized_matmul`` (module docstring).
    ``$MLX_VIDEO_DEQUANTIZE_MIN_TOKENS`` replaces the backend's threshold (ValueError naming it unless a whole
    number >= 0)."""
    from ..checks import env_number

    limit = env_number("MLX_VIDEO_DEQUANTIZE_MIN_TOKENS", DEQUANTIZE_MIN_TOKENS[backend_name or backend()], whole=True)
    return tokens >= limit


def _quantized_paths(module: nn.Module) -> list[tuple[str, nn.QuantizedLinear]]:
    return [(p, m) for p, m in module.named_modules() if isinstance(m, nn.QuantizedLinear)]


def _set_child(root: nn.Module, path: str, value: nn.Module) -> None:
    *parents, last = path.split(".")
    obj = root
    for p in parents:
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    obj[int(last) if isinstance(obj, list) else last] = value


def dequantized_linear(q: nn.QuantizedLinear, dtype: mx.Dtype | None = None) -> nn.Linear:
    """A plain ``nn.Linear`` with ``mx.dequantize`` of ``q``'s weight (lazy; any mode ``mx.dequantize``
    knows: affine, mxfp4, mxfp8, nvfp4) and ``q``'s bias. ``dtype``: of the weight; default: the scales'
    dtype when floating (affine), else bfloat16."""
    if dtype is None:
        dtype = q.scales.dtype if mx.issubdtype(q.scales.dtype, mx.floating) else mx.bfloat16
    w = mx.dequantize(
        q.weight,
        q.scales,
        q.get("biases"),
        group_size=q.group_size,
        bits=q.bits,
        mode=q.mode,
        dtype=dtype,
    )
    lin = nn.Linear(1, 1, bias="bias" in q)  # its tiny random init is lazy and replaced, never evaluated
    lin.weight = w
    if "bias" in q:
        lin.bias = q.bias
    return lin


@contextmanager
def dequantized(block: nn.Module, dtype: mx.Dtype | None = None):
    """Within the ``with``: ``block``'s quantized linears replaced by dequantized dense ones
    (:func:`dequantized_linear`); restored on exit, also on an error. Yields ``block``."""
    swapped = _quantized_paths(block)
    try:
        for path, q in swapped:
            _set_child(block, path, dequantized_linear(q, dtype))
        yield block
    finally:
        for path, q in swapped:
            _set_child(block, path, q)


class SafetensorsBlocks:
    """Block ``i``'s weights as unevaluated arrays from a safetensors file: the tensors named
    ``prefix.format(i) + name``, returned as ``{name: array}`` (``mx.load`` reads nothing until an array
    is evaluated). ``dtype``: floating tensors cast to it (lazily; quantized integer tensors kept), as
    the loaders' ``set_dtype`` does. ``path`` may be a list of files (sharded checkpoints). One header read
    serves every block until a block is asked for again (1.5 ms per read of a 900-tensor header here); the
    arrays kept meanwhile are unevaluated and hold no memory."""

    def __init__(self, path, prefix: str = "blocks.{}.", dtype: mx.Dtype | None = None):
        self.paths = [str(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
        self.prefix, self.dtype = prefix, dtype
        self._unread: list[dict] = []  # unevaluated arrays of the last header read, not yet handed out

    def __call__(self, i: int) -> dict[str, mx.array]:
        pre = self.prefix.format(i)
        out = self._take(pre)
        if not out:  # handed out already (or first call): read the header again, one read per pass
            self._unread = [mx.load(p) for p in self.paths]
            out = self._take(pre)
        return out

    def _take(self, pre: str) -> dict[str, mx.array]:
        out = {}
        for d in self._unread:
            for k in [k for k in d if k.startswith(pre)]:
                v = d.pop(k)
                if self.dtype is not None and mx.issubdtype(v.dtype, mx.floating) and v.dtype != self.dtype:
                    v = v.astype(self.dtype)
                out[k[len(pre) :]] = v
        return out


class BlockWeights:
    """Just-in-time weights for ``blocks`` (module docstring): attach to a model and run its block loop
    through :func:`run_blocks`.

    source: ``i -> {name: unevaluated array}`` for block i (e.g. :class:`SafetensorsBlocks`), or None to
    keep the blocks resident. resident: with a source, how many blocks hold weights at once (>= 1; the
    running one plus ``resident - 1`` prefetched with ``mx.async_eval``). dequantize: True / False forces
    per-block dequantization of quantized linears on / off; None chooses per forward with
    :func:`dequantize_pays`. dtype: of the dequantized weights (default: see :func:`dequantized_linear`).

    Attaching with a source releases every block at once (their current arrays are dropped for
    unevaluated ones from the source), checking the source's names and shapes against each block:
    raises ``mlx_video.io.weights.WeightsError`` naming block and keys when they differ.

    hook: None, or ``hook(i, weights) -> weights`` applied to block i's weights each time they are read
    from the source (:meth:`set_hook`; e.g. merged LoRAs, :func:`mlx_video.nn.lora.merge_loras`).
    """

    hook: Callable[[int, Mapping[str, mx.array]], Mapping[str, mx.array]] | None = None

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        source: Callable[[int], Mapping[str, mx.array]] | None = None,
        resident: int = 1,
        dequantize: bool | None = None,
        dtype: mx.Dtype | None = None,
    ):
        if source is not None and (not isinstance(resident, int) or resident < 1):
            raise ValueError(f"resident blocks must be an integer >= 1, got {resident!r}")
        self.blocks, self.source = list(blocks), source
        self.resident = min(resident, len(self.blocks)) if source is not None else len(self.blocks)
        self.dequantize, self.dtype = dequantize, dtype
        if source is not None:
            for i in range(len(self.blocks)):
                self.release(i)

    @property
    def streaming(self) -> bool:
        """Whether the blocks' weights come from a source (streamed) rather than staying resident."""
        return self.source is not None

    def set_hook(self, hook: Callable[[int, Mapping[str, mx.array]], Mapping[str, mx.array]] | None) -> None:
        """Read every block through ``hook`` from now on (None: as the source gives them): ``hook(i, w)``
        gets block i's unevaluated arrays from the source and returns the ones the block runs with (same
        names and shapes; lazy, so whatever it computes happens when the block's weights are evaluated,
        once per read). Every block is released again at once, so the next forward sees it. Streaming only
        (ValueError otherwise: resident blocks are never re-read, change their weights in place)."""
        if not self.streaming:
            raise ValueError("a block weights hook needs streamed blocks (resident ones are never re-read)")
        self.hook = hook
        for i in range(len(self.blocks)):
            self.release(i)

    def release(self, i: int) -> None:
        """Give block ``i`` fresh unevaluated arrays from the source, through the hook if one is set (its
        evaluated ones are dropped)."""
        from ..io.weights import check_keys

        w = self.source(i)
        if self.hook is not None:
            w = self.hook(i, w)
        block = self.blocks[i]
        check_keys({k: v.shape for k, v in tree_flatten(block.parameters())}, w, f"block {i} weights")
        block.update(tree_unflatten(list(w.items())))

    def prefetch(self, i: int) -> None:
        """Start reading block ``i``'s weights (``mx.async_eval``) so they are there when it runs."""
        mx.async_eval([v for _, v in tree_flatten(self.blocks[i].parameters())])

    def dequantizing(self, tokens: int) -> bool:
        """Whether a forward over ``tokens`` tokens runs the quantized linears dequantized per block."""
        return dequantize_pays(tokens) if self.dequantize is None else self.dequantize

    def run(self, step: Callable, state, tokens: int, evaluate: Callable = mx.eval, blocks: Sequence | None = None):
        """``state = step(block, state)`` for each block in order with its weights just in time;
        ``evaluate(state)`` after each block (before the block is released). ``blocks``: the model's block
        list, checked to be the one this was made for (raises ValueError otherwise, e.g. for a copied
        model that kept the original's BlockWeights). Returns the final state. When ``step`` or ``evaluate``
        raises (or the run is interrupted), the streamed blocks that may hold data (the running one and those
        prefetched) are released before the error propagates, so the next run starts with none resident."""
        if blocks is not None and (
            len(blocks) != len(self.blocks) or any(a is not b for a, b in zip(blocks, self.blocks))
        ):
            raise ValueError("these BlockWeights were made for other blocks (a copied model?): attach new ones")
        deq = self.dequantizing(tokens)
        n = len(self.blocks)
        ahead = self.resident - 1 if self.streaming else 0
        i = 0
        try:
            for j in range(1, min(ahead, n - 1) + 1):
                self.prefetch(j)
            for i, block in enumerate(self.blocks):
                if self.streaming and 0 < i and i + ahead < n:  # blocks i .. i+ahead in flight
                    self.prefetch(i + ahead)
                if deq:
                    with dequantized(block, self.dtype):
                        state = step(block, state)
                        evaluate(state)
                else:
                    state = step(block, state)
                    evaluate(state)
                if self.streaming:
                    self.release(i)
        except BaseException:
            if self.streaming:  # blocks i .. i+ahead may hold data: drop it (their arrays go back to the source's)
                for j in range(i, min(i + ahead + 1, n)):
                    self.release(j)
            raise
        return state


def run_blocks(
    blocks: Sequence[nn.Module],
    step: Callable,
    state,
    block_weights: BlockWeights | None = None,
    tokens: int = 0,
    evaluate: Callable = mx.eval,
):
    """A model's block loop: ``state = step(block, state)`` then ``evaluate(state)`` for each block;
    through ``block_weights`` (:class:`BlockWeights`) when given. ``tokens``: batch x sequence of this
    forward (for the dequantization policy). Returns the final state."""
    if block_weights is None:
        for block in blocks:
            state = step(block, state)
            evaluate(state)
        return state
    return block_weights.run(step, state, tokens, evaluate, blocks)
