"""Reading audio from any file PyAV decodes (wav, mp3, flac, aac, an mp4's audio track, ...).

:func:`read_audio` follows ltx-pipelines 1.0.0 ``media_io.decode_audio_from_file`` (seek to ``start_time``,
keep the decoded frames that overlap ``[start_time, start_time + max_duration]``, then trim the samples
outside the window), with one difference: every frame goes through PyAV's ``AudioResampler`` to planar
float32 stereo at the stream's own rate (a mono stream is duplicated to both channels, a wider layout such as
5.1 is downmixed by the resampler), so any sample format and layout comes out as the two channels the LTX-2
audio VAE takes (the official reader keeps the file's channels, and its audio
encoder then fails on anything but stereo). The sample rate is left as it is: the audio VAE's front end
resamples to 16 kHz with the official's own resampler (:func:`mlx_video.ltx2.audio_vae.resample`, torchaudio's
sinc), see docs/ltx2.md §16.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """An audio input that cannot be used: unreadable file, no audio stream, nothing in the window."""


def read_audio(path: str | Path, start_time: float = 0.0, max_duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` from ``start_time`` seconds for at most ``max_duration``
    seconds (None: to the end).

    Returns (float32 waveform [samples, 2] in [-1, 1], sample rate in Hz). Raises AudioError (one line) when
    the file cannot be opened, has no audio stream, or holds no samples in the window, and for a negative
    ``start_time`` or a ``max_duration`` that is not positive.
    """
    import av

    if not (math.isfinite(start_time) and start_time >= 0):
        raise AudioError(f"audio start time must be >= 0 seconds, got {start_time}")
    if max_duration is not None and not (math.isfinite(max_duration) and max_duration > 0):
        raise AudioError(f"audio max duration must be > 0 seconds, got {max_duration}")
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as e:
        raise AudioError(f"cannot read audio from {path}: {e}") from None
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioError(f"{path} has no audio stream")
        rate = int(stream.rate)
        tb = stream.time_base
        if max_duration is not None:
            end_time = start_time + max_duration
        else:
            end_time = float(stream.duration * tb) if stream.duration is not None else math.inf
        if start_time > 0:
            container.seek(int(start_time / tb), stream=stream)
        mono = stream.codec_context.channels == 1  # duplicated below (swr's upmix would scale by 1/sqrt(2))
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else "stereo", rate=rate)
        chunks, first = [], None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t0 = float(frame.pts * tb)
                if t0 + frame.samples / frame.sample_rate < start_time:
                    continue
                if t0 > end_time:
                    break
                first = t0 if first is None else first
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as e:
            raise AudioError(f"cannot decode the audio of {path}: {e}") from None
    if not chunks or first is None:
        raise AudioError(f"{path} has no audio from {start_time:g} s on")
    audio = np.concatenate(chunks, axis=1).astype(np.float32)  # [2, samples]
    skip = round((start_time - first) * rate)
    if skip > 0:
        audio = audio[:, skip:]
    if max_duration is not None:
        audio = audio[:, : round(max_duration * rate)]
    if audio.shape[1] == 0:
        raise AudioError(f"{path} has no audio from {start_time:g} s on")
    if mono:
        audio = np.repeat(audio, 2, axis=0)
    return np.ascontiguousarray(audio.T), rate
