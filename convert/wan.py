"""Convert an official Wan 2.1 / 2.2 checkpoint (official folder or ``-Diffusers`` repo) to an mlx_video folder.

A thin entry point over :mod:`mlx_video.wan.checkpoint`; ``mlx_video convert`` does the same.
Run from a checkout: ``python convert/wan.py SRC DST [--dtype bfloat16] [--quantize 4|8]``.
"""

from mlx_video.wan.checkpoint import main

if __name__ == "__main__":
    main()
