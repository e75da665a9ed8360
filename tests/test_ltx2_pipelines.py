"""LTX-2 pipelines (distilled, dev, dev-two-stage, dev-two-stage-hq) against ltx-pipelines 1.0.0's
building blocks, end to end on tiny random components, audio + video, with a first-frame anchor
and an end-frame guide.

The reference side drives ltx-pipelines' own helpers and loops exactly as the official pipeline
classes compose them (``combined_image_conditionings`` from PNG files with CRF 0,
``denoise_audio_video`` with ``GaussianNoiser``, ``euler_denoising_loop`` /
``res2s_audio_video_denoising_loop``, ``simple_denoising_func`` /
``multi_modal_guider_denoising_func``, ``X0Model``, ltx-core ``upsample_video``, decoder, ``decode_audio``).
Both sides get the same random weights (through our sanitize + strict loaders), the same text
contexts and the same noise (the GaussianNoiser's draws and res2s's SDE noise are injected).
States are float32 on both sides (the reference pipelines use bf16).

Tiny sizes: 17 frames, output 128x192 (stage 1 64x96 -> latent 3x2x3), video latent 8 channels,
audio latent 2 channels x 16 mel bins (the reference's audio shape helper is patched from its
hard-wired 8 x 16), 2-layer transformers.
"""

from __future__ import annotations

import types

import ltx_core.components.noisers as ltx_noisers
import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.components.patchifiers import VideoLatentPatchifier
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.conditioning import VideoConditionByKeyframeIndex
from ltx_core.model.audio_vae import AudioDecoderConfigurator, VocoderConfigurator
from ltx_core.model.audio_vae import decode_audio as ref_decode_audio
from ltx_core.model.transformer import X0Model
from ltx_core.model.upsampler import LatentUpsamplerConfigurator
from ltx_core.model.upsampler import upsample_video as ref_upsample_video
from ltx_core.tools import VideoLatentTools
from ltx_core.types import AudioLatentShape, VideoLatentShape, VideoPixelShape
from ltx_pipelines.utils.args import ImageConditioningInput
from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
from ltx_pipelines.utils.helpers import (
    combined_image_conditionings,
    denoise_audio_video,
    multi_modal_guider_denoising_func,
    simple_denoising_func,
)
from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop
from ltx_pipelines.utils.types import PipelineComponents
from PIL import Image

from mlx_video.io.images import load_image, to_uint8
from mlx_video.io.weights import load_strict
from mlx_video.ltx2 import audio_vae as av
from mlx_video.ltx2 import conditioning as cond
from mlx_video.ltx2 import pipelines as pipelines_mod
from mlx_video.ltx2 import upsampler as up
from mlx_video.ltx2 import vocoder as vc
from mlx_video.ltx2.denoise import TextContext
from mlx_video.ltx2.pipelines import (
    ImageCondition,
    LTX2Components,
    LTXSettings,
    decode_video,
    default_guidance,
    generate,
    plan_stages,
)
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, sanitize
from mlx_video.ltx2.video_vae import VideoVAE
from mlx_video.ltx2.video_vae import sanitize as vae_sanitize
from mlx_video.sampling.guidance import GuidanceParams
from tests.ltx_tiny import audio_vae_config, transformer_config, vocoder_config
from tests.oracles import ltx_core_transformer, randomize_, rel_err
from tests.test_ltx2_video_vae import LTX2_DEC, LTX2_ENC, single_file, torch_vae, vae_config

TOL = 1e-3  # whole tiny pipelines in float32 (docs/ORACLES.md)
C, AZ, AF = 8, 2, 16  # video latent channels; audio latent channels x mel bins (tokens 32 wide)
FRAMES, FPS, H, W, S = 17, 24.0, 128, 192, 5
ANCHOR_STRENGTH, GUIDE_STRENGTH, GUIDE_FRAME = 0.9, 0.8, FRAMES - 1
VG = GuidanceParams(cfg_scale=3.0, stg_scale=1.0, stg_blocks=(1,), rescale_scale=0.7, modality_scale=3.0)
AG = GuidanceParams(cfg_scale=7.0, stg_scale=1.0, stg_blocks=(1,), rescale_scale=0.7, modality_scale=3.0)
HQ_VG = GuidanceParams(cfg_scale=3.0, rescale_scale=0.45, modality_scale=3.0)  # the HQ preset shape (no STG)
HQ_AG = GuidanceParams(cfg_scale=7.0, rescale_scale=1.0, modality_scale=3.0)
AUDIO_CFG = audio_vae_config(ch=AZ * AF, z_channels=AZ, mel_bins=64, resolution=64)
VOC_CFG = vocoder_config([3], [[1, 3, 5]])


