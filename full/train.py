"""The training loop every stage shares: accumulation, bf16 autocast, clipping, EMA, checkpoints, logging.

A stage is *data*, not a subclass: a :class:`StagePlan` names the modules it optimises (:class:`Trainee`)
and, for each step, the ordered list of :class:`Update` s to apply — one for ar-diffusion / ODE / CD, and
for DMD a generator update every ``critic_updates_per_generator`` steps followed by a critic update. An
update is a loss closure ``loss(micro) -> (loss, metrics)``; :func:`run_stage` does the rest:

for each update: zero grads; for each micro-batch m < A: ``(loss_m / A).backward()`` under autocast, with
the gradient all-reduce skipped for m < A-1; stop if any process sees a non-finite loss or gradient norm
(:class:`TrainingDiverged`, nothing written, the last good checkpoint kept); clip the global norm; step;
update the EMA (from ``ema_start`` on: the first update copies, later ones blend with ``ema_decay``; with
``ema_first=BLEND`` every update blends, :class:`cf_ref.ema.EmaFirstUpdate`).
Every ``checkpoint_every`` steps and at the end a checkpoint is written; at the end the plan's exports go to
``<stage>/final/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from cf_ref.ema import EmaFirstUpdate, ema_decay_at, ema_update
from cf_ref.errors import UserError
from cf_ref.io import write_json
from full.checkpoint import (
    export_weights,
    latest_checkpoint,
    load_checkpoint,
    resumable_checkpoint,
    save_checkpoint,
)
from full.config import LoggingConfig, LoopConfig, OptimizerConfig, Precision
from full.distributed import (
    DistContext,
    all_gather_object,
    all_true,
    autocast,
    barrier,
    broadcast_object,
    clip_grad_norm,
    gradient_sync,
    mean_over_ranks,
    reshard_all,
    unwrap,
)
from full.logs import RunLogger

LossFn = Callable[[int], tuple[Tensor, dict[str, float]]]


class TrainingDiverged(UserError, FloatingPointError):
    """A loss or gradient norm became NaN/inf; training stopped before the update, checkpoints untouched."""


class StageStateError(UserError, RuntimeError):
    """The stage folder already holds work that this invocation would overwrite."""


@dataclass
class Trainee:
    """A module being optimised (``module`` is what gets called: wrapped for DDP/FSDP)."""

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    max_grad_norm: float
    ema: nn.Module | None = None
    ema_decay: float = 0.99
    ema_start: int = 0
    ema_first: EmaFirstUpdate = EmaFirstUpdate.COPY
    ema_updates: int = 0


@dataclass(frozen=True)
class Update:
    trainee: str
    loss: LossFn


@dataclass
class StagePlan:
    """What a stage trains (see module doc). ``exports``: final file name → module (``model`` must be one)."""

    name: str
    trainees: dict[str, Trainee]
    updates: Callable[[int], list[Update]]
    exports: dict[str, nn.Module]
    sample: Callable[[int, Path], None] | None = None
    extra_state: dict[str, object] = field(default_factory=dict)


def make_optimizer(module: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, constant learning rate (the published setting)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the module has no trainable parameters")
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def _ema_step(trainee: Trainee, step: int) -> None:
    if trainee.ema is None or step < trainee.ema_start:
        return
    reshard_all(trainee.ema)
    reshard_all(trainee.module)
    ema_update(
        trainee.ema, unwrap(trainee.module), ema_decay_at(trainee.ema_updates, trainee.ema_decay, trainee.ema_first)
    )
    trainee.ema_updates += 1


def _apply(
    update: Update, trainee: Trainee, step: int, loop: LoopConfig, ctx: DistContext, precision: Precision
) -> dict[str, float]:
    trainee.module.train()
    trainee.optimizer.zero_grad(set_to_none=True)
    total, metrics = 0.0, {}
    for micro in range(loop.grad_accum):
        with gradient_sync(trainee.module, micro == loop.grad_accum - 1):
            with autocast(ctx, precision):
                loss, info = update.loss(micro)
            finite = bool(torch.isfinite(loss.detach()).all())
            if not all_true(ctx, finite):
                raise TrainingDiverged(f"{trainee.name} loss is not finite at step {step + 1} (micro-batch {micro})")
            (loss / loop.grad_accum).backward()
        total += float(loss.detach()) / loop.grad_accum
        for k, v in info.items():
            metrics[k] = metrics.get(k, 0.0) + float(v) / loop.grad_accum
    norm = clip_grad_norm(trainee.module, trainee.max_grad_norm)
    if not torch.isfinite(torch.tensor(norm)):
        raise TrainingDiverged(f"{trainee.name} gradient norm is not finite at step {step + 1}")
    trainee.optimizer.step()
    trainee.optimizer.zero_grad(set_to_none=True)
    _ema_step(trainee, step)
    return {f"{trainee.name}_loss": total, f"{trainee.name}_grad_norm": norm, **metrics}


def _checkpoint_parts(plan: StagePlan):
    modules, optimizers = {}, {}
    for name, t in plan.trainees.items():
        modules[name] = t.module
        optimizers[name] = (t.module, t.optimizer)
        if t.ema is not None:
            modules[f"{name}-ema"] = t.ema
    return modules, optimizers


def replica_fingerprint(module: nn.Module) -> list[float]:
    """Per parameter, the float64 sum and absolute sum of this process's copy (identical replicas agree bitwise)."""
    out = []
    for p in module.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        d = local.detach().double()
        out += [float(d.sum()), float(d.abs().sum())]
    return out


