"""What fits on which Mac: ``mlx_video.memory.plan`` for the main Wan jobs at 16-128 GB (estimates, no model runs).

    python -m benchmarks.fits                     # markdown table on stdout
    python -m benchmarks.fits --fraction 0.75 --out /tmp/fits.json

Each cell is the plan the memory planner picks for a budget of ``fraction`` x the Mac's RAM (Metal's
recommended working set is about two thirds to three quarters of it; default two thirds) with bf16
DiT/text weights, the real UMT5 text encoder and the task's image conditioning: the settings it had to
change (abbreviated: seq = sequential CFG, vae16 = VAE bf16, tN = VAE tiles of N px, x1 = one A14B expert
resident (both are kept "as is"), off = text encoder freed before the DiT, qN = N-bit weights at load, sN = N DiT blocks streamed) and the estimated peak, or
"no (needs X GiB)". Estimates carry the planner's calibration error (tests/test_memory.py: within 10% of
the H100 measurements it was checked on). Everything ``WanPipeline.fit_memory`` carries out is considered,
DiT block streaming ("sN", docs/streaming.md) included; ``--no-streaming`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.random_models import A14B, TI2V_5B
from mlx_video import memory
from mlx_video.backend import BACKENDS, backend_arg
from mlx_video.wan import vae21, vae22
from mlx_video.wan.clip import CLIPVisionArgs
from mlx_video.wan.t5 import UMT5Args
from mlx_video.wan.transformer import WanModelArgs

I2V_14B = dict(A14B, image_dim=1280)  # Wan2.1 I2V-14B: the A14B widths plus the CLIP image branch
JOBS = [  # name, DiT args, VAE args, CLIP, images, image frames, (frames, height, width), experts
    ("TI2V-5B t2v 704x1280x121", TI2V_5B, vae22.Wan22VAEArgs(), None, 0, "first", (121, 704, 1280), 1),
    ("TI2V-5B ti2v 704x1280x121", TI2V_5B, vae22.Wan22VAEArgs(), None, 1, "first", (121, 704, 1280), 1),
    ("A14B i2v 480x832x81", A14B, vae21.Wan21VAEArgs(), None, 1, "clip", (81, 480, 832), 2),
    ("A14B i2v 720x1280x81", A14B, vae21.Wan21VAEArgs(), None, 1, "clip", (81, 720, 1280), 2),
    ("Wan2.1 I2V-14B 480x832x81", I2V_14B, vae21.Wan21VAEArgs(), CLIPVisionArgs(), 1, "clip", (81, 480, 832), 1),
]
MACS = (16, 24, 32, 64, 128)
SHORT = {
    "sequential CFG": "seq",
    "VAE bf16": "vae16",
    "one expert resident": "x1",
    "free text encoder before DiT": "off",
}


def _short(step: str) -> str:
    if step in SHORT:
        return SHORT[step]
    num = "".join(c for c in step.split("(")[-1] if c.isdigit())
    return {"VAE tiling": "t", "quantize weights at load": "q", "stream DiT blocks": "s"}[step.split(" (")[0]] + num


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fraction", type=float, default=2 / 3, help="budget = fraction x RAM")
    p.add_argument(
        "--backend", type=backend_arg, choices=BACKENDS, default="metal", help="calibration to use (gpu: metal)"
    )
    p.add_argument("--no-streaming", dest="streaming", action="store_false", help="leave DiT block streaming out")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    rows = []
    print("| job (bf16, real UMT5) | " + " | ".join(f"{m} GB Mac ({m * a.fraction:.1f} GiB)" for m in MACS) + " |")
    print("|---|" + "---|" * len(MACS))
    for name, dit, vae, clip, images, image_frames, (f, h, w), experts in JOBS:
        sizes = memory.WanSizes(
            dit=WanModelArgs(**dit),
            vae=vae,
            t5=UMT5Args(),
            clip=clip,
            images=images,
            image_frames=image_frames,
            experts=experts,
        )
        cells = []
        for gb in MACS:
            try:
                plan = memory.plan(
                    sizes, f, h, w, gb * a.fraction * memory.GIB, backend_name=a.backend, streaming=a.streaming
                )
                cells.append(f"{'+'.join(_short(s) for s in plan.steps) or 'as is'}, {plan.peak_gib:.1f}")
                rows.append(dict(job=name, mac_gb=gb, plan=plan.to_dict()))
            except memory.MemoryBudgetError as e:
                need = e.args[0].split("needs ")[1].split(" GiB")[0]
                cells.append(f"no (needs {need})")
                rows.append(dict(job=name, mac_gb=gb, plan=None, error=str(e)))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps(dict(fraction=a.fraction, backend=a.backend, rows=rows), indent=1))
    return rows


if __name__ == "__main__":
    main()
