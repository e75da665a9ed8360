"""benchmarks/mac_time.py: its FLOP formula against the matmuls our Wan DiT actually runs, and its tables."""

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from benchmarks import mac_time
from benchmarks.common import mlx_random_
from mlx_video.wan.transformer import PatchEmbedding, WanModel, WanModelArgs


def _counted_forward_flops(monkeypatch, model_type, tokens_grid):
    """FLOPs of one forward counted at every nn.Linear, patch embedding (a matmul) and fused attention call."""
    count = {"n": 0}
    linear, sdpa, patch = nn.Linear.__call__, mx.fast.scaled_dot_product_attention, PatchEmbedding.__call__

    def embed(self, x):
        out = patch(self, x)
        count["n"] += 2 * int(np.prod(out.shape[:-1])) * self.weight.size
        return out

    def lin(self, x):
        o, i = self.weight.shape
        count["n"] += 2 * int(np.prod(x.shape[:-1])) * i * o
        return linear(self, x)

    def attn(q, k, v, *a, **kw):
        count["n"] += 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        return sdpa(q, k, v, *a, **kw)

    d = 256
    m = mlx_random_(
        WanModel(
            WanModelArgs(model_type=model_type, dim=d, ffn_dim=512, num_heads=2, num_layers=2, in_dim=48, out_dim=48)
        ),
        mx.float32,
        0,
    )
    ctx = m.embed_text([mx.zeros((24, 4096))])
    T, h, w = tokens_grid
    rope = m.rope_tables((T, h // 2, w // 2))
    L = T * h * w // 4
    monkeypatch.setattr(nn.Linear, "__call__", lin)
    monkeypatch.setattr(PatchEmbedding, "__call__", embed)
    monkeypatch.setattr(mx.fast, "scaled_dot_product_attention", attn)
    t = np.full((1, L), 500.0, np.float32) if model_type == "ti2v" else np.array([500.0], np.float32)
    mx.eval(m(mx.zeros((1, T, h, w, 48)), t, ctx, rope))
    return count["n"], mac_time.forward_flops(d, 512, 2, L, 48, 48)


@pytest.mark.parametrize("grid", [(3, 8, 8), (2, 16, 16)])
def test_formula_matches_the_matmuls_of_a_forward(monkeypatch, grid):
    counted, formula = _counted_forward_flops(monkeypatch, "ti2v", grid)
    assert abs(formula / counted - 1) < 0.01, (counted, formula)


def test_tables_from_an_e2e_record(tmp_path):
    rec = dict(bench="e2e", task="t2v-5B", model="ti2v-5B", size="full", video="121x704x1280", tokens=27280)
    rec.update(layers=30, step_median_s=2.17, quantize_bits=None, mlx_device="Device(gpu, 0)")
    f = tmp_path / "e2e_t2v_full.json"
    f.write_text(json.dumps(rec))
    rows = mac_time.rows_from(f)
    assert round(rows[0]["flops"] / 1e12) == 1034  # 2 forwards of 27,280 tokens through 30 blocks
    md = mac_time.tables(rows, mac_time.MLX_H100_MATMUL, mac_time.MAC_MATMUL_FRACTION)
    assert "| t2v-5B 121x704x1280 | 27,280 | 1,034 | 2.17 | 476 | 89% | 48% |" in md
    assert sum(line.startswith("| t2v-5B") for line in md.splitlines()) == 2 and "M2 Ultra (76c)" in md
    out = tmp_path / "t.md"
    assert mac_time.main([str(f), "--out", str(out)]) == 0 and out.read_text().startswith("| job")