def check_replicas(plan: StagePlan, ctx: DistContext) -> dict[str, dict[str, object]]:
    """Compare every process's trained weights (DDP keeps full replicas; FSDP2 shards are compared as shards,
    which differ by design and are not checked). Raises if DDP replicas diverged."""
    report: dict[str, dict[str, object]] = {}
    for name, t in plan.trainees.items():
        prints = all_gather_object(ctx, replica_fingerprint(t.module))
        sharded = any(hasattr(p, "to_local") for p in t.module.parameters())
        same = all(fp == prints[0] for fp in prints)
        report[name] = {"processes": ctx.world_size, "sharded": sharded, "identical": same if not sharded else None}
        if not sharded and not same:
            raise RuntimeError(f"{plan.name}: the {ctx.world_size} replicas of {name} diverged during training")
    return report


def final_dir(stage_dir: Path) -> Path:
    return stage_dir / "final"


def is_finished(stage_dir: str | Path) -> bool:
    return (final_dir(Path(stage_dir)) / "model.safetensors").is_file()


def _resume_point(plan: StagePlan, stage_dir: Path, ctx: DistContext, resume: bool) -> tuple[int, Path | None]:
    """``(first step, checkpoint resumed from)``: the latest checkpoint's state loaded into ``plan`` (with
    ``resume``), else step 0; a folder holding a checkpoint without ``resume`` is an error."""
    latest = broadcast_object(ctx, latest_checkpoint(stage_dir))  # one decision for all processes
    if latest is None:
        return 0, None
    if not resume:
        raise StageStateError(
            f"{stage_dir} already holds checkpoint {latest.name}; pass --resume to continue it, "
            "or choose another output folder"
        )
    # rank 0 verifies the checksums (falling back past a corrupt checkpoint) and tells the others which one
    latest = broadcast_object(ctx, resumable_checkpoint(stage_dir, say=print) if ctx.is_main else None)
    if latest is None:
        return 0, None
    modules, optimizers = _checkpoint_parts(plan)
    resumed = load_checkpoint(latest, modules, optimizers, ctx, verify=False)
    for name, count in resumed.extra.get("ema_updates", {}).items():
        plan.trainees[name].ema_updates = int(count)
    return resumed.step, latest


def _train_step(
    plan: StagePlan, step: int, loop: LoopConfig, precision: Precision, ctx: DistContext, stage_dir: Path
) -> dict[str, float]:
    """Apply every update of ``step``; returns the step's metrics averaged over processes."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    for update in plan.updates(step):
        try:
            metrics.update(_apply(update, plan.trainees[update.trainee], step, loop, ctx, precision))
        except TrainingDiverged as exc:
            last = latest_checkpoint(stage_dir)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            raise TrainingDiverged(f"{plan.name}: {exc}; training stopped, {kept}") from None
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
        metrics["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    metrics = mean_over_ranks(ctx, metrics)
    metrics["step_time_s"] = time.perf_counter() - t0
    return metrics


def _after_step(plan: StagePlan, done: int, loop: LoopConfig, logging: LoggingConfig, ctx: DistContext, stage_dir):
    """Checkpoint and sample videos at their cadences (the last step always checkpoints)."""
    if done % loop.checkpoint_every == 0 or done == loop.steps:
        modules, optimizers = _checkpoint_parts(plan)
        extra = {"ema_updates": {n: t.ema_updates for n, t in plan.trainees.items()}}
        save_checkpoint(stage_dir, done, modules, optimizers, ctx, extra, keep=loop.keep_checkpoints)
    if plan.sample is not None and logging.sample_count and logging.sample_every and done % logging.sample_every == 0:
        plan.sample(done, stage_dir / "samples" / f"step-{done:08d}")


def _finish(plan: StagePlan, loop: LoopConfig, logging: LoggingConfig, ctx: DistContext, stage_dir, log) -> Path:
    """Check the replicas, sample, export the plan's modules to ``final/`` (``model`` last: the marker)."""
    out = final_dir(stage_dir)
    replicas = check_replicas(plan, ctx)
    if ctx.is_main:
        write_json(out / "replicas.json", replicas)
    if plan.sample is not None and logging.sample_count > 0:
        plan.sample(loop.steps, out / "samples")
    if "model" not in plan.exports:
        raise ValueError("a stage plan must export a 'model'")
    idle_emas = {id(t.ema) for t in plan.trainees.values() if t.ema is not None and t.ema_updates == 0}
    for name, module in sorted(plan.exports.items(), key=lambda kv: kv[0] == "model"):
        if id(module) in idle_emas:
            log.message(f"{plan.name}: {name} not exported, the EMA was never updated (ema_start > steps)")
            continue
        export_weights(out / f"{name}.safetensors", module, ctx, metadata={"stage": plan.name, "step": str(loop.steps)})
    barrier(ctx)
    return out


def run_stage(
    plan: StagePlan,
    loop: LoopConfig,
    logging: LoggingConfig,
    precision: Precision,
    ctx: DistContext,
    stage_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
) -> Path:
    """Train ``plan`` for ``loop.steps`` steps (or resume), then export its final weights; returns ``final/``.

    ``stop_after``: return after that many steps without exporting, as an interrupted run would (tests).
    """
    stage_dir = Path(stage_dir)
    start, latest = _resume_point(plan, stage_dir, ctx, resume)
    log = RunLogger(stage_dir, plan.name, ctx, logging, loop.steps, start)
    if latest is not None:
        log.message(f"{plan.name}: resumed from {latest} at step {start}")
    try:
        for step in range(start, loop.steps):
            if stop_after is not None and step >= stop_after:
                return stage_dir
            log.log(step + 1, _train_step(plan, step, loop, precision, ctx, stage_dir))
            _after_step(plan, step + 1, loop, logging, ctx, stage_dir)
        return _finish(plan, loop, logging, ctx, stage_dir, log)
    finally:
        log.close()
