"""Access to the official PyTorch code used as numerical oracles (see docs/ORACLES.md).

`wan()` imports the official Wan2.2 package (`wan22`, module `wan`) with the three shims it needs
on a CPU-only machine. Helpers here build seeded random weights and compare arrays.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np

_WAN = None


def wan():
    """Return the official `wan` package namespace with model, vae2_1, vae2_2, t5, fm_solvers ready."""
    global _WAN
    if _WAN is not None:
        return _WAN
    import torch

    spec = importlib.util.find_spec("wan")
    if spec is None:
        raise ImportError("the official Wan2.2 code (pip install --no-deps wan22==2.2.11) is not installed")
    if "wan" not in sys.modules or not hasattr(sys.modules["wan"], "_oracle_shim"):
        pkg = types.ModuleType("wan")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg._oracle_shim = True
        sys.modules["wan"] = pkg
    real_current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: "cpu"  # t5.py calls it in a default argument at import time
    try:
        model = importlib.import_module("wan.modules.model")
        for name in ("vae2_1", "vae2_2", "t5", "tokenizers"):
            importlib.import_module(f"wan.modules.{name}")
    finally:
        torch.cuda.current_device = real_current_device  # torch.cuda.synchronize needs the real one

    flash_attention = sdpa_flash_attention()
    model.flash_attention = flash_attention
    ns = types.SimpleNamespace(model=model)
    for name in ("vae2_1", "vae2_2", "t5", "tokenizers"):
        setattr(ns, name, importlib.import_module(f"wan.modules.{name}"))
    ns.fm_solvers = importlib.import_module("wan.utils.fm_solvers")
    ns.fm_solvers_unipc = importlib.import_module("wan.utils.fm_solvers_unipc")
    ns.t5.flash_attention = getattr(ns.t5, "flash_attention", flash_attention)
    _WAN = ns
    return ns


def _float32(u, dtype):
    return u.float()


def sdpa_flash_attention(cast=_float32, mask_full: bool = True):
    """A stand-in for the official ``flash_attention`` (same signature; flash-attn is CUDA-only) computed by
    torch SDPA on [B, H, L, D] from q/k/v [B, L, H, D]: keys at or past ``k_lens`` masked, output in q's dtype.
    ``cast(u, dtype)`` gives each of q/k/v as attended (default float32, as the parity tests compare);
    ``mask_full=False`` passes no mask when no key is past its length (SDPA may then pick a fused kernel)."""
    import torch

    def flash_attention(
        q,
        k,
        v,
        q_lens=None,
        k_lens=None,
        dropout_p=0.0,
        softmax_scale=None,
        q_scale=None,
        causal=False,
        window_size=(-1, -1),
        deterministic=False,
        dtype=torch.bfloat16,
        version=None,
    ):
        out_dtype = q.dtype
        q, k, v = (cast(u, dtype).transpose(1, 2) for u in (q, k, v))
        mask = None
        if k_lens is not None and (mask_full or bool((k_lens < k.shape[2]).any())):
            lens = k_lens.to(k.device)
            mask = (torch.arange(k.shape[2], device=k.device)[None, :] < lens[:, None])[:, None, None, :]
        o = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=softmax_scale, is_causal=causal
        )
        return o.transpose(1, 2).to(out_dtype)

    return flash_attention


def wan_utils():
    """`wan.utils.utils` (best_output_size, masks_like) with its video-saving imports stubbed:
    imageio is not installed and torchvision does not import beside the CPU torch."""
    wan()
    for name in ("imageio", "torchvision"):
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
    return importlib.import_module("wan.utils.utils")


def wan_scheduler(name: str, num_steps: int, shift: float, order: int = 2):
    """The official scheduler (``unipc``, ``dpm++`` or ``euler``) built and set to ``num_steps`` steps at
    ``shift`` as wan/textimage2video.py builds it; euler is the stateless first-order DPM++ on the same grid,
    as WanFM writes it."""
    w = wan()
    if name == "unipc":
        sch = w.fm_solvers_unipc.FlowUniPCMultistepScheduler(
            num_train_timesteps=1000, shift=1, use_dynamic_shifting=False
        )
        sch.set_timesteps(num_steps, device="cpu", shift=shift)
        return sch
    sch = w.fm_solvers.FlowDPMSolverMultistepScheduler(
        num_train_timesteps=1000, shift=1, use_dynamic_shifting=False, solver_order=order if name == "dpm++" else 1
    )
    w.fm_solvers.retrieve_timesteps(sch, device="cpu", sigmas=w.fm_solvers.get_sampling_sigmas(num_steps, shift))
    return sch


def randomize_(
    module,
    seed: int = 0,
    std: float = 0.1,
    table_std: float = 0.5,
    norm_std: float = 0.1,
    fan_in: bool = False,
    buffers: bool = True,
):
    """Fill every parameter and float buffer of a torch module from a seeded generator.

    Weights ~ N(0, std) (or N(0, 1/fan_in) with ``fan_in``), norm weights 1 + N(0, norm_std),
    modulation / scale-shift tables ~ N(0, table_std). Sensitive comparisons need weights this large
    (docs/ORACLES.md, "Make the comparison sensitive"). ``buffers=False`` keeps the buffers (constants such
    as RoPE tables, embedding scales, blur kernels); the parameters get the same draws either way (the
    buffers are drawn after them).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(module.named_parameters()) + (list(module.named_buffers()) if buffers else []):
            if not p.dtype.is_floating_point:
                continue
            low = name.lower()
            if "norm" in low or "gamma" in low:
                p.copy_(1 + norm_std * torch.randn(p.shape, generator=g))
            elif "modulation" in low or "scale_shift" in low:
                p.copy_(table_std * torch.randn(p.shape, generator=g))
            elif fan_in and p.dim() > 1:
                fi = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fi))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return module


