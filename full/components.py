"""The three models a sampler needs (DiT, VAE, text encoder), loaded from a folder or built from a named preset.

Every surface that generates video — ``cf-ref full sample``, the stream (:mod:`full.stream`), the diffusers
pipeline (:mod:`full.pipeline_diffusers`) and ``cf-ref full serve`` — gets its models from here:

* :func:`load_components` — a diffusers-format Wan2.1 folder (``transformer/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``), offline, optionally with the DiT weights replaced by a converted or original-layout
  Causal Forcing / Self Forcing checkpoint;
* :func:`load_preset` — a preset by name (:data:`full.presets.PRESETS`; ``tiny`` builds random tiny models in
  code, ``small`` is the small track's shipped student), loaded through the same folder path.

A folder whose ``vae/`` / ``text_encoder/`` config names the small track's patch code / word vectors
(:mod:`full.small.components`) gets those in place of the Wan VAE / UMT5 encoder, behind the same interfaces.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from cf_ref.errors import InvalidValue
from cf_ref.machine import cuda_unavailable_reason
from full.model import CausalWanTransformer3DModel
from full.model_files import ModelFolderError, load_transformer
from full.presets import Preset, get_preset
from full.text import TextEncoder, load_text_encoder
from full.video import load_vae

#: Wan2.1's video size (pixels) when no preset says otherwise.
WAN_SIZE = (480, 832)


@dataclass
class WanComponents:
    """The three models of the sampler, on one device."""

    transformer: CausalWanTransformer3DModel
    vae: object
    text: TextEncoder

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent ``(C, h, w)`` of a ``height×width`` video; the size must suit the VAE and the patch size."""
        factor = self.vae.config.scale_factor_spatial
        _, ph, pw = self.transformer.config.patch_size
        if height < 1 or width < 1:
            raise InvalidValue(f"video size {width}x{height} must be positive")
        if height % (factor * ph) or width % (factor * pw):
            raise InvalidValue(
                f"video size {width}x{height} must be a multiple of {factor * pw}x{factor * ph} "
                f"(VAE {factor}x times patch {pw}x{ph})"
            )
        return self.transformer.config.in_channels, height // factor, width // factor


def load_preset(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[WanComponents, Preset]:
    """Build preset ``name``'s folder in a temporary directory and load it like any model folder (the same code
    path as a real checkpoint); the folder is removed once the models are in memory."""
    preset = get_preset(name)
    with tempfile.TemporaryDirectory(prefix=f"cf-ref-{name}-") as tmp:
        components = load_components(preset.write(tmp), device=device, dtype=dtype, text_length=preset.text_length)
    return components, preset


def _load_checkpoint_into(transformer: CausalWanTransformer3DModel, checkpoint, key: str | None, model_dir) -> None:
    from full.checkpoint_files import load_state_dict
    from full.convert import to_diffusers_layout

    state = to_diffusers_layout(load_state_dict(checkpoint, key))
    for name, tensor in transformer.state_dict().items():  # the first misfit, named with both shapes
        if name in state and state[name].shape != tensor.shape:
            raise InvalidValue(
                f"checkpoint {checkpoint} does not fit the model in {model_dir}: tensor {name} has shape "
                f"{list(state[name].shape)}, the model's {list(tensor.shape)}"
            )
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InvalidValue(
            f"checkpoint {checkpoint} does not fit the model in {model_dir}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def _load_vae(model_dir: Path, device, dtype):
    """A Wan VAE, or the small track's patch code when ``vae/config.json`` names it."""
    from full.small import components as small

    if small.holds_patch_code(model_dir):
        return small.load_patch_code_vae(model_dir, device, dtype)
    return load_vae(model_dir, device, dtype)


def _load_text_encoder(model_dir: Path, device, dtype, text_length: int | None) -> TextEncoder:
    """UMT5, or the small track's word vectors when ``text_encoder/config.json`` names them."""
    from full.small import components as small

    if small.holds_word_vectors(model_dir):
        return small.load_word_vector_encoder(model_dir, device, dtype, text_length)
    return load_text_encoder(model_dir, device, dtype, text_length)


def load_components(
    model_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_key: str | None = "generator",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    text_length: int | None = None,
) -> WanComponents:
    """Load a diffusers-format Wan2.1 folder (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``)
    offline; ``checkpoint`` replaces the DiT weights (any layout :mod:`full.convert` reads)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFolderError(f"model folder {model_dir} does not exist")
    if not (model_dir / "transformer").is_dir():
        raise ModelFolderError(f"{model_dir} has no transformer/ folder (expected a diffusers-format Wan2.1 folder)")
    transformer = load_transformer(model_dir / "transformer", "transformer", dtype)
    if checkpoint is not None:
        _load_checkpoint_into(transformer, checkpoint, checkpoint_key, model_dir)
    transformer = transformer.to(device).eval()
    vae = _load_vae(model_dir, device, dtype)
    if vae.config.z_dim != transformer.config.in_channels:
        raise InvalidValue(
            f"VAE latents have {vae.config.z_dim} channels, the DiT expects {transformer.config.in_channels}"
        )
    text = _load_text_encoder(model_dir, device, dtype, text_length)
    if text.model.config.d_model != transformer.config.text_dim:
        raise InvalidValue(
            f"text encoder width {text.model.config.d_model} != DiT text_dim {transformer.config.text_dim}"
        )
    return WanComponents(transformer, vae, text)


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """``auto`` → CUDA when available, else CPU; dtype ``auto`` → bf16 on CUDA, fp32 on CPU."""
    try:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    except RuntimeError as exc:
        raise InvalidValue(f"unknown device {device!r} ({exc}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue(f"device {device} requested, but {cuda_unavailable_reason()}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidValue(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype == "auto":
        dtype = "bf16" if dev.type == "cuda" else "fp32"
    if dtype not in dtypes:
        raise InvalidValue(f"dtype must be one of auto, {', '.join(dtypes)}; got {dtype!r}")
    return dev, dtypes[dtype]
