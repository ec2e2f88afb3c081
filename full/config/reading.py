"""Plain data in, typed configuration out: YAML / TOML files, ``key=value`` overrides, layer merging, and the
coercion of nested plain data into the schema's dataclasses (:mod:`full.config.schema`).

Coercion follows the annotations: a dataclass from a table (unknown keys are errors naming the closest known
one, or the new name of a setting that was renamed), an enum from one of its values, ``X | None`` from null or
an ``X``, ``tuple[T, ...]`` / ``tuple[A, B]`` from a list, ``bool`` / ``int`` / ``str`` strictly (no ``"3"`` for
3, no ``true`` for 1), and ``float`` from a number or any string Python's ``float`` reads (``"2e-6"``, ``"1E-4"``,
``".5"``, ``"inf"``: YAML 1.1 reads ``2e-6`` as a string). Every problem is collected (:class:`Problems`) and
reported in one :class:`ConfigError`; a section whose constructor refuses its values
(:class:`cf_ref.schedule.FewStepSchedule`) is reported naming the section.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cf_ref.errors import UserError
from cf_ref.io import read_text
from full.config.errors import ConfigError

# --------------------------------------------------------------------------------------------- plain → typed


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


RENAMED = {
    "model.shift": "schedule.shift",
    "model.few_step_timesteps": "schedule.timesteps",
    "ode_pairs.num_steps": "schedule.ode_steps",
    "cd.num_steps": "schedule.ode_steps",
    "dmd.rollout": "dmd.generator_input",
}
"""Settings that moved: old dotted name → new one (configuration files written before the ``schedule`` section)."""


@dataclass
class Problems:
    """Every problem found while reading a configuration: ``messages`` (one per problem, naming the setting) and
    ``settings``, the dotted names that could not be read (their defaults stand in, so later checks that mention
    them would only repeat the problem)."""

    messages: list[str] = field(default_factory=list)
    settings: set[str] = field(default_factory=set)

    def add(self, where: str, message: str) -> None:
        self.settings.add(where)
        self.messages.append(message)

    def raise_if_any(self, title: str = "invalid configuration") -> None:
        if self.messages:
            raise ConfigError(f"{title}:\n  - " + "\n  - ".join(self.messages))


def _coerce_union(value: Any, options: tuple[Any, ...], where: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}: may not be null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(value, option, where)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {options}")


def _coerce_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
    return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def _coerce_enum(value: Any, tp: type[enum.Enum], where: str) -> enum.Enum:
    if isinstance(value, tp):
        return value
    try:
        return tp(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}") from None


def _coerce_float(value: Any, where: str) -> float:
    """A number, or a string Python's ``float`` reads (``"2e-6"``, ``"1E-4"``, ``".5"``, ``"inf"``)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        raise ConfigError(f"{where}: {value} is too large for a number of this setting") from None


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if value is None:
        raise ConfigError(f"{where}: may not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        return _coerce_float(value, where)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover - a bug in the schema


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp``, or raise a ConfigError naming ``where`` (every problem
    inside a table, see :func:`from_dict`)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), where)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(tp), where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table of settings, got {value!r}")
        problems = Problems()
        built = build_section(tp, value, where, problems)
        problems.raise_if_any(f"{where}: invalid settings")
        return built
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _coerce_enum(value, tp, where)
    return _coerce_scalar(value, tp, where)


def _dotted(where: str, key: str) -> str:
    return key if where == "config" else f"{where}.{key}"


def _unknown_key(cls: type, key: str, where: str) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    moved = RENAMED.get(_dotted(where, key))
    if moved is not None:
        return f"{_dotted(where, key)} is now {moved} (a configuration written by an older cf-ref): rename it"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown setting {key!r}{hint}; known: {', '.join(names)}"


def build_section(cls: type, data: Mapping[str, Any], where: str, problems: Problems) -> Any:
    """Dataclass ``cls`` from nested plain data, every problem added to ``problems`` (a setting that cannot be
    read keeps its default, a section that refuses its values is built from its defaults)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = _dotted(where, key)
        if key not in known:
            problems.add(name, _unknown_key(cls, key, where))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                problems.add(name, f"{name}: expected a table of settings, got {value!r}")
                continue
            kwargs[key] = build_section(tp, value, name, problems)
            continue
        try:
            kwargs[key] = coerce(value, tp, name)
        except ConfigError as exc:
            problems.add(name, str(exc))
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section that validates itself (FewStepSchedule)
        problems.add(where, f"{where}: {exc}")
        return cls()


def from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from nested plain data; missing keys keep their defaults. Raises one
    :class:`ConfigError` listing every problem."""
    problems = Problems()
    built = build_section(cls, data, where, problems)
    problems.raise_if_any()
    return built


# --------------------------------------------------------------------------------------------- plain layers


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: tables merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"dmd.guidance_scale=3.0"`` → ``{"dmd": {"guidance_scale": 3.0}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. dmd.guidance_scale=3.0")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty name in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot read value {raw!r}: {exc}") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def _parse_toml(text: str, path: Path) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ConfigError(f"config file {path}: TOML needs Python >= 3.11 (tomllib); use YAML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) configuration file into nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = read_text(path, "config file")
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    elif path.suffix == ".toml":
        data = _parse_toml(text, path)
    else:
        raise ConfigError(f"config file {path}: expected a .yaml, .yml or .toml file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings at the top level")
    return data
