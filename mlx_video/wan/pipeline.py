"""Wan2.2 TI2V-5B pipeline: text-to-video, image-to-video and multi-image anchors (mi2v).

Stages are plain functions over arrays (text encode -> image encode -> denoise -> decode);
``WanPipeline`` only owns the converted model folder, loads each component when a stage needs it
and frees it after (``offload``). Nothing here prints or writes files.

Reference: Wan2.2 ``wan/textimage2video.py`` (``WanTI2V.t2v`` / ``WanTI2V.i2v``); mi2v generalises
its frame-0 latent replacement to N images (shared/reference/wan.md section 9).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..conditioning import LatentAnchor, anchor_arrays, blend_anchors
from ..io.images import best_output_size, cover_resize_crop, load_image, to_array, to_uint8
from ..io.weights import WeightsError, load_safetensors, load_strict
from ..sampling.solvers import make_solver
from .config import TASKS, WanTask, parse_size

FORMAT = "mlx_video/wan/1"
Progress = Callable[[str, int, int], None]


@dataclass
class GenerationResult:
    """What a run returns. ``video``: uint8 [F, H, W, 3]; ``latents``: float32 [1, T, h, w, C]."""

    video: np.ndarray
    latents: mx.array
    fps: int
    params: dict
    timings: dict = field(default_factory=dict)
    peak_memory_gb: float = 0.0


# ----------------------------------------------------------------------------- loading


def read_config(model_dir: Path) -> dict:
    """The converted folder's config.json; raises WeightsError when it is not one of ours."""
    p = Path(model_dir) / "config.json"
    if not p.is_file():
        raise WeightsError(f"{model_dir} is not a converted mlx_video folder (no config.json); "
                           "run `mlx_video convert` first or pass the original checkpoint folder")
    cfg = json.loads(p.read_text())
    if cfg.get("format") != FORMAT:
        raise WeightsError(f"{p}: not an mlx_video Wan folder (format {cfg.get('format')!r})")
    return cfg


def _quantize_like(model: nn.Module, q: dict | None) -> None:
    if q:
        nn.quantize(model, group_size=q["group_size"], bits=q["bits"],
                    class_predicate=lambda _, m: isinstance(m, nn.Linear) and m.weight.shape[1] % q["group_size"] == 0)


def load_dit(model_dir: Path, cfg: dict, name: str = "dit"):
    from .transformer import WanModel, WanModelArgs

    model = WanModel(WanModelArgs(**cfg[name]))
    _quantize_like(model, cfg.get("quantization", {}).get(name))
    return load_strict(model, load_safetensors(Path(model_dir) / f"{name}.safetensors"), what=f"Wan DiT ({name})")


def load_vae(model_dir: Path, cfg: dict):
    if cfg["vae"]["version"] == "2.2":
        from .vae22 import Wan22VAE as VAE, Wan22VAEArgs as VAEArgs
    else:
        from .vae21 import Wan21VAE as VAE, Wan21VAEArgs as VAEArgs
    model = VAE(VAEArgs(**cfg["vae"]["args"]))
    return load_strict(model, load_safetensors(Path(model_dir) / "vae.safetensors"), what="Wan VAE")


def load_text_encoder(model_dir: Path, cfg: dict):
    from .t5 import UMT5Args, UMT5Encoder, WanTextEncoder

    model = UMT5Encoder(UMT5Args(**cfg["t5"]))
    _quantize_like(model, cfg.get("quantization", {}).get("t5"))
    load_strict(model, load_safetensors(Path(model_dir) / "t5.safetensors"), what="UMT5 encoder")
    return WanTextEncoder.from_dir(Path(model_dir) / "tokenizer", model, text_len=cfg.get("text_len", 512))


# ----------------------------------------------------------------------------- stages


def check_frame_num(frame_num: int, temporal_stride: int = 4) -> int:
    """Latent frame count T for ``frame_num`` pixel frames; raises ValueError unless 4k+1."""
    if frame_num < 1 or (frame_num - 1) % temporal_stride:
        raise ValueError(f"frame_num must be {temporal_stride}k+1 (1, 5, 9, ..., 121), got {frame_num}")
    return (frame_num - 1) // temporal_stride + 1


