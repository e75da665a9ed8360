"""Prompt enhancement (``--enhance_prompt``): Gemma 3, the text encoder's own weights, writes a detailed prompt
from the user's short one, with the official system prompts (ltx-core 1.0.0 ``GemmaTextEncoder.enhance_t2v`` /
``enhance_i2v`` / ``_enhance``, ltx-pipelines ``utils.helpers.generate_enhanced_prompt``; docs/ltx2.md §18).

- System prompts: ``prompts/gemma_t2v_system_prompt.txt`` / ``gemma_i2v_system_prompt.txt``, the files ltx-core
  1.0.0 ships (``text_encoders/gemma/encoders/prompts``), unchanged.
- Messages: system = that prompt; user = ``"user prompt: {prompt}"`` (t2v) or ``[image, "User Raw Input Prompt:
  {prompt}."]`` (i2v: the run's first conditioning image, Gemma 3's vision tower, :mod:`.gemma_vision`).
- Chat text: the tokenizer's chat template with the generation prompt; a tokenizer without one (the bundled tiny
  Gemma) gets Gemma 3's own turn format, whose template folds the system prompt into the first user turn. As
  ``Gemma3Processor``: the image placeholder ``<start_of_image>`` becomes ``"\n\n<start_of_image>"`` + 256
  ``<image_soft_token>`` + ``"<end_of_image>\n\n"``, and the text is tokenized with the tokenizer's special
  tokens (Gemma adds a BOS before the template's own ``<bos>``, as the official call does).
- Forward: the prompt in one pass with Gemma 3's masks (causal; the image soft tokens attend to each other both
  ways, ``token_type_ids``; sliding layers also windowed), the projected image features in place of the soft
  tokens' embeddings; then one token at a time from mlx-lm's KV caches. LM head: the tied embeddings.
- Sampling: mlx-lm's sampler, temperature 0.7 (the official value), top-k 64 and top-p 0.95 (gemma-3-12b-it's
  ``generation_config.json``, which transformers' ``generate`` applies), at most 512 new tokens, stopping at
  ``<end_of_turn>`` / EOS; the reply decoded without special tokens and cleaned as the official ``clean_response``.

Deviation: ltx-core 1.0.0 right-pads the prompt to a multiple of 8 (``_pad_inputs_for_attention_alignment``), so
``generate`` continues from a pad token (with transformers 5, the new tokens then get positions 1, 2, ...);
ltx-core fixed this later by left-padding, which is the same as no padding: that is what runs here. The sampled
tokens cannot match torch's RNG; greedy decoding (``temperature=0``) matches the official enhancer's greedy
``generate`` token for token (tests/test_ltx2_enhance.py). Nothing here prints or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

PROMPTS = Path(__file__).parent / "prompts"
TEMPERATURE, TOP_K, TOP_P, MAX_NEW_TOKENS = 0.7, 64, 0.95, 512
DEFAULT_SEED = 42  # ltx-pipelines encode_prompts' enhance_prompt_seed (ICLoraPipeline passes its seed instead)
_REPLACEMENTS = str.maketrans("\u2018\u2019\u201c\u201d\u2014\u2013\u00a0\u2032\u2212", "''\"\"-- '-")
# Gemma 3's image tokens (the tokenizer's boi_token / eoi_token / image_token when it names them)
BOI, EOI, IMAGE_TOKEN = "<start_of_image>", "<end_of_image>", "<image_soft_token>"


def system_prompt(kind: str) -> str:
    """The official system prompt for ``kind`` "t2v" or "i2v". Raises ValueError for another kind."""
    if kind not in ("t2v", "i2v"):
        raise ValueError(f"prompt enhancement kind must be 't2v' or 'i2v', got {kind!r}")
    return (PROMPTS / f"gemma_{kind}_system_prompt.txt").read_text(encoding="utf-8")


def messages(prompt: str, kind: str = "t2v") -> list[dict]:
    """The chat messages ltx-core's ``enhance_t2v`` / ``enhance_i2v`` build (i2v: an image entry, then the text)."""
    if kind == "t2v":
        user = f"user prompt: {prompt}"
    else:
        user = [{"type": "image"}, {"type": "text", "text": f"User Raw Input Prompt: {prompt}."}]
    return [{"role": "system", "content": system_prompt(kind)}, {"role": "user", "content": user}]


