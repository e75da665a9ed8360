"""Evaluation pacing and activation memory of the LTX-2 transformer's block loop (docs/ltx2.md §2.9).

Pacing only changes when MLX evaluates, never the values; the memory bound is the per-phase analysis of
docs/ltx2.md §2.9 measured on the CPU in bf16 at a small-but-wide size.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from benchmarks import common, ltx2_block_memory
from benchmarks.ltx2_transformer import checkpoint_config
from mlx_video.ltx2.transformer import PHASES, LTXModel, LTXModelArgs, Modality, Perturbations
from tests.ltx_tiny import attention_widths

NARROW = attention_widths(2, 16, 32, 2, 8, 16)
# small but wide: heads of 256 so that the attention scores (materialised by MLX's CPU attention) stay small
# next to the [T, D] activations the bound is about
WIDE = attention_widths(2, 256, 512, 2, 128, 256)


def _model(flavour: str, widths: dict, layers: int, dtype=mx.float32) -> LTXModel:
    args = LTXModelArgs.from_config(checkpoint_config(flavour, widths, layers))
    args.caption_channels = 64
    return common.mlx_random_(LTXModel(args), dtype, 0)


def _inputs(model: LTXModel, n_video: int, n_audio: int, per_token: bool, dtype=mx.float32):
    a = model.args
    rng = np.random.default_rng(1)
    arr = lambda *s: mx.array(rng.standard_normal(s).astype(np.float32)).astype(dtype)  # noqa: E731
    vpos, apos = ltx2_block_memory.positions(1, 1, n_video, n_audio)
    rope = model.rope_tables(vpos, apos)
    s = mx.array([0.7])
    tv = mx.array(rng.uniform(0, 0.7, (1, n_video)).astype(np.float32)) if per_token else s
    ta = mx.full((1, n_audio), 0.7) if per_token else s
    ctx = a.caption_channels if a.caption_projection else a.cross_attention_dim
    actx = a.caption_channels if a.caption_projection else a.audio_cross_attention_dim
    video = Modality(arr(1, n_video, a.in_channels), tv, s, arr(1, 8, ctx))
    audio = Modality(arr(1, n_audio, a.audio_in_channels), ta, s * 0.5, arr(1, 8, actx))
    mx.eval(rope, video.latent, video.context, audio.latent, audio.context, tv, ta)
    return video, audio, rope


@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_pacing_changes_no_value(flavour):
    """Every pacing mode (and the default at both sides of substep_pacing_tokens) gives the same bits."""
    model = _model(flavour, NARROW, 2)
    video, audio, rope = _inputs(model, 12, 5, per_token=True)
    p = Perturbations(({"video_self_attn": [1], "a2v_cross_attn": [0]},))
    outs = [model(video, audio, rope, p)]
    model.substep_pacing_tokens = 0  # the default now paces inside blocks
    outs.append(model(video, audio, rope, p))
    for mode in ltx2_block_memory.MODES:
        outs.append(model(video, audio, rope, p, pace=ltx2_block_memory.make_pace(mode)))
    mx.eval(outs)
    for ov, oa in outs[1:]:
        assert np.array_equal(np.array(ov), np.array(outs[0][0])) and np.array_equal(np.array(oa), np.array(outs[0][1]))


def test_pace_phases_in_order():
    model = _model("ltx2", NARROW, 2)
    video, audio, rope = _inputs(model, 12, 5, per_token=False)
    seen = []
    model(video, audio, rope, pace=lambda phase, *xs: seen.append(phase))
    assert seen == [ph for ph in PHASES if ph != "video_text"] * 2
    seen.clear()
    model(
        video,
        None,
        model.rope_tables(ltx2_block_memory.positions(1, 1, 12, 5)[0]),
        pace=lambda ph, *xs: seen.append(ph),
    )
    assert seen == ["video_qkv", "video_self", "video_text", "block"] * 2
    seen.clear()  # STG in every block: no q/k/v, so no video_qkv phase
    model(video, audio, rope, Perturbations(({"video_self_attn": None},)), pace=lambda ph, *xs: seen.append(ph))
    assert "video_qkv" not in seen and seen.count("block") == 2


def test_block_loop_activation_bound():
    """bf16, per-token timesteps, 512 video tokens of width D = 512: evaluated phase by phase, no phase of a
    block needs more than 20 [T, D] bf16 units on top of what is resident, and the resident activations stay
    under 16 units (docs/ltx2.md §2.9: the float32 residual 2, the per-token bf16 modulation 6 + embedding 2,
    RoPE tables 2, the inputs). The code before issue 11's fix needed 28-29 units per block (its finest
    evaluation: one block) and held the per-token modulation in float32 (12 units)."""
    model = _model("ltx2", WIDE, 2, mx.bfloat16)
    n_video = 512
    video, audio, rope = _inputs(model, n_video, 32, per_token=True, dtype=mx.bfloat16)
    unit = n_video * model.args.inner_dim * 2
    model(video, audio, rope, pace=ltx2_block_memory.make_pace("block-eval"))  # compile once
    resident = mx.get_active_memory()
    rec = ltx2_block_memory.PhaseRecorder()
    mx.eval(model(video, audio, rope, pace=rec))
    later = [(phase, peak / unit, (active - resident) / unit) for blk, phase, peak, active in rec.rows if blk >= 1]
    assert len(later) == 5
    assert max(p for _, p, _ in later) < 20, later
    assert max(r for _, _, r in later) < 16, later


def test_benchmark_tiny_writes_json(tmp_path):
    out = tmp_path / "act.json"
    r = ltx2_block_memory.main(
        [
            "--video",
            "9x64x64",
            "--modes",
            "block-ahead,substep-ahead",
            "--warmup",
            "0",
            "--repeat",
            "1",
            "--text-tokens",
            "16",
        ]
        + ["--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["stages"].keys() == r["stages"].keys() == {"stage1", "stage2"}
    st = saved["stages"]["stage2"]
    assert st["video_tokens"] == 2 * 2 * 2 and set(st["pacing"]) == {"block-ahead", "substep-ahead"}
    assert "block0 video_qkv (+ stream inputs)" in st["phases"] and "output" in st["phases"]
