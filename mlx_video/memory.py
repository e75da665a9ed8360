"""Memory plan for a Wan run: each phase's peak estimated before any weights load, and the cheapest
settings that fit a budget.

Everything here is a pure function of the model's args (parameter counts from modules built lazily from
the args: MLX allocates nothing until an array is evaluated) and the video's size. Phases:

- ``text``: the UMT5 encoder over 512 tokens;
- ``image``: the VAE encode of the conditioning frames (TI2V/mi2v: one frame each; Wan2.1/A14B i2v and
  flf2v: the whole clip) and the CLIP tower when the model has one;
- ``denoise``: one DiT forward per CFG branch, batched (batch 2) or sequential (batch 1), with one A14B
  expert resident;
- ``decode``: the VAE decode, untiled or in tiles.

Per rank of a sequence-parallel run (``ranks`` > 1, docs/distributed.md): every rank holds all weights;
the DiT activations are those of ``ceil(L/ranks)`` tokens plus the gathered whole-sequence q, k, v of one
attention (the emulated all-to-all, ``3·L·C·s`` per sample) and scores of the local queries against all
keys; rank 0 alone runs the text encoder (the plan is rank 0's, the largest); a tiled VAE decode split
over the ranks holds ``ranks`` gathered tile outputs beside the output buffer.

Activation models (bytes; calibrated, see ``CALIBRATION``):

- DiT step, per sample: ``L·(a·C·4 + b·F·s)`` for L tokens, width C, FFN width F, compute bytes s, with
  blocks evaluated one by one (``WanModel.__call__``); without a fused attention kernel (MLX's CPU
  backend) add the scores, ``heads·L²·s``.
- VAE decode/encode: ``k·A + U``: A the largest activation of one chunk (the full-resolution stage,
  4 frames for decode, 4 input frames for encode), U the conv unfold buffer of that stage
  (``kt·kh·kw`` copies of its input, capped by ``$MLX_VIDEO_CONV_UNFOLD_GB``, see nn/conv.py; Metal and the
  CPU only: MLX's CUDA convolutions hold none), plus the float32 pixels held (the encode's input; a tiled
  decode split over ranks holds its output and tiles; otherwise a decode goes to uint8 chunk by chunk or tile
  by tile). A tile replaces the frame in A and U by the tile.

Settings are chosen in this order, each step only while the plan does not fit (``PLAN_ORDER``):
sequential CFG; VAE in bf16; VAE tiles (512, 384, 256 px); one A14B expert resident (the other freed
when it loads, reloaded next run); free the text encoder and CLIP before the DiT and the DiT before the VAE; DiT and text encoder weights quantized at load (8-bit, then 4-bit);
DiT blocks streamed from the lazily read weights file (8, 4, 2, 1 resident; the blocks held as stored: a bf16
folder streams bf16 blocks). When even the last fails,
:func:`plan` raises :class:`MemoryBudgetError` with the smallest peak and the options.

Weights
quantized at load: ``WanPipeline._quantize`` quantizes the nn.Linear layers of a float folder's DiT(s) and
UMT5 as each loads (tests/test_wan_quantize_at_load.py); a folder converted with ``--quantize`` keeps its bits.

Quantized DiT blocks run dequantized one block at a time (mlx_video/nn/blockwise.py), so a quantized DiT
counts one block in the compute dtype more.

LTX-2's estimate (no plan: check and refuse) is in ``mlx_video/ltx2/memory.py``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import mlx.core as mx

from .backend import backend

GIB = float(1 << 30)

# Activation constants per backend (keys: ``mlx_video.backend.backend()``). "cuda" from the lent H100, MLX 0.32.4
# CUDA (benchmarks/README.md, issue 11; benchmarks/results/*.json); "metal" = the same plus the conv unfold buffer U
# of the VAE (``vae_unfold``): MLX's Metal conv3d unfolds its input for one GEMM (nn/conv.py caps it), while its CUDA
# conv (cuDNN) holds no such buffer: since the Wan VAE's convolutions join and pad their inputs window by window
# (nn/conv.py), the H100 peaks have no U term left. Metal itself is not measured here. (Results stored before
# 2026-12-08 name "metal" "gpu"; command lines still accept "gpu", ``backend.backend_arg``.)
# DiT forward alone, TI2V-5B at 27,280 tokens: +5.7 GiB per extra CFG branch (batched 21.7 vs sequential 16.0 GiB),
# which a = 14, b = 1.7 reproduce (5.6 GiB a sample); the rest of the batch-1 peak (1.1 GiB beyond weights + one
# sample) does not grow with the batch: the per-forward term f·L·C·4, f = 3.6 (f = 6 before the A14B 720p run:
# 12% high there). DiT activations measured in whole runs (MLX peak - weights), per token at batch 1: 5B 27k
# tokens 263 KB (estimate 265), A14B 32k 379-401 KB (407), A14B 75.6k 366 KB (407: the estimate errs high for long
# videos). VAE (k·A + U, A: one 4-frame activation of the full-resolution stage): Wan2.2 decode 121x704x1280 bf16
# to uint8 (decode_chunks) 11.41 GiB, the same at 21 and 61 frames (benchmarks/results/wan_vae_lean_*.json): k = 23.5;
# Wan2.2 one-frame encode 928x960: 3.20 GiB with the weights (e2e ti2v-budget20): k = 28; Wan2.1 decode 81x624x624
# 5.29-5.63 and 81x960x960 12.28 GiB: k = 18.5; Wan2.1 81-frame clip encode 4.28-4.59 / 9.40 GiB: k = 13.5.
# Whole runs (benchmarks/e2e.py --size full, benchmarks/results/e2e_*_full.json; bf16, sequential CFG, bf16 VAE,
# offload), estimate / measured GiB:
#   ti2v-5B 121x928x960 (26,970 tokens), budget 20:  text 12.61/12.35, image 3.18/3.20, denoise 17.34/17.36,
#     decode 11.34/11.06
#   i2v-14B 81x624x624 (31,941 tokens):  text 12.61/12.35, image 4.35/4.59, denoise 43.0/43.63, decode 5.39/5.63
#   i2v-A14B 81x624x624, one expert:     image 4.35/4.28, denoise 39.0/38.78, decode 5.39/5.29
#   i2v-A14B 81x960x960 (75,600 tokens): image 9.97/9.40, denoise 55.6/52.62, decode 12.43/12.28
#   t2v-5B 121x704x1280 (27,280 tokens), before the lean VAE decode:  denoise 15.99/16.06
#   mi2v-5B (3 images), 121x928x960, before the harness drew the VAE in its dtype: image 3.18/6.37 (see docs/memory.md)
# UMT5-XXL: the text phase's 12.35 GiB peak is 1.17x its bf16 weights (t5_k = 0.18).
# "cpu" from MLX 0.32.4 on this x86 CPU (2026-12-07): DiT forwards at C 256/512, F 1024/4096, L 512/1152,
# batch 1/2, fp32/bf16 give a = 22, b = 1.8, scores 1.0 (least squares over 7 points, each within 20%); at a few
# tokens (C 256-1024, L 4-16) a forward peaks at 9 padded-context tensors a sample (dit_text = 9); Wan2.2/2.1
# VAE decodes at dim 8-16 give k = 79-82 (one 107), bf16 saving only 12% (CPU convs); the narrow UMT5 of
# ``benchmarks.e2e --size tiny`` peaks at 1.25x its weights (t5_k = 0.25).
_METAL = dict(
    dit_a=14.0,
    dit_b=1.7,
    dit_fixed=3.6,
    dit_text=1.0,
    scores=0.0,
    vae_k=23.5,
    vae_enc_k=28.0,
    vae21_k=18.5,
    vae21_enc_k=13.5,
    vae_unfold=1.0,
    vae_bf16_bytes=2.0,
    t5_k=0.18,
)
CALIBRATION = {
    "cuda": dict(_METAL, vae_unfold=0.0),
    "metal": _METAL,
    "cpu": dict(
        dit_a=22.0,
        dit_b=1.8,
        dit_fixed=0.0,
        dit_text=9.0,
        scores=1.0,
        vae_k=85.0,
        vae_enc_k=85.0,
        vae21_k=85.0,
        vae21_enc_k=85.0,
        vae_unfold=1.0,
        vae_bf16_bytes=3.5,
        t5_k=0.25,
    ),
}
TILES = (512, 384, 256)  # VAE tile sides tried, pixels (overlap: a quarter of the tile)
QUANT_BITS = (8, 4)
STREAM_BLOCKS = (8, 4, 2, 1)
PLAN_ORDER = (
    "sequential CFG",
    "VAE bf16",
    "VAE tiling",
    "one expert resident",
    "free text encoder before DiT",
    "quantize weights at load",
    "stream DiT blocks",
)


class MemoryBudgetError(ValueError):
    """No plan fits the memory budget; the message gives the smallest estimated peak and the options."""


def _bytes(dtype: str) -> int:
    return 4 if dtype in ("float32", "fp32") else 2


def _count(module) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(module.parameters()))


# ----------------------------------------------------------------------------- model sizes


@dataclass(frozen=True)
class WanSizes:
    """What the planner needs of a Wan checkpoint, from its args (no weights).

    dit: WanModelArgs; t5: UMT5Args or None (injected contexts); vae: Wan21VAEArgs / Wan22VAEArgs; clip:
    CLIPVisionArgs or None; experts: 2 for A14B (one resident at a time); image_frames: "first" (frame-0
    anchors, one frame encoded per image) or "clip" (the whole clip encoded: Wan2.1/A14B i2v, flf2v).
    """

    dit: object
    vae: object
    t5: object = None
    clip: object = None
    experts: int = 1
    image_frames: str = "first"
    images: int = 0
    dit_bits: int | None = None  # the folder's stored DiT quantization (a streamed DiT is held as stored)

    @cached_property
    def dit_params(self) -> int:
        from .wan.transformer import WanModel

        return _count(WanModel(self.dit))

    @cached_property
    def dit_block_params(self) -> int:
        from .wan.transformer import WanBlock

        return _count(WanBlock(self.dit))

    @cached_property
    def t5_params(self) -> int:
        if self.t5 is None:
            return 0
        from .wan.t5 import UMT5Encoder

        return _count(UMT5Encoder(self.t5))

    @cached_property
    def clip_params(self) -> int:
        if self.clip is None:
            return 0
        from .wan.clip import CLIPVisionEncoder

        return _count(CLIPVisionEncoder(self.clip))

    @cached_property
    def vae_params(self) -> int:
        return _count(self._vae_module())

    def _vae_module(self):
        from .wan import vae21, vae22

        cls = vae22.Wan22VAE if isinstance(self.vae, vae22.Wan22VAEArgs) else vae21.Wan21VAE
        return cls(self.vae)


@dataclass
class MemoryPlan:
    """Chosen settings and the estimated peak of each phase (GiB). JSON-able (``to_dict``) for metadata.

    batch_cfg: both CFG branches in one batch-2 forward; vae_dtype "float32" | "bfloat16"; vae_tile:
    (h, w) pixels or None, vae_overlap pixels; offload: text encoder / CLIP freed before the DiT and the DiT
    before the VAE; quantize_bits: DiT and text encoder linears quantized at load (8 / 4) or None;
    stream_blocks: DiT blocks resident at once when streamed from the weights file, or None (all);
    swap_experts: A14B without offload: one expert resident, the other freed when it loads (with
    ``offload`` it is always so; without both, the two stay loaded between runs);
    budget_gib: the budget planned for; steps: the settings changed from the fastest plan, in order;
    ranks: sequence-parallel ranks (``mlx.launch``): the phases are per rank (rank 0's).
    """

    batch_cfg: bool = True
    vae_dtype: str = "float32"
    vae_tile: tuple | None = None
    vae_overlap: int = 0
    offload: bool = False
    quantize_bits: int | None = None
    stream_blocks: int | None = None
    swap_experts: bool = False
    dtype: str = "bfloat16"
    ranks: int = 1
    budget_gib: float | None = None
    phases_gib: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)

    @property
    def peak_gib(self) -> float:
        return max(self.phases_gib.values(), default=0.0)

    @property
    def tiling(self):
        """The VAE's :class:`mlx_video.nn.tiling.Tiling`, or None."""
        from .nn.tiling import Tiling

        return None if self.vae_tile is None else Tiling(tuple(self.vae_tile), self.vae_overlap)

    def summary(self, frames: int | None = None, height: int | None = None, width: int | None = None) -> str:
        """Two lines for people: the steps taken for the budget and the estimated peak per phase."""
        video = f" for {frames}x{height}x{width}" if frames else ""
        budget = f" within {self.budget_gib:.2f} GiB" if self.budget_gib is not None else ""
        tile = f"{self.vae_tile[0]}x{self.vae_tile[1]} px tiles" if self.vae_tile else "untiled"
        weights = f"{self.quantize_bits}-bit" if self.quantize_bits else self.dtype
        if self.stream_blocks:
            weights += f", DiT blocks streamed ({self.stream_blocks} resident)"
        return (
            f"memory plan{video}{budget}: CFG {'batched' if self.batch_cfg else 'sequential'}, VAE "
            f"{self.vae_dtype} {tile}, text encoder {'freed before' if self.offload else 'kept through'} "
            f"the DiT{', one A14B expert resident' if self.swap_experts and not self.offload else ''}, "
            f"weights {weights}{' (' + ', '.join(self.steps) + ')' if self.steps else ''}\n"
            f"estimated peak {self.peak_gib:.2f} GiB ("
            + ", ".join(f"{k} {v:.2f}" for k, v in self.phases_gib.items())
            + ")"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vae_tile"] = list(self.vae_tile) if self.vae_tile else None
        d["peak_gib"] = round(self.peak_gib, 3)
        d["phases_gib"] = {k: round(v, 3) for k, v in self.phases_gib.items()}
        return d


# ----------------------------------------------------------------------------- estimates


def default_budget() -> int:
    """Bytes this machine lets MLX use: on Metal the recommended working set
    (``max_recommended_working_set_size``), on CUDA the device memory, on a CPU the physical RAM."""
    info = {}
    try:
        info = dict(mx.device_info())
    except Exception:  # noqa: BLE001 - older MLX without device_info
        pass
    for key in ("max_recommended_working_set_size", "memory_size", "total_memory"):
        if info.get(key):
            return int(info[key])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def weight_bytes(params: int, dtype: str, bits: int | None = None, group: int = 64) -> float:
    """Bytes of ``params`` weights in ``dtype``, or affine-quantized to ``bits`` (bits/8 per weight plus a
    bf16 scale and bias per ``group``; norms and biases are few enough to count the same)."""
    if bits is None:
        return params * _bytes(dtype)
    return params * (bits / 8 + 4 / group)


def tokens(sizes: WanSizes, frames: int, height: int, width: int) -> int:
    """DiT tokens of a video: latent frames x (h/patch) x (w/patch)."""
    st, s, _ = _vae_stride(sizes.vae)
    _, ph, pw = sizes.dit.patch_size
    return (1 + (frames - 1) // st) * (height // s // ph) * (width // s // pw)


def _vae_stride(a) -> tuple[int, int, int]:
    s = 2 ** (len(a.dim_mult) - 1) * a.patch_size
    return 2 ** sum(map(bool, a.temperal_downsample)), s, s


def dit_activation_bytes(
    dit_args,
    n_tokens: int,
    batch: int,
    dtype: str = "bfloat16",
    backend_name: str | None = None,
    ranks: int = 1,
) -> float:
    """Peak activation bytes of one DiT forward (``WanModel.__call__``, blocks evaluated one by one)
    over ``n_tokens`` tokens at ``batch`` (2: batched CFG): ``batch·L·(a·C·4 + b·F·s) + f·L·C·4`` (f: a
    per-forward part that does not grow with the batch, measured on the H100), plus the attention scores
    ``batch·heads·L²·s`` without a fused kernel (CPU). The 512 text tokens add ``batch·512·C·s``; a
    forward of a few tokens peaks instead at ``t·batch·512·C·s`` (t = ``dit_text``: the text embedding's
    layers over the padded context and a block's cross-attention keys and values of it; 9 on the CPU). With ``ranks`` > 1 (sequence parallel), per rank: the shard's ``c = ceil(L/ranks)``
    tokens in place of L, scores ``heads·c·L·s``, plus the gathered q, k, v ``batch·3·L·C·s``."""
    cal = CALIBRATION[backend_name or backend()]
    C, F, s = dit_args.dim, dit_args.ffn_dim, _bytes(dtype)
    L = n_tokens
    c = -(-L // ranks)
    per = c * (cal["dit_a"] * C * 4 + cal["dit_b"] * F * s) + cal["scores"] * dit_args.num_heads * c * L * s
    if ranks > 1:
        per += 3 * L * C * s
    text = dit_args.text_len * C * s
    return batch * max(per + text, cal["dit_text"] * text) + cal["dit_fixed"] * c * C * 4


def _vae_stage(a, decode: bool) -> tuple[int, int]:
    """(channels of the full-resolution stage, widest conv input there) of a Wan VAE's decoder/encoder."""
    if decode:
        base = a.dec_dim or a.dim
        c = base * a.dim_mult[0]
        # Wan2.1 halves the upsampler output (the last stage starts at half the previous width); Wan2.2 keeps it
        prev = base * a.dim_mult[1] if len(a.dim_mult) > 1 else c
        c_in = prev // 2 if not a.residual else prev
        return c, max(c, c_in)
    c = a.dim * a.dim_mult[0]
    return c, c


def vae_activation_bytes(
    vae_args,
    frames: int,
    height: int,
    width: int,
    dtype: str = "float32",
    tile: tuple | None = None,
    decode: bool = True,
    backend_name: str | None = None,
    ranks: int = 1,
    float_out: bool = False,
) -> float:
    """Peak bytes of a Wan VAE decode (or encode) of ``frames`` x ``height`` x ``width`` pixels beyond its
    weights: ``k·A + u·U`` for the largest chunk activation A and its conv unfold buffer U (tile-sized with
    ``tile`` = (h, w) pixels; u = ``vae_unfold``: 0 on CUDA), plus the float32 pixels: an encode's input, a tiled
    decode's output and its tiles when split over ranks or with ``float_out`` (``vae.decode``); otherwise a decode
    goes to uint8 on the device chunk by chunk (untiled) or tile by tile (``WanPipeline.decode``,
    ``decode_frames``), leaving the uint8 video and, tiled, float32 sums over the overlap bands on the host. See the module
    docstring; ``CALIBRATION`` gives k. ``ranks``: the tiles split over that many ranks (each holds
    ``ranks`` gathered tile outputs); untiled, every rank decodes the whole video."""
    from .nn.conv import MAX_UNFOLD_BYTES

    cal = CALIBRATION[backend_name or backend()]
    p = vae_args.patch_size
    th, tw = (height, width) if tile is None else (min(tile[0], height), min(tile[1], width))
    c, c_in = _vae_stage(vae_args, decode)
    f_chunk = 4 if frames > 1 else 1
    s = _bytes(dtype) if _bytes(dtype) == 4 else cal["vae_bf16_bytes"]
    pix = (th // p) * (tw // p)
    A = f_chunk * pix * c * s
    unfold_elems = 27 * (f_chunk + 2) * pix * c_in
    U = cal["vae_unfold"] * min(unfold_elems * 4, MAX_UNFOLD_BYTES) * s / 4
    video = frames * height * width * 3 * 4
    from .wan.vae22 import Wan22VAEArgs

    v = "" if isinstance(vae_args, Wan22VAEArgs) else "vae21_"
    k = cal[f"{v or 'vae_'}k"] if decode else cal[f"{v or 'vae_'}enc_k"]
    if decode and not float_out and (tile is None or ranks == 1):
        extra = 0.0  # to uint8 chunk by chunk or tile by tile (decode_frames): host memory, not MLX's
    elif tile is not None:
        extra = video + frames * th * tw * 3 * 4 * (1 + ranks)
    else:
        extra = video
    return k * A + U + extra


def phase_peaks(
    sizes: WanSizes, frames: int, height: int, width: int, p: MemoryPlan, backend_name: str | None = None
) -> dict[str, float]:
    """Estimated peak bytes per phase ("text", "image", "denoise", "decode") of a run with plan ``p``.
    Without offload, the text encoder (and CLIP) stay resident through denoising and the DiT through
    the decode; with it, each phase holds only its own model."""
    be = backend_name or backend()
    dt = p.dtype
    bits = p.quantize_bits
    # quantize_linears quantizes nn.Linear only: UMT5's token embedding (vocab x dim, 18% of UMT5-XXL) stays
    emb = sizes.t5.vocab_size * sizes.t5.dim if sizes.t5 is not None and bits else 0
    t5_w = weight_bytes(sizes.t5_params - emb, dt, bits) + weight_bytes(emb, dt)
    clip_w = weight_bytes(sizes.clip_params, dt)
    vae_w = weight_bytes(sizes.vae_params, p.vae_dtype)
    dit_params, dit_bits = sizes.dit_params, bits
    blk = sizes.dit_block_params
    if p.stream_blocks is not None:  # blocks read from the file as stored, ``stream_blocks`` at once
        dit_params = dit_params - (sizes.dit.num_layers - min(p.stream_blocks, sizes.dit.num_layers)) * blk
        dit_bits = sizes.dit_bits
    # quantized blocks run dequantized one at a time (nn/blockwise.py): one block in the compute dtype more
    dit_w = weight_bytes(dit_params, dt, dit_bits) + (blk * _bytes(dt) if dit_bits else 0.0)
    if not (p.offload or p.swap_experts):  # WanPipeline keeps both A14B experts unless told to free one
        dit_w *= sizes.experts
    t5_act = 0.0
    if sizes.t5 is not None:
        cal = CALIBRATION[be]
        t5_act = 512 * (14 * sizes.t5.dim * 4 + 1.7 * sizes.t5.dim_ffn * _bytes(dt)) + cal["t5_k"] * t5_w
    L = tokens(sizes, frames, height, width)
    enc_frames = frames if sizes.image_frames == "clip" else 1
    image = 0.0
    if sizes.images or sizes.image_frames == "clip":
        image = vae_w + vae_activation_bytes(
            sizes.vae, enc_frames, height, width, p.vae_dtype, p.vae_tile, decode=False, backend_name=be
        )
        if sizes.clip is not None:
            image = max(image, clip_w + vae_w)
    kept_text = 0.0 if p.offload else t5_w + clip_w
    out = {
        "text": t5_w + t5_act,
        "image": image + kept_text,
        "denoise": kept_text
        + dit_w
        + dit_activation_bytes(sizes.dit, L, 2 if p.batch_cfg else 1, dt, be, p.ranks)
        + (vae_w if image else 0.0),  # WanPipeline keeps the VAE loaded from the encode on
        "decode": (0.0 if p.offload else kept_text + dit_w)
        + vae_w
        + vae_activation_bytes(
            sizes.vae, frames, height, width, p.vae_dtype, p.vae_tile, backend_name=be, ranks=p.ranks
        ),
    }
    return out


def _step(p: MemoryPlan, label: str, **kw) -> MemoryPlan:
    """``p`` with ``kw`` set and ``label`` recorded (replacing an earlier step of the same kind)."""
    kind = label.split(" (")[0]
    return replace(p, **kw, steps=[*(s for s in p.steps if s.split(" (")[0] != kind), label])


def _candidates(base: MemoryPlan, sizes: WanSizes, streaming: bool = True):
    """Plans from the fastest to the smallest, one documented step (``PLAN_ORDER``) at a time (without
    ``streaming``: the block-streaming steps left out)."""
    p = base
    yield p
    p = _step(p, "sequential CFG", batch_cfg=False)
    yield p
    p = _step(p, "VAE bf16", vae_dtype="bfloat16")
    yield p
    for t in TILES:
        p = _step(p, f"VAE tiling ({t}px)", vae_tile=(t, t), vae_overlap=t // 4)
        yield p
    if sizes.experts > 1:
        p = _step(p, "one expert resident", swap_experts=True)
        yield p
    p = _step(p, "free text encoder before DiT", offload=True)
    yield p
    for b in QUANT_BITS:
        p = _step(p, f"quantize weights at load ({b}-bit)", quantize_bits=b)
        yield p
    for n in STREAM_BLOCKS if streaming else ():
        if n < sizes.dit.num_layers:
            p = _step(p, f"stream DiT blocks ({n} resident)", stream_blocks=n)
            yield p


STEP_FIELD = {  # the MemoryPlan field each kind of step sets (a user-fixed field takes no step)
    "sequential CFG": "batch_cfg",
    "VAE bf16": "vae_dtype",
    "VAE tiling": "vae_tile",
    "one expert resident": "swap_experts",
    "free text encoder before DiT": "offload",
    "quantize weights at load": "quantize_bits",
    "stream DiT blocks": "stream_blocks",
}
_RELAX = (  # after a fit: undo steps the later ones made unnecessary (fastest value first)
    ("vae_tile", [None, *((t, t) for t in TILES)]),
    ("batch_cfg", [True]),
    ("vae_dtype", ["float32"]),
    ("swap_experts", [False]),
    ("quantize_bits", [None, *QUANT_BITS]),
    ("stream_blocks", [None, *STREAM_BLOCKS]),
)


def _relax(p: MemoryPlan, fits, fixed: dict) -> MemoryPlan:
    """Undo each step of a fitting plan that is no longer needed (e.g. smaller VAE tiles chosen before
    offloading made room), keeping user-fixed settings."""
    labels = {
        "vae_tile": "VAE tiling",
        "batch_cfg": "sequential CFG",
        "vae_dtype": "VAE bf16",
        "swap_experts": "one expert resident",
        "quantize_bits": "quantize weights at load",
        "stream_blocks": "stream DiT blocks",
    }
    for name, values in _RELAX:
        for v in values:
            if name in fixed or v == getattr(p, name):
                break
            kw = {name: v}
            if name == "vae_tile":
                kw["vae_overlap"] = 0 if v is None else v[0] // 4
            steps = [s for s in p.steps if s.split(" (")[0] != labels[name]]
            if v is not None and v is not True and v is not False and v != "float32":
                unit = "px" if name == "vae_tile" else "-bit" if name == "quantize_bits" else " resident"
                steps.append(f"{labels[name]} ({v[0] if name == 'vae_tile' else v}{unit})")
            cand, ok = fits(replace(p, steps=steps, **kw))
            if ok:
                p = cand
                break
    return p


def plan(
    sizes: WanSizes,
    frames: int,
    height: int,
    width: int,
    budget: float | None = None,
    dtype: str = "bfloat16",
    backend_name: str | None = None,
    streaming: bool = True,
    **fixed,
) -> MemoryPlan:
    """The fastest plan whose every phase fits ``budget`` bytes (default :func:`default_budget`).

    ``streaming`` False: leave DiT block streaming out of the candidates (for a pipeline that cannot
    stream; the error then names the smallest plan without it).
    ``fixed``: settings the user chose (MemoryPlan fields, e.g. ``batch_cfg=False``, ``vae_dtype``); they
    are kept as given and the other settings follow ``PLAN_ORDER``. Call before any weights load.
    Returns a :class:`MemoryPlan` with ``phases_gib``; raises :class:`MemoryBudgetError` naming the
    budget needed when nothing fits, and ValueError for an unknown setting.
    """
    budget = float(default_budget() if budget is None else budget)
    unknown = set(fixed) - set(MemoryPlan.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown plan settings {sorted(unknown)}")
    base = MemoryPlan(dtype=dtype, budget_gib=budget / GIB)

    def fits(cand):
        kept = {STEP_FIELD[s.split(" (")[0]] for s in cand.steps} & set(fixed)
        cand = replace(cand, **fixed, steps=[s for s in cand.steps if STEP_FIELD[s.split(" (")[0]] not in kept])
        if cand.vae_tile is None:
            cand.vae_overlap = 0
        peaks = phase_peaks(sizes, frames, height, width, cand, backend_name)
        cand.phases_gib = {k: v / GIB for k, v in peaks.items()}
        return cand, max(peaks.values()) <= budget

    best = None
    for cand in _candidates(base, sizes, streaming):
        cand, ok = fits(cand)
        if best is None or cand.peak_gib < best.peak_gib:
            best = cand
        if ok:
            return _relax(cand, fits, fixed)
    raise MemoryBudgetError(
        f"no memory plan fits {budget / GIB:.2f} GiB for {frames}x{height}x{width}: the smallest "
        f"({', '.join(best.steps) or 'defaults'}) needs {best.peak_gib:.2f} GiB "
        f"({', '.join(f'{k} {v:.2f}' for k, v in best.phases_gib.items())}); options: a larger "
        f"--memory_budget, fewer frames or a smaller size, or a smaller model"
    )


def wan_sizes(cfg: dict, task=None, images: int = 0, text_encoder: bool = True) -> WanSizes:
    """:class:`WanSizes` from a converted folder's config.json dict (``WanPipeline.cfg``); ``task`` a
    ``config.WanTask`` (its image rule picks what the VAE encodes); ``text_encoder`` False for
    injected contexts."""
    from .wan import vae21, vae22
    from .wan.clip import CLIPVisionArgs
    from .wan.t5 import UMT5Args
    from .wan.transformer import WanModelArgs

    va = (vae22.Wan22VAEArgs if cfg["vae"]["version"] == "2.2" else vae21.Wan21VAEArgs)(**cfg["vae"]["args"])
    clip_frames = task is not None and task.images in ("first", "first_last")
    return WanSizes(
        dit=WanModelArgs(**cfg["dit"]),
        vae=va,
        t5=UMT5Args(**cfg["t5"]) if text_encoder and "t5" in cfg else None,
        clip=CLIPVisionArgs(**cfg["clip"]) if "clip" in cfg else None,
        experts=2 if cfg.get("experts") else 1,
        image_frames="clip" if clip_frames else "first",
        images=images,
        dit_bits=(
            (cfg.get("quantization") or {}).get("dit") or (cfg.get("quantization") or {}).get("dit_high") or {}
        ).get("bits"),
    )
