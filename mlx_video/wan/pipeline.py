"""Wan pipelines: Wan2.2 TI2V-5B (t2v, ti2v, mi2v anchors), Wan2.1 T2V/I2V/FLF2V (CLIP), Wan2.2 A14B
two-expert T2V/I2V/FLF2V (with WanFM bidirectional sampling) and musubi-tuner one-frame inference.

A run is ``WanSettings`` (the task's official defaults, ``validate()`` before any model loads) -> ``plan``
(sizes, latent shape, schedule) -> ``encode_text`` / ``encode_images`` (prepare) -> ``denoise`` -> ``decode``,
composed by ``WanPipeline.generate`` into a :class:`mlx_video.result.GenerationResult`. ``WanPipeline`` owns
the converted model folder, loads each component when a stage needs it and frees it after (``offload``; for
A14B only the active expert is resident). Nothing here prints or writes files.

References: Wan2.2 ``textimage2video.py`` (TI2V; mi2v generalises its frame-0 latent replacement,
docs/wan.md 9), Wan2.2 ``image2video.py`` (I2V-A14B, docs/wan.md 8.1), Wan2.1 ``image2video.py`` /
``first_last_frame2video.py`` (CLIP, docs/wan.md 8.1, 8.2), WanFM ``first_last_frame2video.py``
(``generate_bidirectional``, docs/wan.md 10) and musubi-tuner ``wan_generate_video.py`` (one frame, docs/wan.md 11).
"""

from __future__ import annotations

import copy
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import checks
from ..conditioning import LatentAnchor, anchor_arrays, blend_clean
from ..distributed import SequenceParallel, on_root
from ..io.images import bicubic_resize, load_image, to_array, to_uint8
from ..io.weights import WeightsError, load_safetensors, load_strict, quantize_linears, read_folder_config
from ..result import GenerationResult, Meter, check_finite
from ..sampling.solvers import FlowEuler, FlowSolver, make_solver
from .conditions import (
    ROPE_ROWS,
    AnchorImage,
    OneFrameSpec,
    check_frame_num,
    check_size,
    encode_anchor_at,
    encode_anchor_images,  # noqa: F401  (re-exported for the mi2v tests)
    encode_clip,
    encode_frames,
    first_last_pixels,
    i2v_size,
    one_frame_condition,
    output_size,
    place_anchors,
    prepare_images,
    read_last_frame,
    read_video,
)
from .config import TASKS, WanTask, parse_size
from .extend import extend_overlap, extend_source, image_from_clip, join_windows, next_window, window_context

FORMAT = "mlx_video/wan/1"
Progress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- loading


def read_config(model_dir: Path) -> dict:
    """The converted folder's config.json; raises WeightsError when it is not a Wan folder of ours."""
    return read_folder_config(model_dir, FORMAT, "run `mlx_video convert` first or pass the original checkpoint folder")


def load_dit(model_dir: Path, cfg: dict, name: str = "dit"):
    """DiT ``name`` ("dit", or the A14B experts "dit_high" / "dit_low", which share ``cfg["dit"]``)."""
    from .transformer import WanModel, WanModelArgs

    model = WanModel(WanModelArgs(**cfg.get(name, cfg["dit"])))
    quantize_linears(model, cfg.get("quantization", {}).get(name))
    return load_strict(model, load_safetensors(Path(model_dir) / f"{name}.safetensors"), what=f"Wan DiT ({name})")


