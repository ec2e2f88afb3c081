"""Named model sets (``--preset NAME``): what each one builds and the video it was made for.

A preset is a :class:`Preset`: a function that writes a diffusers-format Wan folder (``transformer/``,
``vae/``, ``text_encoder/``, ``tokenizer/``) plus its video size, text length and block size; loading then
takes the same path as a real checkpoint (:func:`full.components.load_preset`). This module imports nothing
heavy, so the command line can list the names. ``tiny`` builds random tiny models in code. A trained preset —
the small track's trained student (``small``, not built yet) — is one more entry of :data:`PRESETS` whose ``write``
copies (or builds and caches) its folder; nothing else has to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cf_ref.errors import InvalidValue


@dataclass(frozen=True)
class Preset:
    """``write(folder) -> folder`` writes the model set; ``height`` × ``width`` pixels; ``text_length`` tokens
    per prompt (None: the tokenizer's, at most 512); ``block_size`` latent frames per block."""

    write: Callable[[str], str]
    height: int
    width: int
    text_length: int | None = None
    block_size: int = 3
    description: str = ""


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


#: Preset name → a function building its :class:`Preset` (nothing is imported until one is used).
PRESETS: dict[str, Callable[[], Preset]] = {"tiny": _tiny, "tiny-ti2v-5b": _tiny_ti2v_5b}


def get_preset(name: str) -> Preset:
    """The preset ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise InvalidValue(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
