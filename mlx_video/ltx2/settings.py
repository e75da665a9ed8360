"""LTX-2 / LTX-2.3 pipeline settings and inputs: every official default, and every check made before a model loads.

:class:`LTXSettings` says what to generate (pipeline, version, size, frames, fps, steps, guidance, LoRA strengths,
negative prompt, CRF, seed; :meth:`~LTXSettings.validate`, :meth:`~LTXSettings.resolved`). Beside it
:func:`mlx_video.ltx2.pipelines.generate` takes the inputs :class:`ImageCondition`, :class:`AudioCondition`
(a2vid), :class:`ControlVideo` (ic-lora) and :class:`RetakeSource` (retake), each with its own ``check``.
The stages that run them are in :mod:`mlx_video.ltx2.pipelines`, which re-exports every public name here.

Reference: ltx-pipelines 1.0.0 defaults (``ltx_pipelines.utils.constants`` and ``utils.args``; docs/ltx2.md §9)
and the pipelines' own checks (``DistilledPipeline``, ``TI2VidOneStagePipeline``, ``TI2VidTwoStagesPipeline``,
``TI2VidTwoStagesHQPipeline``, ``A2VidPipelineTwoStage`` §16, ``ICLoraPipeline`` §17,
``KeyframeInterpolationPipeline`` §19, ``RetakePipeline`` §20).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Union

import numpy as np

from mlx_video import checks
from mlx_video.ltx2.conditioning import (
    AUDIO_DOWNSAMPLE,
    AUDIO_HOP,
    AUDIO_SAMPLE_RATE,
    audio_latent_frames,
    latent_grid,
)
from mlx_video.sampling import guidance as G
from mlx_video.sampling.schedules import DISTILLED_SIGMAS

PIPELINES = (
    "distilled",
    "dev",
    "dev-two-stage",
    "dev-two-stage-hq",
    "a2vid",
    "ic-lora",
    "keyframes",
    "retake",
    "retake-distilled",
)
TWO_STAGE = ("distilled", "dev-two-stage", "dev-two-stage-hq", "a2vid", "ic-lora", "keyframes")
WITH_LORA = ("dev-two-stage", "dev-two-stage-hq", "a2vid", "keyframes")  # dev weights + the distilled LoRA
UNGUIDED = ("distilled", "ic-lora", "retake-distilled")  # pipelines on the distilled checkpoint, without guidance
RETAKE = ("retake", "retake-distilled")  # one stage at the source video's size (RetakePipeline, distilled or not)
RETAKE_STEPS = 40  # RetakePipeline.__call__'s num_inference_steps (its CLI passes none), LTX-2 and LTX-2.3 alike
# Official defaults (ltx_pipelines.utils.constants PipelineParams / LTX_2_3_HQ_PARAMS and utils.args): the output
# size is the stage-1 size for the one-stage dev pipeline and twice it for the two-stage ones.
DEFAULT_SIZE = {
    "distilled": (1024, 1536),
    "dev": (512, 768),
    "dev-two-stage": (1024, 1536),
    "dev-two-stage-hq": (1088, 1920),
    "a2vid": (1024, 1536),
    "ic-lora": (1024, 1536),
    "keyframes": (1024, 1536),
}
DEFAULT_LORA = {
    "dev-two-stage": (0.0, 1.0),
    "dev-two-stage-hq": (0.25, 0.5),
    "a2vid": (0.0, 1.0),
    "keyframes": (0.0, 1.0),
}  # (stage 1, stage 2) strengths
DEFAULT_SEED, DEFAULT_IMAGE_CRF = 10, 33
MAX_VIDEO_TOKENS = 1 << 19  # latent tokens of the full-resolution stage (20 s of 2176x3840 at 24 fps: 497760)
MAX_STEPS = 1000
# Our own short default (the official default negative prompt is a longer list of the same kind).
DEFAULT_NEGATIVE_PROMPT = (
    "worst quality, low quality, blurry, out of focus, jittery motion, flicker, distorted "
    "anatomy, deformed hands and faces, watermark, text, static frame, noisy audio"
)
Guidance = Union[G.GuidanceParams, Mapping, None]


# ----------------------------------------------------------------------------- settings


def check_pipeline(pipeline: str) -> None:
    """Raise ValueError unless ``pipeline`` is one of :data:`PIPELINES`."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINES)}")


