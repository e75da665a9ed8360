"""LTX-2 vocoders in MLX: mel spectrogram -> stereo waveform.

* :class:`Vocoder` with ``resblock="1"``: the LTX-2 HiFi-GAN generator (24 kHz).
* :class:`Vocoder` with ``resblock="AMP1"``: a BigVGAN-v2 generator (Snake/SnakeBeta activations
  wrapped in anti-aliased ×2 up / down resampling with Kaiser-windowed sinc filters).
* :class:`VocoderWithBWE`: LTX-2.3's BigVGAN at 16 kHz followed by bandwidth extension: a causal-STFT
  log-mel of that waveform drives a second BigVGAN that predicts a residual at 48 kHz, added to a
  Hann-windowed sinc ×3 upsampling of the 16 kHz signal and clamped to [-1, 1].

Follows ``ltx_core.model.audio_vae.vocoder`` (ltx-core 1.0.0); diffusers' ``LTX2Vocoder`` /
``LTX2VocoderWithBWE`` are the same networks under other names. Channels-last throughout:
the input mel is the audio decoder's ``[B, T, mel_bins, 2]``; the output is ``[B, samples, 2]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

LRELU_SLOPE = 0.1


def _section(config: dict) -> dict:
    """The vocoder section of a whole checkpoint config, or ``config`` if it already is one."""
    if isinstance(config.get("vocoder"), dict) and "bwe" not in config:
        return config["vocoder"]
    return config


@dataclass
class VocoderArgs:
    """One generator. ``resblock``: "1" (HiFi-GAN ResBlock1, LeakyReLU) or "AMP1" (BigVGAN-v2);
    ``activation`` ("snake" | "snakebeta") is used by AMP1 blocks only. ``final_activation``:
    "tanh", "clamp" (to [-1, 1]) or None. Kernel sizes of the res blocks must be odd."""

    in_channels: int = 128
    upsample_initial_channel: int = 1024
    out_channels: int = 2
    upsample_rates: tuple = (6, 5, 2, 2, 2)
    upsample_kernel_sizes: tuple = (16, 15, 8, 4, 4)
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    resblock: str = "1"
    activation: str = "snake"
    final_activation: str | None = "tanh"
    use_bias_at_final: bool = True
    antialias_ratio: int = 2
    antialias_kernel_size: int = 12
    output_sampling_rate: int = 24000

    def __post_init__(self):
        if self.resblock not in ("1", "AMP1"):
            raise ValueError(f"resblock must be '1' or 'AMP1', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ValueError(f"activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if self.final_activation not in ("tanh", "clamp", None):
            raise ValueError(f"final_activation must be 'tanh', 'clamp' or None, got {self.final_activation!r}")
        if any(k % 2 == 0 for k in self.resblock_kernel_sizes):
            raise ValueError(f"res block kernel sizes must be odd, got {self.resblock_kernel_sizes}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        self.upsample_rates = tuple(self.upsample_rates)
        self.upsample_kernel_sizes = tuple(self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = tuple(self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(tuple(d) for d in self.resblock_dilation_sizes)

    @classmethod
    def from_config(
        cls, cfg: dict, final_activation: bool = True, output_sampling_rate: int | None = None
    ) -> VocoderArgs:
        """From an official flat vocoder config (``config["vocoder"]`` of LTX-2, or the
        ``"vocoder"`` / ``"bwe"`` entries of LTX-2.3; ``final_activation=False`` for the BWE
        generator, as ltx-core builds it) or a diffusers ``LTX2Vocoder`` config (told apart by its own
        ``hidden_channels`` key). ``output_sampling_rate`` overrides the config's (the BWE sections give
        the rates beside the generator's keys)."""
        if "hidden_channels" in cfg:  # diffusers
            act = cfg.get("act_fn", "leaky_relu")
            if act != "leaky_relu" and not cfg.get("antialias", False):
                raise ValueError("snake activations without anti-aliasing are not an LTX-2 vocoder")
            if cfg.get("leaky_relu_negative_slope", LRELU_SLOPE) != LRELU_SLOPE:
                raise ValueError("LTX-2 vocoders use LeakyReLU slope 0.1")
            return cls(
                in_channels=cfg.get("in_channels", 128),
                upsample_initial_channel=cfg["hidden_channels"],
                out_channels=cfg.get("out_channels", 2),
                upsample_rates=cfg.get("upsample_factors", (6, 5, 2, 2, 2)),
                upsample_kernel_sizes=cfg.get("upsample_kernel_sizes", (16, 15, 8, 4, 4)),
                resblock_kernel_sizes=cfg.get("resnet_kernel_sizes", (3, 7, 11)),
                resblock_dilation_sizes=cfg.get("resnet_dilations", ((1, 3, 5),) * 3),
                resblock="1" if act == "leaky_relu" else "AMP1",
                activation="snake" if act == "leaky_relu" else act,
                final_activation=cfg.get("final_act_fn", "tanh"),
                use_bias_at_final=cfg.get("final_bias", True),
                antialias_ratio=cfg.get("antialias_ratio", 2),
                antialias_kernel_size=cfg.get("antialias_kernel_size", 12),
                output_sampling_rate=cfg.get("output_sampling_rate", 24000),
            )
        if cfg.get("stereo", True) is not True:
            raise ValueError("only stereo LTX-2 vocoders exist (config 'stereo' must be true)")
        tanh = cfg.get("use_tanh_at_final", True)
        return cls(
            upsample_initial_channel=cfg.get("upsample_initial_channel", 1024),
            upsample_rates=cfg.get("upsample_rates", (6, 5, 2, 2, 2)),
            upsample_kernel_sizes=cfg.get("upsample_kernel_sizes", (16, 15, 8, 4, 4)),
            resblock_kernel_sizes=cfg.get("resblock_kernel_sizes", (3, 7, 11)),
            resblock_dilation_sizes=cfg.get("resblock_dilation_sizes", ((1, 3, 5),) * 3),
            resblock=cfg.get("resblock", "1"),
            activation=cfg.get("activation", "snake"),
            final_activation=("tanh" if tanh else "clamp") if final_activation else None,
            use_bias_at_final=cfg.get("use_bias_at_final", True),
            output_sampling_rate=output_sampling_rate or cfg.get("output_sampling_rate", 24000),
        )


