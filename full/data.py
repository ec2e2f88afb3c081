r"""Data sets of the full track: sharded safetensors sets, prompts, data order.

**Sets on disk.** A folder with ``index.json`` and shards ``shard-00000.safetensors``…; each shard holds
per-field tensors ``[n, *shape]``. Kinds: ``latents`` (``latents [F,C,H,W]``, ``text [L,D]``),
``prompts`` (``text``), ``ode-pairs`` (``states [K,F,C,H,W]``, ``target [F,C,H,W]``, ``text``, and
``clean`` for pairs made under clean context). ``negative.safetensors`` holds the negative prompt's
embedding for classifier-free guidance. Shard ``g`` holds source items ``[g·S, (g+1)·S)``, written
atomically, so an interrupted writer resumes by skipping the shards that exist.

**Same request only.** A writer records what it was asked to make (``request.json``: the kind, shard size and the
caller's ``request`` — source, sizes, seed, models) before its first shard. A writer started on a folder that holds
another request's shards is refused with the differences (or, with ``restart``, clears the folder first), so an
interrupted set is never completed with items of another request. On resume every existing shard is checked
against the checksum it carries (:func:`cf_ref.checksums.verify_tensors`); a corrupt one is rewritten. Readers verify
shards on first use with ``TensorSet(..., verify=True)`` (a stage reading an earlier stage's set).

**Order.** :class:`DataOrder` maps ``(step, micro-batch, rank)`` to sample indices as a pure function of
the seed: global stream position ``p`` reads ``perm_e[p mod N]`` with ``e = p // N`` and ``perm_e`` a
seeded permutation, so resuming at step t reads exactly what the uninterrupted run read. The synthetic
moving-shapes set is written by :mod:`full.synthetic`.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from cf_ref.checksums import IntegrityError, verify_tensors
from cf_ref.errors import UserError
from cf_ref.io import read_text, save_tensors, to_plain, write_json
from cf_ref.seeding import generator

FORMAT = "cf-ref-set/1"
INDEX = "index.json"
NEGATIVE = "negative.safetensors"
REQUEST = "request.json"


class SetKind(enum.Enum):
    LATENTS = "latents"
    PROMPTS = "prompts"
    ODE_PAIRS = "ode-pairs"


REQUIRED_FIELDS = {
    SetKind.LATENTS: ("latents", "text"),
    SetKind.PROMPTS: ("text",),
    SetKind.ODE_PAIRS: ("states", "target", "text"),
}


class DataError(UserError, ValueError):
    """A data set that is missing, corrupt, or does not fit the configuration."""


# --------------------------------------------------------------------------------------------- sharded sets


def claim_request(folder: Path, request: dict[str, Any], outputs: Sequence[Path], restart: bool = False) -> None:
    """Make ``folder`` the output of ``request`` (plain data): record it in ``request.json``, or check it against
    the one recorded there. ``outputs``: the files an earlier writer may have left; if some exist and the request
    differs (or none was recorded) a :class:`DataError` lists the differences, unless ``restart`` deletes them."""
    path = folder / REQUEST
    saved = json.loads(read_text(path, "set request")) if path.is_file() else None
    if saved == json.loads(json.dumps(request)):
        return
    written = [f for f in outputs if f.exists()]
    if written and not restart:
        if saved is None:
            why = "by a writer that recorded no request"
        else:
            keys = sorted(k for k in set(saved) | set(request) if saved.get(k) != request.get(k))
            why = "for another request (" + ", ".join(f"{k}: {saved.get(k)!r} → {request.get(k)!r}" for k in keys)
            why += ")"
        raise DataError(
            f"{folder} holds {len(written)} file(s) written {why}; finish it with the same request, or start it "
            "clean (--restart: deletes them)"
        )
    for f in [*written, path]:
        f.unlink(missing_ok=True)
    write_json(path, request)


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a UTF-8 text file, one per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompt file {path} does not exist")
    try:
        text = read_text(path, "prompt file")
    except UserError as exc:
        raise DataError(str(exc)) from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise DataError(f"prompt file {path} holds no prompts (expected one prompt per line)")
    return prompts


class ShardWriter:
    """Writes a set shard by shard (see module doc); resumable, one group of ``shard_size`` items per shard.

    Use: ``for g, items in writer.pending_groups(n, rank, world): ... writer.write_group(g, fields, captions)``,
    then (one process) ``writer.write_negative(...)`` and ``writer.finish(n)``.
    """

    def __init__(
        self,
        out: str | Path,
        kind: SetKind,
        shard_size: int,
        meta: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
        restart: bool = False,
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out, self.kind, self.shard_size, self.meta = Path(out), kind, shard_size, dict(meta or {})
        self.request = to_plain({"kind": kind, "shard_size": shard_size, **(self.meta if request is None else request)})
        self.replaced: list[Path] = []  # corrupt shards found on resume, deleted to be written again
        self.out.mkdir(parents=True, exist_ok=True)
        self._claim(restart)

    def _claim(self, restart: bool) -> None:
        written = sorted(self.out.glob("shard-*.safetensors")) + [p for p in (self.out / INDEX,) if p.exists()]
        claim_request(self.out, self.request, written + [self.out / NEGATIVE], restart)

    def shard_path(self, group: int) -> Path:
        return self.out / f"shard-{group:05d}.safetensors"

    def pending_groups(self, count: int, rank: int = 0, world: int = 1) -> list[tuple[int, list[int]]]:
        """Groups ``(g, item indices)`` of this process (``g % world == rank``) whose shard is not written yet."""
        groups = math.ceil(count / self.shard_size)
        out = []
        for g in range(rank, groups, world):
            if not self._intact(self.shard_path(g)):
                out.append((g, list(range(g * self.shard_size, min(count, (g + 1) * self.shard_size)))))
        return out

    def _intact(self, path: Path) -> bool:
        """Whether shard ``path`` exists and matches its checksum (a corrupt one is deleted, to be rewritten)."""
        if not path.exists():
            return False
        try:
            verify_tensors(path)
            return True
        except IntegrityError:
            path.unlink()
            self.replaced.append(path)
            return False

    def write_group(self, group: int, fields: dict[str, Tensor], captions: Sequence[str]) -> None:
        """Atomically write shard ``group``: fields ``[n, *shape]`` (same n), one caption per item."""
        missing = [f for f in REQUIRED_FIELDS[self.kind] if f not in fields]
        if missing:
            raise DataError(f"a {self.kind.value} shard needs fields {missing}")
        sizes = {k: v.shape[0] for k, v in fields.items()}
        if len(set(sizes.values())) != 1 or len(captions) != next(iter(sizes.values())):
            raise DataError(f"fields and captions must hold the same number of items, got {sizes}, {len(captions)}")
        save_tensors(self.shard_path(group), fields, metadata={"captions": json.dumps(list(captions))})

    def write_negative(self, text: Tensor) -> None:
        """The negative prompt's embedding ``[L, D]`` (used by classifier-free guidance)."""
        save_tensors(self.out / NEGATIVE, {"text": text})

    def finish(self, count: int) -> Path:
        """Check every shard is present and write ``index.json``; returns the set's folder."""
        groups = math.ceil(count / self.shard_size)
        shards, fields, captions = [], None, []
        for g in range(groups):
            path = self.shard_path(g)
            if not path.exists():
                raise DataError(f"shard {path} is missing; run the writer again to complete the set")
            with safe_open(str(path), framework="pt") as fh:
                names = list(fh.keys())
                n = fh.get_slice(names[0]).get_shape()[0]
                if fields is None:
                    fields = {
                        k: {"shape": fh.get_slice(k).get_shape()[1:], "dtype": fh.get_slice(k).get_dtype()}
                        for k in names
                    }
                captions.extend(json.loads((fh.metadata() or {}).get("captions", "[]")))
            shards.append({"file": path.name, "count": n})
        total = sum(s["count"] for s in shards)
        if total != count:
            raise DataError(f"shards in {self.out} hold {total} items, expected {count}")
        index = {
            "format": FORMAT,
            "kind": self.kind.value,
            "count": total,
            "fields": fields,
            "shards": shards,
            "negative": NEGATIVE if (self.out / NEGATIVE).exists() else None,
            "captions": captions,
            "meta": self.meta,
        }
        write_json(self.out / INDEX, index)
        return self.out


