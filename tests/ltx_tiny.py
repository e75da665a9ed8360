"""Shared LTX-2 test configs: the transformer's embedded-checkpoint config at tiny (or any) widths, and the
audio VAE config at tiny sizes with the released settings."""

from __future__ import annotations

# rope and frequency-grid settings every LTX-2 / LTX-2.3 checkpoint carries
SPLIT_ROPE = dict(rope_type="split", frequencies_precision="float64")
# the rest of the released embedded configs' settings (docs/ltx2.md 2.1)
CHECKPOINT_SETTINGS = dict(
    SPLIT_ROPE,
    positional_embedding_theta=10000.0,
    timestep_scale_multiplier=1000,
    av_ca_timestep_scale_multiplier=1000.0,
    use_middle_indices_grid=True,
    norm_eps=1e-6,
)
LTX23_OPTIONS = dict(apply_gated_attention=True, cross_attention_adaln=True, caption_proj_before_connector=True)


def attention_widths(
    heads: int, head_dim: int, context: int, audio_heads: int, audio_head_dim: int, audio_context: int
):
    """The transformer config's attention widths: video and audio heads x head dim, and the text context width
    each stream's cross-attention reads (real LTX-2: 32 x 128, 4096; audio 32 x 64, 2048)."""
    return dict(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        cross_attention_dim=context,
        audio_num_attention_heads=audio_heads,
        audio_attention_head_dim=audio_head_dim,
        audio_cross_attention_dim=audio_context,
    )


# 2 layers, video 2 heads x 16, audio 2 heads x 8, 8 latent channels each, caption channels 16
TINY_WIDTHS = dict(
    attention_widths(2, 16, 32, 2, 8, 16),
    in_channels=8,
    out_channels=8,
    num_layers=2,
    audio_in_channels=8,
    audio_out_channels=8,
    caption_channels=16,
)


def transformer_config(flavour: str, widths: dict = TINY_WIDTHS, settings: dict = CHECKPOINT_SETTINGS, **over) -> dict:
    """``{"transformer": widths + settings + over}``, plus LTX-2.3's gated attention, prompt AdaLN and
    caption projection before the connector when ``flavour == "ltx23"`` (``"ltx2"``: LTX-2)."""
    t = dict(widths, **settings)
    t.update(over)
    if flavour == "ltx23":
        t.update(LTX23_OPTIONS)
    return {"transformer": t}


def audio_vae_config(
    ch: int,
    z_channels: int,
    mel_bins: int,
    resolution: int,
    attn_resolutions=(),
    ch_mult=(1, 2, 4),
    num_res_blocks: int = 1,
    mid_attention: bool = True,
) -> dict:
    """``{"audio_vae": ...}`` in the embedded-config layout: the released stereo 16 kHz causal settings
    (pixel norm, causal along time, STFT hop 160 / 1024) at these sizes (``mid_attention``: the mid block's
    attention, on in LTX-2, off in LTX-2.3)."""
    return {
        "audio_vae": {
            "model": {
                "params": {
                    "sampling_rate": 16000,
                    "ddconfig": {
                        "ch": ch,
                        "ch_mult": list(ch_mult),
                        "num_res_blocks": num_res_blocks,
                        "attn_resolutions": list(attn_resolutions),
                        "resolution": resolution,
                        "z_channels": z_channels,
                        "in_channels": 2,
                        "out_ch": 2,
                        "double_z": True,
                        "norm_type": "pixel",
                        "causality_axis": "height",
                        "mid_block_add_attention": mid_attention,
                        "mel_bins": mel_bins,
                    },
                }
            },
            "preprocessing": {"stft": {"hop_length": 160, "filter_length": 1024, "causal": True}},
        }
    }


