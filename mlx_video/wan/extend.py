"""Wan video extension (``WanSettings.extend`` / ``overlap`` / ``segments`` / ``prompts``, docs/wan.md 9.4):
the settings' extension checks, the next window's plan, a window's text context and the crossfaded join.

t2v-5B / ti2v-5B (without images) continue a clip on latent anchors: its last ``overlap`` pixel frames
(4j+1) are VAE-encoded as the start of a video and anchor latent frames 0..j of the new window. The I2V /
FLF2V tasks take the clip's (or the previous window's) last frame as their first image; their overlap is
that one frame. Windows are appended with :func:`join_windows`. Nothing here prints or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import mlx.core as mx
import numpy as np

from .. import checks
from .conditions import read_video
from .config import WanTask


def extend_source(s, tk: WanTask, one, images) -> tuple[int, tuple[int, int]] | None:
    """(frame count, (width, height)) of the video ``s.extend`` (``s`` a WanSettings) to continue, or None;
    ValueError for a task without latent anchors, images given too, or an unreadable file."""
    if s.extend is None and s.segments == 1:
        if s.overlap is not None:
            raise ValueError("overlap is for extension: give extend or segments > 1")
        return None
    anchors = tk.images in ("none", "optional") and tk.vae == "2.2" and not images
    if one is not None or not (anchors or tk.images in ("first", "first_last")):
        raise ValueError(
            f"extension (extend / segments) runs on t2v-5B / ti2v-5B latent anchors without images and on the "
            f"I2V / FLF2V tasks, not {tk.name}{' with images' if images else ''}"
            f"{' with one-frame inference' if one is not None else ''}"
        )
    if tk.images == "first_last" and (s.extend is None or s.segments > 1):
        raise ValueError(
            f"{tk.name} extension bridges a clip (extend) to the last frame in one window: give extend and segments 1"
        )
    if s.extend is None:
        return None
    _, n, wh = read_video(s.extend)
    return n, wh


def extend_overlap(s, ext, frame_num: int) -> int | None:
    """The validated overlap in pixel frames (None without extension): 1 for the I2V / FLF2V tasks, else
    4j+1 (default 5) below ``frame_num`` and at most the clip's frames ``ext[0]``; ValueError otherwise."""
    if s.extend is None and s.segments == 1:
        return None
    if s.preset.images in ("first", "first_last"):  # y from one frame: the overlap is that frame
        if s.overlap not in (None, 1):
            raise ValueError(
                f"{s.task} extension conditions on the last frame only: overlap must be 1, got {s.overlap}"
            )
        return 1
    ov = 5 if s.overlap is None else checks.positive_int("overlap", s.overlap)
    if (ov - 1) % 4 or ov >= frame_num:
        raise ValueError(
            f"overlap must be 4j+1 pixel frames (1, 5, 9, ...) and less than frame_num {frame_num}, got {ov}"
        )
    if ext is not None and ext[0] < ov:
        raise ValueError(f"video {s.extend} has {ext[0]} frames, fewer than the overlap {ov}")
    return ov


def image_from_clip(s, tk: WanTask, one, images) -> int:
    """1 when the first frame of an I2V / FLF2V task is the last frame of ``s.extend`` (then no first image
    may be given: ValueError), else 0."""
    if s.extend is None or one is not None or tk.images not in ("first", "first_last"):
        return 0
    if len(images) != (tk.images == "first_last"):
        raise ValueError(
            f"with extend the first frame of {tk.name} is the clip's last frame: give "
            f"{'only the last frame' if tk.images == 'first_last' else 'no image'}, got {len(images)} image(s)"
        )
    return 1


def next_window(plan, video: np.ndarray):
    """The plan (a WanPlan) of the window that continues ``video`` (uint8 [F, H, W, 3], the output so far): its
    last ``overlap`` frames become the latent anchors (5B, ``extend``) or its last frame the first image (I2V
    ``y`` and CLIP, ``pixels``), and the seed moves on by one. Holds only those frames of ``video``."""
    s = plan.settings
    tail = video[-s.overlap :].astype(np.float32) / 127.5 - 1.0
    nxt = replace(s, seed=(s.seed + 1) % 2**32)
    if plan.task.images in ("first", "first_last"):
        return replace(plan, settings=nxt, pixels=[tail[-1]])
    return replace(plan, settings=nxt, extend=tail)


def window_context(context: Sequence[mx.array], k: int) -> list[mx.array]:
    """[cond, uncond] of window ``k`` from ``encode_text``'s [cond_0, ..., cond_{P-1}, uncond]: the k-th
    prompt's embedding with per-segment prompts, else the one prompt's. ValueError for a list of another length
    than 2 or ``k`` + 2 and more."""
    conds = list(context[:-1])
    if not conds or (len(conds) > 1 and k >= len(conds)):
        raise ValueError(
            f"text context for window {k}: expected [cond, uncond] or one cond per segment and the "
            f"uncond, got {len(context)} arrays"
        )
    return [conds[k] if len(conds) > 1 else conds[0], context[-1]]


def join_windows(video: np.ndarray | None, window: np.ndarray, overlap: int | None) -> np.ndarray:
    """Append a window (uint8 [F, H, W, 3]) to the video so far (None: the window itself). The window's first
    ``overlap`` = n frames show the same moments as the video's last n (anchored or conditioned on them): they
    are crossfaded linearly, frame i as ``(1 − w_i)·video[−n + i] + w_i·window[i]`` with ``w_i = (i + 1)/(n + 1)``
    (rounded to uint8), then ``window[n:]`` follows. Nothing is repeated: the result has len(video) + F − n
    frames; the fade runs from the old frames to the new ones, so neither the VAE round trip of the anchors
    nor a re-generated I2V first frame makes a jump at the join (docs/wan.md 9.4)."""
    if video is None:
        return window
    n = overlap or 0
    if n == 0:
        return np.concatenate([video, window])
    w = (np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None]
    mixed = (1.0 - w) * video[-n:].astype(np.float32) + w * window[:n].astype(np.float32)
    return np.concatenate([video[:-n], np.clip(np.round(mixed), 0, 255).astype(np.uint8), window[n:]])
