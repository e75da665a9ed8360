"""Wan pipelines: Wan2.2 TI2V-5B (t2v, ti2v, mi2v anchors), Wan2.1 T2V/I2V/FLF2V (CLIP), Wan2.2 A14B
two-expert T2V/I2V/FLF2V (with WanFM bidirectional sampling) and musubi-tuner one-frame inference.

Stages are plain functions over arrays (text encode -> image encode -> denoise -> decode);
``WanPipeline`` only owns the converted model folder, loads each component when a stage needs it
and frees it after (``offload``; for A14B only the active expert is resident). Nothing here prints
or writes files.

References: Wan2.2 ``textimage2video.py`` (TI2V; mi2v generalises its frame-0 latent replacement,
docs/wan.md 9), Wan2.2 ``image2video.py`` (I2V-A14B, docs/wan.md 8.1), Wan2.1 ``image2video.py`` /
``first_last_frame2video.py`` (CLIP, docs/wan.md 8.1, 8.2), WanFM ``first_last_frame2video.py``
(``generate_bidirectional``, docs/wan.md 10) and musubi-tuner ``wan_generate_video.py`` (one frame, docs/wan.md 11).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..conditioning import LatentAnchor, anchor_arrays, blend_anchors
from ..io.images import load_image, to_array, to_uint8
from ..io.weights import WeightsError, load_safetensors, load_strict, quantize_linears, read_folder_config
from ..sampling.solvers import FlowEuler, make_solver
from .conditions import (OneFrameSpec, check_frame_num, encode_anchor_images, encode_clip,
                         encode_frames, first_last_pixels, i2v_size, one_frame_condition, output_size,
                         prepare_images, resize_bicubic)
from .config import TASKS, WanTask, parse_size

FORMAT = "mlx_video/wan/1"
Progress = Callable[[str, int, int], None]


@dataclass
class GenerationResult:
    """What a run returns. ``video``: uint8 [F, H, W, 3] (one frame for one-frame inference);
    ``latents``: float32 [1, T, h, w, C] (one-frame inference: the target slot only)."""

    video: np.ndarray
    latents: mx.array
    fps: int
    params: dict
    timings: dict = field(default_factory=dict)
    peak_memory_gb: float = 0.0


# ----------------------------------------------------------------------------- loading


def read_config(model_dir: Path) -> dict:
    """The converted folder's config.json; raises WeightsError when it is not a Wan folder of ours."""
    return read_folder_config(model_dir, FORMAT, "run `mlx_video convert` first or pass the original "
                                                 "checkpoint folder")


def load_dit(model_dir: Path, cfg: dict, name: str = "dit"):
    """DiT ``name`` ("dit", or the A14B experts "dit_high" / "dit_low", which share ``cfg["dit"]``)."""
    from .transformer import WanModel, WanModelArgs

    model = WanModel(WanModelArgs(**cfg.get(name, cfg["dit"])))
    quantize_linears(model, cfg.get("quantization", {}).get(name))
    return load_strict(model, load_safetensors(Path(model_dir) / f"{name}.safetensors"), what=f"Wan DiT ({name})")