def rel_err(a, b) -> float:
    """||a - b|| / ||b|| over float64 copies (a, b: numpy, mlx or torch arrays)."""
    a, b = to_np(a).astype(np.float64), to_np(b).astype(np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def to_np(x) -> np.ndarray:
    """numpy float copy of a numpy, torch or mlx array."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    import mlx.core as mx

    if isinstance(x, mx.array):
        return np.array(x.astype(mx.float32))
    return np.asarray(x)


def ltx_core_transformer(a, video_only: bool = False):
    """ltx-core's ``LTXModel`` built directly (its configurator puts caption projections on the meta device)
    at the widths of our ``LTXModelArgs`` ``a``, with the shipped settings (split RoPE, float64 frequency
    grid); audio+video, or video only. Default init: fill it with :func:`randomize_`."""
    from ltx_core.model.transformer import LTXModel
    from ltx_core.model.transformer.model import LTXModelType
    from ltx_core.model.transformer.rope import LTXRopeType
    from ltx_core.model.transformer.text_projection import PixArtAlphaTextProjection

    proj = a.caption_projection
    return LTXModel(
        model_type=LTXModelType.VideoOnly if video_only else LTXModelType.AudioVideo,
        num_attention_heads=a.num_attention_heads,
        attention_head_dim=a.attention_head_dim,
        in_channels=a.in_channels,
        out_channels=a.out_channels,
        num_layers=a.num_layers,
        cross_attention_dim=a.cross_attention_dim,
        audio_num_attention_heads=a.audio_num_attention_heads,
        audio_attention_head_dim=a.audio_attention_head_dim,
        audio_in_channels=a.audio_in_channels,
        audio_out_channels=a.audio_out_channels,
        audio_cross_attention_dim=a.audio_cross_attention_dim,
        av_ca_timestep_scale_multiplier=a.av_ca_timestep_scale_multiplier,
        rope_type=LTXRopeType.SPLIT,
        double_precision_rope=True,
        apply_gated_attention=a.apply_gated_attention,
        cross_attention_adaln=a.cross_attention_adaln,
        caption_projection=PixArtAlphaTextProjection(a.caption_channels, a.inner_dim) if proj else None,
        audio_caption_projection=(
            PixArtAlphaTextProjection(a.caption_channels, a.audio_inner_dim) if proj and not video_only else None
        ),
    )


def ltx_core_positions(video_shape, audio_shape, fps: float):
    """ltx-core's latent-tool positions (numpy float32) of a ``VideoLatentShape`` at ``fps`` and an
    ``AudioLatentShape``: (video [B, 3, N, 2], audio [B, 1, N, 2])."""
    import torch
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools

    state = lambda tools: tools.create_initial_state("cpu", torch.float32).positions.numpy()  # noqa: E731
    return (
        state(VideoLatentTools(VideoLatentPatchifier(1), video_shape, fps)),
        state(AudioLatentTools(AudioPatchifier(1), audio_shape)),
    )