def model_family(version: str) -> str:
    """A model version ("2", "2.0.0", "2.3", "2.3.1-tiny", ...) -> "2" or "2.3" (the official rule: versions
    starting with "2.3" take the LTX-2.3 defaults). Raises ValueError for anything else."""
    v = str(version)
    if v.startswith("2.3"):
        return "2.3"
    if v == "2" or v.startswith("2."):
        return "2"
    raise ValueError(f"model version must be LTX-2 ('2', '2.0...') or LTX-2.3 ('2.3...'), got {version!r}")


def default_guidance(pipeline: str, version: str) -> tuple[int, G.GuidanceParams | None, G.GuidanceParams | None]:
    """Official (steps, video guidance, audio guidance) defaults (ltx_pipelines.utils.constants):
    dev / dev-two-stage: LTX-2 40 steps, STG block 29; LTX-2.3 30 steps, block 28; HQ (either version):
    15 steps, STG off, rescale 0.45 / 1.0; distilled: 8 fixed steps, no guidance; a2vid: dev-two-stage's
    steps and video guidance, audio unguided (``A2VidPipelineTwoStage``'s default ``MultiModalGuiderParams()``:
    the audio is held fixed); keyframes: dev-two-stage's; retake: 40 steps (``RetakePipeline``'s default, either
    version) with the version's dev guidance; retake-distilled: the distilled 8 steps, no guidance."""
    check_pipeline(pipeline)
    if pipeline == "ic-lora":
        pipeline = "distilled"
    if pipeline == "retake":
        return RETAKE_STEPS, *default_guidance("dev", version)[1:]
    if pipeline == "a2vid":
        steps, video, _ = default_guidance("dev-two-stage", version)
        return steps, video, G.GuidanceParams()
    if pipeline in UNGUIDED:
        return len(DISTILLED_SIGMAS) - 1, None, None
    if pipeline == "dev-two-stage-hq":
        return G.LTX23_HQ_STEPS, G.LTX23_HQ_VIDEO_GUIDANCE, G.LTX23_HQ_AUDIO_GUIDANCE
    if model_family(version) == "2.3":
        return G.LTX23_STEPS, G.LTX23_VIDEO_GUIDANCE, G.LTX23_AUDIO_GUIDANCE
    return G.LTX2_STEPS, G.LTX2_VIDEO_GUIDANCE, G.LTX2_AUDIO_GUIDANCE


def _guidance_params(name: str, g: Guidance, default: G.GuidanceParams | None = None) -> G.GuidanceParams:
    """``g`` as GuidanceParams: a mapping overrides only the fields it names (on ``default``). Checks every value."""
    if isinstance(g, G.GuidanceParams):
        out = g
    elif isinstance(g, Mapping):
        known = {f.name for f in fields(G.GuidanceParams)}
        unknown = sorted(set(g) - known)
        if unknown:
            raise ValueError(f"{name}: unknown guidance fields {unknown}; known: {sorted(known)}")
        kw = dict(g)
        if kw.get("stg_blocks") is not None:
            kw["stg_blocks"] = tuple(kw["stg_blocks"])
        out = replace(default or G.GuidanceParams(), **kw)
    else:
        raise ValueError(f"{name} must be GuidanceParams or a mapping of its fields, got {type(g).__name__}")
    for f in ("cfg_scale", "stg_scale", "rescale_scale", "modality_scale"):
        checks.finite(f"{name}.{f}", getattr(out, f))
    blocks = out.stg_blocks
    if not isinstance(blocks, tuple) or any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in blocks):
        raise ValueError(f"{name}.stg_blocks must be block indices >= 0, got {blocks!r}")
    if isinstance(out.skip_step, bool) or not isinstance(out.skip_step, int) or out.skip_step < 0:
        raise ValueError(f"{name}.skip_step must be a whole number >= 0, got {out.skip_step!r}")
    return out