@dataclass
class BWEVocoderArgs:
    """LTX-2.3 vocoder + bandwidth extension: ``vocoder`` runs at ``input_sampling_rate``, its causal
    log-mel (``n_fft``, ``hop_length``, ``win_length``, ``num_mels``) feeds ``bwe`` whose residual is
    added at ``output_sampling_rate`` (an integer multiple)."""

    vocoder: VocoderArgs
    bwe: VocoderArgs
    n_fft: int = 512
    hop_length: int = 80
    win_length: int = 512
    num_mels: int = 64
    input_sampling_rate: int = 16000
    output_sampling_rate: int = 48000

    def __post_init__(self):
        if self.output_sampling_rate % self.input_sampling_rate:
            raise ValueError("BWE output rate must be an integer multiple of the input rate")

    @classmethod
    def from_config(cls, config: dict) -> BWEVocoderArgs:
        """From the checkpoint config (whole dict or its ``"vocoder"`` entry, with nested ``"vocoder"``
        and ``"bwe"``) or a diffusers ``LTX2VocoderWithBWE`` config (``bwe_*`` keys)."""
        if "bwe_hidden_channels" in config:  # diffusers
            main = {k: v for k, v in config.items() if not k.startswith("bwe_")}
            bwe = {k[4:]: v for k, v in config.items() if k.startswith("bwe_")}
            i, o = config.get("input_sampling_rate", 16000), config.get("output_sampling_rate", 48000)
            main.setdefault("final_act_fn", None), main.setdefault("final_bias", False)
            bwe.setdefault("final_act_fn", None), bwe.setdefault("final_bias", False)
            return cls(
                VocoderArgs.from_config({**main, "output_sampling_rate": i}),
                VocoderArgs.from_config({**bwe, "output_sampling_rate": o}),
                n_fft=config.get("filter_length", 512),
                hop_length=config.get("hop_length", 80),
                win_length=config.get("window_length", 512),
                num_mels=config.get("num_mel_channels", 64),
                input_sampling_rate=i,
                output_sampling_rate=o,
            )
        cfg = _section(config)
        bwe = cfg["bwe"]
        i, o = bwe["input_sampling_rate"], bwe["output_sampling_rate"]
        return cls(
            VocoderArgs.from_config(cfg.get("vocoder", {}), output_sampling_rate=i),
            VocoderArgs.from_config(bwe, final_activation=False, output_sampling_rate=o),
            n_fft=bwe["n_fft"],
            hop_length=bwe["hop_length"],
            win_length=bwe["n_fft"],
            num_mels=bwe["num_mels"],
            input_sampling_rate=i,
            output_sampling_rate=o,
        )


