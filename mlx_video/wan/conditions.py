"""Wan conditioning builders: output size, image preparation, latent anchors (TI2V / mi2v), the I2V /
FLF2V ``y`` channels with CLIP features, and musubi-tuner one-frame inference slots.

Plain functions over arrays used by :mod:`mlx_video.wan.pipeline`; each names the reference it follows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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
        raise ValueError(f"size {width}*{height} cannot be taken: width and height must be positive "
                         f"multiples of {multiple} (VAE stride x DiT patch)")


def output_size(task: WanTask, size: str | None, first_image_wh: tuple[int, int] | None,
                multiple: int) -> tuple[int, int]:
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


def first_last_pixels(first: str | Path, last: str | Path | None = None) -> list[np.ndarray]:
    """The FLF2V input frames at the first frame's own resolution, [H, W, 3] in [-1, 1].

    A last frame of another size is cover-resized (LANCZOS) to the first frame's size and
    center-cropped, as WanFM does (it resizes with torchvision's antialiased bilinear; Wan2.1's code
    mixes up width and height there). Both then go to the VAE through ``bicubic_resize`` and to CLIP
    as they are.
    """
    a = load_image(first)
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
    def parse(cls, text: str, num_controls: int | None = None) -> "OneFrameSpec":
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
                raise ValueError(f"one_frame_inference: expected control_index=I[;J...] and target_index=K, "
                                 f"got {part!r}")
            if key in opts:
                raise ValueError(f"one_frame_inference: {key} given twice")
            opts[key] = val.strip()
        for key in ("control_index", "target_index"):
            if key not in opts:
                raise ValueError(f"one_frame_inference: {key} is missing (e.g. \"control_index=0,target_index=1\")")

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
            raise ValueError(f"one_frame_inference: {len(controls)} control_index value(s) but {num_controls} "
                             f"control image(s); give one --control_image_path per control index")
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
