"""LTX-2 / LTX-2.3 audio VAE: log-mel spectrogram <-> audio latent, in MLX.

Follows ``ltx_core.model.audio_vae`` (AudioEncoder, AudioDecoder, AudioProcessor, PerChannelStatistics;
ltx-core 1.0.0); diffusers' ``AutoencoderKLLTX2Audio`` is the same network under other names for the
statistics. A 2-D conv VAE over (time, mel) with PixelNorm, SiLU and convolutions that are causal
along time: channels-last here, so a mel spectrogram is ``[B, T, F, C]`` (C = 2 stereo channels,
F = 64 mel bins) and a latent is ``[B, T/4, F/4, z]`` (z = 8) or, in the transformer's token layout,
``[B, T/4, z * F/4]`` with features ordered (channel, mel bin) as ltx-core's AudioPatchifier does.

Shapes: ``encoder(mel [B, T, 64, 2]) -> latent [B, (T - 1)//4 + 1, 16, 8]`` (normalised by the
per-channel statistics); ``decoder(latent [B, t, 16, 8] or [B, t, 128]) -> mel [B, 4t - 3, 64, 2]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.nn.attention import attention

LATENT_DOWNSAMPLE_FACTOR = 4
_AXES = ("none", "height", "width", "width-compatibility")


@dataclass
class AudioVAEArgs:
    """Audio VAE hyper-parameters (defaults: ltx-core's configurator defaults).

    ``causality_axis`` names the causal axis of the torch layout (B, C, T, F): "height" = time
    (the real checkpoints), "width" = mel, "none" = symmetric padding everywhere.
    """

    ch: int = 128
    ch_mult: tuple = (1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (8, 16, 32)
    resolution: int = 256
    z_channels: int = 8
    in_channels: int = 2
    out_ch: int = 2
    double_z: bool = True
    norm_type: str = "pixel"
    causality_axis: str = "height"
    mid_block_add_attention: bool = True
    mel_bins: int | None = 64
    sample_rate: int = 16000
    mel_hop_length: int = 160
    n_fft: int = 1024
    is_causal: bool = True

    def __post_init__(self):
        self.causality_axis = "none" if self.causality_axis is None else self.causality_axis
        if self.causality_axis not in _AXES:
            raise ValueError(f"causality_axis must be one of {_AXES}, got {self.causality_axis!r}")
        if self.norm_type not in ("pixel", "group"):
            raise ValueError(f"norm_type must be 'pixel' or 'group', got {self.norm_type!r}")
        self.ch_mult = tuple(self.ch_mult)
        self.attn_resolutions = tuple(self.attn_resolutions or ())

    @classmethod
    def from_config(cls, config: dict) -> AudioVAEArgs:
        """Read the checkpoint's embedded config (whole dict or its ``"audio_vae"`` entry) or a
        diffusers ``AutoencoderKLLTX2Audio`` config dict."""
        if "base_channels" in config or "latent_channels" in config:  # diffusers
            c = config
            return cls(
                ch=c.get("base_channels", 128),
                ch_mult=c.get("ch_mult", (1, 2, 4)),
                num_res_blocks=c.get("num_res_blocks", 2),
                attn_resolutions=c.get("attn_resolutions") or (),
                resolution=c.get("resolution", 256),
                z_channels=c.get("latent_channels", 8),
                in_channels=c.get("in_channels", 2),
                out_ch=c.get("output_channels", 2),
                double_z=c.get("double_z", True),
                norm_type=c.get("norm_type", "pixel"),
                causality_axis=c.get("causality_axis", "height"),
                mid_block_add_attention=c.get("mid_block_add_attention", False),
                mel_bins=c.get("mel_bins", 64),
                sample_rate=c.get("sample_rate", 16000),
                mel_hop_length=c.get("mel_hop_length", 160),
                is_causal=c.get("is_causal", True),
            )
        c = config.get("audio_vae", config)
        params = c.get("model", {}).get("params", {})
        dd = params.get("ddconfig", {})
        pre = c.get("preprocessing", {})
        stft, mel = pre.get("stft", {}), pre.get("mel", {})
        mel_bins = dd.get("mel_bins") or mel.get("n_mel_channels") or c.get("variables", {}).get("mel_bins")
        return cls(
            ch=dd.get("ch", 128),
            ch_mult=dd.get("ch_mult", (1, 2, 4)),
            num_res_blocks=dd.get("num_res_blocks", 2),
            attn_resolutions=dd.get("attn_resolutions", (8, 16, 32)),
            resolution=dd.get("resolution", 256),
            z_channels=dd.get("z_channels", 8),
            in_channels=dd.get("in_channels", 2),
            out_ch=dd.get("out_ch", 2),
            double_z=dd.get("double_z", True),
            norm_type=dd.get("norm_type", "pixel"),
            causality_axis=dd.get("causality_axis", "height"),
            mid_block_add_attention=dd.get("mid_block_add_attention", True),
            mel_bins=mel_bins,
            sample_rate=params.get("sampling_rate", 16000),
            mel_hop_length=stft.get("hop_length", 160),
            n_fft=stft.get("filter_length", 1024),
            is_causal=stft.get("causal", True),
        )


# ---------------------------------------------------------------------------------------------
# layers (channels-last [B, T, F, C]; torch "height" = our axis 1, "width" = our axis 2)
# ---------------------------------------------------------------------------------------------


def _pad_2d(x: mx.array, pad_t: tuple, pad_f: tuple) -> mx.array:
    return mx.pad(x, [(0, 0), pad_t, pad_f, (0, 0)]) if any(pad_t + pad_f) else x


class PixelNorm(nn.Module):
    """x / sqrt(mean_c(x²) + eps) over channels, no parameters (ltx-core PixelNorm, eps 1e-6)."""

    def __call__(self, x):
        return mx.fast.rms_norm(x, None, 1e-6)


def _norm(channels: int, kind: str) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(32, channels, eps=1e-6, pytorch_compatible=True)
    return PixelNorm()


class CausalConv2d(nn.Module):
    """Stride-1 square conv with 'same' output size, padded only on the past side of the causal axis."""

    def __init__(self, cin: int, cout: int, kernel: int, axis: str):
        super().__init__()
        p = kernel - 1
        sym, past = (p // 2, p - p // 2), (p, 0)
        self.pad_t = past if axis == "height" else sym
        self.pad_f = past if axis in ("width", "width-compatibility") else sym
        self.conv = nn.Conv2d(cin, cout, kernel)

    def __call__(self, x):
        return self.conv(_pad_2d(x, self.pad_t, self.pad_f))


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, args: AudioVAEArgs):
        super().__init__()
        ax = args.causality_axis
        self.norm1 = _norm(cin, args.norm_type)
        self.conv1 = CausalConv2d(cin, cout, 3, ax)
        self.norm2 = _norm(cout, args.norm_type)
        self.conv2 = CausalConv2d(cout, cout, 3, ax)
        if cin != cout:
            self.nin_shortcut = CausalConv2d(cin, cout, 1, ax)

    def __call__(self, x):
        h = self.conv1(nn.silu(self.norm1(x)))
        h = self.conv2(nn.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if "nin_shortcut" in self else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all T·F positions, 1×1 conv projections, residual."""

    def __init__(self, channels: int, args: AudioVAEArgs):
        super().__init__()
        self.norm = _norm(channels, args.norm_type)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def __call__(self, x):
        b, t, f, c = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, 1, t * f, c) for m in (self.q, self.k, self.v))
        return x + self.proj_out(attention(q, k, v).reshape(b, t, f, c))