def load_vae(model_dir: Path, cfg: dict):
    """The converted folder's Wan2.1 or Wan2.2 VAE (float32, strict loading; WeightsError on bad weights)."""
    if cfg["vae"]["version"] == "2.2":
        from .vae22 import Wan22VAE as VAE, Wan22VAEArgs as VAEArgs
    else:
        from .vae21 import Wan21VAE as VAE, Wan21VAEArgs as VAEArgs
    model = VAE(VAEArgs(**cfg["vae"]["args"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "vae.safetensors"), what="Wan VAE")


def load_text_encoder(model_dir: Path, cfg: dict):
    """UMT5 (quantized if converted so, strict loading) with the folder's tokenizer, as a WanTextEncoder."""
    from .t5 import UMT5Args, UMT5Encoder, WanTextEncoder

    model = UMT5Encoder(UMT5Args(**cfg["t5"]))
    quantize_linears(model, cfg.get("quantization", {}).get("t5"))
    load_strict(model, load_safetensors(Path(model_dir) / "t5.safetensors"), what="UMT5 encoder")
    return WanTextEncoder.from_dir(Path(model_dir) / "tokenizer", model, text_len=cfg.get("text_len", 512))


def load_clip(model_dir: Path, cfg: dict):
    """The Wan2.1 CLIP visual tower of a converted I2V/FLF2V folder; WeightsError when it has none."""
    from .clip import CLIPVisionArgs, CLIPVisionEncoder

    if "clip" not in cfg:
        raise WeightsError(f"{model_dir} has no CLIP image encoder (only Wan2.1 I2V/FLF2V checkpoints have one)")
    model = CLIPVisionEncoder(CLIPVisionArgs(**cfg["clip"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "clip.safetensors"), what="CLIP visual tower")


# ----------------------------------------------------------------------------- denoising


def expert_segments(timesteps: Sequence[int], boundary: float | None) -> list[tuple[str, int, int]]:
    """Runs of consecutive steps per DiT: [(name, first step, end step)], name "dit" without experts,
    else "dit_high" while ``t >= boundary·1000`` and "dit_low" below (Wan2.2 A14B, docs/wan.md 7)."""
    if boundary is None:
        return [("dit", 0, len(timesteps))]
    names = ["dit_high" if t >= boundary * 1000 else "dit_low" for t in timesteps]
    out: list[tuple[str, int, int]] = []
    for i, n in enumerate(names):
        if out and out[-1][0] == n:
            out[-1] = (n, out[-1][1], i + 1)
        else:
            out.append((n, i, i + 1))
    return out


def velocity(model, x: mx.array, t, context: mx.array, rope, guide_scale: float, y: mx.array | None = None,
             img: mx.array | None = None, batch_cfg: bool = True) -> mx.array:
    """Classifier-free guided velocity ``v_u + g·(v_c − v_u)``; context [2, 512, C] (cond, uncond);
    the same ``y`` and CLIP tokens ``img`` go to both branches (as the references). t: [1] or [1, T]."""
    kw = {}
    if img is not None:
        kw["img"] = img
    if batch_cfg:
        if y is not None:
            kw["y"] = mx.concatenate([y, y])
        tt = mx.concatenate([t, t]) if t.ndim == 2 else t
        v = model(mx.concatenate([x, x]), tt, context, rope, **kw)
        v_cond, v_uncond = v[:1], v[1:]
    else:
        if y is not None:
            kw["y"] = y
        v_cond = model(x, t, context[:1], rope, **kw)
        v_uncond = model(x, t, context[1:], rope, **kw)
    return v_uncond + guide_scale * (v_cond - v_uncond)


@dataclass
class BackwardPass:
    """WanFM's time-reversed pass (docs/wan.md 10): the model sees the latent and ``y`` flipped in time with
    RoPE ``rope`` (reversed temporal positions in the faithful mode, forward positions in the
    "reverse" mode). ``skip``: use the forward result for it (valid only in the faithful mode, where
    tests/test_wan_flf2v.py shows flip(backward) == forward to float32 rounding)."""

    rope: object
    y: mx.array | None
    skip: bool = False


def denoise(model, latent: mx.array, solver, context: mx.array, rope, guide_scale: float,
            mask: mx.array | None = None, clean: mx.array | None = None, batch_cfg: bool = True,
            progress: Progress | None = None, *, y: mx.array | None = None, img: mx.array | None = None,
            steps: range | None = None, backward: BackwardPass | None = None) -> mx.array:
    """Denoising steps ``steps`` (default all) of one DiT: CFG velocity, a solver step, re-anchoring.

    latent [1, T, h, w, C] float32 (already anchored); context [2, 512, dim] (cond, uncond) from
    ``model.embed_text``. mask/clean from ``anchor_arrays`` (TI2V anchors: per-latent-frame
    timesteps ``mask·t`` and re-anchoring), or None (one timestep for all tokens). y: I2V/FLF2V
    channels [1, T, h, w, 20]; img: ``model.embed_image`` tokens. backward: WanFM bidirectional
    sampling; needs the stateless Euler solver: ``x = ½·x_f + ½·flip(x_b)``. Several calls with
    consecutive ``steps`` and the same solver (its history carries over) run the two A14B experts.
    Returns the latent after the last step.
    """
    steps = range(solver.num_steps) if steps is None else steps
    if backward is not None and (not isinstance(solver, FlowEuler) or mask is not None):
        raise ValueError("bidirectional sampling needs the Euler solver and no latent anchors")
    n = solver.num_steps
    for i in steps:
        t = solver.timesteps[i]
        tt = mask.reshape(1, -1) * float(t) if mask is not None else mx.array([float(t)])
        v = velocity(model, latent, tt, context, rope, guide_scale, y, img, batch_cfg)
        x_next = solver.step(v, i, latent)
        if backward is not None and not backward.skip:
            x_rev = latent[:, ::-1]
            v_b = velocity(model, x_rev, tt, context, backward.rope, guide_scale, backward.y, img, batch_cfg)
            x_next = 0.5 * x_next + 0.5 * solver.step(v_b, i, x_rev)[:, ::-1]
        latent = blend_anchors(x_next, mask, clean) if mask is not None else x_next
        mx.eval(latent)
        if progress:
            progress("denoise", i + 1, n)
    return latent


# ----------------------------------------------------------------------------- pipeline


def _images_rule(tk: WanTask, n: int, one_frame: bool) -> None:
    if one_frame:
        if tk.name not in ("i2v-14B", "flf2v-14B"):
            raise ValueError(f"one-frame inference is for i2v-14B and flf2v-14B, not {tk.name}")
        need = 2 if tk.images == "first_last" else 1
        if n != need:
            raise ValueError(f"one-frame {tk.name} takes {need} CLIP image(s) (--image_path"
                             f"{' and --end_image_path' if need == 2 else ''}), got {n}")
        return
    rules = {"none": (0, 0, "takes no images"), "optional": (0, 1, "takes at most one image (use mi2v-5B for several)"),
             "many": (1, 10**9, "needs at least one image"), "first": (1, 1, "takes exactly one image (the first frame)"),
             "first_last": (2, 2, "takes a first and a last frame")}
    lo, hi, msg = rules[tk.images]
    if not lo <= n <= hi:
        raise ValueError(f"task {tk.name} {msg}, got {n}")


def _read_loras(specs: Sequence) -> list[tuple[dict, float]]:
    """LoRA files for ``merge_loras``: each spec ``"PATH[:STRENGTH]"`` or ``(path, strength)``; read now
    so that a missing or unreadable file fails before any model runs (WeightsError / ValueError)."""
    from ..nn.lora import load_lora, parse_lora_spec

    out = []
    for spec in specs:
        path, strength = parse_lora_spec(spec) if isinstance(spec, (str, Path)) else spec
        out.append((load_lora(path), float(strength)))
    return out


class WanPipeline:
    """A converted Wan folder, ready to generate.

    ``dtype``: compute dtype of the DiT(s), text encoder and CLIP weights (bf16 default; float32 for
    parity). ``offload``: free the text encoder and CLIP before the DiT runs, keep only the active
    A14B expert resident, and free the DiT before the VAE decodes. ``loras``: LoRA files
    ("PATH[:STRENGTH]" or (path, strength)) merged into every DiT when it loads (kohya/musubi, PEFT,
    original-key formats, see :mod:`mlx_video.nn.lora`); ``loras_high`` / ``loras_low``: into one A14B
    expert only. ``vae_dtype``: the VAE's compute dtype, float32 (default, like the reference modules)
    or bf16 (half the activation memory, as the official pipelines' bf16 autocast; decode within ~1.4%
    of float32 on the tiny model). Raises WeightsError / ValueError for a bad folder or LoRA file.
    """

    def __init__(self, model_dir: str | Path, dtype: mx.Dtype = mx.bfloat16, offload: bool = True,
                 loras: Sequence = (), loras_high: Sequence = (), loras_low: Sequence = (),
                 vae_dtype: mx.Dtype = mx.float32):
        self.model_dir = Path(model_dir)
        self.cfg = read_config(self.model_dir)
        self.dtype, self.offload, self.vae_dtype = dtype, offload, vae_dtype
        self._dits: dict[str, nn.Module] = {}
        self._vae = self._text = self._clip = None
        if (loras_high or loras_low) and not self.cfg.get("experts"):
            raise ValueError("per-expert LoRAs (high / low) need a two-expert A14B checkpoint; use loras")
        self._loras = {"dit": _read_loras(loras), "dit_high": _read_loras(loras_high),
                       "dit_low": _read_loras(loras_low)}

    def _cast(self, m: nn.Module) -> nn.Module:
        m.set_dtype(self.dtype, predicate=lambda d: mx.issubdtype(d, mx.floating))
        return m

    # components, loaded on first use
    def model(self, name: str = "dit"):
        """DiT ``name`` ("dit", "dit_high", "dit_low"); with offload, other DiTs are freed first."""
        if name not in self._dits:
            if self.offload and self._dits:
                self.free("dit")
            m = self._cast(load_dit(self.model_dir, self.cfg, name))
            loras = self._loras["dit"] + (self._loras[name] if name != "dit" else [])
            if loras:
                from ..nn.lora import merge_loras, wan_key_map

                merge_loras(m, loras, wan_key_map())
            self._dits[name] = m
        return self._dits[name]

    @property
    def dit(self):
        return self.model("dit")

    @property
    def _dit(self):
        return self._dits.get("dit") or next(iter(self._dits.values()), None)

    @property
    def vae(self):
        if self._vae is None:
            self._vae = load_vae(self.model_dir, self.cfg)
            self._vae.set_dtype(self.vae_dtype)
        return self._vae

    @property
    def text_encoder(self):
        if self._text is None:
            self._text = load_text_encoder(self.model_dir, self.cfg)
            self._cast(self._text.model)
        return self._text

    @property
    def clip(self):
        if self._clip is None:
            self._clip = self._cast(load_clip(self.model_dir, self.cfg))
        return self._clip

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
        held = (f"{'two-expert ' if experts else ''}{d['model_type']} DiT"
                f"{' with CLIP' if d.get('image_dim') else ''}, VAE {self.cfg['vae']['version']}")
        ok = (d["model_type"] == tk.model_type and experts == tk.experts and self.cfg["vae"]["version"] == tk.vae
              and bool(d.get("image_dim")) == tk.clip and (not tk.clip or "clip" in self.cfg))
        if not ok:
            need = (f"{'two-expert (high/low noise) ' if tk.experts else 'single '}{tk.model_type} DiT"
                    f"{' with CLIP' if tk.clip else ' without CLIP'}, VAE {tk.vae}")
            raise ValueError(f"task {tk.name} needs a {need} checkpoint; {self.model_dir} holds a {held}")

    def generate(
        self,
        task: str = "ti2v-5B",
        prompt: str = "",
        negative_prompt: str | None = None,
        images: Sequence[str | Path] = (),
        size: str | None = None,
        frame_num: int | None = None,
        sample_steps: int | None = None,
        sample_shift: float | None = None,
        guide_scale: float | tuple[float, float] | None = None,
        solver: str | None = None,
        seed: int = 0,
        noise: mx.array | None = None,
        context: Sequence[mx.array] | None = None,
        batch_cfg: bool = True,
        progress: Progress | None = None,
        *,
        bidirectional: str | None = None,
        skip_redundant: bool = True,
        one_frame: str | OneFrameSpec | None = None,
        control_images: Sequence[str | Path] = (),
        clip_fea: mx.array | None = None,
    ) -> GenerationResult:
        """Generate a video (or, with ``one_frame``, one image).

        task: a key of ``config.TASKS``. images: file paths, by task: t2v none; ti2v-5B 0..1 and
        mi2v-5B 1..N latent anchors (cover-resized to the size chosen from the first); i2v-* the first
        frame; flf2v-* the first and the last frame (a last frame of another size is cover-resized and
        center-cropped to the first's); one-frame: the CLIP image(s) (start [, end]).
        frame_num: 4k+1 pixel frames. guide_scale: one number or (low-noise, high-noise) for A14B.
        bidirectional: None, "faithful" (WanFM) or "reverse" (backward pass with forward RoPE
        positions) for flf2v tasks; Euler on the DPM++ grid; ``skip_redundant`` uses the forward pass
        for the faithful backward one (proven equal, see README). one_frame: "control_index=0;2,
        target_index=1" or an OneFrameSpec, with ``control_images`` (one per control index).
        noise: injected initial noise [1, T, h, w, C] float32 (else seeded). context: injected text
        embeddings ``[cond [n, 4096], uncond [m, 4096]]``; clip_fea: injected CLIP tokens [1, 257·k, 1280].
        None values take the task's official defaults.
        Returns a GenerationResult; raises ValueError / ImageError / WeightsError on bad input before
        any model runs.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        tk = TASKS[task]
        images, control_images = list(images), list(control_images)
        spec = None
        if one_frame is not None:
            spec = one_frame if isinstance(one_frame, OneFrameSpec) else OneFrameSpec.parse(one_frame, len(control_images))
            if len(control_images) != len(spec.control_index):
                raise ValueError(f"{len(spec.control_index)} control indices need as many control images, "
                                 f"got {len(control_images)}")
        elif control_images:
            raise ValueError("control images are only used by one-frame inference (one_frame=...)")
        _images_rule(tk, len(images), spec is not None)
        if bidirectional not in (None, "faithful", "reverse"):
            raise ValueError(f"bidirectional must be 'faithful' or 'reverse', got {bidirectional!r}")
        if bidirectional and (tk.images != "first_last" or spec is not None):
            raise ValueError("bidirectional sampling is for the flf2v tasks (first and last frame)")
        self.check_task(tk)

        frame_num = tk.frame_num if frame_num is None else frame_num
        vs_t, vs = 4, self.cfg["vae"]["stride"]
        multiple = vs * 2
        T = check_frame_num(frame_num, vs_t)
        size_s = size or tk.size
        steps = sample_steps or tk.sample_steps
        if sample_shift is not None:
            shift = sample_shift
        elif spec is not None:  # musubi: 3.0 for i2v at 480p, else 5.0 (also flf2v, whose task name lacks "i2v")
            shift = 3.0 if tk.name == "i2v-14B" and size_s in ("832*480", "480*832") else 5.0
        else:
            shift = tk.default_shift(size_s)
        g_low, g_high = tk.guide_pair(guide_scale)
        solver_name = "euler" if bidirectional else (solver or tk.solver)
        neg = tk.neg_prompt if not negative_prompt else negative_prompt
        if tk.images in ("many", "optional") and images and len(images) > T - 1:
            raise ValueError(f"{len(images)} images need at least {len(images) + 1} latent frames; "
                             f"frame_num {frame_num} gives {T} latent frames, so at most {T - 1} images "
                             f"(use frame_num >= {4 * len(images) + 1})")
        if tk.images == "first_last" and spec is None and frame_num < 2:
            raise ValueError("first-last-frame tasks need frame_num >= 5")

        # sizes and pixels (every image is loaded and validated before a model runs)
        pix: list[np.ndarray] = []
        if tk.images in ("first", "first_last") or spec is not None:
            pix = first_last_pixels(images[0], images[1] if len(images) > 1 and spec is None else None)
            if spec is not None and len(images) > 1:
                pix.append(to_array(load_image(images[1])))  # musubi: end image for CLIP, as given
            width, height = i2v_size((pix[0].shape[1], pix[0].shape[0]), math.prod(parse_size(size_s)), vs, 2)
        else:
            first = load_image(images[0]).size if images else None
            width, height = output_size(tk, size_s, first, multiple)
            pix = prepare_images(images, width, height)
        controls = prepare_images(control_images, width, height) if spec is not None else []
        h, w, C = height // vs, width // vs, self.latent_channels
        T = len(spec.positions) if spec is not None else T
        shape = (1, T, h, w, C)
        if noise is not None and tuple(noise.shape) != shape:
            raise ValueError(f"injected noise must have shape {shape}, got {tuple(noise.shape)}")
        params = dict(task=task, prompt=prompt, negative_prompt=neg, images=[str(p) for p in images],
                      size=f"{width}*{height}", frame_num=1 if spec else frame_num, sample_steps=steps,
                      sample_shift=shift, sample_guide_scale=g_low if g_low == g_high else [g_low, g_high],
                      sample_solver=solver_name, seed=seed)
        if bidirectional:
            params["bidirectional_sampling"] = bidirectional
        if spec is not None:
            params.update(one_frame_inference=dict(control_index=list(spec.control_index),
                                                   target_index=spec.target_index),
                          control_images=[str(p) for p in control_images])
        timings: dict[str, float] = {}
        mx.reset_peak_memory()

        t0 = time.perf_counter()
        if context is None:
            enc = self.text_encoder
            context = enc.encode([prompt]) + enc.encode([neg])
            if self.offload:
                self.free("text")
        timings["text_encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        mask = clean = cond = None
        if tk.images in ("optional", "many"):
            anchors = [LatentAnchor(encode_anchor_images(self.vae, pix), 0)] if pix else []
            if anchors:
                mask, clean = anchor_arrays(anchors, shape)
        elif spec is not None:
            cond = one_frame_condition(self.vae, controls, spec)
        elif pix:
            frames = {0: resize_bicubic(pix[0], width, height)}
            if len(pix) > 1:
                frames[frame_num - 1] = resize_bicubic(pix[1], width, height)
            cond = encode_frames(self.vae, frames, frame_num, width, height)
        if tk.clip and clip_fea is None:
            clip_fea = encode_clip(self.clip, pix)
            if self.offload:
                self.free("clip")
        timings["image_encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if noise is None:
            noise = mx.random.normal(shape, dtype=mx.float32, key=mx.random.key(seed))
        latent = noise.astype(mx.float32)
        if mask is not None:
            latent = blend_anchors(latent, mask, clean)
        y = cond.y() if cond is not None else None
        y_rev = cond.flip_time().y() if cond is not None and bidirectional else None
        grid = (T, h // 2, w // 2)
        t_pos = spec.positions if spec is not None else None
        sched = make_solver(solver_name, steps, shift)
        for name, a, b in expert_segments(sched.timesteps, tk.boundary):
            dit = self.model(name)
            ctx = dit.embed_text([c.astype(self.dtype) for c in context])
            img = dit.embed_image(clip_fea.astype(self.dtype)) if clip_fea is not None else None
            rope = dit.rope_tables(grid, t_positions=t_pos)
            back = None
            if bidirectional:
                faithful = bidirectional == "faithful"
                back = BackwardPass(dit.rope_tables(grid, t_positions=np.arange(T)[::-1]) if faithful else rope,
                                    y_rev, skip=faithful and skip_redundant)
            g = g_low if name == "dit_low" else g_high
            latent = denoise(dit, latent, sched, ctx, rope, g, mask, clean, batch_cfg, progress, y=y, img=img,
                             steps=range(a, b), backward=back)
            del dit, ctx, img
        timings["denoise"] = time.perf_counter() - t0
        if self.offload:
            self.free("dit")

        t0 = time.perf_counter()
        if spec is not None:
            latent = latent[:, spec.target_slot:spec.target_slot + 1]
        video = self.vae.decode(latent)
        mx.eval(video)
        timings["decode"] = time.perf_counter() - t0
        frames_u8 = to_uint8(np.array(video[0]))
        return GenerationResult(frames_u8, latent, tk.fps, params, timings, mx.get_peak_memory() / 2**30)
