r"""The Wan base models the causal processors serve: one registry entry per architecture.

The causal model (:class:`full.model.CausalWanTransformer3DModel`) is diffusers' ``WanTransformer3DModel`` with
other attention processors, so any text-to-video Wan transformer becomes causal by configuration. An
:class:`Architecture` says everything that differs between base models:

* ``transformer`` — the diffusers ``WanTransformer3DModel`` arguments of the released model;
* ``vae`` — the ``AutoencoderKLWan`` arguments that fix the latent space (channels ``z_dim``, compression
  ``scale_factor_spatial`` / ``scale_factor_temporal``, the Wan2.2 VAE's pixel ``patch_size`` 2);
* ``timesteps`` — how the model was trained to read timesteps: one per video (Wan2.1) or one per token
  (Wan2.2-TI2V-5B, diffusers' ``expand_timesteps``: ``timestep [B, L]``). The causal modes give one level per
  frame (``sigma [B, F]``, folded into the modulation), which a per-token model saw in training;
* ``image`` — how an image conditions a video: not at all (T2V), or, for TI2V, the image's latent *is* latent
  frame 0, kept clean at timestep 0 while the other frames are denoised (``WanImageToVideoPipeline`` with
  ``expand_timesteps``; the Wan2.2 repository's ``wan/textimage2video.py``: ``masks_like`` / ``mask2``);
* the published video size, frame rate and sampling shift.

Unsupported Wan models (:data:`UNSUPPORTED`) are refused with one line naming the supported ones: their
conditioning needs modules the processors do not replace (docs/full.md, "Models").

Adding a base model is one :data:`ARCHITECTURES` entry; :func:`identify` recognises a loaded config.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cf_ref.errors import InvalidValue

#: Wan2.1-T2V-1.3B's transformer configuration (diffusers' ``config.json`` of the released model): 30 blocks,
#: width 1536 = 12 heads × 128, FFN 8960, UMT5 text width 4096. ``CausalWanTransformer3DModel(**WAN21_T2V_1_3B)``
#: builds the real-size model with random weights (benchmarks, memory checks).
WAN21_T2V_1_3B: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
)

#: Wan2.1-T2V-14B's transformer configuration (diffusers' ``config.json`` of the released model): 40 blocks,
#: width 5120 = 40 heads × 128, FFN 13824; the rest as the 1.3B model. The published DMD stage's real score.
WAN21_T2V_14B: dict[str, Any] = {
    **WAN21_T2V_1_3B,
    "num_attention_heads": 40,
    "ffn_dim": 13824,
    "num_layers": 40,
}


#: Wan2.2-TI2V-5B's transformer configuration (diffusers' ``scripts/convert_wan_to_diffusers.py``, model type
#: ``Wan2.2-TI2V-5B``; the Wan2.2 repository's ``wan/configs/wan_ti2v_5B.py``): 30 blocks, width 3072 = 24 heads
#: × 128, FFN 14336, 48 latent channels (the Wan2.2 VAE's ``z_dim``); trained with per-token timesteps.
WAN22_TI2V_5B: dict[str, Any] = {
    **WAN21_T2V_1_3B,
    "num_attention_heads": 24,
    "in_channels": 48,
    "out_channels": 48,
    "ffn_dim": 14336,
}


class TimestepInput(enum.Enum):
    """How the base model reads its timestep."""

    PER_SAMPLE = "per-sample"  # timestep [B] (Wan2.1)
    PER_TOKEN = "per-token"  # timestep [B, L] (Wan2.2-TI2V-5B: expand_timesteps)


class ImageConditioning(enum.Enum):
    """How an image conditions the video."""

    NONE = "none"  # text-to-video; the frame-wise causal model can still prefill an image (full.sampler)
    FIRST_FRAME = "first-frame"  # TI2V: latent frame 0 is the image's latent, clean, at timestep 0


#: Wan2.1's VAE (diffusers' ``AutoencoderKLWan`` defaults): 16 channels, 8× spatial, 4× temporal compression.
WAN21_VAE: dict[str, Any] = dict(
    base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
)
#: Wan2.2's VAE (diffusers' ``vae22_diffusers_config``): 48 channels, pixels patchified 2×2 (12 input channels)
#: before three downsamplings: 16× spatial, 4× temporal compression; residual down/up blocks.
WAN22_VAE: dict[str, Any] = dict(
    base_dim=160,
    decoder_base_dim=256,
    z_dim=48,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
)


class UnsupportedArchitecture(InvalidValue):
    """A Wan model the causal processors cannot serve, or a name that is no architecture (one line)."""


@dataclass(frozen=True)
class Architecture:
    """One base model (see the module doc). ``video_size`` is ``(height, width)`` in pixels."""

    name: str
    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    timesteps: TimestepInput
    image: ImageConditioning
    video_size: tuple[int, int]
    fps: int
    sample_shift: float
    source: str

    @property
    def latent_channels(self) -> int:
        return int(self.transformer["in_channels"])

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent pixel (the VAE's ``scale_factor_spatial``)."""
        return int(self.vae.get("scale_factor_spatial", 8))

    @property
    def temporal_compression(self) -> int:
        return int(self.vae.get("scale_factor_temporal", 4))

    def tokens_per_frame(self, height: int, width: int) -> int:
        """DiT tokens per latent frame of a ``height×width``-pixel video: ``(H/(s·p_h))·(W/(s·p_w))``."""
        _, ph, pw = self.transformer["patch_size"]
        s = self.spatial_compression
        return (height // (s * ph)) * (width // (s * pw))

    def parameter_count(self) -> int:
        """Parameters of the real-size transformer (built on the meta device: no memory, no weights)."""
        import torch
        from diffusers import WanTransformer3DModel

        with torch.device("meta"):
            model = WanTransformer3DModel(**self.transformer)
        return sum(p.numel() for p in model.parameters())


_DIFFUSERS_SCRIPT = "huggingface/diffusers scripts/convert_wan_to_diffusers.py"

#: Name → architecture. The 14B model is the published DMD real score (and may be a student).
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "wan2.1-t2v-1.3b", WAN21_T2V_1_3B, WAN21_VAE, TimestepInput.PER_SAMPLE, ImageConditioning.NONE,
            (480, 832), 16, 5.0, f"Wan-AI/Wan2.1-T2V-1.3B-Diffusers; {_DIFFUSERS_SCRIPT}",
        ),
        Architecture(
            "wan2.1-t2v-14b", WAN21_T2V_14B, WAN21_VAE, TimestepInput.PER_SAMPLE, ImageConditioning.NONE,
            (480, 832), 16, 5.0, f"Wan-AI/Wan2.1-T2V-14B-Diffusers; {_DIFFUSERS_SCRIPT}",
        ),
        Architecture(
            "wan2.2-ti2v-5b", WAN22_TI2V_5B, WAN22_VAE, TimestepInput.PER_TOKEN, ImageConditioning.FIRST_FRAME,
            (704, 1280), 24, 5.0, f"Wan-AI/Wan2.2-TI2V-5B-Diffusers; {_DIFFUSERS_SCRIPT}; Wan2.2 wan/configs/wan_ti2v_5B.py",
        ),
    )
}  # fmt: skip