class Downsample(nn.Module):
    """3×3 stride-2 conv; zero padding 2 on the past side of the causal axis, 1 after elsewhere."""

    _PADS = {
        "none": ((0, 1), (0, 1)),
        "height": ((2, 0), (0, 1)),
        "width": ((0, 1), (2, 0)),
        "width-compatibility": ((0, 1), (1, 0)),
    }

    def __init__(self, channels: int, axis: str):
        super().__init__()
        self.pad_t, self.pad_f = self._PADS[axis]
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def __call__(self, x):
        return self.conv(_pad_2d(x, self.pad_t, self.pad_f))


class Upsample(nn.Module):
    """Nearest ×2 on both axes, causal 3×3 conv, then drop the first causal-axis element
    (so time goes n -> 2n - 1 and stays aligned with the encoder's causal padding)."""

    def __init__(self, channels: int, axis: str):
        super().__init__()
        self.axis = axis
        self.conv = CausalConv2d(channels, channels, 3, axis)

    def __call__(self, x):
        x = mx.repeat(mx.repeat(x, 2, axis=1), 2, axis=2)
        x = self.conv(x)
        if self.axis == "height":
            return x[:, 1:]
        if self.axis == "width":
            return x[:, :, 1:]
        return x


class MidBlock(nn.Module):
    def __init__(self, channels: int, args: AudioVAEArgs):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, args)
        if args.mid_block_add_attention:
            self.attn_1 = AttnBlock(channels, args)
        self.block_2 = ResnetBlock(channels, channels, args)

    def __call__(self, x):
        x = self.block_1(x)
        if "attn_1" in self:
            x = self.attn_1(x)
        return self.block_2(x)