def check_size(width: int, height: int, multiple: int) -> None:
    if width % multiple or height % multiple or width <= 0 or height <= 0:
        raise ValueError(f"size {width}*{height} cannot be taken: width and height must be positive "
                         f"multiples of {multiple} (VAE stride x DiT patch)")


def output_size(task: WanTask, size: str | None, first_image_wh: tuple[int, int] | None,
                multiple: int) -> tuple[int, int]:
    """(width, height) of the video. Text only: ``size`` as W*H. With images: the official
    ``best_output_size`` of the first image under max_area = W·H of ``size`` (TI2V behaviour)."""
    w, h = parse_size(size or task.size)
    if first_image_wh is None:
        check_size(w, h, multiple)
        return w, h
    return best_output_size(first_image_wh[0], first_image_wh[1], multiple, multiple, w * h)


def prepare_images(paths: Sequence[str | Path], width: int, height: int) -> list[np.ndarray]:
    """Load each image (RGB), LANCZOS cover-resize + center-crop to (width, height): [H, W, 3] in [-1, 1]."""
    return [to_array(cover_resize_crop(load_image(p), width, height)) for p in paths]


def encode_anchor_images(vae, images: Sequence[np.ndarray]) -> mx.array:
    """Encode each image on its own as a one-frame video: [1, N, h, w, z] (mi2v, wan.md section 9)."""
    zs = [vae.encode(mx.array(im)[None, None]) for im in images]
    z = mx.concatenate(zs, axis=1)
    mx.eval(z)
    return z


def denoise(model, latent: mx.array, solver, context: mx.array, rope, guide_scale: float,
            mask: mx.array, clean: mx.array, batch_cfg: bool = True,
            progress: Progress | None = None) -> mx.array:
    """The TI2V loop: CFG velocity at per-latent-frame timesteps ``mask·t``, a solver step, re-anchor.

    latent [1, T, h, w, C] float32 (already anchored); context [2, 512, dim] (cond, uncond) from
    ``model.embed_text``; mask/clean from ``anchor_arrays``. Returns the final latent.
    """
    frame_mask = mask.reshape(1, -1)
    n = len(solver.timesteps)
    for i, t in enumerate(solver.timesteps):
        tt = frame_mask * float(t)
        if batch_cfg:
            v = model(mx.concatenate([latent, latent]), mx.concatenate([tt, tt]), context, rope)
            v_cond, v_uncond = v[:1], v[1:]
        else:
            v_cond = model(latent, tt, context[:1], rope)
            v_uncond = model(latent, tt, context[1:], rope)
        v = v_uncond + guide_scale * (v_cond - v_uncond)
        latent = blend_anchors(solver.step(v, i, latent), mask, clean)
        mx.eval(latent)
        if progress:
            progress("denoise", i + 1, n)
    return latent


# ----------------------------------------------------------------------------- pipeline


