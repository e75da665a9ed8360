"""LTX-2 / LTX-2.3 pipelines DISTILLED, DEV, DEV_TWO_STAGE and DEV_TWO_STAGE_HQ as compositions of named stages.

    settings (:class:`LTXSettings`: every default, :meth:`~LTXSettings.validate`)
    -> plan (:func:`plan_stages`: sizes and schedule per stage)
    -> prepare (:func:`prepare_images`: the CRF round trip of each conditioning image; text contexts are
       injected, made by :func:`mlx_video.ltx2.loading.encode_text` from :attr:`LTXSettings.negative_text`)
    -> denoise (:func:`denoise_stage` per stage: encode the images at the stage's resolution, build and noise
       the video (+ guiding tokens) and audio states, :func:`mlx_video.ltx2.denoise.denoise`; a refining stage
       starts from the previous latent upsampled x2, re-noised to its first sigma)
    -> decode (:func:`decode_video`: VAE; :func:`decode_waveform`: audio VAE + vocoder).

:func:`generate` runs them and returns a :class:`mlx_video.result.GenerationResult`.

Reference: ltx-pipelines 1.0.0 ``DistilledPipeline``, ``TI2VidOneStagePipeline``,
``TI2VidTwoStagesPipeline``, ``TI2VidTwoStagesHQPipeline``, ``A2VidPipelineTwoStage`` (a2vid, §16) and
``ICLoraPipeline`` (ic-lora, §17) (docs/ltx2.md §9), defaults from
``ltx_pipelines.utils.constants`` and ``utils.args``:

| pipeline          | stage 1 (half resolution unless one-stage)          | stage 2 (full resolution)          |
| distilled         | 8 distilled sigmas, Euler, no guidance              | 3 sigmas from 0.909375, Euler      |
| dev               | full resolution, LTX2Scheduler(steps, 4096 tokens), Euler, multimodal guidance | - |
| dev-two-stage     | LTX2Scheduler(steps, 4096 tokens), Euler, guidance  | dev + distilled LoRA, 3 sigmas, Euler |
| dev-two-stage-hq  | LTX2Scheduler(steps, real token count), res2s, guidance (LoRA 0.25) | LoRA 0.5, 3 sigmas, res2s |
| a2vid             | as dev-two-stage, the given audio's latent held fixed (mask 0) | as dev-two-stage, audio fixed |
| ic-lora           | distilled + IC-LoRA, control videos as in-context tokens | distilled, no IC-LoRA (or skipped) |
| keyframes         | as dev-two-stage, every image (frame 0 too) a guiding-token block | as dev-two-stage |
| retake            | source size, source latents, time-range mask, LTX2Scheduler(40), guidance | - |
| retake-distilled  | as retake on the distilled checkpoint: 8 distilled sigmas, no guidance | - |

``KeyframeInterpolationPipeline`` (keyframes, docs/ltx2.md §19) and ``RetakePipeline`` (retake, §20, a
:class:`RetakeSource` passed as ``generate(..., source=)``) are the same stages with other image / mask rules.

Images: pixel frame 0 -> :class:`LatentAnchor` (latent replacement), any later frame ->
:class:`GuidingTokens` (ltx-pipelines ``combined_image_conditionings``). Each image first makes the
reference's H.264 round trip at its CRF (``media_io.preprocess``, default 33, 0 = none:
:func:`mlx_video.io.images.h264_roundtrip`), then is resized per stage with
:func:`mlx_video.io.images.bilinear_cover_crop` (ltx-pipelines ``resize_and_center_crop``). Audio is
always denoised with the video (the official pipelines generate both); ``decode_audio=False`` only skips
decoding it.

Nothing here prints or writes files; progress goes to an optional callback.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Union

import mlx.core as mx
import numpy as np

from mlx_video import checks
from mlx_video.conditioning import LatentAnchor
from mlx_video.io.images import bilinear_cover_crop, h264_roundtrip
from mlx_video.ltx2.audio_vae import patchify as audio_patchify
from mlx_video.ltx2.audio_vae import waveform_to_mel
from mlx_video.ltx2.conditioning import (
    AUDIO_DOWNSAMPLE,
    AUDIO_HOP,
    AUDIO_SAMPLE_RATE,
    GuidingTokens,
    ReferenceTokens,
    audio_latent_frames,
    audio_state,
    latent_grid,
    noise_state,
    time_region_mask,
    video_state,
)
from mlx_video.ltx2.denoise import TextContext, denoise
from mlx_video.ltx2.transformer import LTXModel
from mlx_video.ltx2.upsampler import LatentUpsampler, upsample_video
from mlx_video.ltx2.video_vae import VideoVAE
from mlx_video.result import GenerationResult, Meter, check_finite
from mlx_video.sampling import guidance as G
from mlx_video.sampling.schedules import DISTILLED_SIGMAS, STAGE2_DISTILLED_SIGMAS, ltx2_sigmas
from mlx_video.sampling.solvers import res2s_noise

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
Progress = Callable[[str, int, int], None]
NoiseSource = Callable[[str, tuple], mx.array]
"""``(name, shape) -> standard-normal float32 array``. Names: ``"stage{k}.video"`` / ``"stage{k}.audio"``
(the initial noise of stage k, video including guiding tokens, [1, T, C]) and, for res2s stages,
``"stage{k}.res2s.{step}.{substep|step}.{video|audio}"`` (the SDE noise, already standardised)."""
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


def area_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch ``interpolate(mode="area")`` (adaptive average pooling) of [..., H, W] to [..., height, width]:
    output cell i averages input rows floor(i H / height) .. ceil((i + 1) H / height) - 1 (columns alike)."""

    def pool(a, n_out, axis):
        n = a.shape[axis]
        cells = [
            a.take(range(i * n // n_out, -(-(i + 1) * n // n_out)), axis=axis).mean(axis=axis, keepdims=True)
            for i in range(n_out)
        ]
        return np.concatenate(cells, axis=axis)

    return pool(pool(np.asarray(x, np.float32), height, -2), width, -1)


def latent_attention_mask(mask: np.ndarray, frames: int, h: int, w: int) -> np.ndarray:
    """A pixel-space [F, H, W] mask -> per-token [frames * h * w] weights (``ICLoraPipeline._downsample_mask_to_latent``):
    area-resized to h x w per frame, then the first frame alone and each following group of (F - 1) / (frames - 1)
    frames averaged (the causal VAE's time layout); (f, h, w) token order. Raises ValueError when F - 1 is not a
    multiple of frames - 1."""
    m = area_resize(mask, h, w)
    out = [m[:1]]
    if m.shape[0] > 1 and frames > 1:
        if (m.shape[0] - 1) % (frames - 1):
            raise ValueError(f"a mask of {m.shape[0]} frames does not map onto {frames} latent frames")
        t = (m.shape[0] - 1) // (frames - 1)
        out.append(m[1:].reshape(frames - 1, t, h, w).mean(axis=1))
    return np.concatenate(out, 0).reshape(-1)


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


@dataclass
class LTX2Components:
    """Loaded components (see ``mlx_video.ltx2.loading``); tests build them from tiny modules.

    transformer: stage-1 weights (distilled; dev; dev + distilled LoRA at 0.25 for HQ).
    stage2_transformer: the stage-2 weights (dev + LoRA at 1.0, or 0.5 for HQ) or a zero-argument
    callable returning them (called when stage 2 starts, so a loader may merge the LoRA then);
    None = reuse ``transformer`` (distilled). stage1_transformer: None, or a zero-argument callable
    returning the stage-1 weights, called when stage 1 starts (a loader puts them back after stage 2).
    video_vae: encoder for images, decoder for output.
    audio_decoder + vocoder: optional (needed to decode audio). upsampler: x2 spatial upsampler
    (two-stage pipelines). version: the model version string (e.g. "2.3.0"; None: 2.3 when the
    transformer has LTX-2.3's prompt AdaLN, else 2).
    """

    transformer: LTXModel
    video_vae: VideoVAE
    audio_decoder: object | None = None
    vocoder: object | None = None
    upsampler: LatentUpsampler | None = None
    stage2_transformer: Union[LTXModel, Callable[[], LTXModel], None] = None
    version: str | None = None
    stage1_transformer: Callable[[], LTXModel] | None = None
    audio_encoder: object | None = None  # a2vid: mel -> audio latent (:class:`mlx_video.ltx2.audio_vae.AudioEncoder`)
    reference_downscale_factor: int = 1  # ic-lora: the IC-LoRA's metadata value (control video size = stage / it)
    # the safetensors file holding ``transformer``'s stored weights, when loaded from one: LoRA merges re-read it
    # layer by layer instead of keeping an unmerged copy of every touched weight resident
    transformer_file: object | None = None

    @property
    def model_version(self) -> str:
        """ "2" or "2.3" (:func:`model_family` of ``version``, or from the transformer's architecture)."""
        if self.version is not None:
            return model_family(self.version)
        return "2.3" if self.transformer.args.cross_attention_adaln else "2"


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Stage:
    """One denoising stage: output size, schedule, sampler, guided or not, initial noise scale and
    whether it refines the previous stage (upsampled latent, stage-2 weights)."""

    height: int
    width: int
    sigmas: np.ndarray
    sampler: str
    guided: bool
    noise_scale: float = 1.0
    refine: bool = False


def plan_stages(s: LTXSettings, version: str | None = None) -> list[Stage]:
    """The stages of ``s.pipeline`` (``s`` resolved with ``version`` first). Raises ValueError as
    :meth:`LTXSettings.validate`."""
    s = s.resolved(version)
    one_stage = s.pipeline not in TWO_STAGE  # dev, retake, retake-distilled: one stage at full resolution
    h1, w1 = (s.height, s.width) if one_stage else (s.height // 2, s.width // 2)
    refine_sigmas = STAGE2_DISTILLED_SIGMAS
    if s.pipeline in UNGUIDED:  # distilled, ic-lora, retake-distilled
        first = Stage(h1, w1, DISTILLED_SIGMAS, "euler", False)
    elif s.pipeline == "dev-two-stage-hq":  # the only pipeline that passes its latent to the scheduler
        f, h, w = latent_grid(s.num_frames, h1, w1)
        first = Stage(h1, w1, ltx2_sigmas(s.steps, num_tokens=f * h * w), "res2s", True)
    else:
        first = Stage(h1, w1, ltx2_sigmas(s.steps), "euler", True)
    if one_stage or s.skip_stage_2:
        return [first]
    return [first, Stage(s.height, s.width, refine_sigmas, first.sampler, False, float(refine_sigmas[0]), True)]


def check_components(c: LTX2Components, s: LTXSettings, stages: Sequence[Stage], negative: TextContext | None) -> None:
    """Raise ValueError when the components or contexts cannot run the plan: no upsampler for a two-stage
    pipeline, STG blocks past the transformer's last block, CFG without a negative context."""
    if len(stages) > 1 and c.upsampler is None:
        raise ValueError(f"{s.pipeline} needs a spatial upsampler")
    if s.pipeline == "a2vid" and c.audio_encoder is None:
        raise ValueError("a2vid needs the audio VAE's encoder")
    k = c.reference_downscale_factor
    if s.pipeline == "ic-lora" and (stages[0].height % (32 * k) or stages[0].width % (32 * k)):
        raise ValueError(
            f"ic-lora: stage 1's {stages[0].height}x{stages[0].width} divided by the IC-LoRA's reference downscale "
            f"factor {k} must be multiples of 32 (the VAE's cell)"
        )
    if not s.guided:
        return
    n = c.transformer.args.num_layers
    for name, g in (("video_guidance", s.video_guidance), ("audio_guidance", s.audio_guidance)):
        if any(b >= n for b in g.stg_blocks):
            raise ValueError(f"{name}.stg_blocks {list(g.stg_blocks)}: the transformer has blocks 0..{n - 1}")
        if g.needs_uncond and negative is None:
            raise ValueError("CFG needs a negative text context (encode settings.negative_text)")


# ----------------------------------------------------------------------------- prepare


Prepared = tuple[np.ndarray, int, float]  # (float32 [H, W, 3] in [-1, 1], pixel frame, strength)


def prepare_images(images: Sequence[ImageCondition], crf: int = DEFAULT_IMAGE_CRF) -> list[Prepared]:
    """Each image after its CRF round trip (its own ``crf``, else ``crf``), as float32 [-1, 1] (x / 127.5 - 1,
    ltx-pipelines ``normalize_latent``), with its frame and strength."""
    return [
        (
            h264_roundtrip(im.image, crf if im.crf is None else im.crf).astype(np.float32) / 127.5 - 1.0,
            int(im.frame),
            float(im.strength),
        )
        for im in images
    ]


def encode_images(
    prepared: Sequence[Prepared], vae: VideoVAE, height: int, width: int, guide_all: bool = False
) -> list[Union[LatentAnchor, GuidingTokens]]:
    """Encode each prepared image at height x width: frame 0 -> LatentAnchor (latent frame 0), later frames ->
    GuidingTokens at that pixel frame. ``guide_all`` (pipeline keyframes, ltx-pipelines
    ``image_conditionings_by_adding_guiding_latent``): every image, frame 0 included, -> GuidingTokens."""
    out = []
    for pixels, frame, strength in prepared:
        latent = vae.encode(mx.array(bilinear_cover_crop(pixels, height, width))[None, None])
        anchor = frame == 0 and not guide_all
        out.append(LatentAnchor(latent, 0, strength) if anchor else GuidingTokens(latent, frame, strength))
    return out


def encode_audio(c: LTX2Components, audio: AudioCondition, frames: int, pad: bool = False) -> mx.array:
    """The a2vid audio latent: waveform -> log-mel at the encoder's rate (resampled with
    :func:`mlx_video.ltx2.audio_vae.resample`, torchaudio's sinc, as ltx-core's ``AudioProcessor``) -> audio VAE
    encoder -> tokens [1, frames, C_a] (the first ``frames``, as ``A2VidPipelineTwoStage`` cuts it to the clip's
    ``AudioLatentShape.from_duration``). Raises ValueError when the audio encodes to fewer than ``frames``, unless
    ``pad``: then zero latent frames are appended (retake, ``RetakePipeline``'s ``_encode_audio_for_retake``)."""
    enc = c.audio_encoder
    a = enc.args
    wav = mx.array(np.asarray(audio.waveform, np.float32))[None]
    mel = waveform_to_mel(wav, int(audio.sample_rate), a.sample_rate, a.n_fft, a.mel_hop_length, a.mel_bins)
    latent = audio_patchify(enc(mel))
    if latent.shape[1] < frames and pad:
        latent = mx.concatenate([latent, mx.zeros((1, frames - latent.shape[1], latent.shape[2]), latent.dtype)], 1)
    if latent.shape[1] < frames:
        raise ValueError(f"the audio encodes to {latent.shape[1]} latent frames; the clip needs {frames}")
    latent = latent[:, :frames].astype(mx.float32)
    mx.eval(latent)
    return latent


def encode_controls(
    c: LTX2Components, controls: Sequence[ControlVideo], s: LTXSettings, st: Stage
) -> list[ReferenceTokens]:
    """The ic-lora control videos as in-context tokens for stage ``st`` (``ICLoraPipeline._create_conditionings``):
    the first ``num_frames`` frames of each, cover-resized to the stage's size / ``reference_downscale_factor``,
    [-1, 1], VAE-encoded; attention weights: the mask downsampled to the latent grid times
    ``conditioning_attention_strength``, else that strength when below 1, else none (full attention)."""
    k = int(c.reference_downscale_factor)
    h, w = st.height // k, st.width // k
    out = []
    for cv in controls:
        frames = cv.frames[: s.num_frames].astype(np.float32) / 127.5 - 1.0
        video = np.stack([bilinear_cover_crop(f, h, w) for f in frames])
        latent = c.video_vae.encode(mx.array(video)[None])
        attention = None
        if cv.attention_mask is not None:
            n, lh, lw = latent.shape[1:4]
            attention = latent_attention_mask(np.asarray(cv.attention_mask)[: s.num_frames], n, lh, lw)
            attention = attention * np.float32(s.conditioning_attention_strength)
        elif s.conditioning_attention_strength < 1.0:
            attention = float(s.conditioning_attention_strength)
        out.append(ReferenceTokens(latent, float(cv.strength), k, attention))
    return out


def seeded_noise(seed: int) -> NoiseSource:
    """Default noise: one MLX key per name derived from ``seed`` (res2s names get ``res2s_noise``)."""

    def draw(name: str, shape: tuple) -> mx.array:
        key = mx.random.key((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
        return res2s_noise(shape, key) if ".res2s." in name else mx.random.normal(shape, key=key)

    return draw


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


def video_pixels(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 frames [F, H, W, 3] -> float32 [F, height, width, 3] in [-1, 1]: each frame through
    :func:`mlx_video.io.images.bilinear_cover_crop` then x / 127.5 - 1 (ltx-pipelines
    ``media_io.load_video_conditioning``: ``resize_and_center_crop`` then ``normalize_latent`` per frame; at the
    frames' own size the resize is the identity)."""
    return np.stack([bilinear_cover_crop(f, height, width) for f in frames]).astype(np.float32) / 127.5 - 1.0


def encode_source(c: LTX2Components, src: RetakeSource, audio_frames: int) -> tuple[mx.array, mx.array | None]:
    """The retake's initial latents: the source frames through the video VAE encoder (whole, at their own size,
    ``_encode_video_for_retake``) -> [1, F', h, w, C]; its audio (if any) through the audio VAE encoder, cut or
    zero-padded to ``audio_frames`` -> [1, audio_frames, C_a] (``_encode_audio_for_retake``), else None."""
    h, w = src.frames.shape[1:3]
    video = c.video_vae.encode(mx.array(video_pixels(src.frames, h, w))[None]).astype(mx.float32)
    audio = None if src.audio is None else encode_audio(c, src.audio, audio_frames, pad=True)
    mx.eval(video)
    return video, audio


def _region_mask(state, regions: Regions, index: int):
    """``state`` with retake's denoise mask for modality ``index`` (0 video, 1 audio) when it has a range."""
    if regions is None or regions[index] is None:
        return state
    return replace(state, mask=time_region_mask(state.positions, *regions[index]))


# ----------------------------------------------------------------------------- denoise


def _stage_model(c: LTX2Components, stage: Stage) -> LTXModel:
    if not stage.refine or c.stage2_transformer is None:
        return c.transformer if c.stage1_transformer is None else c.stage1_transformer()
    m = c.stage2_transformer
    return m if isinstance(m, LTXModel) else m()


def denoise_stage(
    c: LTX2Components,
    s: LTXSettings,
    st: Stage,
    name: str,
    prepared: Sequence[Prepared],
    positive: TextContext,
    negative: TextContext | None,
    noise: NoiseSource,
    previous: tuple[mx.array, mx.array] | None,
    progress: Progress,
    fixed_audio: mx.array | None = None,
    extra: Sequence[ReferenceTokens] = (),
    regions: Regions = None,
) -> tuple[mx.array, mx.array]:
    """One stage of resolved settings ``s``: (upsample ``previous``'s video latent when refining) -> encode the
    images at the stage's size -> noised video (+ guiding tokens) and audio states -> denoise. ``fixed_audio``
    [1, t, C_a]: the audio state is this latent, not noised, with denoise mask 0 (ltx-pipelines
    ``denoise_video_only``: the audio is seen by every pass and stays as it is). ``extra``: in-context tokens
    appended after the images' (ic-lora's control videos, stage 1). ``regions`` (retake): the denoise mask of each
    modality from its time range (:meth:`RetakeSource.regions`), set before the noise. Returns the
    (video [1, F, h, w, C], audio [1, t, C_a]) latents, evaluated. Raises NonFiniteError naming ``name`` and
    the step when the latents become NaN or infinite."""
    video_lat = audio_lat = None
    if previous is not None:
        video_lat, audio_lat = previous
    if st.refine:
        video_lat = upsample_video(video_lat, c.upsampler, c.video_vae.latents_mean, c.video_vae.latents_std)
    conds = encode_images(prepared, c.video_vae, st.height, st.width, guide_all=s.pipeline == "keyframes")
    conds += list(extra)
    args = c.transformer.args
    v = video_state(latent_grid(s.num_frames, st.height, st.width), args.in_channels, s.fps, conds, video_lat)
    v = _region_mask(v, regions, 0)
    v = noise_state(v, noise(f"{name}.video", tuple(v.latent.shape)), st.noise_scale)
    if fixed_audio is None:
        a = audio_state(audio_latent_frames(s.num_frames, s.fps), args.audio_in_channels, audio_lat)
        a = _region_mask(a, regions, 1)
        a = noise_state(a, noise(f"{name}.audio", tuple(a.latent.shape)), st.noise_scale)
    else:
        a = audio_state(audio_latent_frames(s.num_frames, s.fps), args.audio_in_channels, fixed_audio)
        a = replace(a, mask=mx.zeros_like(a.mask))

    def sde_noise(step, substep, index, like):
        kind = "substep" if substep else "step"
        return noise(f"{name}.res2s.{step}.{kind}.{('video', 'audio')[index]}", tuple(like.shape))

    guidance = (s.video_guidance, s.audio_guidance) if st.guided else None
    v, a = denoise(
        _stage_model(c, st),
        v,
        a,
        st.sigmas,
        positive,
        negative=negative if st.guided else None,
        guidance=guidance,
        sampler=st.sampler,
        res2s_noise=sde_noise,
        label=name,
        on_step=lambda i, n: progress(name, i, n),
    )
    video_lat, audio_lat = v.grid_latent(), a.grid_latent()
    mx.eval(video_lat, audio_lat)
    return video_lat, audio_lat


# ----------------------------------------------------------------------------- decode

DECODE_HINT = "the latents were finite, so the decoder's weights are suspect (a corrupt or mis-converted file)"


def decode_video(c: LTX2Components, latents: mx.array) -> mx.array:
    """Video latents [1, F, h, w, C] -> float32 frames [1, 8(F-1)+1, 32h, 32w, 3] in about [-1, 1], with the
    official tiling; under ``distributed.active(sp)`` the tiles are split over sp's ranks (exact). Raises
    NonFiniteError when the decoded frames hold NaN or inf."""
    from ..distributed import current

    sp = current()
    video = c.video_vae.decode_tiled(latents, group=sp.group if sp is not None else None).astype(mx.float32)
    mx.eval(video)
    check_finite(video, "after the video decode", DECODE_HINT)
    return video


def decode_frames(c: LTX2Components, latents: mx.array) -> np.ndarray:
    """Video latents [1, F, h, w, C] -> uint8 frames [8(F-1)+1, 32h, 32w, 3]: :func:`decode_video`'s frames as
    :func:`mlx_video.io.images.to_uint8` converts them (the same values), converted on the device one temporal
    chunk of the tiled decode at a time (ltx-core's ``decode_video`` yields uint8 chunks likewise): neither memory
    holds the whole video in float32. Raises NonFiniteError when a decoded chunk holds NaN or inf."""
    from ..distributed import current

    sp = current()
    out = []
    for chunk in c.video_vae.iter_decode_tiled(latents, group=sp.group if sp is not None else None):
        chunk = chunk.astype(mx.float32)
        mx.eval(chunk)
        check_finite(chunk, "after the video decode", DECODE_HINT)
        u8 = mx.clip(mx.round((mx.clip(chunk, -1.0, 1.0) + 1.0) * 127.5), 0, 255).astype(mx.uint8)
        out.append(np.array(u8[0]))
    return np.concatenate(out, axis=0)


def decode_waveform(c: LTX2Components, latents: mx.array) -> tuple[np.ndarray, int]:
    """Audio latents [1, t, C_a] -> (float32 waveform [samples, channels], sample rate in Hz) through the audio
    VAE decoder and the vocoder. Raises NonFiniteError when the waveform holds NaN or inf."""
    audio = c.vocoder(c.audio_decoder(latents))[0].astype(mx.float32)
    mx.eval(audio)
    check_finite(audio, "after the audio decode", DECODE_HINT)
    return np.array(audio), int(c.vocoder.sample_rate)


# ----------------------------------------------------------------------------- the pipeline


def generate(
    c: LTX2Components,
    s: LTXSettings,
    positive: TextContext,
    negative: TextContext | None = None,
    images: Sequence[ImageCondition] = (),
    noise: NoiseSource | None = None,
    decode: bool = True,
    decode_audio: bool = True,
    progress: Progress | None = None,
    audio: AudioCondition | None = None,
    controls: Sequence[ControlVideo] = (),
    source: RetakeSource | None = None,
) -> GenerationResult:
    """Run pipeline ``s.pipeline``: settings -> plan -> prepare -> denoise (per stage) -> decode.

    positive / negative: :class:`TextContext` from the embeddings processor (negative: of
    ``s.negative_text``, needed by the guided stages when cfg != 1). images: :class:`ImageCondition` s.
    noise: see :data:`NoiseSource` (default :func:`seeded_noise` of the resolved seed).
    audio: :class:`AudioCondition`, needed by (and only taken by) pipeline a2vid (``A2VidPipelineTwoStage``):
    encoded and held fixed in both stages, the uncond pass sees the positive audio context (the official audio
    guider has no negative context), and the result's audio is this waveform at its own rate.
    controls: :class:`ControlVideo` s, needed by (and only taken by) pipeline ic-lora (``ICLoraPipeline``): stage 1
    runs ``c.stage1_transformer`` (distilled + IC-LoRA) with the control videos appended as in-context tokens
    (after any guiding images); stage 2 (unless ``skip_stage_2``) runs ``c.stage2_transformer`` (distilled, no
    IC-LoRA) with the images only.
    source: :class:`RetakeSource`, needed by (and only taken by) pipelines retake / retake-distilled
    (``RetakePipeline``): the output takes its size, frame count and fps; its video (and audio) latents start the
    stage, regenerated only in its time range; no images.
    Returns a GenerationResult: frames uint8 [F, H, W, 3] (None unless ``decode``), audio float32
    [samples, channels] + sample_rate (None unless decoded and the components have an audio decoder and
    vocoder), latents [1, F', h, w, C] and audio_latents [1, t, C_a] (final, no guiding tokens), stage_latents
    (the (video, audio) latents after each stage), params (the resolved settings and the images), timings
    (seconds per phase: prepare, stage1, stage2, decode_video, decode_audio) and peak memory in GiB.
    Raises ValueError (see :meth:`LTXSettings.validate` and :func:`check_components`) before any work, and
    NonFiniteError naming the stage and step (or the decode) where values became NaN or infinite.
    """
    if (source is None) != (s.pipeline not in RETAKE):
        raise ValueError(f"{s.pipeline} needs a source video" if source is None else f"{s.pipeline} takes no video")
    if source is not None:
        source.check()
        if images:
            raise ValueError(f"{s.pipeline} takes no images")
        if source.audio is not None and c.audio_encoder is None:
            raise ValueError("retake of a video with audio needs the audio VAE's encoder")
        s = source.settings(s)
    s = s.resolved(c.model_version).validate(images)
    if (audio is None) != (s.pipeline != "a2vid"):
        raise ValueError("a2vid needs an audio input" if audio is None else f"{s.pipeline} takes no audio input")
    if audio is not None:
        audio.check(s.num_frames, s.fps)
        if negative is not None:
            negative = TextContext(negative.video, positive.audio)
    if bool(controls) != (s.pipeline == "ic-lora"):
        raise ValueError("ic-lora needs a control video" if not controls else f"{s.pipeline} takes no control video")
    for i, cv in enumerate(controls):
        cv.check(s.num_frames, i)
    stages = plan_stages(s)
    check_components(c, s, stages, negative)
    noise = noise or seeded_noise(s.seed)
    progress = progress or (lambda *_: None)
    meter = Meter()
    with meter.phase("prepare"):
        prepared = prepare_images(images, s.image_crf)
        fixed = None if audio is None else encode_audio(c, audio, audio_latent_frames(s.num_frames, s.fps))
    latents, stage_latents = None, []
    if source is not None:
        with meter.phase("encode_source"):
            latents = encode_source(c, source, audio_latent_frames(s.num_frames, s.fps))
    for k, st in enumerate(stages, start=1):
        with meter.phase(f"stage{k}"):
            refs = encode_controls(c, controls, s, st) if k == 1 and controls else ()
            latents = denoise_stage(
                c,
                s,
                st,
                f"stage{k}",
                prepared,
                positive,
                negative,
                noise,
                latents,
                progress,
                fixed,
                refs,
                regions=None if source is None else source.regions(),
            )
        stage_latents.append(latents)
    res = GenerationResult(
        None,
        fps=s.fps,
        latents=latents[0],
        audio_latents=latents[1],
        params={**s.params(), "images": [im.params() for im in images]}
        | ({} if audio is None else {"audio": audio.params()})
        | ({"controls": [cv.params() for cv in controls]} if controls else {})
        | ({} if source is None else {"retake": source.params()}),
        stage_latents=stage_latents,
    )
    if decode:
        progress("decode_video", 0, 1)
        with meter.phase("decode_video"):
            res.frames = decode_frames(c, latents[0])
        progress("decode_video", 1, 1)
        if decode_audio and audio is not None:  # the given audio, as the official pipeline returns it
            res.audio, res.sample_rate = np.asarray(audio.waveform, np.float32), int(audio.sample_rate)
        elif decode_audio and c.audio_decoder is not None and c.vocoder is not None:
            progress("decode_audio", 0, 1)
            with meter.phase("decode_audio"):
                res.audio, res.sample_rate = decode_waveform(c, latents[1])
            progress("decode_audio", 1, 1)
    return meter.fill(res)
