"""Files: atomic output, permissions that follow the umask, UTF-8 input, and checksums of weights.

**Atomic output.** Write to a temporary file in the same folder, fsync, then rename: a crash leaves either the
old file or the new one, never a torn one. Temporary names start with a dot and contain ``.tmp``
(:func:`atomic_path`) or are ``.NAME.XXXXXXXX`` folders (:func:`make_temp_dir`); :func:`remove_stale_temporaries`
removes those a killed writer left behind (call it only on a folder this process owns).

**Permissions.** Files are ``0666 & ~umask``, folders ``0777 & ~umask`` — also for writers that force ``0600``
(safetensors' ``save_file``, hence diffusers' ``save_pretrained``: :func:`follow_umask`).

**Checksums.** Every safetensors file written by :func:`save_tensors` carries the SHA-256 of its content in its
own metadata (:mod:`cf_ref.checksums`), so it stays verifiable wherever it is copied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cf_ref.checksums import DIGEST_KEY, tensors_digest
from cf_ref.errors import InvalidValue, UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    The temporary name keeps ``path``'s extension (``.x.<random>.tmp.mp4``), so writers that pick a format
    from the extension (ffmpeg) work; the final file gets the usual ``0666 & ~umask`` permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def to_plain(obj: Any) -> Any:
    """Plain JSON/YAML-ready data: dataclasses → dicts (field order), enums → their values (dict keys too),
    tuples → lists, tensors → (nested) lists; everything else as it is. The one serialiser of configs, records
    and metrics in both tracks."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {(k.value if isinstance(k, enum.Enum) else k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> str:
    """Atomically save a flat dict of tensors as safetensors (contiguous CPU copies), with their content digest
    in the metadata (see module doc); returns the digest."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    digest = tensors_digest(flat)
    with atomic_path(path) as tmp:
        try:
            save_file(flat, str(tmp), metadata={**(metadata or {}), DIGEST_KEY: digest})
        except Exception as exc:  # safetensors reports a failed write (disk full, …) as its own error type
            if isinstance(exc, OSError) or "I/O error" not in str(exc):
                raise
            raise OSError(f"cannot write {path}: {exc}") from exc
    return digest


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file, with a clear error if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise ValueError(f"cannot read safetensors file {path}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ folders


def follow_umask(path: str | os.PathLike) -> None:
    """Give ``path`` (and everything under it) the permissions the umask asks for: files ``0666 & ~umask``,
    folders ``0777 & ~umask`` (undoes writers that force 0600 / 0700)."""
    mask = _umask()
    path = Path(path)
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in items:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def make_temp_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new uniquely named folder ``parent/.name.XXXXXXXX`` with the umask's permissions (``mkdtemp`` forces
    0700); rename it into place when complete."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    names = tempfile._get_candidate_names()  # the same random names mkdtemp uses
    for _ in range(100):
        path = parent / f".{name}.{next(names)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for .{name}.* in {parent}")  # pragma: no cover


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}(\.tmp.*)?$")  # .NAME.XXXXXXXX and .STEM.XXXXXXXX.tmp.EXT


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of this module's temporary names (see module doc)."""
    return bool(_TEMPORARY.match(name))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders a killed writer left under ``folder``; returns what was removed.
    Only for a folder this process owns (a writer running beside it would lose its temporary)."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        for name in [d for d in dirs if is_temporary(d)]:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            removed.append(Path(root) / name)
            dirs.remove(name)
        for name in (f for f in files if is_temporary(f)):
            (Path(root) / name).unlink(missing_ok=True)
            removed.append(Path(root) / name)
    return removed


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Make sure files can be written in folder ``path`` (or, if it does not exist yet, that it can be created:
    its nearest existing parent is a writable folder) — before any expensive work. Creates nothing."""
    if not str(path).strip():
        raise UserError(f"the {what} is empty; give a folder")
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {path}: {probe} exists and is not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"cannot write in {what} {path}: {exc.strerror or exc} ({probe})") from None
    return path


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file's content; a clear error for a missing, binary or otherwise encoded file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidValue(f"{what} {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValue(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise InvalidValue(f"{what} {path} is a binary file (it contains NUL bytes); expected UTF-8 text")
    return text
