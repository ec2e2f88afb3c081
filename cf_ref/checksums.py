"""Checksums of weights and other files: written with the file, verified when it is read again.

Every safetensors file written by :func:`cf_ref.io.save_tensors` carries the SHA-256 of its content in its own
metadata (:data:`DIGEST_KEY`: over each tensor in name order, its name and shape as JSON, then its raw bytes —
:func:`tensors_digest`), so it stays verifiable wherever it is copied; :func:`verify_tensors` recomputes it by
streaming the file's byte ranges (memory stays flat) and raises :class:`IntegrityError` on a mismatch, a truncated
file or an unreadable header. Other files get a whole-file SHA-256 (:func:`file_digest`, or :func:`save_torch`,
hashed while written) that their writer records. SHA-256 because OpenSSL's, with the CPU's SHA extensions, was
faster than BLAKE2b here; cost per GiB in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from cf_ref.errors import UserError

DIGEST_KEY = "content_sha256"
_CHUNK = 1 << 20


class IntegrityError(UserError):
    """A file whose content no longer matches the checksum recorded when it was written."""


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def _entry_prefix(name: str, shape: list[int]) -> bytes:
    return json.dumps([name, list(shape)]).encode("utf-8")


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over ``(name, shape, raw bytes)`` of each tensor in name order (contiguous CPU tensors)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(_entry_prefix(name, list(t.shape)))
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def read_safetensors_header(fh: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of an open safetensors file and the offset where its data starts."""
    raw = fh.read(8)
    if len(raw) < 8:
        raise IntegrityError(f"{path} is not a readable safetensors file (shorter than its 8-byte header length)")
    (size,) = struct.unpack("<Q", raw)
    end = fh.seek(0, os.SEEK_END)
    if size > end - 8:
        raise IntegrityError(
            f"{path} is truncated or not a readable safetensors file (header of {size} bytes, file {end})"
        )
    fh.seek(8)
    try:
        header = json.loads(fh.read(size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path} is not a readable safetensors file (unreadable header: {exc})") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{path} is not a readable safetensors file (its header is not a table)")
    return header, 8 + size


def embedded_digest(path: str | os.PathLike) -> str | None:
    """The content digest a safetensors file records (header only), or None."""
    path = Path(path)
    with open(path, "rb") as fh:
        header, _ = read_safetensors_header(fh, path)
    return (header.get("__metadata__") or {}).get(DIGEST_KEY)


def verify_tensors(path: str | os.PathLike, require: bool = False) -> bool:
    """Check a safetensors file against the digest in its metadata (streamed; memory stays flat).

    Returns True if it was verified, False if the file records no digest (written elsewhere) and ``require`` is
    off; raises :class:`IntegrityError` if the content differs, the file is truncated, or (``require``) no digest.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        header, start = read_safetensors_header(fh, path)
        expected = (header.get("__metadata__") or {}).get(DIGEST_KEY)
        if expected is None:
            if require:
                raise IntegrityError(f"{path} records no checksum ({DIGEST_KEY}); it was not written by cf-ref")
            return False
        end_of_file = fh.seek(0, os.SEEK_END)
        h = hashlib.sha256()
        for name in sorted(k for k in header if k != "__metadata__"):
            entry = header[name]
            begin, stop = (start + int(o) for o in entry["data_offsets"])
            if stop > end_of_file:
                raise IntegrityError(
                    f"{path} is truncated: tensor {name!r} ends at byte {stop}, file has {end_of_file}"
                )
            h.update(_entry_prefix(name, entry["shape"]))
            fh.seek(begin)
            _hash_range(fh, h, stop - begin)
    if h.hexdigest() != expected:
        raise IntegrityError(f"{path} is corrupt: its content does not match the checksum recorded when it was written")
    return True


def _hash_range(fh: BinaryIO, h: Any, count: int) -> None:
    buf = bytearray(min(_CHUNK, max(count, 1)))
    view = memoryview(buf)
    while count > 0:
        n = fh.readinto(view[: min(count, len(buf))])
        if not n:
            raise IntegrityError(f"{getattr(fh, 'name', 'file')} ended early while its checksum was computed")
        h.update(view[:n])
        count -= n


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a whole file (hex), streamed."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        _hash_range(fh, h, os.fstat(fh.fileno()).st_size)
    return h.hexdigest()


class HashingWriter:
    """A binary file object that hashes what is written through it (``torch.save(obj, HashingWriter(fh))``)."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.sha256 = fh, hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def save_torch(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save`` to ``path`` (not atomic: for files inside a folder that is renamed into place); returns the
    file's SHA-256, computed while writing."""
    with open(path, "wb") as fh:
        writer = HashingWriter(fh)
        torch.save(obj, writer)
        writer.flush()
    return writer.hexdigest()