def load_vae(model_dir: Path, cfg: dict):
    """The converted folder's Wan2.1 or Wan2.2 VAE (float32, strict loading; WeightsError on bad weights)."""
    if cfg["vae"]["version"] == "2.2":
        from .vae22 import Wan22VAE as VAE
        from .vae22 import Wan22VAEArgs as VAEArgs
    else:
        from .vae21 import Wan21VAE as VAE
        from .vae21 import Wan21VAEArgs as VAEArgs
    model = VAE(VAEArgs(**cfg["vae"]["args"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "vae.safetensors"), what="Wan VAE")


def load_text_encoder(model_dir: Path, cfg: dict):
    """UMT5 (quantized if converted so, strict loading) with the folder's tokenizer, as a WanTextEncoder."""
    from .t5 import UMT5Args, UMT5Encoder, WanTextEncoder

    model = UMT5Encoder(UMT5Args(**cfg["t5"]))
    quantize_linears(model, cfg.get("quantization", {}).get("t5"))
    load_strict(model, load_safetensors(Path(model_dir) / "t5.safetensors"), what="UMT5 encoder")
    return WanTextEncoder.from_dir(Path(model_dir) / "tokenizer", model, text_len=cfg.get("text_len", 512))


def load_clip(model_dir: Path, cfg: dict):
    """The Wan2.1 CLIP visual tower of a converted I2V/FLF2V folder; WeightsError when it has none."""
    from .clip import CLIPVisionArgs, CLIPVisionEncoder

    if "clip" not in cfg:
        raise WeightsError(f"{model_dir} has no CLIP image encoder (only Wan2.1 I2V/FLF2V checkpoints have one)")
    model = CLIPVisionEncoder(CLIPVisionArgs(**cfg["clip"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "clip.safetensors"), what="CLIP visual tower")


# ----------------------------------------------------------------------------- denoising


def expert_segments(timesteps: Sequence[int], boundary: float | None) -> list[tuple[str, int, int]]:
    """Runs of consecutive steps per DiT: [(name, first step, end step)], name "dit" without experts,
    else "dit_high" while ``t >= boundary·1000`` and "dit_low" below (Wan2.2 A14B, docs/wan.md 7)."""
    if boundary is None:
        return [("dit", 0, len(timesteps))]
    names = ["dit_high" if t >= boundary * 1000 else "dit_low" for t in timesteps]
    out: list[tuple[str, int, int]] = []
    for i, n in enumerate(names):
        if out and out[-1][0] == n:
            out[-1] = (n, out[-1][1], i + 1)
        else:
            out.append((n, i, i + 1))
    return out


def velocity(
    model,
    x: mx.array,
    t,
    context: mx.array,
    rope,
    guide_scale: float,
    y: mx.array | None = None,
    img: mx.array | None = None,
    batch_cfg: bool = True,
) -> mx.array:
    """Classifier-free guided velocity ``v_u + g·(v_c − v_u)``; context [2, 512, C] (cond, uncond);
    the same ``y`` and CLIP tokens ``img`` go to both branches (as the references). t: [1] or [1, T].
    guide_scale 1 is ``v_c``: one DiT pass, no unconditional one (CFG-distilled models, lightx2v ``enable_cfg``
    false)."""
    kw = {}
    if img is not None:
        kw["img"] = img
    if guide_scale == 1.0:
        return model(x, t, context[:1], rope, **kw, **({"y": y} if y is not None else {}))
    if batch_cfg:
        if y is not None:
            kw["y"] = mx.concatenate([y, y])
        tt = mx.concatenate([t, t]) if t.ndim == 2 else t
        v = model(mx.concatenate([x, x]), tt, context, rope, **kw)
        v_cond, v_uncond = v[:1], v[1:]
    else:
        if y is not None:
            kw["y"] = y
        v_cond = model(x, t, context[:1], rope, **kw)
        v_uncond = model(x, t, context[1:], rope, **kw)
    return v_uncond + guide_scale * (v_cond - v_uncond)


@dataclass
class BackwardPass:
    """WanFM's time-reversed pass (docs/wan.md 10): the model sees the latent and ``y`` flipped in time with
    RoPE ``rope`` (reversed temporal positions in the faithful mode, forward positions in the
    "reverse" mode). ``skip``: use the forward result for it (valid only in the faithful mode, where
    tests/test_wan_flf2v.py shows flip(backward) == forward to float32 rounding)."""

    rope: object
    y: mx.array | None
    skip: bool = False


def denoise(
    model,
    latent: mx.array,
    solver,
    context: mx.array,
    rope,
    guide_scale: float,
    mask: mx.array | None = None,
    clean: mx.array | None = None,
    batch_cfg: bool = True,
    progress: Progress | None = None,
    *,
    y: mx.array | None = None,
    img: mx.array | None = None,
    steps: range | None = None,
    backward: BackwardPass | None = None,
) -> mx.array:
    """Denoising steps ``steps`` (default all) of one DiT: CFG velocity, a solver step, re-anchoring.

    latent [1, T, h, w, C] float32 (already anchored); context [2, 512, dim] (cond, uncond) from
    ``model.embed_text``. mask/clean from ``anchor_arrays`` (TI2V anchors: per-latent-frame
    timesteps ``mask·t`` and re-anchoring), or None (one timestep for all tokens). y: I2V/FLF2V
    channels [1, T, h, w, 20]; img: ``model.embed_image`` tokens. backward: WanFM bidirectional
    sampling; needs the stateless Euler solver: ``x = ½·x_f + ½·flip(x_b)``. Several calls with
    consecutive ``steps`` and the same solver (its history carries over) run the two A14B experts.
    Returns the latent after the last step; raises NonFiniteError (naming the step and the likely cause)
    as soon as a step's latent holds NaN or inf.
    """
    steps = range(solver.num_steps) if steps is None else steps
    if backward is not None and (not isinstance(solver, FlowEuler) or mask is not None):
        raise ValueError("bidirectional sampling needs the Euler solver and no latent anchors")
    n = solver.num_steps
    for i in steps:
        t = solver.timesteps[i]
        tt = mask.reshape(1, -1) * float(t) if mask is not None else mx.array([float(t)])
        v = velocity(model, latent, tt, context, rope, guide_scale, y, img, batch_cfg)
        x_next = solver.step(v, i, latent)
        if backward is not None and not backward.skip:
            x_rev = latent[:, ::-1]
            v_b = velocity(model, x_rev, tt, context, backward.rope, guide_scale, backward.y, img, batch_cfg)
            x_next = 0.5 * x_next + 0.5 * solver.step(v_b, i, x_rev)[:, ::-1]
        latent = blend_clean(x_next, mask, clean)
        mx.eval(latent)
        check_finite(latent, f"in the latent after denoising step {i + 1} of {n}", _nan_hint(model, guide_scale))
        if progress:
            progress("denoise", i + 1, n)
    return latent


def _nan_hint(model, guide_scale: float) -> str:
    dtype = str(getattr(model, "dtype", "")).replace("mlx.core.", "")
    return (
        f"likely causes: a guide scale too large for this model ({guide_scale:g}), or an overflow of the "
        f"{dtype or 'compute'} dtype (try float32)"
    )


def sdedit_start(strength: float, steps: int) -> int:
    """First step index of an SDEdit run at ``strength`` S in [0, 1]: ``int((1 − S)·steps)`` (a 1e-6 tolerance
    keeps float rounding from losing a step, e.g. S = 0.9 of 10 steps starts at 1). S = 1 runs every step,
    S = 0 none. diffusers' video-to-video pipelines use ``steps − int(S·steps)``: the same for integer S·steps."""
    return min(steps, int(math.floor((1.0 - strength) * steps + 1e-6)))


def sdedit(solver: FlowSolver, strength: float, clean: mx.array, noise: mx.array) -> tuple[mx.array, FlowSolver]:
    """Video to video (SDEdit, flow matching): the input video's latent ``clean`` [1, T, h, w, C] noised to the
    schedule's sigma at ``k = sdedit_start(strength, N)``: ``x = (1 − σ_k)·clean + σ_k·noise``, and a fresh solver
    of the same kind over the remaining grid (timesteps[k:], sigmas[k:]; a multistep solver warms up again, as
    diffusers' schedulers do from their begin index). k = 0 returns ``noise`` itself and the solver unchanged:
    plain generation, which the references start from pure noise at sigmas[0] (0.999 on Wan's UniPC grid).
    k = N returns ``clean`` (σ_N = 0) and a solver of no steps."""
    k = sdedit_start(strength, solver.num_steps)
    if k == 0:
        return noise, solver
    sigma = float(solver.sigmas[k])
    x = (1.0 - sigma) * clean.astype(mx.float32) + sigma * noise
    tail = copy.copy(solver)  # same kind and options, fresh history
    FlowSolver.__init__(tail, solver.timesteps[k:], solver.sigmas[k:])
    return x, tail


# ----------------------------------------------------------------------------- pipeline


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


def _read_loras(specs: Sequence) -> list[tuple[dict, float]]:
    """LoRA files for ``merge_loras``: each spec ``"PATH[:STRENGTH]"`` or ``(path, strength)``; read now
    so that a missing or unreadable file fails before any model runs (WeightsError / ValueError)."""
    from ..nn.lora import load_lora, parse_lora_spec

    out = []
    for spec in specs:
        path, strength = parse_lora_spec(spec) if isinstance(spec, (str, Path)) else spec
        strength = checks.finite(f"LoRA strength of {path}", strength)
        out.append((load_lora(path), strength))
    return out


MAX_TOKENS = 2**18  # DiT tokens per run: 3.5x the largest official run (Wan2.1 14B, 1280*720, 81 frames: 75600)
MAX_STEPS = 1000  # the flow schedules' training timesteps
SOLVERS = ("unipc", "dpm++", "dpmpp", "euler", "lightx2v", "lightx2v-euler")


def step_distill_grid(num_steps: int, shift: float) -> tuple[list[float], np.ndarray]:
    """lightx2v's few-step grid (``WanStepDistillScheduler.set_denoising_timesteps``): of the 1000 shifted training
    sigmas ``shift(linspace(1, 0, 1001)[:-1])``, those at ``denoising_step_list`` = 1000·(1 − i/N) (N = 4:
    [1000, 750, 500, 250]); timesteps ``σ·1000`` kept as floats (not truncated). Returns (timesteps, sigmas + [0])."""
    base = np.linspace(1.0, 0.0, 1001, dtype=np.float32)[:-1]
    base = shift * base / (1 + (shift - 1) * base)
    idx = [round(1000 * i / num_steps) for i in range(num_steps)]
    sig = np.append(base[idx], np.float32(0.0)).astype(np.float32)
    return [float(v) * 1000 for v in sig[:-1]], sig


class StepDistillSolver(FlowSolver):
    """lightx2v's few-step samplers (``lightx2v/models/schedulers/wan/step_distill/scheduler.py``): predict
    ``x0 = x − σ_i·v``; the last step returns x0. Before it, ``renoise`` (Wan2.1 distill LoRAs,
    ``WanStepDistillScheduler``) draws fresh noise ε (from ``key``, one split per step) and returns
    ``(1 − σ_{i+1})·x0 + σ_{i+1}·ε``; without (Wan2.2 A14B distill, ``Wan22StepDistillScheduler``) it is the
    Euler step ``x0 + σ_{i+1}·v``. Stateless in the step order; the torch generator's draws cannot be matched."""

    def __init__(self, timesteps, sigmas, renoise: bool = True, key: mx.array | None = None):
        self.renoise, self.key = renoise, mx.random.key(0) if key is None else key
        super().__init__(timesteps, sigmas)

    def step(self, v, i, x):
        s, s_next = self._sigma(i), self._sigma(i + 1)
        x0 = x - s * v
        if s_next == 0.0:
            return x0
        if not self.renoise:
            return x0 + s_next * v
        eps = mx.random.normal(x.shape, dtype=x.dtype, key=mx.random.split(self.key, i + 1)[i])
        return (1.0 - s_next) * x0 + s_next * eps


def make_wan_solver(name: str, num_steps: int, shift: float, seed: int = 0) -> FlowSolver:
    """``make_solver`` plus lightx2v's few-step samplers: "lightx2v" (x0 + fresh noise, Wan2.1 distill LoRAs)
    and "lightx2v-euler" (Wan2.2 A14B distill), both on ``step_distill_grid``; ``seed`` seeds the re-noising."""
    if name in ("lightx2v", "lightx2v-euler"):
        return StepDistillSolver(
            *step_distill_grid(num_steps, shift), renoise=name == "lightx2v", key=mx.random.key((seed + 1) % 2**32)
        )
    return make_solver(name, num_steps, shift)


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


@dataclass
class Conditions:
    """What the prepare stage hands to the denoiser: text ``context`` [cond [n, 4096], uncond [m, 4096]];
    TI2V anchors ``mask``/``clean`` (``anchor_arrays``) or None; I2V/FLF2V/one-frame channels ``cond``
    (a ChannelCondition) or None; Wan2.1 CLIP tokens ``clip_fea`` [1, 257·k, 1280] or None; the input video's
    VAE latent ``video_latent`` [1, T, h, w, C] float32 (video to video) or None."""

    context: list
    mask: mx.array | None = None
    clean: mx.array | None = None
    cond: object = None
    clip_fea: mx.array | None = None
    video_latent: mx.array | None = None


class WanPipeline:
    """A converted Wan folder, ready to generate.

    ``dtype``: compute dtype of the DiT(s), text encoder and CLIP weights (bf16 default; float32 for
    parity). ``offload``: free the text encoder and CLIP before the DiT runs, keep only the active
    A14B expert resident, and free the DiT before the VAE decodes. ``loras``: LoRA files
    ("PATH[:STRENGTH]" or (path, strength)) merged into every DiT when it loads (kohya/musubi, PEFT,
    original-key formats, see :mod:`mlx_video.nn.lora`); ``loras_high`` / ``loras_low``: into one A14B
    expert only. ``vae_dtype``: the VAE's compute dtype, float32 (default, like the reference modules)
    or bf16 (half the activation memory, as the official pipelines' bf16 autocast; decode within ~1.4%
    of float32 on the tiny model). ``group``: an ``mx.distributed`` group (``mlx.launch``); with more
    than one rank the DiT forwards are split over the ranks by token (sequence parallelism, exact) and
    the text encoder runs on rank 0 only (docs/distributed.md). ``vae_tiling``: a
    :class:`mlx_video.nn.tiling.Tiling` for the VAE (overlapping spatial tiles, blended; with a group the
    decode's tiles are split over the ranks), kept by ``fit_memory`` as a user-fixed setting; the same
    attribute as ``tiling``. Raises WeightsError / ValueError for a bad folder or LoRA
    file.
    """

    def __init__(
        self,
        model_dir: str | Path,
        dtype: mx.Dtype = mx.bfloat16,
        offload: bool = True,
        loras: Sequence = (),
        loras_high: Sequence = (),
        loras_low: Sequence = (),
        vae_dtype: mx.Dtype = mx.float32,
        group=None,
        vae_tiling=None,
        stream_blocks: int | None = None,
        dequantize_blocks: bool | None = None,
    ):
        self.model_dir = Path(model_dir)
        # just-in-time DiT block weights (mlx_video/nn/blockwise.py, docs/streaming.md): blocks streamed from
        # the DiT file with this many resident (None: all resident); quantized linears dequantized per block
        # (None: when it pays, blockwise.dequantize_pays)
        self.stream_blocks, self.dequantize_blocks = stream_blocks, dequantize_blocks
        self._stream_asked = stream_blocks
        # sequence parallelism (mlx_video/distributed.py): an mx.distributed group of more than one rank
        self.sp = SequenceParallel(group) if group is not None and group.size() > 1 else None
        self.cfg = read_config(self.model_dir)
        self.dtype, self.offload, self.vae_dtype = dtype, offload, vae_dtype
        self._dits: dict[str, nn.Module] = {}
        self._vae = self._text = self._clip = None
        self.tiling = self._given_tiling = vae_tiling  # the VAE's tiles (fit_memory keeps a given one)
        # A14B without offload: free one expert when the other loads (set by fit_memory when both do not fit)
        self.swap_experts = False
        # set by fit_memory (mlx_video.memory): weights quantized at load, the plan for the metadata
        self.quantize_bits, self.memory_plan = None, None
        if (loras_high or loras_low) and not self.cfg.get("experts"):
            raise ValueError("per-expert LoRAs (high / low) need a two-expert A14B checkpoint; use loras")
        self._loras = {
            "dit": _read_loras(loras),
            "dit_high": _read_loras(loras_high),
            "dit_low": _read_loras(loras_low),
        }

    def _cast(self, m: nn.Module) -> nn.Module:
        m.set_dtype(self.dtype, predicate=lambda d: mx.issubdtype(d, mx.floating))
        return m

    # components, loaded on first use
    def model(self, name: str = "dit"):
        """DiT ``name`` ("dit", "dit_high", "dit_low"); with ``offload`` or ``swap_experts``, other DiTs are freed
        first (one A14B expert resident)."""
        if name not in self._dits:
            if (self.offload or self.swap_experts) and self._dits:
                self.free("dit")
            m = self._cast(load_dit(self.model_dir, self.cfg, name))
            loras = self._loras["dit"] + (self._loras[name] if name != "dit" else [])
            if loras:
                from ..nn.lora import merge_loras
                from .transformer import lora_key_map

                merge_loras(m, loras, lora_key_map())
            self._dits[name] = self._block_weights(self._quantize(m, name), name)
        return self._dits[name]

    def _block_weights(self, m: nn.Module, name: str) -> nn.Module:
        """``m`` with just-in-time block weights attached when streaming, or when its blocks are quantized
        and per-block dequantization is not switched off."""
        from ..nn.blockwise import BlockWeights, SafetensorsBlocks

        quantized = (
            any(isinstance(x, nn.QuantizedLinear) for _, x in m.blocks[0].named_modules()) if m.blocks else False
        )
        if self.stream_blocks:
            if any(self._loras.values()):
                raise ValueError("streamed DiT blocks cannot carry merged LoRAs (each block is read again per step)")
            src = SafetensorsBlocks(self.model_dir / f"{name}.safetensors", "blocks.{}.", self.dtype)
            m.block_weights = BlockWeights(m.blocks, src, self.stream_blocks, self.dequantize_blocks)
        elif quantized and self.dequantize_blocks is not False:
            m.block_weights = BlockWeights(m.blocks, dequantize=self.dequantize_blocks)
        return m

    @property
    def dit(self):
        return self.model("dit")

    @property
    def _dit(self):
        return self._dits.get("dit") or next(iter(self._dits.values()), None)

    @property
    def tiling(self):
        """The VAE's :class:`mlx_video.nn.tiling.Tiling` for encode and decode (with a group the decode's tiles
        are split over the ranks), or None (untiled): the constructor's ``vae_tiling`` or ``fit_memory``'s
        choice. Setting it updates a loaded VAE's ``default_tiling``."""
        return self._tiling

    @tiling.setter
    def tiling(self, value) -> None:
        self._tiling = value
        if getattr(self, "_vae", None) is not None:
            self._vae.default_tiling = value

    vae_tiling = tiling  # the constructor argument's name, the same attribute

    @property
    def vae(self):
        if self._vae is None:
            self._vae = load_vae(self.model_dir, self.cfg)
            self._vae.set_dtype(self.vae_dtype)
            # read and cast now (a few per cent of the DiT's size): weights left as lazy casts of the file's float32
            # arrays made every encode after the first peak higher (one-frame anchors, CPU: +17%; issue 11's mi2v)
            mx.eval(self._vae.parameters())
            self._vae.default_tiling = self.tiling
        return self._vae

    @property
    def text_encoder(self):
        if self._text is None:
            self._text = load_text_encoder(self.model_dir, self.cfg)
            self._quantize(self._cast(self._text.model), "t5")
        return self._text

    @property
    def clip(self):
        if self._clip is None:
            self._clip = self._cast(load_clip(self.model_dir, self.cfg))
        return self._clip

    def _quantize(self, m: nn.Module, name: str) -> nn.Module:
        """``m`` with its linears quantized to ``quantize_bits`` (group 64) at load, unless the folder
        already holds ``name`` quantized or no plan asked for it."""
        if name.startswith("dit") and self.stream_blocks:
            return m  # streamed blocks are read as stored; quantizing the rest alone would save little
        if self.quantize_bits and not self.cfg.get("quantization", {}).get(name):
            quantize_linears(m, {"bits": self.quantize_bits, "group_size": 64})
        return m

    def fit_memory(self, plan: WanPlan, budget: float | None = None, **fixed):
        """Choose and adopt the cheapest settings whose estimated peak fits ``budget`` bytes (default:
        what this machine lets MLX use, :func:`mlx_video.memory.default_budget`) for the run ``plan``
        describes, before any weights load (:func:`mlx_video.memory.plan`, its documented order:
        sequential CFG, VAE bf16, VAE tiles, one A14B expert resident, free the text encoder before the DiT,
        weights quantized at load, DiT blocks streamed). Without offload (models kept between runs: a server, repeated
        ``generate``) both A14B experts stay loaded only when the plan allows; else they swap each run.
        ``fixed``: settings the user chose (``batch_cfg``, ``vae_dtype``, ``offload``, ``swap_experts``,
        ``vae_tile``, ``quantize_bits``, ``stream_blocks``), kept as given; a folder converted quantized fixes its
        bits; with LoRAs blocks are never streamed.
        Sets this pipeline's ``vae_dtype``, ``offload``, ``tiling``, ``swap_experts``, ``quantize_bits``,
        ``stream_blocks`` and
        ``memory_plan`` (stored in the result's params); the CFG batching is the returned plan's
        ``batch_cfg`` (a WanSettings field). Components still loaded from an earlier run are freed when the plan
        loads them otherwise (other ``quantize_bits`` / ``stream_blocks``) and, with offload, all but the text
        encoder (so that a server's next run starts from what the estimate counts). Returns the :class:`mlx_video.memory.MemoryPlan`; raises
        :class:`mlx_video.memory.MemoryBudgetError` (a ValueError naming the memory needed) when
        nothing fits."""
        from .. import memory

        stored = self.cfg.get("quantization", {})
        bits = next((q["bits"] for n in ("dit", "dit_high", "t5") if (q := stored.get(n))), None)
        if bits:
            fixed.setdefault("quantize_bits", bits)
        if (t := self._given_tiling) is not None and "vae_tile" not in fixed:
            fixed.update(vae_tile=t.tile, vae_overlap=t.overlap[0])
        sizes = memory.wan_sizes(self.cfg, plan.task, images=len(plan.pixels))
        frames = 1 + 4 * (plan.shape[1] - 1)  # the Wan VAEs' temporal stride is 4
        dtype = str(self.dtype).rsplit(".", 1)[-1]
        if self._stream_asked is not None:
            fixed.setdefault("stream_blocks", self._stream_asked)
        streaming = not any(self._loras.values())
        if fixed.get("stream_blocks") and not streaming:
            raise ValueError("streamed DiT blocks cannot carry merged LoRAs (each block is read again per step)")
        mp = memory.plan(sizes, frames, plan.height, plan.width, budget, dtype=dtype, streaming=streaming, **fixed)
        loaded_as = (self.quantize_bits, self.stream_blocks)
        self.vae_dtype, self.offload, self.tiling = getattr(mx, mp.vae_dtype), mp.offload, mp.tiling
        self.swap_experts = mp.swap_experts
        self.stream_blocks = mp.stream_blocks
        self.quantize_bits = None if bits else mp.quantize_bits
        # models kept from an earlier run (a server, repeated generate) must be what this plan counts: reload the
        # ones loaded with other weights settings, and with offload hold nothing but the text encoder at the start
        # (the text phase's estimate holds only it)
        if (self.quantize_bits, self.stream_blocks) != loaded_as:
            self.free("dit", *(("text",) if self.quantize_bits != loaded_as[0] else ()))
        if self.offload:
            self.free("dit", "clip", "vae")
        if self._vae is not None:
            self._vae.set_dtype(self.vae_dtype)
        self.memory_plan = mp
        return mp

    def free(self, *names: str) -> None:
        """Drop components ("dit" drops every DiT, "text", "clip", "vae") and MLX's buffer cache."""
        for n in names:
            if n == "dit":
                self._dits.clear()
            else:
                setattr(self, f"_{n}", None)
        mx.clear_cache()

    @property
    def latent_channels(self) -> int:
        return self.cfg["dit"]["out_dim"]

    def check_task(self, tk: WanTask) -> None:
        """Raise ValueError unless this folder holds the checkpoint ``tk`` needs (DiT type, CLIP,
        experts, VAE version)."""
        d, experts = self.cfg["dit"], bool(self.cfg.get("experts"))
        held = (
            f"{'two-expert ' if experts else ''}{d['model_type']} DiT"
            f"{' with CLIP' if d.get('image_dim') else ''}, VAE {self.cfg['vae']['version']}"
        )
        ok = (
            d["model_type"] == tk.model_type
            and experts == tk.experts
            and self.cfg["vae"]["version"] == tk.vae
            and bool(d.get("image_dim")) == tk.clip
            and (not tk.clip or "clip" in self.cfg)
        )
        if not ok:
            need = (
                f"{'two-expert (high/low noise) ' if tk.experts else 'single '}{tk.model_type} DiT"
                f"{' with CLIP' if tk.clip else ' without CLIP'}, VAE {tk.vae}"
            )
            raise ValueError(f"task {tk.name} needs a {need} checkpoint; {self.model_dir} holds a {held}")

    # ------------------------------------------------------------------ stages: plan -> prepare -> denoise -> decode

    def generate(
        self,
        settings: WanSettings | None = None,
        *,
        noise: mx.array | None = None,
        context: Sequence[mx.array] | None = None,
        clip_fea: mx.array | None = None,
        progress: Progress | None = None,
        **fields,
    ) -> GenerationResult:
        """Generate a video (or, with ``one_frame``, one image): ``settings`` (a WanSettings) or its fields as
        keywords (``generate(task="t2v-5B", prompt=..., size="64*32")``).

        Injected inputs (for parity tests): ``noise`` [1, T, h, w, C] float32 (else drawn from the seed),
        ``context`` text embeddings ``[cond [n, 4096], uncond [m, 4096]]``, ``clip_fea`` CLIP tokens
        [1, 257·k, 1280]. progress(stage, step, total) is called after each denoising step (stage "denoise"), and
        with step 0 then 1 of 1 around the text encode ("text encode") and each VAE decode ("decode").
        Returns a GenerationResult (frames uint8 [F, H, W, 3]; latents float32 [1, T, h, w, C], for one-frame
        the target slot only; timings ``text``, ``encode``, ``denoise``, ``decode``). Raises ValueError /
        ImageError / WeightsError on bad input before any model runs, NonFiniteError when the latents or the
        decoded frames become NaN or inf.
        """
        if settings is not None and (fields or not isinstance(settings, WanSettings)):
            raise TypeError("generate takes a WanSettings or its fields as keywords, not both")
        plan = self.plan(settings if settings is not None else WanSettings(**fields))
        plan.check_noise(noise)
        meter, tick = Meter(), progress or (lambda *_: None)
        tick("text encode", 0, 1)
        with meter.phase("text"):
            context = self.encode_text(plan, context)
        tick("text encode", 1, 1)
        s, out = plan.settings, None
        if plan.extend is not None:
            out = to_uint8(plan.extend)
        for k in range(s.segments):
            with meter.phase("encode"):
                cond = self.encode_images(plan, window_context(context, k), clip_fea if k == 0 else None)
            with meter.phase("denoise"):
                latent = self.denoise(plan, cond, noise, progress)
            tick("decode", 0, 1)
            with meter.phase("decode"):
                frames = self.decode(latent)
            tick("decode", 1, 1)
            out = join_windows(out, frames, s.overlap)
            if k + 1 < s.segments:  # the next window continues from what was made (only one window in memory)
                plan = plan.next_window(out)
        params = replace(plan, settings=s).params
        if self.memory_plan is not None:
            params["memory_plan"] = self.memory_plan.to_dict()
        return meter.fill(GenerationResult(out, s.fps, latent, params=params))

    def plan(self, settings: WanSettings) -> WanPlan:
        """Validate ``settings``, check that this folder holds the task's checkpoint, and fix the output size
        (text only: ``size``; TI2V/mi2v: ``best_output_size`` of the first image under the size's area;
        I2V/FLF2V/one-frame: ``i2v_size``) and the latent shape. Loads the images; runs no model."""
        s = settings.validate()
        tk, one = s.preset, s.one_frame
        self.check_task(tk)
        vs = self.cfg["vae"]["stride"]
        pix: list[np.ndarray] = []
        if s.extend is not None and tk.images in ("first", "first_last"):  # the clip's last frame is the first
            pix = first_last_pixels(read_last_frame(s.extend), s.images[0] if s.images else None)
            width, height = i2v_size((pix[0].shape[1], pix[0].shape[0]), math.prod(parse_size(s.size)), vs, 2)
        elif tk.images in ("first", "first_last") or one is not None:
            pix = first_last_pixels(s.images[0], s.images[1] if len(s.images) > 1 and one is None else None)
            if one is not None and len(s.images) > 1:
                pix.append(to_array(load_image(s.images[1])))  # musubi: end image for CLIP, as given
            width, height = i2v_size((pix[0].shape[1], pix[0].shape[0]), math.prod(parse_size(s.size)), vs, 2)
        else:
            paths = [a.path for a in s.anchor_images()]
            first = load_image(paths[0]).size if paths else None
            width, height = output_size(tk, s.size, first, vs * 2)
            pix = prepare_images(paths, width, height)
        T = len(one.positions) if one is not None else check_frame_num(s.frame_num, 4)
        check_grid(width, height, T, vs * 2)
        controls = prepare_images(s.control_images, width, height) if one is not None else []
        video = read_video(s.video, width, height, s.frame_num)[0] if s.video is not None else None
        if video is not None and len(video) < s.frame_num:
            raise ValueError(f"video {s.video} decoded to {len(video)} frames, fewer than frame_num {s.frame_num}")
        extend = read_video(s.extend, width, height)[0] if s.extend is not None else None
        shape = (1, T, height // vs, width // vs, self.latent_channels)
        return WanPlan(s, width, height, shape, pix, controls, video, extend)

    def encode_text(self, plan: WanPlan, context: Sequence[mx.array] | None = None) -> list[mx.array]:
        """UMT5 embeddings [cond [n, 4096], uncond [m, 4096]] of the prompt and the negative prompt, with
        per-segment ``prompts`` [cond_0, ..., cond_{K-1}, uncond] (``window_context`` picks a window's pair);
        ``context`` when injected (either form). Frees the text encoder after, with offload. With a group, the
        encoder runs on rank 0 only and its output is broadcast."""
        if context is not None:
            return list(context)

        def encode():
            enc, s = self.text_encoder, plan.settings
            conds = [c for p in (s.prompts or (s.prompt,)) for c in enc.encode([p])]
            context = conds + enc.encode([s.negative_prompt])
            mx.eval(context)  # a lazy context would keep the encoder's weights alive past free("text")
            if self.offload:
                self.free("text")
            return context

        return on_root(encode, self.sp.group if self.sp else None)

    def encode_images(self, plan: WanPlan, context: list, clip_fea: mx.array | None = None) -> Conditions:
        """The image conditions, by task: TI2V/mi2v latent anchors; I2V/FLF2V ``y`` channels of the
        bicubic-resized first (and last) frame; one-frame control slots; Wan2.1 CLIP tokens (``clip_fea`` when
        injected); the input video's latent (video to video)."""
        tk, pix, c = plan.task, plan.pixels, Conditions(context, clip_fea=clip_fea)
        W, H = plan.width, plan.height
        if tk.images in ("optional", "many") and pix:
            anchors = [
                LatentAnchor(encode_anchor_at(self.vae, im, j, group), j, strength)
                for im, (j, strength, group) in zip(pix, plan.anchors())
            ]
            c.mask, c.clean = anchor_arrays(anchors, plan.shape)
        elif plan.one_frame is not None:
            c.cond = one_frame_condition(self.vae, plan.controls, plan.one_frame)
        elif pix:
            frames = {0: bicubic_resize(pix[0], H, W)}
            if len(pix) > 1:
                frames[plan.settings.frame_num - 1] = bicubic_resize(pix[1], H, W)
            c.cond = encode_frames(self.vae, frames, plan.settings.frame_num, W, H)
        if tk.clip and c.clip_fea is None:
            c.clip_fea = encode_clip(self.clip, pix)
            if self.offload:
                self.free("clip")
        if plan.video is not None:
            c.video_latent = self.vae.encode(mx.array(plan.video)[None])
            mx.eval(c.video_latent)
        # extension on the 5B: the last overlap frames, encoded as the start of a video, anchor latents 0..j
        # (the I2V tasks have the clip's or the previous window's last frame as ``pix[0]`` above)
        if plan.extend is not None and tk.images in ("none", "optional"):
            z = self.vae.encode(mx.array(plan.extend[-plan.settings.overlap :])[None])
            c.mask, c.clean = anchor_arrays([LatentAnchor(z, 0)], plan.shape)
        return c

    def denoise(
        self, plan: WanPlan, c: Conditions, noise: mx.array | None = None, progress: Progress | None = None
    ) -> mx.array:
        """Seeded (or injected) noise (video to video: the video's latent noised to the start step's sigma and only
        the remaining steps, ``sdedit``), anchored, through every step; the A14B experts take their runs of steps
        (``expert_segments``), each with its guide scale; WanFM adds the backward pass. Returns the final latent
        [1, T, h, w, C] float32 (one-frame: the target slot only); frees the DiT(s) after, with offload."""
        s, one = plan.settings, plan.one_frame
        if noise is None:
            noise = mx.random.normal(plan.shape, dtype=mx.float32, key=mx.random.key(s.seed))
        latent, sched = noise.astype(mx.float32), plan.solver()
        if c.video_latent is not None:
            latent, sched = sdedit(sched, s.strength, c.video_latent, latent)
        if c.mask is not None:
            latent = blend_clean(latent, c.mask, c.clean)
        y = c.cond.y() if c.cond is not None else None
        y_rev = c.cond.flip_time().y() if c.cond is not None and s.bidirectional else None
        T, h, w = plan.shape[1:4]
        grid, t_pos = (T, h // 2, w // 2), (one.positions if one is not None else None)
        (g_low, g_high) = plan.guide
        for name, a, b in expert_segments(sched.timesteps, plan.task.boundary) if sched.num_steps else ():
            dit = self.model(name)
            ctx = dit.embed_text([x.astype(self.dtype) for x in c.context])
            img = dit.embed_image(c.clip_fea.astype(self.dtype)) if c.clip_fea is not None else None
            rope = dit.rope_tables(grid, t_positions=t_pos)
            back = None
            if s.bidirectional:
                faithful = s.bidirectional == "faithful"
                back = BackwardPass(
                    dit.rope_tables(grid, t_positions=np.arange(T)[::-1]) if faithful else rope,
                    y_rev,
                    skip=faithful and s.skip_redundant,
                )
            call = partial(dit, sp=self.sp) if self.sp else dit  # sequence parallel
            latent = denoise(
                call,
                latent,
                sched,
                ctx,
                rope,
                g_low if name == "dit_low" else g_high,
                c.mask,
                c.clean,
                s.batch_cfg,
                progress,
                y=y,
                img=img,
                steps=range(a, b),
                backward=back,
            )
            # nothing of this expert may outlive its steps: the next one loads at the top of the loop, and with
            # one expert resident (offload / swap_experts) this one must be gone by then (issue 11: `call` held it)
            del dit, call, ctx, img, rope, back
        if self.offload:
            self.free("dit")
        return latent[:, one.target_slot : one.target_slot + 1] if one is not None else latent

    def decode(self, latent: mx.array) -> np.ndarray:
        """VAE decode of [1, T, h, w, C] to uint8 frames [F, H, W, 3] (in ``tiling``'s tiles, split over
        the group's ranks); NonFiniteError if the decode holds NaN or inf."""
        tiles = self.tiling
        hint = (
            f"likely cause: an overflow of the VAE's "
            f"{str(self.vae_dtype).replace('mlx.core.', '')} dtype (try vae_dtype float32)"
        )
        if tiles is None:  # chunk by chunk to uint8 on the device: the float32 video is never held whole
            frames = []
            for chunk, finite in self.vae.decode_frames(latent):
                check_finite(finite, "in the decoded frames", hint)
                frames.append(chunk[0])
            return np.concatenate(frames)
        video = self.vae.decode(latent, tiles, self.sp and self.sp.group)
        mx.eval(video)
        check_finite(video, "in the decoded frames", hint)
        return to_uint8(np.array(video[0]))
