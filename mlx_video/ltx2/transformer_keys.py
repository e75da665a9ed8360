"""How LTX-2 / LTX-2.3 checkpoints name the transformer's weights: :func:`sanitize` maps Lightricks' single file
(``model.diffusion_model.*``) or diffusers ``LTX2VideoTransformer3DModel`` keys to
:class:`mlx_video.ltx2.transformer.LTXModel` parameter names, :func:`lora_key_map` does it for LoRA files.
:mod:`mlx_video.ltx2.transformer` re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial

import mlx.core as mx

from mlx_video.nn.lora import LoraKeyMap

LIGHTRICKS_PREFIX = "model.diffusion_model."
# Keys of Lightricks' single-file checkpoint owned by other modules (text connectors / feature
# extractor, video VAE, audio VAE, vocoder); skipped here, loaded by their own sanitize.
OTHER_MODULES = (
    "model.diffusion_model.video_embeddings_connector.",
    "model.diffusion_model.audio_embeddings_connector.",
    "model.diffusion_model.embeddings_connector.",
    "text_embedding_projection.",
    "vae.",
    "audio_vae.",
    "vocoder.",
)
# Audio-stream and audio<->video keys: the reference's video-only model never builds (so never
# loads) them; dropped only when sanitizing for a video-only model.
_AUDIO_TOP = re.compile(r"^(audio_|av_ca_)")
_AUDIO_BLOCK = re.compile(r"^transformer_blocks\.\d+\.(audio_|video_to_audio_attn\.|scale_shift_table_a2v_ca_)")

# diffusers LTX2VideoTransformer3DModel names -> original names
_DIFFUSERS_TOP = {
    "proj_in": "patchify_proj",
    "audio_proj_in": "audio_patchify_proj",
    "time_embed": "adaln_single",
    "audio_time_embed": "audio_adaln_single",
    "prompt_adaln": "prompt_adaln_single",
    "audio_prompt_adaln": "audio_prompt_adaln_single",
    "av_cross_attn_video_scale_shift": "av_ca_video_scale_shift_adaln_single",
    "av_cross_attn_audio_scale_shift": "av_ca_audio_scale_shift_adaln_single",
    "av_cross_attn_video_a2v_gate": "av_ca_a2v_gate_adaln_single",
    "av_cross_attn_audio_v2a_gate": "av_ca_v2a_gate_adaln_single",
}
_DIFFUSERS_BLOCK = {
    "video_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_video",
    "audio_a2v_cross_attn_scale_shift_table": "scale_shift_table_a2v_ca_audio",
}
_DIFFUSERS_ATTN = {"norm_q": "q_norm", "norm_k": "k_norm"}

# original names -> this module's names
_OURS = (
    (re.compile(r"\.emb\.timestep_embedder\."), ".timestep_embedder."),
    (re.compile(r"\.to_out\.0\."), ".to_out."),
    (re.compile(r"ff\.net\.0\.proj\."), "ff.proj_in."),  # ff. and audio_ff.
    (re.compile(r"ff\.net\.2\."), "ff.proj_out."),
)


def _from_diffusers(key: str) -> str:
    parts = key.split(".")
    parts[0] = _DIFFUSERS_TOP.get(parts[0], parts[0])
    if parts[0] == "transformer_blocks" and len(parts) > 2:
        parts[2] = _DIFFUSERS_BLOCK.get(parts[2], parts[2])
        if len(parts) > 3:
            parts[3] = _DIFFUSERS_ATTN.get(parts[3], parts[3])
    return ".".join(parts)


def sanitize(
    weights: Mapping[str, mx.array], layout: str = "lightricks", video_only: bool = False
) -> dict[str, mx.array]:
    """Map checkpoint keys to :class:`~mlx_video.ltx2.transformer.LTXModel` parameter names (all weights are
    linears/tables: no layout change).

    layout "lightricks": Lightricks' single file (``model.diffusion_model.*``); keys under
    :data:`OTHER_MODULES` are skipped, any other key is kept (renamed if it has the prefix) so that
    ``load_strict`` names it. layout "diffusers": ``LTX2VideoTransformer3DModel`` names.
    ``video_only``: drop the audio and audio<->video keys for a video-only model.
    Raises ValueError for an unknown layout.
    """
    out = {}
    for key, w in weights.items():
        if layout == "lightricks":
            if key.startswith(OTHER_MODULES):
                continue
            key = key[len(LIGHTRICKS_PREFIX) :] if key.startswith(LIGHTRICKS_PREFIX) else key
        elif layout == "diffusers":
            key = _from_diffusers(key)
        else:
            raise ValueError(f"unknown layout {layout!r} (expected 'lightricks' or 'diffusers')")
        if video_only and (_AUDIO_TOP.match(key) or _AUDIO_BLOCK.match(key)):
            continue
        for pat, rep in _OURS:
            key = pat.sub(rep, key)
        out[key] = w
    return out


def lora_key_map(video_only: bool = False) -> LoraKeyMap:
    """How LTX-2 LoRA files name their modules (:class:`mlx_video.nn.lora.LoraKeyMap`): ltx-core names
    with ``model.diffusion_model.`` or ``diffusion_model.`` prefixes (the distilled LoRA), or diffusers
    names, resolved through :func:`sanitize`; no alpha scaling, as ltx-core's ``fuse_loras``. Modules
    of the text connectors (``*_embeddings_connector``) are skipped: ltx-core fuses LoRAs into the
    transformer only, whose model never uses those keys; with ``video_only`` the audio modules are
    skipped likewise."""
    return LoraKeyMap(
        partial(sanitize, video_only=video_only),
        {"lightricks": LIGHTRICKS_PREFIX, "diffusers": ""},
        ("model.diffusion_model.", "diffusion_model.", "transformer."),
        use_alpha=False,
    )
