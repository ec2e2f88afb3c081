"""Building a run's configuration from its layers, and the resolved configuration on disk.

Layers, each overriding the previous one: the dataclass defaults (:mod:`full.config.schema`) → the recipe's
options (:func:`full.recipes.recipe_settings`) → an optional preset (:data:`full.config.presets.PRESETS`) → a
YAML or TOML file → dotted ``key=value`` overrides; then :func:`full.config.checks.validate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cf_ref.io import to_plain, write_text
from cf_ref.recipes import Recipe
from full.config.checks import validate
from full.config.errors import ConfigError
from full.config.presets import PRESETS
from full.config.reading import coerce, from_dict, merge, parse_override, read_file
from full.config.schema import DEFAULT_RECIPE, RunConfig
from full.recipes import recipe_settings


def _user_layers(
    path: str | Path | None, overrides: Sequence[str], preset: str | None, recipe: str | Recipe | None
) -> dict[str, Any]:
    """Preset → file → overrides → ``recipe``, merged into one plain table."""
    layers: list[dict[str, Any]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        layers.append(PRESETS[preset])
    if path is not None:
        layers.append(read_file(path))
    layers.extend(parse_override(o) for o in overrides)
    if recipe is not None:
        layers.append({"recipe": recipe.value if isinstance(recipe, Recipe) else recipe})
    user: dict[str, Any] = {}
    for layer in layers:
        user = merge(user, layer)
    return user


def build_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    preset: str | None = None,
    recipe: str | Recipe | None = None,
) -> RunConfig:
    """Layer defaults → recipe → preset → file → overrides (see module doc), then validate.

    The recipe is taken from ``recipe``, else from the overrides / file / preset, else the default.
    """
    user = _user_layers(path, overrides, preset, recipe)
    chosen = coerce(user.get("recipe", DEFAULT_RECIPE.value), Recipe, "recipe")
    config = from_dict(RunConfig, merge(recipe_settings(chosen), user))
    validate(config)
    return config


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically); :func:`load_config` reads it back."""
    text = yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True)
    write_text(path, "# resolved cf-ref full-track configuration\n" + text)


def load_config(path: str | Path) -> RunConfig:
    """Read a saved (resolved) configuration; no recipe layer is applied, it is already resolved."""
    config = from_dict(RunConfig, read_file(path))
    validate(config)
    return config
