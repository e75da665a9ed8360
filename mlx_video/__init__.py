"""mlx_video: Wan 2.1/2.2 and LTX-2/2.3 video diffusion in MLX.

Public API (imported lazily, so ``import mlx_video`` stays cheap):

- ``WanPipeline`` / ``WanSettings``: a converted Wan folder -> ``generate(WanSettings(task=..., ...))``
  (t2v, ti2v, mi2v, i2v, flf2v with bidirectional sampling, one-frame inference, A14B experts).
- ``GenerationResult``: what both families' pipelines return (uint8 frames, fps, latents, params, timings).
- ``LTX2Components``, ``LTXSettings``, ``ImageCondition``, ``generate_ltx2``: the LTX-2 pipelines over
  loaded components (``AudioCondition`` for a2vid, ``ControlVideo`` + ``with_ic_loras`` for ic-lora,
  ``RetakeSource`` + ``read_video`` for retake) (``load_ltx2_components`` / ``encode_ltx2_text`` from a folder made by
  ``resolve_ltx2_model`` or ``mlx_video convert``).
- Conditioning shared by both families: ``LatentAnchor``, ``ChannelCondition`` (Wan ``y`` channels),
  ``GuidingTokens`` (LTX-2 keyframe tokens).
"""

import os
from importlib import import_module

# MLX's CUDA backend keeps one cuDNN graph per convolution configuration (shapes, dtype, strides) in an LRU
# cache of $MLX_CUDA_CONV_CACHE_SIZE entries (default 128), read once when MLX starts. A distilled LTX-2 run at
# 768x512x121 convolves in about 178 configurations (12 decode tiles of distinct shapes x 9 layer shapes, plus
# the audio decoder and vocoder), so with 128 every run rebuilds graphs evicted by the last, and MLX raises
# after 2 x capacity misses in a process (mlx 0.32 lru_cache.h). An entry is a built graph, no activations.
# os.environ.setdefault: only a default; a value the user set (even "128") is kept, never overridden.
os.environ.setdefault("MLX_CUDA_CONV_CACHE_SIZE", "1024")  # effective when mlx_video is imported before mlx

__version__ = "0.1.0"

_EXPORTS = {
    "WanPipeline": ("mlx_video.wan.pipeline", "WanPipeline"),
    "WanSettings": ("mlx_video.wan.settings", "WanSettings"),
    "GenerationResult": ("mlx_video.result", "GenerationResult"),
    "LTX2Components": ("mlx_video.ltx2.pipelines", "LTX2Components"),
    "LTXSettings": ("mlx_video.ltx2.settings", "LTXSettings"),
    "ImageCondition": ("mlx_video.ltx2.settings", "ImageCondition"),
    "AudioCondition": ("mlx_video.ltx2.settings", "AudioCondition"),
    "ControlVideo": ("mlx_video.ltx2.settings", "ControlVideo"),
    "RetakeSource": ("mlx_video.ltx2.settings", "RetakeSource"),
    "read_video": ("mlx_video.io.video", "read_video"),
    "with_ic_loras": ("mlx_video.ltx2.loading", "with_ic_loras"),
    "generate_ltx2": ("mlx_video.ltx2.pipelines", "generate"),
    "load_ltx2_components": ("mlx_video.ltx2.loading", "load_components"),
    "encode_ltx2_text": ("mlx_video.ltx2.loading", "encode_text"),
    "resolve_ltx2_model": ("mlx_video.ltx2.loading", "resolve_ltx2_model"),
    "LatentAnchor": ("mlx_video.conditioning", "LatentAnchor"),
    "ChannelCondition": ("mlx_video.conditioning", "ChannelCondition"),
    "GuidingTokens": ("mlx_video.ltx2.conditioning", "GuidingTokens"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'mlx_video' has no attribute {name!r}")
