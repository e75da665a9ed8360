"""Convert a Lightricks LTX-2 / LTX-2.3 single-file checkpoint (with Gemma 3, upsamplers, distilled LoRA) to an
mlx_video folder.

A thin entry point over :mod:`mlx_video.ltx2.checkpoint`; ``mlx_video convert`` does the same.
Run from a checkout: ``python convert/ltx2.py CHECKPOINT DST [--gemma DIR] [--upsampler FILE ...]``.
"""

from mlx_video.ltx2.checkpoint import main

if __name__ == "__main__":
    main()
