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
