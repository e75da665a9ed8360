"""LoRA loading and merging (mlx_video/nn/lora.py) on a tiny Wan DiT and a tiny LTX-2 transformer.

Wan: one random LoRA (official module names, rank 4) is written in each published format
(musubi-tuner / kohya with alpha, diffusers PEFT names, ComfyUI-style PEFT with official names,
original-key with alpha), merged into our model built through ``sanitize`` / ``load_strict``, and
checked (a) weight by weight against W + strength * alpha/rank * B @ A, (b) on a forward pass against
the official WanModel whose weights got the same delta under their official names. LTX-2: the
merged weights equal ltx-core's own ``apply_loras`` (the distilled-LoRA path, no alpha scaling).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from mlx_video.io.weights import WeightsError, save_safetensors
from mlx_video.ltx2.transformer import lora_key_map as ltx2_key_map
from mlx_video.nn.lora import OWN_NAMES, load_lora, merge_loras, parse_lora_spec, resolve_lora
from mlx_video.wan.transformer import WanModelArgs
from mlx_video.wan.transformer import lora_key_map as wan_key_map
from tests.oracles import rel_err
from tests.test_wan_transformer import (
    _BLOCK,
    _TOP,
    GRID,
    TINY,
    _rename,
    cl,
    latents,
    official,
    ours,
    run_official,
    state,
)

TOL_ATTN = 3e-4
SENS = 1e-2
RANK = 4

# official name -> our module path (the test's own table, independent of the library's key map)
TARGETS = {
    "blocks.0.self_attn.q": "blocks.0.self_attn.q",
    "blocks.1.self_attn.o": "blocks.1.self_attn.o",
    "blocks.0.cross_attn.k": "blocks.0.cross_attn.k",
    "blocks.1.cross_attn.v": "blocks.1.cross_attn.v",
    "blocks.1.ffn.0": "blocks.1.ffn.fc1",
    "blocks.0.ffn.2": "blocks.0.ffn.fc2",
    "text_embedding.0": "text_embedding.fc1",
    "time_projection.1": "time_projection",
    "head.head": "head.proj",
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ref():
    """Tiny official Wan2.2 t2v DiT (random, std 0.1) and its official state dict as MLX arrays."""
    r = official("t2v")
    return r, state(r)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    x = latents(rng)
    ctx = [rng.standard_normal((n, TINY["text_dim"])).astype(np.float32) for n in (9,)]
    return x, np.array([700.0], np.float32), ctx


def random_lora(sd: dict, seed: int, targets=TARGETS, std=0.1) -> dict:
    """{official module: (down A [r, in], up B [out, r]) numpy float32}."""
    g = np.random.default_rng(seed)
    out = {}
    for name in targets:
        o, i = sd[name + ".weight"].shape
        out[name] = (g.normal(0, std, (RANK, i)).astype(np.float32), g.normal(0, std, (o, RANK)).astype(np.float32))
    return out


def write(lora: dict, fmt: str, alpha: float | None) -> dict:
    """The LoRA as a file of format ``fmt`` would hold it (MLX arrays)."""
    out = {}
    for name, (a, b) in lora.items():
        diffusers = _rename(name + ".weight", _TOP, _BLOCK)[: -len(".weight")]
        if fmt.startswith("kohya"):  # musubi-tuner: official names; "kohya_diffusers": diffusers names
            base, down, up = (
                "lora_unet_" + (diffusers if fmt == "kohya_diffusers" else name).replace(".", "_"),
                "lora_down",
                "lora_up",
            )
        elif fmt == "diffusers":
            base, down, up = "transformer." + diffusers, "lora_A", "lora_B"
        elif fmt == "comfy":
            base, down, up = "diffusion_model." + name, "lora_A", "lora_B"
        else:  # original-key
            base, down, up = name, "lora_down", "lora_up"
        out[f"{base}.{down}.weight"], out[f"{base}.{up}.weight"] = mx.array(a), mx.array(b)
        if alpha is not None:
            out[f"{base}.alpha"] = mx.array(alpha)
    return out


FORMATS = [("kohya", 2.0), ("diffusers", None), ("comfy", None), ("original", 8.0)]


def wan_model(sd):
    return ours(WanModelArgs(model_type="t2v", in_dim=8, out_dim=8, **TINY), sd, "official")


def params_np(model) -> dict:
    """Flat parameters as numpy (bf16 widened to float32, exactly)."""
    return {
        k: np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v) for k, v in tree_flatten(model.parameters())
    }


def run_ours(model, x, t, ctx):
    out = model(cl(x), mx.array(t), model.embed_text([mx.array(c) for c in ctx]), model.rope_tables(GRID))
    return np.array(out)


def official_with(ref_model, sd_torch: dict, deltas: dict):
    """A copy of the official model whose official-named weights got ``deltas`` (numpy) added."""
    import copy

    m = copy.deepcopy(ref_model)
    new = {k: v.clone() for k, v in sd_torch.items()}
    for name, d in deltas.items():
        new[name + ".weight"] += torch.from_numpy(d)
    m.load_state_dict(new)
    return m


# ----------------------------------------------------------------------------- Wan formats


@pytest.mark.parametrize("fmt,alpha", FORMATS)
def test_merge_is_exact_delta_and_matches_official(ref, inputs, fmt, alpha):
    r, sd = ref
    lora = random_lora(sd, seed=1)
    strength = 0.8
    scale = alpha / RANK if alpha is not None else 1.0
    model = wan_model(sd)
    before = params_np(model)
    merge_loras(model, [(write(lora, fmt, alpha), strength)], wan_key_map())
    after = params_np(model)

    assert after.keys() == before.keys()
    touched = {TARGETS[n] + ".weight": strength * scale * (b @ a) for n, (a, b) in lora.items()}
    for k in before:
        if k in touched:
            np.testing.assert_allclose(after[k], before[k] + touched[k], rtol=0, atol=1e-6, err_msg=k)
            assert np.abs(touched[k]).max() > 1e-3
        else:
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)

    # forward pass vs the official WanModel with the same LoRA applied under official names
    x, t, ctx = inputs
    deltas = {n: strength * scale * (b @ a) for n, (a, b) in lora.items()}
    want = run_official(official_with(r, r.state_dict(), deltas), x, t, ctx)
    got = run_ours(model, x, t, ctx)
    assert rel_err(got, want) < TOL_ATTN
    base = run_official(r, x, t, ctx)
    assert rel_err(base, want) > SENS  # the LoRA really moves the output


def test_two_loras_sum_and_kohya_diffusers_names(ref, inputs):
    """Two files (kohya with diffusers module names, original-key), overlapping targets, +/- strengths."""
    r, sd = ref
    l1, l2 = random_lora(sd, seed=2), random_lora(sd, seed=3, targets=list(TARGETS)[:4])
    f1 = write(l1, "kohya_diffusers", None)  # lora_unet_blocks_0_attn1_to_q, ...
    assert "lora_unet_blocks_0_attn1_to_q.lora_down.weight" in f1
    f2 = write(l2, "original", 2.0)
    model = wan_model(sd)
    merge_loras(model, [(f1, 1.0), (f2, -0.5)], wan_key_map())
    deltas = {n: b @ a for n, (a, b) in l1.items()}
    for n, (a, b) in l2.items():
        deltas[n] = deltas[n] - 0.5 * 0.5 * (b @ a)
    x, t, ctx = inputs
    want = run_official(official_with(r, r.state_dict(), deltas), x, t, ctx)
    assert rel_err(run_ours(model, x, t, ctx), want) < TOL_ATTN


def test_bf16_weights_merge_in_float32(ref):
    r, sd = ref
    lora = random_lora(sd, seed=4, targets=["blocks.0.self_attn.q"])
    model = wan_model(sd)
    model.set_dtype(mx.bfloat16)
    w0 = np.array(model.blocks[0].self_attn.q.weight.astype(mx.float32))
    merge_loras(model, [(write(lora, "original", None), 1.0)], wan_key_map())
    w = model.blocks[0].self_attn.q.weight
    assert w.dtype == mx.bfloat16
    a, b = lora["blocks.0.self_attn.q"]
    want = np.array(mx.array(w0 + b @ a).astype(mx.bfloat16).astype(mx.float32))
    np.testing.assert_array_equal(np.array(w.astype(mx.float32)), want)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_merge_close_to_dense(ref, inputs, bits):
    r, sd = ref
    lora = random_lora(sd, seed=5)
    pred = lambda _, m: isinstance(m, nn.Linear) and m.weight.shape[1] % 32 == 0  # noqa: E731
    dense, qm = wan_model(sd), wan_model(sd)
    nn.quantize(qm, group_size=32, bits=bits, class_predicate=pred)
    q_before = params_np(qm)
    f = write(lora, "kohya", 2.0)
    merge_loras(dense, [(f, 1.0)], wan_key_map())
    merge_loras(qm, [(f, 1.0)], wan_key_map())

    q_targets = [TARGETS[n] for n in lora if isinstance(_at(qm, TARGETS[n]), nn.QuantizedLinear)]
    assert len(q_targets) >= 5  # q, o, k, v, fc1, time_projection, head (fc2 and text fc1 stay dense)
    tol = {8: 1e-2, 4: 1.5e-1}[bits]
    for path in q_targets:
        layer = _at(qm, path)
        assert isinstance(layer, nn.QuantizedLinear) and (layer.bits, layer.group_size) == (bits, 32)
        wq = np.array(mx.dequantize(layer.weight, layer.scales, layer.biases, 32, bits))
        wd = np.array(_at(dense, path).weight)
        assert rel_err(wq, wd) < tol
    for k, v in params_np(qm).items():  # layers without LoRA untouched
        if not any(k.startswith(p + ".") for p in TARGETS.values()):
            np.testing.assert_array_equal(v, q_before[k], err_msg=k)
    x, t, ctx = inputs
    got, want = run_ours(qm, x, t, ctx), run_ours(dense, x, t, ctx)
    assert rel_err(got, want) < {8: 2e-2, 4: 2e-1}[bits]
    if bits == 8:  # the merge shows through quantization
        unmerged = wan_model(sd)
        nn.quantize(unmerged, group_size=32, bits=8, class_predicate=pred)
        assert rel_err(run_ours(unmerged, x, t, ctx), want) > 5 * rel_err(got, want)


def _at(model, path):
    m = model
    for p in path.split("."):
        m = m[int(p)] if p.isdigit() else m[p]
    return m


# ----------------------------------------------------------------------------- errors


def _raises(model, weights, *needles, key_map=None):
    before = params_np(model)
    with pytest.raises(WeightsError) as e:
        merge_loras(model, [(weights, 1.0)], key_map or wan_key_map())
    for n in needles:
        assert n in str(e.value), (n, str(e.value))
    for k, v in params_np(model).items():  # nothing merged on error
        np.testing.assert_array_equal(v, before[k])
    return str(e.value)


def test_unmatched_keys_are_an_error_listing_them(ref):
    r, sd = ref
    model = wan_model(sd)
    good = write(random_lora(sd, seed=6, targets=["blocks.0.self_attn.q"]), "comfy", None)
    bad = dict(good)
    g = np.random.default_rng(0)
    for k in ("diffusion_model.blocks.5.self_attn.q", "diffusion_model.blocks.0.cross_attn.k_img"):
        bad[k + ".lora_A.weight"] = mx.array(g.normal(size=(RANK, 32)).astype(np.float32))
        bad[k + ".lora_B.weight"] = mx.array(g.normal(size=(32, RANK)).astype(np.float32))
    _raises(
        model,
        bad,
        "match no weight",
        "diffusion_model.blocks.5.self_attn.q.lora_A.weight",
        "diffusion_model.blocks.0.cross_attn.k_img.lora_B.weight",
    )
    kohya = write(random_lora(sd, seed=6, targets=["blocks.0.self_attn.q"]), "kohya", 1.0)
    kohya["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = mx.zeros((RANK, 8))
    kohya["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = mx.zeros((8, RANK))
    _raises(model, kohya, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight")


def test_malformed_loras_are_errors(ref):
    r, sd = ref
    model = wan_model(sd)
    one = write(random_lora(sd, seed=7, targets=["blocks.0.self_attn.q"]), "original", None)
    _raises(model, {k: v for k, v in one.items() if "lora_up" not in k}, "without both down", "lora_down")
    _raises(model, {**one, "blocks.0.norm3.dora_scale": mx.zeros((32,))}, "not LoRA", "blocks.0.norm3.dora_scale")
    _raises(model, {**one, "blocks.0.self_attn.q.lora_A.weight": mx.zeros((RANK, 32))}, "blocks.0.self_attn.q")
    wrong_rank = dict(one, **{"blocks.0.self_attn.q.lora_up.weight": mx.zeros((32, RANK + 1))})
    _raises(model, wrong_rank, "blocks.0.self_attn.q", "(32, 5)")
    wrong_in = dict(one, **{"blocks.0.self_attn.q.lora_down.weight": mx.zeros((RANK, 16))})
    _raises(model, wrong_in, "blocks.0.self_attn.q", "(32, 32)")
    conv = {
        "patch_embedding.lora_down.weight": mx.zeros((RANK, 8, 1, 2, 2)),
        "patch_embedding.lora_up.weight": mx.zeros((32, RANK, 1, 1, 1)),
    }
    _raises(model, conv, "patch_embedding", "only linear layers")
    _raises(model, {}, "no LoRA keys")
    # the same weight named twice (official and diffusers spelling) in one file
    twice = {
        **one,
        "blocks.0.attn1.to_q.lora_down.weight": one["blocks.0.self_attn.q.lora_down.weight"],
        "blocks.0.attn1.to_q.lora_up.weight": one["blocks.0.self_attn.q.lora_up.weight"],
    }
    _raises(model, twice, "both target blocks.0.self_attn.q", "blocks.0.attn1.to_q")
    with pytest.raises(ValueError, match="finite"):
        merge_loras(model, [(one, float("nan"))], wan_key_map())


def test_resolve_all_formats_to_our_names(ref):
    r, sd = ref
    model = wan_model(sd)
    lora = random_lora(sd, seed=8)
    for fmt, alpha in FORMATS + [("diffusers", 2.0)]:
        res = resolve_lora(model, write(lora, fmt, alpha), wan_key_map())
        assert sorted(res) == sorted(TARGETS.values()), fmt
        assert {s for _, _, s in res.values()} == {alpha / RANK if alpha else 1.0}
    peft = {"base_model.model." + k[len("transformer.") :]: v for k, v in write(lora, "diffusers", None).items()}
    assert sorted(resolve_lora(model, peft, wan_key_map())) == sorted(TARGETS.values())


# ----------------------------------------------------------------------------- files and specs


def test_load_lora_and_specs(tmp_path, ref):
    r, sd = ref
    f = write(random_lora(sd, seed=9, targets=["blocks.0.ffn.0"]), "kohya", 4.0)
    p = tmp_path / "style.safetensors"
    save_safetensors(p, f)
    got = load_lora(p)
    assert got.keys() == f.keys() and all(np.array_equal(np.array(got[k]), np.array(f[k])) for k in f)
    pth = tmp_path / "style.pth"
    torch.save({k: torch.from_numpy(np.array(v)).to(torch.bfloat16) for k, v in f.items()}, pth)
    got = load_lora(pth)
    assert got.keys() == f.keys() and all(v.dtype == mx.bfloat16 for v in got.values())
    with pytest.raises(WeightsError, match="not found"):
        load_lora(tmp_path / "nope.safetensors")
    (tmp_path / "x.gguf").write_bytes(b"0")
    with pytest.raises(WeightsError, match="unknown LoRA file type"):
        load_lora(tmp_path / "x.gguf")

    assert parse_lora_spec(str(p)) == (p, 1.0)
    assert parse_lora_spec(f"{p}:0.75") == (p, 0.75)
    assert parse_lora_spec(f"{p}:-1") == (p, -1.0)
    odd = tmp_path / "a:b.safetensors"  # a file whose name has a colon is a path
    save_safetensors(odd, f)
    assert parse_lora_spec(str(odd)) == (odd, 1.0)
    assert parse_lora_spec(f"{odd}:2") == (odd, 2.0)
    for bad, msg in (
        (f"{p}:abc", "not a strength"),
        (f"{p}:", "not a strength"),
        (f"{p}:nan", "finite"),
        (f"{p}:inf", "finite"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_lora_spec(bad)
    for missing in (str(tmp_path / "none.safetensors"), str(tmp_path / "none.safetensors") + ":0.5"):
        with pytest.raises(WeightsError, match="not found"):
            parse_lora_spec(missing)


# ----------------------------------------------------------------------------- LTX-2 distilled LoRA


def test_ltx2_lora_matches_ltx_core_apply_loras():
    from ltx_core.loader.fuse_loras import apply_loras
    from ltx_core.loader.primitives import LoraStateDictWithStrength, StateDict

    from tests.test_ltx2_transformer import _ours, _reference

    ref = _reference("ltx2")
    sd = {k: v.detach().to(torch.bfloat16) for k, v in ref.state_dict().items()}
    targets = [
        "transformer_blocks.0.attn1.to_q",
        "transformer_blocks.1.attn2.to_out.0",
        "transformer_blocks.0.ff.net.0.proj",
        "transformer_blocks.1.audio_attn1.to_k",
        "transformer_blocks.0.audio_to_video_attn.to_v",
        "patchify_proj",
        "adaln_single.linear",
    ]
    g = np.random.default_rng(0)
    lora_np = {}
    for name in targets:
        o, i = sd[name + ".weight"].shape
        lora_np[name] = (g.normal(0, 0.1, (8, i)).astype(np.float32), g.normal(0, 0.1, (o, 8)).astype(np.float32))
    strength = 0.5

    # ltx-core: model keys without "model.diffusion_model.", LoRA keys without "diffusion_model."
    lsd = {}
    for name, (a, b) in lora_np.items():
        lsd[f"{name}.lora_A.weight"], lsd[f"{name}.lora_B.weight"] = torch.from_numpy(a), torch.from_numpy(b)
    cpu = torch.device("cpu")
    fused = apply_loras(
        StateDict(sd, cpu, 0, {torch.bfloat16}),
        [LoraStateDictWithStrength(StateDict(lsd, cpu, 0, {torch.float32}), strength)],
    ).sd

    for prefix in ("diffusion_model.", "model.diffusion_model."):
        m = _ours("ltx2", ref)
        m.set_dtype(mx.bfloat16)
        before = params_np(m)
        f = {prefix + k: mx.array(v.numpy()) for k, v in lsd.items()}
        f[prefix + targets[0] + ".alpha"] = mx.array(1.0)  # ltx-core ignores alpha: so do we
        f[prefix + "video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.lora_A.weight"] = mx.zeros((8, 32))
        f[prefix + "video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.lora_B.weight"] = mx.zeros((32, 8))
        merge_loras(m, [(f, strength)], ltx2_key_map())
        after = params_np(m)
        ours_names = {
            "transformer_blocks.1.attn2.to_out.0": "transformer_blocks.1.attn2.to_out",
            "transformer_blocks.0.ff.net.0.proj": "transformer_blocks.0.ff.proj_in",
        }
        changed = 0
        for name in targets:
            k = ours_names.get(name, name) + ".weight"
            want = fused[name + ".weight"].float().numpy()
            got = after[k]
            delta = strength * (lora_np[name][1] @ lora_np[name][0])
            # ltx-core rounds the delta to bf16, then adds in bf16; we add in float32 and round once:
            # within one bf16 ulp (2^-7 relative) of the operands, and identical for most entries
            bound = 2**-7 * (np.abs(before[k]) + np.abs(delta)) + 1e-8
            assert (np.abs(got - want) <= bound).all(), (k, (np.abs(got - want) / bound).max())
            assert (got == want).mean() > 0.75 and rel_err(got, want) < 2e-3, k
            exact = before[k] + delta
            np.testing.assert_array_equal(got, np.array(mx.array(exact).astype(mx.bfloat16).astype(mx.float32)))
            assert rel_err(got, before[k]) > SENS
            changed += 1
        for k in before:
            if not any(k == ours_names.get(n, n) + ".weight" for n in targets):
                np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        assert changed == len(targets)

    # a video-only model: ltx-core's video-only transformer has no audio modules, so their LoRA is skipped
    mv = _ours("ltx2", ref, video_only=True)
    res = resolve_lora(mv, f, ltx2_key_map(video_only=True))
    assert sorted(res) == sorted(ours_names.get(n, n) for n in targets if "audio" not in n)
    with pytest.raises(WeightsError, match="audio_attn1.to_k"):  # the full key map does not skip them
        resolve_lora(mv, f, ltx2_key_map())


# ----------------------------------------------------------------------------- idempotence


def test_merge_never_changes_the_given_weights_and_is_idempotent(ref):
    r, sd = ref
    lora = write(random_lora(sd, seed=10), "kohya", 2.0)
    model = wan_model(sd)
    held = dict(tree_flatten(model.parameters()))  # the weights the model was given
    base = {k: np.array(v) for k, v in held.items()}
    merge_loras(model, [(lora, 1.0)], wan_key_map())  # default base: the model's weights now
    once = params_np(model)
    for k, v in held.items():
        np.testing.assert_array_equal(np.array(v), base[k], err_msg=k)
    assert any(not np.array_equal(once[k], base[k]) for k in base)

    for b in (held, lambda: dict(held)):  # with an explicit base: twice == once
        for _ in range(2):
            merge_loras(model, [(lora, 1.0)], wan_key_map(), base=b)
            got = params_np(model)
            assert all(np.array_equal(got[k], once[k]) for k in once)
    merge_loras(model, [(lora, 0.5)], wan_key_map(), base=held)  # another strength replaces, not adds
    half = wan_model(sd)
    merge_loras(half, [(lora, 0.5)], wan_key_map())
    assert all(np.array_equal(params_np(model)[k], v) for k, v in params_np(half).items())
    merge_loras(model, [(lora, 0.0)], wan_key_map(), base=held)  # zero puts the base back exactly
    assert all(np.array_equal(params_np(model)[k], base[k]) for k in base)
    for k, v in held.items():
        np.testing.assert_array_equal(np.array(v), base[k], err_msg=k)
    with pytest.raises(WeightsError, match="base weights do not fit.*blocks.0.self_attn.q.weight"):
        merge_loras(model, [(lora, 1.0)], wan_key_map(), base={k: v for k, v in held.items() if "self_attn.q" not in k})


def test_quantized_merge_from_base_is_idempotent(ref):
    r, sd = ref
    lora = write(random_lora(sd, seed=11), "original", None)
    model = wan_model(sd)
    nn.quantize(
        model,
        group_size=32,
        bits=8,
        class_predicate=lambda _, m: isinstance(m, nn.Linear) and m.weight.shape[1] % 32 == 0,
    )
    held = dict(tree_flatten(model.parameters()))
    base = params_np(model)
    merge_loras(model, [(lora, 1.0)], wan_key_map(), base=held)
    once = params_np(model)
    merge_loras(model, [(lora, 1.0)], wan_key_map(), base=held)
    assert all(np.array_equal(params_np(model)[k], once[k]) for k in once)
    merge_loras(model, [(lora, 0.0)], wan_key_map(), base=held)
    assert all(np.array_equal(params_np(model)[k], base[k]) for k in base)


def test_own_names_lora():
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    w0 = np.array(m.layers[1].weight)
    a, b = mx.random.normal((2, 8)), mx.random.normal((8, 2))
    f = {"layers.1.lora_A": a, "layers.1.lora_B": b}
    assert sorted(resolve_lora(m, f, OWN_NAMES)) == ["layers.1"]
    merge_loras(m, [(f, 0.5)])
    np.testing.assert_allclose(np.array(m.layers[1].weight), w0 + 0.5 * np.array(b @ a), rtol=1e-5, atol=1e-5)
    with pytest.raises(WeightsError, match="layers.2.lora_A"):
        merge_loras(m, [({"layers.2.lora_A": a, "layers.2.lora_B": b}, 1.0)])


@pytest.mark.parametrize("pipeline, strengths", [("dev-two-stage", (0.0, 1.0)), ("dev-two-stage-hq", (0.25, 0.5))])
def test_two_stage_ltx_generations_repeat(pipeline, strengths, tmp_path, monkeypatch):
    """Two generations in one process from one load give the same latents: the distilled LoRA is
    merged from the stored weights at each stage's strength, never on top of the previous merge."""
    from mlx_video.ltx2 import loading as L
    from mlx_video.ltx2.pipelines import LTXSettings, generate
    from tests.helpers import ASSETS

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path))
    model_dir = L.resolve_ltx2_model(str(ASSETS / "tiny-LTX-2"))
    cfg = L.read_config(model_dir)
    pos, neg = L.encode_text(model_dir, cfg, "a cat", "blurry")
    comps = L.load_components(model_dir, cfg, pipeline, strengths, need_encoder=False)
    blocks = {"stg_blocks": (1,)}  # the tiny transformer has 2 blocks
    s = LTXSettings(
        pipeline, height=128, width=128, num_frames=9, steps=1, video_guidance=blocks, audio_guidance=blocks, seed=3
    )
    runs = [generate(comps, s, pos, neg, decode=False) for _ in range(3)]
    for r in runs[1:]:
        for (v0, a0), (v, a) in zip(runs[0].stage_latents, r.stage_latents):
            np.testing.assert_array_equal(np.array(v), np.array(v0))
            np.testing.assert_array_equal(np.array(a), np.array(a0))
    # the stage-2 weights are the stored ones + strengths[1] * B @ A (once), whatever ran before
    t = comps.stage2_transformer()
    stored = L.load_transformer(model_dir, cfg)
    merge_loras(stored, [(L.load_distilled_lora(model_dir, cfg), strengths[1])])
    want = dict(tree_flatten(stored.parameters()))
    assert all(mx.array_equal(v, want[k]).item() for k, v in tree_flatten(t.parameters()))


def test_merge_from_a_file_keeps_memory_flat(tmp_path):
    """A callable base (the two-stage LTX loader's ``lambda: load_safetensors(...)``) is read one layer
    at a time: the merge's peak stays near one layer, not a second copy of the model."""
    n, d = 16, 512
    m = nn.Sequential(*[nn.Linear(d, d, bias=False) for _ in range(n)])
    mx.eval(m.parameters())
    path = tmp_path / "w.safetensors"
    save_safetensors(path, dict(tree_flatten(m.parameters())))
    lora = {f"layers.{i}.lora_{k}": mx.random.normal(s) for i in range(n) for k, s in (("A", (4, d)), ("B", (d, 4)))}
    mx.eval(lora)
    layer = d * d * 4
    from mlx_video.io.weights import load_safetensors

    peaks = []
    for base in (lambda: load_safetensors(path), load_safetensors(path)):
        mx.clear_cache()
        mx.reset_peak_memory()
        start = mx.get_active_memory()
        merge_loras(m, [(lora, 1.0)], base=base)
        peaks.append(mx.get_peak_memory() - start)
    assert peaks[0] < 3 * layer  # measured: 1 layer
    assert peaks[1] > n * layer  # a mapping the caller keeps holds every base layer it gave
