"""Wan task presets: the official sampling defaults per task (wan/configs/*.py, generate.py).

A task names the checkpoint family it needs and how images condition it; the numbers are the
official defaults, used when the user does not type a value.
"""
from __future__ import annotations

from dataclasses import dataclass

# Wan's default negative prompt (wan/configs/shared_config.py: sample_neg_prompt).
WAN_NEG_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


@dataclass(frozen=True)
class WanTask:
    """Official defaults of one Wan task.

    images: "none" (text only), "optional" (0 or 1 first frame), "many" (1..N anchor frames).
    size: default "W*H"; with images, its area is the max_area for ``best_output_size``.
    """

    name: str
    model_type: str          # DiT model_type the checkpoint must have
    vae: str                 # "2.2" | "2.1"
    images: str
    sample_steps: int
    sample_shift: float
    guide_scale: float
    frame_num: int
    fps: int
    size: str
    solver: str = "unipc"
    neg_prompt: str = WAN_NEG_PROMPT


TASKS: dict[str, WanTask] = {
    t.name: t
    for t in (
        WanTask("t2v-5B", "ti2v", "2.2", "none", 50, 5.0, 5.0, 121, 24, "1280*704"),
        WanTask("ti2v-5B", "ti2v", "2.2", "optional", 50, 5.0, 5.0, 121, 24, "1280*704"),
        WanTask("mi2v-5B", "ti2v", "2.2", "many", 50, 5.0, 5.0, 121, 24, "1280*704"),
    )
}


def parse_size(size: str) -> tuple[int, int]:
    """'W*H' (Wan's spelling; 'WxH' also accepted) -> (width, height). Raises ValueError."""
    s = size.lower().replace("x", "*")
    try:
        w, h = (int(v) for v in s.split("*"))
    except ValueError:
        raise ValueError(f"size must look like 1280*704 (width*height), got {size!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return w, h
