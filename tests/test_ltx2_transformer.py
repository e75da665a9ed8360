"""Parity of mlx_video.ltx2.transformer (LTX-2 / LTX-2.3 audio+video DiT) with ltx-core's LTXModel.

Tiny random models (2 layers, video 2 heads x 16, audio 2 heads x 8, caption channels 16) are built
directly (docs/ORACLES.md: configurators put caption projections on the meta device), filled by
`randomize_` (tables are torch.empty otherwise), exported in Lightricks' single-file layout
(`model.diffusion_model.*` plus keys of other modules), converted with our `sanitize` and loaded
with `load_strict`. States are float32 (ltx-core 1.0.0 casts positions to the latent dtype).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from ltx_core.guidance.perturbations import (
    BatchedPerturbationConfig,
    Perturbation,
    PerturbationConfig,
    PerturbationType,
)
from ltx_core.model.transformer import LTXModel as RefModel
from ltx_core.model.transformer import Modality as RefModality
from ltx_core.model.transformer.rope import (
    LTXRopeType,
    generate_freq_grid_np,
    generate_freq_grid_pytorch,
    precompute_freqs_cis,
)
from ltx_core.types import AudioLatentShape, VideoLatentShape
from ltx_core.utils import to_denoised

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2.transformer import LTXModel, LTXModelArgs, Modality, Perturbations, rope_table, sanitize, to_x0
from tests.ltx_tiny import transformer_config
from tests.oracles import ltx_core_positions, ltx_core_transformer, randomize_, rel_err, to_np

TOL = 3e-4  # attention-heavy stack, float32 (docs/ORACLES.md)
B, F, H, W, T_A, S = 2, 2, 2, 3, 5, 4
FPS = 24.0
SIGMA = np.array([0.7, 0.4], np.float32)


def _reference(flavour: str, video_only: bool = False, seed: int = 0) -> RefModel:
    a = LTXModelArgs.from_config(transformer_config(flavour))
    return randomize_(ltx_core_transformer(a, video_only).eval(), seed=seed)


def _lightricks_file(ref: RefModel) -> dict[str, mx.array]:
    """The reference weights as they sit in Lightricks' single file, with other modules' keys."""
    w = {"model.diffusion_model." + k: mx.array(v.detach().numpy()) for k, v in ref.state_dict().items()}
    w["model.diffusion_model.video_embeddings_connector.learnable_registers"] = mx.zeros((4, 32))
    w["model.diffusion_model.audio_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.weight"] = mx.zeros((2, 2))
    w["text_embedding_projection.aggregate_embed.weight"] = mx.zeros((3, 3))
    w["vae.per_channel_statistics.mean-of-means"] = mx.zeros((8,))
    w["audio_vae.decoder.conv_in.conv.weight"] = mx.zeros((2, 2))
    w["vocoder.conv_pre.weight"] = mx.zeros((2, 2))
    return w


def _ours(flavour: str, ref: RefModel, video_only: bool = False) -> LTXModel:
    m = LTXModel(LTXModelArgs.from_config(transformer_config(flavour), video_only=video_only))
    return load_strict(m, sanitize(_lightricks_file(ref), "lightricks", video_only=video_only), "ltx2 transformer")


def _inputs(flavour: str, appended: bool, seed: int = 1) -> dict:
    """Numpy inputs: grid (+ 3 appended guiding tokens at pixel frame 9), audio, text, per-token sigma."""
    g = np.random.default_rng(seed)
    vpos, apos = ltx_core_positions(VideoLatentShape(B, 8, F, H, W), AudioLatentShape(B, 8, T_A, 1), FPS)
    n_v = vpos.shape[2]
    mask = np.ones((B, n_v), np.float32)
    mask[:, : H * W] = 0.0  # first latent frame replaced by a clean image (timestep 0)
    if appended:  # one latent frame 1x3 of guiding tokens, time [9, 17)/fps, spatial row 0
        kpos = np.zeros((B, 3, 3, 2), np.float32)
        kpos[:, 0] = np.array([9.0, 17.0], np.float32) / np.float32(FPS)
        kpos[:, 1] = [0.0, 32.0]
        kpos[:, 2] = np.stack([np.arange(3) * 32.0, np.arange(3) * 32.0 + 32.0], -1)
        vpos = np.concatenate([vpos, kpos], axis=2)
        mask = np.concatenate([mask, np.full((B, 3), 0.25, np.float32)], axis=1)  # strength 0.75
    ctx_v = 16 if flavour == "ltx2" else 32
    ctx_a = 16
    return dict(
        v_lat=g.standard_normal((B, vpos.shape[2], 8)).astype(np.float32),
        a_lat=g.standard_normal((B, T_A, 8)).astype(np.float32),
        v_ctx=g.standard_normal((B, S, ctx_v)).astype(np.float32),
        a_ctx=g.standard_normal((B, S, ctx_a)).astype(np.float32),
        v_t=mask * SIGMA[:, None],
        a_t=np.repeat(SIGMA[:, None], T_A, 1).astype(np.float32),
        v_sigma=SIGMA,
        a_sigma=(SIGMA * 0.5).astype(np.float32),
        vpos=vpos,
        apos=apos,
    )


def _run_ref(ref: RefModel, x: dict, audio: bool = True, perturb=None):
    t = lambda k: torch.from_numpy(np.ascontiguousarray(x[k]))  # noqa: E731
    v = RefModality(latent=t("v_lat"), sigma=t("v_sigma"), timesteps=t("v_t"), positions=t("vpos"), context=t("v_ctx"))
    a = (
        RefModality(latent=t("a_lat"), sigma=t("a_sigma"), timesteps=t("a_t"), positions=t("apos"), context=t("a_ctx"))
        if audio
        else None
    )
    n = x["v_lat"].shape[0]
    p = perturb if perturb is not None else BatchedPerturbationConfig.empty(n)
    with torch.no_grad():
        return ref(v, a, p)


def _run_ours(model: LTXModel, x: dict, audio: bool = True, perturb: Perturbations | None = None):
    m = lambda k: mx.array(x[k])  # noqa: E731
    v = Modality(m("v_lat"), m("v_t"), m("v_sigma"), m("v_ctx"))
    a = Modality(m("a_lat"), m("a_t"), m("a_sigma"), m("a_ctx")) if audio else None
    rope = model.rope_tables(x["vpos"], x["apos"] if audio else None)
    ov, oa = model(v, a, rope, perturb)
    mx.eval(ov, oa) if oa is not None else mx.eval(ov)
    return ov, oa


@pytest.fixture(scope="module", params=["ltx2", "ltx23"])
def pair(request):
    ref = _reference(request.param)
    return request.param, ref, _ours(request.param, ref)


@pytest.mark.parametrize("appended", [False, True])
def test_audio_video_parity(pair, appended):
    flavour, ref, ours = pair
    x = _inputs(flavour, appended)
    rv, ra = _run_ref(ref, x)
    ov, oa = _run_ours(ours, x)
    assert rel_err(ov, rv) < TOL and rel_err(oa, ra) < TOL, (rel_err(ov, rv), rel_err(oa, ra))
    # x0 helper = X0Model's to_denoised with per-token timesteps
    x0 = to_x0(mx.array(x["v_lat"]), ov, mx.array(x["v_t"]))
    ref_x0 = to_denoised(torch.from_numpy(x["v_lat"]), rv, torch.from_numpy(x["v_t"])[..., None])
    assert rel_err(x0, ref_x0) < TOL


@pytest.mark.parametrize("flavour", ["ltx2", "ltx23"])
def test_video_only_parity(flavour):
    """A video-only model loaded from the audio+video file, as ltx-core's video-only configurator does."""
    av = _reference(flavour)
    ref = _reference(flavour, video_only=True, seed=5)
    missing, unexpected = ref.load_state_dict(av.state_dict(), strict=False)
    assert not missing and unexpected  # the audio keys are what the reference ignores
    ours = _ours(flavour, av, video_only=True)
    assert not any(k.startswith(("audio_", "av_ca_")) for k in ours.parameters())
    x = _inputs(flavour, appended=True)
    rv, _ = _run_ref(ref, x, audio=False)
    ov, oa = _run_ours(ours, x, audio=False)
    assert oa is None and rel_err(ov, rv) < TOL, rel_err(ov, rv)
    with pytest.raises(ValueError):
        _run_ours(ours, x, audio=True)


