"""Prompt enhancement vs ltx-core 1.0.0 / ltx-pipelines 1.0.0: the system prompts, the chat messages, the reply
cleaning, and Gemma 3's generation, t2v and i2v (the image through Gemma 3's vision tower), greedy, against the
official ``generate_enhanced_prompt`` on a tiny random multimodal Gemma 3 converted by our converter; the CLI flag
on the tiny components."""

from __future__ import annotations

import json
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
import torch
from PIL import Image

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.ltx2 import enhance as E
from mlx_video.ltx2 import gemma_vision as gv
from mlx_video.ltx2 import text_encoder as te
from scripts.make_tiny_ltx2 import GEMMA_VISION
from tests import test_ltx2_pipelines as pipes
from tests import test_ltx2_text as text
from tests.ltx_tiny import gemma_legacy_names
from tests.oracles import randomize_

tok_dir, gemma = text.tok_dir, text.gemma  # module fixtures: tiny tokenizer, HF Gemma 3 + ours (same weights)
parts, images, tiny_cli = pipes.parts, pipes.images, pipes.tiny_cli

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
IMAGE_TOKENS = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
WORDS = text.WORDS + "user model prompt : . User Raw Input Prompt You are".split()
# Gemma 3's chat format (system prompt folded into the first user turn, an image item as <start_of_image>, texts
# trimmed), written as a template for the tiny tokenizer (the real one ships inside tokenizer_config.json).
TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% set rest = messages[1:] %}{% else %}{% set prefix = '' %}{% set rest = messages %}{% endif %}"
    "{% for m in rest %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' }}"
    "{{ prefix if loop.first else '' }}{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<start_of_image>' }}{% else %}"
    "{{ c['text'] | trim }}{% endif %}{% endfor %}{% endif %}{{ '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
SIZE, TOKENS = 56, 4  # vision image size (4x4 patches of 14) and soft tokens per image (2x2: 2x2 average pool)
PROMPT = "a red cat walks on the beach"
NEW = 12  # greedy new tokens compared


