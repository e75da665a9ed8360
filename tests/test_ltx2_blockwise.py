"""Just-in-time block weights (mlx_video/nn/blockwise.py) on the LTX-2 / LTX-2.3 transformer, tiny, on the CPU:
streamed from its safetensors file it equals the resident forward bit for bit; dequantized per block it stays
within a stated tolerance of the quantized-matmul forward (the same harness as tests/test_ltx2_transformer.py)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from mlx_video.io.weights import save_safetensors
from mlx_video.nn import blockwise
from mlx_video.nn.blockwise import BlockWeights, SafetensorsBlocks
from tests.test_ltx2_transformer import _inputs, _ours, _reference, _run_ours

# bf16 weights: dequantize + dense bf16 matmul vs quantized_matmul (in float32 on the CPU the two are identical)
TOL_QMM = 5e-2  # measured: LTX-2 video 8.9e-3, audio 8.2e-3; LTX-2.3 video 2.0e-2, audio 5.0e-3


def _rel(a, b) -> float:
    return float(mx.linalg.norm(a - b) / mx.linalg.norm(b))


@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_streamed_forward_equals_resident(tmp_path, flavour):
    ref = _reference(flavour)
    x = _inputs(flavour, appended=True)
    ov, oa = _run_ours(_ours(flavour, ref), x)
    m = _ours(flavour, ref)
    path = tmp_path / "transformer.safetensors"
    save_safetensors(path, dict(tree_flatten(m.parameters())))
    m = _ours(flavour, ref)
    m.block_weights = BlockWeights(m.transformer_blocks, SafetensorsBlocks(path, "transformer_blocks.{}."), resident=1)
    for _ in range(2):
        sv, sa = _run_ours(m, x)
        assert mx.array_equal(sv, ov) and mx.array_equal(sa, oa)


@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_dequantized_per_block(flavour, monkeypatch):
    ref = _reference(flavour)
    x = _inputs(flavour, appended=False)
    m = _ours(flavour, ref)
    m.set_dtype(mx.bfloat16)
    nn.quantize(
        m,
        group_size=32,
        bits=8,
        class_predicate=lambda p, mod: isinstance(mod, nn.Linear) and mod.weight.shape[1] % 32 == 0,
    )
    assert any(isinstance(q, nn.QuantizedLinear) for _, q in m.transformer_blocks[0].named_modules())
    qv, qa = _run_ours(m, x)
    m.block_weights = BlockWeights(m.transformer_blocks, dequantize=True)
    swaps = []
    monkeypatch.setattr(
        blockwise, "dequantized_linear", lambda q, dt=None, f=blockwise.dequantized_linear: swaps.append(q) or f(q, dt)
    )
    dv, da = _run_ours(m, x)
    ev, ea = _rel(dv, qv), _rel(da, qa)
    print(f"{flavour}: dequantize-per-block vs quantized_matmul video {ev:.1e}, audio {ea:.1e}")
    n_q = sum(isinstance(q, nn.QuantizedLinear) for b in m.transformer_blocks for _, q in b.named_modules())
    assert len(swaps) == n_q > 0  # every quantized linear of every block ran dequantized
    assert 0 < ev < TOL_QMM and ea < TOL_QMM
