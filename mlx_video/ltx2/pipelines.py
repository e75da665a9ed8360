"""LTX-2 / LTX-2.3 pipelines DISTILLED, DEV, DEV_TWO_STAGE and DEV_TWO_STAGE_HQ as compositions of named stages.

    settings (:class:`~mlx_video.ltx2.settings.LTXSettings`: every default, :meth:`~LTXSettings.validate`;
       the inputs :class:`ImageCondition`, :class:`AudioCondition`, :class:`ControlVideo`, :class:`RetakeSource`;
       all in :mod:`mlx_video.ltx2.settings`, re-exported here)
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

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Union

import mlx.core as mx
import numpy as np

from mlx_video.conditioning import LatentAnchor
from mlx_video.io.images import bilinear_cover_crop, h264_roundtrip
from mlx_video.ltx2.audio_vae import patchify as audio_patchify
from mlx_video.ltx2.audio_vae import waveform_to_mel
from mlx_video.ltx2.conditioning import (
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

# settings and inputs; those marked F401 are unused here, re-exported so callers may import every name from here
from mlx_video.ltx2.settings import (
    DEFAULT_IMAGE_CRF,
    DEFAULT_LORA,  # noqa: F401
    DEFAULT_NEGATIVE_PROMPT,  # noqa: F401
    DEFAULT_SEED,  # noqa: F401
    DEFAULT_SIZE,  # noqa: F401
    MAX_STEPS,  # noqa: F401
    MAX_VIDEO_TOKENS,  # noqa: F401
    PIPELINES,  # noqa: F401
    RETAKE,
    RETAKE_MIN_FRAMES,  # noqa: F401
    RETAKE_STEPS,  # noqa: F401
    TWO_STAGE,
    UNGUIDED,
    WITH_LORA,  # noqa: F401
    AudioCondition,
    ControlVideo,
    Guidance,  # noqa: F401
    ImageCondition,
    LTXSettings,
    Regions,
    RetakeSource,
    check_pipeline,  # noqa: F401
    check_retake,  # noqa: F401
    default_guidance,  # noqa: F401
    model_family,
)
from mlx_video.ltx2.transformer import LTXModel
from mlx_video.ltx2.upsampler import LatentUpsampler, upsample_video
from mlx_video.ltx2.video_vae import VideoVAE
from mlx_video.result import GenerationResult, Meter, check_finite
from mlx_video.sampling.schedules import DISTILLED_SIGMAS, STAGE2_DISTILLED_SIGMAS, ltx2_sigmas
from mlx_video.sampling.solvers import res2s_noise

Progress = Callable[[str, int, int], None]
NoiseSource = Callable[[str, tuple], mx.array]
"""``(name, shape) -> standard-normal float32 array``. Names: ``"stage{k}.video"`` / ``"stage{k}.audio"``
(the initial noise of stage k, video including guiding tokens, [1, T, C]) and, for res2s stages,
``"stage{k}.res2s.{step}.{substep|step}.{video|audio}"`` (the SDE noise, already standardised)."""


# ----------------------------------------------------------------------------- components


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


def release_denoisers(c: LTX2Components) -> None:
    """Drop the transformer(s) from ``c`` (resident, deferred or streamed, and their weights file), then empty
    MLX's buffer cache, so that their memory is free for the decoders. Afterwards ``c`` cannot denoise
    (:func:`generate` refuses it). Reference: ltx-pipelines' ``del transformer; ...; cleanup_memory()``
    before its decode (it drops its video encoder too; ours is shared with the caller's VAE module and small
    beside the transformer, so it stays)."""
    import gc

    c.transformer = c.stage2_transformer = c.stage1_transformer = c.transformer_file = None
    gc.collect()
    mx.clear_cache()


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
    release: bool = False,
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
    release: once the last stage is done, drop the transformer(s) from ``c`` (:func:`release_denoisers`) so that
    the decoders run without them, as ltx-pipelines deletes its transformer before decoding; ``c`` cannot generate
    again (a one-shot run: the CLI).
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
    if c.transformer is None:
        raise ValueError("these components' transformer was released after a run (release=True): load them again")
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
    if release:
        release_denoisers(c)
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
