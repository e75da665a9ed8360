"""Memory estimate of an LTX-2 run (estimate and refusal only; the Wan plan is ``mlx_video/memory.py``).

Before any weights load, :func:`ltx_phase_peaks` estimates each phase's peak from a converted folder (file sizes,
the transformer's safetensors header, ``LTX_ACT_BYTES_PER_TOKEN`` per full-resolution token) and :func:`ltx_check`
refuses a run over the budget, naming the settings that would lower it (docs/memory.md).
"""

from __future__ import annotations

from ..memory import GIB, MemoryBudgetError, default_budget

# Activation bytes per full-resolution video latent token of an LTX-2 run (stage 2 of the two-stage pipelines,
# the one stage of "dev"), beyond the weights: the H100 whole-run measurement of issue 11 after the sub-step
# pacing and the bf16 decoders (2026-12-07, benchmarks/results/ltx2_distilled_dec07b.json: LTX-2 19B DISTILLED
# 768x512x121 with audio, 6,144 video tokens, MLX peak 42.37 GiB in the tiled video decode over 37.24 GiB of
# weights; stage 2 alone 39.47). One point; the peak is the video decode's, whose activations do not grow with
# tokens the same way, so the constant errs high for short videos. With an 8-bit transformer and 2 streamed
# blocks the same run measured 7.28 GiB against 9.7 GiB estimated (ltx2_distilled_q8_stream2_dec07b.json).
# Attention is fused (linear in tokens) on Metal and CUDA; on MLX's CPU backend the scores make long videos
# cost more than this says. The first fit, before those fixes, was (49.4 - 35.4) GiB / 6144.
LTX_ACT_BYTES_PER_TOKEN = (42.37 - 37.24) * GIB / 6144
LTX_DECODER_FILES = ("video_vae.safetensors", "audio_vae.safetensors", "vocoder.safetensors")  # stored float32
LTX_TEXT_FILES = ("gemma.safetensors", "connectors.safetensors")
LTX_RUN_FILES = ("transformer.safetensors", "video_vae.safetensors", "audio_vae.safetensors", "vocoder.safetensors")


