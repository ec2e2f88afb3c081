"""Tiny random stand-ins for Wan's three models, built in code (tests, ``--preset tiny``, benchmarks on CPU).

Same classes as the real pipeline — ``CausalWanTransformer3DModel``, diffusers' ``AutoencoderKLWan``,
transformers' ``UMT5EncoderModel`` with a byte-level tokenizer — at a few thousand parameters each, so
every code path (loading a diffusers-format folder, text encoding, KV-cached sampling, streaming VAE
decode, MP4) runs offline in seconds. All sizes live in :class:`TinyConfig`; :data:`TINY_ARCHITECTURES` holds
one per base model (:mod:`full.architectures`), shrunk but keeping what distinguishes it: latent channels, the
VAE's compression and pixel patching, patch size, more heads and layers than the 1.3B model, the timestep input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKLWan

from full.architectures import ARCHITECTURES
from full.model import CausalWanTransformer3DModel


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny models. The DiT's ``in_channels`` equals the VAE's ``z_dim``; ``arch`` names the base
    model (:data:`full.architectures.ARCHITECTURES`) whose non-size settings the tiny DiT keeps."""

    arch: str = "wan2.1-t2v-1.3b"
    latent_channels: int = 4
    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 16  # Wan's RoPE splits it into t/h/w parts: 16 - 2·4, 4, 4
    ffn_dim: int = 64
    text_dim: int = 32
    freq_dim: int = 32
    rope_max_seq_len: int = 1024
    text_layers: int = 2
    text_heads: int = 2
    text_ff: int = 64
    text_length: int = 16  # tokens per prompt (Wan: 512)
    vae_base_dim: int = 8
    vae_dim_mult: tuple[int, ...] = (1, 2, 2, 2)  # 3 spatial downsamplings: 8× like Wan
    vae_temporal_downsample: tuple[bool, ...] = (False, True, True)  # 4× in time like Wan
    vae_patch_size: int | None = None  # Wan2.2: pixels patchified 2×2 before the encoder (16× in all)
    vae_decoder_base_dim: int | None = None
    height: int = 64  # pixels: latent 8×8, 4×4 = 16 tokens per frame
    width: int = 64
    special_tokens: tuple[str, ...] = field(default=("<pad>", "</s>", "<unk>"))

    @property
    def vae_spatial_compression(self) -> int:
        return 2 ** (len(self.vae_dim_mult) - 1) * (self.vae_patch_size or 1)


TINY = TinyConfig()
#: Wan2.1-T2V-14B shrunk: more heads and layers than :data:`TINY` (40 vs 12 heads, 40 vs 30 layers).
TINY_T2V_14B = TinyConfig(arch="wan2.1-t2v-14b", num_heads=4, num_layers=3, ffn_dim=96)
#: Wan2.2-TI2V-5B shrunk: its 48 latent channels, a Wan2.2-config VAE (pixel patch 2, residual blocks: 16×
#: spatial), 3 heads (24 in the 5B), 128×128 pixels → 8×8 latents → 16 tokens per frame like :data:`TINY`.
TINY_TI2V_5B = TinyConfig(
    arch="wan2.2-ti2v-5b",
    latent_channels=48,
    num_heads=3,
    ffn_dim=96,
    vae_patch_size=2,
    vae_decoder_base_dim=12,
    height=128,
    width=128,
)
#: Architecture name → its tiny configuration (the mode tests run over all of them).
TINY_ARCHITECTURES: dict[str, TinyConfig] = {c.arch: c for c in (TINY, TINY_T2V_14B, TINY_TI2V_5B)}
#: Model preset name (``model.preset`` of a training config, ``--preset`` of sample) → its tiny configuration.
TINY_PRESETS: dict[str, TinyConfig] = {"tiny": TINY, "tiny-ti2v-5b": TINY_TI2V_5B}


def transformer_kwargs(cfg: TinyConfig = TINY) -> dict:
    """Config of the tiny DiT (diffusers ``WanTransformer3DModel`` arguments): the architecture ``cfg.arch``'s
    settings (:data:`full.architectures.ARCHITECTURES`: patch size, norms, ε) with the sizes of ``cfg``."""
    return dict(
        ARCHITECTURES[cfg.arch].transformer,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        rope_max_seq_len=cfg.rope_max_seq_len,
    )


def tiny_transformer(seed: int = 0, cfg: TinyConfig = TINY) -> CausalWanTransformer3DModel:
    """A randomly initialised tiny causal DiT (fp32, eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CausalWanTransformer3DModel(**transformer_kwargs(cfg))
    return model.eval()


def tiny_vae(seed: int = 0, cfg: TinyConfig = TINY) -> AutoencoderKLWan:
    """A randomly initialised tiny Wan VAE (4× temporal, 8× spatial compression like Wan2.1's; with
    ``cfg.vae_patch_size`` 2 the Wan2.2 layout: residual blocks, 12 patchified pixel channels, 16× spatial)."""
    wan22 = {}
    if cfg.vae_patch_size is not None:
        p = cfg.vae_patch_size
        wan22 = dict(
            is_residual=True,
            in_channels=3 * p * p,
            out_channels=3 * p * p,
            patch_size=p,
            decoder_base_dim=cfg.vae_decoder_base_dim,
            scale_factor_spatial=cfg.vae_spatial_compression,
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(
            **wan22,
            base_dim=cfg.vae_base_dim,
            z_dim=cfg.latent_channels,
            dim_mult=list(cfg.vae_dim_mult),
            num_res_blocks=1,
            attn_scales=[],
            temperal_downsample=list(cfg.vae_temporal_downsample),
            latents_mean=[0.0] * cfg.latent_channels,
            latents_std=[1.0] * cfg.latent_channels,
        )
    return vae.eval()


def tiny_tokenizer(cfg: TinyConfig = TINY):
    """A byte-level tokenizer (one token per UTF-8 byte, no merges, ``</s>`` appended like T5's) as a
    transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(cfg.special_tokens)}
    vocab.update({ch: len(cfg.special_tokens) + i for i, ch in enumerate(sorted(alphabet))})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    pad, eos, unk = cfg.special_tokens
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=pad, eos_token=eos, unk_token=unk, model_max_length=cfg.text_length
    )


def tiny_text_encoder(seed: int = 0, cfg: TinyConfig = TINY):
    """A randomly initialised tiny UMT5 encoder whose output width is the DiT's ``text_dim``."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=len(cfg.special_tokens) + 256,
        d_model=cfg.text_dim,
        d_kv=cfg.text_dim // cfg.text_heads,
        d_ff=cfg.text_ff,
        num_layers=cfg.text_layers,
        num_heads=cfg.text_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UMT5EncoderModel(config)
    return model.eval()


def write_tiny_pipeline(folder: str | os.PathLike, seed: int = 0, cfg: TinyConfig = TINY) -> str:
    """Write a diffusers-format Wan folder (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``)
    of tiny random models; returns the folder. Loading it exercises the same path as a real checkpoint."""
    folder = os.fspath(folder)
    tiny_transformer(seed, cfg).save_pretrained(os.path.join(folder, "transformer"))
    tiny_vae(seed + 1, cfg).save_pretrained(os.path.join(folder, "vae"))
    tiny_text_encoder(seed + 2, cfg).save_pretrained(os.path.join(folder, "text_encoder"))
    tiny_tokenizer(cfg).save_pretrained(os.path.join(folder, "tokenizer"))
    return folder
