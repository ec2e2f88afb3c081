"""``cf-ref full sample`` as library functions: prompts in, MP4s (+ latents) and ``samples.json`` out.

The click command only parses options; everything it does is here, so the stream, the diffusers pipeline and
the server load models and build configs the same way:

* :func:`read_prompts` — one ``--prompt`` or a file of prompts (one a line, blank lines skipped);
* :func:`open_models` — a preset by name or a model folder (+ checkpoint) → components and the default size;
* :func:`sample_defaults` — the sampling settings the source's model was made for (a preset's, else Wan's);
  :func:`preset_config` — a :class:`~full.sampler.SampleConfig` at a preset's settings;
* :func:`image_latent_for` — the ``--image`` first frame encoded by the VAE (image-to-video);
* :func:`sample_to_folder` — generate each prompt (seed ``seed + i``) and write ``NNN_slug.mp4``,
  optionally ``NNN_slug.safetensors`` (latents), and the manifest ``samples.json`` (written last, atomically).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cf_ref.errors import InvalidValue
from cf_ref.io import read_text, save_tensors, to_plain, write_json
from full.components import WAN_SIZE, WanComponents, load_components, load_preset
from full.presets import Preset, get_preset
from full.sampler import SampleConfig, generate
from full.video import WAN_FPS, encode_image, load_image, to_uint8, video_frames, write_mp4

MANIFEST = "samples.json"
#: The :class:`full.sampler.SampleConfig` fields a model (preset) decides by default.
SETTINGS_OF_A_MODEL = ("steps", "block_size", "num_frames", "height", "width", "shift")


def read_prompts(prompt: str | None, prompts_file: str | os.PathLike | None) -> list[str]:
    """Exactly one of a prompt or a UTF-8 file with one prompt per line → the prompts."""
    if (prompt is None) == (prompts_file is None):
        raise InvalidValue("give exactly one of --prompt TEXT or --prompts FILE")
    if prompt is not None:
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 reach Python as lone surrogates
            raise InvalidValue("the prompt is not valid UTF-8 text") from None
        if not prompt.strip():
            raise InvalidValue("the prompt is empty")
        return [prompt]
    path = Path(prompts_file)
    lines = [line.strip() for line in read_text(path, "prompt file").splitlines() if line.strip()]
    if not lines:
        raise InvalidValue(f"{path} holds no prompt (one per line)")
    return lines


@dataclass(frozen=True)
class ModelSource:
    """Where the models come from: a preset name or a diffusers-format folder (+ DiT checkpoint)."""

    preset: str | None = None
    model_dir: str | os.PathLike | None = None
    checkpoint: str | os.PathLike | None = None
    checkpoint_key: str | None = "generator"

    def describe(self) -> str:
        return f"preset:{self.preset}" if self.preset else str(self.model_dir)


def open_models(
    source: ModelSource, device: torch.device, dtype: torch.dtype
) -> tuple[WanComponents, tuple[int, int], int | None]:
    """Load ``source`` → ``(components, default (height, width), the preset's block size or None)``."""
    if (source.preset is None) == (source.model_dir is None):
        raise InvalidValue("give exactly one of --model DIR or --preset NAME")
    if source.preset is not None:
        if source.checkpoint is not None:
            raise InvalidValue("--checkpoint replaces a model folder's DiT weights; use it with --model DIR")
        components, preset = load_preset(source.preset, device, dtype)
        return components, (preset.height, preset.width), preset.block_size
    components = load_components(source.model_dir, source.checkpoint, source.checkpoint_key, device, dtype)
    return components, WAN_SIZE, None


def sample_defaults(source: ModelSource) -> dict[str, Any]:
    """The sampler settings (:class:`full.sampler.SampleConfig` fields, and ``fps``) a source's model was made for:
    a preset's (:meth:`full.presets.Preset.sample_settings`), else Wan2.1's (the sampler's defaults, 16 fps)."""
    defaults = {k: v for k, v in asdict(SampleConfig()).items() if k in SETTINGS_OF_A_MODEL} | {"fps": WAN_FPS}
    if source.preset is None:
        return defaults
    preset = get_preset(source.preset)
    return defaults | preset.sample_settings() | ({} if preset.fps is None else {"fps": preset.fps})


def preset_config(preset: Preset, **overrides: Any) -> SampleConfig:
    """A :class:`full.sampler.SampleConfig` with ``preset``'s settings (:meth:`~full.presets.Preset.sample_settings`),
    ``overrides`` on top."""
    return SampleConfig(**(preset.sample_settings() | overrides))


def image_latent_for(components: WanComponents, image_path: str | os.PathLike, config: SampleConfig) -> torch.Tensor:
    """The first frame for image-to-video: the image (exactly the video size) → normalised latent ``[1, 1, C, h, w]``."""
    image = load_image(image_path, config.height, config.width)
    return encode_image(components.vae, image.to(components.device))


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "prompt"


def output_names(prompts: list[str]) -> list[str]:
    """The file stem of each prompt's video: ``NNN_slug``."""
    return [f"{i:03d}_{_slug(p)}" for i, p in enumerate(prompts)]


def existing_outputs(out_dir: str | os.PathLike, prompts: list[str], save_latents: bool = False) -> list[Path]:
    """The files of ``out_dir`` that sampling ``prompts`` would replace (an earlier sample's videos, latents,
    manifest): refuse them before generating unless told to overwrite."""
    out_dir = Path(out_dir)
    names = [MANIFEST] + [f"{n}.mp4" for n in output_names(prompts)]
    names += [f"{n}.safetensors" for n in output_names(prompts)] if save_latents else []
    return [out_dir / n for n in names if (out_dir / n).exists()]


def sample_to_folder(
    components: WanComponents,
    prompts: list[str],
    config: SampleConfig,
    out_dir: str | os.PathLike,
    *,
    image_latent: torch.Tensor | None = None,
    fps: int = WAN_FPS,
    save_latents: bool = False,
    model_name: str = "",
    checkpoint: str | None = None,
    progress: bool = False,
    on_sample=None,
) -> dict:
    """Generate every prompt (prompt i with seed ``config.seed + i``) and write the files; returns the manifest.
    ``on_sample(entry)`` is called after each video is written (the CLI prints a line)."""
    config.validate()
    if fps < 1:
        raise InvalidValue(f"fps must be >= 1, got {fps}")
    components.latent_shape(config.height, config.width)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = components.transformer.compute_dtype
    manifest = {"model": model_name, "checkpoint": checkpoint, "config": to_plain(config), "samples": []}
    encoded = [components.text.encode([p]).to(dtype) for p in prompts]  # a prompt the encoder refuses: nothing written
    for i, (prompt, name, embeds) in enumerate(zip(prompts, output_names(prompts), encoded)):
        run = replace(config, seed=config.seed + i)
        result = generate(components, embeds, run, image_latent=image_latent, progress=progress)
        write_mp4(out_dir / f"{name}.mp4", to_uint8(result.video[0]), fps=fps)
        if save_latents:
            save_tensors(out_dir / f"{name}.safetensors", {"latents": result.latents[0].float()})
        entry = {"index": i, "prompt": prompt, "file": f"{name}.mp4", "seed": run.seed}
        entry |= {
            "video_frames": video_frames(run.num_frames, components.vae.config.scale_factor_temporal),
            "fps_generation": result.fps,
            "timings_s": result.timings,
        }
        manifest["samples"].append(entry)
        if on_sample is not None:
            on_sample(entry)
    write_json(out_dir / MANIFEST, manifest)
    return manifest
