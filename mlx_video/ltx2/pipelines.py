"""LTX-2 / LTX-2.3 pipelines DISTILLED, DEV, DEV_TWO_STAGE and DEV_TWO_STAGE_HQ.

One function, :func:`generate`, composes shared stages; a pipeline is only a list of
:class:`Stage` s (:func:`plan_stages`):

    text contexts (injected, or :func:`encode_prompts`) -> per stage: encode the images at the
    stage's resolution -> build and noise the video (+ guiding tokens) and audio states ->
    :func:`mlx_video.ltx2.denoise.denoise` -> [upsample the video latent x2 -> next stage, re-noised
    to its first sigma] -> decode video (VAE) and audio (audio VAE + vocoder).

Reference: ltx-pipelines 1.0.0 ``DistilledPipeline``, ``TI2VidOneStagePipeline``,
``TI2VidTwoStagesPipeline`` and ``TI2VidTwoStagesHQPipeline`` (docs/ltx2.md §9):

| pipeline          | stage 1 (half resolution unless one-stage)          | stage 2 (full resolution)          |
| distilled         | 8 distilled sigmas, Euler, no guidance              | 3 sigmas from 0.909375, Euler      |
| dev               | full resolution, LTX2Scheduler(steps, 4096 tokens), Euler, multimodal guidance | - |
| dev-two-stage     | LTX2Scheduler(steps, 4096 tokens), Euler, guidance  | dev + distilled LoRA, 3 sigmas, Euler |
| dev-two-stage-hq  | LTX2Scheduler(steps, real token count), res2s, guidance (LoRA 0.25) | LoRA 0.5, 3 sigmas, res2s |

Images: pixel frame 0 -> :class:`LatentAnchor` (latent replacement), any later frame ->
:class:`GuidingTokens` (ltx-pipelines ``combined_image_conditionings``); resized per stage with
``mlx_video.io.images.bilinear_cover_crop`` (ltx-pipelines ``resize_and_center_crop``).
Deviation: the reference first round-trips each image through a CRF-33 H.264 frame (``media_io.preprocess``); that belongs to image loading
(the CLI) and is not done here. Audio is always denoised with the video (the official pipelines
generate both); ``decode_audio=False`` only skips decoding it.

Nothing here prints or writes files; progress goes to an optional callback.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import mlx.core as mx
import numpy as np

from mlx_video.conditioning import LatentAnchor
from mlx_video.io.images import bilinear_cover_crop
from mlx_video.ltx2.conditioning import (GuidingTokens, audio_latent_frames, audio_state, latent_grid,
                                         noise_state, video_state)
from mlx_video.ltx2.denoise import TextContext, denoise
from mlx_video.ltx2.transformer import LTXModel
from mlx_video.ltx2.upsampler import LatentUpsampler, upsample_video
from mlx_video.ltx2.video_vae import VideoVAE
from mlx_video.sampling import guidance as G
from mlx_video.sampling.schedules import DISTILLED_SIGMAS, STAGE2_DISTILLED_SIGMAS, ltx2_sigmas
from mlx_video.sampling.solvers import res2s_noise

PIPELINES = ("distilled", "dev", "dev-two-stage", "dev-two-stage-hq")
TWO_STAGE = ("distilled", "dev-two-stage", "dev-two-stage-hq")
Progress = Callable[[str, int, int], None]
NoiseSource = Callable[[str, tuple], mx.array]
"""``(name, shape) -> standard-normal float32 array``. Names: ``"stage{k}.video"`` / ``"stage{k}.audio"``
(the initial noise of stage k, video including guiding tokens, [1, T, C]) and, for res2s stages,
``"stage{k}.res2s.{step}.{substep|step}.{video|audio}"`` (the SDE noise, already standardised)."""


# ----------------------------------------------------------------------------- inputs


@dataclass
class ImageCondition:
    """An image at pixel frame ``frame`` (0 = first frame). image: float [H, W, 3] in [-1, 1], any size."""

    image: np.ndarray
    frame: int = 0
    strength: float = 1.0


@dataclass
class LTX2Components:
    """Loaded components (see ``mlx_video.ltx2.loading``); tests build them from tiny modules.

    transformer: stage-1 weights (distilled; dev; dev + distilled LoRA at 0.25 for HQ).
    stage2_transformer: the stage-2 weights (dev + LoRA at 1.0, or 0.5 for HQ) or a zero-argument
    callable returning them (called when stage 2 starts, so a loader may merge the LoRA then);
    None = reuse ``transformer`` (distilled). stage1_transformer: None, or a zero-argument callable
    returning the stage-1 weights, called when stage 1 starts (a loader puts them back after stage 2). video_vae: encoder for images, decoder for output.
    audio_decoder + vocoder: optional (needed to decode audio). upsampler: x2 spatial upsampler
    (two-stage pipelines). version: "2" or "2.3" for the guidance defaults (None: 2.3 when the
    transformer has LTX-2.3's prompt AdaLN).
    """

    transformer: LTXModel
    video_vae: VideoVAE
    audio_decoder: object | None = None
    vocoder: object | None = None
    upsampler: LatentUpsampler | None = None
    stage2_transformer: Union[LTXModel, Callable[[], LTXModel], None] = None
    version: str | None = None
    stage1_transformer: Callable[[], LTXModel] | None = None

    @property
    def model_version(self) -> str:
        if self.version is not None:
            return self.version
        return "2.3" if self.transformer.args.cross_attention_adaln else "2"


def default_guidance(pipeline: str, version: str) -> tuple[int, G.GuidanceParams | None, G.GuidanceParams | None]:
    """Official (steps, video guidance, audio guidance) defaults (ltx_pipelines.utils.constants):
    dev / dev-two-stage: LTX-2 40 steps, STG block 29; LTX-2.3 30 steps, block 28; HQ: 15 steps,
    STG off, rescale 0.45 / 1.0; distilled: 8 fixed steps, no guidance."""
    check_pipeline(pipeline)
    if pipeline == "distilled":
        return len(DISTILLED_SIGMAS) - 1, None, None
    if pipeline == "dev-two-stage-hq":
        return G.LTX23_HQ_STEPS, G.LTX23_HQ_VIDEO_GUIDANCE, G.LTX23_HQ_AUDIO_GUIDANCE
    if str(version).startswith("2.3"):
        return G.LTX23_STEPS, G.LTX23_VIDEO_GUIDANCE, G.LTX23_AUDIO_GUIDANCE
    return G.LTX2_STEPS, G.LTX2_VIDEO_GUIDANCE, G.LTX2_AUDIO_GUIDANCE


def check_pipeline(pipeline: str) -> None:
    """Raise ValueError unless ``pipeline`` is one of distilled, dev, dev-two-stage, dev-two-stage-hq."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINES)}")