# ---------------------------------------------------------------------------------------------
# anti-aliased resampling (BigVGAN v2); x is [B, L, C] throughout
# ---------------------------------------------------------------------------------------------


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass of ``kernel_size`` taps summing to 1 (float64 NumPy)."""
    half = kernel_size // 2
    amp = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if amp > 50:
        beta = 0.1102 * (amp - 8.7)
    elif amp >= 21:
        beta = 0.5842 * (amp - 21) ** 0.4 + 0.07886 * (amp - 21)
    else:
        beta = 0.0
    t = np.arange(-half, half) + 0.5 if kernel_size % 2 == 0 else np.arange(kernel_size) - half
    f = 2 * cutoff * np.kaiser(kernel_size, beta) * np.sinc(2 * cutoff * t)
    return f / f.sum()


def hann_sinc_filter(ratio: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """Hann-windowed sinc interpolation filter for ×``ratio`` upsampling (torchaudio's resample kernel)."""
    width = math.ceil(lowpass_filter_width / rolloff)
    t = (np.arange(2 * width * ratio + 1) / ratio - width) * rolloff
    window = np.cos(np.clip(t, -lowpass_filter_width, lowpass_filter_width) * math.pi / lowpass_filter_width / 2) ** 2
    return np.sinc(t) * window * rolloff / ratio


def _depthwise(f: mx.array, channels: int, dtype) -> mx.array:
    return mx.broadcast_to(f.astype(dtype)[None, :, None], (channels, f.shape[0], 1))


# ---------------------------------------------------------------------------------------------
# 1-D convolutions computed as 2-D ones over a unit height. MLX's CUDA backend gives convolutions to
# cuDNN, which takes 4-D and 5-D tensors only; a 1-D convolution (3-D tensors) goes to MLX's fallback, an
# unfold kernel plus a GEMM (PyTorch likewise views 1-D convolutions as 2-D before calling cuDNN). Same
# values; on the CPU and Metal the 2-D form costs the same.
# ---------------------------------------------------------------------------------------------


def conv1d(x: mx.array, w: mx.array, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1):
    """``mx.conv1d`` (x [B, L, C_in], w [C_out, k, C_in / groups], zero ``padding`` both sides) through
    ``mx.conv2d`` over a unit height. Returns [B, L', C_out]."""
    y = mx.conv2d(x[:, None], w[:, None], (1, stride), (0, padding), (1, dilation), groups)
    return y[:, 0]


def conv_transpose1d(x: mx.array, w: mx.array, stride: int = 1, padding: int = 0) -> mx.array:
    """``mx.conv_transpose1d`` (x [B, L, C_in], w [C_out, k, C_in]) through ``mx.conv_transpose2d`` over a
    unit height. Returns [B, (L - 1)·stride - 2·padding + k, C_out]."""
    return mx.conv_transpose2d(x[:, None], w[:, None], (1, stride), (0, padding))[:, 0]


def upsample_depthwise(x: mx.array, f: mx.array, ratio: int) -> mx.array:
    """Depthwise transposed convolution of x [B, L, C] with one filter f [k] for every channel, stride
    ``ratio``, no padding: [B, (L - 1)·ratio + k, C] (``conv_transpose1d(..., groups=C)``), as its polyphase
    form: one grouped 2-D convolution whose ``ratio`` outputs per channel (the filter's phases, reversed)
    are interleaved (2-D transposed convolutions take no groups in MLX)."""
    b, n, c = x.shape
    k = f.shape[0]
    taps = -(-k // ratio)
    phases = mx.pad(f, [(0, taps * ratio - k)]).reshape(taps, ratio)[::-1]  # [j, p] = f[ratio (taps-1-j) + p]
    w = mx.broadcast_to(phases.T.astype(x.dtype)[None, :, None, :, None], (c, ratio, 1, taps, 1))
    xp = mx.pad(x, [(0, 0), (taps - 1, taps - 1), (0, 0)])[:, None]
    y = mx.conv2d(xp, w.reshape(c * ratio, 1, taps, 1), groups=c)[:, 0]  # [B, n + taps - 1, C·ratio]
    y = y.reshape(b, n + taps - 1, c, ratio).transpose(0, 1, 3, 2).reshape(b, (n + taps - 1) * ratio, c)
    return y[:, : (n - 1) * ratio + k]


class Conv1d(nn.Module):
    """``nn.Conv1d``'s parameters (weight [C_out, k, C_in], bias [C_out]) and call, computed by :func:`conv1d`."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.weight = mx.zeros((cout, kernel, cin))
        if bias:
            self.bias = mx.zeros((cout,))
        self.padding, self.dilation = padding, dilation

    def __call__(self, x):
        y = conv1d(x, self.weight, padding=self.padding, dilation=self.dilation)
        return y + self.bias if "bias" in self else y


class ConvTranspose1d(nn.Module):
    """``nn.ConvTranspose1d``'s parameters (weight [C_out, k, C_in], bias [C_out]) and call, by
    :func:`conv_transpose1d`."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int = 0):
        super().__init__()
        self.weight = mx.zeros((cout, kernel, cin))
        self.bias = mx.zeros((cout,))
        self.stride, self.padding = stride, padding

    def __call__(self, x):
        return conv_transpose1d(x, self.weight, self.stride, self.padding) + self.bias


class UpSample1d(nn.Module):
    """×ratio upsampling: replicate-pad, depthwise transposed conv with a sinc filter, crop.

    window "kaiser": the BigVGAN filter, a parameter ``filter`` [k] loaded from the checkpoint.
    window "hann": the BWE skip resampler; its filter is not stored in checkpoints and is built here.
    """

    def __init__(self, ratio: int, kernel_size: int = 12, window: str = "kaiser"):
        super().__init__()
        self.ratio = ratio
        if window == "hann":
            self._filter = mx.array(hann_sinc_filter(ratio).astype(np.float32))
            k = self._filter.shape[0]
            self.pad = (k - 1) // (2 * ratio)
            self.crop = (k - 1, k - ratio)
        else:
            k = kernel_size
            self.filter = mx.array(kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, k).astype(np.float32))
            self.pad = k // ratio - 1
            self.crop = (self.pad * ratio + (k - ratio) // 2, self.pad * ratio + (k - ratio + 1) // 2)

    def __call__(self, x):
        f = self.filter if "filter" in self else self._filter
        x = mx.pad(x, [(0, 0), (self.pad, self.pad), (0, 0)], mode="edge")
        y = upsample_depthwise(x, self.ratio * f, self.ratio)
        return y[:, self.crop[0] : y.shape[1] - self.crop[1]]


class DownSample1d(nn.Module):
    """Anti-aliased ÷ratio: replicate-pad, depthwise Kaiser-sinc low-pass with stride ``ratio``."""

    def __init__(self, ratio: int, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.filter = mx.array(kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size).astype(np.float32))
        self.pads = (kernel_size // 2 - (kernel_size % 2 == 0), kernel_size // 2)

    def __call__(self, x):
        x = mx.pad(x, [(0, 0), self.pads, (0, 0)], mode="edge")
        return conv1d(x, _depthwise(self.filter, x.shape[-1], x.dtype), stride=self.ratio, groups=x.shape[-1])


class Snake(nn.Module):
    """Snake (``beta=False``) or SnakeBeta: x + sin²(αx) / (β + 1e-9), α = exp(alpha), β = exp(beta)."""

    def __init__(self, channels: int, beta: bool):
        super().__init__()
        self.alpha = mx.zeros((channels,))
        if beta:
            self.beta = mx.zeros((channels,))

    def __call__(self, x):
        a = mx.exp(self.alpha)
        b = mx.exp(self.beta) if "beta" in self else a
        return x + mx.sin(x * a) ** 2 / (b + 1e-9)


class Activation1d(nn.Module):
    """upsample ×2 -> snake -> anti-aliased downsample ÷2 (BigVGAN's alias-free activation)."""

    def __init__(self, act: nn.Module, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.upsample = UpSample1d(ratio, kernel_size)
        self.act = act
        self.downsample = DownSample1d(ratio, kernel_size)

    def __call__(self, x):
        return self.downsample(self.act(self.upsample(x)))


class ResBlock(nn.Module):
    """Three (dilated conv, conv) residual pairs. HiFi-GAN ResBlock1 (LeakyReLU 0.1 before each conv)
    or BigVGAN AMPBlock1 (an alias-free snake before each conv)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple, args: VocoderArgs):
        super().__init__()
        self.convs1 = [Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations]
        self.convs2 = [Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations]
        if args.resblock == "AMP1":
            beta = args.activation == "snakebeta"
            r, k = args.antialias_ratio, args.antialias_kernel_size
            self.acts1 = [Activation1d(Snake(channels, beta), r, k) for _ in dilations]
            self.acts2 = [Activation1d(Snake(channels, beta), r, k) for _ in dilations]

    def _act(self, which: str, i: int, x):
        return getattr(self, which)[i](x) if "acts1" in self else nn.leaky_relu(x, LRELU_SLOPE)

    def __call__(self, x):
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self._act("acts2", i, c1(self._act("acts1", i, x))))
        return x


class Vocoder(nn.Module):
    """Mel spectrogram -> waveform generator (ltx-core ``Vocoder``; HiFi-GAN or BigVGAN-v2).

    ``__call__(mel)``: ``[B, T, F, C]`` with C·F = ``in_channels`` (stereo: the audio decoder's
    ``[B, T, 64, 2]``; features are concatenated channel-major as the reference does). Returns
    ``[B, T · prod(upsample_rates), out_channels]`` in the weights' dtype (float32 in parity runs; the
    mel is cast to it).
    ``sample_rate``: the output rate in Hz. Raises ValueError on a mel whose C·F differs from
    ``in_channels``.
    """

    def __init__(self, args: VocoderArgs):
        super().__init__()
        self.args = args
        self.sample_rate = args.output_sampling_rate
        c0, amp = args.upsample_initial_channel, args.resblock == "AMP1"
        self.conv_pre = Conv1d(args.in_channels, c0, 7, padding=3)
        self.ups = [
            ConvTranspose1d(c0 >> i, c0 >> (i + 1), k, stride=s, padding=(k - s) // 2)
            for i, (s, k) in enumerate(zip(args.upsample_rates, args.upsample_kernel_sizes))
        ]
        self.resblocks = [
            ResBlock(c0 >> (i + 1), k, d, args)
            for i in range(len(self.ups))
            for k, d in zip(args.resblock_kernel_sizes, args.resblock_dilation_sizes)
        ]
        final = c0 >> len(self.ups)
        if amp:
            self.act_post = Activation1d(Snake(final, beta=True), args.antialias_ratio, args.antialias_kernel_size)
        self.conv_post = Conv1d(final, args.out_channels, 7, padding=3, bias=args.use_bias_at_final)

    def __call__(self, mel: mx.array) -> mx.array:
        b, t, f, c = mel.shape
        if c * f != self.args.in_channels:
            raise ValueError(f"mel {mel.shape}: channels x mel bins must be {self.args.in_channels}")
        mel = mel.astype(self.conv_pre.weight.dtype)  # computed in the weights' dtype
        x = self.conv_pre(mel.transpose(0, 1, 3, 2).reshape(b, t, c * f))
        n = len(self.args.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            if "act_post" not in self:  # HiFi-GAN: LeakyReLU before each upsampling
                x = nn.leaky_relu(x, LRELU_SLOPE)
            x = up(x)
            x = sum(rb(x) for rb in self.resblocks[i * n : (i + 1) * n]) / n
        # BigVGAN: alias-free SnakeBeta; HiFi-GAN: LeakyReLU with torch's default slope 0.01
        x = self.act_post(x) if "act_post" in self else nn.leaky_relu(x, 0.01)
        x = self.conv_post(x)
        if self.args.final_activation == "tanh":
            return mx.tanh(x)
        if self.args.final_activation == "clamp":
            return mx.clip(x, -1, 1)
        return x


class MelSTFT(nn.Module):
    """Causal log-mel used by the BWE stage: left-pad ``win - hop`` zeros, strided conv with the
    checkpoint's windowed DFT basis ``forward_basis`` [2·(n_fft/2+1), n_fft] (real rows then imaginary
    rows), magnitude, ``mel_basis`` [n_mels, n_fft/2+1], ``log(max(·, 1e-5))``."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, n_mels: int):
        super().__init__()
        self.hop, self.left_pad = hop_length, max(0, win_length - hop_length)
        nf = n_fft // 2 + 1
        self.forward_basis = mx.zeros((2 * nf, n_fft))
        self.mel_basis = mx.zeros((n_mels, nf))

    def __call__(self, x: mx.array) -> mx.array:
        """x [N, L] -> log-mel [N, L // hop, n_mels] (L a multiple of hop)."""
        x = mx.pad(x, [(0, 0), (self.left_pad, 0)])[..., None]
        spec = conv1d(x, self.forward_basis.astype(x.dtype)[..., None], stride=self.hop)
        nf = spec.shape[-1] // 2
        mag = mx.sqrt(spec[..., :nf] ** 2 + spec[..., nf:] ** 2)
        return mx.log(mx.maximum(mag @ self.mel_basis.astype(mag.dtype).T, 1e-5))


class VocoderWithBWE(nn.Module):
    """LTX-2.3 vocoder: BigVGAN at 16 kHz + bandwidth extension to 48 kHz (ltx-core ``VocoderWithBWE``).

    ``__call__(mel [B, T, F, 2]) -> waveform [B, samples, 2]`` clamped to [-1, 1], samples =
    (T · prod(vocoder rates)) · output_rate / input_rate. ``sample_rate``: the output rate in Hz.
    """

    def __init__(self, args: BWEVocoderArgs):
        super().__init__()
        self.args = args
        self.sample_rate = args.output_sampling_rate
        self.vocoder = Vocoder(args.vocoder)
        self.bwe_generator = Vocoder(args.bwe)
        self.mel_stft = MelSTFT(args.n_fft, args.hop_length, args.win_length, args.num_mels)
        self.resampler = UpSample1d(args.output_sampling_rate // args.input_sampling_rate, window="hann")

    def __call__(self, mel: mx.array) -> mx.array:
        a = self.args
        x = self.vocoder(mel)  # [B, L, C] at the input rate
        b, n, c = x.shape
        out_len = n * a.output_sampling_rate // a.input_sampling_rate
        x = mx.pad(x, [(0, 0), (0, -n % a.hop_length), (0, 0)])
        m = self.mel_stft(x.transpose(0, 2, 1).reshape(b * c, -1))  # [B*C, frames, mels]
        m = m.reshape(b, c, m.shape[1], m.shape[2]).transpose(0, 2, 3, 1)  # [B, frames, mels, C]
        y = self.bwe_generator(m) + self.resampler(x)
        return mx.clip(y, -1, 1)[:, :out_len]


def vocoder_args(config: dict) -> VocoderArgs | BWEVocoderArgs:
    """The vocoder's args from the checkpoint config (whole dict or ``config["vocoder"]``) or a diffusers
    ``LTX2Vocoder`` / ``LTX2VocoderWithBWE`` config: :class:`BWEVocoderArgs` when the config has a ``bwe``
    section (or ``bwe_*`` keys), :class:`VocoderArgs` otherwise. Raises KeyError naming a missing BWE key."""
    cfg = _section(config)
    if "bwe" in cfg or "bwe_hidden_channels" in cfg:
        return BWEVocoderArgs.from_config(cfg)
    return VocoderArgs.from_config(cfg)


def vocoder_from_config(config: dict) -> Vocoder | VocoderWithBWE:
    """The right (untrained) vocoder for ``config`` (see :func:`vocoder_args`); its weights still need loading."""
    args = vocoder_args(config)
    return VocoderWithBWE(args) if isinstance(args, BWEVocoderArgs) else Vocoder(args)


# ---------------------------------------------------------------------------------------------
# checkpoint keys
# ---------------------------------------------------------------------------------------------

_DIFFUSERS_NAMES = [
    (r"(^|\.)conv_in\.", r"\1conv_pre."),
    (r"(^|\.)conv_out\.", r"\1conv_post."),
    (r"(^|\.)upsamplers\.", r"\1ups."),
    (r"(^|\.)resnets\.", r"\1resblocks."),
    (r"(^|\.)act_out\.", r"\1act_post."),
]


def sanitize(weights: dict[str, mx.array], layout: str = "lightricks") -> dict[str, mx.array]:
    """Map vocoder checkpoint keys to :class:`Vocoder` / :class:`VocoderWithBWE` parameter names.

    layout "lightricks": single-file checkpoint keys under ``vocoder.`` (LTX-2: ``vocoder.conv_pre.*``;
    LTX-2.3: ``vocoder.vocoder.*``, ``vocoder.bwe_generator.*``, ``vocoder.mel_stft.*``); keys of other
    components are not selected. layout "diffusers": ``LTX2Vocoder`` / ``LTX2VocoderWithBWE`` state
    dicts (``conv_in``/``upsamplers``/``resnets``/``act_out``/``conv_out``).
    Conv1d [O, I, k] -> [O, k, I]; ConvTranspose1d [I, O, k] -> [O, k, I]; sinc filters [1, 1, k] -> [k];
    STFT basis [2F, 1, n] -> [2F, n]. Dropped: ``mel_stft.stft_fn.inverse_basis`` (the ISTFT basis; the
    reference never uses it). Raises ValueError on an unknown layout.
    """
    if layout not in ("lightricks", "diffusers"):
        raise ValueError(f"layout must be 'lightricks' or 'diffusers', got {layout!r}")
    out = {}
    for k, v in weights.items():
        if layout == "lightricks":
            if not k.startswith("vocoder."):
                continue
            k = k[len("vocoder.") :]
        else:
            for pat, rep in _DIFFUSERS_NAMES:
                k = re.sub(pat, rep, k)
        if k.endswith("stft_fn.inverse_basis"):
            continue
        k = k.replace("downsample.lowpass.filter", "downsample.filter")
        k = k.replace("stft_fn.forward_basis", "forward_basis")
        if k.endswith(".filter") and v.ndim == 3:
            v = v.reshape(-1)
        elif k.endswith("forward_basis") and v.ndim == 3:
            v = v.reshape(v.shape[0], -1)
        elif v.ndim == 3:
            v = v.transpose(1, 2, 0) if re.search(r"(^|\.)ups\.\d+\.weight$", k) else v.transpose(0, 2, 1)
        out[k] = v
    return out
