"""Checkpoints: atomic, complete, resumable — and clear errors when one is missing or does not fit.

A checkpoint is a folder ``<stage>/checkpoints/step-00000100/``::

    <name>.safetensors     full (gathered) weights of every saved module: trained modules and EMA copies
    optimizers.pt          full optimizer state dicts (plain tensors; read with torch.load(weights_only=True))
    rng.pt                 every process's torch (and CUDA) RNG state
    state.json             step, world size, the stage's extra state (e.g. EMA bookkeeping) and every file's
                           SHA-256 — written last

It is assembled in a temporary folder beside it and renamed into place, then ``latest`` (a text file naming
the folder) is replaced atomically; a crash leaves the previous checkpoint intact. Older checkpoints are
pruned only after a new one is complete, so the last good checkpoint always survives — in particular
when training stops on a NaN (:class:`full.train.TrainingDiverged`), which never writes one, and when a write
fails (a full disk): the error names the checkpoint that survives.

**Integrity.** Weights carry their content checksum (:func:`cf_ref.io.save_tensors`, :mod:`cf_ref.checksums`) and ``state.json`` records
every file's; :func:`verify_checkpoint` checks them (streamed). :func:`resumable_checkpoint` picks the newest
checkpoint that passes, moving a corrupt one aside to ``corrupt-step-…`` with a message — resuming from the
previous good checkpoint replays the same steps exactly (with none left, the error says so). :func:`load_weights` verifies a weights file that
records a checksum (a stage reading an earlier stage's output).

Weights are gathered with ``torch.distributed.checkpoint.state_dict`` (full state dicts, offloaded to the
CPU), so the same files come out of one process, DDP or FSDP2, and load into any of them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from cf_ref.checksums import IntegrityError, embedded_digest, file_digest, save_torch, verify_tensors
from cf_ref.errors import UserError
from cf_ref.io import load_tensors, make_temp_dir, save_tensors, write_json, write_text
from full.distributed import DistContext, Runner, all_gather_object, barrier, broadcast_object, reshard_all, unwrap

STATE = "state.json"
LATEST = "latest"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, incomplete, corrupt, or does not match the model."""


@dataclass(frozen=True)
class Resumed:
    step: int
    extra: dict[str, Any]
    path: Path


def _full(ctx: DistContext) -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=ctx.enabled)


def _prefix(module: nn.Module) -> str:
    """Files hold the model's own parameter names: a :class:`Runner`'s ``model.`` prefix is dropped."""
    return "model." if isinstance(unwrap(module), Runner) else ""


