"""``cf-ref full train``: run one stage or a recipe's chain, on one process or under ``torchrun``.

Each stage reads its inputs from the previous stage's output folder (:func:`full.stage_inputs.stage_inputs`) and
leaves its own in ``<out>/<stage>/``; the resolved configuration is written to ``<out>/config.yaml``. A
finished stage (``final/model.safetensors``, or the pair set's ``index.json``) is skipped under
``--resume``; an interrupted one continues from its last checkpoint. Without ``--resume`` a folder that
already holds work is an error — nothing is overwritten.

Before anything is written, in this order (rank 0 decides, every process follows):

1. the run takes its folder's lock (:mod:`cf_ref.run_lock`): a second run on the same folder is refused;
2. temporary files a killed run left behind are removed (:func:`cf_ref.io.remove_stale_temporaries`);
3. a folder that already holds a configuration is compared with the new one (:mod:`full.run_changes`): changes
   that would alter finished work are refused, listed with the reason;
4. every path, model folder and data set the unfinished stages need is checked (:mod:`full.preflight`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from cf_ref import run_lock
from cf_ref.errors import UserError
from cf_ref.io import remove_stale_temporaries
from full.config import ConfigError, RunConfig, load_config, save_config
from full.distributed import DistContext, barrier, broadcast_object, init_distributed
from full.preflight import check_run_inputs
from full.recipes import Stage, recipe_stages
from full.run_changes import review_changes
from full.stage_inputs import stage_dir
from full.stages import ar_diffusion, cd, dmd, ode, ode_pairs
from full.stages.base import asset_paths, prepare_assets
from full.train import StageStateError, is_finished, run_stage

PLANS = {Stage.AR_DIFFUSION: ar_diffusion.plan, Stage.ODE: ode.plan, Stage.CD: cd.plan, Stage.DMD: dmd.plan}
CONFIG_FILE = "config.yaml"


def _on_main(ctx: DistContext, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result (or its :class:`UserError`, raised on every process) broadcast."""
    outcome: tuple[Any, UserError | None] = (None, None)
    if ctx.is_main:
        try:
            outcome = (fn(), None)
        except UserError as exc:
            outcome = (None, exc)
    result, error = broadcast_object(ctx, outcome)
    if error is not None:
        raise error
    return result


@contextlib.contextmanager
def owning(folder: str | Path, ctx: DistContext) -> Iterator[None]:
    """Hold ``folder``'s run lock (rank 0) for the block; a folder this call created and left empty is removed."""
    folder = Path(folder)
    created = not folder.exists()
    lock = _on_main(ctx, lambda: run_lock.acquire(folder, on_takeover=lambda m: print(m, flush=True)))
    try:
        yield
    finally:
        if lock is not None and ctx.is_main:
            run_lock.release(lock)
            with contextlib.suppress(OSError):
                if created and not any(folder.iterdir()):
                    folder.rmdir()


def _check_changes(config: RunConfig, saved_path: Path) -> None:
    """Compare with the folder's saved configuration (see :mod:`full.run_changes`); print what is accepted."""
    if not saved_path.is_file():
        return
    states = {s: (_stage_finished(config, s), _stage_started(config, s)) for s in Stage}
    finished = {s for s, (done, _) in states.items() if done}
    started = {s for s, (_, begun) in states.items() if begun}
    try:
        saved = load_config(saved_path)
    except ConfigError as exc:
        raise ConfigError(
            f"the run's saved configuration {saved_path} cannot be read (written by an older cf-ref?): {exc}\n"
            "edit that file as the lines above say, or start a new output folder"
        ) from None
    review = review_changes(saved, config, finished, started)
    if review.refused:
        raise ConfigError(
            f"the configuration differs from the run's {saved_path} in settings that work already done used:\n  - "
            + "\n  - ".join(review.refused)
            + "\nrun with the saved settings (they are in that file), or start a new output folder"
            + ("; accepted: " + "; ".join(review.accepted) if review.accepted else "")
        )
    for line in review.accepted:
        print(f"changed from {saved_path}: {line}", flush=True)


def _stage_finished(config: RunConfig, stage: Stage) -> bool:
    folder = stage_dir(config, stage)
    if stage is Stage.ODE_PAIRS:
        return (folder / "index.json").is_file()
    return is_finished(folder)


def _stage_started(config: RunConfig, stage: Stage) -> bool:
    folder = stage_dir(config, stage)
    return folder.is_dir() and any(folder.iterdir())


def _refuse_existing_work(config: RunConfig, states: dict[Stage, tuple[bool, bool]]) -> None:
    """Without ``--resume`` a stage folder that holds work (finished or started) is an error."""
    for s, (finished, started) in states.items():
        if finished or started:
            what = "already finished" if finished else "holds an interrupted run"
            raise StageStateError(
                f"stage {s.value} {what} in {stage_dir(config, s)}; pass --resume to continue (finished stages "
                "are skipped), or choose another output folder"
            )


def _prepare(config: RunConfig, chain: tuple[Stage, ...], resume: bool) -> dict[Stage, tuple[bool, bool]]:
    """Rank 0's checks before any work (module doc, steps 2–4); returns each stage's (finished, started)."""
    removed = remove_stale_temporaries(config.out)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run, e.g. {removed[0]}", flush=True)
    states = {s: (_stage_finished(config, s), _stage_started(config, s)) for s in chain}
    if not resume:
        _refuse_existing_work(config, states)
    _check_changes(config, Path(config.out) / CONFIG_FILE)
    check_run_inputs(config, chain, {s for s, (f, _) in states.items() if f})
    return states


def run_training(
    config: RunConfig,
    stage: Stage | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
    stop_after: int | None = None,
) -> dict[Stage, Path]:
    """Run ``stage`` (or every stage of the recipe, in order); returns each stage's output folder.

    ``stop_after``: stop the (first unfinished) stage after that many steps without finishing it, as an
    interrupted run would (used by the resume tests).
    """
    ctx = ctx or init_distributed()
    if ctx.device.type == "cpu" and config.parallel.cpu_threads is not None:
        torch.set_num_threads(config.parallel.cpu_threads)
    chain = (stage,) if stage is not None else recipe_stages(config.recipe)
    config = asset_paths(config)
    with owning(config.out, ctx):
        states = _on_main(ctx, lambda: _prepare(config, chain, resume))
        config = prepare_assets(config, ctx)
        if ctx.is_main:
            save_config(config, Path(config.out) / CONFIG_FILE)
        barrier(ctx)
        return _run_chain(config, chain, states, resume, ctx, stop_after)


def _run_chain(config, chain, states, resume, ctx, stop_after) -> dict[Stage, Path]:
    torch.manual_seed(config.seed + ctx.rank)  # library-internal randomness only; stages draw from cf_ref.seeding
    results: dict[Stage, Path] = {}
    for s in chain:
        folder = stage_dir(config, s)
        if states[s][0]:  # finished (only reached with --resume)
            results[s] = folder
            continue
        if s is Stage.ODE_PAIRS:
            results[s] = ode_pairs.make_pairs(config, ctx)
            continue
        section = getattr(config, s.section)
        plan = PLANS[s](config, ctx)
        results[s] = run_stage(
            plan, section.loop, config.logging, config.parallel.precision, ctx, folder, resume, stop_after
        )
        if stop_after is not None:
            break
    return results
