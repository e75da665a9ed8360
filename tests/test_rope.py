"""mlx_video.nn.rope, the one RoPE module: Wan's interleaved tables against wan.modules.model's
rope_params / rope_apply, LTX-2's split tables (built in ltx2.transformer from fractional positions)
against ltx-core's precompute_freqs_cis (that comparison lives in tests/test_ltx2_transformer.py),
and the shared angle builder's layout."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.ltx2.transformer import fractional_angles, rope_table
from mlx_video.nn.rope import apply_rope_interleaved, nd_rope_tables, rope_angles, split_rope_table
from mlx_video.wan.transformer import WanModel, WanModelArgs
from tests.oracles import wan


def test_wan_tables_match_rope_apply():
    ref = wan().model
    rope_apply, rope_params = ref.rope_apply, ref.rope_params
    d, grid = 24, (3, 4, 5)  # head dim 24: axes 8 / 8 / 8 channels
    m = WanModel(
        WanModelArgs(
            model_type="t2v", dim=48, num_heads=2, num_layers=0, ffn_dim=8, freq_dim=8, text_dim=8, in_dim=4, out_dim=4
        )
    )
    rope = m.rope_tables(grid)
    freqs = torch.cat(
        [rope_params(1024, d - 4 * (d // 6)), rope_params(1024, 2 * (d // 6)), rope_params(1024, 2 * (d // 6))], dim=1
    )
    L = int(np.prod(grid))
    x = np.random.default_rng(0).standard_normal((1, L, 2, d)).astype(np.float32)
    want = rope_apply(torch.from_numpy(x), torch.tensor([grid]), freqs).numpy()
    got = np.array(apply_rope_interleaved(mx.array(x), rope))
    np.testing.assert_allclose(got, want, atol=2e-6)
    rev = m.rope_tables(grid, t_positions=[2, 1, 0])  # positions are data: reversed time
    np.testing.assert_array_equal(np.array(rev.even).reshape(3, -1), np.array(rope.even).reshape(3, -1)[::-1])


def test_angles_layout():
    pos = np.array([[[1.0, 10.0], [2.0, 20.0]]])  # [B=1, T=2, A=2]
    ang = rope_angles(pos, np.array([1.0, 0.5, 3.0]), [1, 0, 1])
    np.testing.assert_array_equal(ang, [[[10.0, 0.5, 30.0], [20.0, 1.0, 60.0]]])
    t = nd_rope_tables((np.arange(2), np.arange(3)), (4, 2), theta=100.0)
    assert t.even.shape == (6, 1, 3, 2)
    # token (1, 2): axis 0 angles 1 * [1, 0.1], axis 1 angle 2 * 1
    np.testing.assert_allclose(np.array(t.cos)[5, 0], np.cos([1.0, 0.1, 2.0]), rtol=1e-6)
    # LTX-2: frequency-major, axis-minor, 2 p / max - 1
    frac = fractional_angles(np.array([[[0.0, 10.0], [5.0, 5.0]]], np.float32), [10.0, 20.0], inner_dim=8)
    g = (10000.0 ** np.linspace(0, 1, 2) * np.pi / 2).astype(np.float32)
    np.testing.assert_allclose(frac[0, 0], [-g[0], -g[0] * 0.5, -g[1], -g[1] * 0.5], rtol=1e-6)


def test_split_table_padding_and_errors():
    ang = np.zeros((1, 2, 3), np.float32)
    tab = split_rope_table(ang, 8, 2)  # 4 angle slots, 3 angles: one (cos 1, sin 0) in front
    assert tab.cos.shape == (1, 2, 2, 2) and np.all(np.array(tab.cos) == 1) and np.all(np.array(tab.sin) == 0)
    with pytest.raises(ValueError, match="cannot lay 5 RoPE angles"):
        split_rope_table(np.zeros((1, 2, 5), np.float32), 8, 2)
    with pytest.raises(ValueError, match=r"positions must be \[B, 3, T"):
        rope_table(np.zeros((1, 2, 4, 2)), 32, 2, [20, 2048, 2048])