def tmx(t: torch.Tensor) -> mx.array:
    return mx.array(t.detach().float().numpy())


def _transformers(flavour: str, seed: int):
    """(ltx-core X0Model, ours) with the same random weights, ours loaded from the single-file layout."""
    cfg = transformer_config(
        flavour, in_channels=C, out_channels=C, audio_in_channels=AZ * AF, audio_out_channels=AZ * AF
    )
    a = LTXModelArgs.from_config(cfg)
    ref = ltx_core_transformer(a)
    randomize_(ref.eval(), seed=seed)
    w = {"model.diffusion_model." + k: tmx(v) for k, v in ref.state_dict().items()}
    ours = load_strict(LTXModel(a), sanitize(w, "lightricks"), "ltx2 transformer")
    return X0Model(ref).eval(), ours


def audio_vae_file(module, stats: dict, part: str) -> dict:
    """Set the per-channel statistics of ltx-core's audio ``part`` (encoder or decoder) ``module`` to
    ``stats``; its weights as they sit in the single file (``audio_vae.{part}.*`` and the statistics)."""
    with torch.no_grad():
        for k, v in stats.items():
            module.per_channel_statistics.get_buffer(k).copy_(v)
    w = {f"audio_vae.per_channel_statistics.{k}": tmx(v) for k, v in stats.items()}
    w.update({f"audio_vae.{part}.{k}": tmx(v) for k, v in module.state_dict().items() if "per_channel" not in k})
    return w


