"""Building a run's configuration from its layers, and the resolved configuration on disk.

Layers, each overriding the previous one: the dataclass defaults (:mod:`full.config.schema`) → the recipe's
options (:func:`full.recipes.recipe_settings`) → an optional preset (:data:`full.config.presets.PRESETS`) → a
YAML or TOML file → dotted ``key=value`` overrides; then :func:`full.config.checks.validate`. Every problem —
unknown keys, values of the wrong type, cross-field checks — is reported in one :class:`ConfigError`.

The resolved configuration of a run (``<out>/config.yaml``, :func:`save_config`) stores the paths inside the run
relative to its folder and every other path absolute, so a moved or copied run folder resumes; a file carrying
:data:`RUN_HEADER` has its relative paths read relative to its own folder (also when given as ``--config``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cf_ref.io import to_plain, write_text
from cf_ref.recipes import Recipe
from full.config.checks import problems
from full.config.errors import ConfigError
from full.config.presets import PRESETS
from full.config.reading import Problems, build_section, coerce, merge, parse_override, read_file
from full.config.schema import DEFAULT_RECIPE, RunConfig, leaf_settings
from full.recipes import recipe_settings

RUN_HEADER = "# resolved cf-ref full-track configuration; relative paths are relative to this file's folder\n"
PATH_SETTINGS = tuple(name for name, f, _ in leaf_settings() if f.metadata.get("path"))
"""Dotted names of the settings that name files or folders (:data:`full.config.schema.PATH`)."""


def _get(table: dict[str, Any], name: str) -> Any:
    for part in name.split("."):
        if not isinstance(table, dict) or part not in table:
            return None
        table = table[part]
    return table


def _set(table: dict[str, Any], name: str, value: Any) -> None:
    *sections, key = name.split(".")
    for part in sections:
        table = table[part]
    table[key] = value


def _map_paths(table: dict[str, Any], fn) -> dict[str, Any]:
    """A copy of the plain ``table`` with ``fn`` applied to every path setting that holds a string."""
    out = merge({}, table)
    for name in PATH_SETTINGS:
        value = _get(out, name)
        if isinstance(value, str) and value:
            _set(out, name, fn(value))
    return out


def is_run_config(path: str | Path) -> bool:
    """Whether ``path`` is a run's resolved configuration written by :func:`save_config`."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline() == RUN_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def read_layer(path: str | Path) -> dict[str, Any]:
    """A configuration file as plain data; a run's resolved configuration has its paths made absolute."""
    data = read_file(path)
    if is_run_config(path):
        folder = os.path.abspath(Path(path).parent)
        data = _map_paths(data, lambda p: os.path.normpath(os.path.join(folder, p)))
    return data


def absolute_paths(config: RunConfig) -> RunConfig:
    """``config`` with every relative path setting made absolute (relative to the working folder)."""
    return from_dict_checked(_map_paths(to_plain(config), os.path.abspath))


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
        layers.append(read_layer(path))
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
    out: str | None = None,
) -> RunConfig:
    """Layer defaults → recipe → preset → file → overrides → ``out`` (see module doc), then validate.

    The recipe is taken from ``recipe``, else from the overrides / file / preset, else the default.
    """
    user = _user_layers(path, overrides, preset, recipe)
    if out is not None:
        user = merge(user, {"out": out})
    try:
        chosen = coerce(user.get("recipe", DEFAULT_RECIPE.value), Recipe, "recipe")
    except ConfigError:  # reported with every other problem below
        chosen = DEFAULT_RECIPE
    return from_dict_checked(merge(recipe_settings(chosen), user))


def from_dict_checked(table: dict[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from plain data, read and validated with every problem in one :class:`ConfigError`
    (checks about a setting that could not be read are left out: its default stood in)."""
    found = Problems()
    config = build_section(RunConfig, table, "config", found)
    for message in problems(config):
        if not any(name in message for name in found.settings):
            found.messages.append(message)
    found.raise_if_any()
    return config


def relative_table(config: RunConfig, folder: str | Path) -> dict[str, Any]:
    """``config`` as plain data with the paths inside ``folder`` relative to it and every other path absolute."""
    folder = os.path.abspath(folder)

    def stored(p: str) -> str:
        p = os.path.abspath(p)
        inside = p == folder or p.startswith(folder.rstrip(os.sep) + os.sep)
        return os.path.relpath(p, folder) if inside else p

    return _map_paths(to_plain(config), stored)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically); :func:`load_config` reads it back. Paths inside the
    file's folder are stored relative to it, the others absolute (see module doc)."""
    text = yaml.safe_dump(relative_table(config, Path(path).parent), sort_keys=False, allow_unicode=True)
    write_text(path, RUN_HEADER + text)


def load_config(path: str | Path) -> RunConfig:
    """Read a saved (resolved) configuration, its paths absolute; no recipe layer is applied, it is resolved."""
    return from_dict_checked(read_layer(path))