@dataclass
class ImageCondition:
    """An image at pixel frame ``frame`` (0 = first frame, which replaces the first latent frame; later frames
    guide). image: uint8 RGB [H, W, 3] as decoded from its file, any size >= 2x2; strength in [0, 1];
    crf: H.264 CRF of its round trip (ltx-pipelines ``ImageConditioningInput.crf``; None = the settings'
    ``image_crf``, 0 = none)."""

    image: np.ndarray
    frame: int = 0
    strength: float = 1.0
    crf: int | None = None

    def check(self, num_frames: int, index: int = 0) -> None:
        """Raise ValueError (naming image ``index``) for a bad array, frame, strength or CRF."""
        what = f"image {index}"
        img = self.image
        if (
            not isinstance(img, np.ndarray)
            or img.dtype != np.uint8
            or img.ndim != 3
            or img.shape[2] != 3
            or min(img.shape[:2]) < 2
        ):
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"{what}: expected uint8 RGB [H, W, 3] with H, W >= 2, got {desc}")
        if (
            isinstance(self.frame, bool)
            or not isinstance(self.frame, (int, np.integer))
            or not 0 <= self.frame < num_frames
        ):
            raise ValueError(f"{what}: frame index {self.frame} is outside the clip (0..{num_frames - 1})")
        checks.finite(f"{what} strength", self.strength, 0.0, 1.0)
        if self.crf is not None:
            checks.crf(self.crf)

    def params(self) -> dict:
        """JSON-able description (no pixels)."""
        return dict(
            frame=int(self.frame),
            strength=float(self.strength),
            crf=self.crf,
            size=[int(self.image.shape[1]), int(self.image.shape[0])],
        )