def gather_weights(module: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Full state dict of a (possibly DDP/FSDP-wrapped) module, on the CPU (complete on rank 0). Collective."""
    reshard_all(module)
    sd = get_model_state_dict(unwrap(module), options=_full(ctx))
    n = len(_prefix(module))
    return {k[n:]: v.detach().cpu() for k, v in sd.items()}


def load_weights(
    module: nn.Module, path: str | Path, ctx: DistContext | None = None, what: str = "weights", verify: bool = True
) -> None:
    """Load a safetensors file into a module (wrapped or not), strictly, with a clear error on any mismatch; with
    ``verify`` a file that records a checksum is checked against it first."""
    if verify and Path(path).is_file():
        try:
            verify_tensors(path)
        except IntegrityError as exc:
            raise CheckpointError(f"{what}: {exc}") from None
    tensors = _read(path, what)
    target, prefix = unwrap(module), _prefix(module)
    reshard_all(module)
    _check_keys(_full_shapes(target, len(prefix)), tensors, path, what)
    set_model_state_dict(
        target, {prefix + k: v for k, v in tensors.items()}, options=StateDictOptions(full_state_dict=True, strict=True)
    )


def _full_shapes(module: nn.Module, strip: int) -> dict[str, torch.Size]:
    """Unsharded shapes of every state-dict entry (parameters, persistent buffers), names without the prefix."""
    keys = set(module.state_dict().keys())
    shapes = {}
    for name, p in list(module.named_parameters()) + list(module.named_buffers()):
        if name in keys:
            shapes[name[strip:]] = p.full_tensor().shape if hasattr(p, "full_tensor") else p.shape
    return shapes


def _read(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: no file at {path}")
    try:
        return load_tensors(path)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{what}: {path} is not a readable safetensors file ({exc})") from exc


def _check_keys(expected: Mapping[str, torch.Size], got: Mapping[str, torch.Tensor], path: Any, what: str) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(got))
        if tuple(got[k].shape) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} with another shape (e.g. {wrong[:2]})")
        raise CheckpointError(f"{what} in {path} do not fit the model: " + "; ".join(parts))


def export_weights(
    path: str | Path, module: nn.Module, ctx: DistContext, metadata: dict[str, str] | None = None
) -> None:
    """Gather and write a module's full weights atomically (rank 0 writes; collective)."""
    sd = gather_weights(module, ctx)
    if ctx.is_main:
        save_tensors(path, sd, metadata=metadata)
    barrier(ctx)


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(
    stage_dir: str | Path,
    step: int,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, tuple[nn.Module, torch.optim.Optimizer]],
    ctx: DistContext,
    extra: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` (see module doc). Collective: every process must call it.

    modules: name → module whose weights are saved (trained modules, EMA copies); optimizers: name →
    (the module it optimizes, optimizer). Returns the checkpoint folder.
    """
    root = Path(stage_dir) / "checkpoints"
    final = root / f"step-{step:08d}"
    weights = {name: gather_weights(m, ctx) for name, m in modules.items()}
    opt_states = {
        name: get_optimizer_state_dict(unwrap(m), opt, options=_full(ctx)) for name, (m, opt) in optimizers.items()
    }
    rngs = all_gather_object(ctx, _rng_state())
    error = None
    if ctx.is_main:
        try:
            _write_checkpoint(root, final, weights, opt_states, rngs, {"step": step, "world_size": ctx.world_size,
                                                                       "extra": dict(extra or {})})  # fmt: skip
            _prune(root, keep)
        except Exception as exc:  # a failed write (full disk, quota, I/O error): say what survives
            previous = latest_checkpoint(stage_dir)
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            error = CheckpointError(
                f"cannot write checkpoint {final.name} in {root} ({first}); {kept}: free space and resume (--resume)"
            )
    error = broadcast_object(ctx, error)
    if error is not None:
        raise error
    return final


def _write_checkpoint(root: Path, final: Path, weights, opt_states, rngs, state: dict) -> None:
    """Assemble the checkpoint in a temporary folder, fsync, rename it into place, then point ``latest`` at it."""
    tmp = make_temp_dir(root, final.name)
    try:
        files = {f"{name}.safetensors": save_tensors(tmp / f"{name}.safetensors", sd) for name, sd in weights.items()}
        files["optimizers.pt"] = save_torch(opt_states, tmp / "optimizers.pt")
        files["rng.pt"] = save_torch(rngs, tmp / "rng.pt")
        write_json(tmp / STATE, {**state, "files": files})
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    write_text(root / LATEST, final.name + "\n")


def _complete(folder: Path) -> bool:
    return (folder / STATE).is_file()


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and _complete(p))
    for old in done[: max(0, len(done) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(stage_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a stage, or None if there is none."""
    root = Path(stage_dir) / "checkpoints"
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if _complete(named):
            return named
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and _complete(p))
    return done[-1] if done else None


def _state(folder: Path) -> dict[str, Any]:
    if not _complete(folder):
        raise CheckpointError(f"{folder} is not a complete checkpoint (no {STATE}); it was interrupted while written")
    try:
        return json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / STATE} is corrupt: {exc}") from None


def verify_checkpoint(folder: str | Path) -> None:
    """Check every file of a checkpoint against the checksums recorded when it was written (checkpoints written
    before checksums were recorded pass unchecked); raises :class:`CheckpointError` naming the bad file."""
    folder = Path(folder)
    for name, digest in (_state(folder).get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} lacks {name}")
        try:
            if name.endswith(".safetensors"):  # its own checksum, streamed over its tensors
                verify_tensors(path, require=True)
                ok = embedded_digest(path) == digest
            else:
                ok = file_digest(path) == digest
        except IntegrityError as exc:
            raise CheckpointError(f"checkpoint {folder} is corrupt: {exc}") from None
        if not ok:
            raise CheckpointError(f"checkpoint {folder} is corrupt: {name} does not match its recorded checksum")


def resumable_checkpoint(stage_dir: str | Path, say: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint of a stage that passes :func:`verify_checkpoint`. A corrupt newer one is moved aside
    (``corrupt-step-…``, beside it) and ``say`` is told which one is used instead."""
    root = Path(stage_dir) / "checkpoints"
    corrupt = []
    for folder in sorted((p for p in root.glob("step-*") if p.is_dir() and _complete(p)), reverse=True):
        try:
            verify_checkpoint(folder)
            return folder
        except CheckpointError as exc:
            aside = folder.with_name(f"corrupt-{folder.name}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(folder, aside)
            corrupt.append(aside)
            say(f"{exc}; moved it to {aside} (delete it when done) and looking for an earlier checkpoint")
    if corrupt:
        raise CheckpointError(
            f"no intact checkpoint left in {root} (moved aside: {', '.join(p.name for p in corrupt)}); "
            "run again with --resume to start the stage over"
        )
    return None


def load_checkpoint(
    folder: str | Path,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, tuple[nn.Module, torch.optim.Optimizer]],
    ctx: DistContext,
    verify: bool = True,
) -> Resumed:
    """Restore weights, optimizer states and this process's RNG state from a checkpoint folder (checked against
    its checksums first, unless ``verify`` is off because the caller did)."""
    folder = Path(folder)
    state = _state(folder)
    if verify:
        verify_checkpoint(folder)
    for name, module in modules.items():
        load_weights(module, folder / f"{name}.safetensors", ctx, what=f"checkpoint weights '{name}'", verify=False)
    try:
        opt_states = torch.load(folder / "optimizers.pt", map_location="cpu", weights_only=True)
        rngs = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read optimizer / RNG state in {folder}: {exc}") from exc
    for name, (module, opt) in optimizers.items():
        if name not in opt_states:
            raise CheckpointError(f"{folder} holds no optimizer state for {name!r} (it has {sorted(opt_states)})")
        names = {n for n, p in unwrap(module).named_parameters() if p.requires_grad}
        unknown = sorted(set(opt_states[name].get("state", {})) - names)
        if unknown:
            raise CheckpointError(
                f"optimizer state for {name!r} in {folder} names unknown parameters, e.g. {unknown[:3]}"
            )
        # strict=False: parameters that never received a gradient (e.g. weights only used without grad) have no
        # Adam state yet; everything that has state was checked above.
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_optimizer_state_dict(unwrap(module), opt, opt_states[name], options=options)
    if state.get("world_size") == ctx.world_size:
        rng = rngs[ctx.rank]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return Resumed(step=int(state["step"]), extra=state.get("extra", {}), path=folder)