#: Wan models the processors cannot serve, and why (one line each; docs/full.md says more).
UNSUPPORTED: dict[str, str] = {
    "wan2.1-i2v-14b": "image cross-attention (CLIP image tokens, add_k_proj/add_v_proj) and 36 input channels",
    "wan2.1-flf2v-14b": "image cross-attention over two CLIP images and 36 input channels",
    "wan2.2-i2v-a14b": "the image enters as 20 concatenated channels (36 in) and two experts switch by noise level",
    "wan2.2-t2v-a14b": "two 14B experts switched at a noise boundary (one causal student is one transformer)",
    "wan-vace": "VACE control blocks added to the transformer",
    "wan2.2-animate-14b": "motion and face adapters and image cross-attention",
    "wan2.2-s2v-14b": "audio injection layers",
}


def supported_line() -> str:
    return f"supported architectures: {', '.join(ARCHITECTURES)}"


def get_architecture(name: str) -> Architecture:
    """The architecture ``name``; an unsupported Wan model or an unknown name is one line listing the supported."""
    key = name.strip().lower()
    if key in ARCHITECTURES:
        return ARCHITECTURES[key]
    if key in UNSUPPORTED:
        raise UnsupportedArchitecture(f"{name} is not supported ({UNSUPPORTED[key]}); {supported_line()}")
    raise UnsupportedArchitecture(f"unknown architecture {name!r}; {supported_line()}")


_SHAPE_KEYS = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "ffn_dim", "num_layers")


def check_supported(config: Mapping[str, Any]) -> None:
    """Refuse a transformer config the processors cannot serve (image cross-attention, temporal patches), in one line."""
    if config.get("added_kv_proj_dim") is not None or config.get("image_dim") is not None:
        raise UnsupportedArchitecture(
            "image cross-attention (an I2V / FLF2V Wan transformer: image_dim / added_kv_proj_dim set) is not "
            f"supported by the causal processors; {supported_line()}"
        )
    c_in, c_out = config.get("in_channels", 16), config.get("out_channels", 16)
    if c_out is not None and c_in != c_out:
        raise UnsupportedArchitecture(
            f"the transformer reads {c_in} channels and writes {c_out}: an image-conditioned (channel-concatenating "
            f"I2V) Wan model, which the causal processors do not serve; {supported_line()}"
        )
    patch = tuple(config.get("patch_size", (1, 2, 2)))
    if patch[0] != 1:
        raise UnsupportedArchitecture(f"causal modes need a temporal patch size of 1, got {patch}; {supported_line()}")


def identify(config: Mapping[str, Any]) -> Architecture | None:
    """The registered architecture whose transformer sizes ``config`` has (None for other sizes, e.g. tiny)."""
    check_supported(config)
    for arch in ARCHITECTURES.values():
        want = arch.transformer
        if all(config.get(k) == want[k] for k in _SHAPE_KEYS) and config.get("text_dim") == want["text_dim"]:
            return arch
    return None
