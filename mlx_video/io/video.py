"""Writing results: H.264 mp4 (optionally with AAC audio) through PyAV, or a PNG for one frame; reading
input videos (:func:`video_info`, :func:`read_video`).

Every writer goes to a temporary file next to the target and renames it at the end
(:func:`mlx_video.io.atomic.atomic_path`), so a failed or interrupted run (Ctrl-C, SIGTERM) leaves no
partial output, and the result gets the umask's permissions. mp4 files are written with the index at the
front (``movflags=+faststart``) so they stream.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlx_video.io.atomic import atomic_path


class OutputPathError(ValueError):
    """The output path cannot be written."""


def check_output_path(path: str | Path, suffixes: tuple[str, ...] = (".mp4", ".png")) -> Path:
    """Check, before any long run, that ``path`` can be created: its nearest existing parent is a writable
    folder, the path is not a directory, the suffix is one we write. Creates nothing (a refused run leaves
    no new folder); missing folders are made when the result is written. Returns the Path.
    Raises OutputPathError with the reason.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise OutputPathError(f"output {path}: suffix must be one of {', '.join(suffixes)}")
    if path.is_dir():
        raise OutputPathError(f"output {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    base = parent  # the nearest existing folder: missing ones are made only when the result is written
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputPathError(f"cannot create folder {parent}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write to {base}: permission denied")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"output {path} exists and is not writable")
    return path


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    metadata: dict | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    crf: int = 18,
) -> Path:
    """Write uint8 frames [F, H, W, 3] as H.264 (yuv420p) mp4 at ``fps``; optional audio float32
    [samples, channels] in [-1, 1] muxed as AAC. ``metadata`` goes into the container's ``comment``
    tag as JSON. H and W must be even (yuv420p). Atomic. Returns the path.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    with atomic_path(path) as tmp:
        # faststart: the index (moov) goes before the frames, so the file plays while it downloads
        with av.open(str(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as out:
            if metadata:
                out.metadata["comment"] = json.dumps(metadata, sort_keys=True, default=str)
            vs = out.add_stream("libx264", rate=round(fps) if float(fps).is_integer() else fps)
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuv420p"
            # mbtree off: with it, PyAV's libx264 encoded identical frames of some widths (96, not 128)
            # to different streams from one process to the next; a seed must give the same file
            vs.options = {"crf": str(crf), "x264-params": "mbtree=0"}
            ast = None
            if audio is not None:
                ast = out.add_stream("aac", rate=int(sample_rate))
                ast.layout = "stereo" if audio.shape[1] == 2 else "mono"
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(f, format="rgb24")
                vf.pts = i
                for pkt in vs.encode(vf):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
            if ast is not None:
                a = np.ascontiguousarray(np.clip(audio, -1, 1).astype(np.float32).T)
                fr = av.AudioFrame.from_ndarray(a, format="fltp", layout=ast.layout.name)
                fr.sample_rate = int(sample_rate)
                for pkt in ast.encode(fr):
                    out.mux(pkt)
                for pkt in ast.encode():
                    out.mux(pkt)
    return path


def write_image(path: str | Path, frame: np.ndarray, metadata: dict | None = None) -> Path:
    """Write one uint8 frame [H, W, 3] as PNG with ``metadata`` as a JSON text chunk. Atomic."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if metadata:
        info.add_text("parameters", json.dumps(metadata, sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(tmp, format="PNG", pnginfo=info)
    return path


# ----------------------------------------------------------------------------- reading


class VideoError(ValueError):
    """A video input that cannot be used: unreadable file, no video stream, no frames."""


@dataclass(frozen=True)
class VideoInfo:
    """A video file's first video stream: fps (its average rate), frames (the container's count, else counted
    by decoding), width, height (pixels); has_audio: whether the file has an audio stream."""

    fps: float
    frames: int
    width: int
    height: int
    has_audio: bool


def _open(path: str | Path):
    import av

    try:
        return av.open(str(path))
    except (OSError, av.FFmpegError) as e:
        raise VideoError(f"cannot read video from {path}: {e}") from None


def _video_stream(container, path):
    stream = next((s for s in container.streams if s.type == "video"), None)
    if stream is None:
        raise VideoError(f"{path} has no video stream")
    return stream


def video_info(path: str | Path) -> VideoInfo:
    """The metadata of ``path``'s first video stream (ltx-pipelines 1.0.0 ``media_io.get_videostream_metadata``),
    read without decoding when the container knows the frame count. Raises VideoError (one line) for a file
    PyAV cannot open, one without a video stream, or one whose stream has no frames or rate."""
    import av

    with _open(path) as container:
        stream = _video_stream(container, path)
        has_audio = any(s.type == "audio" for s in container.streams)
        frames = stream.frames or 0
        try:
            if frames == 0:
                frames = sum(1 for _ in container.decode(stream))
        except av.FFmpegError as e:
            raise VideoError(f"cannot decode the video of {path}: {e}") from None
        rate = stream.average_rate
        if not frames or not rate:
            raise VideoError(f"{path}: its video stream has no frames or no frame rate")
        return VideoInfo(float(rate), int(frames), stream.codec_context.width, stream.codec_context.height, has_audio)


def read_video(path: str | Path, frame_cap: int | None = None) -> np.ndarray:
    """The frames of ``path``'s first video stream as uint8 RGB [F, H, W, 3] (PyAV ``to_rgb``), the first
    ``frame_cap`` only when given (ltx-pipelines 1.0.0 ``media_io.decode_video_from_file``; resize / crop and
    scaling to [-1, 1] are the pipeline's, :func:`mlx_video.ltx2.pipelines.video_pixels`). Raises VideoError
    (one line) for a file PyAV cannot open or decode, one without a video stream, or no frames."""
    import av

    if frame_cap is not None and (isinstance(frame_cap, bool) or not isinstance(frame_cap, int) or frame_cap < 1):
        raise VideoError(f"frame cap must be a whole number >= 1, got {frame_cap!r}")
    frames = []
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_rgb().to_ndarray())
                if frame_cap is not None and len(frames) == frame_cap:
                    break
        except av.FFmpegError as e:
            raise VideoError(f"cannot decode the video of {path}: {e}") from None
    if not frames:
        raise VideoError(f"{path}: its video stream has no frames")
    return np.stack(frames).astype(np.uint8)


def read_video_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """:func:`read_video` with ``max_frames`` as the frame cap (the name the IC-LoRA control videos use)."""
    return read_video(path, max_frames)


def read_metadata(path: str | Path) -> dict:
    """The parameters :func:`write_video` / :func:`write_image` stored in ``path`` (an mp4's ``comment`` tag, a
    PNG's ``parameters`` text chunk), as a dict. Raises ValueError when the file is missing, unreadable or carries
    no mlx_video parameters."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    text = None
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                text = im.info.get("parameters")
        else:
            import av

            with av.open(str(path)) as f:
                text = f.metadata.get("comment")
    except Exception as e:  # PyAV / PIL raise many kinds for a file that is not a video or image
        raise ValueError(f"{path}: cannot read it as a video or image ({type(e).__name__})") from None
    try:
        meta = json.loads(text) if text else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("generator") != "mlx_video":
        raise ValueError(f"{path}: carries no mlx_video parameters (not written by mlx_video generate)")
    return meta