def _preprocessor(size: int) -> dict:
    """google/gemma-3-12b-it's preprocessor_config.json keys, at the tiny size."""
    return {
        "do_convert_rgb": None,
        "do_normalize": True,
        "do_pan_and_scan": None,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Gemma3ImageProcessor",
        "image_seq_length": TOKENS,
        "image_std": [0.5, 0.5, 0.5],
        "pan_and_scan_max_num_crops": None,
        "pan_and_scan_min_crop_size": None,
        "pan_and_scan_min_ratio_to_activate": None,
        "processor_class": "Gemma3Processor",
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": size, "width": size},
    }


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    """A tiny multimodal Gemma 3 folder as google/gemma-3-12b-it ships it (transformers 4.x key layout, config,
    preprocessor config, tokenizer with Gemma 3's special and image tokens and chat template), converted by our
    converter (``checkpoint._gemma``) and loaded by our loaders; the official enhancer on the same HF model."""
    from ltx_core.text_encoders.gemma import GemmaTextEncoder
    from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        AutoImageProcessor,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        PreTrainedTokenizerFast,
    )

    from mlx_video.ltx2 import checkpoint as ck
    from mlx_video.ltx2 import loading

    src = tmp_path_factory.mktemp("gemma_mm")
    vocab = {w: i for i, w in enumerate(SPECIALS + IMAGE_TOKENS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[4:] + IMAGE_TOKENS,
        extra_special_tokens=dict(zip(("boi_token", "eoi_token", "image_token"), IMAGE_TOKENS)),
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(str(src))
    text_cfg = {**text.GEMMA_TEXT, "vocab_size": 64}
    vision = dict(GEMMA_VISION, num_hidden_layers=2, image_size=SIZE, vision_use_head=False)
    ids = {t: vocab[t] for t in IMAGE_TOKENS}
    config = Gemma3Config(
        text_config=text_cfg,
        vision_config=vision,
        mm_tokens_per_image=TOKENS,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
        eos_token_id=[1, vocab["<end_of_turn>"]],
    )
    hf = Gemma3ForConditionalGeneration(config).eval()
    randomize_(hf, seed=3, std=0.1, buffers=False)  # embed_scale, RoPE inv_freq: constants
    hf.generation_config.eos_token_id, hf.generation_config.pad_token_id = [1, vocab["<end_of_turn>"]], 0
    save_file(
        gemma_legacy_names(hf.state_dict(), lm_head=False), str(src / "model.safetensors"), metadata={"format": "pt"}
    )
    (src / "config.json").write_text(hf.config.to_json_string())
    (src / "preprocessor_config.json").write_text(json.dumps(_preprocessor(SIZE)))

    out = tmp_path_factory.mktemp("gemma_mm_mlx")
    args, _, vargs = ck._gemma(src, mx.float32, None, 64, out)
    cfg = {"gemma": ck.init_args(args), "gemma_vision": ck.init_args(vargs), "quantization": {}}
    ours = te.GemmaTextEncoder(args)
    load_strict(ours, dict(mx.load(str(out / "gemma.safetensors"))), "gemma")
    tokenizer = te.GemmaTokenizer(out / "tokenizer", vocab_size=args.vocab_size).tokenizer
    enh = E.PromptEnhancer.from_text_encoder(ours, tokenizer, loading.load_gemma_vision(out, cfg))

    image_processor = AutoImageProcessor.from_pretrained(str(src), local_files_only=True)
    ltx_tok = LTXVGemmaTokenizer(str(src), 1024)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=ltx_tok.tokenizer, image_seq_length=TOKENS)
    ref = GemmaTextEncoder(model=hf, tokenizer=ltx_tok, processor=processor, dtype=torch.float32)

    img = tmp_path_factory.mktemp("enh_img") / "first.png"
    y, x = np.mgrid[0:90, 0:150]
    rgb = np.stack([x * 1.7, y * 2.9, (x + 2 * y) * 0.8], -1) % 256
    Image.fromarray(np.clip(rgb + np.random.default_rng(0).normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)).save(img)
    return ref, hf, enh, img, src, out


def _left_pad(model_inputs, pad_token_id=0, alignment=8):
    """ltx-core's later fix of ``_pad_inputs_for_attention_alignment``: pad to a multiple of 8 on the left (the
    1.0.0 code pads on the right, so ``generate`` continues from a pad token; see enhance.py)."""
    n = -model_inputs["input_ids"].shape[1] % alignment
    for k, v in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if model_inputs.get(k) is not None and n:
            t = model_inputs[k]
            model_inputs[k] = torch.cat([torch.full((1, n), v, dtype=t.dtype), t], 1)
    return model_inputs


def _official(mm, monkeypatch, image: bool, pad=_left_pad):
    """ltx-pipelines ``generate_enhanced_prompt`` with greedy decoding (``NEW`` tokens): (text, generate's
    inputs without the padding, the new token ids without the stop token)."""
    from ltx_core.text_encoders.gemma.encoders import base_encoder
    from ltx_pipelines.utils.helpers import generate_enhanced_prompt

    ref, hf, *_ = mm
    seen = {}
    generate = type(hf).generate

    def greedy(**kw):
        kw.update(do_sample=False, temperature=None, max_new_tokens=NEW)
        out = generate(hf, **kw)
        seen.update(kw, out=out)
        return out

    monkeypatch.setattr(hf, "generate", greedy)
    monkeypatch.setattr(base_encoder, "_pad_inputs_for_attention_alignment", pad)
    fork = torch.random.fork_rng  # the official forks the model device's RNG: CUDA only
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices=None, **kw: fork(devices=[], **kw))
    got = generate_enhanced_prompt(ref, PROMPT, str(mm[3]) if image else None, seed=42)
    monkeypatch.undo()
    keep = seen["attention_mask"][0] == 1
    inputs = {k: seen[k][:, keep] for k in ("input_ids", "attention_mask", "token_type_ids") if k in seen}
    if image:
        inputs["pixel_values"] = seen["pixel_values"]
    new = seen["out"][0, seen["input_ids"].shape[1] :].tolist()
    return got, inputs, [t for t in new if t not in hf.generation_config.eos_token_id]


