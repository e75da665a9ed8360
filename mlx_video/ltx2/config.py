"""LTX-2 / LTX-2.3 transformer hyper-parameters (:class:`LTXModelArgs`) and how the checkpoints' configs name them.

:meth:`LTXModelArgs.from_config` reads either layout: Lightricks' embedded single-file config (ltx-core 1.0.0's
configurator names, :data:`LTX_CORE_KEYS`) or a diffusers ``LTX2VideoTransformer3DModel`` config.json
(:data:`DIFFUSERS_KEYS`), told apart by key names only (docs/ltx2.md §2). The architecture that takes them is
:class:`mlx_video.ltx2.transformer.LTXModel` (which re-exports these names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Keys only one layout's transformer config has (ltx-core's configurator vs diffusers'
# LTX2VideoTransformer3DModel constructor); from_config tells the layouts apart by these.
LTX_CORE_KEYS = frozenset(
    {
        "positional_embedding_theta",
        "positional_embedding_max_pos",
        "frequencies_precision",
        "av_ca_timestep_scale_multiplier",
        "audio_positional_embedding_max_pos",
        "use_middle_indices_grid",
        "apply_gated_attention",
        "cross_attention_adaln",
        "caption_proj_before_connector",
        "connector_num_layers",
    }
)
DIFFUSERS_KEYS = frozenset(
    {
        "rope_theta",
        "rope_double_precision",
        "pos_embed_max_pos",
        "base_height",
        "base_width",
        "gated_attn",
        "cross_attn_mod",
        "audio_pos_embed_max_pos",
        "patch_size_t",
        "cross_attn_timestep_scale_multiplier",
        "use_prompt_embeddings",
        "vae_scale_factors",
    }
)


def _layout(config: Mapping, official: frozenset, diffusers: frozenset, what: str) -> str:
    """'official' or 'diffusers' by which layout's own key names ``config`` uses ('official' when it
    uses neither: the reference defaults then apply). ValueError when it uses both."""
    has_o, has_d = sorted(config.keys() & official), sorted(config.keys() & diffusers)
    if has_o and has_d:
        raise ValueError(f"{what} config mixes Lightricks keys {has_o[:3]} and diffusers keys {has_d[:3]}")
    return "diffusers" if has_d else "official"


@dataclass
class LTXModelArgs:
    """Transformer hyper-parameters. Defaults are LTX-2 19B (LTX-2.3 adds gating and prompt AdaLN)."""

    num_attention_heads: int = 32
    attention_head_dim: int = 128
    in_channels: int = 128
    out_channels: int = 128
    num_layers: int = 48
    cross_attention_dim: int = 4096
    caption_channels: int = 3840
    caption_projection: bool = True  # LTX-2: PixArt text projection inside the transformer
    norm_eps: float = 1e-6
    positional_embedding_theta: float = 10000.0
    positional_embedding_max_pos: tuple = (20, 2048, 2048)
    timestep_scale_multiplier: float = 1000.0
    use_middle_indices_grid: bool = True
    audio: bool = True  # False: video-only model (no audio stream, no audio weights)
    audio_num_attention_heads: int = 32
    audio_attention_head_dim: int = 64
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    audio_cross_attention_dim: int = 2048
    audio_positional_embedding_max_pos: tuple = (20,)
    av_ca_timestep_scale_multiplier: float = 1000.0
    double_precision_rope: bool = True
    apply_gated_attention: bool = False  # LTX-2.3
    cross_attention_adaln: bool = False  # LTX-2.3: text cross-attention AdaLN + prompt AdaLN

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def audio_inner_dim(self) -> int:
        return self.audio_num_attention_heads * self.audio_attention_head_dim

    @property
    def ada_rows(self) -> int:
        """AdaLN rows per block: (shift, scale, gate) x (attn, ffn) [+ (shift_q, scale_q, gate) for text]."""
        return 9 if self.cross_attention_adaln else 6

    @classmethod
    def from_config(cls, config: Mapping, video_only: bool = False) -> LTXModelArgs:
        """Read Lightricks' embedded checkpoint config (whole dict or its "transformer" part) or a
        diffusers ``LTX2VideoTransformer3DModel`` config.json dict.

        The layout is told by key names only that layout uses (:data:`DIFFUSERS_KEYS` vs
        :data:`LTX_CORE_KEYS`; a whole single-file config has a ``transformer`` section), never by
        ``_class_name`` (the released single files say ``"AVTransformer3DModel"``, a diffusers-style
        name). Missing keys take the values the corresponding reference takes (ltx-core 1.0.0's
        configurator, or diffusers' constructor defaults); keys neither reads are ignored (listed by
        ``ltx2.checkpoint.config_args``). Raises ValueError for settings this port does not
        implement (interleaved RoPE, patch size > 1, LTX-2.5 options) or a config with both layouts' keys.
        """
        c = config["transformer"] if "transformer" in config else config
        if _layout(c, LTX_CORE_KEYS, DIFFUSERS_KEYS, "LTX-2 transformer") == "diffusers":
            return cls._from_diffusers(c, video_only)
        rope_type = c.get("rope_type", "interleaved")  # ltx-core 1.0.0 default when absent
        if rope_type != "split":
            raise ValueError(f"rope_type {rope_type!r} is not supported (LTX-2/2.3 checkpoints use 'split')")
        return cls(
            num_attention_heads=c.get("num_attention_heads", 32),
            attention_head_dim=c.get("attention_head_dim", 128),
            in_channels=c.get("in_channels", 128),
            out_channels=c.get("out_channels", 128),
            num_layers=c.get("num_layers", 48),
            cross_attention_dim=c.get("cross_attention_dim", 4096),
            caption_channels=c.get("caption_channels", 3840),
            caption_projection=not c.get("caption_proj_before_connector", False),
            norm_eps=c.get("norm_eps", 1e-6),
            positional_embedding_theta=c.get("positional_embedding_theta", 10000.0),
            positional_embedding_max_pos=tuple(c.get("positional_embedding_max_pos", (20, 2048, 2048))),
            timestep_scale_multiplier=c.get("timestep_scale_multiplier", 1000),
            use_middle_indices_grid=c.get("use_middle_indices_grid", True),
            audio=not video_only,
            audio_num_attention_heads=c.get("audio_num_attention_heads", 32),
            audio_attention_head_dim=c.get("audio_attention_head_dim", 64),
            audio_in_channels=c.get("audio_in_channels", 128),
            audio_out_channels=c.get("audio_out_channels", 128),
            audio_cross_attention_dim=c.get("audio_cross_attention_dim", 2048),
            audio_positional_embedding_max_pos=tuple(c.get("audio_positional_embedding_max_pos", (20,))),
            av_ca_timestep_scale_multiplier=c.get("av_ca_timestep_scale_multiplier", 1),
            double_precision_rope=c.get("frequencies_precision", False) == "float64",
            apply_gated_attention=c.get("apply_gated_attention", False),
            cross_attention_adaln=c.get("cross_attention_adaln", False),
        )

    @classmethod
    def _from_diffusers(cls, c: Mapping, video_only: bool) -> LTXModelArgs:
        unsupported = {
            "patch_size": 1,
            "patch_size_t": 1,
            "audio_patch_size": 1,
            "audio_patch_size_t": 1,
            "rope_type": "split",
            "ff_bias": True,
            "audio_ff_bias": True,
            "use_prompt_adaln_single": True,
            "use_keyframes_abs_pos_embedding": False,
            "qk_norm": "rms_norm_across_heads",
        }
        defaults = {"rope_type": "interleaved"}
        for k, want in unsupported.items():
            if c.get(k, defaults.get(k, want)) != want:
                raise ValueError(f"diffusers config {k}={c.get(k, defaults.get(k))!r} is not supported (need {want!r})")
        gated, adaln = c.get("gated_attn", False), c.get("cross_attn_mod", False)
        if c.get("audio_gated_attn", False) != gated or c.get("audio_cross_attn_mod", False) != adaln:
            raise ValueError("video and audio gating / prompt modulation must agree")
        return cls(
            num_attention_heads=c.get("num_attention_heads", 32),
            attention_head_dim=c.get("attention_head_dim", 128),
            in_channels=c.get("in_channels", 128),
            out_channels=c.get("out_channels") or c.get("in_channels", 128),
            num_layers=c.get("num_layers", 48),
            cross_attention_dim=c.get("cross_attention_dim", 4096),
            caption_channels=c.get("caption_channels", 3840),
            caption_projection=c.get("use_prompt_embeddings", True),
            norm_eps=c.get("norm_eps", 1e-6),
            positional_embedding_theta=c.get("rope_theta", 10000.0),
            positional_embedding_max_pos=(
                c.get("pos_embed_max_pos", 20),
                c.get("base_height", 2048),
                c.get("base_width", 2048),
            ),
            timestep_scale_multiplier=c.get("timestep_scale_multiplier", 1000),
            audio=not video_only,
            audio_num_attention_heads=c.get("audio_num_attention_heads", 32),
            audio_attention_head_dim=c.get("audio_attention_head_dim", 64),
            audio_in_channels=c.get("audio_in_channels", 128),
            audio_out_channels=c.get("audio_out_channels") or c.get("audio_in_channels", 128),
            audio_cross_attention_dim=c.get("audio_cross_attention_dim", 2048),
            audio_positional_embedding_max_pos=(c.get("audio_pos_embed_max_pos", 20),),
            av_ca_timestep_scale_multiplier=c.get("cross_attn_timestep_scale_multiplier", 1000),
            double_precision_rope=c.get("rope_double_precision", True),
            apply_gated_attention=gated,
            cross_attention_adaln=adaln,
        )