class Stage(nn.Module):
    """One resolution level: res blocks (each optionally followed by attention) and a resampler."""

    def __init__(self, cin: int, cout: int, n_blocks: int, with_attn: bool, args: AudioVAEArgs):
        super().__init__()
        self.block = [ResnetBlock(cin if i == 0 else cout, cout, args) for i in range(n_blocks)]
        self.attn = [AttnBlock(cout, args) for _ in range(n_blocks)] if with_attn else []

    def __call__(self, x):
        for i, blk in enumerate(self.block):
            x = blk(x)
            if self.attn:
                x = self.attn[i](x)
        return x


class PerChannelStatistics(nn.Module):
    """Dataset mean/std of the ``z * F`` patchified latent features (checkpoint 'mean-of-means' and
    'std-of-means'), applied on the channels-last latent [B, t, F, z] (feature index c * F + f)."""

    def __init__(self, features: int):
        super().__init__()
        self.mean = mx.zeros((features,))
        self.std = mx.ones((features,))

    def _table(self, a: mx.array, x: mx.array) -> mx.array:
        f, c = x.shape[2], x.shape[3]
        return a.reshape(c, f).T.astype(x.dtype)

    def normalize(self, x):
        return (x - self._table(self.mean, x)) / self._table(self.std, x)

    def un_normalize(self, x):
        return x * self._table(self.std, x) + self._table(self.mean, x)


def patchify(latent: mx.array) -> mx.array:
    """[B, t, F, z] -> [B, t, z * F] (feature order (channel, mel bin), as the transformer sees it)."""
    b, t, f, c = latent.shape
    return latent.transpose(0, 1, 3, 2).reshape(b, t, c * f)