def ltx_tokens(frames: int, height: int, width: int) -> int:
    """Full-resolution video latent tokens of an LTX-2 video: (1 + (F-1)/8) x H/32 x W/32."""
    return (1 + (frames - 1) // 8) * (height // 32) * (width // 32)


def ltx_block_bytes(model_dir, bits: int | None = None) -> dict:
    """What streaming and per-block dequantization change in an LTX-2 folder's transformer, from the header of
    ``transformer.safetensors`` (no tensor read): {"blocks": [bytes of block i as stored], "dense": bytes of the
    largest block's quantized linears dequantized to the compute dtype (0 when not quantized), "linear": elements
    of the largest block linear (dense [out, in])}. ``bits``: of the quantized linears (config.json
    ``quantization.transformer.bits``); the compute dtype of a dequantized one is its scales' (nn/blockwise.py)."""
    import re
    from pathlib import Path

    from ..io.weights import read_safetensors_header

    tensors, _ = read_safetensors_header(Path(model_dir) / "transformer.safetensors")
    blocks, dense, linear = {}, {}, 0
    for name, t in tensors.items():
        m = re.match(r"transformer_blocks\.(\d+)\.", name)
        if m is None:
            continue
        i = int(m.group(1))
        begin, end = t["data_offsets"]
        blocks[i] = blocks.get(i, 0) + end - begin
        if not name.endswith(".weight") or len(t["shape"]) != 2:
            continue
        out, cols = t["shape"]
        scales = tensors.get(name[: -len("weight")] + "scales")
        if scales is not None and bits:  # packed uint32: 32 / bits values per column
            n = out * cols * 32 // bits
            dense[i] = dense.get(i, 0) + n * (4 if scales["dtype"] == "F32" else 2)
        else:
            n = out * cols
        linear = max(linear, n)
    return {
        "blocks": [blocks[i] for i in sorted(blocks)],
        "dense": max(dense.values(), default=0),
        "linear": linear,
    }


def ltx_phase_peaks(
    model_dir,
    pipeline: str,
    frames: int,
    height: int,
    width: int,
    encode_text: bool = True,
    stream_blocks: int | None = None,
    dequantize_blocks: bool | None = None,
) -> dict:
    """Estimated peak bytes of an LTX-2 run from a converted folder: "text" (Gemma 3 and its connectors, freed
    before the transformer loads) and "generate" (transformer, VAEs, vocoder, the upsampler for the two-stage
    pipelines and the distilled LoRA for dev-two-stage, plus ``LTX_ACT_BYTES_PER_TOKEN`` per full-resolution
    token). Weights are the folder's file sizes (safetensors: tensor bytes plus a small header); the VAEs'
    and the vocoder's (stored float32) count half for a folder that is not float32, as they load in bf16.

    Just-in-time block weights (docs/streaming.md), as for Wan (:func:`mlx_video.memory.phase_peaks`): with
    ``stream_blocks`` N only N + 1 blocks count (the N resident, plus the one just released whose graph may still
    be in flight: LTX-2 paces its blocks one ahead, nn/evaluation.py), each the largest block as stored; a merged
    LoRA on streamed blocks adds its per-read merge working set (the largest block linear in float32: base, delta,
    sum), and its file counts only for the kept blocks (the pipelines pass LoRAs as re-readable files, read with
    each block, nn/lora.py). A quantized transformer run dequantized per block (``dequantize_blocks`` True, or None
    and ``nn.blockwise.dequantize_pays`` for the full-resolution token count) counts one block's quantized linears
    in the compute dtype more."""
    import json
    from pathlib import Path

    from ..nn.blockwise import dequantize_pays

    folder = Path(model_dir)

    def size(names):
        return float(sum((folder / n).stat().st_size for n in names if (folder / n).exists()))

    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    dtype = cfg.get("dtype", "bfloat16")
    bits = ((cfg.get("quantization") or {}).get("transformer") or {}).get("bits")
    run = size(LTX_RUN_FILES)
    if dtype != "float32":
        run -= 0.5 * size(LTX_DECODER_FILES)
    if pipeline != "dev":
        run += sum(float(p.stat().st_size) for p in (folder / "upsamplers").glob("*.safetensors"))
    lora = pipeline in ("dev-two-stage", "dev-two-stage-hq")
    lora_bytes = sum(float(p.stat().st_size) for p in folder.glob("*lora*.safetensors")) if lora else 0.0
    run += lora_bytes
    n_tokens = ltx_tokens(frames, height, width)
    if (folder / "transformer.safetensors").exists() and (stream_blocks or (bits and dequantize_blocks is not False)):
        b = ltx_block_bytes(folder, bits)
        if stream_blocks and b["blocks"]:
            kept = min(stream_blocks + 1, len(b["blocks"]))
            run -= sum(b["blocks"]) - kept * max(b["blocks"])
            if lora or pipeline == "ic-lora":  # the LoRA is read with each block: only the kept blocks' share
                run += 3 * b["linear"] * 4 - lora_bytes * (1 - kept / len(b["blocks"]))
        if b["dense"] and (dequantize_blocks or (dequantize_blocks is None and dequantize_pays(n_tokens))):
            run += b["dense"]
    return {
        "text": size(LTX_TEXT_FILES) if encode_text else 0.0,
        "generate": run + LTX_ACT_BYTES_PER_TOKEN * n_tokens,
    }


def ltx_check(phases: dict, budget: float | None, frames: int, height: int, width: int) -> float:
    """The estimated peak (bytes) of ``phases`` (:func:`ltx_phase_peaks`); raises :class:`MemoryBudgetError`
    naming it when it exceeds ``budget`` bytes (default :func:`default_budget`). The LTX-2 run's memory settings
    (``--stream_blocks``, a quantized folder) are the user's: this checks and refuses, naming them, and does not
    choose them (the Wan plan does, :func:`mlx_video.memory.plan`)."""
    budget = float(default_budget() if budget is None else budget)
    peak = max(phases.values())
    if peak > budget:
        raise MemoryBudgetError(
            f"LTX-2 at {frames}x{height}x{width} needs about {peak / GIB:.2f} GiB "
            f"({', '.join(f'{k} {v / GIB:.2f}' for k, v in phases.items())}), more than the budget "
            f"{budget / GIB:.2f} GiB; options: a larger --memory-budget, --stream_blocks N (transformer blocks "
            f"read just in time), a folder converted with --quantize, fewer frames or a smaller size"
        )
    return peak
