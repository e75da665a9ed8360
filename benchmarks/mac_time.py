"""The Mac time each measured Wan step implies: FLOPs per DiT step at the efficiency measured on the GPU.

    python -m benchmarks.mac_time                                   # benchmarks/results/e2e_*_full.json
    python -m benchmarks.mac_time $OUT/e2e_*_full.json $OUT/e2e_official_*_full.json --out /tmp/mac_time.md

Input: JSON records of ``benchmarks.e2e`` / ``benchmarks.e2e_cases`` (measured per-step times) and of
``benchmarks.wan_e2e_official`` (its MLX side, and the official side's efficiency for comparison). Output:
two markdown tables (efficiency on the measuring GPU; projected seconds per step and per 50-step denoise on
Apple GPUs) for the README. Only the denoising loop is projected (the text encoder and VAE are not counted).

FLOPs of one DiT forward (one CFG branch), per block, with L video tokens, Lt = 512 text tokens (the context
is padded to ``text_len``), Li = 257 CLIP tokens (Wan2.1 I2V only), width d, FFN width f (docs/mac_time.md):

    self-attention projections q, k, v, o   8·L·d²
    self-attention QKᵀ and AV               4·L²·d
    cross-attention q, o                    4·L·d²
    cross-attention k, v (text, image)      4·(Lt + Li)·d²
    cross-attention QKᵀ and AV              4·L·(Lt + Li)·d
    FFN (two matmuls)                       4·L·d·f

plus the patch embedding 2·L·(4·in_dim)·d and the head 2·L·d·(4·out_dim) once per forward (element-wise
work, norms, RoPE and the time embedding are left out: a few percent). A step is 2 forwards (CFG).

Efficiency: achieved TFLOP/s = FLOPs per step / measured median step time; stated against MLX's own bf16
matmul rate on the same GPU (``--gpu-matmul``, 537 TFLOP/s on the lent H100, shared/device/README.md) and
against the H100's dense bf16 peak (989). Projection: an Apple GPU is assumed to reach the same fraction of
MLX's matmul rate there, which is taken as ``--mac-matmul-fraction`` (0.74, one published MLX bf16 GEMM
measurement on an M4: 2.78 of 3.76 TFLOP/s) of its FP16 peak (Apple GPUs run FP16 at the FP32 rate):

    projected s/step = FLOPs per step / (efficiency x mac_matmul_fraction x mac_peak)

These are projections from peak numbers, not measurements: attention kernels, memory bandwidth and
thermal limits on laptops can move them either way.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from pathlib import Path

from benchmarks.random_models import A14B, NARROW_DIT, TI2V_5B

RESULTS = Path(__file__).resolve().parent / "results"
H100_BF16_PEAK = 989.0  # TFLOP/s, dense bf16, H100 SXM (NVIDIA H100 datasheet)
MLX_H100_MATMUL = 537.0  # TFLOP/s, MLX 8192^3 bf16 matmul on the lent H100 (shared/device/README.md)
MAC_MATMUL_FRACTION = 0.74  # MLX bf16 GEMM on an M4 (10-core GPU): 2.78 of 3.76 TFLOP/s (docs/mac_time.md)
TEXT_TOKENS, CLIP_TOKENS = 512, 257
# FP16 (= FP32) peak TFLOP/s of the largest GPU configuration; sources in docs/mac_time.md
MACS = {
    "M1 Max (32c)": 10.4,
    "M1 Ultra (64c)": 21.0,
    "M2 Max (38c)": 13.6,
    "M2 Ultra (76c)": 27.2,
    "M3 Max (40c)": 14.3,
    "M3 Ultra (80c)": 28.6,
    "M4 Max (40c)": 17.2,
}
WIDTHS = {"ti2v-5B": TI2V_5B, "i2v-A14B": A14B, "i2v-14B": A14B}


def forward_flops(dim: int, ffn: int, blocks: int, tokens: int, in_dim: int, out_dim: int, image_tokens: int = 0):
    """FLOPs of one Wan DiT forward (the module docstring's formula)."""
    L, d, ctx = tokens, dim, TEXT_TOKENS + image_tokens
    block = 8 * L * d * d + 4 * L * L * d + 4 * L * d * d + 4 * ctx * d * d + 4 * L * ctx * d + 4 * L * d * ffn
    return blocks * block + 2 * L * 4 * in_dim * d + 2 * L * d * 4 * out_dim


def step_flops(r: dict) -> float:
    """FLOPs of one denoising step (2 forwards: CFG) of an e2e record."""
    w = dict(WIDTHS[r["model"]], **(NARROW_DIT if r.get("size") == "tiny" else {}))  # tiny: narrow widths
    image = CLIP_TOKENS if r.get("task") == "i2v-14B" else 0
    return 2.0 * forward_flops(w["dim"], w["ffn_dim"], r["layers"], r["tokens"], w["in_dim"], w["out_dim"], image)


def _median(steps):
    return statistics.median(steps[1:]) if len(steps) > 1 else steps[0]


def rows_from(path: Path) -> list[dict]:
    """One row per measured side: job, FLOPs per step, median step seconds, device."""
    r = json.loads(path.read_text())
    out = []
    if r.get("bench") == "wan_e2e_official":
        e = r["mlx"]["e2e"] if "mlx" in r else None
        if e is not None:
            out.append(_row(e, f"{_job(e)} (vs official)", _median(r["mlx"]["step_s"]), "MLX"))
        if "official" in r and e is not None:
            out.append(_row(e, f"{_job(e)}, official WanTI2V", _median(r["official"]["step_s"]), "torch"))
        return out
    if r.get("bench") == "e2e":
        return [_row(r, _job(r), r["step_median_s"], "MLX")]
    return []


def _job(r: dict) -> str:
    q = f", {r['quantize_bits']}-bit" if r.get("quantize_bits") else ""
    return f"{r['task']} {r['video']}{q}"


def _row(r: dict, job: str, step_s: float, side: str) -> dict:
    return dict(
        job=job, tokens=r["tokens"], flops=step_flops(r), step_s=step_s, side=side, device=r.get("mlx_device", "")
    )


def _tf(flops: float) -> str:
    t = flops / 1e12
    return f"{t:,.0f}" if t >= 10 else f"{t:.3g}"


def tables(rows: list[dict], gpu_matmul: float, mac_fraction: float) -> str:
    lines = [
        "| job (one denoising step, CFG: 2 forwards) | tokens | TFLOP / step | measured s / step | TFLOP/s | "
        "of MLX matmul | of H100 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        rate = x["flops"] / x["step_s"] / 1e12
        who = "" if x["side"] == "MLX" else f" ({x['side']})"
        lines.append(
            f"| {x['job']}{who} | {x['tokens']:,} | {_tf(x['flops'])} | {x['step_s']:.2f} | {rate:.0f} | "
            f"{rate / gpu_matmul:.0%} | {rate / H100_BF16_PEAK:.0%} |"
        )
    lines += [
        "",
        "Projected on Apple GPUs (MLX side only; s per step / minutes for 50 steps; an estimate from peak "
        f"FP16 TFLOP/s x {mac_fraction:.2f} (MLX GEMM fraction) x the efficiency above, not a measurement):",
        "",
        "| job | " + " | ".join(f"{m} ({p:g} TF)" for m, p in MACS.items()) + " |",
        "|---|" + "---|" * len(MACS),
    ]
    for x in rows:
        if x["side"] != "MLX":
            continue
        eff = x["flops"] / x["step_s"] / 1e12 / gpu_matmul
        cells = []
        for peak in MACS.values():
            s = x["flops"] / (eff * mac_fraction * peak * 1e12)
            cells.append(f"{s:.0f} s / {s * 50 / 60:.0f} min")
        lines.append(f"| {x['job']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", help="JSON records (default: benchmarks/results/e2e_*_full.json)")
    p.add_argument("--gpu-matmul", type=float, default=MLX_H100_MATMUL, help="MLX bf16 matmul TFLOP/s there")
    p.add_argument("--mac-matmul-fraction", type=float, default=MAC_MATMUL_FRACTION)
    p.add_argument("--out", default=None, help="markdown file to write")
    a = p.parse_args(argv)
    files = [Path(f) for f in a.files] or [Path(f) for f in sorted(glob.glob(str(RESULTS / "e2e_*_full.json")))]
    rows = [row for f in files for row in rows_from(f)]
    if not rows:
        print("mac_time: no e2e / wan_e2e_official records in " + ", ".join(map(str, files)), file=sys.stderr)
        return 2
    md = tables(rows, a.gpu_matmul, a.mac_matmul_fraction)
    if a.out:
        Path(a.out).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
