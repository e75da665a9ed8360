"""Convert a Lightricks LTX-2 / LTX-2.3 single-file checkpoint (with Gemma 3, upsamplers, distilled LoRA) to an
mlx_video folder.

A thin entry point over :func:`mlx_video.ltx2.checkpoint.convert_ltx2`; ``mlx_video convert`` does the same.
Run from a checkout: ``python convert/ltx2.py CHECKPOINT DST [--gemma DIR] [--upsampler FILE ...]``.
"""

import argparse

from mlx_video.cli.common import run_conversion
from mlx_video.ltx2.checkpoint import DTYPES, convert_ltx2


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="Lightricks single-file checkpoint (.safetensors)")
    ap.add_argument("dst")
    ap.add_argument("--gemma", help="Gemma 3 folder (HF safetensors + tokenizer)")
    ap.add_argument("--upsampler", action="append", default=[], help="latent upsampler file (repeatable)")
    ap.add_argument("--distilled-lora", help="distilled LoRA file")
    ap.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    ap.add_argument("--quantize", type=int, choices=[4, 8])
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--overwrite", action="store_true", help="replace a DST that is not an mlx_video folder")
    return ap


def _convert(a):
    return convert_ltx2(
        a.src,
        a.dst,
        a.dtype,
        a.quantize,
        a.group_size,
        a.gemma,
        a.upsampler,
        a.distilled_lora,
        overwrite=a.overwrite,
    )


if __name__ == "__main__":
    run_conversion(parser(), _convert)