@pytest.fixture(scope="module")
def parts():
    """Reference modules and our components built from the same weights (both flavours)."""
    torch.manual_seed(0)
    vcfg = vae_config(LTX2_ENC, LTX2_DEC, "reflect")
    enc, dec = torch_vae(vcfg, 0)
    vae = VideoVAE.from_weights(vae_sanitize(single_file(enc, dec), "lightricks"), vcfg)
    ups = LatentUpsamplerConfigurator.from_config(dict(in_channels=C, mid_channels=32, num_blocks_per_stage=1)).eval()
    randomize_(ups, seed=3, fan_in=True)
    ours_up = load_strict(
        up.LatentUpsampler(up.UpsamplerArgs.from_config(dict(in_channels=C, mid_channels=32, num_blocks_per_stage=1))),
        up.sanitize({k: tmx(v) for k, v in ups.state_dict().items()}),
        "upsampler",
    )
    adec = randomize_(AudioDecoderConfigurator.from_config(AUDIO_CFG).eval(), 4, fan_in=True)
    g = torch.Generator().manual_seed(5)
    stats = {
        "std-of-means": 0.5 + torch.rand(AZ * AF, generator=g),
        "mean-of-means": 0.3 * torch.randn(AZ * AF, generator=g),
    }
    ours_adec = load_strict(
        av.AudioDecoder(av.AudioVAEArgs.from_config(AUDIO_CFG)),
        av.sanitize(audio_vae_file(adec, stats, "decoder"), "lightricks", "decoder"),
        "audio decoder",
    )
    voc = randomize_(VocoderConfigurator.from_config(VOC_CFG).eval(), 6, fan_in=True)
    ours_voc = vc.vocoder_from_config(VOC_CFG)
    load_strict(
        ours_voc, vc.sanitize({"vocoder." + k: tmx(v) for k, v in voc.state_dict().items()}, "lightricks"), "vocoder"
    )
    models = {f: (_transformers(f, 10), _transformers(f, 20)) for f in ("ltx2", "ltx23")}
    ref = types.SimpleNamespace(enc=enc, dec=dec, ups=ups, adec=adec, voc=voc)
    ours = types.SimpleNamespace(vae=vae, ups=ours_up, adec=ours_adec, voc=ours_voc)
    return ref, ours, models


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two PNGs of another aspect (96x160) than the output, so cover-resize + crop is exercised."""
    d = tmp_path_factory.mktemp("imgs")
    g = np.random.default_rng(7)
    paths = []
    for i in range(2):
        y, x = np.mgrid[0:96, 0:160]
        base = np.stack([x * 1.5, y * 2.5, (x + y) * (1 + i)], -1) % 256
        img = np.clip(base + g.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        p = d / f"im{i}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    return paths


def contexts(flavour: str, seed: int = 11):
    g = np.random.default_rng(seed)
    dv = 16 if flavour == "ltx2" else 32
    return [
        (g.standard_normal((1, S, dv)).astype(np.float32), g.standard_normal((1, S, 16)).astype(np.float32))
        for _ in range(2)
    ]


class NoiseBank:
    """Named standard-normal arrays shared by both sides (res2s noise standardised like the reference)."""

    def __init__(self, seed: int = 0):
        self.seed, self.arrays = seed, {}

    def __call__(self, name: str, shape: tuple) -> mx.array:
        if name not in self.arrays:
            g = np.random.default_rng([self.seed, *name.encode()])
            n = g.standard_normal(shape)
            if ".res2s." in name:  # reference _get_new_noise: global then per-batch standardisation (float64)
                n = (n - n.mean()) / n.std(ddof=1)
                n = (n - n.mean(axis=(-2, -1), keepdims=True)) / n.std(axis=(-2, -1), keepdims=True, ddof=1)
            self.arrays[name] = n.astype(np.float32)
        assert self.arrays[name].shape == tuple(shape), (name, self.arrays[name].shape, shape)
        return mx.array(self.arrays[name])


# ----------------------------------------------------------------------------- reference driver


def reference_setup(monkeypatch, bank: NoiseBank):
    """What every official-pipeline driver below needs: float32 CPU ``PipelineComponents`` for the tiny
    latent width, the tiny audio latent shape, and a ``GaussianNoiser`` whose draws come from ``bank``
    (``stage{k}.video`` then ``stage{k}.audio``; set ``stage["k"]`` and reset ``stage["draws"]`` per stage).
    Returns (components, noiser, stage)."""
    comp = PipelineComponents(dtype=torch.float32, device="cpu")
    comp.video_latent_channels = C
    orig_audio_shape = AudioLatentShape.from_video_pixel_shape
    monkeypatch.setattr(
        AudioLatentShape,
        "from_video_pixel_shape",
        staticmethod(lambda shape, **kw: orig_audio_shape(shape, channels=AZ, mel_bins=AF)),
    )
    stage = {"k": 0, "draws": 0}

    def randn(*shape, **kw):  # GaussianNoiser's draw: stage k video, then audio
        name = f"stage{stage['k']}.{('video', 'audio')[stage['draws'] % 2]}"
        stage["draws"] += 1
        return torch.from_numpy(np.array(bank(name, tuple(shape))))

    monkeypatch.setattr(ltx_noisers, "torch", types.SimpleNamespace(randn=randn))
    return comp, GaussianNoiser(generator=torch.Generator().manual_seed(0)), stage


def recording_stepper(steps_out: list):
    """ltx-core's Euler stepper that appends every step's output to ``steps_out``."""

    class Recording(EulerDiffusionStep):
        def step(self, sample, denoised, sigmas, step_index):
            out = super().step(sample, denoised, sigmas, step_index)
            steps_out.append(out.clone())
            return out

    return Recording


def record_our_steps(monkeypatch, steps_out: list) -> None:
    """Our Euler step (``mlx_video.ltx2.denoise.euler_step_x0``) appending every output to ``steps_out``."""
    import mlx_video.ltx2.denoise as our_denoise

    orig = our_denoise.euler_step_x0

    def rec(x, d, s, s_next):
        out = orig(x, d, s, s_next)
        steps_out.append(out)
        return out

    monkeypatch.setattr(our_denoise, "euler_step_x0", rec)


def run_reference(pipeline, ref, models, ctx, paths, bank: NoiseBank, steps, monkeypatch, record=None):
    """The official pipeline's __call__ body with tiny modules, float32 and injected noise."""
    (t1, _), (t2, _) = models
    (vp, ap), (vn, an) = [(torch.from_numpy(v), torch.from_numpy(a)) for v, a in ctx]
    comp, noiser, stage = reference_setup(monkeypatch, bank)
    res2s_calls = {}

    def new_noise(latent, generator):  # res2s SDE noise, by generator (substep seed 9999) and call order
        kind = "substep" if generator.initial_seed() == 9999 else "step"
        n = res2s_calls.get(kind, 0)
        res2s_calls[kind] = n + 1
        name = f"stage{stage['k']}.res2s.{n // 2}.{kind}.{('video', 'audio')[n % 2]}"
        return torch.from_numpy(np.array(bank(name, tuple(latent.shape)))).double()

    def wrap(x0model):
        if record is None:
            return x0model

        def call(video, audio, perturbations):
            record.append((video.positions.clone(), audio.positions.clone()))
            return x0model(video=video, audio=audio, perturbations=perturbations)

        return call

    def loop(transformer, guided, hq):
        def fn(sigmas, video_state, audio_state, stepper):
            if guided:
                gv, ga = (HQ_VG, HQ_AG) if hq else (VG, AG)
                p = lambda g: MultiModalGuiderParams(
                    cfg_scale=g.cfg_scale,
                    stg_scale=g.stg_scale,  # noqa: E731
                    stg_blocks=list(g.stg_blocks),
                    rescale_scale=g.rescale_scale,
                    modality_scale=g.modality_scale,
                )
                den = multi_modal_guider_denoising_func(
                    MultiModalGuider(p(gv), vn), MultiModalGuider(p(ga), an), vp, ap, wrap(transformer)
                )
            else:
                den = simple_denoising_func(vp, ap, wrap(transformer))
            if hq:
                res2s_calls.clear()
                return res2s_audio_video_denoising_loop(
                    sigmas, video_state, audio_state, stepper, den, new_noise_fn=new_noise, model_dtype=torch.float32
                )
            return euler_denoising_loop(sigmas, video_state, audio_state, stepper, den)

        return fn

    def stage_run(k, h, w, sigmas, transformer, guided, hq, noise_scale=1.0, init_v=None, init_a=None):
        stage.update(k=k, draws=0)
        images = [
            ImageConditioningInput(paths[0], 0, ANCHOR_STRENGTH, 0),
            ImageConditioningInput(paths[1], GUIDE_FRAME, GUIDE_STRENGTH, 0),
        ]
        conds = combined_image_conditionings(images, h, w, ref.enc, torch.float32, "cpu")
        shape = VideoPixelShape(batch=1, frames=FRAMES, width=w, height=h, fps=FPS)
        stepper = Res2sDiffusionStep() if hq else EulerDiffusionStep()
        return denoise_audio_video(
            shape,
            conds,
            noiser,
            sigmas,
            stepper,
            loop(transformer, guided, hq),
            comp,
            torch.float32,
            "cpu",
            noise_scale=noise_scale,
            initial_video_latent=init_v,
            initial_audio_latent=init_a,
        )

    hq = pipeline == "dev-two-stage-hq"
    with torch.no_grad():
        if pipeline == "dev":
            sig = LTX2Scheduler().execute(steps=steps).float()
            vs, as_ = stage_run(1, H // 2, W // 2, sig, t1, True, False)
            stages = [(vs.latent, as_.latent)]
        else:
            if pipeline == "distilled":
                sig, guided, second = torch.tensor(DISTILLED_SIGMA_VALUES), False, t1
            elif hq:
                empty = torch.empty(
                    VideoLatentShape.from_pixel_shape(VideoPixelShape(1, FRAMES, H // 2, W // 2, FPS)).to_torch_shape()
                )
                sig, guided, second = LTX2Scheduler().execute(latent=empty, steps=steps).float(), True, t2
            else:
                sig, guided, second = LTX2Scheduler().execute(steps=steps).float(), True, t2
            vs, as_ = stage_run(1, H // 2, W // 2, sig, t1, guided, hq)
            stages = [(vs.latent, as_.latent)]
            upscaled = ref_upsample_video(vs.latent[:1], ref.enc, ref.ups)
            s2 = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES)
            vs, as_ = stage_run(2, H, W, s2, second, False, hq, noise_scale=s2[0], init_v=upscaled, init_a=as_.latent)
            stages.append((vs.latent, as_.latent))
        video = ref.dec(vs.latent)
        audio = ref_decode_audio(as_.latent, ref.adec, ref.voc)
    return stages, video, audio


# ----------------------------------------------------------------------------- ours


FLAVOUR = {"distilled": "ltx23", "dev": "ltx2", "dev-two-stage": "ltx2", "dev-two-stage-hq": "ltx23"}
STEPS = {"distilled": None, "dev": 3, "dev-two-stage": 2, "dev-two-stage-hq": 2}


def ours_comps(pipeline, ours, models):
    (_, m1), (_, m2) = models
    return LTX2Components(
        m1,
        ours.vae,
        ours.adec,
        ours.voc,
        ours.ups,
        stage2_transformer=None if pipeline == "distilled" else (lambda: m2),
    )


def run_ours(pipeline, ours, models, ctx, paths, bank, images=None, comps=None, **kw):
    comps = comps or ours_comps(pipeline, ours, models)
    hq = pipeline == "dev-two-stage-hq"
    h, w = (H // 2, W // 2) if pipeline == "dev" else (H, W)
    guided = pipeline != "distilled"
    s = LTXSettings(
        pipeline,
        height=h,
        width=w,
        num_frames=FRAMES,
        fps=FPS,
        steps=STEPS[pipeline],
        video_guidance=(HQ_VG if hq else VG) if guided else None,
        audio_guidance=(HQ_AG if hq else AG) if guided else None,
        image_crf=0,
    )  # the reference's CRF 0
    if images is None:
        images = [
            ImageCondition(pixels(paths[0]), 0, ANCHOR_STRENGTH),
            ImageCondition(pixels(paths[1]), GUIDE_FRAME, GUIDE_STRENGTH),
        ]
    (vp, ap), (vn, an) = ctx
    return generate(
        comps,
        s,
        TextContext(mx.array(vp), mx.array(ap)),
        TextContext(mx.array(vn), mx.array(an)),
        images,
        noise=bank,
        **kw,
    )


def pixels(path):  # uint8 RGB [H, W, 3], as ImageCondition takes it
    return np.asarray(load_image(path), dtype=np.uint8)


def to_ref_video(x):  # MLX [B, F, h, w, C] -> torch layout numpy [B, C, F, h, w]
    return np.array(x).transpose(0, 4, 1, 2, 3)


def to_ref_audio(x):  # MLX tokens [B, t, z*F'] -> reference (B, z, t, F')
    return np.array(x).reshape(x.shape[0], x.shape[1], AZ, AF).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("pipeline", ["distilled", "dev", "dev-two-stage", "dev-two-stage-hq"])
def test_pipeline_matches_ltx_pipelines(pipeline, parts, images, monkeypatch):
    ref, ours, all_models = parts
    models = all_models[FLAVOUR[pipeline]]
    ctx = contexts(FLAVOUR[pipeline])
    bank = NoiseBank()
    record = []
    stages, ref_video, ref_audio = run_reference(
        pipeline, ref, models, ctx, images, bank, STEPS[pipeline], monkeypatch, record
    )
    calls = []
    m1 = models[0][1]
    orig = type(m1).rope_tables

    def counting(self, vpos, apos=None):
        calls.append((np.array(vpos), np.array(apos)))
        return orig(self, vpos, apos)

    monkeypatch.setattr(type(m1), "rope_tables", counting)
    res = run_ours(pipeline, ours, models, ctx, images, bank)
    # every stage, video and audio, over all its steps
    assert len(res.stage_latents) == len(stages)
    errs = []
    for (ov, oa), (rv, ra) in zip(res.stage_latents, stages):
        errs += [rel_err(to_ref_video(ov), rv), rel_err(to_ref_audio(oa), ra)]
    video = decode_video(ours_comps(pipeline, ours, models), res.latents)  # the decode stage, before uint8
    errs += [rel_err(to_ref_video(video), ref_video), rel_err(res.audio.T, ref_audio.waveform)]
    assert max(errs) < TOL, errs
    np.testing.assert_array_equal(res.frames, to_uint8(np.array(video[0])))
    assert res.frames.dtype == np.uint8 and res.audio.dtype == np.float32 and res.peak_memory_gib > 0
    assert res.sample_rate == ref_audio.sampling_rate
    # RoPE tables: built once per stage, from the positions the reference feeds every pass (guiding
    # tokens included)
    assert len(calls) == len(stages)
    ref_positions = []
    for p in record:
        if not ref_positions or p[0].shape != ref_positions[-1][0].shape:
            ref_positions.append(p)
    assert len(ref_positions) == len(stages)
    for (vpos, apos), (rvp, rap) in zip(calls, ref_positions):
        np.testing.assert_array_equal(vpos, rvp.numpy())
        np.testing.assert_array_equal(apos, rap.numpy())
    h, w = (H // 2, W // 2) if pipeline == "dev" else (H, W)
    for (vpos, _), st in zip(
        calls, plan_stages(LTXSettings(pipeline, height=h, width=w, num_frames=FRAMES, fps=FPS, steps=STEPS[pipeline]))
    ):
        grid = cond.latent_grid(FRAMES, st.height, st.width)
        n = grid[0] * grid[1] * grid[2]
        assert vpos.shape[2] == n + grid[1] * grid[2]  # grid + one latent frame of guiding tokens
        np.testing.assert_allclose(
            vpos[0, 0, n:], [[GUIDE_FRAME / FPS, (GUIDE_FRAME + 8) / FPS]] * (vpos.shape[2] - n), rtol=1e-6
        )


def test_inputs_move_the_output(parts, images):
    """The anchor, the guide (and its position), the text and the noise each change the distilled
    result by far more than the tolerance (so the parity test can fail)."""
    ref, ours, all_models = parts
    models = all_models["ltx23"]
    ctx = contexts("ltx23")
    base = run_ours("distilled", ours, models, ctx, images, NoiseBank(), decode=False)
    anchor = ImageCondition(pixels(images[0]), 0, ANCHOR_STRENGTH)
    guide = lambda f: ImageCondition(pixels(images[1]), f, GUIDE_STRENGTH)  # noqa: E731
    variants = {
        "no guide": dict(images=[anchor]),
        "no anchor": dict(images=[guide(GUIDE_FRAME)]),
        "guide at frame 8": dict(images=[anchor, guide(8)]),
        "other noise": dict(bank=NoiseBank(1)),
        "other text": dict(ctx=contexts("ltx23", seed=12)),
    }
    for name, v in variants.items():
        out = run_ours(
            "distilled",
            ours,
            models,
            v.get("ctx", ctx),
            images,
            v.get("bank", NoiseBank()),
            images=v.get("images"),
            decode=False,
        )
        ev, ea = rel_err(out.latents, base.latents), rel_err(out.audio_latents, base.audio_latents)
        assert ev > 10 * TOL and ea > 10 * TOL, (name, ev, ea)


@pytest.mark.parametrize("frames,frame", [(121, 0), (121, 8), (121, 120), (17, 16)])
def test_keyframe_positions_match_ltx_core(frames, frame):
    """Guiding-token positions = VideoConditionByKeyframeIndex's appended positions (1.0.0: time
    [f, f+8) / fps, causal fix only at frame 0), e.g. [120, 128)/24 s for the last of 121 frames."""
    f, h, w = cond.latent_grid(frames, 512, 768)
    tools = VideoLatentTools(VideoLatentPatchifier(1), VideoLatentShape(1, 4, f, h // 2, w // 2), 24.0)
    state = tools.create_initial_state("cpu", torch.float32)
    key = torch.zeros(1, 4, 1, h // 2, w // 2)
    ref = VideoConditionByKeyframeIndex(key, frame, 1.0).apply_to(state, tools).positions[:, :, state.latent.shape[1] :]
    ours = cond.keyframe_positions(1, h // 2, w // 2, frame, 24.0)
    np.testing.assert_array_equal(ours, ref.numpy())
    np.testing.assert_array_equal(cond.video_positions(f, h // 2, w // 2, 24.0), state.positions.numpy())
    start, end = (0.0, 1.0) if frame == 0 else (frame, frame + 8.0)
    np.testing.assert_allclose(ours[0, 0, 0], [start / 24.0, end / 24.0], rtol=1e-6)


def test_defaults_and_errors(parts):
    assert default_guidance("dev", "2")[0] == 40 and default_guidance("dev", "2")[1].stg_blocks == (29,)
    assert default_guidance("dev-two-stage", "2.3")[0] == 30 and default_guidance("dev", "2.3")[1].stg_blocks == (28,)
    assert (
        default_guidance("dev-two-stage-hq", "2.3")[1].stg_scale == 0 and default_guidance("distilled", "2")[1] is None
    )
    assert [len(st.sigmas) - 1 for st in plan_stages(LTXSettings("distilled"))] == [8, 3]
    with pytest.raises(ValueError, match="8k\\+1"):
        plan_stages(LTXSettings("distilled", num_frames=120))
    with pytest.raises(ValueError, match="multiple of 64"):
        plan_stages(LTXSettings("dev-two-stage", height=480))
    with pytest.raises(ValueError, match="unknown pipeline"):
        plan_stages(LTXSettings("fast"))
    _, ours, models = parts
    m1 = models["ltx23"][0][1]
    comps = LTX2Components(m1, ours.vae, upsampler=ours.ups)
    ctx = TextContext(mx.zeros((1, S, 32)), mx.zeros((1, S, 16)))
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="outside the clip"):
        generate(
            comps,
            LTXSettings("distilled", height=H, width=W, num_frames=FRAMES),
            ctx,
            images=[ImageCondition(img, FRAMES)],
        )
    with pytest.raises(ValueError, match="uint8 RGB"):
        generate(
            comps,
            LTXSettings("distilled", height=H, width=W, num_frames=FRAMES),
            ctx,
            images=[ImageCondition(img.astype(np.float32), 0)],
        )
    with pytest.raises(ValueError, match="negative"):
        generate(
            comps,
            LTXSettings(
                "dev",
                height=64,
                width=64,
                num_frames=9,
                steps=1,
                video_guidance=dict(stg_blocks=(1,)),
                audio_guidance=dict(stg_blocks=(1,)),
            ),
            ctx,
        )
    with pytest.raises(ValueError, match="stg_blocks"):  # the official block 28 of LTX-2.3 past a 2-block model
        generate(comps, LTXSettings("dev", height=64, width=64, num_frames=9, steps=1), ctx, ctx)


def test_release_drops_the_transformers_before_the_decode(parts, images):
    """generate(release=True) (what the CLI runs) decodes the same frames and audio with the transformer(s)
    gone from the components before the decode (as ltx-pipelines deletes its transformer); they cannot run again."""
    _, ours, all_models = parts
    models, ctx = all_models["ltx23"], contexts("ltx23")
    for pipeline in ("distilled", "dev-two-stage"):
        base = run_ours(pipeline, ours, models, ctx, images, NoiseBank())
        comps = ours_comps(pipeline, ours, models)
        released = []

        def spy(c, z, real=pipelines_mod.decode_frames, seen=released):
            seen.append(c.transformer is None)
            return real(c, z)

        with pytest.MonkeyPatch.context() as mp:  # the decode runs after the release
            mp.setattr(pipelines_mod, "decode_frames", spy)
            out = run_ours(pipeline, ours, models, ctx, images, NoiseBank(), comps=comps, release=True)
        assert released == [True] and comps.stage2_transformer is None and comps.transformer_file is None
        np.testing.assert_array_equal(out.frames, base.frames)
        np.testing.assert_array_equal(out.audio, base.audio)
        with pytest.raises(ValueError, match="released"):
            run_ours(pipeline, ours, models, ctx, images, NoiseBank(), comps=comps)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture()
def tiny_cli(parts, monkeypatch):
    """`mlx_video generate` with the loaders replaced by the tiny components (loading itself is
    tested with the converter); the text encoder returns fixed contexts."""
    import mlx_video.cli.ltx2 as lcli
    import mlx_video.ltx2.loading as loading

    _, ours, models = parts
    seen = {}

    def load_components(model_dir, cfg, pipeline, lora, need_encoder):
        seen.update(pipeline=pipeline, lora=lora)
        return ours_comps(pipeline, ours, models["ltx23"])

    def encode_text(model_dir, cfg, prompt, negative):
        (vp, ap), (vn, an) = contexts("ltx23")
        seen["negative"] = negative
        return TextContext(mx.array(vp), mx.array(ap)), None if negative is None else TextContext(
            mx.array(vn), mx.array(an)
        )

    monkeypatch.setattr(
        loading,
        "resolve_ltx2_model",
        lambda model, variant, gemma=None, **kw: (seen.update(variant=variant), model)[1],
    )
    monkeypatch.setattr(loading, "read_config", lambda d: {"model_version": "2.3.0"})
    monkeypatch.setattr("mlx_video.resolve.family_of", lambda model: "ltx2")  # routing is by content, not name
    monkeypatch.setattr(lcli, "load_components", load_components)
    monkeypatch.setattr(lcli, "encode_text", encode_text)

    def run(*args):
        from typer.testing import CliRunner

        from mlx_video.cli import app

        return CliRunner().invoke(app, ["generate", "--model", "tiny-ltx", "--prompt", "a cat", *args])

    return run, seen


@pytest.mark.parametrize("pipeline", ["distilled", "dev", "dev-two-stage", "dev-two-stage-hq"])
def test_cli_writes_mp4_with_audio(pipeline, tiny_cli, images, tmp_path):
    import av as pyav

    run, seen = tiny_cli
    out = tmp_path / f"{pipeline}.mp4"
    h, w, frames = (64, 64, 9) if pipeline == "dev" else (128, 128, 9)  # small sizes the tiny VAE takes
    extra = [] if pipeline == "distilled" else ["--steps", "1", "--stg-blocks", "1"]  # the tiny model has 2 blocks
    r = run(
        "--pipeline",
        pipeline,
        "--image",
        f"{images[0]}:0:0.9",
        "--end-image",
        images[1],
        "--height",
        str(h),
        "--width",
        str(w),
        "--num-frames",
        str(frames),
        "--seed",
        "3",
        "--output-path",
        str(out),
        *extra,
    )
    assert r.exit_code == 0, r.output
    assert seen["variant"] == ("distilled" if pipeline == "distilled" else "dev")
    assert seen["lora"] == {"dev-two-stage-hq": (0.25, 0.5), "dev-two-stage": (0.0, 1.0)}.get(pipeline, (0.0, 0.0))
    assert (seen["negative"] is None) == (pipeline == "distilled")
    with pyav.open(str(out)) as f:
        kinds = {s.type for s in f.streams}
        v = f.streams.video[0]
        assert kinds == {"video", "audio"} and (v.codec_context.width, v.codec_context.height) == (w, h)
        assert sum(1 for _ in f.decode(video=0)) == frames


def test_cli_errors(tiny_cli, images, tmp_path):
    run, _ = tiny_cli
    out = str(tmp_path / "x.mp4")
    r = run("--num-frames", "16", "--output-path", out)
    assert r.exit_code == 2 and "8k+1" in r.output
    r = run(
        "--image", f"{images[0]}:17", "--num-frames", "17", "--height", "128", "--width", "192", "--output-path", out
    )
    assert r.exit_code == 2 and "outside the clip" in r.output
    r = run("--cfg-scale", "3", "--output-path", out)
    assert r.exit_code == 2 and "no guidance" in r.output
    r = run("--pipeline", "dev-fast", "--output-path", out)
    assert r.exit_code == 2 and "unknown pipeline" in r.output
    assert not (tmp_path / "x.mp4").exists()


def test_cli_helpers():
    import mlx.nn as nn

    from mlx_video.cli.ltx2 import parse_image_spec
    from mlx_video.nn.lora import merge_loras

    assert parse_image_spec("a.png") == ("a.png", 0, 1.0)
    assert parse_image_spec("d:/x/a.png:16") == ("d:/x/a.png", 16, 1.0)
    assert parse_image_spec("a.png:120:0.5") == ("a.png", 120, 0.5)
    m = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    w0 = [np.array(layer.weight) for layer in m.layers]
    a, b = mx.random.normal((4, 64)), mx.random.normal((64, 4))
    merge_loras(m, [({"layers.1.lora_A": a, "layers.1.lora_B": b}, 0.25)])
    np.testing.assert_allclose(np.array(m.layers[1].weight), w0[1] + 0.25 * np.array(b @ a), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.array(m.layers[0].weight), w0[0])
    nn.quantize(m, group_size=64, bits=8)
    before = np.array(mx.dequantize(m.layers[1].weight, m.layers[1].scales, m.layers[1].biases, 64, 8))
    merge_loras(m, [({"layers.1.lora_A": a, "layers.1.lora_B": b}, 0.25)])
    after = np.array(mx.dequantize(m.layers[1].weight, m.layers[1].scales, m.layers[1].biases, 64, 8))
    assert rel_err(after - before, 0.25 * np.array(b @ a)) < 0.05  # 8-bit re-quantization noise
