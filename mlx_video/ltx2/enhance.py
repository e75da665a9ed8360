"""Prompt enhancement (``--enhance_prompt``): Gemma 3, the text encoder's own weights, writes a detailed prompt
from the user's short one, with the official system prompts (ltx-core 1.0.0 ``GemmaTextEncoder.enhance_t2v`` /
``enhance_i2v``, ltx-pipelines ``utils.helpers.generate_enhanced_prompt``; docs/ltx2.md §18).

- System prompts: ``prompts/gemma_t2v_system_prompt.txt`` / ``gemma_i2v_system_prompt.txt``, the files ltx-core
  1.0.0 ships (``text_encoders/gemma/encoders/prompts``), unchanged.
- Messages: system = that prompt; user = ``"user prompt: {prompt}"`` (t2v) or
  ``"User Raw Input Prompt: {prompt}."`` (i2v, after the image in the official code).
- Chat text: the tokenizer's chat template with the generation prompt; a tokenizer without one (the bundled tiny
  Gemma) gets Gemma 3's own turn format, whose template folds the system prompt into the first user turn.
- Sampling: mlx-lm ``generate_step`` on the Gemma 3 language model (tied embeddings as the LM head), temperature
  0.7 (the official value), top-k 64 and top-p 0.95 (gemma-3-12b-it's ``generation_config.json``, which
  transformers' ``generate`` applies), at most 512 new tokens, stopping at ``<end_of_turn>`` / EOS; the reply
  decoded without special tokens and cleaned as the official ``clean_response``.

Not reproduced: the i2v enhancer's view of the image (Gemma 3's vision tower; mlx-lm is text-only): the i2v system
prompt and message are used, without the image. The sampled tokens cannot match torch's RNG; greedy decoding
(``temperature=0``) matches transformers' greedy ``generate`` (tests/test_ltx2_enhance.py).
Nothing here prints or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

PROMPTS = Path(__file__).parent / "prompts"
TEMPERATURE, TOP_K, TOP_P, MAX_NEW_TOKENS = 0.7, 64, 0.95, 512
DEFAULT_SEED = 42  # ltx-pipelines encode_prompts' enhance_prompt_seed (ICLoraPipeline passes its seed instead)
_REPLACEMENTS = str.maketrans("\u2018\u2019\u201c\u201d\u2014\u2013\u00a0\u2032\u2212", "''\"\"-- '-")


def system_prompt(kind: str) -> str:
    """The official system prompt for ``kind`` "t2v" or "i2v". Raises ValueError for another kind."""
    if kind not in ("t2v", "i2v"):
        raise ValueError(f"prompt enhancement kind must be 't2v' or 'i2v', got {kind!r}")
    return (PROMPTS / f"gemma_{kind}_system_prompt.txt").read_text(encoding="utf-8")


def messages(prompt: str, kind: str = "t2v") -> list[dict]:
    """The chat messages ltx-core's ``enhance_t2v`` / ``enhance_i2v`` build (i2v without its image entry)."""
    user = f"user prompt: {prompt}" if kind == "t2v" else f"User Raw Input Prompt: {prompt}."
    return [{"role": "system", "content": system_prompt(kind)}, {"role": "user", "content": user}]


def chat_text(tokenizer, msgs: list[dict]) -> str:
    """``msgs`` as the model's chat text with the generation prompt: the HF tokenizer's chat template, or
    Gemma 3's turn format (``<bos><start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n``)
    when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    system = "".join(m["content"] + "\n\n" for m in msgs if m["role"] == "system")
    turns, first = [], True
    for m in msgs:
        if m["role"] == "system":
            continue
        role = "model" if m["role"] == "assistant" else m["role"]
        turns.append(f"<start_of_turn>{role}\n{system if first else ''}{m['content']}<end_of_turn>\n")
        first = False
    return "<bos>" + "".join(turns) + "<start_of_turn>model\n"


def clean_response(text: str) -> str:
    """ltx-pipelines ``clean_response``: typographic quotes/dashes/spaces to ASCII, leading non-letters dropped."""
    text = text.translate(_REPLACEMENTS)
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[i:]
    return text


@dataclass
class PromptEnhancer:
    """Gemma 3 as a language model for :func:`enhance`. lm: mlx-lm ``gemma3_text.Model`` (tied LM head);
    tokenizer: the HF tokenizer (``GemmaTokenizer.tokenizer``)."""

    lm: object
    tokenizer: object

    @classmethod
    def from_text_encoder(cls, gemma, tokenizer) -> PromptEnhancer:
        """Wrap a loaded :class:`mlx_video.ltx2.text_encoder.GemmaTextEncoder` (its ``Gemma3Model`` is shared, not
        copied) and its HF tokenizer."""
        from mlx_lm.models import gemma3_text

        lm = gemma3_text.Model(gemma.args)
        lm.model, lm.tie_word_embeddings = gemma.model, True
        del lm.lm_head
        return cls(lm, tokenizer)

    def stop_ids(self) -> set[int]:
        """EOS and ``<end_of_turn>`` ids the tokenizer knows."""
        ids = {self.tokenizer.eos_token_id}
        turn = self.tokenizer.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(turn, int) and turn != self.tokenizer.unk_token_id:
            ids.add(turn)
        return {i for i in ids if i is not None}

    def generate_ids(self, text: str, seed: int, temperature: float, max_new_tokens: int) -> list[int]:
        """The new token ids for chat text ``text`` (temperature 0: greedy)."""
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_sampler

        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        top_k = TOP_K if TOP_K < self.lm.args.vocab_size else 0  # a vocabulary smaller than k: no top-k
        sampler = make_sampler(temp=temperature, top_p=TOP_P if temperature > 0 else 0.0, top_k=top_k)
        mx.random.seed(int(seed) % 2**32)
        stop, out = self.stop_ids(), []
        for token, _ in generate_step(mx.array(ids), self.lm, max_tokens=max_new_tokens, sampler=sampler):
            token = int(token)
            if token in stop:
                break
            out.append(token)
        return out

    def __call__(
        self,
        prompt: str,
        kind: str = "t2v",
        seed: int = DEFAULT_SEED,
        temperature: float = TEMPERATURE,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> str:
        """The enhanced prompt for ``prompt`` (``kind`` "t2v", or "i2v" when the run has a first-frame image).
        Raises ValueError for an empty prompt or unknown kind."""
        if not prompt.strip():
            raise ValueError("prompt enhancement needs a non-empty prompt")
        text = chat_text(self.tokenizer, messages(prompt, kind))
        new = self.generate_ids(text, seed, temperature, max_new_tokens)
        return clean_response(self.tokenizer.decode(new, skip_special_tokens=True))