def test_audio_video_model_without_audio_input(pair):
    """The A/V model called with audio=None runs the video stream alone, as ltx-core does."""
    flavour, ref, ours = pair
    x = _inputs(flavour, appended=True)
    rv, _ = _run_ref(ref, x, audio=False)
    ov, oa = _run_ours(ours, x, audio=False)
    assert oa is None and rel_err(ov, rv) < TOL


def test_bf16_weights(pair):
    """Production numerics (bf16 weights, float32 residual / AdaLN / norms) stay close to float32."""
    flavour, ref, ours = pair
    bf16 = load_strict(LTXModel(ours.args), sanitize(_lightricks_file(ref), "lightricks"), dtype=mx.bfloat16)
    x = _inputs(flavour, appended=True)
    (ov, oa), (bv, ba) = _run_ours(ours, x), _run_ours(bf16, x)
    errs = rel_err(bv, ov), rel_err(ba, oa)  # measured 0.4-1.3 %
    assert bv.dtype == mx.float32 and max(errs) < 2e-2, errs


def _ref_perturb(items):
    kinds = {
        "video_self_attn": PerturbationType.SKIP_VIDEO_SELF_ATTN,
        "audio_self_attn": PerturbationType.SKIP_AUDIO_SELF_ATTN,
        "a2v_cross_attn": PerturbationType.SKIP_A2V_CROSS_ATTN,
        "v2a_cross_attn": PerturbationType.SKIP_V2A_CROSS_ATTN,
    }
    return BatchedPerturbationConfig(
        [
            PerturbationConfig([Perturbation(kinds[k], None if b is None else list(b)) for k, b in it.items()])
            for it in items
        ]
    )


