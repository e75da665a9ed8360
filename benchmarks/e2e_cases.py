"""More whole-run cases for ``benchmarks.e2e``: Wan2.1 I2V-14B (CLIP image branch) and the A14B pair at 720p.

    python -m benchmarks.e2e_cases --size tiny --case i2v-14B --steps 2                 # CPU smoke run
    python -m benchmarks.e2e_cases --size full --case i2v-14B --steps 2 --out $OUT/e2e_i2v-14B_full.json
    python -m benchmarks.e2e_cases --size full --case i2v-A14B-720p --steps 2 --out $OUT/e2e_i2v-A14B-720p_full.json

Every option of ``benchmarks.e2e`` applies; this module only adds rows to its case and size tables and teaches
``random_models.wan_config`` the Wan2.1 I2V-14B folder, then runs ``e2e.main`` unchanged:

    i2v-14B         Wan2.1 I2V-14B: one 14B DiT (A14B widths: dim 5120, 40 blocks, in_dim 36) with the CLIP
                    image branch (image_dim 1280; CLIP ViT-H/14 visual tower, real widths), Wan2.1 VAE;
                    ``full``: 81x480x832 (the 480P checkpoint's size)
    i2v-A14B-720p   the Wan2.2 I2V-A14B pair at 81x720x1280 (75,600 tokens), one expert resident at a time
"""

from __future__ import annotations

import sys

from benchmarks import e2e, random_models

NARROW_CLIP = dict(dim=64, mlp_dim=128, num_heads=2, num_layers=2)
EXTRA_CASES = {  # case -> (model, task, images), as e2e.CASES
    "i2v-14B": ("i2v-14B", "i2v-14B", 1),
    "i2v-A14B-720p": ("i2v-A14B", "i2v-A14B", 1),
}
EXTRA_VIDEO = {"tiny": (5, 32, 32), "mid": (5, 64, 64), "full": (81, 480, 832)}  # i2v-14B, as e2e.VIDEO
A14B_720P = "81x720x1280"

_base_config = random_models.wan_config


def wan_config(model: str, narrow: bool = False, layers: int | None = None, **kw) -> dict:
    """``random_models.wan_config`` plus "i2v-14B": the A14B widths as one DiT with the CLIP image branch and
    its visual tower (``cfg["clip"]``; narrow at tiny size), Wan2.1 VAE."""
    if model != "i2v-14B":
        return _base_config(model, narrow=narrow, layers=layers, **kw)
    cfg = _base_config("i2v-A14B", narrow=narrow, layers=layers, **kw)
    cfg.pop("experts", None)
    cfg["clip"] = dict(NARROW_CLIP) if narrow else {}
    cfg["dit"]["image_dim"] = NARROW_CLIP["dim"] if narrow else 1280
    return cfg


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    e2e.CASES.update(EXTRA_CASES)
    for size, video in EXTRA_VIDEO.items():
        e2e.VIDEO[size]["i2v-14B"] = video
    e2e.wan_config = wan_config
    case = next((argv[i + 1] for i, v in enumerate(argv[:-1]) if v == "--case"), None)
    if (
        case == "i2v-A14B-720p"
        and "--video" not in argv
        and any(argv[i + 1] == "full" for i, v in enumerate(argv[:-1]) if v == "--size")
    ):
        argv += ["--video", A14B_720P]
    return e2e.main(argv)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
