"""Which transformer architecture a configured model folder holds, without loading (or even having) its weights.

A folder with a diffusers ``config.json`` (the folder itself or its ``transformer/``) gives its own
configuration; otherwise the folder's name is matched against the known releases (``Wan2.1-T2V-1.3B-Diffusers``
→ :data:`full.model.WAN21_T2V_1_3B`), so a plan can be made for a model that is not downloaded. A new
architecture is one more entry of :data:`ARCHITECTURES`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cf_ref.errors import InvalidValue
from full.model import WAN21_T2V_1_3B, WAN21_T2V_14B

#: name → (name fragments that identify a release folder, ``CausalWanTransformer3DModel`` kwargs)
ARCHITECTURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "wan2.1-t2v-1.3b": (("1.3b", "1_3b"), WAN21_T2V_1_3B),
    "wan2.1-t2v-14b": (("14b",), WAN21_T2V_14B),
}


class UnknownArchitecture(InvalidValue):
    """A model folder whose architecture the plan cannot tell."""


def _config_json(path: Path) -> dict[str, Any] | None:
    for candidate in (path / "config.json", path / "transformer" / "config.json"):
        if candidate.is_file():
            raw = json.loads(candidate.read_text())
            return {k: v for k, v in raw.items() if not k.startswith("_")}
    return None


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
