"""Wan conditioning builders: output size, image preparation, latent anchors (TI2V / mi2v), the I2V /
FLF2V ``y`` channels with CLIP features, and musubi-tuner one-frame inference slots.

Plain functions over arrays used by :mod:`mlx_video.wan.pipeline` and :mod:`mlx_video.wan.settings`; each names
the reference it follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..conditioning import ChannelCondition
from ..io.images import best_output_size, lanczos_cover_crop, load_image, to_array
from .config import WanTask, parse_size

ROPE_ROWS = 1024  # the reference's RoPE table length (rope_params(1024, ...)): positions must stay below


# ----------------------------------------------------------------------------- sizes and images


def check_frame_num(frame_num: int, temporal_stride: int = 4) -> int:
    """Latent frame count T for ``frame_num`` pixel frames; raises ValueError unless 4k+1."""
    if frame_num < 1 or (frame_num - 1) % temporal_stride:
        raise ValueError(f"frame_num must be {temporal_stride}k+1 (1, 5, 9, ..., 121), got {frame_num}")
    return (frame_num - 1) // temporal_stride + 1


def check_size(width: int, height: int, multiple: int) -> None:
    """Raise ValueError unless width and height (pixels) are positive multiples of ``multiple``."""
    if width % multiple or height % multiple or width <= 0 or height <= 0:
        raise ValueError(
            f"size {width}*{height} cannot be taken: width and height must be positive "
            f"multiples of {multiple} (VAE stride x DiT patch)"
        )


def output_size(
    task: WanTask, size: str | None, first_image_wh: tuple[int, int] | None, multiple: int
) -> tuple[int, int]:
    """(width, height) of the video. Text only: ``size`` as W*H. With TI2V images: the official
    ``best_output_size`` of the first image under max_area = W·H of ``size``."""
    w, h = parse_size(size or task.size)
    if first_image_wh is None:
        check_size(w, h, multiple)
        return w, h
    return best_output_size(first_image_wh[0], first_image_wh[1], multiple, multiple, w * h)


def i2v_size(image_wh: tuple[int, int], max_area: int, stride: int = 8, patch: int = 2) -> tuple[int, int]:
    """(width, height) of Wan2.1/A14B I2V/FLF2V output (and musubi one-frame): the image's aspect
    under ``max_area``, latent sides floored to a multiple of the patch (docs/wan.md 8.1 step 2)."""
    w, h = image_wh
    ar = h / w
    lat_h = round(math.sqrt(max_area * ar) // stride // patch * patch)
    lat_w = round(math.sqrt(max_area / ar) // stride // patch * patch)
    if lat_h < patch or lat_w < patch:
        raise ValueError(f"max area {max_area} is too small for a {w}x{h} image")
    return lat_w * stride, lat_h * stride


def prepare_images(paths: Sequence[str | Path], width: int, height: int) -> list[np.ndarray]:
    """Load each image (RGB), LANCZOS cover-resize + center-crop to (width, height): [H, W, 3] in [-1, 1]."""
    return [to_array(lanczos_cover_crop(load_image(p), height, width)) for p in paths]


def first_last_pixels(first, last: str | Path | None = None) -> list[np.ndarray]:
    """The FLF2V input frames at the first frame's own resolution, [H, W, 3] in [-1, 1]; ``first`` a path or
    a PIL image (extension: ``read_last_frame`` of the clip).

    A last frame of another size is cover-resized (LANCZOS) to the first frame's size and
    center-cropped, as WanFM does (it resizes with torchvision's antialiased bilinear; Wan2.1's code
    mixes up width and height there). Both then go to the VAE through ``bicubic_resize`` and to CLIP
    as they are.
    """
    from PIL import Image

    a = first.convert("RGB") if isinstance(first, Image.Image) else load_image(first)
    out = [to_array(a)]
    if last is not None:
        b = load_image(last)
        out.append(to_array(b if b.size == a.size else lanczos_cover_crop(b, a.height, a.width)))
    return out


def encode_anchor_images(vae, images: Sequence[np.ndarray]) -> mx.array:
    """Encode each image on its own as a one-frame video: [1, N, h, w, z] (mi2v, docs/wan.md section 9)."""
    zs = [vae.encode(mx.array(im)[None, None]) for im in images]
    z = mx.concatenate(zs, axis=1)
    mx.eval(z)
    return z


def frame_mask(frame_num: int, given: Sequence[int], temporal_stride: int = 4) -> np.ndarray:
    """Wan's I2V/FLF2V mask channels, [T, 4] float32, for pixel frames ``given`` (e.g. [0] for I2V,
    [0, F-1] for FLF2V) of ``frame_num`` = 4k+1 frames.

    The pixel mask gets 3 extra copies of frame 0 in front and is folded 4 per latent frame:
    ``mask[j, c] = m'[4j + c]`` (docs/wan.md 8.1 step 4), so latent 0 of I2V is [1, 1, 1, 1] and FLF2V's
    last latent is [0, 0, 0, 1]. Generalises the reference's hard-coded 81 frames.
    """
    T = check_frame_num(frame_num, temporal_stride)
    m = np.zeros(frame_num, np.float32)
    for f in given:
        if not 0 <= f < frame_num:
            raise ValueError(f"conditioned frame {f} outside 0..{frame_num - 1}")
        m[f] = 1.0
    m = np.concatenate([np.repeat(m[:1], temporal_stride - 1), m])
    return m.reshape(T, temporal_stride)


def encode_frames(vae, frames: dict[int, mx.array], frame_num: int, width: int, height: int) -> ChannelCondition:
    """I2V/FLF2V ``y``: the video with ``frames`` ({pixel frame: [height, width, 3] in [-1, 1]}) and
    zeros elsewhere, VAE-encoded whole (docs/wan.md 8.1 step 5, 8.2), plus ``frame_mask``."""
    video = mx.zeros((1, frame_num, height, width, 3), mx.float32)
    for f, im in frames.items():
        video[:, f] = im.astype(mx.float32)
    z = vae.encode(video)
    mx.eval(z)
    mask = frame_mask(frame_num, sorted(frames), vae.stride[0])
    return ChannelCondition(mx.array(mask)[None, :, None, None, :], z)


def encode_clip(clip, images: Sequence[np.ndarray]) -> mx.array:
    """CLIP tokens of each image (each at its own resolution; Wan squashes it to 224), concatenated
    in order: [1, 257·k, 1280] float32 (Wan2.1 I2V: k = 1; FLF2V: first then last)."""
    feats = [clip.encode_images(mx.array(im)[None]) for im in images]
    out = mx.concatenate(feats, axis=1)
    mx.eval(out)
    return out


# ----------------------------------------------------------------------------- one-frame inference


@dataclass(frozen=True)
class OneFrameSpec:
    """musubi-tuner one-frame inference: latent slots at RoPE time indices ``control_index`` (clean
    control images) and ``target_index`` (the generated image) (docs/wan.md 11)."""

    control_index: tuple[int, ...]
    target_index: int

    @classmethod
    def parse(cls, text: str, num_controls: int | None = None) -> OneFrameSpec:
        """Parse ``"control_index=0;2,target_index=1"`` (comma-separated options, ';'-separated
        control indices). Raises ValueError with the reason: unknown option, non-integer or negative
        index, duplicates, target among controls, index >= 1024 (the RoPE table), or a control count
        that does not match ``num_controls`` (the control images given)."""
        opts: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, eq, val = part.partition("=")
            key = key.strip()
            if not eq or key not in ("control_index", "target_index"):
                raise ValueError(
                    f"one_frame_inference: expected control_index=I[;J...] and target_index=K, got {part!r}"
                )
            if key in opts:
                raise ValueError(f"one_frame_inference: {key} given twice")
            opts[key] = val.strip()
        for key in ("control_index", "target_index"):
            if key not in opts:
                raise ValueError(f'one_frame_inference: {key} is missing (e.g. "control_index=0,target_index=1")')

        def ints(s: str, key: str) -> list[int]:
            try:
                vals = [int(v) for v in s.split(";")]
            except ValueError:
                raise ValueError(f"one_frame_inference: {key} must be integers separated by ';', got {s!r}") from None
            bad = [v for v in vals if not 0 <= v < ROPE_ROWS]
            if bad:
                raise ValueError(f"one_frame_inference: {key} must be in 0..{ROPE_ROWS - 1}, got {bad}")
            return vals

        controls, targets = ints(opts["control_index"], "control_index"), ints(opts["target_index"], "target_index")
        if len(targets) != 1:
            raise ValueError(f"one_frame_inference: target_index takes one index, got {targets}")
        target = targets[0]
        if len(set(controls)) != len(controls):
            raise ValueError(f"one_frame_inference: control_index has duplicates: {controls}")
        if target in controls:
            raise ValueError(f"one_frame_inference: target_index {target} is also a control_index")
        if num_controls is not None and num_controls != len(controls):
            raise ValueError(
                f"one_frame_inference: {len(controls)} control_index value(s) but {num_controls} "
                f"control image(s); give one --control_image_path per control index"
            )
        return cls(tuple(controls), target)

    @property
    def positions(self) -> list[int]:
        """RoPE time index of each latent slot: sorted(controls + [target])."""
        return sorted(self.control_index + (self.target_index,))

    @property
    def target_slot(self) -> int:
        return self.positions.index(self.target_index)


def one_frame_condition(vae, controls: Sequence[np.ndarray], spec: OneFrameSpec) -> ChannelCondition:
    """musubi's one-frame ``y``: control images [H, W, 3] are assigned to the non-target slots in
    ascending index order, each encoded alone, with all 4 mask channels 1; the target slot has mask 0
    and the latent of an all-zero (mid-grey) image (docs/wan.md 11)."""
    if len(controls) != len(spec.control_index):
        raise ValueError(f"{len(controls)} control images for {len(spec.control_index)} control indices")
    H, W, _ = controls[0].shape
    grey = vae.encode(mx.zeros((1, 1, H, W, 3), mx.float32))
    it = iter(controls)
    lat, mask = [], []
    for pos in spec.positions:
        target = pos == spec.target_index
        lat.append(grey if target else vae.encode(mx.array(next(it))[None, None]))
        mask.append(0.0 if target else 1.0)
    z = mx.concatenate(lat, axis=1)
    mx.eval(z)
    m = mx.broadcast_to(mx.array(mask, mx.float32)[:, None], (len(mask), 4))
    return ChannelCondition(m[None, :, None, None, :], z)


# ----------------------------------------------------------------------------- anchors at any frame (TI2V-5B)


@dataclass(frozen=True)
class AnchorImage:
    """One ``--images`` entry: ``PATH``, ``PATH@FRAME`` or ``PATH@FRAME:STRENGTH``.

    frame: pixel frame index (negative counts from the end: -1 is the last frame), or None for a plain
    path, which goes to the next latent frame in list order (mi2v: the i-th plain image at latent frame i).
    strength in [0, 1]: 1 anchors fully (timestep 0 on its tokens), 0 is no anchor (see ``LatentAnchor``).
    """

    path: Path
    frame: int | None = None
    strength: float = 1.0

    @classmethod
    def parse(cls, spec: str | Path) -> AnchorImage:
        """Parse one entry; a spec that names an existing file is a plain path even if it holds '@'.
        Raises ValueError (one line, naming the spec) for a frame that is not an integer or a strength
        that is not a number in [0, 1]."""
        text = str(spec)
        path, at, rest = text.rpartition("@")
        if Path(text).is_file() or not at:
            return cls(Path(text))
        frame, colon, strength = rest.partition(":")
        try:
            f = int(frame)
        except ValueError:
            raise ValueError(
                f"image {text!r}: expected PATH@FRAME[:STRENGTH] with an integer pixel frame, got {frame!r}"
            ) from None
        s = 1.0
        if colon:
            try:
                s = float(strength)
            except ValueError:
                s = math.nan
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"image {text!r}: anchor strength must be a number in [0, 1], got {strength!r}")
        return cls(Path(path), f, s)


def latent_frame_of(pixel_frame: int, frame_num: int, temporal_stride: int = 4) -> int:
    """The latent frame holding pixel frame ``pixel_frame`` of a ``frame_num`` = 4k+1 frame video.

    Negative indices count from the end (-1 = frame_num - 1). The causal VAE's 4x temporal stride makes
    latent 0 pixel frame 0 alone and latent j >= 1 pixel frames 4j-3 .. 4j, so pixel f > 0 is latent
    ``(f - 1) // 4 + 1``. Raises ValueError for a frame outside 0..frame_num-1.
    """
    f = pixel_frame + frame_num if pixel_frame < 0 else pixel_frame
    if not 0 <= f < frame_num:
        raise ValueError(
            f"pixel frame {pixel_frame} is outside the video (frames 0..{frame_num - 1}, or -1.."
            f"-{frame_num} from the end, for frame_num {frame_num})"
        )
    return 0 if f == 0 else (f - 1) // temporal_stride + 1


def place_anchors(specs: Sequence[AnchorImage], frame_num: int, temporal_stride: int = 4) -> list[int]:
    """Latent frame of each anchor image: ``latent_frame_of`` its pixel frame, or for a plain path its
    position in the list (mi2v). Raises ValueError (one line) for a frame outside the video or two images
    on one latent frame."""
    out, owner = [], {}
    for i, a in enumerate(specs):
        if a.frame is None:
            j = i
            if j >= check_frame_num(frame_num, temporal_stride):
                raise ValueError(
                    f"image {a.path}: latent frame {j} is outside the video's "
                    f"{check_frame_num(frame_num, temporal_stride)} latent frames"
                )
        else:
            try:
                j = latent_frame_of(a.frame, frame_num, temporal_stride)
            except ValueError as e:
                raise ValueError(f"image {a.path}@{a.frame}: {e}") from None
        if j in owner:
            raise ValueError(
                f"images {owner[j]} and {a.path} fall on one latent frame {j} (each latent frame "
                f"covers 4 pixel frames: latent j >= 1 holds frames 4j-3..4j); move one of them"
            )
        owner[j] = a.path
        out.append(j)
    return out


def encode_anchor_at(vae, image: np.ndarray, latent_frame: int, group: bool = True) -> mx.array:
    """The VAE latent [1, 1, h, w, z] of ``image`` [H, W, 3] in [-1, 1] anchored at ``latent_frame``.

    Latent frame 0 (or ``group`` False): the image encoded alone as a one-frame video, as the official
    TI2V (a lone first frame is what the causal VAE sees at frame 0). Latent frame j >= 1 with ``group``:
    the latent of a still segment at that position: the image repeated 5 times (1 + one 4-frame group)
    is encoded and its second latent kept, so the anchor is a 4-frame group the causal VAE encoded after
    a frame of the same image, and it decodes to (about) 4 copies of the image rather than the flicker a
    first-frame latent gives in a 4-frame slot.
    """
    x = mx.array(image)[None, None]
    if latent_frame == 0 or not group:
        z = vae.encode(x)
    else:
        z = vae.encode(mx.repeat(x, 1 + vae.stride[0], axis=1))[:, 1:2]
    mx.eval(z)
    return z


# ----------------------------------------------------------------------------- video to video (SDEdit)


def _open_video(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video not found: {path}")
    try:
        c = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise ValueError(f"cannot read video {path}: {e}") from None
    if not c.streams.video:
        c.close()
        raise ValueError(f"{path} has no video stream")
    return c


def read_video(
    path: str | Path, width: int | None = None, height: int | None = None, max_frames: int | None = None
) -> tuple[np.ndarray | None, int, tuple[int, int]]:
    """Decode a video file with PyAV: (frames, frame count, (width, height) of the file).

    Without ``width``/``height`` only counts (frames is None). With them, the first ``max_frames`` (all if
    None) frames are LANCZOS cover-resized and center-cropped to (width, height), as the TI2V images
    (``prepare_images``): float32 [F, height, width, 3] in [-1, 1]. Raises ValueError (one line, the path)
    for a missing or unreadable file, no video stream or no frames.
    """
    import av
    from PIL import Image

    out, n, wh = [], 0, None
    with _open_video(path) as c:
        try:
            for frame in c.decode(c.streams.video[0]):
                if max_frames is not None and n >= max_frames:
                    break
                wh = (frame.width, frame.height)
                if width is not None:
                    im = Image.fromarray(frame.to_ndarray(format="rgb24"))
                    out.append(to_array(lanczos_cover_crop(im, height, width)))
                n += 1
        except (av.FFmpegError, OSError, ValueError) as e:
            raise ValueError(f"cannot decode video {path}: {e}") from None
    if n == 0:
        raise ValueError(f"video {path} has no frames")
    return (np.stack(out) if out else None), n, wh


def read_last_frame(path: str | Path):
    """The last frame of a video file at its own resolution, as an RGB PIL image (I2V extension: the first
    image of the continuation). Decodes the whole stream, holding one frame. ValueError as ``read_video``."""
    import av

    last = None
    with _open_video(path) as c:
        try:
            for frame in c.decode(c.streams.video[0]):
                last = frame
        except (av.FFmpegError, OSError, ValueError) as e:
            raise ValueError(f"cannot decode video {path}: {e}") from None
        if last is None:
            raise ValueError(f"video {path} has no frames")
        return last.to_image().convert("RGB")