class WanPipeline:
    """A converted Wan TI2V-5B folder, ready to generate.

    ``dtype``: compute dtype of the DiT and text encoder weights (bf16 default; float32 for parity).
    ``offload``: free the text encoder before the DiT runs and the DiT before the VAE decodes.
    """

    def __init__(self, model_dir: str | Path, dtype: mx.Dtype = mx.bfloat16, offload: bool = True):
        self.model_dir = Path(model_dir)
        self.cfg = read_config(self.model_dir)
        self.dtype, self.offload = dtype, offload
        self._dit = self._vae = self._text = None

    # components, loaded on first use
    @property
    def dit(self):
        if self._dit is None:
            self._dit = load_dit(self.model_dir, self.cfg)
            self._dit.set_dtype(self.dtype, predicate=lambda d: mx.issubdtype(d, mx.floating))
        return self._dit

    @property
    def vae(self):
        if self._vae is None:
            self._vae = load_vae(self.model_dir, self.cfg)
        return self._vae

    @property
    def text_encoder(self):
        if self._text is None:
            self._text = load_text_encoder(self.model_dir, self.cfg)
            self._text.model.set_dtype(self.dtype, predicate=lambda d: mx.issubdtype(d, mx.floating))
        return self._text

    def free(self, *names: str) -> None:
        for n in names:
            setattr(self, f"_{n}", None)
        mx.clear_cache()

    @property
    def latent_channels(self) -> int:
        return self.cfg["dit"]["out_dim"]

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
        guide_scale: float | None = None,
        solver: str | None = None,
        seed: int = 0,
        noise: mx.array | None = None,
        context: Sequence[mx.array] | None = None,
        batch_cfg: bool = True,
        progress: Progress | None = None,
    ) -> GenerationResult:
        """Generate a video.

        task: "t2v-5B" (text only), "ti2v-5B" (0 or 1 image as first frame) or "mi2v-5B" (1..N images
        anchoring the first N latent frames). images: file paths; every image is cover-resized and
        center-cropped to the size chosen from the first one. frame_num: 4k+1 pixel frames; N must be
        <= T-1 latent frames. noise: injected initial noise [1, T, h, w, C] float32 (else seeded).
        context: injected text embeddings ``[cond [n, 4096], uncond [m, 4096]]`` instead of running the
        text encoder. None values take the task's official defaults.
        Returns a GenerationResult (frames uint8 [F, H, W, 3]); raises ValueError / ImageError /
        WeightsError on bad input before any model runs.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        tk = TASKS[task]
        images = list(images)
        if tk.images == "none" and images:
            raise ValueError(f"task {task} takes no images")
        if tk.images == "optional" and len(images) > 1:
            raise ValueError(f"task {task} takes at most one image (use mi2v-5B for several)")
        if tk.images == "many" and not images:
            raise ValueError(f"task {task} needs at least one image")
        frame_num = tk.frame_num if frame_num is None else frame_num
        steps = sample_steps or tk.sample_steps
        shift = tk.sample_shift if sample_shift is None else sample_shift
        g = tk.guide_scale if guide_scale is None else guide_scale
        solver_name = solver or tk.solver
        neg = tk.neg_prompt if not negative_prompt else negative_prompt
        vs_t, vs = 4, self.cfg["vae"]["stride"]
        multiple = vs * 2
        T = check_frame_num(frame_num, vs_t)
        if images and len(images) > T - 1:
            raise ValueError(f"{len(images)} images need at least {len(images) + 1} latent frames; "
                             f"frame_num {frame_num} gives {T} latent frames, so at most {T - 1} images "
                             f"(use frame_num >= {4 * len(images) + 1})")
        first = load_image(images[0]).size if images else None
        width, height = output_size(tk, size, first, multiple)
        pix = prepare_images(images, width, height)  # loads and validates every image up front
        h, w, C = height // vs, width // vs, self.latent_channels
        shape = (1, T, h, w, C)
        if noise is not None and tuple(noise.shape) != shape:
            raise ValueError(f"injected noise must have shape {shape}, got {tuple(noise.shape)}")
        params = dict(task=task, prompt=prompt, negative_prompt=neg, images=[str(p) for p in images],
                      size=f"{width}*{height}", frame_num=frame_num, sample_steps=steps, sample_shift=shift,
                      sample_guide_scale=g, sample_solver=solver_name, seed=seed)
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
        anchors = [LatentAnchor(encode_anchor_images(self.vae, pix), 0)] if pix else []
        mask, clean = anchor_arrays(anchors, shape)
        timings["image_encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if noise is None:
            noise = mx.random.normal(shape, dtype=mx.float32, key=mx.random.key(seed))
        latent = blend_anchors(noise.astype(mx.float32), mask, clean)
        dit = self.dit
        ctx = dit.embed_text([c.astype(self.dtype) for c in context])
        rope = dit.rope_tables((T, h // 2, w // 2))
        latent = denoise(dit, latent, make_solver(solver_name, steps, shift), ctx, rope, g, mask, clean,
                         batch_cfg=batch_cfg, progress=progress)
        timings["denoise"] = time.perf_counter() - t0
        if self.offload:
            del dit, ctx
            self.free("dit")

        t0 = time.perf_counter()
        video = self.vae.decode(latent)
        mx.eval(video)
        timings["decode"] = time.perf_counter() - t0
        frames = to_uint8(np.array(video[0]))
        return GenerationResult(frames, latent, TASKS[task].fps, params, timings,
                                mx.get_peak_memory() / 2**30)
