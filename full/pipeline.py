"""``cf-ref full train``: run one stage or a recipe's chain, on one process or under ``torchrun``.

Each stage reads its inputs from the previous stage's output folder (:func:`full.stage_inputs.stage_inputs`) and
leaves its own in ``<out>/<stage>/``; the resolved configuration is written to ``<out>/config.yaml``. A
finished stage (``final/model.safetensors``, or the pair set's ``index.json``) is skipped under
``--resume``; an interrupted one continues from its last checkpoint. Without ``--resume`` a folder that
already holds work is an error — nothing is overwritten.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cf_ref.io import to_plain
from full.config import ConfigError, RunConfig, load_config, save_config
from full.distributed import DistContext, barrier, broadcast_object, init_distributed
from full.recipes import Stage, recipe_stages
from full.stage_inputs import stage_dir
from full.stages import ar_diffusion, cd, dmd, ode, ode_pairs
from full.stages.base import prepare_assets
from full.train import StageStateError, is_finished, run_stage

PLANS = {Stage.AR_DIFFUSION: ar_diffusion.plan, Stage.ODE: ode.plan, Stage.CD: cd.plan, Stage.DMD: dmd.plan}
CONFIG_FILE = "config.yaml"
RESUMABLE_CHANGES = ("loop.steps", "loop.checkpoint_every", "loop.keep_checkpoints", "logging.")


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_same_run(saved: RunConfig, config: RunConfig) -> None:
    """On resume, only the step budget, checkpoint cadence and logging may change."""
    a, b = _flat(to_plain(saved)), _flat(to_plain(config))
    changed = [
        k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not any(p in k for p in RESUMABLE_CHANGES)
    ]
    if changed:
        details = ", ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in changed[:6])
        raise ConfigError(
            f"--resume with a configuration that differs from the run's {CONFIG_FILE} ({details}); "
            "resume with the same settings or start a new output folder"
        )


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
    # One decision for every process (rank 0 looks at the files), taken before anything is written.
    states = broadcast_object(ctx, {s: (_stage_finished(config, s), _stage_started(config, s)) for s in chain})
    saved_path = Path(config.out) / CONFIG_FILE
    if not resume:
        _refuse_existing_work(config, states)
    config = prepare_assets(config, ctx)
    if resume and saved_path.is_file():
        _check_same_run(load_config(saved_path), config)
    if ctx.is_main:
        save_config(config, saved_path)
    barrier(ctx)
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
