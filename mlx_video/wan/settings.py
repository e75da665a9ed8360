"""What a Wan run is asked to do, checked: ``WanSettings`` (the task's official defaults, ``validate()`` before
any model loads), the few-step ``RECIPES``, the DiT's size limits (``check_grid``) and ``WanPlan`` (sizes, latent
shape, solver and the conditioning images' pixels), which :class:`mlx_video.wan.pipeline.WanPipeline` builds
in its ``plan`` stage. Nothing here prints, writes files or runs a model.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from .. import checks
from ..io.images import load_image
from .conditions import (
    ROPE_ROWS,
    AnchorImage,
    OneFrameSpec,
    check_frame_num,
    check_size,
    place_anchors,
    read_video,
)
from .config import TASKS, WanTask, parse_size
from .denoise import make_wan_solver
from .extend import extend_overlap, extend_source, image_from_clip, next_window


def _images_rule(tk: WanTask, n: int, one_frame: bool) -> None:
    if one_frame:
        if tk.name not in ("i2v-14B", "flf2v-14B"):
            raise ValueError(f"one-frame inference is for i2v-14B and flf2v-14B, not {tk.name}")
        need = 2 if tk.images == "first_last" else 1
        if n != need:
            raise ValueError(
                f"one-frame {tk.name} takes {need} CLIP image(s) (--image_path"
                f"{' and --end_image_path' if need == 2 else ''}), got {n}"
            )
        return
    rules = {
        "none": (0, 0, "takes no images"),
        "optional": (0, 1, "takes at most one image (use mi2v-5B for several)"),
        "many": (1, 10**9, "needs at least one image"),
        "first": (1, 1, "takes exactly one image (the first frame)"),
        "first_last": (2, 2, "takes a first and a last frame"),
    }
    lo, hi, msg = rules[tk.images]
    if not lo <= n <= hi:
        raise ValueError(f"task {tk.name} {msg}, got {n}")


MAX_TOKENS = 2**18  # DiT tokens per run: 3.5x the largest official run (Wan2.1 14B, 1280*720, 81 frames: 75600)
MAX_STEPS = 1000  # the flow schedules' training timesteps
SOLVERS = ("unipc", "dpm++", "dpmpp", "euler", "lightx2v", "lightx2v-euler")


@dataclass(frozen=True)
class Recipe:
    """Sampling settings a few-step (step- and CFG-distilled) LoRA release documents; fills the settings the
    user left unset. ``source``: where the numbers come from."""

    sample_steps: int
    guide_scale: float
    sample_shift: float
    solver: str
    source: str


RECIPES = {
    "lightx2v-4step": Recipe(
        4,
        1.0,
        5.0,
        "lightx2v",
        "lightx2v configs/distill/wan21/wan_t2v_distill_lora_4step_cfg"
        ".json (infer_steps 4, enable_cfg false, sample_shift 5, denoising_step_list [1000, 750, "
        "500, 250]) with WanStepDistillScheduler; Wan2.1 T2V/I2V-14B lightx2v distill LoRAs",
    ),
    "lightx2v-a14b-4step": Recipe(
        4,
        1.0,
        5.0,
        "lightx2v-euler",
        "lightx2v configs/distill/wan22/wan_moe_t2v_distill"
        "_lora.json (4 steps, enable_cfg false, shift 5, boundary_step_index 2) with "
        "Wan22StepDistillScheduler; Wan2.2 A14B lightx2v / Lightning distill LoRAs",
    ),
}


def _check_tokens(tokens: int, what: str) -> None:
    if tokens > MAX_TOKENS:
        raise ValueError(
            f"{what} gives {tokens} DiT tokens, more than the {MAX_TOKENS} this pipeline takes "
            f"(the official 1280*720, 81-frame run has 75600)"
        )


def check_grid(width: int, height: int, T: int, multiple: int) -> None:
    """Refuse a video the DiT cannot take: more than ``MAX_TOKENS`` tokens (T latent frames x (H/m)·(W/m)
    patches, m = VAE stride x patch) or a side of more than ``ROPE_ROWS`` patches (the reference's RoPE table)."""
    gw, gh = width // multiple, height // multiple
    _check_tokens(T * gw * gh, f"{width}*{height} with {T} latent frames")
    if max(gw, gh) > ROPE_ROWS:
        raise ValueError(
            f"size {width}*{height}: a side of {max(gw, gh)} patches is more than the {ROPE_ROWS} "
            f"positions of the model's RoPE table (at most {ROPE_ROWS * multiple} pixels a side)"
        )


@dataclass(frozen=True)
class WanSettings:
    """Everything one Wan run is asked to do; ``None`` means the task's official default (``config.TASKS``).

    task: a key of ``config.TASKS``. images: file paths, by task: t2v none; ti2v-5B 0..1 and mi2v-5B 1..N
    latent anchors (cover-resized to the size chosen from the first), each ``PATH`` (the i-th at latent frame
    i, encoded alone) or ``PATH@FRAME[:STRENGTH]``: pixel frame FRAME (negative from the end) at latent frame
    0 for frame 0, else ``(FRAME - 1) // 4 + 1`` (encoded as a 4-frame still group, ``encode_anchor_at``),
    strength in [0, 1] (per-token timestep ``(1 - strength)·t``; 0 = no anchor); i2v-* the first frame;
    flf2v-* the first and the last frame; one-frame: the CLIP image(s) (start [, end]). size: "W*H" in pixels;
    with images, the output's maximum area (the aspect follows the first image). frame_num: 4k+1 pixel frames (1 with
    ``one_frame``). sample_steps >= 1, sample_shift > 0 (flow shift), guide_scale: the CFG scale, one finite
    number or (low-noise, high-noise) for the two A14B experts. solver: "unipc" | "dpm++" | "euler". fps: output
    frames per second. seed: any integer, reduced mod 2**32 (``checks.seed``); None draws one at random (kept
    in the validated settings and the result's params). negative_prompt: None or "" for the task's.
    bidirectional: None, "faithful" (WanFM) or "reverse" for the flf2v tasks (Euler on the DPM++ grid);
    ``skip_redundant`` uses the forward pass for the faithful backward one (proven equal, see README).
    one_frame: musubi one-frame inference, "control_index=0;2,target_index=1" or an OneFrameSpec, with
    ``control_images`` (one per control index). batch_cfg: run the CFG branches as one batch of 2.
    video: an input video for video to video (SDEdit, ``sdedit``; t2v / ti2v / mi2v on the 5B, the Wan2.1 and
    A14B t2v tasks), read with PyAV and cover-resized to the size; frame_num defaults to its largest 4k+1
    prefix, size (without images) to its own W*H floored to the VAE stride x patch. strength: SDEdit strength
    in [0, 1] (default 0.8, diffusers' default): 1 = plain generation, 0 = the input's VAE round trip.
    recipe: a key of ``RECIPES`` (few-step distillation LoRAs): its steps, guide scale (1: one DiT pass a step),
    shift and solver replace the task's defaults for the values left None.
    extend: a video to continue. t2v-5B / ti2v-5B (without images): its last ``overlap`` pixel frames (4j+1,
    default 5: two latent frames) are VAE-encoded as the start of a video and anchored at latent frames 0..j of
    each new window. i2v-14B / i2v-A14B: its last frame is the first image (no ``images``); flf2v-14B /
    flf2v-A14B: its last frame is the first frame and ``images`` holds only the last frame (one window); the
    overlap is that one frame. Size (unset) from the video (a maximum area for the I2V tasks).
    segments: windows to chain (>= 1), each continuing the last (without ``extend`` the first is the task's
    plain run; the I2V windows after it are conditioned on the previous window's last frame). The output is
    the input (if any) followed by each window, its first ``overlap`` frames crossfaded linearly with the
    frames they repeat (``join_windows``); window k >= 1 draws its noise from ``seed + k``.
    prompts: one prompt per segment (window k uses ``prompts[k]``), or empty: every window uses ``prompt``.

    ``validate()`` checks every value (and opens every image) before any model loads.
    """

    task: str = "ti2v-5B"
    prompt: str = ""
    negative_prompt: str | None = None
    images: Sequence[str | Path] = ()
    size: str | None = None
    frame_num: int | None = None
    sample_steps: int | None = None
    sample_shift: float | None = None
    guide_scale: float | tuple[float, float] | None = None
    solver: str | None = None
    fps: int | None = None
    seed: int | None = 0
    bidirectional: str | None = None
    skip_redundant: bool = True
    one_frame: str | OneFrameSpec | None = None
    control_images: Sequence[str | Path] = ()
    batch_cfg: bool = True
    video: str | Path | None = None
    strength: float | None = None
    recipe: str | None = None
    extend: str | Path | None = None
    overlap: int | None = None
    segments: int = 1
    prompts: Sequence[str] = ()

    @property
    def preset(self) -> WanTask:
        """The task's official defaults (ValueError for an unknown task)."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        return TASKS[self.task]

    def validate(self) -> WanSettings:
        """A copy with every default filled in from the task and every value checked; raises ValueError (one
        line naming the setting) or ImageError (an image missing or unreadable). Idempotent."""
        if self.recipe is not None:
            if self.recipe not in RECIPES:
                raise ValueError(f"unknown preset {self.recipe!r}; choose from {', '.join(RECIPES)}")
            r = RECIPES[self.recipe]
            filled = replace(
                self,
                sample_steps=r.sample_steps if self.sample_steps is None else self.sample_steps,
                guide_scale=r.guide_scale if self.guide_scale is None else self.guide_scale,
                sample_shift=r.sample_shift if self.sample_shift is None else self.sample_shift,
                solver=r.solver if self.solver is None else self.solver,
            )
            if filled != self:
                return filled.validate()
        self._check_kinds()
        tk, images, controls = self.preset, tuple(self.images), tuple(self.control_images)
        one = self._one_frame(controls)
        prompt, prompts = self._prompts()
        from_clip = image_from_clip(self, tk, one, images)
        _images_rule(tk, len(images) + from_clip, one is not None)
        if self.bidirectional not in (None, "faithful", "reverse"):
            raise ValueError(f"bidirectional must be 'faithful' or 'reverse', got {self.bidirectional!r}")
        if self.bidirectional and (tk.images != "first_last" or one is not None):
            raise ValueError("bidirectional sampling is for the flf2v tasks (first and last frame)")
        ext = extend_source(self, tk, one, images)
        src = self._video_source(tk, one)
        frame_num, T = self._frames(tk, one, len(images), None if src is None else (src[0] - 1) // 4 * 4 + 1)
        if src is not None and frame_num > src[0]:
            raise ValueError(f"video {self.video} has {src[0]} frames; frame_num {frame_num} needs at least as many")
        m = (16 if tk.vae == "2.2" else 8) * 2
        if ext is not None and src is not None:
            raise ValueError("give either a video to restyle (video) or one to continue (extend), not both")
        src_wh = (src or ext or (None, None))[1]
        own = src_wh and (from_clip or not images)
        size = self.size or (f"{src_wh[0] // m * m}*{src_wh[1] // m * m}" if own else tk.size)
        overlap = extend_overlap(self, ext, frame_num)
        self._check_size(tk, size, T, bool(images) or bool(from_clip))
        for p in self._image_paths(tk, frame_num, images) + controls:
            load_image(p)
        seed = secrets.randbelow(2**32) if self.seed is None else checks.seed(self.seed)
        return replace(
            self,
            prompt=prompt,
            prompts=prompts,
            images=images,
            control_images=controls,
            one_frame=one,
            frame_num=frame_num,
            size=size,
            sample_steps=self._steps(tk),
            sample_shift=self._shift(tk, size, one),
            solver=self._solver(tk),
            guide_scale=self._guide(tk),
            negative_prompt=self.negative_prompt or tk.neg_prompt,
            fps=self._fps(tk),
            seed=seed,
            strength=None if src is None else self._strength(),
            overlap=overlap,
            segments=checks.positive_int("segments", self.segments, 1000),
        )

    def _prompts(self) -> tuple[str, tuple[str, ...]]:
        """(prompt, prompts): per-segment prompts checked against ``segments`` (ValueError), prompt their first."""
        prompts = (self.prompts,) if isinstance(self.prompts, str) else tuple(self.prompts)
        if not prompts:
            return self.prompt, ()
        if any(not isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be strings, got {prompts!r}")
        if len(prompts) != self.segments:
            raise ValueError(
                f"{len(prompts)} prompts for {self.segments} segment(s): give one prompt, or one per segment"
            )
        if self.prompt not in ("", prompts[0]):
            raise ValueError("give either prompt or prompts (one per segment), not both")
        return prompts[0], prompts

    def _video_source(self, tk: WanTask, one: OneFrameSpec | None) -> tuple[int, tuple[int, int]] | None:
        """(frame count, (width, height)) of the input video, or None without one; ValueError for a task that
        does not take one, a strength without a video, or an unreadable file."""
        if self.video is None:
            if self.strength is not None:
                raise ValueError("strength is the video-to-video (SDEdit) strength: give a video too")
            return None
        if tk.images not in ("none", "optional", "many") or one is not None:
            raise ValueError(
                f"video to video is for the t2v tasks and ti2v-5B / mi2v-5B, not {tk.name}"
                f"{' with one-frame inference' if one is not None else ''}"
            )
        self._strength()
        _, n, wh = read_video(self.video)
        return n, wh

    def _strength(self) -> float:
        return 0.8 if self.strength is None else checks.finite("strength", self.strength, 0.0, 1.0)

    def anchor_images(self) -> list[AnchorImage]:
        """The TI2V anchor entries of ``images`` parsed (``PATH[@FRAME[:STRENGTH]]``, see AnchorImage)."""
        return [AnchorImage.parse(p) for p in self.images]

    def _image_paths(self, tk: WanTask, frame_num: int, images: tuple) -> tuple:
        """The image files; for TI2V anchors the ``@FRAME[:STRENGTH]`` entries are parsed and placed (ValueError
        for a frame outside the video or two images on one latent frame), elsewhere refused."""
        anchors = [AnchorImage.parse(p) for p in images]
        placed = [a for a in anchors if a.frame is not None or a.strength != 1.0]
        if tk.images in ("optional", "many"):
            place_anchors(anchors, frame_num)
        elif placed:
            raise ValueError(
                f"image {placed[0].path}@{placed[0].frame}: frame positions and strengths "
                f"(PATH@FRAME[:STRENGTH]) are for the TI2V-5B anchors (ti2v-5B, mi2v-5B), not {tk.name}"
            )
        return tuple(a.path for a in anchors)

    def _check_kinds(self) -> None:
        for name in ("images", "control_images"):
            if isinstance(getattr(self, name), (str, Path)):
                raise ValueError(f"{name} must be a list of paths, got one path {getattr(self, name)!r}")
        for name in ("prompt", "size", "negative_prompt"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")

    def _frames(
        self, tk: WanTask, one: OneFrameSpec | None, n_images: int, default: int | None = None
    ) -> tuple[int, int]:
        """(pixel frames, latent frames T), checked against the RoPE table and the images to place; ``default``
        replaces the task's frame count (the input video's)."""
        if one is not None and self.frame_num not in (None, 1):
            raise ValueError(f"one-frame inference makes one frame; frame_num {self.frame_num} cannot be taken")
        default = tk.frame_num if default is None else default
        frame_num = 1 if one is not None else default if self.frame_num is None else self.frame_num
        T = check_frame_num(checks.positive_int("frame_num", frame_num))
        T = len(one.positions) if one is not None else T
        if T > ROPE_ROWS:
            raise ValueError(
                f"frame_num {frame_num} gives {T} latent frames, more than the {ROPE_ROWS} positions "
                f"of the model's RoPE table (frame_num <= {4 * ROPE_ROWS - 3})"
            )
        if tk.images in ("many", "optional") and n_images > T - 1:
            raise ValueError(
                f"{n_images} images need at least {n_images + 1} latent frames; "
                f"frame_num {frame_num} gives {T} latent frames, so at most {T - 1} images "
                f"(use frame_num >= {4 * n_images + 1})"
            )
        if tk.images == "first_last" and one is None and frame_num < 2:
            raise ValueError("first-last-frame tasks need frame_num >= 5")
        return frame_num, T

    def _solver(self, tk: WanTask) -> str:
        if self.bidirectional and self.solver not in (None, "euler"):
            raise ValueError(f"bidirectional sampling runs the Euler solver, not {self.solver!r}")
        solver = "euler" if self.bidirectional else (self.solver or tk.solver)
        if solver not in SOLVERS:
            raise ValueError(
                f"unknown solver {solver!r}; expected 'unipc', 'dpm++', 'euler', 'lightx2v' or 'lightx2v-euler'"
            )
        return solver

    def _one_frame(self, controls: tuple) -> OneFrameSpec | None:
        if self.one_frame is None:
            if controls:
                raise ValueError("control images are only used by one-frame inference (one_frame=...)")
            return None
        one = self.one_frame
        one = one if isinstance(one, OneFrameSpec) else OneFrameSpec.parse(one, len(controls))
        if len(controls) != len(one.control_index):
            raise ValueError(
                f"{len(one.control_index)} control indices need as many control images, got {len(controls)}"
            )
        return one

    @staticmethod
    def _check_size(tk: WanTask, size: str, T: int, area: bool) -> None:
        w, h = parse_size(size)
        m = (16 if tk.vae == "2.2" else 8) * 2  # VAE stride x DiT patch
        if area:  # with images the size is a maximum area; the output follows the first image's aspect
            if w * h < m * m:
                raise ValueError(
                    f"size {size} is below the minimum: with images the size is the output's maximum "
                    f"area, which must be at least {m}*{m} = {m * m} pixels"
                )
            _check_tokens(T * (w * h // (m * m)), f"size {size} (a maximum area) with {T} latent frames")
            return
        if w < m or h < m:
            raise ValueError(f"size {size} is below the minimum {m}*{m} (VAE stride x DiT patch)")
        check_size(w, h, m)
        check_grid(w, h, T, m)

    def _steps(self, tk: WanTask) -> int:
        return (
            tk.sample_steps
            if self.sample_steps is None
            else checks.positive_int("sample_steps", self.sample_steps, MAX_STEPS)
        )

    def _shift(self, tk: WanTask, size: str, one: OneFrameSpec | None) -> float:
        if self.sample_shift is not None:
            shift = checks.finite("sample_shift", self.sample_shift)
            if shift <= 0:
                raise ValueError(f"sample_shift must be greater than 0, got {shift:g}")
            return shift
        if one is not None:  # musubi: 3.0 for i2v at 480p, else 5.0 (also flf2v, whose task name lacks "i2v")
            return 3.0 if tk.name == "i2v-14B" and size in ("832*480", "480*832") else 5.0
        return tk.default_shift(size)

    def _guide(self, tk: WanTask) -> float | tuple[float, float]:
        g = tk.guide_scale if self.guide_scale is None else self.guide_scale
        if isinstance(g, (tuple, list)):
            if len(g) != 2:
                raise ValueError(f"guide_scale takes one number or (low-noise, high-noise), got {g!r}")
            if not tk.experts and self.guide_scale is not None:
                raise ValueError(
                    f"a (low-noise, high-noise) guide scale pair is for the two-expert A14B tasks, not {tk.name}"
                )
            return (checks.finite("guide_scale", g[0]), checks.finite("guide_scale", g[1]))
        return checks.finite("guide_scale", g)

    def _fps(self, tk: WanTask) -> int:
        if self.fps is None:
            return tk.fps
        checks.fps(self.fps)
        return checks.positive_int("fps", self.fps)


@dataclass
class WanPlan:
    """What a run will do, decided before any model runs: the validated settings, the output size
    (pixels), the latent shape [1, T, h, w, C], the solver and expert switch, and the conditioning images'
    pixels ([H, W, 3] float32 in [-1, 1]) loaded and resized for their stage."""

    settings: WanSettings
    width: int
    height: int
    shape: tuple[int, int, int, int, int]
    pixels: list[np.ndarray]
    controls: list[np.ndarray]
    video: np.ndarray | None = None
    extend: np.ndarray | None = None

    def anchors(self) -> list[tuple[int, float, bool]]:
        """TI2V anchors: (latent frame, strength, encoded as a 4-frame group) per image (``place_anchors``;
        plain mi2v paths keep the lone first-frame encode at every latent frame, docs/wan.md 9)."""
        specs = self.settings.anchor_images()
        frames = place_anchors(specs, self.settings.frame_num)
        return [(j, a.strength, a.frame is not None) for a, j in zip(specs, frames)]

    @property
    def task(self) -> WanTask:
        return self.settings.preset

    @property
    def one_frame(self) -> OneFrameSpec | None:
        return self.settings.one_frame

    @property
    def guide(self) -> tuple[float, float]:
        """(low-noise, high-noise) CFG scales (equal without experts)."""
        return self.task.guide_pair(self.settings.guide_scale)

    def solver(self):
        """A fresh solver (its multistep history starts empty) over the run's steps and shift."""
        s = self.settings
        return make_wan_solver(s.solver, s.sample_steps, s.sample_shift, s.seed)

    def check_noise(self, noise: mx.array | None) -> None:
        """ValueError unless injected noise (or None) has the latent shape."""
        if noise is not None and tuple(noise.shape) != self.shape:
            raise ValueError(f"injected noise must have shape {self.shape}, got {tuple(noise.shape)}")

    def next_window(self, video: np.ndarray) -> WanPlan:
        """The plan of the window that continues ``video`` (uint8 [F, H, W, 3]; ``extend.next_window``)."""
        return next_window(self, video)

    @property
    def params(self) -> dict:
        """The full parameter set (JSON-able), as written into the output's metadata."""
        s, (g_low, g_high) = self.settings, self.guide
        p = dict(
            task=s.task,
            prompt=s.prompt,
            negative_prompt=s.negative_prompt,
            images=[str(i) for i in s.images],
            size=f"{self.width}*{self.height}",
            frame_num=s.frame_num,
            sample_steps=s.sample_steps,
            sample_shift=s.sample_shift,
            sample_guide_scale=g_low if g_low == g_high else [g_low, g_high],
            sample_solver=s.solver,
            seed=s.seed,
            fps=s.fps,
        )
        if s.bidirectional:
            p["bidirectional_sampling"] = s.bidirectional
        if s.video is not None:
            p.update(video=str(s.video), strength=s.strength)
        if s.recipe is not None:
            p["preset"] = s.recipe
        if s.overlap is not None:
            p.update(
                extend=None if s.extend is None else str(s.extend),
                overlap=s.overlap,
                segments=s.segments,
                overlap_blend="linear",
            )
        if s.prompts:
            p["prompts"] = list(s.prompts)
        if s.one_frame is not None:
            p.update(
                one_frame_inference=dict(
                    control_index=list(s.one_frame.control_index), target_index=s.one_frame.target_index
                ),
                control_images=[str(c) for c in s.control_images],
            )
        return p