def _content(content) -> str:
    """A message's content as Gemma 3's template renders it: a string trimmed; a list item by item (an image as
    ``<start_of_image>``, a text trimmed)."""
    if isinstance(content, str):
        return content.strip()
    return "".join(BOI if c["type"] == "image" else c["text"].strip() for c in content)


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
        turns.append(f"<start_of_turn>{role}\n{system if first else ''}{_content(m['content'])}<end_of_turn>\n")
        first = False
    return "<bos>" + "".join(turns) + "<start_of_turn>model\n"


def clean_response(text: str) -> str:
    """ltx-pipelines ``clean_response``: typographic quotes/dashes/spaces to ASCII, leading non-letters dropped."""
    text = text.translate(_REPLACEMENTS)
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[i:]
    return text


def prompt_masks(token_types: np.ndarray, window: int) -> tuple[mx.array, mx.array]:
    """Boolean [L, L] masks (global, sliding; True = attend) of Gemma 3's prompt pass, transformers
    ``create_masks_for_vision_model``: causal OR "same image" (a run of ``token_types == 1``, the image soft tokens,
    sees itself both ways), and for sliding layers AND ``q - k < window``. ``token_types``: int [L]."""
    t = np.asarray(token_types) == 1
    block = np.where(t, np.cumsum(t & ~np.concatenate([[False], t[:-1]])) - 1, -1)
    q, k = np.arange(len(t))[:, None], np.arange(len(t))[None, :]
    full = (k <= q) | ((block[:, None] == block[None, :]) & (block[:, None] >= 0))
    return mx.array(full), mx.array(full & (q - k < window))


