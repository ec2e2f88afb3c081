"""Model folders on disk, checked before they are loaded: one clear error instead of a loader's traceback.

A diffusers model folder is ``config.json`` + safetensors weights. Before anything is loaded (and before a run
starts, :mod:`full.preflight`) a folder is checked cheaply — without reading the weights:

* ``config.json`` is UTF-8 JSON holding a table, and names the expected class (``_class_name``);
* every ``*.safetensors`` file has a readable header whose tensors fit in the file (a truncated or garbage file
  fails here) — :func:`check_safetensors`;
* a transformer holds Wan's parameter names (``patch_embedding.weight``, ``blocks.0.attn1.to_q.weight``): an
  original-layout Wan checkpoint is pointed to ``cf-ref full convert``, another model is named as such.

:func:`load_transformer` and :func:`load_pretrained` then load, turning any loader failure that slips through
into a :class:`ModelFolderError` naming the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cf_ref.checksums import IntegrityError, read_safetensors_header
from cf_ref.errors import UserError
from cf_ref.io import read_text

TRANSFORMER_CLASSES = ("WanTransformer3DModel", "CausalWanTransformer3DModel")
TRANSFORMER_KEYS = ("patch_embedding.weight", "blocks.0.attn1.to_q.weight")


class ModelFolderError(UserError):
    """A model folder that is missing, incomplete, corrupt or of another model."""


def check_safetensors(path: str | Path) -> list[str]:
    """The tensor names of a safetensors file, after checking its header and that every tensor fits in the file
    (a truncated or garbage file raises :class:`ModelFolderError`). Reads the header only."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header, start = read_safetensors_header(fh, path)
            size = fh.seek(0, 2)
    except IntegrityError as exc:
        raise ModelFolderError(str(exc)) from None
    names = [k for k in header if k != "__metadata__"]
    try:
        end = max((start + int(header[k]["data_offsets"][1]) for k in names), default=start)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ModelFolderError(f"{path} is not a readable safetensors file (malformed header)") from None
    if end > size:
        raise ModelFolderError(f"{path} is truncated: its tensors need {end} bytes, the file has {size}")
    return names


def read_config(folder: Path, what: str) -> dict[str, Any]:
    """``folder/config.json`` as a table, with a clear error when it is missing or not JSON."""
    path = folder / "config.json"
    if not path.is_file():
        raise ModelFolderError(f"{what}: {folder} is not a diffusers model folder (no config.json)")
    try:
        config = json.loads(read_text(path, "config.json"))
    except UserError as exc:
        raise ModelFolderError(f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{what}: {path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"{what}: {path} must hold a JSON table")
    return config


def weight_files(folder: Path, what: str) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFolderError(f"{what}: {folder} holds no *.safetensors weights")
    return files


def transformer_dir(path: str | Path) -> Path:
    """A transformer folder, or the ``transformer/`` of a pipeline folder."""
    path = Path(path)
    return path / "transformer" if (path / "transformer" / "config.json").is_file() else path


def check_transformer(path: str | Path, what: str) -> dict[str, Any]:
    """Check a Wan transformer folder (or a pipeline folder with ``transformer/``, see module doc) without loading
    it; returns its ``config.json``."""
    folder = transformer_dir(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{what}: {folder} does not exist")
    config = read_config(folder, what)
    name = config.get("_class_name")
    if name is not None and name not in TRANSFORMER_CLASSES:
        raise ModelFolderError(f"{what}: {folder} holds a {name}, not a Wan transformer ({TRANSFORMER_CLASSES[0]})")
    keys = {k for f in weight_files(folder, what) for k in check_safetensors(f)}
    if "blocks.0.self_attn.q.weight" in keys:
        raise ModelFolderError(
            f"{what}: {folder} holds original-layout Wan weights; convert them with `cf-ref full convert`"
        )
    missing = [k for k in TRANSFORMER_KEYS if k not in keys]
    if missing:
        raise ModelFolderError(f"{what}: the weights in {folder} are not a Wan transformer's (no {missing[0]})")
    return config


def check_vae(path: str | Path, what: str) -> dict[str, Any]:
    """Check an ``AutoencoderKLWan`` folder (or a pipeline folder with ``vae/``); returns its ``config.json``."""
    path = Path(path)
    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not folder.is_dir():
        raise ModelFolderError(f"{what}: {folder} does not exist")
    config = read_config(folder, what)
    name = config.get("_class_name")
    if name is not None and name != "AutoencoderKLWan":
        raise ModelFolderError(f"{what}: {folder} holds a {name}, not a Wan VAE (AutoencoderKLWan)")
    for f in weight_files(folder, what):
        check_safetensors(f)
    return config


def load_pretrained(cls, folder: str | Path, what: str, **kwargs):
    """``cls.from_pretrained(folder, local_files_only=True, **kwargs)``; a loader failure becomes one
    :class:`ModelFolderError` naming the folder (call the matching ``check_*`` first for a precise message)."""
    try:
        return cls.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"{what}: cannot load {folder}: {first}") from exc


def load_transformer(path: str | Path, what: str, dtype: torch.dtype = torch.float32):
    """A :class:`full.model.CausalWanTransformer3DModel` from a checked folder (see :func:`check_transformer`)."""
    from full.model import CausalWanTransformer3DModel

    check_transformer(path, what)
    return load_pretrained(CausalWanTransformer3DModel, transformer_dir(path), what, torch_dtype=dtype)