def vocoder_config(resblock_kernel_sizes: list, resblock_dilation_sizes: list) -> dict:
    """``{"vocoder": ...}``: a tiny stereo HiFi-GAN (resblock "1", 16 initial channels, upsampling x2 then x3
    with kernels 4 and 5, 24 kHz out) with these residual blocks."""
    return {
        "vocoder": {
            "resblock": "1",
            "stereo": True,
            "upsample_initial_channel": 16,
            "upsample_rates": [2, 3],
            "upsample_kernel_sizes": [4, 5],
            "resblock_kernel_sizes": resblock_kernel_sizes,
            "resblock_dilation_sizes": resblock_dilation_sizes,
            "output_sampling_rate": 24000,
        }
    }


# BigVGAN-v2 generator settings of the LTX-2.3 vocoder and its bandwidth-extension stage (docs/ltx2.md 5)
AMP = dict(resblock="AMP1", activation="snakebeta", use_tanh_at_final=False, use_bias_at_final=False)
# the released BWE stage: 16 kHz mel (512-point STFT, hop 80, 64 bins) -> 48 kHz, rates (6, 5, 2, 2, 2)
BWE_SETTINGS = dict(
    upsample_rates=[6, 5, 2, 2, 2],
    upsample_kernel_sizes=[12, 11, 4, 4, 4],
    input_sampling_rate=16000,
    output_sampling_rate=48000,
    n_fft=512,
    hop_length=80,
    num_mels=64,
)


def bwe_vocoder_config(ch: int, bwe_ch: int, rates=(5, 2, 2, 2, 2, 2), kernels=(11, 4, 4, 4, 4, 4), **amp) -> dict:
    """``{"vocoder": {"vocoder": ..., "bwe": ...}}``: LTX-2.3's vocoder (``ch`` initial channels, upsampling
    ``rates`` with ``kernels``; default the released 16 kHz ones) followed by the released BWE stage with
    ``bwe_ch`` initial channels; ``amp``: more generator settings for both (stereo, residual kernels...)."""
    gen = dict(AMP, **amp)
    return {
        "vocoder": {
            "vocoder": dict(
                gen, upsample_initial_channel=ch, upsample_rates=list(rates), upsample_kernel_sizes=list(kernels)
            ),
            "bwe": dict(gen, upsample_initial_channel=bwe_ch, **BWE_SETTINGS),
        }
    }


# transformers 5 -> 4.x names of Gemma3ForConditionalGeneration (the layout the releases ship and ltx-core reads)
GEMMA_LEGACY = {
    "model.language_model.": "language_model.model.",
    "model.vision_tower.": "vision_tower.vision_model.",
    "model.multi_modal_projector.": "multi_modal_projector.",
}


def gemma_legacy_names(state_dict: dict, lm_head: bool = True) -> dict:
    """A transformers-5 Gemma 3 state dict under the 4.x names (contiguous tensors, for safetensors);
    ``lm_head=False`` leaves out the head, tied to the embeddings and not stored (as in the real repo)."""
    sd = {}
    for k, v in state_dict.items():
        if k == "lm_head.weight" and not lm_head:
            continue
        for a, b in GEMMA_LEGACY.items():
            if k.startswith(a):
                k = b + k[len(a) :]
        sd[k] = v.contiguous()
    return sd


def convert_tiny(dst, variant: str = "dev"):
    """The tiny LTX-2 checkpoint (assets/tiny-LTX-2, ``variant`` dev or distilled) converted in float32 into
    ``dst`` with its Gemma, upsampler and (dev) distilled LoRA; the converted folder."""
    from mlx_video.ltx2 import loading
    from mlx_video.ltx2.checkpoint import convert_ltx2
    from tests.helpers import ASSETS

    parts = loading.find_parts(ASSETS / "tiny-LTX-2", variant)
    return convert_ltx2(
        parts["checkpoint"],
        dst,
        dtype="float32",
        gemma=parts["gemma"],
        upsamplers=parts["upsamplers"],
        distilled_lora=parts["distilled_lora"],
    )
