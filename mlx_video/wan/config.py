"""Wan task presets: the official sampling defaults per task (wan/configs/*.py, generate.py).

A task names the checkpoint family it needs and how images condition it; the numbers are the
official defaults, used when the user does not type a value (docs/wan.md sections 1, 7, 8, 10).
"""

from __future__ import annotations

from dataclasses import dataclass

# Wan's default negative prompt (wan/configs/shared_config.py: sample_neg_prompt).
WAN_NEG_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
I2V_14B_NEG = "镜头晃动，" + WAN_NEG_PROMPT  # Wan2.1 wan_i2v_14B.py prefix
FLF2V_14B_NEG = "镜头切换，" + I2V_14B_NEG  # Wan2.1 configs/__init__.py: flf2v = i2v config + prefix
FLF2V_A14B_NEG = "转场，淡入淡出，" + WAN_NEG_PROMPT  # WanFM wan_flf2v_A14B.py


@dataclass(frozen=True)
class WanTask:
    """Official defaults of one Wan task.

    images: "none" (text only), "optional" (0 or 1 first frame, TI2V latent anchor), "many" (1..N
    anchor frames, mi2v), "first" (one first frame through the y channels, I2V), "first_last"
    (first and last frame through y, FLF2V).
    size: default "W*H"; with images, its area is the max_area of the output-size rule.
    guide_scale: one scale, or (low-noise, high-noise) for the two-expert A14B models, switched with
    the expert at timestep ``boundary * 1000`` (high-noise expert while t >= boundary).
    clip: Wan2.1 CLIP image tokens of the first (and last) frame go to the DiT.
    shift_480p: the official default shift at 832*480 / 480*832 when it differs (Wan2.1 i2v).
    """

    name: str
    model_type: str  # DiT model_type the checkpoint must have
    vae: str  # "2.2" | "2.1"
    images: str
    sample_steps: int
    sample_shift: float
    guide_scale: float | tuple[float, float]
    frame_num: int
    fps: int
    size: str
    solver: str = "unipc"
    neg_prompt: str = WAN_NEG_PROMPT
    boundary: float | None = None
    clip: bool = False
    shift_480p: float | None = None

    @property
    def experts(self) -> bool:
        """True for the Wan2.2 A14B two-expert (high-noise / low-noise) models."""
        return self.boundary is not None

    def default_shift(self, size: str) -> float:
        """The official shift for ``size`` ('W*H')."""
        if self.shift_480p is not None and size.replace("x", "*") in ("832*480", "480*832"):
            return self.shift_480p
        return self.sample_shift

    def guide_pair(self, guide: float | tuple[float, float] | None = None) -> tuple[float, float]:
        """(low-noise, high-noise) guide scales; a single number is used for both (as the official
        generate.py does with ``--sample_guide_scale 5``)."""
        g = self.guide_scale if guide is None else guide
        return (float(g), float(g)) if isinstance(g, (int, float)) else (float(g[0]), float(g[1]))


TASKS: dict[str, WanTask] = {
    t.name: t
    for t in (
        # Wan2.2 TI2V-5B (VAE 2.2, latent anchors)
        WanTask("t2v-5B", "ti2v", "2.2", "none", 50, 5.0, 5.0, 121, 24, "1280*704"),
        WanTask("ti2v-5B", "ti2v", "2.2", "optional", 50, 5.0, 5.0, 121, 24, "1280*704"),
        WanTask("mi2v-5B", "ti2v", "2.2", "many", 50, 5.0, 5.0, 121, 24, "1280*704"),
        # Wan2.1 (generate.py: 50 steps t2v / 40 i2v, shift 5 (3 for i2v at 480p, 16 for flf2v), guide 5)
        WanTask("t2v-1.3B", "t2v", "2.1", "none", 50, 5.0, 5.0, 81, 16, "832*480"),
        WanTask("t2v-14B", "t2v", "2.1", "none", 50, 5.0, 5.0, 81, 16, "1280*720"),
        WanTask(
            "i2v-14B",
            "i2v",
            "2.1",
            "first",
            40,
            5.0,
            5.0,
            81,
            16,
            "1280*720",
            neg_prompt=I2V_14B_NEG,
            clip=True,
            shift_480p=3.0,
        ),
        WanTask(
            "flf2v-14B",
            "flf2v",
            "2.1",
            "first_last",
            50,
            16.0,
            5.0,
            81,
            16,
            "1280*720",
            neg_prompt=FLF2V_14B_NEG,
            clip=True,
        ),
        # Wan2.2 A14B experts (wan/configs/wan_{t2v,i2v}_A14B.py; guide = (low, high))
        WanTask("t2v-A14B", "t2v", "2.1", "none", 40, 12.0, (3.0, 4.0), 81, 16, "1280*720", boundary=0.875),
        WanTask("i2v-A14B", "i2v", "2.1", "first", 40, 5.0, (3.5, 3.5), 81, 16, "1280*720", boundary=0.9),
        # WanFM (ff2416/Wan2.2-FLF2V) on the I2V-A14B experts: its config's defaults (its README runs
        # --sample_steps 40 --sample_shift 16 --sample_guide_scale 5 --bidirectional_sampling)
        WanTask(
            "flf2v-A14B",
            "i2v",
            "2.1",
            "first_last",
            50,
            5.0,
            (3.5, 3.5),
            81,
            16,
            "1280*720",
            neg_prompt=FLF2V_A14B_NEG,
            boundary=0.9,
        ),
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