@dataclass
class AudioCondition:
    """The audio of audio-to-video (pipeline a2vid): float32 waveform [samples, channels] in about [-1, 1]
    at ``sample_rate`` Hz, as :func:`mlx_video.io.audio.read_audio` returns it (stereo; the audio VAE takes
    2 channels), already cut to ``[audio_start_time, audio_start_time + audio_max_duration]``. It is
    encoded by the audio VAE (resampled to 16 kHz first) and held fixed in both stages; the result carries
    this waveform as its audio (``A2VidPipelineTwoStage`` returns the input audio, not the decoded latent).
    ``start_time`` / ``max_duration``: where it was cut from, for the metadata."""

    waveform: np.ndarray
    sample_rate: int
    start_time: float = 0.0
    max_duration: float | None = None

    def check(self, num_frames: int, fps: float) -> None:
        """Raise ValueError for a waveform that is not finite float [samples, 2], a rate that is not a positive
        integer, or audio too short for the clip (the encoded latent needs ``audio_latent_frames`` frames)."""
        w = self.waveform
        if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[1] != 2 or not np.issubdtype(w.dtype, np.floating):
            desc = f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
            raise ValueError(f"audio: expected a float waveform [samples, 2] (stereo), got {desc}")
        if not np.isfinite(w).all():
            raise ValueError("audio: the waveform holds NaN or inf")
        checks.positive_int("audio sample rate", self.sample_rate)
        need = audio_latent_frames(num_frames, fps)
        # the encoder's latent length from the sample count at 16 kHz: mel frames n // hop + 1, then /4 (causal)
        n16 = (w.shape[0] * AUDIO_SAMPLE_RATE) // int(self.sample_rate)
        have = (n16 // AUDIO_HOP) // AUDIO_DOWNSAMPLE + 1 if n16 > 512 else 0
        if have < need:
            raise ValueError(
                f"audio lasts {w.shape[0] / self.sample_rate:.3f} s; {num_frames} frames at {fps:g} fps need "
                f"at least {(need - 1) / 25:.3f} s of audio"
            )

    def params(self) -> dict:
        """JSON-able description (no samples)."""
        return dict(
            sample_rate=int(self.sample_rate),
            seconds=round(self.waveform.shape[0] / self.sample_rate, 6),
            audio_start_time=float(self.start_time),
            audio_max_duration=self.max_duration,
        )


@dataclass
class ControlVideo:
    """A control video of pipeline ic-lora (``ICLoraPipeline``'s ``video_conditioning`` entry): frames uint8 RGB
    [F, H, W, 3] as decoded (any size; cover-resized and centre-cropped per frame to stage 1's size divided by the
    IC-LoRA's ``reference_downscale_factor``, as ``load_video_conditioning``; no CRF round trip), its first
    ``num_frames`` used; strength in [0, 1] (1 keeps its tokens clean). attention_mask: None, or float [F', h, w]
    in [0, 1] at that resized pixel size (F' >= num_frames; ``conditioning_attention_mask``), downsampled to the
    latent grid and multiplied by ``LTXSettings.conditioning_attention_strength``."""

    frames: np.ndarray
    strength: float = 1.0
    attention_mask: np.ndarray | None = None

    def check(self, num_frames: int, index: int = 0) -> None:
        """Raise ValueError for frames that are not uint8 RGB [F, H, W, 3], fewer frames than the clip, a strength
        outside [0, 1] or a mask that is not [F', h, w] in [0, 1] with F' >= num_frames."""
        v = self.frames
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 4 or v.shape[3] != 3:
            desc = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ValueError(f"control video {index}: expected uint8 RGB [F, H, W, 3], got {desc}")
        if v.shape[0] < num_frames:
            raise ValueError(f"control video {index} has {v.shape[0]} frames; the clip needs {num_frames}")
        checks.finite(f"control video {index} strength", self.strength, 0.0, 1.0)
        m = self.attention_mask
        if m is not None:
            m = np.asarray(m)
            if m.ndim != 3 or m.shape[0] < num_frames or not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
                raise ValueError(
                    f"control video {index}: attention mask must be [F, h, w] in [0, 1], F >= {num_frames}"
                )

    def params(self) -> dict:
        """JSON-able description (no pixels)."""
        f, h, w, _ = self.frames.shape
        return dict(
            strength=float(self.strength), frames=int(f), size=[int(w), int(h)], mask=self.attention_mask is not None
        )


@dataclass
class LTXSettings:
    """What to generate, with every default of the official pipelines (ltx-pipelines 1.0.0) in one place.

    pipeline: distilled | dev | dev-two-stage | dev-two-stage-hq | a2vid | ic-lora. version: "2" or "2.3" (any version string;
    None = the model's own, :attr:`LTX2Components.model_version`), choosing the dev guidance defaults.
    height / width: output size in pixels (None: the pipeline's official size, :data:`DEFAULT_SIZE`);
    multiples of 64 for two-stage pipelines, 32 for dev. num_frames: 8k+1. fps > 0 (sets the audio length
    and the RoPE time axis). steps: dev pipelines only (None: 40 LTX-2, 30 LTX-2.3, 15 HQ).
    video_guidance / audio_guidance: dev pipelines only; GuidanceParams, or a mapping overriding some fields
    of the official default (e.g. ``{"cfg_scale": 4.0}``). lora_strength_stage_1 / lora_strength_stage_2
    (two-stage dev pipelines only; defaults 0 / 1.0, HQ 0.25 / 0.5): the distilled LoRA's strengths per stage.
    negative_prompt: guided pipelines (None: :data:`DEFAULT_NEGATIVE_PROMPT`). image_crf: the H.264 CRF of the
    conditioning images' round trip (33, 0 = none, at most 51). seed: any integer, reduced mod 2**32
    (:func:`mlx_video.checks.seed`); None draws a random one (stored by :meth:`resolved`); official default 10.
    skip_stage_2 / conditioning_attention_strength (ic-lora only): stop after stage 1 (half-size output); the
    weight in [0, 1] of attention between the control tokens and the video (1 = full, ``ICLoraPipeline``'s).
    """

    pipeline: str = "distilled"
    version: str | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int = 121
    fps: float = 24.0
    steps: int | None = None
    video_guidance: Guidance = None
    audio_guidance: Guidance = None
    lora_strength_stage_1: float | None = None
    lora_strength_stage_2: float | None = None
    negative_prompt: str | None = None
    image_crf: int = DEFAULT_IMAGE_CRF
    seed: int | None = DEFAULT_SEED
    skip_stage_2: bool = False
    conditioning_attention_strength: float = 1.0

    @property
    def guided(self) -> bool:
        """Whether the pipeline's first stage uses guidance (every dev pipeline)."""
        return self.pipeline not in UNGUIDED

    @property
    def variant(self) -> str:
        """The checkpoint the pipeline runs on: "distilled" or "dev"."""
        return "distilled" if self.pipeline in UNGUIDED else "dev"

    @property
    def negative_text(self) -> str | None:
        """The negative prompt to encode: None for the distilled pipeline (no guidance)."""
        if not self.guided:
            return None
        if self.negative_prompt is None:  # RetakePipeline's default negative prompt is the empty one
            return "" if self.pipeline == "retake" else DEFAULT_NEGATIVE_PROMPT
        return self.negative_prompt

    def size(self) -> tuple[int, int]:
        """(height, width) with the pipeline's official default for what is None."""
        dh, dw = DEFAULT_SIZE.get(self.pipeline, DEFAULT_SIZE["distilled"])
        return (dh if self.height is None else self.height), (dw if self.width is None else self.width)

    def validate(self, images: Sequence[ImageCondition] = ()) -> LTXSettings:
        """Check every value, and each image against the clip, before anything loads; returns self.

        Raises ValueError with one line naming the setting: an unknown pipeline or version; a size that is not a
        positive multiple of 64 (two-stage) / 32 (dev); a frame count that is not 8k+1; a clip over
        :data:`MAX_VIDEO_TOKENS` latent tokens or shorter than one audio latent (1/25 s); fps not in (0, 1000];
        steps outside 1..1000; non-finite guidance or LoRA strengths; steps / guidance for the distilled pipeline,
        LoRA strengths for a pipeline without the LoRA; a CRF outside 0..51; a seed that is not an integer; an
        image that is not uint8 RGB, or whose frame is outside the clip or strength outside [0, 1].
        """
        check_pipeline(self.pipeline)
        if self.version is not None:
            model_family(self.version)
        frames = self._check_clip()
        self._check_sampling()
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt must be a string, got {type(self.negative_prompt).__name__}")
        checks.crf(self.image_crf)
        if self.seed is not None:
            checks.seed(self.seed)
        checks.finite("conditioning_attention_strength", self.conditioning_attention_strength, 0.0, 1.0)
        if self.pipeline != "ic-lora" and (self.skip_stage_2 or self.conditioning_attention_strength != 1.0):
            raise ValueError("skip_stage_2 and conditioning_attention_strength are for the ic-lora pipeline")
        for i, im in enumerate(images):
            im.check(frames, i)
        return self

    def _check_clip(self) -> int:
        """Size, frame count, token bound, fps and audio length; returns the frame count."""
        div = 64 if self.pipeline in TWO_STAGE else 32
        h, w = self.size()
        for name, v in (("height", h), ("width", w)):
            checks.positive_int(name, v)
            if v % div:
                raise ValueError(f"{self.pipeline}: {name} must be a multiple of {div}, got {v}")
        frames = checks.positive_int("num_frames", self.num_frames)
        if (frames - 1) % 8:
            raise ValueError(f"num_frames must be 8k+1 (1, 9, 17, ..., 121), got {frames}")
        f, gh, gw = latent_grid(frames, h, w)
        if f * gh * gw > MAX_VIDEO_TOKENS:
            raise ValueError(
                f"{frames} frames at {h}x{w} are {f * gh * gw} latent tokens, more than the "
                f"{MAX_VIDEO_TOKENS} the pipelines take (20 s of 2176x3840 at 24 fps are 497760)"
            )
        fps = checks.fps(self.fps)
        if audio_latent_frames(frames, fps) < 1:
            raise ValueError(f"{frames} frames at {fps:g} fps last less than one audio latent (1/25 s)")
        return frames

    def _check_sampling(self) -> None:
        """Steps, guidance and LoRA strengths: set only where the pipeline has them, and finite."""
        if not self.guided and (
            self.steps is not None or self.video_guidance is not None or self.audio_guidance is not None
        ):
            raise ValueError("the distilled pipeline has fixed steps and no guidance: leave steps and guidance unset")
        if self.steps is not None:
            checks.positive_int("steps", self.steps, MAX_STEPS)
        for name in ("video_guidance", "audio_guidance"):
            if getattr(self, name) is not None:
                _guidance_params(name, getattr(self, name))
        if self.pipeline == "a2vid" and self.audio_guidance is not None:
            g = _guidance_params("audio_guidance", self.audio_guidance, G.GuidanceParams())
            if g.needs_uncond or g.needs_perturbed or g.needs_isolated or g.rescale_scale:
                raise ValueError("a2vid holds the given audio fixed: leave audio guidance unset")
        for name in ("lora_strength_stage_1", "lora_strength_stage_2"):
            if getattr(self, name) is not None:
                if self.pipeline not in WITH_LORA:
                    raise ValueError(f"LoRA strengths are for {' and '.join(WITH_LORA)}, not {self.pipeline}")
                checks.finite(name, getattr(self, name))

    def resolved(self, version: str | None = None) -> LTXSettings:
        """A validated copy with every default filled in: version ("2" / "2.3", from ``version`` = the model's
        when unset), size, steps and GuidanceParams (dev pipelines), LoRA strengths (two-stage dev pipelines),
        negative prompt (guided pipelines) and the seed (reduced; drawn at random when None). Idempotent."""
        self.validate()
        ver = model_family(self.version or version or "2")
        h, w = self.size()
        kw = dict(version=ver, height=h, width=w, seed=self.with_seed().seed)
        if self.guided:
            steps, dv, da = default_guidance(self.pipeline, ver)
            kw.update(
                steps=steps if self.steps is None else self.steps,
                negative_prompt=self.negative_text,
                video_guidance=dv
                if self.video_guidance is None
                else _guidance_params("video_guidance", self.video_guidance, dv),
                audio_guidance=da
                if self.audio_guidance is None
                else _guidance_params("audio_guidance", self.audio_guidance, da),
            )
        if self.pipeline == "a2vid":  # unguided audio; skip_step shared with the video (the audio is fixed anyway)
            kw["audio_guidance"] = G.GuidanceParams(skip_step=kw["video_guidance"].skip_step)
        if self.pipeline in WITH_LORA:
            kw.update(zip(("lora_strength_stage_1", "lora_strength_stage_2"), self.lora_strengths))
        return replace(self, **kw)

    def with_seed(self) -> LTXSettings:
        """A copy whose seed is fixed: reduced mod 2**32, or drawn at random when None."""
        return replace(
            self, seed=checks.seed(random.randrange(checks.SEED_MAX + 1) if self.seed is None else self.seed)
        )

    @property
    def lora_strengths(self) -> tuple[float, float]:
        """(stage 1, stage 2) strengths of the distilled LoRA, defaults filled in; (0, 0) without the LoRA."""
        l1, l2 = DEFAULT_LORA.get(self.pipeline, (0.0, 0.0))
        return (
            l1 if self.lora_strength_stage_1 is None else self.lora_strength_stage_1,
            l2 if self.lora_strength_stage_2 is None else self.lora_strength_stage_2,
        )

    def params(self) -> dict:
        """The settings as a JSON-able dict (guidance as dicts), for the video's metadata."""
        out = asdict(self)
        for k in ("video_guidance", "audio_guidance"):
            g = getattr(self, k)
            out[k] = (
                None
                if g is None
                else {**asdict(g), "stg_blocks": list(g.stg_blocks)}
                if isinstance(g, G.GuidanceParams)
                else dict(g)
            )
        return out


# ----------------------------------------------------------------------------- retake

Regions = Union[tuple[tuple[float, float], Union[tuple[float, float], None]], None]
"""Retake's time ranges ``(video (start, end), audio (start, end) or None)`` in seconds; audio None = no source
audio (the audio is generated whole, mask 1). None: no retake."""
RETAKE_MIN_FRAMES = 9


def check_retake(num_frames: int, height: int, width: int, fps: float, start_time: float, end_time: float) -> None:
    """Raise ValueError (one line) unless a video of ``num_frames`` frames of width x height at ``fps`` can be
    retaken over ``[start_time, end_time]`` seconds: 8k+1 frames, at least 9 (one latent frame after the
    first); width and height multiples of 32 (``retake.py``'s CLI checks); fps in (0, 1000]; a finite range with
    ``0 <= start_time < end_time <= num_frames / fps`` (inside the video)."""
    checks.fps(fps)
    if num_frames < RETAKE_MIN_FRAMES:
        raise ValueError(f"the source video has {num_frames} frames; retake needs at least {RETAKE_MIN_FRAMES}")
    if (num_frames - 1) % 8:
        raise ValueError(
            f"the source video has {num_frames} frames; retake needs 8k+1 (cut it to {(num_frames - 1) // 8 * 8 + 1})"
        )
    if height % 32 or width % 32:
        raise ValueError(f"the source video is {width}x{height}; retake needs width and height multiples of 32")
    checks.finite("retake start", start_time)
    checks.finite("retake end", end_time)
    duration = num_frames / fps
    if not 0.0 <= start_time < end_time <= duration:
        raise ValueError(
            f"retake range [{start_time:g}, {end_time:g}] s must satisfy 0 <= START < END <= {duration:g} s "
            f"(the video's length)"
        )


@dataclass
class RetakeSource:
    """The video to retake (pipelines retake / retake-distilled, ltx-pipelines ``RetakePipeline``).

    frames: uint8 RGB [F, H, W, 3], every frame of the video as decoded (:func:`mlx_video.io.video.read_video`;
    F = 8k+1 >= 9, H and W multiples of 32: the output has the source's size, length and fps). fps: its frame
    rate. audio: its audio stream (an :class:`AudioCondition`, the whole stream) or None (the audio is then
    generated whole). start_time / end_time: the range to regenerate, seconds, ``0 <= start < end <= F / fps``;
    every video and audio latent token overlapping it is regenerated, the rest is kept (denoise mask 0).
    regenerate_video / regenerate_audio False: keep that modality whole (the official range (0, 0)).
    """

    frames: np.ndarray
    fps: float
    start_time: float
    end_time: float
    audio: AudioCondition | None = None
    regenerate_video: bool = True
    regenerate_audio: bool = True

    def check(self) -> None:
        """Raise ValueError for frames that are not uint8 [F, H, W, 3], a video or range :func:`check_retake`
        refuses, or audio that is not a finite float waveform [samples, 2] at a positive rate."""
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] != 3:
            desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise ValueError(f"source video: expected uint8 RGB frames [F, H, W, 3], got {desc}")
        check_retake(f.shape[0], f.shape[1], f.shape[2], self.fps, self.start_time, self.end_time)
        if self.audio is not None:
            w = self.audio.waveform
            if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[1] != 2 or not np.isfinite(w).all():
                raise ValueError("source audio: expected a finite float waveform [samples, 2] (stereo)")
            checks.positive_int("source audio sample rate", self.audio.sample_rate)

    def regions(self) -> Regions:
        """(video range, audio range or None): ``(start, end)``, ``(0, 0)`` for a modality kept whole, audio None
        without source audio (as ``RetakePipeline`` builds its ``TemporalRegionMask`` conditionings)."""
        keep = (0.0, 0.0)
        span = (float(self.start_time), float(self.end_time))
        audio = None if self.audio is None else (span if self.regenerate_audio else keep)
        return (span if self.regenerate_video else keep), audio

    def settings(self, s: LTXSettings) -> LTXSettings:
        """``s`` with the source's size, frame count and fps. Raises ValueError when ``s`` names another size."""
        f, h, w = self.frames.shape[:3]
        if (s.height, s.width) not in ((None, None), (h, w)):
            raise ValueError(f"retake keeps the source video's size {w}x{h}; leave height and width unset")
        return replace(s, height=h, width=w, num_frames=f, fps=float(self.fps))

    def params(self) -> dict:
        """JSON-able description (no pixels or samples)."""
        return dict(
            start_time=float(self.start_time),
            end_time=float(self.end_time),
            regenerate_video=bool(self.regenerate_video),
            regenerate_audio=bool(self.regenerate_audio),
            frames=int(self.frames.shape[0]),
            size=[int(self.frames.shape[2]), int(self.frames.shape[1])],
            fps=float(self.fps),
            audio=None if self.audio is None else self.audio.params(),
        )
