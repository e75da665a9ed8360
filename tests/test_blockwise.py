"""Just-in-time block weights (mlx_video/nn/blockwise.py) on the Wan DiT, tiny and on the CPU.

- streaming from the safetensors file equals the resident forward bit for bit (bf16 and quantized files, 1-3
  blocks resident, two forwards in a row);
- per-block dequantization equals, bit for bit, a dense model holding the dequantized weights, stays within a
  stated tolerance of ``mx.quantized_matmul`` and within the quantization error of the bf16 model;
- with streaming the peak is the non-block weights + ``resident`` blocks + activations (a forward that kept
  every block resident fails it), and after a forward no block holds data;
- ``mx.load`` is lazy (the fact streaming relies on, docs/streaming.md).
"""

from __future__ import annotations

import gc

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from mlx_video.backend import backend
from mlx_video.io.weights import WeightsError, load_strict, quantize_linears, save_safetensors
from mlx_video.nn import blockwise
from mlx_video.nn.blockwise import BlockWeights, SafetensorsBlocks, dequantized
from mlx_video.wan.transformer import WanModel, WanModelArgs

TINY = dict(
    model_type="ti2v", dim=64, ffn_dim=128, num_heads=2, num_layers=4, in_dim=8, out_dim=8, text_dim=32, text_len=16
)
GRID = (2, 4, 4)  # latent T, h, w -> 2 x 2 x 2 = 8 tokens
# dequantize + dense bf16 matmul vs mx.quantized_matmul (which accumulates differently and rounds once):
# relative error of the velocity, measured 5.6e-3 (affine 4-bit), 5.1e-3 (8-bit), 4.1e-3 (mxfp8), 3.6e-3 (mxfp4)
TOL_QMM = 1e-2
# vs the bf16 model: the quantization error itself at these tiny widths (group 32 over 64 inputs), measured
# affine 4-bit 1.09e-1, 8-bit 1.48e-2, mxfp8 3.5e-2, mxfp4 1.49e-1
TOL_QUANT = {"affine4": 0.15, "affine8": 0.03, "mxfp8": 0.06, "mxfp4": 0.2}
MODES = {
    "affine4": dict(bits=4, group_size=32, mode="affine"),
    "affine8": dict(bits=8, group_size=32, mode="affine"),
    "mxfp8": dict(bits=8, group_size=32, mode="mxfp8"),
    "mxfp4": dict(bits=4, group_size=32, mode="mxfp4"),
}


def _random_(model: nn.Module, seed: int, dtype=mx.bfloat16) -> nn.Module:
    rng = np.random.default_rng(seed)
    new = []
    for name, p in tree_flatten(model.parameters()):
        v = rng.standard_normal(p.shape).astype(np.float32)
        v = 1 + 0.1 * v if "norm" in name else v * (0.1 if p.ndim < 2 else 1 / np.sqrt(p.shape[-1]))
        new.append((name, mx.array(v).astype(dtype)))
    model.update(tree_unflatten(new))
    mx.eval(model.parameters())
    return model