def test_system_prompts_and_messages_are_the_official_ones(gemma):
    from ltx_core.text_encoders.gemma.encoders.base_encoder import _load_system_prompt

    ref, *_ = gemma
    for kind in ("t2v", "i2v"):
        assert E.system_prompt(kind) == _load_system_prompt(f"gemma_{kind}_system_prompt.txt")
    seen = []
    ref._enhance = lambda messages, image=None, **kw: seen.append((messages, image)) or ""
    ref.enhance_t2v("a red cat")
    ref.enhance_i2v("a red cat", torch.zeros(8, 8, 3, dtype=torch.uint8))
    assert seen[0][0] == E.messages("a red cat", "t2v") and seen[1][0] == E.messages("a red cat", "i2v")
    with pytest.raises(ValueError, match="t2v"):
        E.system_prompt("v2v")


def test_clean_response_matches_ltx_pipelines():
    from ltx_pipelines.utils.helpers import clean_response

    for s in ("  \u201cA cat\u201d \u2014 walks\u00a0on", "123: ok", "", "...", "\u2018x\u2019 \u2212 1"):
        assert E.clean_response(s) == clean_response(s)


def test_chat_text_without_a_template(mm):
    """Gemma 3's turn format for a tokenizer without a template, equal to the template's rendering."""

    class Tok:
        chat_template = None

    t = E.chat_text(Tok(), [{"role": "system", "content": "S"}, {"role": "user", "content": "U "}])
    assert t == "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
    tokenizer = mm[2].tokenizer
    for kind in ("t2v", "i2v"):
        msgs = E.messages(" a cat ", kind)
        assert E.chat_text(Tok(), msgs) == E.chat_text(tokenizer, msgs)


