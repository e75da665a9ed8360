"""LTX-2 / LTX-2.3 hyper-parameters and how the checkpoints' configs name them: the transformer's
(:class:`LTXModelArgs`) and the video VAE's (:class:`VideoVAEArgs`).

:meth:`LTXModelArgs.from_config` reads either layout: Lightricks' embedded single-file config (ltx-core 1.0.0's
configurator names, :data:`LTX_CORE_KEYS`) or a diffusers ``LTX2VideoTransformer3DModel`` config.json
(:data:`DIFFUSERS_KEYS`), told apart by key names only (docs/ltx2.md §2). :meth:`VideoVAEArgs.from_config` reads
the single file's ``vae`` section or a diffusers ``AutoencoderKLLTX2Video`` config. The architectures that take
them are :class:`mlx_video.ltx2.transformer.LTXModel` and :class:`mlx_video.ltx2.video_vae.VideoVAE` (which
re-export these names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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


def _blocks(raw) -> list[tuple[str, dict]]:
    """Config block list -> [(name, params)]; an int param means ``num_layers``."""
    return [(name, {"num_layers": p} if isinstance(p, int) else dict(p)) for name, p in raw]


@dataclass
class VideoVAEArgs:
    """Architecture flags of the LTX-2 video VAE (widths are *not* here: they come from the weights,
    :meth:`mlx_video.ltx2.video_vae.VideoVAE.from_weights`).

    ``encoder_blocks`` in execution order; ``decoder_blocks`` as the config lists them
    (pixel side first; the decoder runs them reversed, like ltx-core).
    """

    encoder_blocks: list = field(default_factory=list)
    decoder_blocks: list = field(default_factory=list)
    patch_size: int = 4
    latent_log_var: str = "uniform"
    encoder_padding: str = "zeros"
    decoder_padding: str = "reflect"
    encoder_causal: bool = True
    causal_decoder: bool = False
    timestep_conditioning: bool = False
    norm_layer: str = "pixel_norm"
    decode_noise_scale: float = 0.025
    decode_timestep: float = 0.05

    @classmethod
    def from_config(cls, config: Mapping) -> VideoVAEArgs:
        """From the single file's ``config`` (or its ``"vae"`` part) or a diffusers VAE config.

        Missing official keys take ltx-core's configurator defaults (note: its
        ``timestep_conditioning`` default is True; both shipped checkpoints say false).
        Raises ValueError for diffusers layouts this port does not map (a down/up block without
        its resampler, the old ``"conv"`` downsample).
        """
        d = config["vae"] if "vae" in config else config
        if "encoder_blocks" in d or "decoder_blocks" in d:
            pad = d.get("spatial_padding_mode")
            return cls(
                encoder_blocks=_blocks(d.get("encoder_blocks", [])),
                decoder_blocks=_blocks(d.get("decoder_blocks", [])),
                patch_size=d.get("patch_size", 4),
                latent_log_var=d.get("latent_log_var", "uniform"),
                encoder_padding=pad or "zeros",
                decoder_padding=pad or "reflect",
                causal_decoder=d.get("causal_decoder", False),
                timestep_conditioning=d.get("timestep_conditioning", True),
                norm_layer=d.get("norm_layer", "pixel_norm"),
            )
        if "layers_per_block" in d:
            return cls._from_diffusers(d)
        raise ValueError("not an LTX-2 video VAE config (no encoder_blocks/decoder_blocks or layers_per_block)")

    @classmethod
    def _from_diffusers(cls, d: Mapping) -> VideoVAEArgs:
        # diffusers groups "resnets + resampler" per block; ltx-core lists them as separate blocks.
        layers = list(d.get("layers_per_block", (4, 6, 6, 2, 2)))
        n = len(layers) - 1
        down = list(d.get("downsample_type", ("spatial", "temporal", "spatiotemporal", "spatiotemporal")))
        kinds = {"spatial": "space", "temporal": "time", "spatiotemporal": "all"}
        scaling = d.get("spatio_temporal_scaling", True)
        if not all([scaling] * n if isinstance(scaling, bool) else scaling) or any(t not in kinds for t in down[:n]):
            raise ValueError(
                "diffusers LTX-2 VAE: only configs whose every down block ends in a "
                "spatial/temporal/spatiotemporal downsampler are supported"
            )
        enc = []
        for i in range(n):
            enc += [("res_x", {"num_layers": layers[i]}), (f"compress_{kinds[down[i]]}_res", {})]
        enc.append(("res_x", {"num_layers": layers[-1]}))

        dlayers = list(d.get("decoder_layers_per_block", (5, 5, 5, 5)))  # pixel side first
        m = len(dlayers) - 1
        up = list(d.get("upsample_type", ("spatiotemporal",) * m))  # latent side first (not reversed)
        res = d.get("upsample_residual", True)
        res = [res] * m if isinstance(res, bool) else list(res)  # pixel side first
        dscaling = d.get("decoder_spatio_temporal_scaling", True)
        if not all([dscaling] * m if isinstance(dscaling, bool) else dscaling) or any(t not in kinds for t in up[:m]):
            raise ValueError("diffusers LTX-2 VAE: only configs whose every up block has an upsampler are supported")
        inject = d.get("decoder_inject_noise", False)
        if any([inject] if isinstance(inject, bool) else inject):
            raise ValueError("decoder_inject_noise is not supported")
        dec = []
        for i in range(m):  # pixel side first, as ltx-core's decoder_blocks
            dec += [("res_x", {"num_layers": dlayers[i]}), (f"compress_{kinds[up[m - 1 - i]]}", {"residual": res[i]})]
        dec.append(("res_x", {"num_layers": dlayers[-1]}))
        return cls(
            encoder_blocks=enc,
            decoder_blocks=dec,
            patch_size=d.get("patch_size", 4),
            encoder_padding=d.get("encoder_spatial_padding_mode", "zeros"),
            decoder_padding=d.get("decoder_spatial_padding_mode", "reflect"),
            encoder_causal=d.get("encoder_causal", True),
            causal_decoder=d.get("decoder_causal", True),
            timestep_conditioning=d.get("timestep_conditioning", False),
        )
