"""Small regressions from the review: argument and config checks, the import-time env default."""

import os
import subprocess
import sys

import pytest

from mlx_video.ltx2 import loading
from mlx_video.ltx2.gemma_vision import VisionArgs


@pytest.mark.parametrize("bad", [True, False, -1, 1.5, "2"])
def test_load_transformer_rejects_non_int_stream_blocks(bad):
    # checked before anything is read, so no folder is needed
    with pytest.raises(ValueError, match="stream_blocks"):
        loading.load_transformer("/nonexistent", {"transformer": {}}, stream_blocks=bad)


def test_vision_args_zero_image_tokens_names_the_field():
    with pytest.raises(ValueError, match="mm_tokens_per_image"):
        VisionArgs.from_config({"mm_tokens_per_image": 0})
    assert VisionArgs.from_config({}).mm_tokens_per_image == 256


def test_conv_cache_env_default_keeps_user_value():
    code = "import os, mlx_video; print(os.environ['MLX_CUDA_CONV_CACHE_SIZE'])"
    env = dict(os.environ, MLX_CUDA_CONV_CACHE_SIZE="77")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "77"
    env.pop("MLX_CUDA_CONV_CACHE_SIZE")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1024"


def test_streamed_merge_of_callable_diffs_keeps_nothing_resident(tmp_path):
    """Full-tensor diffs (``.diff`` on a linear weight, ``.diff_b`` on its bias) of a LoRA given as a callable,
    merged into streamed blocks: after every block has been read (merged) and let go, nothing of the diffs or
    their sums stays alive in the hook (before the fix the plan held the evaluated float32 sums for the run)."""
    import gc

    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np

    from mlx_video.io.weights import save_safetensors
    from mlx_video.nn.blockwise import BlockWeights, SafetensorsBlocks
    from mlx_video.nn.lora import merge_loras

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(256, 256)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = [Block() for _ in range(4)]

    g = np.random.default_rng(0)
    model = Model()
    stored, lora = tmp_path / "model.safetensors", tmp_path / "lora.safetensors"
    save_safetensors(stored, dict(nn.utils.tree_flatten(model.parameters())))
    diffs = {}
    for i in range(4):
        diffs[f"blocks.{i}.lin.diff"] = mx.array(g.standard_normal((256, 256)).astype(np.float32))
        diffs[f"blocks.{i}.lin.diff_b"] = mx.array(g.standard_normal((256,)).astype(np.float32))
    save_safetensors(lora, diffs)
    size = sum(v.nbytes for v in diffs.values())
    model.block_weights = bw = BlockWeights(model.blocks, SafetensorsBlocks(stored), resident=1)
    merge_loras(model, [(lambda: mx.load(str(lora)), 0.5)])
    base = mx.load(str(stored))
    gc.collect()
    before = mx.get_active_memory()
    for i in range(4):
        bw.release(i)
        lin = model.blocks[i].lin
        want = base[f"blocks.{i}.lin.weight"] + 0.5 * diffs[f"blocks.{i}.lin.diff"]
        assert mx.allclose(lin.weight, want, atol=1e-6).item()
        assert mx.allclose(lin.bias, base[f"blocks.{i}.lin.bias"] + 0.5 * diffs[f"blocks.{i}.lin.diff_b"]).item()
    for i in range(4):
        bw.release(i)  # fresh unevaluated arrays: what stays is what the hook holds
    del base, want, lin
    gc.collect()
    assert mx.get_active_memory() - before < 0.25 * size
