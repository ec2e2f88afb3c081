r"""Reading DiT checkpoint files in every form they are released or trained in, into a ``{name: tensor}`` dict.

* a safetensors file, or a folder of them (a diffusers transformer folder, an original Wan folder);
* a **sharded** release: a folder (or its ``*.safetensors.index.json``) whose index maps every tensor to one of
  ``diffusion_pytorch_model-0000i-of-0000n.safetensors`` (Wan2.1-T2V-14B, Wan2.2-TI2V-5B). Every shard the index
  names must exist and together hold every tensor it lists;
* a ``torch.save`` state dict, or a training checkpoint holding several (Self Forcing / Causal Forcing's
  ``generator`` / ``generator_ema``): one is chosen by key. Read with ``weights_only=True``.

An original Wan folder whose ``config.json`` names a ``model_type`` the processors do not serve (``i2v``, ``flf2v``,
…) is refused in one line. Names are returned as stored; :mod:`full.convert` maps layouts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from cf_ref.errors import UserError
from full.architectures import UnsupportedArchitecture, supported_line


class ConvertError(UserError, ValueError):
    """A checkpoint that cannot be read or converted: unreadable, another layout, or incomplete."""


def load_state_dict(path: str | os.PathLike, key: str | None = "generator") -> dict[str, Tensor]:
    """Read a checkpoint: a safetensors file, a diffusers transformer folder, or a ``torch.save`` dict
    (``weights_only``); from a training checkpoint take entry ``key`` (``generator`` / ``generator_ema``)."""
    path = Path(path)
    if path.name.endswith(".index.json") or (path.is_dir() and any(path.glob("*.safetensors.index.json"))):
        return load_sharded(path)
    if path.is_dir():
        _check_model_type(path)
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors weights in folder {path}")
        return {k: v for f in files for k, v in _load_safetensors(f).items()}
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConvertError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format?): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path} holds a {type(obj).__name__}, expected a state dict")
    if all(isinstance(v, Tensor) for v in obj.values()):
        return obj
    if key is None or key not in obj or not isinstance(obj[key], dict):
        entries = [k for k, v in obj.items() if isinstance(v, dict)]
        raise ConvertError(f"{path} is a training checkpoint with entries {entries}; choose one with key= / --key")
    return obj[key]


SUPPORTED_MODEL_TYPES = ("t2v", "ti2v")
"""``model_type`` values of the original Wan ``config.json`` whose DiT the processors serve."""


def _check_model_type(folder: Path) -> None:
    """Refuse an original Wan folder whose ``config.json`` names an unsupported ``model_type`` (one line)."""
    config = folder / "config.json"
    if not config.is_file():
        return
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        return  # not our business: the tensors decide
    if model_type is not None and model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitecture(
            f"{config} is a Wan {model_type!r} model; the causal processors serve model types "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} ({supported_line()})"
        )


def load_sharded(path: str | os.PathLike) -> dict[str, Tensor]:
    """A sharded safetensors checkpoint: ``path`` is its ``*.safetensors.index.json`` or the folder holding it
    (exactly one). Every shard the index names must exist and hold the tensors the index gives it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    indexes = sorted(folder.glob("*.safetensors.index.json")) if path.is_dir() else [path]
    if len(indexes) != 1 or not indexes[0].is_file():
        raise ConvertError(f"{path}: expected one *.safetensors.index.json, found {[p.name for p in indexes]}")
    _check_model_type(folder)
    try:
        weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConvertError(f"{indexes[0]} is not a safetensors index (no weight_map): {exc}") from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise ConvertError(f"{indexes[0].name} names {len(shards)} shards; missing in {folder}: {missing[:3]}")
    state = {k: v for s in shards for k, v in _load_safetensors(folder / s).items()}
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise ConvertError(f"the shards lack {len(absent)} tensors the index lists, e.g. {absent[:3]}")
    return state


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from full.model_files import check_safetensors

    check_safetensors(path)
    from safetensors.torch import load_file

    return load_file(str(path))