def _batch3(x: dict) -> dict:
    """Item 0 of x repeated three times (so per-item perturbation effects can be compared)."""
    return {k: np.repeat(v[:1], 3, axis=0) for k, v in x.items()}


@pytest.mark.parametrize(
    "items",
    [
        # per item: none / STG in block 1 (video + audio self-attn) / modality isolation everywhere
        ({}, {"video_self_attn": [1], "audio_self_attn": [1]}, {"a2v_cross_attn": None, "v2a_cross_attn": None}),
        # every item perturbed: the all-skipped fast paths
        ({"video_self_attn": [0, 1], "a2v_cross_attn": [1]},) * 3,
    ],
)
def test_perturbations(pair, items):
    flavour, ref, ours = pair
    x = _batch3(_inputs(flavour, appended=True))
    rv, ra = _run_ref(ref, x, perturb=_ref_perturb(items))
    ov, oa = _run_ours(ours, x, perturb=Perturbations(items))
    assert rel_err(ov, rv) < TOL and rel_err(oa, ra) < TOL, (rel_err(ov, rv), rel_err(oa, ra))
    # the same items change as in the reference: unperturbed items keep the plain output exactly
    pv, pa = _run_ours(ours, x)
    prv, pra = _run_ref(ref, x)
    for i, it in enumerate(items):
        changed = rel_err(ov[i], pv[i]) + rel_err(oa[i], pa[i])
        ref_changed = rel_err(rv[i], prv[i]) + rel_err(ra[i], pra[i])
        assert (changed > 30 * TOL) == bool(it) and (ref_changed > 30 * TOL) == bool(it), (i, changed, ref_changed)
        if not it:
            assert changed == 0.0


def test_inputs_move_the_output(pair):
    """Positions, per-token timesteps, sigma, text, audio->video coupling: each >> tolerance."""
    flavour, _, ours = pair
    x = _inputs(flavour, appended=True)
    base_v, base_a = _run_ours(ours, x)

    def moved(**changes):
        y = dict(x, **changes)
        ov, oa = _run_ours(ours, y)
        return rel_err(ov, base_v), rel_err(oa, base_a)

    shifted = x["vpos"].copy()
    shifted[:, 0] += np.float32(1.0 / FPS)  # video one pixel frame later
    assert moved(vpos=shifted)[0] > 30 * TOL
    spatial = x["vpos"].copy()
    spatial[:, 1:] = spatial[:, 1:, ::-1]  # reversed spatial positions
    assert moved(vpos=spatial)[0] > 30 * TOL
    assert moved(apos=x["apos"] * 2)[1] > 30 * TOL
    v_t = x["v_t"].copy()
    v_t[:, -3:] = x["v_sigma"][:, None]  # guiding tokens noisy instead of strength 0.75
    assert moved(v_t=v_t)[0] > 30 * TOL
    other = _inputs(flavour, appended=True, seed=7)  # another prompt
    assert moved(v_ctx=other["v_ctx"])[0] > 30 * TOL
    assert moved(a_ctx=other["a_ctx"])[1] > 30 * TOL
    assert moved(a_lat=x["a_lat"] * 0.5)[0] > 30 * TOL  # audio -> video
    assert moved(v_lat=x["v_lat"] * 0.5)[1] > 30 * TOL  # video -> audio
    assert moved(a_sigma=x["a_sigma"] * 0.3)[0] > 30 * TOL  # video's cross modulation follows audio sigma
    if flavour == "ltx23":  # prompt AdaLN follows the modality's own sigma
        assert moved(v_sigma=x["v_sigma"] * 0.3)[0] > 30 * TOL


