"""LTX-2 / LTX-2.3 text path vs the official code (ltx-core 1.0.0) and diffusers.

Tiny random models: a Gemma 3 (HF transformers, as ltx-core runs it) against our mlx-lm based
encoder, and the V1 / V2 feature extractors + connectors (ltx-core EmbeddingsProcessor,
diffusers LTX2TextConnectors) against ours, each through its real checkpoint key layout.
"""

from __future__ import annotations

import dataclasses
import functools

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2 import text_encoder as te
from scripts.make_tiny_ltx2 import GEMMA_VISION
from tests.ltx_tiny import gemma_legacy_names
from tests.oracles import randomize_, rel_err

L, R = 16, 8  # tokens (max_length), learnable registers
WORDS = "a cat walks on the beach at sunset slowly camera pans left right red blue dog runs fast".split()
PROMPT = "  a red cat walks on the beach at sunset  "
TOL = 1e-4


def to_mx(sd):
    return {k: mx.array(v.detach().float().numpy()) for k, v in sd.items()}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """A tiny tokenizer from a fixed piece list (no training), saved like a HF tokenizer folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<bos>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    d = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(str(d))
    return d


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_ltx_core(tok_dir):
    from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer

    ref = LTXVGemmaTokenizer(str(tok_dir), max_length=L)
    ours = te.GemmaTokenizer(tok_dir, max_length=L, vocab_size=64)
    long = " ".join(WORDS * 2)
    for text in (PROMPT, long):
        pairs = ref.tokenize_with_weights(text)["gemma"]
        ids, mask = ours(text)
        assert np.array(ids)[0].tolist() == [int(t) for t, _ in pairs]
        assert np.array(mask)[0].tolist() == [int(w) for _, w in pairs]
    ids, mask = ours(PROMPT)
    assert np.array(mask)[0, 0] == 0 and np.array(mask)[0, -1] == 1  # left padding
    assert np.array(ours(long)[1]).all()  # truncated to max_length


def test_tokenizer_errors(tok_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        te.GemmaTokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        te.GemmaTokenizer(tmp_path)  # folder without tokenizer files
    with pytest.raises(ValueError, match="do not match"):
        te.GemmaTokenizer(tok_dir, vocab_size=8)


# ----------------------------------------------------------------------------- Gemma 3

GEMMA_TEXT = dict(
    model_type="gemma3_text",
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    query_pre_attn_scalar=16,
    vocab_size=64,
    sliding_window=3,
    sliding_window_pattern=2,
    rope_theta=1e6,
    rope_local_base_freq=1e4,
    rope_scaling={"rope_type": "linear", "factor": 8.0},
)


@pytest.fixture(scope="module")
def gemma(tok_dir):
    """HF Gemma3ForConditionalGeneration (tiny, random) inside ltx-core's GemmaTextEncoder, and our
    encoder loaded from the same weights exported in the transformers-4.x layout ltx-core expects."""
    from ltx_core.text_encoders.gemma import GemmaTextEncoder
    from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    hf = Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=dict(GEMMA_TEXT), vision_config=dict(GEMMA_VISION), mm_tokens_per_image=4)
    ).eval()
    randomize_(hf, seed=1, std=0.1, buffers=False)  # embed_scale, RoPE inv_freq: constants
    ref = GemmaTextEncoder(model=hf, tokenizer=LTXVGemmaTokenizer(str(tok_dir), max_length=L), dtype=torch.float32)
    sd = gemma_legacy_names(hf.state_dict())
    assert any(k.startswith("vision_tower.vision_model.") for k in sd)
    ours = te.GemmaTextEncoder.from_config(hf.config.to_dict())
    load_strict(ours, te.sanitize_gemma(to_mx(sd)), "gemma")
    tokenizer = te.GemmaTokenizer(tok_dir, max_length=L, vocab_size=ours.args.vocab_size)
    return ref, ours, tokenizer, hf


def test_gemma_args_from_hf_config(gemma):
    *_, hf = gemma
    a = te.gemma_args(hf.config.to_dict())  # transformers 5.x: rope_parameters + layer_types
    assert (a.hidden_size, a.num_hidden_layers, a.sliding_window, a.sliding_window_pattern) == (48, 4, 3, 2)
    assert (a.rope_theta, a.rope_local_base_freq, a.rope_scaling["factor"]) == (1e6, 1e4, 8.0)
    b = te.gemma_args({"text_config": dict(GEMMA_TEXT)})  # transformers 4.x keys
    assert (b.rope_theta, b.rope_local_base_freq, b.rope_scaling["factor"], b.head_dim) == (1e6, 1e4, 8.0, 16)
    assert te.gemma_args({}).hidden_size == 3840


def test_gemma_hidden_states_match_hf(gemma):
    ref, ours, tokenizer, _ = gemma
    with torch.no_grad():
        ref_states, ref_mask = ref.encode(PROMPT)
    ids, mask = tokenizer(PROMPT)
    assert np.array(mask).tolist() == ref_mask.tolist()
    states = ours(ids, mask)
    assert len(states) == len(ref_states) == 5
    valid = np.array(mask)[0].astype(bool)
    assert 4 <= valid.sum() < L
    errs = [rel_err(np.array(s)[0, valid], r[0, valid]) for s, r in zip(states, ref_states)]
    assert max(errs) <= TOL, errs
    # sensitivity: the padding mask and the sliding window each matter well beyond the tolerance
    last = ref_states[-1][0, valid]
    unmasked = ours(ids, mx.ones_like(mask))[-1]
    assert rel_err(np.array(unmasked)[0, valid], last) > 100 * TOL
    window, ours.args.sliding_window = ours.args.sliding_window, 10**6
    try:
        no_window = ours(ids, mask)[-1]
    finally:
        ours.args.sliding_window = window
    assert rel_err(np.array(no_window)[0, valid], last) > 100 * TOL


def test_sanitize_gemma_layouts(gemma):
    *_, hf = gemma
    new = to_mx(hf.state_dict())  # transformers 5.x layout: model.language_model.*, lm_head
    ours = te.GemmaTextEncoder.from_config(hf.config.to_dict())
    load_strict(ours, te.sanitize_gemma(new), "gemma")
    text_only = {
        k.replace("model.language_model.", "model."): v for k, v in new.items() if k.startswith("model.language_model.")
    }
    assert te.sanitize_gemma(text_only).keys() == te.sanitize_gemma(new).keys()


# ----------------------------------------------------------------------------- processor vs ltx-core


def ltx_config(version):
    """The checkpoint-metadata keys ltx-core's EmbeddingsProcessorConfigurator reads (tiny sizes)."""
    t = dict(
        rope_type="split",
        frequencies_precision="float64",
        connector_positional_embedding_max_pos=[4096],
        connector_num_attention_heads=4,
        connector_attention_head_dim=8,
        connector_num_layers=2,
    )
    if version == 2:
        t.update(
            te._V2_KEYS,
            connector_apply_gated_attention=True,
            connector_num_layers=3,
            audio_connector_num_attention_heads=4,
            audio_connector_attention_head_dim=4,
            num_attention_heads=4,
            attention_head_dim=8,
            audio_num_attention_heads=2,
            audio_attention_head_dim=8,
        )
    return {"transformer": t}


