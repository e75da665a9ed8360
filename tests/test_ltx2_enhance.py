"""Prompt enhancement vs ltx-core 1.0.0 / ltx-pipelines 1.0.0: the system prompts, the chat messages, the reply
cleaning, and Gemma 3's generation (greedy, against transformers' ``generate`` on the tiny random Gemma of
tests/test_ltx2_text.py); the CLI flag on the tiny components."""

from __future__ import annotations

import json

import pytest
import torch

from mlx_video.ltx2 import enhance as E
from tests import test_ltx2_pipelines as pipes
from tests import test_ltx2_text as text

tok_dir, gemma = text.tok_dir, text.gemma  # module fixtures: tiny tokenizer, HF Gemma 3 + ours (same weights)
parts, images, tiny_cli = pipes.parts, pipes.images, pipes.tiny_cli


def test_system_prompts_and_messages_are_the_official_ones(gemma):
    from ltx_core.text_encoders.gemma.encoders.base_encoder import _load_system_prompt

    ref, *_ = gemma
    for kind in ("t2v", "i2v"):
        assert E.system_prompt(kind) == _load_system_prompt(f"gemma_{kind}_system_prompt.txt")
    seen = []
    ref._enhance = lambda messages, image=None, **kw: seen.append((messages, image)) or ""
    ref.enhance_t2v("a red cat")
    ref.enhance_i2v("a red cat", torch.zeros(8, 8, 3, dtype=torch.uint8))
    assert seen[0][0] == E.messages("a red cat", "t2v")
    (sys_i, user_i), ours_i = seen[1][0], E.messages("a red cat", "i2v")
    assert (
        sys_i == ours_i[0] and [c for c in user_i["content"] if c["type"] == "text"][0]["text"] == ours_i[1]["content"]
    )
    with pytest.raises(ValueError, match="t2v"):
        E.system_prompt("v2v")


def test_clean_response_matches_ltx_pipelines():
    from ltx_pipelines.utils.helpers import clean_response

    for s in ("  \u201cA cat\u201d \u2014 walks\u00a0on", "123: ok", "", "...", "\u2018x\u2019 \u2212 1"):
        assert E.clean_response(s) == clean_response(s)


def test_greedy_generation_matches_transformers(gemma, tok_dir):
    """Gemma 3 with the tied LM head, greedy: the same new tokens as transformers' generate."""
    _, ours, tokenizer, hf = gemma
    enh = E.PromptEnhancer.from_text_encoder(ours, tokenizer.tokenizer)
    prompt = "a red cat walks on the beach at sunset slowly camera pans left"
    ids = tokenizer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=10, eos_token_id=None, pad_token_id=0)
    want = out[0, len(ids) :].tolist()
    got = enh.generate_ids(prompt, seed=0, temperature=0.0, max_new_tokens=10)
    assert got == want, (got, want)
    # a deliberate bug: an untied LM head (mlx-lm's default for gemma3_text) instead of the tied embeddings
    import mlx.nn as nn

    enh.lm.tie_word_embeddings, enh.lm.lm_head = False, nn.Linear(ours.args.hidden_size, ours.args.vocab_size, False)
    try:
        assert enh.generate_ids(prompt, seed=0, temperature=0.0, max_new_tokens=10) != want
    finally:
        enh.lm.tie_word_embeddings = True
        del enh.lm.lm_head
    # sampling is seeded: the same seed gives the same text, another seed (almost surely) another
    a = enh("a cat", seed=1, max_new_tokens=12)
    assert a == enh("a cat", seed=1, max_new_tokens=12) and isinstance(a, str)
    with pytest.raises(ValueError, match="non-empty"):
        enh("  ")


def test_chat_text_without_a_template():
    class Tok:
        chat_template = None

    t = E.chat_text(Tok(), [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert t == "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"


def test_cli_enhance_prompt(tiny_cli, images, tmp_path, monkeypatch):
    import av

    import mlx_video.cli.ltx2 as lcli

    run, seen = tiny_cli
    calls = []
    monkeypatch.setattr(
        lcli, "enhance_prompt", lambda d, cfg, p, kind, seed: calls.append((p, kind, seed)) or f"ENHANCED {p}"
    )
    enc = lcli.encode_text
    monkeypatch.setattr(lcli, "encode_text", lambda d, cfg, p, n: (seen.update(encoded=p), enc(d, cfg, p, n))[1])
    out = tmp_path / "e.mp4"
    args = ["--height", "128", "--width", "128", "--num-frames", "9", "--output-path", str(out), "--enhance_prompt"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert calls == [("a cat", "t2v", 42)] and seen["encoded"] == "ENHANCED a cat" and "ENHANCED a cat" in r.output
    with av.open(str(out)) as f:
        meta = json.loads(f.metadata["comment"])
    assert meta["prompt"] == "a cat" and meta["enhanced_prompt"] == "ENHANCED a cat"
    r = run(*args, "--image", images[0])
    assert r.exit_code == 0 and calls[-1][1] == "i2v", r.output