@dataclass
class Settings:
    """What to generate. height / width: the output size; steps / guidance None = official defaults."""

    pipeline: str = "distilled"
    height: int = 512
    width: int = 768
    num_frames: int = 121
    fps: float = 24.0
    steps: int | None = None
    video_guidance: G.GuidanceParams | None = None
    audio_guidance: G.GuidanceParams | None = None
    seed: int = 0


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


def plan_stages(s: Settings, version: str = "2") -> list[Stage]:
    """The stages of ``s.pipeline``. Raises ValueError for an unknown pipeline, a frame count that is
    not 8k+1, or a size that is not a multiple of 64 (two-stage) / 32 (one-stage)."""
    check_pipeline(s.pipeline)
    div = 64 if s.pipeline in TWO_STAGE else 32
    if s.height % div or s.width % div or s.height <= 0 or s.width <= 0:
        raise ValueError(f"{s.pipeline}: height and width must be multiples of {div}, got {s.height}x{s.width}")
    latent_grid(s.num_frames, s.height, s.width)  # validates the frame count
    steps = s.steps if s.steps is not None else default_guidance(s.pipeline, version)[0]
    h1, w1 = (s.height, s.width) if s.pipeline == "dev" else (s.height // 2, s.width // 2)
    refine_sigmas = STAGE2_DISTILLED_SIGMAS
    if s.pipeline == "distilled":
        first = Stage(h1, w1, DISTILLED_SIGMAS, "euler", False)
    elif s.pipeline == "dev-two-stage-hq":  # the only pipeline that passes its latent to the scheduler
        f, h, w = latent_grid(s.num_frames, h1, w1)
        first = Stage(h1, w1, ltx2_sigmas(steps, num_tokens=f * h * w), "res2s", True)
    else:
        first = Stage(h1, w1, ltx2_sigmas(steps), "euler", True)
    if s.pipeline == "dev":
        return [first]
    return [first, Stage(s.height, s.width, refine_sigmas, first.sampler, False, float(refine_sigmas[0]), True)]


# ----------------------------------------------------------------------------- stages


def encode_images(images: Sequence[ImageCondition], vae: VideoVAE, height: int, width: int,
                  num_frames: int) -> list[Union[LatentAnchor, GuidingTokens]]:
    """Encode each image at height x width: frame 0 -> LatentAnchor (latent frame 0), later frames ->
    GuidingTokens at that pixel frame. Raises ValueError for a frame outside 0..num_frames-1."""
    out = []
    for im in images:
        if not 0 <= im.frame < num_frames:
            raise ValueError(f"image frame index {im.frame} is outside the clip (0..{num_frames - 1})")
        pixels = mx.array(bilinear_cover_crop(im.image, height, width))[None, None]
        latent = vae.encode(pixels)
        out.append(LatentAnchor(latent, 0, im.strength) if im.frame == 0
                   else GuidingTokens(latent, im.frame, im.strength))
    return out


def seeded_noise(seed: int) -> NoiseSource:
    """Default noise: one MLX key per name derived from ``seed`` (res2s names get ``res2s_noise``)."""
    def draw(name: str, shape: tuple) -> mx.array:
        key = mx.random.key((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2 ** 63)
        return res2s_noise(shape, key) if ".res2s." in name else mx.random.normal(shape, key=key)

    return draw


@dataclass
class LTX2Result:
    """A run's outputs. video: float32 [1, F, H, W, 3] in about [-1, 1] (None if not decoded);
    audio: float32 [samples, channels] waveform at ``sample_rate`` (None if not decoded);
    video_latent [1, T, h, w, C] and audio_latent [1, t, C_a] (final, no guiding tokens);
    stage_latents: the (video, audio) latents after each stage; timings in seconds and stage_peak_gb
    (MLX peak memory) per stage and decode step; peak_memory_gb over the whole call."""

    video: mx.array | None
    audio: mx.array | None
    sample_rate: int | None
    video_latent: mx.array
    audio_latent: mx.array
    stage_latents: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    peak_memory_gb: float = 0.0
    stage_peak_gb: dict = field(default_factory=dict)


def _stage_model(c: LTX2Components, stage: Stage) -> LTXModel:
    if not stage.refine or c.stage2_transformer is None:
        return c.transformer if c.stage1_transformer is None else c.stage1_transformer()
    m = c.stage2_transformer
    return m if isinstance(m, LTXModel) else m()


def generate(c: LTX2Components, s: Settings, positive: TextContext, negative: TextContext | None = None,
             images: Sequence[ImageCondition] = (), noise: NoiseSource | None = None, decode: bool = True,
             decode_audio: bool = True, progress: Progress | None = None) -> LTX2Result:
    """Run pipeline ``s.pipeline`` with injected text contexts (and noise, for reproducibility).

    positive / negative: :class:`TextContext` from the embeddings processor (negative needed by the
    guided stages when cfg != 1). images: :class:`ImageCondition` s. noise: see :data:`NoiseSource`
    (default :func:`seeded_noise` of ``s.seed``). Raises ValueError for bad sizes, frame counts,
    image frames, a missing upsampler for two-stage pipelines or a missing negative context.
    """
    version = c.model_version
    stages = plan_stages(s, version)
    _, dv, da = default_guidance(s.pipeline, version)
    guidance = (s.video_guidance or dv, s.audio_guidance or da)
    for im in images:
        if not 0 <= im.frame < s.num_frames:
            raise ValueError(f"image frame index {im.frame} is outside the clip (0..{s.num_frames - 1})")
    if len(stages) > 1 and c.upsampler is None:
        raise ValueError(f"{s.pipeline} needs a spatial upsampler")
    noise = noise or seeded_noise(s.seed)
    progress = progress or (lambda *_: None)
    mx.reset_peak_memory()
    timings, peaks, stage_latents = {}, {}, []
    overall = 0.0

    def done(name, t0):  # time and peak memory of one stage; the peak counter restarts per stage
        nonlocal overall
        timings[name] = time.perf_counter() - t0
        peaks[name] = mx.get_peak_memory() / 1e9
        overall = max(overall, peaks[name])
        mx.reset_peak_memory()

    channels, audio_channels = c.transformer.args.in_channels, c.transformer.args.audio_in_channels
    t_audio = audio_latent_frames(s.num_frames, s.fps)
    video_lat = audio_lat = None
    for k, st in enumerate(stages, start=1):
        t0 = time.perf_counter()
        name = f"stage{k}"
        if st.refine:
            video_lat = upsample_video(video_lat, c.upsampler, c.video_vae.latents_mean, c.video_vae.latents_std)
        grid = latent_grid(s.num_frames, st.height, st.width)
        conds = encode_images(images, c.video_vae, st.height, st.width, s.num_frames)
        v = video_state(grid, channels, s.fps, conds, video_lat)
        a = audio_state(t_audio, audio_channels, audio_lat)
        v = noise_state(v, noise(f"{name}.video", tuple(v.latent.shape)), st.noise_scale)
        a = noise_state(a, noise(f"{name}.audio", tuple(a.latent.shape)), st.noise_scale)

        def sde_noise(step, substep, index, like, _n=name):
            kind = "substep" if substep else "step"
            return noise(f"{_n}.res2s.{step}.{kind}.{('video', 'audio')[index]}", tuple(like.shape))

        v, a = denoise(_stage_model(c, st), v, a, st.sigmas, positive,
                       negative=negative if st.guided else None, guidance=guidance if st.guided else None,
                       sampler=st.sampler, res2s_noise=sde_noise, on_step=lambda i, n, _n=name: progress(_n, i, n))
        video_lat, audio_lat = v.grid_latent(), a.grid_latent()
        mx.eval(video_lat, audio_lat)
        stage_latents.append((video_lat, audio_lat))
        done(name, t0)
    video = audio = rate = None
    if decode:
        t0 = time.perf_counter()
        video = c.video_vae.decode_tiled(video_lat)
        mx.eval(video)
        done("decode_video", t0)
        progress("decode_video", 1, 1)
    if decode and decode_audio and c.audio_decoder is not None and c.vocoder is not None:
        t0 = time.perf_counter()
        audio = c.vocoder(c.audio_decoder(audio_lat))[0]
        rate = c.vocoder.sample_rate
        mx.eval(audio)
        done("decode_audio", t0)
        progress("decode_audio", 1, 1)
    return LTX2Result(video, audio, rate, video_lat, audio_lat, stage_latents, timings, overall, peaks)
