"""Named model sets (``--preset NAME``): what each one builds and the video it was made for.

A preset is a :class:`Preset`: a function that writes a diffusers-format Wan folder (``transformer/``,
``vae/``, ``text_encoder/``, ``tokenizer/``) plus its video size, text length and block size; loading then
takes the same path as a real checkpoint (:func:`full.components.load_preset`). This module imports nothing
heavy, so the command line can list the names. ``tiny`` builds random tiny models in code; ``small`` is the small
track's trained causal-forcing student, shipped as package data (:data:`full.small.ship.SHIPPED`, a model folder
with a patch-code "VAE" and a word-vector "text encoder", :mod:`full.small.components`), whose ``write`` returns
that folder as it is. A preset also carries the sampling settings its model was trained for (latent frames,
steps, σ-list shift, fps); :func:`full.sample_files.preset_config` fills them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cf_ref.errors import InvalidValue


@dataclass(frozen=True)
class Preset:
    """``write(folder) -> folder`` writes the model set (or returns the shipped folder holding it); ``height`` ×
    ``width`` pixels; ``text_length`` tokens per prompt (None: the tokenizer's, at most 512); ``block_size`` latent
    frames per block; ``frames`` latent frames, ``steps`` per block, σ-list ``shift`` and ``fps`` of a sample
    (None: the sampler's defaults, Wan's setting)."""

    write: Callable[[str], str]
    height: int
    width: int
    text_length: int | None = None
    block_size: int = 3
    description: str = ""
    frames: int | None = None
    steps: int | None = None
    shift: float | None = None
    fps: int | None = None

    def sample_settings(self) -> dict[str, Any]:
        """The preset's sampling settings as :class:`full.sampler.SampleConfig` fields (only those it sets)."""
        values = {"height": self.height, "width": self.width, "block_size": self.block_size, "num_frames": self.frames}
        values |= {"steps": self.steps, "shift": self.shift}
        return {k: v for k, v in values.items() if v is not None}


def _tiny() -> Preset:
    from full.tiny import TINY, write_tiny_pipeline

    return Preset(
        write_tiny_pipeline,
        TINY.height,
        TINY.width,
        TINY.text_length,
        3,
        "tiny random models built in code (offline smoke runs; draws coloured noise)",
    )


def _tiny_ti2v_5b() -> Preset:
    import functools

    from full.tiny import TINY_TI2V_5B, write_tiny_pipeline

    return Preset(
        functools.partial(write_tiny_pipeline, cfg=TINY_TI2V_5B),
        TINY_TI2V_5B.height,
        TINY_TI2V_5B.width,
        TINY_TI2V_5B.text_length,
        3,
        "tiny random Wan2.2-TI2V-5B-shaped models: 48 latent channels, a Wan2.2-config VAE (16x); --image conditions "
        "frame 0 of the first block",
    )


def _small() -> Preset:
    from full.small.ship import SHIPPED, read_manifest

    s = read_manifest(SHIPPED)["sampling"]
    return Preset(
        lambda folder: str(SHIPPED),
        s["height"],
        s["width"],
        s["text_length"],
        s["block_size"],
        "the small track's trained causal-forcing student (16x16 bouncing shapes shown at 128x128; prompts "
        "'a COLOUR SHAPE moving DIRECTION')",
        frames=s["frames"],
        steps=s["steps"],
        shift=s["shift"],
        fps=s["fps"],
    )


#: Preset name → a function building its :class:`Preset` (nothing is imported until one is used).
PRESETS: dict[str, Callable[[], Preset]] = {"small": _small, "tiny": _tiny, "tiny-ti2v-5b": _tiny_ti2v_5b}


def get_preset(name: str) -> Preset:
    """The preset ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise InvalidValue(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