def test_enhancer_image_preprocessing_is_the_official_one(mm):
    """torch's uint8 bilinear long-side resize (ltx-pipelines) reproduced bit for bit, at several aspects."""
    from ltx_pipelines.utils.media_io import resize_aspect_ratio_preserving

    rng = np.random.default_rng(1)
    for h, w in ((90, 150), (1000, 1500), (97, 131), (2000, 37), (896, 504)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = resize_aspect_ratio_preserving(torch.tensor(img), 896).to(torch.uint8).numpy()
        assert np.array_equal(gv.enhancer_image(img), want), (h, w)
    with pytest.raises(ValueError, match="RGB"):
        gv.enhancer_image(np.zeros((4, 4), np.uint8))


def test_i2v_enhancer_matches_the_official_one(mm, monkeypatch):
    """i2v through the converted checkpoint: the prompt ids (image sequence expanded, official double BOS), the
    pixels, the SigLIP features (1e-5), the projected soft tokens, the first logits and the greedy new tokens all
    equal the official enhancer's; a wrong normalisation mean and a causal-only image mask each break them."""
    from mlx_video.io.images import load_image

    ref, hf, enh, img, *_ = mm
    text_out, inputs, want = _official(mm, monkeypatch, image=True)
    ids = enh.prompt_ids(E.chat_text(enh.tokenizer, E.messages(PROMPT, "i2v")), image=True)
    assert ids == inputs["input_ids"][0].tolist()
    assert inputs["token_type_ids"][0].sum() == TOKENS and ids[:2] == [2, 2]  # the official's double BOS

    image = np.asarray(load_image(img))
    pixels = gv.preprocess(image, enh.vision.args)
    ref_pixels = inputs["pixel_values"].permute(0, 2, 3, 1).numpy()
    assert np.abs(np.array(pixels) - ref_pixels).max() < 1e-6
    with torch.no_grad():
        tower = hf.model.vision_tower(pixel_values=inputs["pixel_values"]).last_hidden_state.numpy()
        soft = hf.model.get_image_features(inputs["pixel_values"]).pooler_output.numpy()
        logits = hf(**inputs).logits[0, -1].numpy()
    err_tower = np.abs(np.array(enh.vision.tower(pixels)) - tower).max()
    err_soft = np.abs(np.array(enh.vision.features(pixels)) - soft).max() / np.abs(soft).max()
    _, ours_logits = enh.prefill(ids, pixels)
    err_logits = np.abs(np.array(ours_logits[0]) - logits).max()
    print(f"i2v parity: tower {err_tower:.2e}, soft tokens (rel) {err_soft:.2e}, first logits {err_logits:.2e}")
    assert err_tower < 1e-5 and err_soft < 1e-5 and err_logits < 1e-4, (err_tower, err_soft, err_logits)

    got = enh.generate_ids(ids, pixels, seed=0, temperature=0.0, max_new_tokens=NEW)
    print(f"i2v greedy: {len(got)} new tokens, equal: {got == want}")
    assert got == want and len(want) >= 4, (got, want)
    assert E.clean_response(enh.tokenizer.decode(got, skip_special_tokens=True)) == text_out
    assert enh(PROMPT, image, temperature=0.0, max_new_tokens=NEW) == text_out

    # deliberate bugs: ImageNet's mean instead of Gemma's 0.5; the image soft tokens attending causally only
    bad = gv.preprocess(image, replace(enh.vision.args, image_mean=(0.485, 0.456, 0.406)))
    bug_mean = np.abs(np.array(enh.vision.tower(bad)) - tower).max()
    print(f"bug, ImageNet mean: tower error {bug_mean:.2e}")
    assert bug_mean > 1e-2
    causal = E.prompt_masks

    def no_image_block(types, window):
        return causal(np.zeros_like(types), window)

    monkeypatch.setattr(E, "prompt_masks", no_image_block)
    _, bad_logits = enh.prefill(ids, pixels)
    bug_mask = np.abs(np.array(bad_logits[0]) - logits).max()
    bad_ids = enh.generate_ids(ids, pixels, seed=0, temperature=0.0, max_new_tokens=NEW)
    print(f"bug, causal image mask: first-logit error {bug_mask:.2e}, greedy tokens equal: {bad_ids == want}")
    assert bug_mask > 1e-3


def test_t2v_enhancer_matches_the_official_one(mm, monkeypatch):
    ref, hf, enh, *_ = mm
    text_out, inputs, want = _official(mm, monkeypatch, image=False)
    ids = enh.prompt_ids(E.chat_text(enh.tokenizer, E.messages(PROMPT, "t2v")))
    assert ids == inputs["input_ids"][0].tolist()
    got = enh.generate_ids(ids, None, seed=0, temperature=0.0, max_new_tokens=NEW)
    assert got == want and len(want) >= 4, (got, want)
    assert enh(PROMPT, temperature=0.0, max_new_tokens=NEW) == text_out
    # sampling is seeded: the same seed gives the same text
    a = enh("a cat", seed=1, max_new_tokens=8)
    assert a == enh("a cat", seed=1, max_new_tokens=8) and isinstance(a, str)
    with pytest.raises(ValueError, match="non-empty"):
        enh("  ")


def test_official_right_padding_is_not_reproduced(mm, monkeypatch):
    """ltx-core 1.0.0's right padding (kept as shipped here): generate continues from pad tokens, so its greedy
    tokens differ from the unpadded / left-padded ones we produce (the prompt is not a multiple of 8 long)."""
    from ltx_core.text_encoders.gemma.encoders import base_encoder

    _, inputs, want = _official(mm, monkeypatch, image=True)
    assert inputs["input_ids"].shape[1] % 8
    _, _, right = _official(mm, monkeypatch, image=True, pad=base_encoder._pad_inputs_for_attention_alignment)
    assert right != want


def test_vision_weights_missing_or_wrong(mm, gemma, tmp_path):
    """A text-only Gemma: no vision file, and i2v enhancement refused in one line; text-only enhancement still
    works. A vision tower of the wrong shape is a WeightsError at conversion."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from mlx_video.ltx2 import checkpoint as ck
    from mlx_video.ltx2 import loading

    *_, enh, img, src, _ = mm
    text_only = tmp_path / "text_only"
    shutil.copytree(src, text_only)
    w = load_file(str(src / "model.safetensors"))
    save_file(
        {k: v for k, v in w.items() if not k.startswith(("vision_tower.", "multi_modal"))},
        str(text_only / "model.safetensors"),
    )
    out = tmp_path / "out"
    out.mkdir()
    args, _, vargs = ck._gemma(text_only, mx.float32, None, 64, out)
    assert vargs is None and not (out / "gemma_vision.safetensors").exists()
    with pytest.raises(WeightsError, match="no Gemma 3 vision tower") as e:
        loading.load_gemma_vision(out, {"gemma_vision": None})
    assert "\n" not in str(e.value)
    no_vision = E.PromptEnhancer(enh.lm, enh.tokenizer)
    with pytest.raises(ValueError, match="vision tower"):
        no_vision(PROMPT, np.zeros((8, 8, 3), np.uint8))
    text_tokenizer = E.PromptEnhancer(enh.lm, gemma[2].tokenizer, enh.vision)  # no image tokens (the bundled tiny)
    with pytest.raises(ValueError, match="multimodal tokenizer"):
        text_tokenizer(PROMPT, np.zeros((8, 8, 3), np.uint8))
    w["multi_modal_projector.mm_input_projection_weight"] = np.zeros((3, 3), np.float32)
    save_file(w, str(text_only / "model.safetensors"))
    with pytest.raises(WeightsError, match="vision"):
        ck._gemma(text_only, mx.float32, None, 64, tmp_path / "out2")


def test_cli_enhance_prompt(tiny_cli, images, tmp_path, monkeypatch):
    import av

    import mlx_video.cli.ltx2 as lcli

    run, seen = tiny_cli
    calls = []
    monkeypatch.setattr(
        lcli, "enhance_prompt", lambda d, cfg, p, image, seed: calls.append((p, image, seed)) or f"ENHANCED {p}"
    )
    enc = lcli.encode_text
    monkeypatch.setattr(lcli, "encode_text", lambda d, cfg, p, n: (seen.update(encoded=p), enc(d, cfg, p, n))[1])
    out = tmp_path / "e.mp4"
    args = ["--height", "128", "--width", "128", "--num-frames", "9", "--output-path", str(out), "--enhance_prompt"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert calls == [("a cat", None, 42)] and seen["encoded"] == "ENHANCED a cat" and "ENHANCED a cat" in r.output
    with av.open(str(out)) as f:
        meta = json.loads(f.metadata["comment"])
    assert meta["prompt"] == "a cat" and meta["enhanced_prompt"] == "ENHANCED a cat"
    r = run(*args, "--image", images[1], "--image", f"{images[0]}:8")
    assert r.exit_code == 0, r.output
    first = np.asarray(Image.open(images[1]).convert("RGB"))
    assert np.array_equal(calls[-1][1], first)  # the first conditioning image, as decoded

    def refuse(*a):
        raise WeightsError("tiny-ltx has no Gemma 3 vision tower, which i2v prompt enhancement needs")

    monkeypatch.setattr(lcli, "enhance_prompt", refuse)
    r = run(*args, "--image", images[0])
    assert r.exit_code == 2 and "vision tower" in r.output and "Traceback" not in r.output, r.output


def test_vision_sanitize_reads_both_transformers_layouts(mm):
    """transformers 4.x (google/gemma-3-12b-it: ``vision_tower.vision_model.*``) and 5.x (``model.vision_tower.*``)
    name the same vision weights; the language model, LM head and a SigLIP pooling head are not the vision's."""
    from safetensors.numpy import load_file

    w = {k: mx.array(v) for k, v in load_file(str(mm[4] / "model.safetensors")).items()}
    v4 = gv.sanitize({**w, "vision_tower.vision_model.head.probe": mx.zeros(3), "lm_head.weight": mx.zeros(3)})
    v5 = gv.sanitize({("model." + k if k.startswith(("vision_tower.", "multi_modal")) else k): v for k, v in w.items()})
    assert sorted(v4) == sorted(v5) and all(np.array_equal(np.array(v4[k]), np.array(v5[k])) for k in v4)
    assert all(k.startswith(("vision_model.", "multi_modal_projector.")) and "head" not in k for k in v4)
    assert v4["vision_model.embeddings.patch_embedding.weight"].shape == (16, 14, 14, 3)  # MLX conv layout
    assert gv.has_vision(w) and not gv.has_vision([k for k in w if not k.startswith("vision_tower.")])


def test_vision_args_from_the_gemma_configs(mm):
    cfg = json.loads((mm[4] / "config.json").read_text())
    a = gv.VisionArgs.from_config(cfg, _preprocessor(SIZE))
    assert (a.image_size, a.patch_size, a.mm_tokens_per_image, a.text_hidden_size) == (SIZE, 14, TOKENS, 48)
    assert a.image_token_id == mm[2].tokenizer.convert_tokens_to_ids("<image_soft_token>") and a == mm[2].vision.args
    assert gv.VisionArgs.from_config({}) == gv.VisionArgs()  # ltx-core's pinned Gemma 3 12B
    for bad, match in (
        ({"do_pan_and_scan": True}, "pan_and_scan"),
        ({"resample": 3}, "bilinear"),
        ({"size": {"height": 64, "width": 56}}, "square"),
        ({"size": {"height": 64, "width": 64}}, "does not match"),
    ):
        with pytest.raises(ValueError, match=match):
            gv.VisionArgs.from_config(cfg, {**_preprocessor(SIZE), **bad})
    with pytest.raises(ValueError, match="tile"):
        gv.VisionArgs.from_config({**cfg, "mm_tokens_per_image": 9}, _preprocessor(SIZE))


def test_loading_enhance_prompt_passes_the_image_and_the_vision(mm, monkeypatch):
    """loading.enhance_prompt: the vision tower from the converted folder for an image (refused in one line before
    Gemma loads when the folder has none), none for t2v."""
    from types import SimpleNamespace

    from mlx_video.ltx2 import checkpoint as ck
    from mlx_video.ltx2 import loading

    enh, out = mm[2], mm[5]
    cfg = {"gemma_vision": ck.init_args(enh.vision.args)}
    loaded, calls = [], []
    te_ = SimpleNamespace(gemma=SimpleNamespace(args=enh.lm.args, model=enh.lm.model), tokenizer=enh)
    monkeypatch.setattr(loading, "load_text_encoder", lambda d, c: loaded.append(d) or te_)
    monkeypatch.setattr(E.PromptEnhancer, "__call__", lambda self, p, image, seed: calls.append((self, image, seed)))
    img = np.zeros((10, 20, 3), np.uint8)
    loading.enhance_prompt(out, cfg, PROMPT, img, seed=7)
    loading.enhance_prompt(out, cfg, PROMPT, None, seed=7)
    (a, ia, sa), (b, ib, _) = calls
    assert ia is img and sa == 7 and a.vision is not None and a.vision.args == enh.vision.args
    assert ib is None and b.vision is None
    with pytest.raises(WeightsError, match="vision tower"):
        loading.enhance_prompt(out, {"gemma_vision": None}, PROMPT, img)
    assert len(loaded) == 2  # refused before Gemma loads
