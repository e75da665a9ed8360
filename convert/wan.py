"""Convert an official Wan 2.1 / 2.2 checkpoint (official folder or ``-Diffusers`` repo) to an mlx_video folder.

A thin entry point over :func:`mlx_video.wan.checkpoint.convert_wan`; ``mlx_video convert`` does the same.
Run from a checkout: ``python convert/wan.py SRC DST [--dtype bfloat16] [--quantize 4|8]``.
"""

import argparse

from mlx_video.cli.common import run_conversion
from mlx_video.wan.checkpoint import DTYPES, convert_wan


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="official Wan folder or -Diffusers repo folder")
    ap.add_argument("dst")
    ap.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    ap.add_argument("--quantize", type=int, choices=[4, 8])
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--overwrite", action="store_true", help="replace a DST that is not an mlx_video folder")
    return ap


if __name__ == "__main__":
    run_conversion(
        parser(), lambda a: convert_wan(a.src, a.dst, a.dtype, a.quantize, a.group_size, overwrite=a.overwrite)
    )
