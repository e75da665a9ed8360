"""Wan pipelines: Wan2.2 TI2V-5B (t2v, ti2v, mi2v anchors), Wan2.1 T2V/I2V/FLF2V (CLIP), Wan2.2 A14B
two-expert T2V/I2V/FLF2V (with WanFM bidirectional sampling) and musubi-tuner one-frame inference.

A run is ``WanSettings`` (the task's official defaults, ``validate()`` before any model loads) -> ``plan``
(sizes, latent shape, schedule) -> ``encode_text`` / ``encode_images`` (prepare) -> ``denoise`` -> ``decode``,
composed by ``WanPipeline.generate`` into a :class:`mlx_video.result.GenerationResult`. ``WanPipeline`` owns
the converted model folder, loads each component when a stage needs it and frees it after (``offload``; for
A14B only the active expert is resident). Nothing here prints or writes files. The settings and the plan live in
:mod:`mlx_video.wan.settings`, the sampling loop in :mod:`mlx_video.wan.denoise` (both re-exported here).

References: Wan2.2 ``textimage2video.py`` (TI2V; mi2v generalises its frame-0 latent replacement,
docs/wan.md 9), Wan2.2 ``image2video.py`` (I2V-A14B, docs/wan.md 8.1), Wan2.1 ``image2video.py`` /
``first_last_frame2video.py`` (CLIP, docs/wan.md 8.1, 8.2), WanFM ``first_last_frame2video.py``
(``generate_bidirectional``, docs/wan.md 10) and musubi-tuner ``wan_generate_video.py`` (one frame, docs/wan.md 11).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .. import checks
from ..conditioning import LatentAnchor, anchor_arrays, blend_clean
from ..distributed import SequenceParallel, on_root
from ..io.images import bicubic_resize, load_image, to_array, to_uint8
from ..io.weights import WeightsError, load_safetensors, load_strict, quantize_linears, read_folder_config
from ..result import GenerationResult, Meter, check_finite
from .conditions import (
    AnchorImage,
    OneFrameSpec,
    check_frame_num,
    encode_anchor_at,
    encode_anchor_images,
    encode_clip,
    encode_frames,
    first_last_pixels,
    i2v_size,
    one_frame_condition,
    output_size,
    prepare_images,
    read_last_frame,
    read_video,
)
from .config import WanTask, parse_size
from .denoise import (
    BackwardPass,
    Progress,
    StepDistillSolver,
    denoise,
    expert_segments,
    make_wan_solver,
    sdedit,
    sdedit_start,
    step_distill_grid,
    velocity,
)
from .extend import join_windows, window_context
from .settings import MAX_STEPS, MAX_TOKENS, RECIPES, SOLVERS, Recipe, WanPlan, WanSettings, check_grid

# The public names, importable from here: the settings (mlx_video.wan.settings) and the sampling loop
# (mlx_video.wan.denoise) are re-exported for the code (tests, benchmarks, users') that imports them from here.
__all__ = [
    "FORMAT",
    "MAX_STEPS",
    "MAX_TOKENS",
    "RECIPES",
    "SOLVERS",
    "AnchorImage",
    "BackwardPass",
    "Conditions",
    "OneFrameSpec",
    "Progress",
    "Recipe",
    "StepDistillSolver",
    "WanPipeline",
    "WanPlan",
    "WanSettings",
    "check_grid",
    "denoise",
    "encode_anchor_images",
    "encode_clip",
    "encode_frames",
    "expert_segments",
    "first_last_pixels",
    "i2v_size",
    "load_clip",
    "load_dit",
    "load_text_encoder",
    "load_vae",
    "make_wan_solver",
    "prepare_images",
    "read_config",
    "sdedit",
    "sdedit_start",
    "step_distill_grid",
    "velocity",
]

FORMAT = "mlx_video/wan/1"


# ----------------------------------------------------------------------------- loading


def read_config(model_dir: Path) -> dict:
    """The converted folder's config.json; raises WeightsError when it is not a Wan folder of ours."""
    return read_folder_config(model_dir, FORMAT, "run `mlx_video convert` first or pass the original checkpoint folder")