TEXT_HIDDEN = {1: 32, 2: 24}  # V1: Gemma width = connector width; V2: free
N_STATES = 5


def ltx_processor(version):
    from ltx_core.model.transformer.rope import LTXRopeType
    from ltx_core.text_encoders.gemma.embeddings_connector import Embeddings1DConnector
    from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
    from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV1, FeatureExtractorV2

    d, flat = TEXT_HIDDEN[version], TEXT_HIDDEN[version] * N_STATES
    conn = functools.partial(
        Embeddings1DConnector,
        positional_embedding_max_pos=[4096],
        num_learnable_registers=R,
        rope_type=LTXRopeType.SPLIT,
        double_precision_rope=True,
    )
    if version == 1:
        fe = FeatureExtractorV1(torch.nn.Linear(flat, d, bias=False), is_av=True)
        video, audio = (
            conn(num_attention_heads=4, attention_head_dim=8),
            conn(num_attention_heads=4, attention_head_dim=8),
        )
    else:
        fe = FeatureExtractorV2(torch.nn.Linear(flat, 32), d, torch.nn.Linear(flat, 16))
        video = conn(num_attention_heads=4, attention_head_dim=8, num_layers=3, apply_gated_attention=True)
        audio = conn(num_attention_heads=4, attention_head_dim=4, num_layers=3, apply_gated_attention=True)
    proc = EmbeddingsProcessor(feature_extractor=fe, video_connector=video, audio_connector=audio).eval()
    randomize_(proc, seed=10 + version, std=0.1)
    return proc