@dataclass
class PromptEnhancer:
    """Gemma 3 as the prompt enhancer (``__call__``). lm: mlx-lm ``gemma3_text.Model`` (tied LM head);
    tokenizer: the HF tokenizer (``GemmaTokenizer.tokenizer``); vision: :class:`.gemma_vision.GemmaVision` for
    i2v (None: text only)."""

    lm: object
    tokenizer: object
    vision: object = None

    @classmethod
    def from_text_encoder(cls, gemma, tokenizer, vision=None) -> PromptEnhancer:
        """Wrap a loaded :class:`mlx_video.ltx2.text_encoder.GemmaTextEncoder` (its ``Gemma3Model`` is shared, not
        copied), its HF tokenizer and optionally the vision tower."""
        from mlx_lm.models import gemma3_text

        lm = gemma3_text.Model(gemma.args)
        lm.model, lm.tie_word_embeddings = gemma.model, True
        del lm.lm_head
        return cls(lm, tokenizer, vision)

    def stop_ids(self) -> set[int]:
        """EOS and ``<end_of_turn>`` ids the tokenizer knows."""
        ids = {self.tokenizer.eos_token_id}
        turn = self.tokenizer.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(turn, int) and turn != self.tokenizer.unk_token_id:
            ids.add(turn)
        return {i for i in ids if i is not None}

    def _tok(self, name: str, default: str) -> str:
        return getattr(self.tokenizer, name, None) or default

    def prompt_ids(self, text: str, image: bool = False) -> list[int]:
        """Token ids of chat text ``text`` as ``Gemma3Processor`` makes them: with an image, its placeholder
        expanded to the image sequence of ``mm_tokens_per_image`` soft tokens; the tokenizer's special tokens
        added. Raises ValueError when the tokenizer's soft token is not the vision config's ``image_token_id`` (a
        text-only Gemma tokenizer) or the text has no image placeholder."""
        if image:
            boi, soft, want = self._tok("boi_token", BOI), self._tok("image_token", IMAGE_TOKEN), self.vision.args
            if self.tokenizer.convert_tokens_to_ids(soft) != want.image_token_id:
                raise ValueError(
                    f"the tokenizer's {soft!r} is not the Gemma config's image_token_id {want.image_token_id}: "
                    "i2v prompt enhancement needs Gemma 3's multimodal tokenizer"
                )
            if boi not in text:
                raise ValueError(f"chat text has no image placeholder {boi!r}: the chat template dropped the image")
            n = want.mm_tokens_per_image
            text = text.replace(boi, f"\n\n{boi}{soft * n}{self._tok('eoi_token', EOI)}\n\n")
        ids = list(self.tokenizer(text)["input_ids"])
        if image and ids.count(self.vision.args.image_token_id) != self.vision.args.mm_tokens_per_image:
            raise ValueError(
                f"the tokenizer split the image sequence: {self.vision.args.mm_tokens_per_image} soft tokens expected"
            )
        return ids

    def _embed(self, ids: mx.array) -> mx.array:
        h = self.lm.model.embed_tokens(ids)
        return h * mx.array(self.lm.args.hidden_size**0.5, dtype=h.dtype)  # HF: the scale in the weights' dtype

    def _layers(self, h: mx.array, caches, masks) -> mx.array:
        """h [1, L, D] through every layer (global layers ``masks[0]``, sliding ``masks[1]``) -> last-position
        logits [1, V] float32 (final norm, tied LM head)."""
        p = self.lm.args.sliding_window_pattern
        for i, (layer, c) in enumerate(zip(self.lm.model.layers, caches)):
            h = layer(h, masks[0] if (i + 1) % p == 0 else masks[1], c)
        h = self.lm.model.norm(h[:, -1])
        return self.lm.model.embed_tokens.as_linear(h).astype(mx.float32)

    def prefill(self, ids: list[int], pixels=None) -> tuple[list, mx.array]:
        """The prompt pass: (mlx-lm KV caches holding the prompt, last-position logits [1, V] float32). pixels:
        [1, S, S, 3] from :func:`.gemma_vision.preprocess`, whose projected features replace the embeddings of the
        ``image_token_id`` tokens (which then attend to each other both ways, :func:`prompt_masks`)."""
        h = self._embed(mx.array(ids)[None])
        types = np.zeros(len(ids), np.int64)
        if pixels is not None:
            where = np.flatnonzero(np.asarray(ids) == self.vision.args.image_token_id)
            types[where] = 1
            h[:, mx.array(where)] = self.vision.features(pixels).astype(h.dtype)
        caches = self.lm.make_cache()
        return caches, self._layers(h, caches, prompt_masks(types, self.lm.args.sliding_window))

    def generate_ids(
        self,
        ids: list[int],
        pixels=None,
        seed: int = DEFAULT_SEED,
        temperature=TEMPERATURE,
        max_new_tokens=MAX_NEW_TOKENS,
    ) -> list[int]:
        """The new token ids after prompt ``ids`` (and image ``pixels``, see :meth:`prefill`), without the stop
        token; temperature 0: greedy."""
        from mlx_lm.sample_utils import make_sampler

        caches, logits = self.prefill(ids, pixels)
        top_k = TOP_K if TOP_K < self.lm.args.vocab_size else 0  # a vocabulary smaller than k: no top-k
        sampler = make_sampler(temp=temperature, top_p=TOP_P if temperature > 0 else 0.0, top_k=top_k)
        mx.random.seed(int(seed) % 2**32)
        stop, out = self.stop_ids(), []
        for _ in range(max_new_tokens):
            token = int(sampler(logits - mx.logsumexp(logits, axis=-1, keepdims=True)).item())
            if token in stop:
                break
            out.append(token)
            logits = self._layers(self._embed(mx.array([[token]])), caches, (None, None))
        return out

    def __call__(
        self,
        prompt: str,
        image: np.ndarray | None = None,
        seed: int = DEFAULT_SEED,
        temperature: float = TEMPERATURE,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> str:
        """The enhanced prompt for ``prompt``: t2v, or i2v when ``image`` (uint8 RGB [H, W, 3], the run's first
        conditioning image as decoded) is given. Raises ValueError for an empty prompt or an image without a
        vision tower."""
        from .gemma_vision import preprocess

        if not prompt.strip():
            raise ValueError("prompt enhancement needs a non-empty prompt")
        if image is not None and self.vision is None:
            raise ValueError("i2v prompt enhancement needs Gemma 3's vision tower; this enhancer has none")
        kind = "t2v" if image is None else "i2v"
        ids = self.prompt_ids(chat_text(self.tokenizer, messages(prompt, kind)), image is not None)
        pixels = None if image is None else preprocess(image, self.vision.args)
        new = self.generate_ids(ids, pixels, seed, temperature, max_new_tokens)
        return clean_response(self.tokenizer.decode(new, skip_special_tokens=True))
