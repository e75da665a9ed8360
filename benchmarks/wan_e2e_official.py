"""Whole Wan TI2V-5B run against the official Wan2.2 pipeline (``WanTI2V.generate``), same sizes, same steps.

    python -m benchmarks.wan_e2e_official --size tiny --case ti2v --steps 2       # CPU smoke run, narrow widths
    python -m benchmarks.wan_e2e_official --size full --case ti2v --steps 3 --out $OUT/e2e_official_ti2v.json
    python -m benchmarks.wan_e2e_official --size full --case t2v --steps 3 --official-offload false

official: the real ``wan.textimage2video.WanTI2V.generate`` (its ``t2v`` / ``i2v`` bodies run unchanged) on an
object made with ``object.__new__`` and given the attributes its constructor sets, with the defaults of
Wan2.2's ``generate.py`` on one GPU: ``offload_model=True`` (generate.py sets it when the flag is not given
and the world size is 1), ``t5_cpu=False``, ``init_on_cpu=True`` (the constructor's default): the UMT5 encoder
and the DiT live in host memory and ``generate`` moves each to the GPU for its phase and back after it (those
copies are part of the official run's time). ``convert_model_dtype=True`` (bf16 DiT weights, as the official
README's single-GPU TI2V-5B command; ``--official-fp32-dit``: the generate.py default, float32 weights under
bf16 autocast). The Wan2.2 VAE is the constructor's own (``Wan2_2_VAE.__init__`` runs, its ``_video_vae``
replaced by a random-weights builder): float32 weights, encode and decode under ``autocast(float32)``, as in
``generate``. The constructor's checkpoint loading is bypassed: each module is built on the meta device in its
dtype, materialised on the GPU, filled with random draws (``common.torch_random_``) and moved to host memory
where the constructor would leave it. ``flash_attention`` is torch SDPA on the same bf16 q/k/v
(``benchmarks.wan_dit._sdpa_attention``: flash-attn is not installed on the lent GPU). Tokenizer: Wan's own
``HuggingfaceTokenizer`` over assets/tiny-Wan2.2-TI2V-5B/google/umt5-xxl (the same folder our side uses);
``--inject-context`` (or no transformers/tokenizers/ftfy/regex) replaces the text encoder on both sides by
random [24, 4096] / [120, 4096] contexts. ``--official-offload false``: everything resident on the GPU (the
state of a second ``generate`` call with ``offload_model=False``): no host copies.

Per phase (instrumented by wrapping the modules' calls, each wrapper ending with ``torch.cuda.synchronize``):
``text`` = generate's start (image resize / crop included) to the VAE encode (ti2v) or the DiT's move to the GPU
(t2v); ``encode`` = ``vae.encode``; ``denoise`` = from there to ``vae.decode`` (DiT to GPU, the loop, DiT back to
host); ``decode`` = ``vae.decode`` to generate's return. Per step: from the step's first DiT call (or the
previous scheduler step's end) to the end of its ``FlowUniPCMultistepScheduler.step``. Peak per phase:
``torch.cuda.max_memory_allocated`` (reset at every boundary); on the CPU the process's VmHWM (absolute).

mlx: ``benchmarks.e2e`` in a subprocess (one model resident at a time) with the same case, size, steps,
layers, injected contexts or not; by default ``--sequential-cfg`` (the official loop runs the two CFG branches
one after the other) and ``--vae-dtype bfloat16`` (``--mlx-vae-dtype float32``: our default); its phases
``s_net`` (random-weight drawing subtracted: the official side's weights are drawn before the run). The mp4
write is not compared (generate.py writes after ``generate`` returns; not timed on either side).

Whole run: the sum of the phases (ours: plan + text + encode + denoise + decode). 50 steps: the run with its
steps replaced by the first step + 49 x the median of the others (the first step keeps its warm-up cost).
Ratio column: MLX / official (the issue's target: whole 50-step run <= 0.7). JSON to ``--out``; a table last.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the official loop's progress bar

import warnings  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import torch  # noqa: E402
from benchmarks.e2e import IMAGES  # noqa: E402
from benchmarks.random_models import TOKENIZER, wan_config  # noqa: E402
from benchmarks.wan_dit import _sdpa_attention  # noqa: E402

GIB = float(1 << 30)
warnings.filterwarnings("ignore", message=".*torch.cuda.amp.autocast.*deprecated.*")
VIDEO = {"tiny": (5, 64, 64), "full": (121, 704, 1280)}
CASES = ("t2v", "ti2v")
PROMPT = "a red fox running through fresh snow, cinematic"  # benchmarks/e2e.py's
CONTEXT_TOKENS = (24, 120)  # e2e.py --inject-context: prompt, negative prompt
PHASES = ("text", "encode", "denoise", "decode")


def have_tokenizer() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("transformers", "tokenizers", "ftfy", "regex"))


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - ImportError, or a compiled extension that does not load
        return False


def _stub_missing() -> list[str]:
    """``wan.textimage2video`` imports torchvision (``to_tensor``, used on the input image) and, through
    ``wan.utils.utils``, imageio (video saving, unused here). Stand-ins for whichever is missing."""
    stubbed = []
    if not _imports("torchvision.transforms.functional"):  # missing, or broken beside this torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        tv, tvt, tvf = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "tvf"))
        tvf.__name__ = "torchvision.transforms.functional"

        def to_tensor(pic):  # torchvision's for an RGB uint8 PIL image: float [3, H, W] in [0, 1]
            return torch.from_numpy(np.asarray(pic, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

        tvf.to_tensor = to_tensor
        tv.transforms, tvt.functional = tvt, tvf
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt, tvf.__name__: tvf})
        stubbed.append("torchvision (to_tensor)")
    if not _imports("imageio"):
        sys.modules["imageio"] = types.ModuleType("imageio")
        stubbed.append("imageio (unused)")
    return stubbed


class Timeline:
    """Named, synchronised time stamps; each carries the peak memory since the previous one."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"
        self.events: list[tuple[str, float, float | None]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = float(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        else:
            peak = common._status_kib("VmHWM") * 1024.0
            common._hwm_reset()
        self.events.append((name, time.perf_counter(), peak))

    def first(self, *names, after: int = 0) -> int | None:
        for i, (n, _, _) in enumerate(self.events):
            if i >= after and n in names:
                return i
        return None

    def span(self, i: int, j: int) -> dict:
        t = self.events[j][1] - self.events[i][1]
        peaks = [p for _, _, p in self.events[i + 1 : j + 1] if p is not None]
        return dict(s=t, peak_gib=max(peaks) / GIB if peaks else None)


def _wrap(tl: Timeline, obj, attr: str, before: str, after: str) -> None:
    fn = getattr(obj, attr)

    def wrapped(*a, **k):
        tl.mark(before)
        out = fn(*a, **k)
        tl.mark(after)
        return out

    setattr(obj, attr, wrapped)  # an instance attribute shadows the method (nn.Module.forward / .to included)


class InjectedText:
    """Stands in for ``T5EncoderModel`` with ``--inject-context``: fixed contexts, a model that moves nowhere."""

    def __init__(self, contexts, dev):
        self.contexts = [torch.from_numpy(c).to(dev) for c in contexts]
        self.calls = 0
        self.model = torch.nn.Module()

    def __call__(self, texts, device):
        out = [self.contexts[min(self.calls, 1)].to(device)]
        self.calls += 1
        return out


def build_official(cfg: dict, a, dev, contexts) -> tuple[object, dict]:
    """A ``WanTI2V`` with random weights in the state its constructor leaves (see the module docstring)."""
    W = __import__("tests.oracles", fromlist=["wan"]).wan()
    stubbed = _stub_missing()
    try:
        ti2v_mod = importlib.import_module("wan.textimage2video")  # keeps its own references to the stand-ins
    finally:  # a module without a spec in sys.modules breaks later importlib.util.find_spec calls
        for name in ("torchvision.transforms.functional", "torchvision.transforms", "torchvision", "imageio"):
            if getattr(sys.modules.get(name), "__spec__", 0) is None:
                del sys.modules[name]
    config = importlib.import_module("wan.configs").WAN_CONFIGS["ti2v-5B"]
    info_attention = W.model.flash_attention
    W.model.flash_attention = _sdpa_attention(dev.type == "cuda")  # put back by run_official
    cuda = dev.type == "cuda"
    host = torch.device("cpu")
    resident = a.official_offload == "false"
    bf16 = torch.bfloat16 if cuda else torch.float32
    d, t5 = cfg["dit"], cfg["t5"]
    info = dict(
        _flash_attention=info_attention,
        stubbed=stubbed,
        offload_model=not resident,
        init_on_cpu=not resident,
        t5_cpu=False,
    )

    obj = object.__new__(ti2v_mod.WanTI2V)
    obj.device = dev
    obj.config = config
    obj.rank = 0
    obj.t5_cpu = False
    obj.init_on_cpu = not resident
    obj.num_train_timesteps = config.num_train_timesteps
    obj.param_dtype = bf16
    obj.vae_stride = config.vae_stride
    obj.patch_size = config.patch_size
    obj.sp_size = 1
    obj.sample_neg_prompt = config.sample_neg_prompt

    t0 = time.perf_counter()
    if contexts is None:
        te = object.__new__(W.t5.T5EncoderModel)
        te.text_len, te.dtype, te.device = cfg["text_len"], bf16, host  # config.t5_dtype; constructor's device
        te.checkpoint_path = te.tokenizer_path = None
        ctor = lambda: W.t5.T5Encoder(  # noqa: E731 - umt5_xxl(encoder_only=True) with the config's widths
            vocab=t5.get("vocab_size", 256384),
            dim=t5.get("dim", 4096),
            dim_attn=t5.get("dim_attn", 4096),
            dim_ffn=t5.get("dim_ffn", 10240),
            num_heads=t5.get("num_heads", 64),
            num_layers=t5.get("num_layers", 24),
            num_buckets=32,
            shared_pos=False,
            dropout=0.1,
        )
        te.model = common.torch_build(ctor, dev, bf16, a.seed + 100).requires_grad_(False)
        te.model = te.model.to(dev if resident else host)
        te.tokenizer = W.tokenizers.HuggingfaceTokenizer(
            name=str(TOKENIZER), seq_len=cfg["text_len"], clean="whitespace"
        )
        obj.text_encoder = te
        info["t5_gib"] = common.torch_nbytes(te.model) / GIB
    else:
        obj.text_encoder = InjectedText(contexts, dev)

    va = cfg["vae"]["args"]
    vae_kw = dict(dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], dropout=0.0)
    real_video_vae = W.vae2_2._video_vae

    def video_vae(pretrained_path=None, z_dim=48, dim=160, device="cpu", **kw):  # no checkpoint: random weights
        kw = {**vae_kw, **kw, "dec_dim": va.get("dec_dim", 256)}
        return common.torch_build(
            lambda: W.vae2_2.WanVAE_(dim=dim, z_dim=z_dim, **kw), dev, torch.float32, a.seed + 200
        )

    W.vae2_2._video_vae = video_vae
    try:
        obj.vae = W.vae2_2.Wan2_2_VAE(c_dim=va.get("dim", 160), vae_pth=None, device=dev)
    finally:
        W.vae2_2._video_vae = real_video_vae
    info["vae_gib"] = common.torch_nbytes(obj.vae.model) / GIB

    dit_dtype = torch.float32 if (a.official_fp32_dit or not cuda) else bf16
    dctor = lambda: W.model.WanModel(  # noqa: E731 - WanModel.from_pretrained's config.json values
        model_type="ti2v",
        patch_size=(1, 2, 2),
        text_len=cfg["text_len"],
        in_dim=d["in_dim"],
        dim=d["dim"],
        ffn_dim=d["ffn_dim"],
        freq_dim=256,
        text_dim=d.get("text_dim", 4096),
        out_dim=d["out_dim"],
        num_heads=d["num_heads"],
        num_layers=d["num_layers"],
        window_size=(-1, -1),
        qk_norm=True,
        cross_attn_norm=True,
        eps=1e-6,
    )
    m = common.torch_build(dctor, dev, dit_dtype, a.seed + 300)
    hd = d["dim"] // d["num_heads"]  # the constructor's RoPE table is a plain attribute (left on meta)
    m.freqs = torch.cat(
        [
            W.model.rope_params(1024, hd - 4 * (hd // 6)),
            W.model.rope_params(1024, 2 * (hd // 6)),
            W.model.rope_params(1024, 2 * (hd // 6)),
        ],
        dim=1,
    )
    m = m.to(host) if not resident else m
    obj.model = obj._configure_model(
        model=m, use_sp=False, dit_fsdp=False, shard_fn=None, convert_model_dtype=not a.official_fp32_dit and cuda
    )
    info["dit_gib"] = common.torch_nbytes(obj.model) / GIB
    info["dit_dtype"] = str(next(obj.model.parameters()).dtype)
    info["build_s"] = time.perf_counter() - t0
    return obj, ti2v_mod, info


def run_official(cfg: dict, a, frames: int, height: int, width: int, contexts) -> dict:
    dev = common.torch_device()
    obj, ti2v_mod, info = build_official(cfg, a, dev, contexts)
    real_attention = info.pop("_flash_attention")
    common.release_memory()
    tl = Timeline(dev)
    te = obj.text_encoder
    if not isinstance(te, InjectedText):
        _wrap(tl, te.model, "to", "t5_to_device", "t5_on_device")
        _wrap(tl, te.model, "cpu", "t5_to_host", "t5_on_host")
    _wrap(tl, obj.vae, "encode", "encode_start", "encode_end")
    _wrap(tl, obj.vae, "decode", "decode_start", "decode_end")
    _wrap(tl, obj.model, "to", "dit_to_device", "dit_on_device")
    _wrap(tl, obj.model, "cpu", "dit_to_host", "dit_on_host")
    _wrap(tl, obj.model, "forward", "forward_start", "forward_end")
    seen = {}
    fwd = obj.model.forward

    def forward(x, t, context, seq_len, y=None):
        seen.setdefault("seq_len", int(seq_len))
        seen.setdefault("latent", list(x[0].shape))
        return fwd(x, t, context, seq_len, y)

    obj.model.forward = forward
    sched = ti2v_mod.FlowUniPCMultistepScheduler
    real_step = sched.step

    def step(self, *args, **kw):
        out = real_step(self, *args, **kw)
        tl.mark("step_end")
        return out

    real_sync = torch.cuda.synchronize
    if dev.type != "cuda":  # generate() synchronises after the offload; nothing to wait for on a CPU
        torch.cuda.synchronize = lambda device=None: None
    img = None
    if a.case == "ti2v":
        from PIL import Image

        img = Image.open(IMAGES / "astronaut.png").convert("RGB")  # generate.py: Image.open(...).convert("RGB")
    sched.step = step
    try:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tl.mark("start")
        if True:  # generate() takes no_grad itself (modules have requires_grad off), as generate.py calls it
            video = obj.generate(
                PROMPT,
                img=img,
                size=(width, height),
                max_area=width * height,
                frame_num=frames,
                shift=5.0,
                sample_solver="unipc",
                sampling_steps=a.steps,
                guide_scale=5.0,
                n_prompt="",
                seed=a.seed,
                offload_model=a.official_offload == "true",
            )
        tl.mark("end")
    finally:
        sched.step = real_step
        torch.cuda.synchronize = real_sync
    out_shape = list(video.shape)
    del video
    ev = tl.events
    text_end = tl.first("encode_start", "dit_to_device", "forward_start")
    enc_s, enc_e = tl.first("encode_start"), tl.first("encode_end")
    dec_s = tl.first("decode_start")
    end = len(ev) - 1
    phases = {"text": tl.span(0, text_end)}
    if enc_s is not None:
        phases["encode"] = tl.span(enc_s, enc_e)
    phases["denoise"] = tl.span(enc_e if enc_e is not None else text_end, dec_s)
    phases["decode"] = tl.span(dec_s, end)
    loop0 = ev[tl.first("forward_start")][1]
    ends = [t for n, t, _ in ev if n == "step_end"]
    steps = [b - t for t, b in zip([loop0, *ends], ends)]
    moves = {}
    for what in ("t5_to_device", "t5_to_host", "dit_to_device", "dit_to_host"):
        i = tl.first(what)
        if i is not None:
            moves[what + "_s"] = ev[i + 1][1] - ev[i][1]
    record = dict(
        phases=phases,
        whole_s=ev[end][1] - ev[0][1],
        step_s=steps,
        peak_gib=max(p["peak_gib"] or 0 for p in phases.values()),
        peak_how="torch.cuda.max_memory_allocated" if dev.type == "cuda" else "VmHWM (absolute, CPU)",
        transfers=moves,
        output_shape=out_shape,
        tokens=seen.get("seq_len"),
        latent=seen.get("latent"),
        torch_device=str(dev),
        torch_version=torch.__version__,
        **info,
    )
    record["whole_50_s"] = _project(record["whole_s"], steps)
    del obj
    sys.modules["wan.modules.model"].flash_attention = real_attention
    common.release_memory()
    return record


def _project(whole: float, steps: list[float]) -> float:
    """The run with 50 steps: its steps replaced by the first + 49 x the median of the others."""
    if not steps:
        return whole
    rest = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    return whole - sum(steps) + steps[0] + 49 * rest


def _e2e_cmd(a, inject: bool, steps: int, layers: int | None, out: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.e2e", "--size", a.size, "--case", a.case, "--steps", str(steps)]
    cmd += ["--vae-dtype", a.mlx_vae_dtype]
    if out is not None:
        cmd += ["--out", str(out)]
    if not a.mlx_batch_cfg:
        cmd.append("--sequential-cfg")
    if inject:
        cmd.append("--inject-context")
    if a.official_offload == "false":
        cmd.append("--no-offload")
    if layers is not None:
        cmd += ["--layers", str(layers)]
    if a.video:
        cmd += ["--video", a.video]
    return cmd


def run_mlx(a, inject: bool) -> dict:
    """benchmarks.e2e in a subprocess; returns its record plus the whole-run numbers on s_net."""
    out = Path(tempfile.mkdtemp(prefix="e2e_official_")) / "mlx.json"
    cmd = _e2e_cmd(a, inject, a.steps, a.layers, out)
    env = dict(os.environ)
    env.pop("OUT", None)  # the subprocess's bench.jsonl line would duplicate ours
    warm_s = None
    if a.mlx_warmup:  # the same run with 1 block and 1 step first: MLX's CUDA kernels compile on first use
        t0 = time.perf_counter()
        w = subprocess.run(_e2e_cmd(a, inject, 1, 1, None), env=env, capture_output=True, text=True)
        warm_s = time.perf_counter() - t0
        print(f"  mlx warm-up run (1 block, 1 step, discarded): {warm_s:.1f} s, rc {w.returncode}", flush=True)
    print("  mlx: " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.e2e failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r = json.loads(out.read_text())
    phases = {k: dict(s=v["s_net"], peak_gib=v["mlx_peak_gib"], draw_s=v["draw_s"]) for k, v in r["phases"].items()}
    steps = list(r["step_s"])
    if steps:  # the DiT is drawn inside the first step's time: take it out
        steps[0] = max(0.0, steps[0] - r["phases"]["denoise"]["draw_s"])
    whole = sum(phases[k]["s"] for k in ("plan", *PHASES) if k in phases)
    return dict(
        phases=phases,
        whole_s=whole,
        whole_50_s=_project(whole, steps),
        step_s=steps,
        peak_gib=max(p["peak_gib"] for k, p in phases.items() if k != "write"),
        peak_how="mx.get_peak_memory",
        e2e=r,
        command=" ".join(cmd[1:]),
        warmup_run_s=warm_s,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(VIDEO), default="tiny")
    p.add_argument("--case", choices=CASES, default="ti2v")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 3 full, 2 tiny)")
    p.add_argument("--layers", type=int, default=None, help="DiT blocks on both sides (default: all)")
    p.add_argument("--video", default=None, help="FxHxW, overrides the size preset")
    p.add_argument("--inject-context", action="store_true", help="random text contexts on both sides; no UMT5")
    p.add_argument(
        "--official-offload",
        choices=("true", "false"),
        default="true",
        help="true: generate.py's one-GPU default (offload_model=True, init_on_cpu=True); false: all resident",
    )
    p.add_argument("--official-fp32-dit", action="store_true", help="float32 DiT weights (convert_model_dtype off)")
    p.add_argument("--mlx-vae-dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--mlx-batch-cfg", action="store_true", help="our CFG branches batched (default: sequential)")
    p.add_argument(
        "--mlx-warmup",
        action="store_true",
        help="run our side once with 1 block and 1 step first (discarded): kernel compilation on a cold machine",
    )
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-mlx", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args(argv)
    a.steps = a.steps or (3 if a.size == "full" else 2)
    frames, height, width = tuple(int(v) for v in a.video.split("x")) if a.video else VIDEO[a.size]
    cfg = wan_config("ti2v-5B", narrow=a.size == "tiny", layers=a.layers)
    inject = a.inject_context or not have_tokenizer()
    contexts = None
    if inject:
        rng = np.random.default_rng(a.seed)
        text_dim = cfg["dit"].get("text_dim", 4096)
        contexts = [(rng.standard_normal((n, text_dim)) * 0.1).astype(np.float32) for n in CONTEXT_TOKENS]
    config = dict(
        case=a.case,
        size=a.size,
        video=f"{frames}x{height}x{width}",
        steps=a.steps,
        layers=cfg["dit"]["num_layers"],
        widths="narrow" if a.size == "tiny" else "real",
        inject_context=inject,
        official_offload=a.official_offload,
    )
    print("[wan_e2e_official] " + " ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    sides = {}
    if not a.skip_reference:
        sides["official"] = run_official(cfg, a, frames, height, width, contexts)
        print(f"  official: whole {sides['official']['whole_s']:.2f} s", flush=True)
        common.release_memory()  # the official modules (kept alive by the wrappers' cycles until now) leave the GPU
    if not a.skip_mlx:
        sides["mlx"] = run_mlx(a, inject)
        print(f"  mlx:      whole {sides['mlx']['whole_s']:.2f} s", flush=True)
    record = dict(
        bench="wan_e2e_official",
        **config,
        **sides,
        host=platform.node(),
        time=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    if len(sides) == 2:
        o, m = sides["official"], sides["mlx"]
        ratio = {k: m["phases"][k]["s"] / o["phases"][k]["s"] for k in PHASES if k in o["phases"] and k in m["phases"]}
        ratio["whole"] = m["whole_s"] / o["whole_s"]
        ratio["whole_50"] = m["whole_50_s"] / o["whole_50_s"]
        if o["step_s"] and m["step_s"]:
            ratio["step"] = _median_step(m["step_s"]) / _median_step(o["step_s"])
        record["ratio_mlx_over_official"] = ratio
    common.write_json(a.out, record)
    common.append_jsonl(record)
    _table(record)
    return record


def _median_step(steps):
    return statistics.median(steps[1:]) if len(steps) > 1 else steps[0]


def _table(r: dict) -> None:
    sides = [s for s in ("official", "mlx") if s in r]
    print(
        f"\n== wan_e2e_official: TI2V-5B {r['case']}, {r['video']}, {r['steps']} steps, {r['layers']} blocks "
        f"({r['widths']} widths), {'injected contexts' if r['inject_context'] else 'UMT5'}, official offload "
        f"{r['official_offload']}"
    )
    if "official" in r:
        o = r["official"]
        tr = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in o["transfers"].items()) or "none"
        print(
            f"official: WanTI2V.generate, DiT {o['dit_dtype']}, torch {o['torch_version']} on {o['torch_device']}, "
            f"host<->GPU copies inside the run: {tr}"
            + (f"; stand-ins: {', '.join(o['stubbed'])}" if o["stubbed"] else "")
        )
    if "mlx" in r:
        print(
            f"mlx: {r['mlx']['command']} (phases net of weight drawing; plan {r['mlx']['phases']['plan']['s']:.2f} s)"
        )
    toks = [f"{s} {r[s]['tokens'] if s == 'official' else r[s]['e2e']['tokens']}" for s in sides]
    print("DiT tokens: " + ", ".join(toks))
    ratio = r.get("ratio_mlx_over_official", {})
    head = f"{'phase':<10}" + "".join(f"{s + ' s':>13}" for s in sides) + (f"{'mlx/off':>9}" if ratio else "")
    head += "".join(f"{s + ' GiB':>14}" for s in sides)
    print(head)
    rows = [(k, k) for k in PHASES] + [("step", "step"), ("whole", "whole"), ("whole 50", "whole_50")]
    for label, key in rows:
        vals, mems = [], []
        for s in sides:
            d = r[s]
            if key in PHASES:
                ph = d["phases"].get(key)
                vals.append(None if ph is None else ph["s"])
                mems.append(None if ph is None else ph["peak_gib"])
            elif key == "step":
                vals.append(_median_step(d["step_s"]) if d["step_s"] else None)
                mems.append(None)
            else:
                vals.append(d[key + "_s"])
                mems.append(d["peak_gib"] if key == "whole" else None)
        if all(v is None for v in vals):
            continue
        row = f"{label:<10}" + "".join(f"{'-' if v is None else f'{v:.3f}':>13}" for v in vals)
        if ratio:
            row += f"{(f'{ratio[key]:.2f}x' if key in ratio else '-'):>9}"
        row += "".join(f"{'' if g is None else f'{g:.2f}':>14}" for g in mems)
        print(row)
    if ratio:
        verdict = "meets" if ratio["whole_50"] <= 0.7 else "misses"
        print(f"whole 50-step run MLX/official {ratio['whole_50']:.2f} ({verdict} the issue's <= 0.7 target)")


if __name__ == "__main__":
    main()