class TensorSet:
    """Read access to a set written by :class:`ShardWriter`: ``len``, ``fetch(indices)``, ``negative``, ``meta``."""

    def __init__(self, path: str | Path, kind: SetKind | None = None, verify: bool = False):
        self.path = Path(path)
        self.verify = verify
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise DataError(f"{self.path} is not a prepared set (no {INDEX}); create one with `cf-ref full prepare`")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{index_path} is not valid JSON: {exc}") from None
        if index.get("format") != FORMAT:
            raise DataError(f"{index_path}: unknown format {index.get('format')!r}, expected {FORMAT!r}")
        self.kind = SetKind(index["kind"])
        if kind is not None and self.kind is not kind:
            raise DataError(f"{self.path} is a {self.kind.value} set, expected a {kind.value} set")
        missing = [f for f in REQUIRED_FIELDS[self.kind] if f not in index["fields"]]
        if missing:
            raise DataError(f"{self.path}: a {self.kind.value} set needs fields {missing}")
        self.index = index
        self.fields: dict[str, tuple[int, ...]] = {k: tuple(v["shape"]) for k, v in index["fields"].items()}
        self.meta: dict[str, Any] = index.get("meta", {})
        self.captions: list[str] = index.get("captions", [])
        self._starts = np.cumsum([0] + [s["count"] for s in index["shards"]])
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self.index["count"])

    def _handle(self, shard: int) -> Any:
        if shard not in self._handles:
            path = self.path / self.index["shards"][shard]["file"]
            if not path.is_file():
                raise DataError(f"shard {path} listed in {self.path / INDEX} is missing")
            if self.verify:
                self._verify(path)
            try:
                self._handles[shard] = safe_open(str(path), framework="pt")
            except Exception as exc:  # safetensors raises several types for a corrupt header
                raise DataError(f"cannot read shard {path}: {exc}") from exc
        return self._handles[shard]

    def _verify(self, path: Path) -> None:
        try:
            verify_tensors(path, require=True)
        except IntegrityError as exc:
            raise DataError(
                f"{exc}; delete it and {INDEX} of the set, then re-run the stage that wrote it (--resume rewrites "
                "only the missing shard)"
            ) from None

    def fetch(self, indices: Sequence[int], fields: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Items ``indices`` stacked per field: ``{name: [len(indices), *shape]}`` (reads only those rows)."""
        names = list(fields) if fields is not None else list(self.fields)
        unknown = [f for f in names if f not in self.fields]
        if unknown:
            raise DataError(f"{self.path} has no field(s) {unknown}; it has {list(self.fields)}")
        rows: dict[str, list[Tensor]] = {f: [] for f in names}
        for i in indices:
            if not 0 <= i < len(self):
                raise IndexError(f"item {i} out of range for a set of {len(self)}")
            shard = int(np.searchsorted(self._starts, i, side="right") - 1)
            local = int(i - self._starts[shard])
            fh = self._handle(shard)
            for f in names:
                rows[f].append(fh.get_slice(f)[local : local + 1])
        return {f: torch.cat(v) for f, v in rows.items()}

    @property
    def negative(self) -> Tensor:
        """The negative prompt's embedding ``[L, D]``."""
        if not self.index.get("negative"):
            raise DataError(f"{self.path} has no negative-prompt embedding ({NEGATIVE}); re-run `cf-ref full prepare`")
        with safe_open(str(self.path / self.index["negative"]), framework="pt") as fh:
            return fh.get_tensor("text")

    def check_latent_shape(self, expected: tuple[int, ...], field: str = "latents") -> None:
        """Clear error when the set's per-item latent shape ``[F, C, H, W]`` differs from the configuration."""
        got = self.fields[field][-4:]
        if tuple(got) != tuple(expected):
            raise DataError(
                f"{self.path}: {field} have shape [F, C, H, W] = {list(got)}, but the configuration expects "
                f"{list(expected)} (video.latent_frames/height/width and the model's channels)"
            )


# --------------------------------------------------------------------------------------------- order


@lru_cache(maxsize=8)
def _epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    g = generator("cpu", "data-order", seed, epoch)
    return torch.randperm(num_samples, generator=g).numpy()


@dataclass(frozen=True)
class DataOrder:
    """Deterministic, resumable data order (see module doc). ``batch_size`` is per process and micro-batch."""

    num_samples: int
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise DataError("the data set is empty")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of size {self.world_size}")

    def batch(self, step: int, micro: int = 0) -> list[int]:
        """Sample indices of micro-batch ``micro`` of optimizer step ``step`` on this process."""
        start = ((step * self.grad_accum + micro) * self.world_size + self.rank) * self.batch_size
        out = []
        for p in range(start, start + self.batch_size):
            epoch, offset = divmod(p, self.num_samples)
            out.append(int(_epoch_permutation(self.num_samples, self.seed, epoch)[offset]))
        return out