def load_dit(model_dir: Path, cfg: dict, name: str = "dit"):
    """DiT ``name`` ("dit", or the A14B experts "dit_high" / "dit_low", which share ``cfg["dit"]``)."""
    from .transformer import WanModel, WanModelArgs

    model = WanModel(WanModelArgs(**cfg.get(name, cfg["dit"])))
    quantize_linears(model, (cfg.get("quantization") or {}).get(name))
    return load_strict(model, load_safetensors(Path(model_dir) / f"{name}.safetensors"), what=f"Wan DiT ({name})")


def load_vae(model_dir: Path, cfg: dict):
    """The converted folder's Wan2.1 or Wan2.2 VAE (float32, strict loading; WeightsError on bad weights)."""
    if cfg["vae"]["version"] == "2.2":
        from .vae22 import Wan22VAE as VAE
        from .vae22 import Wan22VAEArgs as VAEArgs
    else:
        from .vae21 import Wan21VAE as VAE
        from .vae21 import Wan21VAEArgs as VAEArgs
    model = VAE(VAEArgs(**cfg["vae"]["args"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "vae.safetensors"), what="Wan VAE")


def load_text_encoder(model_dir: Path, cfg: dict):
    """UMT5 (quantized if converted so, strict loading) with the folder's tokenizer, as a WanTextEncoder."""
    from .t5 import UMT5Args, UMT5Encoder, WanTextEncoder

    model = UMT5Encoder(UMT5Args(**cfg["t5"]))
    quantize_linears(model, (cfg.get("quantization") or {}).get("t5"))
    load_strict(model, load_safetensors(Path(model_dir) / "t5.safetensors"), what="UMT5 encoder")
    return WanTextEncoder.from_dir(Path(model_dir) / "tokenizer", model, text_len=cfg.get("text_len", 512))


def load_clip(model_dir: Path, cfg: dict):
    """The Wan2.1 CLIP visual tower of a converted I2V/FLF2V folder; WeightsError when it has none."""
    from .clip import CLIPVisionArgs, CLIPVisionEncoder

    if "clip" not in cfg:
        raise WeightsError(f"{model_dir} has no CLIP image encoder (only Wan2.1 I2V/FLF2V checkpoints have one)")
    model = CLIPVisionEncoder(CLIPVisionArgs(**cfg["clip"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "clip.safetensors"), what="CLIP visual tower")


# ----------------------------------------------------------------------------- pipeline


def _read_loras(specs: Sequence) -> list[tuple[dict, float]]:
    """LoRA files for ``merge_loras``: each spec ``"PATH[:STRENGTH]"`` or ``(path, strength)``; read now
    so that a missing or unreadable file fails before any model runs (WeightsError / ValueError)."""
    from ..nn.lora import load_lora, parse_lora_spec

    out = []
    for spec in specs:
        path, strength = parse_lora_spec(spec) if isinstance(spec, (str, Path)) else spec
        strength = checks.finite(f"LoRA strength of {path}", strength)
        out.append((load_lora(path), strength))
    return out


@dataclass
class Conditions:
    """What the prepare stage hands to the denoiser: text ``context`` [cond [n, 4096], uncond [m, 4096]];
    TI2V anchors ``mask``/``clean`` (``anchor_arrays``) or None; I2V/FLF2V/one-frame channels ``cond``
    (a ChannelCondition) or None; Wan2.1 CLIP tokens ``clip_fea`` [1, 257·k, 1280] or None; the input video's
    VAE latent ``video_latent`` [1, T, h, w, C] float32 (video to video) or None."""

    context: list
    mask: mx.array | None = None
    clean: mx.array | None = None
    cond: object = None
    clip_fea: mx.array | None = None
    video_latent: mx.array | None = None


class WanPipeline:
    """A converted Wan folder, ready to generate.

    ``dtype``: compute dtype of the DiT(s), text encoder and CLIP weights (bf16 default; float32 for
    parity). ``offload``: free the text encoder and CLIP before the DiT runs, keep only the active
    A14B expert resident, and free the DiT before the VAE decodes. ``loras``: LoRA files
    ("PATH[:STRENGTH]" or (path, strength)) merged into every DiT when it loads (kohya/musubi, PEFT,
    original-key formats, see :mod:`mlx_video.nn.lora`); ``loras_high`` / ``loras_low``: into one A14B
    expert only. ``vae_dtype``: the VAE's compute dtype, float32 (default, like the reference modules)
    or bf16 (half the activation memory, as the official pipelines' bf16 autocast; decode within ~1.4%
    of float32 on the tiny model). ``group``: an ``mx.distributed`` group (``mlx.launch``); with more
    than one rank the DiT forwards are split over the ranks by token (sequence parallelism, exact) and
    the text encoder runs on rank 0 only (docs/distributed.md). ``vae_tiling``: a
    :class:`mlx_video.nn.tiling.Tiling` for the VAE (overlapping spatial tiles, blended; with a group the
    decode's tiles are split over the ranks), kept by ``fit_memory`` as a user-fixed setting; the same
    attribute as ``tiling``. Raises WeightsError / ValueError for a bad folder or LoRA
    file.
    """

    def __init__(
        self,
        model_dir: str | Path,
        dtype: mx.Dtype = mx.bfloat16,
        offload: bool = True,
        loras: Sequence = (),
        loras_high: Sequence = (),
        loras_low: Sequence = (),
        vae_dtype: mx.Dtype = mx.float32,
        group=None,
        vae_tiling=None,
        stream_blocks: int | None = None,
        dequantize_blocks: bool | None = None,
    ):
        self.model_dir = Path(model_dir)
        # just-in-time DiT block weights (mlx_video/nn/blockwise.py, docs/streaming.md): blocks streamed from
        # the DiT file with this many resident (None: all resident); quantized linears dequantized per block
        # (None: when it pays, blockwise.dequantize_pays)
        self.stream_blocks, self.dequantize_blocks = stream_blocks, dequantize_blocks
        self._stream_asked = stream_blocks
        # sequence parallelism (mlx_video/distributed.py): an mx.distributed group of more than one rank
        self.sp = SequenceParallel(group) if group is not None and group.size() > 1 else None
        self.cfg = read_config(self.model_dir)
        self.dtype, self.offload, self.vae_dtype = dtype, offload, vae_dtype
        self._dits: dict[str, nn.Module] = {}
        self._vae = self._text = self._clip = None
        self.tiling = self._given_tiling = vae_tiling  # the VAE's tiles (fit_memory keeps a given one)
        # A14B without offload: free one expert when the other loads (set by fit_memory when both do not fit)
        self.swap_experts = False
        # set by fit_memory (mlx_video.memory): weights quantized at load, the plan for the metadata
        self.quantize_bits, self.memory_plan = None, None
        if (loras_high or loras_low) and not self.cfg.get("experts"):
            raise ValueError("per-expert LoRAs (high / low) need a two-expert A14B checkpoint; use loras")
        self._loras = {
            "dit": _read_loras(loras),
            "dit_high": _read_loras(loras_high),
            "dit_low": _read_loras(loras_low),
        }

    def _cast(self, m: nn.Module) -> nn.Module:
        m.set_dtype(self.dtype, predicate=lambda d: mx.issubdtype(d, mx.floating))
        return m

    # components, loaded on first use
    def model(self, name: str = "dit"):
        """DiT ``name`` ("dit", "dit_high", "dit_low"); with ``offload`` or ``swap_experts``, other DiTs are freed
        first (one A14B expert resident)."""
        if name not in self._dits:
            if (self.offload or self.swap_experts) and self._dits:
                self.free("dit")
            m = self._cast(load_dit(self.model_dir, self.cfg, name))
            loras = self._loras["dit"] + (self._loras[name] if name != "dit" else [])
            if loras:
                from ..nn.lora import merge_loras
                from .transformer import lora_key_map

                merge_loras(m, loras, lora_key_map())
            self._dits[name] = self._block_weights(self._quantize(m, name), name)
        return self._dits[name]

    def _block_weights(self, m: nn.Module, name: str) -> nn.Module:
        """``m`` with just-in-time block weights attached when streaming, or when its blocks are quantized
        and per-block dequantization is not switched off."""
        from ..nn.blockwise import BlockWeights, SafetensorsBlocks

        quantized = (
            any(isinstance(x, nn.QuantizedLinear) for _, x in m.blocks[0].named_modules()) if m.blocks else False
        )
        if self.stream_blocks:
            if any(self._loras.values()):
                raise ValueError("streamed DiT blocks cannot carry merged LoRAs (each block is read again per step)")
            src = SafetensorsBlocks(self.model_dir / f"{name}.safetensors", "blocks.{}.", self.dtype)
            m.block_weights = BlockWeights(m.blocks, src, self.stream_blocks, self.dequantize_blocks)
        elif quantized and self.dequantize_blocks is not False:
            m.block_weights = BlockWeights(m.blocks, dequantize=self.dequantize_blocks)
        return m

    @property
    def dit(self):
        return self.model("dit")

    @property
    def _dit(self):
        return self._dits.get("dit") or next(iter(self._dits.values()), None)

    @property
    def tiling(self):
        """The VAE's :class:`mlx_video.nn.tiling.Tiling` for encode and decode (with a group the decode's tiles
        are split over the ranks), or None (untiled): the constructor's ``vae_tiling`` or ``fit_memory``'s
        choice. Setting it updates a loaded VAE's ``default_tiling``."""
        return self._tiling

    @tiling.setter
    def tiling(self, value) -> None:
        self._tiling = value
        if getattr(self, "_vae", None) is not None:
            self._vae.default_tiling = value

    vae_tiling = tiling  # the constructor argument's name, the same attribute

    @property
    def vae(self):
        if self._vae is None:
            self._vae = load_vae(self.model_dir, self.cfg)
            self._vae.set_dtype(self.vae_dtype)
            # read and cast now (a few per cent of the DiT's size): weights left as lazy casts of the file's float32
            # arrays made every encode after the first peak higher (one-frame anchors, CPU: +17%; issue 11's mi2v)
            mx.eval(self._vae.parameters())
            self._vae.default_tiling = self.tiling
        return self._vae

    @property
    def text_encoder(self):
        if self._text is None:
            self._text = load_text_encoder(self.model_dir, self.cfg)
            self._quantize(self._cast(self._text.model), "t5")
        return self._text

    @property
    def clip(self):
        if self._clip is None:
            self._clip = self._cast(load_clip(self.model_dir, self.cfg))
        return self._clip

    def _quantize(self, m: nn.Module, name: str) -> nn.Module:
        """``m`` with its linears quantized to ``quantize_bits`` (group 64) at load, unless the folder
        already holds ``name`` quantized or no plan asked for it."""
        if name.startswith("dit") and self.stream_blocks:
            return m  # streamed blocks are read as stored; quantizing the rest alone would save little
        if self.quantize_bits and not (self.cfg.get("quantization") or {}).get(name):
            quantize_linears(m, {"bits": self.quantize_bits, "group_size": 64})
        return m

    def fit_memory(self, plan: WanPlan, budget: float | None = None, **fixed):
        """Choose and adopt the cheapest settings whose estimated peak fits ``budget`` bytes (default:
        what this machine lets MLX use, :func:`mlx_video.memory.default_budget`) for the run ``plan``
        describes, before any weights load (:func:`mlx_video.memory.plan`, its documented order:
        sequential CFG, VAE bf16, VAE tiles, one A14B expert resident, free the text encoder before the DiT,
        weights quantized at load, DiT blocks streamed). Without offload (models kept between runs: a server, repeated
        ``generate``) both A14B experts stay loaded only when the plan allows; else they swap each run.
        ``fixed``: settings the user chose (``batch_cfg``, ``vae_dtype``, ``offload``, ``swap_experts``,
        ``vae_tile``, ``quantize_bits``, ``stream_blocks``), kept as given; a folder converted quantized fixes its
        bits; with LoRAs blocks are never streamed.
        Sets this pipeline's ``vae_dtype``, ``offload``, ``tiling``, ``swap_experts``, ``quantize_bits``,
        ``stream_blocks`` and
        ``memory_plan`` (stored in the result's params); the CFG batching is the returned plan's
        ``batch_cfg`` (a WanSettings field). Components still loaded from an earlier run are freed when the plan
        loads them otherwise (other ``quantize_bits`` / ``stream_blocks``) and, with offload, all but the text
        encoder (so that a server's next run starts from what the estimate counts). Returns the :class:`mlx_video.memory.MemoryPlan`; raises
        :class:`mlx_video.memory.MemoryBudgetError` (a ValueError naming the memory needed) when
        nothing fits."""
        from .. import memory

        stored = self.cfg.get("quantization") or {}
        bits = next((q["bits"] for n in ("dit", "dit_high", "t5") if (q := stored.get(n))), None)
        if bits:
            fixed.setdefault("quantize_bits", bits)
        if (t := self._given_tiling) is not None and "vae_tile" not in fixed:
            fixed.update(vae_tile=t.tile, vae_overlap=t.overlap[0])
        sizes = memory.wan_sizes(self.cfg, plan.task, images=len(plan.pixels))
        frames = 1 + 4 * (plan.shape[1] - 1)  # the Wan VAEs' temporal stride is 4
        dtype = str(self.dtype).rsplit(".", 1)[-1]
        if self._stream_asked is not None:
            fixed.setdefault("stream_blocks", self._stream_asked)
        streaming = not any(self._loras.values())
        if fixed.get("stream_blocks") and not streaming:
            raise ValueError("streamed DiT blocks cannot carry merged LoRAs (each block is read again per step)")
        mp = memory.plan(sizes, frames, plan.height, plan.width, budget, dtype=dtype, streaming=streaming, **fixed)
        loaded_as = (self.quantize_bits, self.stream_blocks)
        self.vae_dtype, self.offload, self.tiling = getattr(mx, mp.vae_dtype), mp.offload, mp.tiling
        self.swap_experts = mp.swap_experts
        self.stream_blocks = mp.stream_blocks
        self.quantize_bits = None if bits else mp.quantize_bits
        # models kept from an earlier run (a server, repeated generate) must be what this plan counts: reload the
        # ones loaded with other weights settings, and with offload hold nothing but the text encoder at the start
        # (the text phase's estimate holds only it)
        if (self.quantize_bits, self.stream_blocks) != loaded_as:
            self.free("dit", *(("text",) if self.quantize_bits != loaded_as[0] else ()))
        if self.offload:
            self.free("dit", "clip", "vae")
        if self._vae is not None:
            self._vae.set_dtype(self.vae_dtype)
        self.memory_plan = mp
        return mp

    def free(self, *names: str) -> None:
        """Drop components ("dit" drops every DiT, "text", "clip", "vae") and MLX's buffer cache."""
        for n in names:
            if n == "dit":
                self._dits.clear()
            else:
                setattr(self, f"_{n}", None)
        mx.clear_cache()

    @property
    def latent_channels(self) -> int:
        return self.cfg["dit"]["out_dim"]

    def check_task(self, tk: WanTask) -> None:
        """Raise ValueError unless this folder holds the checkpoint ``tk`` needs (DiT type, CLIP,
        experts, VAE version)."""
        d, experts = self.cfg["dit"], bool(self.cfg.get("experts"))
        held = (
            f"{'two-expert ' if experts else ''}{d['model_type']} DiT"
            f"{' with CLIP' if d.get('image_dim') else ''}, VAE {self.cfg['vae']['version']}"
        )
        ok = (
            d["model_type"] == tk.model_type
            and experts == tk.experts
            and self.cfg["vae"]["version"] == tk.vae
            and bool(d.get("image_dim")) == tk.clip
            and (not tk.clip or "clip" in self.cfg)
        )
        if not ok:
            need = (
                f"{'two-expert (high/low noise) ' if tk.experts else 'single '}{tk.model_type} DiT"
                f"{' with CLIP' if tk.clip else ' without CLIP'}, VAE {tk.vae}"
            )
            raise ValueError(f"task {tk.name} needs a {need} checkpoint; {self.model_dir} holds a {held}")

    # ------------------------------------------------------------------ stages: plan -> prepare -> denoise -> decode

    def generate(
        self,
        settings: WanSettings | None = None,
        *,
        noise: mx.array | None = None,
        context: Sequence[mx.array] | None = None,
        clip_fea: mx.array | None = None,
        progress: Progress | None = None,
        **fields,
    ) -> GenerationResult:
        """Generate a video (or, with ``one_frame``, one image): ``settings`` (a WanSettings) or its fields as
        keywords (``generate(task="t2v-5B", prompt=..., size="64*32")``).

        Injected inputs (for parity tests): ``noise`` [1, T, h, w, C] float32 (else drawn from the seed),
        ``context`` text embeddings ``[cond [n, 4096], uncond [m, 4096]]``, ``clip_fea`` CLIP tokens
        [1, 257·k, 1280]. progress(stage, step, total) is called after each denoising step (stage "denoise"), and
        with step 0 then 1 of 1 around the text encode ("text encode") and each VAE decode ("decode").
        Returns a GenerationResult (frames uint8 [F, H, W, 3]; latents float32 [1, T, h, w, C], for one-frame
        the target slot only; timings ``text``, ``encode``, ``denoise``, ``decode``). Raises ValueError /
        ImageError / WeightsError on bad input before any model runs, NonFiniteError when the latents or the
        decoded frames become NaN or inf.
        """
        if settings is not None and (fields or not isinstance(settings, WanSettings)):
            raise TypeError("generate takes a WanSettings or its fields as keywords, not both")
        plan = self.plan(settings if settings is not None else WanSettings(**fields))
        plan.check_noise(noise)
        meter, tick = Meter(), progress or (lambda *_: None)
        tick("text encode", 0, 1)
        with meter.phase("text"):
            context = self.encode_text(plan, context)
        tick("text encode", 1, 1)
        s, out = plan.settings, None
        if plan.extend is not None:
            out = to_uint8(plan.extend)
        for k in range(s.segments):
            with meter.phase("encode"):
                cond = self.encode_images(plan, window_context(context, k), clip_fea if k == 0 else None)
            with meter.phase("denoise"):
                latent = self.denoise(plan, cond, noise, progress)
            tick("decode", 0, 1)
            with meter.phase("decode"):
                frames = self.decode(latent)
            tick("decode", 1, 1)
            out = join_windows(out, frames, s.overlap)
            if k + 1 < s.segments:  # the next window continues from what was made (only one window in memory)
                plan = plan.next_window(out)
        params = replace(plan, settings=s).params
        if self.memory_plan is not None:
            params["memory_plan"] = self.memory_plan.to_dict()
        return meter.fill(GenerationResult(out, s.fps, latent, params=params))

    def plan(self, settings: WanSettings) -> WanPlan:
        """Validate ``settings``, check that this folder holds the task's checkpoint, and fix the output size
        (text only: ``size``; TI2V/mi2v: ``best_output_size`` of the first image under the size's area;
        I2V/FLF2V/one-frame: ``i2v_size``) and the latent shape. Loads the images; runs no model."""
        s = settings.validate()
        tk, one = s.preset, s.one_frame
        self.check_task(tk)
        vs = self.cfg["vae"]["stride"]
        pix: list[np.ndarray] = []
        if s.extend is not None and tk.images in ("first", "first_last"):  # the clip's last frame is the first
            pix = first_last_pixels(read_last_frame(s.extend), s.images[0] if s.images else None)
            width, height = i2v_size((pix[0].shape[1], pix[0].shape[0]), math.prod(parse_size(s.size)), vs, 2)
        elif tk.images in ("first", "first_last") or one is not None:
            pix = first_last_pixels(s.images[0], s.images[1] if len(s.images) > 1 and one is None else None)
            if one is not None and len(s.images) > 1:
                pix.append(to_array(load_image(s.images[1])))  # musubi: end image for CLIP, as given
            width, height = i2v_size((pix[0].shape[1], pix[0].shape[0]), math.prod(parse_size(s.size)), vs, 2)
        else:
            paths = [a.path for a in s.anchor_images()]
            first = load_image(paths[0]).size if paths else None
            width, height = output_size(tk, s.size, first, vs * 2)
            pix = prepare_images(paths, width, height)
        T = len(one.positions) if one is not None else check_frame_num(s.frame_num, 4)
        check_grid(width, height, T, vs * 2)
        controls = prepare_images(s.control_images, width, height) if one is not None else []
        video = read_video(s.video, width, height, s.frame_num)[0] if s.video is not None else None
        if video is not None and len(video) < s.frame_num:
            raise ValueError(f"video {s.video} decoded to {len(video)} frames, fewer than frame_num {s.frame_num}")
        extend = read_video(s.extend, width, height)[0] if s.extend is not None else None
        shape = (1, T, height // vs, width // vs, self.latent_channels)
        return WanPlan(s, width, height, shape, pix, controls, video, extend)

    def encode_text(self, plan: WanPlan, context: Sequence[mx.array] | None = None) -> list[mx.array]:
        """UMT5 embeddings [cond [n, 4096], uncond [m, 4096]] of the prompt and the negative prompt, with
        per-segment ``prompts`` [cond_0, ..., cond_{K-1}, uncond] (``window_context`` picks a window's pair);
        ``context`` when injected (either form). Frees the text encoder after, with offload. With a group, the
        encoder runs on rank 0 only and its output is broadcast."""
        if context is not None:
            return list(context)

        def encode():
            enc, s = self.text_encoder, plan.settings
            conds = [c for p in (s.prompts or (s.prompt,)) for c in enc.encode([p])]
            context = conds + enc.encode([s.negative_prompt])
            mx.eval(context)  # a lazy context would keep the encoder's weights alive past free("text")
            if self.offload:
                self.free("text")
            return context

        return on_root(encode, self.sp.group if self.sp else None)

    def encode_images(self, plan: WanPlan, context: list, clip_fea: mx.array | None = None) -> Conditions:
        """The image conditions, by task: TI2V/mi2v latent anchors; I2V/FLF2V ``y`` channels of the
        bicubic-resized first (and last) frame; one-frame control slots; Wan2.1 CLIP tokens (``clip_fea`` when
        injected); the input video's latent (video to video)."""
        tk, pix, c = plan.task, plan.pixels, Conditions(context, clip_fea=clip_fea)
        W, H = plan.width, plan.height
        if tk.images in ("optional", "many") and pix:
            anchors = [
                LatentAnchor(encode_anchor_at(self.vae, im, j, group), j, strength)
                for im, (j, strength, group) in zip(pix, plan.anchors())
            ]
            c.mask, c.clean = anchor_arrays(anchors, plan.shape)
        elif plan.one_frame is not None:
            c.cond = one_frame_condition(self.vae, plan.controls, plan.one_frame)
        elif pix:
            frames = {0: bicubic_resize(pix[0], H, W)}
            if len(pix) > 1:
                frames[plan.settings.frame_num - 1] = bicubic_resize(pix[1], H, W)
            c.cond = encode_frames(self.vae, frames, plan.settings.frame_num, W, H)
        if tk.clip and c.clip_fea is None:
            c.clip_fea = encode_clip(self.clip, pix)
            if self.offload:
                self.free("clip")
        if plan.video is not None:
            c.video_latent = self.vae.encode(mx.array(plan.video)[None])
            mx.eval(c.video_latent)
        # extension on the 5B: the last overlap frames, encoded as the start of a video, anchor latents 0..j
        # (the I2V tasks have the clip's or the previous window's last frame as ``pix[0]`` above)
        if plan.extend is not None and tk.images in ("none", "optional"):
            z = self.vae.encode(mx.array(plan.extend[-plan.settings.overlap :])[None])
            c.mask, c.clean = anchor_arrays([LatentAnchor(z, 0)], plan.shape)
        return c

    def denoise(
        self, plan: WanPlan, c: Conditions, noise: mx.array | None = None, progress: Progress | None = None
    ) -> mx.array:
        """Seeded (or injected) noise (video to video: the video's latent noised to the start step's sigma and only
        the remaining steps, ``sdedit``), anchored, through every step; the A14B experts take their runs of steps
        (``expert_segments``), each with its guide scale; WanFM adds the backward pass. Returns the final latent
        [1, T, h, w, C] float32 (one-frame: the target slot only); frees the DiT(s) after, with offload."""
        s, one = plan.settings, plan.one_frame
        if noise is None:
            noise = mx.random.normal(plan.shape, dtype=mx.float32, key=mx.random.key(s.seed))
        latent, sched = noise.astype(mx.float32), plan.solver()
        if c.video_latent is not None:
            latent, sched = sdedit(sched, s.strength, c.video_latent, latent)
        if c.mask is not None:
            latent = blend_clean(latent, c.mask, c.clean)
        y = c.cond.y() if c.cond is not None else None
        y_rev = c.cond.flip_time().y() if c.cond is not None and s.bidirectional else None
        T, h, w = plan.shape[1:4]
        grid, t_pos = (T, h // 2, w // 2), (one.positions if one is not None else None)
        (g_low, g_high) = plan.guide
        for name, a, b in expert_segments(sched.timesteps, plan.task.boundary) if sched.num_steps else ():
            dit = self.model(name)
            ctx = dit.embed_text([x.astype(self.dtype) for x in c.context])
            img = dit.embed_image(c.clip_fea.astype(self.dtype)) if c.clip_fea is not None else None
            rope = dit.rope_tables(grid, t_positions=t_pos)
            back = None
            if s.bidirectional:
                faithful = s.bidirectional == "faithful"
                back = BackwardPass(
                    dit.rope_tables(grid, t_positions=np.arange(T)[::-1]) if faithful else rope,
                    y_rev,
                    skip=faithful and s.skip_redundant,
                )
            call = partial(dit, sp=self.sp) if self.sp else dit  # sequence parallel
            latent = denoise(
                call,
                latent,
                sched,
                ctx,
                rope,
                g_low if name == "dit_low" else g_high,
                c.mask,
                c.clean,
                s.batch_cfg,
                progress,
                y=y,
                img=img,
                steps=range(a, b),
                backward=back,
            )
            # nothing of this expert may outlive its steps: the next one loads at the top of the loop, and with
            # one expert resident (offload / swap_experts) this one must be gone by then (issue 11: `call` held it)
            del dit, call, ctx, img, rope, back
        if self.offload:
            self.free("dit")
        return latent[:, one.target_slot : one.target_slot + 1] if one is not None else latent

    def decode(self, latent: mx.array) -> np.ndarray:
        """VAE decode of [1, T, h, w, C] to uint8 frames [F, H, W, 3] (in ``tiling``'s tiles, split over
        the group's ranks); NonFiniteError if the decode holds NaN or inf."""
        tiles = self.tiling
        hint = (
            f"likely cause: an overflow of the VAE's "
            f"{str(self.vae_dtype).replace('mlx.core.', '')} dtype (try vae_dtype float32)"
        )
        group = self.sp and self.sp.group
        if tiles is None or group is None:
            # to uint8 on the device chunk by chunk (untiled) or tile by tile: the float32 video is never held
            frames = []
            for chunk, finite in self.vae.decode_frames(latent, tiling=tiles):
                check_finite(finite, "in the decoded frames", hint)
                frames.append(chunk[0])
            return frames[0] if len(frames) == 1 else np.concatenate(frames)
        video = self.vae.decode(latent, tiles, group)
        mx.eval(video)
        check_finite(video, "in the decoded frames", hint)
        return to_uint8(np.array(video[0]))