def test_diffusers_second_opinion():
    """LTX-2.3 flavour against diffusers' LTX2VideoTransformer3DModel (diffusers key names + config)."""
    from diffusers import LTX2VideoTransformer3DModel

    cfg = dict(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        audio_in_channels=8,
        audio_out_channels=8,
        audio_num_attention_heads=2,
        audio_attention_head_dim=8,
        audio_cross_attention_dim=16,
        num_layers=2,
        caption_channels=16,
        gated_attn=True,
        audio_gated_attn=True,
        cross_attn_mod=True,
        audio_cross_attn_mod=True,
        use_prompt_embeddings=False,
        rope_type="split",
        rope_double_precision=True,
        cross_attn_timestep_scale_multiplier=1000,
    )
    ref = randomize_(LTX2VideoTransformer3DModel(**cfg).eval(), seed=3)
    args = LTXModelArgs.from_config(dict(cfg, _class_name="LTX2VideoTransformer3DModel"))
    assert args.cross_attention_adaln and args.apply_gated_attention and not args.caption_projection
    w = {k: mx.array(v.detach().numpy()) for k, v in ref.state_dict().items()}
    ours = load_strict(LTXModel(args), sanitize(w, "diffusers"), "ltx2 transformer (diffusers)")
    x = _inputs("ltx23", appended=True)
    t = lambda k: torch.from_numpy(np.ascontiguousarray(x[k]))  # noqa: E731
    with torch.no_grad():
        out = ref(
            hidden_states=t("v_lat"),
            audio_hidden_states=t("a_lat"),
            encoder_hidden_states=t("v_ctx"),
            audio_encoder_hidden_states=t("a_ctx"),
            timestep=t("v_t") * 1000,
            audio_timestep=t("a_t") * 1000,
            sigma=t("v_sigma") * 1000,
            audio_sigma=t("a_sigma") * 1000,
            video_coords=t("vpos"),
            audio_coords=t("apos"),
            use_cross_timestep=True,
            return_dict=False,
        )
    ov, oa = _run_ours(ours, x)
    assert rel_err(ov, out[0]) < TOL and rel_err(oa, out[1]) < TOL, (rel_err(ov, out[0]), rel_err(oa, out[1]))


@pytest.mark.parametrize("float64", [True, False])
def test_rope_table_matches_reference(float64):
    x = _inputs("ltx2", appended=True)
    gen = generate_freq_grid_np if float64 else generate_freq_grid_pytorch
    cos, sin = precompute_freqs_cis(
        torch.from_numpy(x["vpos"]),
        dim=32,
        out_dtype=torch.float32,
        max_pos=[20, 2048, 2048],
        use_middle_indices_grid=True,
        num_attention_heads=2,
        rope_type=LTXRopeType.SPLIT,
        freq_grid_generator=gen,
    )
    ours = rope_table(x["vpos"], 32, 2, [20, 2048, 2048], float64=float64)
    # ours is [B, T, H, d/2], the reference [B, H, T, d/2]
    np.testing.assert_allclose(to_np(ours.cos).transpose(0, 2, 1, 3), cos.numpy(), atol=2e-6)
    np.testing.assert_allclose(to_np(ours.sin).transpose(0, 2, 1, 3), sin.numpy(), atol=2e-6)


def test_strict_loading_names_the_key():
    ref = _reference("ltx23")
    good = sanitize(_lightricks_file(ref), "lightricks")
    model = lambda: LTXModel(LTXModelArgs.from_config(transformer_config("ltx23")))  # noqa: E731
    key = "transformer_blocks.1.attn2.to_gate_logits.weight"
    cases = {
        "missing": {k: v for k, v in good.items() if k != key},
        "unused": dict(good, **{"transformer_blocks.1.attn2.extra.weight": mx.zeros((2,))}),
        "mis-shaped": dict(good, **{key: mx.zeros((3, 32))}),
    }
    for what, weights in cases.items():
        with pytest.raises(WeightsError, match=what) as e:
            load_strict(model(), weights)
        assert (key if what != "unused" else "attn2.extra.weight") in str(e.value)
    # a key of the single file that no module owns is an error, not silently dropped
    stray = dict(_lightricks_file(ref), **{"model.diffusion_model.mystery.weight": mx.zeros((1,))})
    with pytest.raises(WeightsError, match="mystery.weight"):
        load_strict(model(), sanitize(stray, "lightricks"))
    with pytest.raises(ValueError):
        sanitize(good, "comfy")


def test_config_errors():
    with pytest.raises(ValueError, match="interleaved"):
        LTXModelArgs.from_config({"transformer": {"num_layers": 2}})  # ltx-core 1.0.0 default rope
    with pytest.raises(ValueError, match="ff_bias"):
        LTXModelArgs.from_config({"rope_theta": 10000.0, "rope_type": "split", "ff_bias": False})  # diffusers keys
    with pytest.raises(ValueError, match="unknown perturbation"):
        Perturbations(({"video_cross_attn": None},))
