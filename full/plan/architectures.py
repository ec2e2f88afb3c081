"""Which transformer architecture a configured model folder holds, without loading (or even having) its weights.

A folder with a diffusers ``config.json`` (the folder itself or its ``transformer/``) gives its own
configuration; otherwise the folder's name is matched against the known releases (``Wan2.1-T2V-1.3B-Diffusers``
→ :data:`full.model.WAN21_T2V_1_3B`), so a plan can be made for a model that is not downloaded. The architectures
are :data:`full.architectures.ARCHITECTURES` (a new one is one entry there plus its release-name fragments here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cf_ref.errors import InvalidValue
from full.architectures import ARCHITECTURES as REGISTRY
from full.model_files import read_config, transformer_dir

#: architecture name (:data:`full.architectures.ARCHITECTURES`) → name fragments that identify its release folder
RELEASE_FRAGMENTS: dict[str, tuple[str, ...]] = {
    "wan2.1-t2v-1.3b": ("1.3b", "1_3b"),
    "wan2.1-t2v-14b": ("t2v-14b", "t2v_14b"),
    "wan2.2-ti2v-5b": ("ti2v-5b", "ti2v_5b"),
}

#: name → (name fragments that identify a release folder, ``CausalWanTransformer3DModel`` kwargs)
ARCHITECTURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    name: (RELEASE_FRAGMENTS[name], dict(arch.transformer)) for name, arch in REGISTRY.items()
}


class UnknownArchitecture(InvalidValue):
    """A model folder whose architecture the plan cannot tell."""


def _config_json(path: Path) -> dict[str, Any] | None:
    """The transformer's ``config.json`` (the folder's or its ``transformer/``'s) without diffusers' ``_`` keys;
    None where there is none (a release named but not downloaded)."""
    folder = transformer_dir(path)
    if not (folder / "config.json").is_file():
        return None
    return {k: v for k, v in read_config(folder, "model folder").items() if not k.startswith("_")}


def architecture(path_or_name: str | Path) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` of a model folder (its ``config.json``, else its name) or of a known architecture name."""
    text = str(path_or_name)
    key = text.strip().lower()
    if key in ARCHITECTURES:
        return key, dict(ARCHITECTURES[key][1])
    config = _config_json(Path(text))
    if config is not None:
        return Path(text).name, config
    name = Path(text).name.lower()
    for arch, (fragments, kwargs) in ARCHITECTURES.items():
        if any(f in name for f in fragments):
            return arch, dict(kwargs)
    raise UnknownArchitecture(
        f"cannot tell the architecture of {text!r}: no config.json there and the name matches none of "
        f"{', '.join(ARCHITECTURES)} (pass one of these names)"
    )