def _inputs(args: WanModelArgs, model: WanModel, dtype=mx.bfloat16):
    T, h, w = GRID
    rng = np.random.default_rng(7)
    x = mx.array(rng.standard_normal((1, T, h, w, args.in_dim)).astype(np.float32))
    ctx = model.embed_text([mx.array(rng.standard_normal((5, args.text_dim)).astype(np.float32)).astype(dtype)])
    rope = model.rope_tables((T, h // 2, w // 2))
    t = mx.array([[0.0] + [500.0] * (T - 1)])
    mx.eval(x, ctx, rope.even, rope.odd)
    return x, t, ctx, rope


def _quantize(model: WanModel, q: dict) -> WanModel:
    nn.quantize(model, **q, class_predicate=lambda p, m: isinstance(m, nn.Linear) and m.weight.shape[1] % 32 == 0)
    mx.eval(model.parameters())
    return model


@pytest.fixture(scope="module")
def bf16_file(tmp_path_factory):
    """(args, path of a bf16 DiT safetensors file with random weights)."""
    args = WanModelArgs(**TINY)
    m = _random_(WanModel(args), 0)
    path = tmp_path_factory.mktemp("blockwise") / "dit.safetensors"
    save_safetensors(path, dict(tree_flatten(m.parameters())))
    return args, path


def _loaded(args, path, q=None) -> WanModel:
    """A model as the pipeline loads it: quantized structure first, then the file's (lazy) arrays."""
    m = WanModel(args)
    if q:
        quantize_linears(m, {"bits": q["bits"], "group_size": q["group_size"]})
    return load_strict(m, mx.load(str(path)), "tiny DiT")


def _velocity(model, args):
    x, t, ctx, rope = _inputs(args, model)
    v = model(x, t, ctx, rope)
    mx.eval(v)
    return v


def test_mx_load_is_lazy(tmp_path):
    """mx.load reads the header only; a tensor is read (and allocated) when evaluated, one at a time."""
    path = tmp_path / "w.safetensors"
    mx.save_safetensors(str(path), {f"w{i}": mx.ones((256, 256)) for i in range(4)})
    gc.collect()
    mx.clear_cache()
    base = mx.get_active_memory()
    w = mx.load(str(path))
    assert mx.get_active_memory() - base == 0
    mx.eval(w["w0"])
    assert mx.get_active_memory() - base == 256 * 256 * 4
    del w
    assert mx.get_active_memory() - base == 0


@pytest.mark.parametrize("resident", [1, 2, 3])
def test_streamed_forward_equals_resident(bf16_file, resident):
    args, path = bf16_file
    ref = _velocity(_loaded(args, path), args)
    m = _loaded(args, path)
    m.block_weights = BlockWeights(m.blocks, SafetensorsBlocks(path), resident=resident)
    for _ in range(2):  # the second forward reads every block again
        assert mx.array_equal(_velocity(m, args), ref)


@pytest.mark.parametrize("dequantize", [False, True])
def test_streamed_quantized_file_equals_resident(tmp_path, bf16_file, dequantize):
    args, path = bf16_file
    q = MODES["affine4"]
    qm = _quantize(_loaded(args, path), q)
    qpath = tmp_path / "dit_q4.safetensors"
    save_safetensors(qpath, dict(tree_flatten(qm.parameters())))
    qm.block_weights = BlockWeights(qm.blocks, dequantize=dequantize)
    ref = _velocity(qm, args)
    m = _loaded(args, qpath, q)
    m.block_weights = BlockWeights(m.blocks, SafetensorsBlocks(qpath), resident=2, dequantize=dequantize)
    assert mx.array_equal(_velocity(m, args), ref)


def _rel(a, b) -> float:
    a, b = a.astype(mx.float32), b.astype(mx.float32)
    return float(mx.linalg.norm(a - b) / mx.linalg.norm(b))


@pytest.mark.parametrize("mode", list(MODES))
def test_dequantize_per_block(bf16_file, mode):
    args, path = bf16_file
    v_bf16 = _velocity(_loaded(args, path), args)
    qm = _quantize(_loaded(args, path), MODES[mode])
    v_qmm = _velocity(qm, args)
    assert all(isinstance(b.ffn.fc1, nn.QuantizedLinear) for b in qm.blocks)
    qm.block_weights = BlockWeights(qm.blocks, dequantize=True)
    v_deq = _velocity(qm, args)
    assert all(isinstance(b.ffn.fc1, nn.QuantizedLinear) for b in qm.blocks)  # swapped back

    # a dense model holding the dequantized block weights (the rest as quantized) gives the same bits
    dense = _quantize(_loaded(args, path), MODES[mode])
    for b in dense.blocks:
        for p, ql in [(p, m) for p, m in b.named_modules() if isinstance(m, nn.QuantizedLinear)]:
            blockwise._set_child(b, p, blockwise.dequantized_linear(ql))
    assert mx.array_equal(_velocity(dense, args), v_deq)
    e_qmm, e_bf16 = _rel(v_deq, v_qmm), _rel(v_deq, v_bf16)
    print(f"{mode}: dequantize-per-block vs quantized_matmul {e_qmm:.2e}, vs bf16 {e_bf16:.2e}")
    assert e_qmm < TOL_QMM
    assert e_bf16 < TOL_QUANT[mode]


def test_policy():
    assert blockwise.dequantize_pays(1, "cpu")
    assert not blockwise.dequantize_pays(100, "cuda") and blockwise.dequantize_pays(27280, "cuda")
    assert not blockwise.dequantize_pays(1024, "metal") and blockwise.dequantize_pays(27280, "metal")
    bw = BlockWeights([], dequantize=None)
    assert bw.dequantizing(8) == blockwise.dequantize_pays(8)
    assert not BlockWeights([], dequantize=False).dequantizing(10**6)


def test_policy_env(monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_DEQUANTIZE_MIN_TOKENS", "100")
    assert not blockwise.dequantize_pays(99, "cpu") and blockwise.dequantize_pays(100, "cuda")


def test_swap_restored_on_error(bf16_file):
    args, path = bf16_file
    qm = _quantize(_loaded(args, path), MODES["affine8"])
    with pytest.raises(RuntimeError), dequantized(qm.blocks[0]):
        assert isinstance(qm.blocks[0].self_attn.q, nn.Linear) and not isinstance(
            qm.blocks[0].self_attn.q, nn.QuantizedLinear
        )
        raise RuntimeError("in the block")
    assert isinstance(qm.blocks[0].self_attn.q, nn.QuantizedLinear)


def test_streamed_blocks_released_after_an_error(bf16_file):
    """A block that raises mid-loop leaves no streamed block holding data: the running one and the prefetched ones
    are released (given fresh arrays from the source) before the error propagates."""
    args, path = bf16_file
    m = _loaded(args, path)
    src = SafetensorsBlocks(path)
    reads = []

    def source(i):
        reads.append(i)
        return src(i)

    bw = BlockWeights(m.blocks, source, resident=2)
    assert reads == [0, 1, 2, 3]  # attaching releases every block
    reads.clear()

    def step(block, h):
        if block is m.blocks[1]:
            raise RuntimeError("in block 1")
        return h

    with pytest.raises(RuntimeError, match="in block 1"):
        bw.run(step, mx.zeros((1,)), tokens=1)
    assert sorted(reads) == [0, 1, 2]  # 0 after it ran; 1 (failed) and 2 (prefetched) on the way out


def test_other_models_blocks_refused(bf16_file):
    args, path = bf16_file
    a, b = _loaded(args, path), _loaded(args, path)
    b.block_weights = BlockWeights(a.blocks, dequantize=True)
    with pytest.raises(ValueError, match="other blocks"):
        _velocity(b, args)


def test_source_checked(bf16_file):
    args, path = bf16_file
    m = _loaded(args, path)

    def short(i):
        w = SafetensorsBlocks(path)(i)
        del w["ffn.fc1.bias"]
        return w

    with pytest.raises(WeightsError, match=r"block 0 weights: missing keys.*ffn\.fc1\.bias"):
        BlockWeights(m.blocks, short)
    with pytest.raises(ValueError, match="resident"):
        BlockWeights(m.blocks, SafetensorsBlocks(path), resident=0)


# ----------------------------------------------------------------------------- memory

WIDE = dict(TINY, dim=256, ffn_dim=1024, num_heads=4, num_layers=8)


def _nbytes(tree) -> int:
    return sum(v.nbytes for _, v in tree_flatten(tree))


def _peak(fn) -> int:
    gc.collect()
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    out = fn()
    mx.eval(out)
    return mx.get_peak_memory() - base, mx.get_active_memory() - base - out.nbytes


@pytest.mark.skipif(backend() != "cpu", reason="sizes measured with MLX's CPU allocator")
def test_streaming_peak(tmp_path):
    """Peak of a streamed forward ~ resident blocks + activations (non-block weights resident, counted in base)."""
    args = WanModelArgs(**WIDE)
    path = tmp_path / "dit.safetensors"
    save_safetensors(path, dict(tree_flatten(_random_(WanModel(args), 1).parameters())))
    gc.collect()
    m = _loaded(args, path)
    block = _nbytes(m.blocks[0].parameters())
    inputs = _inputs(args, m)
    mx.eval([v for k, v in tree_flatten(m.parameters()) if not k.startswith("blocks.")])
    resident_peak, _ = _peak(lambda: m(*inputs))  # evaluates (and keeps) every block
    act = resident_peak - args.num_layers * block
    peaks = {}
    for n in (1, 2):
        m = _loaded(args, path)
        mx.eval([v for k, v in tree_flatten(m.parameters()) if not k.startswith("blocks.")])
        m.block_weights = BlockWeights(m.blocks, SafetensorsBlocks(path), resident=n)
        peaks[n], held = _peak(lambda m=m: m(*inputs))
        print(
            f"resident {n}: peak {peaks[n] / 2**20:.2f} MB, expected {(n * block + act) / 2**20:.2f} "
            f"(block {block / 2**20:.2f} MB, activations {act / 2**20:.2f} MB; all resident {resident_peak / 2**20:.2f})"
        )
        assert held == 0  # no block holds data after the forward
        assert abs(peaks[n] - (n * block + act)) < 0.5 * block
    assert peaks[2] - peaks[1] > 0.5 * block


@pytest.mark.skipif(backend() != "cpu", reason="sizes measured with MLX's CPU allocator")
def test_dequantize_peak():
    """Per-block dequantization holds one block's dense copy at a time: its peak is the quantized forward's
    plus about one bf16 block (plus the CPU's affine-dequantize temporaries, ~4x the largest linear), far from
    the all-blocks-dense ``num_layers`` blocks."""
    args = WanModelArgs(**WIDE)
    qm = _quantize(_random_(WanModel(args), 1), MODES["affine8"])
    block = _nbytes(_random_(WanModel(args), 1).blocks[0].parameters())
    inputs = _inputs(args, qm)
    qmm_peak, _ = _peak(lambda: qm(*inputs))
    qm.block_weights = BlockWeights(qm.blocks, dequantize=True)
    deq_peak, held = _peak(lambda: qm(*inputs))
    print(
        f"dequantize per block: peak {deq_peak / 2**20:.2f} MB, quantized_matmul {qmm_peak / 2**20:.2f} MB, "
        f"bf16 block {block / 2**20:.2f} MB x {args.num_layers} blocks"
    )
    assert held == 0
    assert deq_peak < qmm_peak + 3 * block