def official_layout(sd):
    """ltx-core module names -> the Lightricks single-file names (inverse of EMBEDDINGS_PROCESSOR_KEY_OPS)."""
    ren = {
        "feature_extractor.": "text_embedding_projection.",
        "video_connector.": "model.diffusion_model.video_embeddings_connector.",
        "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
    }
    out = {}
    for k, v in sd.items():
        p = next(p for p in ren if k.startswith(p))
        out[ren[p] + k[len(p) :]] = v
    return out


def hidden_inputs(version, n_valid, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    hs = [3.0 * torch.randn(batch, L, TEXT_HIDDEN[version], generator=g) for _ in range(N_STATES)]
    mask = torch.zeros(batch, L, dtype=torch.int64)
    for b, n in enumerate([n_valid] if batch == 1 else n_valid):
        mask[b, L - n :] = 1
    return hs, mask


def ours_processor(version, sd):
    args = dataclasses.replace(
        te.TextProcessorArgs.from_config(ltx_config(version)),
        text_hidden=TEXT_HIDDEN[version],
        text_layers=N_STATES,
        registers=R,
    )
    full = dict(official_layout(sd))
    full["model.diffusion_model.patchify_proj.weight"] = torch.zeros(2, 2)  # other components' keys
    full["vae.decoder.conv_in.weight"] = torch.zeros(2)
    proc = te.EmbeddingsProcessor(args)
    load_strict(proc, te.sanitize(to_mx(full), "official"), "text processor")
    return proc


def run_ref(proc, hs, mask):
    with torch.no_grad():
        out = proc.process_hidden_states(tuple(hs), mask)
    assert out.attention_mask.all()
    return out.video_encoding, out.audio_encoding


@pytest.mark.parametrize("version", [1, 2])
def test_processor_matches_ltx_core(version):
    ref = ltx_processor(version)
    ours = ours_processor(version, ref.state_dict())
    assert ours.args.version == version and ours.args.rope_type == "split" and ours.args.rope_float64
    hs, mask = hidden_inputs(version, n_valid=5)
    rv, ra = run_ref(ref, hs, mask)
    mhs, mmask = [mx.array(h.numpy()) for h in hs], mx.array(mask.numpy())
    v, a = ours(mhs, mmask)
    assert v.shape == tuple(rv.shape) and a.shape == tuple(ra.shape)
    ev, ea = rel_err(v, rv), rel_err(a, ra)
    assert ev <= TOL and ea <= TOL, (ev, ea)

    def moved(out):
        return max(rel_err(out[0], rv), rel_err(out[1], ra))

    # padded positions of the hidden states are ignored ...
    pad = [h.copy() for h in (np.array(x) for x in mhs)]
    for h in pad:
        h[:, : L - 5] = 100.0
    assert moved(ours([mx.array(h) for h in pad], mmask)) <= TOL
    # ... while the valid text, the token count, the registers and the RoPE positions all matter
    other = [mx.array(h.numpy()) for h in hidden_inputs(version, n_valid=5, seed=1)[0]]
    assert moved(ours(other, mmask)) > 100 * TOL
    assert moved(ours(mhs, mx.array(hidden_inputs(version, n_valid=6)[1].numpy()))) > 100 * TOL
    for c in (ours.video_connector, ours.audio_connector):
        c.learnable_registers = c.learnable_registers[::-1]
    assert moved(ours(mhs, mmask)) > 100 * TOL
    for c in (ours.video_connector, ours.audio_connector):
        c.learnable_registers = c.learnable_registers[::-1]
        c.rope_tables = lambda n, f=c.rope_tables: tuple(t[:, ::-1].copy() for t in f(n))
    assert moved(ours(mhs, mmask)) > 100 * TOL


def test_processor_batch_equals_per_prompt():
    """ltx-core's register substitution handles one prompt at a time; ours batches (as diffusers)."""
    ref = ltx_processor(2)
    ours = ours_processor(2, ref.state_dict())
    hs, mask = hidden_inputs(2, n_valid=[5, 11], seed=3, batch=2)
    v, a = ours([mx.array(h.numpy()) for h in hs], mx.array(mask.numpy()))
    for b in range(2):
        rv, ra = run_ref(ref, [h[b : b + 1] for h in hs], mask[b : b + 1])
        assert rel_err(v[b : b + 1], rv) <= TOL and rel_err(a[b : b + 1], ra) <= TOL


def test_encode_prompt_matches_ltx_core(gemma):
    """tokenizer -> Gemma -> V1 processor, end to end, against ltx-core's encode + process_hidden_states."""
    ref_gemma, ours_gemma, tokenizer, _ = gemma
    global TEXT_HIDDEN
    saved, TEXT_HIDDEN = TEXT_HIDDEN, {1: 48}
    try:
        from ltx_core.model.transformer.rope import LTXRopeType
        from ltx_core.text_encoders.gemma.embeddings_connector import Embeddings1DConnector
        from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
        from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV1

        conn = functools.partial(
            Embeddings1DConnector,
            num_attention_heads=4,
            attention_head_dim=12,
            positional_embedding_max_pos=[4096],
            num_learnable_registers=R,
            rope_type=LTXRopeType.SPLIT,
            double_precision_rope=True,
        )
        ref = EmbeddingsProcessor(
            feature_extractor=FeatureExtractorV1(torch.nn.Linear(48 * 5, 48, bias=False), True),
            video_connector=conn(),
            audio_connector=conn(),
        ).eval()
        randomize_(ref, seed=5, std=0.1)
        with torch.no_grad():
            states, mask = ref_gemma.encode(PROMPT)
        rv, ra = run_ref(ref, states, mask)
        args = te.TextProcessorArgs(
            text_hidden=48,
            text_layers=5,
            video_heads=4,
            video_head_dim=12,
            audio_heads=4,
            audio_head_dim=12,
            registers=R,
            rope_type="split",
            rope_max_pos=4096,
            rope_float64=True,
        )
        proc = te.EmbeddingsProcessor(args)
        load_strict(proc, te.sanitize(to_mx(official_layout(ref.state_dict())), "official"), "text processor")
        v, a = te.encode_prompt(PROMPT, tokenizer, ours_gemma, proc)
        assert rel_err(v, rv) <= 3 * TOL and rel_err(a, ra) <= 3 * TOL, (rel_err(v, rv), rel_err(a, ra))
        v2, _ = te.encode_prompt("a blue dog runs fast", tokenizer, ours_gemma, proc)
        assert rel_err(v2, rv) > 100 * TOL
    finally:
        TEXT_HIDDEN = saved


# ----------------------------------------------------------------------------- diffusers layout


@pytest.mark.parametrize("version", [1, 2])
def test_processor_matches_diffusers(version):
    from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors

    d = TEXT_HIDDEN[version]
    cfg = dict(
        caption_channels=d,
        text_proj_in_factor=N_STATES,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=2,
        video_connector_num_learnable_registers=R,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8 if version == 1 else 4,
        audio_connector_num_layers=2,
        audio_connector_num_learnable_registers=R,
        rope_type="split",
        connector_rope_base_seq_len=4096,
    )
    if version == 2:
        cfg.update(
            per_modality_projections=True,
            video_hidden_dim=32,
            audio_hidden_dim=16,
            proj_bias=True,
            video_gated_attn=True,
            audio_gated_attn=True,
        )
    ref = LTX2TextConnectors(**cfg).eval()
    randomize_(ref, seed=20 + version, std=0.1)
    args = te.TextProcessorArgs.from_config(dict(ref.config))
    assert args.version == version
    ours = te.EmbeddingsProcessor(args)
    load_strict(ours, te.sanitize(to_mx(ref.state_dict()), "diffusers"), "text connectors")
    hs, mask = hidden_inputs(version, n_valid=[5, 9], seed=7, batch=2)
    with torch.no_grad():
        rv, ra, rmask = ref(torch.stack(hs, dim=-1), mask)
    assert rmask.all()
    v, a = ours([mx.array(h.numpy()) for h in hs], mx.array(mask.numpy()))
    assert rel_err(v, rv) <= TOL and rel_err(a, ra) <= TOL, (rel_err(v, rv), rel_err(a, ra))


# ----------------------------------------------------------------------------- strict loading


def test_strict_loading_names_the_key():
    ref = ltx_processor(2)
    good = te.sanitize(to_mx(official_layout(ref.state_dict())), "official")
    args = dataclasses.replace(
        te.TextProcessorArgs.from_config(ltx_config(2)), text_hidden=24, text_layers=N_STATES, registers=R
    )
    load_strict(te.EmbeddingsProcessor(args), good, "text processor")
    key = "video_connector.blocks.1.attn.to_gate_logits.weight"
    missing = {k: v for k, v in good.items() if k != key}
    extra = {**good, "video_connector.blocks.1.attn.to_gate.bias": mx.zeros(4)}
    shaped = {**good, key: mx.zeros((5, 32))}
    for bad, name in ((missing, key), (extra, "to_gate.bias"), (shaped, key)):
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(te.EmbeddingsProcessor(args), bad, "text processor")
    # an unknown key under the connector prefix of the single file is not silently dropped
    raw = {
        **official_layout(ref.state_dict()),
        "model.diffusion_model.audio_embeddings_connector.extra.weight": torch.zeros(1),
    }
    with pytest.raises(WeightsError, match="audio_connector.extra.weight"):
        load_strict(te.EmbeddingsProcessor(args), te.sanitize(to_mx(raw), "official"), "text processor")


def test_config_errors():
    t = ltx_config(2)["transformer"]
    with pytest.raises(NotImplementedError):
        te.TextProcessorArgs.from_config({**t, "caption_proj_input_norm": True})
    partial = {k: v for k, v in t.items() if k != "caption_proj_input_norm"}
    with pytest.raises(NotImplementedError):
        te.TextProcessorArgs.from_config(partial)
    with pytest.raises(ValueError, match="width"):
        te.TextProcessorArgs.from_config({**t, "audio_attention_head_dim": 64})
    with pytest.raises(ValueError, match="multiple"):
        proc = te.EmbeddingsProcessor(
            dataclasses.replace(
                te.TextProcessorArgs.from_config(ltx_config(1)), text_hidden=32, text_layers=N_STATES, registers=R
            )
        )
        hs, mask = hidden_inputs(1, n_valid=4)
        proc([mx.array(h[:, :12].numpy()) for h in hs], mx.array(mask[:, :12].numpy()))