def unpatchify(tokens: mx.array, channels: int) -> mx.array:
    """[B, t, z * F] -> [B, t, F, z]; inverse of :func:`patchify`."""
    b, t, n = tokens.shape
    return tokens.reshape(b, t, channels, n // channels).transpose(0, 1, 3, 2)


# ---------------------------------------------------------------------------------------------
# encoder / decoder
# ---------------------------------------------------------------------------------------------


class AudioEncoder(nn.Module):
    """Log-mel spectrogram -> normalised audio latent (ltx-core ``AudioEncoder``).

    ``__call__(mel)``: mel ``[B, T, F, in_channels]`` float (log-mel, F = mel_bins; see
    :func:`waveform_to_mel`). Returns the posterior mean, normalised by the per-channel statistics,
    channels-last ``[B, t, F / 2**(levels-1), z_channels]`` with t = ceil(T / 4) for the causal layout
    (T = 4t - 3 ... 4t). Use :func:`patchify` for the transformer's ``[B, t, z * F']`` tokens.
    """

    def __init__(self, args: AudioVAEArgs):
        super().__init__()
        self.args = args
        ch, mult, ax = args.ch, args.ch_mult, args.causality_axis
        self.conv_in = CausalConv2d(args.in_channels, ch, 3, ax)
        self.down, res, cin = [], args.resolution, ch
        for level, m in enumerate(mult):
            stage = Stage(cin, ch * m, args.num_res_blocks, res in args.attn_resolutions, args)
            cin = ch * m
            if level != len(mult) - 1:
                stage.downsample = Downsample(cin, ax)
                res //= 2
            self.down.append(stage)
        self.mid = MidBlock(cin, args)
        self.norm_out = _norm(cin, args.norm_type)
        self.conv_out = CausalConv2d(cin, args.z_channels * (2 if args.double_z else 1), 3, ax)
        self.per_channel_statistics = PerChannelStatistics(ch)

    def __call__(self, mel: mx.array) -> mx.array:
        h = self.conv_in(mel.astype(self.conv_in.conv.weight.dtype))
        for stage in self.down:
            h = stage(h)
            if "downsample" in stage:
                h = stage.downsample(h)
        h = self.conv_out(nn.silu(self.norm_out(self.mid(h))))
        mean = h[..., : self.args.z_channels] if self.args.double_z else h
        return self.per_channel_statistics.normalize(mean)


class AudioDecoder(nn.Module):
    """Normalised audio latent -> log-mel spectrogram (ltx-core ``AudioDecoder``).

    ``__call__(latent)``: ``[B, t, F', z]`` channels-last, or the transformer's tokens ``[B, t, z * F']``
    (feature order (channel, mel bin)). Returns mel ``[B, T, mel_bins, out_ch]`` in the weights' dtype,
    T = max(4t - 3, 1) for causal layouts (4t for "none"); cropped / zero-padded to that size as the
    reference does. Raises ValueError on a token width that is not a multiple of z.
    """

    def __init__(self, args: AudioVAEArgs):
        super().__init__()
        self.args = args
        ch, mult, ax = args.ch, args.ch_mult, args.causality_axis
        cin = ch * mult[-1]
        self.conv_in = CausalConv2d(args.z_channels, cin, 3, ax)
        self.mid = MidBlock(cin, args)
        self.up = [None] * len(mult)
        res = args.resolution // 2 ** (len(mult) - 1)
        for level in reversed(range(len(mult))):
            stage = Stage(cin, ch * mult[level], args.num_res_blocks + 1, res in args.attn_resolutions, args)
            cin = ch * mult[level]
            if level != 0:
                stage.upsample = Upsample(cin, ax)
                res *= 2
            self.up[level] = stage
        self.norm_out = _norm(cin, args.norm_type)
        self.conv_out = CausalConv2d(cin, args.out_ch, 3, ax)
        self.per_channel_statistics = PerChannelStatistics(ch)

    def __call__(self, latent: mx.array) -> mx.array:
        z = self.args.z_channels
        if latent.ndim == 3:
            if latent.shape[-1] % z:
                raise ValueError(f"token width {latent.shape[-1]} is not a multiple of z_channels={z}")
            latent = unpatchify(latent, z)
        _, t, f, _ = latent.shape
        latent = latent.astype(self.conv_in.conv.weight.dtype)  # computed in the weights' dtype
        h = self.conv_in(self.per_channel_statistics.un_normalize(latent))
        h = self.mid(h)
        for stage in reversed(self.up):
            h = stage(h)
            if "upsample" in stage:
                h = stage.upsample(h)
        h = self.conv_out(nn.silu(self.norm_out(h)))
        # crop / zero-pad to the reference's target size
        T = t * LATENT_DOWNSAMPLE_FACTOR
        if self.args.causality_axis != "none":
            T = max(T - (LATENT_DOWNSAMPLE_FACTOR - 1), 1)
        F = self.args.mel_bins if self.args.mel_bins is not None else f
        h = h[:, :T, :F]
        return _pad_2d(h, (0, T - h.shape[1]), (0, F - h.shape[2]))


# ---------------------------------------------------------------------------------------------
# mel front end of the encoder (ltx-core AudioProcessor: torchaudio MelSpectrogram, slaney mel)
# ---------------------------------------------------------------------------------------------


def _slaney_mel_fb(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """[n_freqs, n_mels] slaney-scale, slaney-normalised triangular filters (f_min 0, f_max sr/2)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]


def resample(
    waveform: mx.array, orig_rate: int, new_rate: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> mx.array:
    """Band-limited resampling with a Hann-windowed sinc (torchaudio ``functional.resample``, its
    default "sinc_interp_hann" method; the kernel is built in float64 NumPy).

    waveform: ``[B, samples, C]``. Returns ``[B, ceil(samples * new / orig), C]`` float32; the input
    itself when the rates are equal.
    """
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    t = (-np.arange(new)[:, None] / new + np.arange(-width, width + orig)[None, :] / orig) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    kernel = np.sinc(t) * np.cos(t * math.pi / lowpass_filter_width / 2) ** 2 * (base / orig)  # [new, K]
    b, n, c = waveform.shape
    x = waveform.astype(mx.float32).transpose(0, 2, 1).reshape(b * c, n, 1)
    x = mx.pad(x, [(0, 0), (width, width + orig), (0, 0)])
    y = mx.conv1d(x, mx.array(kernel.astype(np.float32))[..., None], stride=orig)  # [BC, frames, new]
    y = y.reshape(b, c, -1)[:, :, : math.ceil(new * n / orig)]
    return y.transpose(0, 2, 1)


def waveform_to_mel(
    waveform: mx.array,
    input_rate: int | None = None,
    sample_rate: int = 16000,
    n_fft: int = 1024,
    hop_length: int = 160,
    mel_bins: int = 64,
) -> mx.array:
    """Log-mel spectrogram as the encoder was trained on (ltx-core ``AudioProcessor.waveform_to_mel``).

    waveform: ``[B, samples, C]`` float at ``input_rate`` Hz (resampled to ``sample_rate`` with
    :func:`resample` when they differ; None means it already is at ``sample_rate``).
    Periodic Hann window of n_fft, centred frames with reflect padding, magnitude (power 1), slaney
    mel filters, ``log(max(mel, 1e-5))``. Returns ``[B, samples' // hop + 1, mel_bins, C]`` float32.
    The DFT is a matmul with a float64-built cos/sin table (portable; no FFT op needed).
    Raises ValueError when the (resampled) waveform is not longer than n_fft / 2.
    """
    if input_rate is not None:
        waveform = resample(waveform, input_rate, sample_rate)
    b, n, c = waveform.shape
    x = waveform.astype(mx.float32).transpose(0, 2, 1).reshape(b * c, n)
    p = n_fft // 2
    if n <= p:
        raise ValueError(f"waveform of {n} samples is too short for reflect padding of {p}")
    x = mx.concatenate([x[:, 1 : p + 1][:, ::-1], x, x[:, n - p - 1 : n - 1][:, ::-1]], axis=1)
    frames = (x.shape[1] - n_fft) // hop_length + 1
    idx = mx.arange(frames)[:, None] * hop_length + mx.arange(n_fft)[None, :]
    fr = x[:, idx]  # [BC, frames, n_fft]
    n_freqs = n_fft // 2 + 1
    t = np.arange(n_fft)[:, None] * np.arange(n_freqs)[None, :] * (2 * np.pi / n_fft)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    basis = np.concatenate([np.cos(t), -np.sin(t)], axis=1) * win[:, None]
    spec = fr @ mx.array(basis.astype(np.float32))
    mag = mx.sqrt(spec[..., :n_freqs] ** 2 + spec[..., n_freqs:] ** 2)
    mel = mag @ mx.array(_slaney_mel_fb(n_freqs, mel_bins, sample_rate).astype(np.float32))
    mel = mx.log(mx.maximum(mel, 1e-5))
    return mel.reshape(b, c, frames, mel_bins).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------
# checkpoint keys
# ---------------------------------------------------------------------------------------------

_STATS = {
    "lightricks": {
        "audio_vae.per_channel_statistics.mean-of-means": "per_channel_statistics.mean",
        "audio_vae.per_channel_statistics.std-of-means": "per_channel_statistics.std",
    },
    "diffusers": {"latents_mean": "per_channel_statistics.mean", "latents_std": "per_channel_statistics.std"},
}


def sanitize(weights: dict[str, mx.array], layout: str = "lightricks", part: str = "decoder") -> dict[str, mx.array]:
    """Map checkpoint keys to :class:`AudioDecoder` (``part="decoder"``) or :class:`AudioEncoder`
    (``part="encoder"``) parameter names.

    layout "lightricks": the single-file checkpoint (``audio_vae.decoder.*``, ``audio_vae.encoder.*``,
    ``audio_vae.per_channel_statistics.{mean,std}-of-means``); keys of other components (transformer,
    video VAE, vocoder, the other half of the audio VAE) are not selected. layout "diffusers":
    ``AutoencoderKLLTX2Audio`` state dict (``decoder.*``, ``encoder.*``, ``latents_mean``, ``latents_std``).
    Conv weights go from torch [O, I, kh, kw] to MLX [O, kh, kw, I]. Raises ValueError on an unknown
    layout or part.
    """
    if layout not in _STATS:
        raise ValueError(f"layout must be 'lightricks' or 'diffusers', got {layout!r}")
    if part not in ("decoder", "encoder"):
        raise ValueError(f"part must be 'decoder' or 'encoder', got {part!r}")
    prefix = ("audio_vae." if layout == "lightricks" else "") + part + "."
    out = {}
    for k, v in weights.items():
        if k in _STATS[layout]:
            out[_STATS[layout][k]] = v
        elif k.startswith("audio_vae.per_channel_statistics."):  # unknown statistic: let load_strict name it
            out[k[len("audio_vae.") :]] = v
        elif k.startswith(prefix):
            name = k[len(prefix) :]
            out[name] = v.transpose(0, 2, 3, 1) if v.ndim == 4 else v
    return out
