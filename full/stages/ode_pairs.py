r"""Stage ``ode-pairs``: PF-ODE trajectories for ODE distillation.

For each latent video :math:`x_0` with text (and noise ε drawn from a seed of the item's index, so the pairs
do not depend on batching or the number of processes), integrate with Euler on the shifted grid
``sigma_grid(N, shift)`` (N = 48):

.. math::  \frac{dx}{d\sigma} = \hat v(x, \sigma), \quad x(1) = \varepsilon, \qquad
           \hat v = v_\varnothing + w\,(v_c - v_\varnothing) \quad (w = 6)

and keep the states at the few-step σ list (grid indices 0, N/K, 2N/K, …) plus the end point:

* ``teacher=ar`` (Causal Forcing): :math:`v` is the AR teacher under **ground-truth clean context** —
  the teacher-forcing forward with ``clean = x_0``; block j's trajectory depends on its own noise and the
  clean frames of earlier blocks only, so the pairs are frame-level injective for a causal student that
  sees the same clean context. The set stores ``clean`` for the ODE stage.
* ``teacher=bidirectional`` (CausVid / Self Forcing baseline): :math:`v` is the bidirectional base model
  from noise; block j's end point depends on every block's noise.

The set (``ode-pairs`` kind) holds ``states [K, F, C, H, W]``, ``target [F, C, H, W]``, ``text`` (and
``clean``); its ``meta`` records the teacher, σ list, grid size, guidance and block size.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cf_ref.masks import AttentionMode
from cf_ref.schedule import few_step_sigmas, sigma_grid
from cf_ref.seeding import generator
from cf_ref.solvers import Method, integrate
from full.config import PairTeacher, Parallelism, Precision, RunConfig, Stage
from full.data import SetKind, ShardWriter
from full.distributed import DistContext, barrier, place_frozen
from full.model import cast_keeping_fp32
from full.recipes import stage_dir, stage_inputs
from full.stages import common

STAGE = Stage.ODE_PAIRS


def teacher_map(runner, config: RunConfig, text, negative, clean, keep_at):
    """The guided PF-ODE map of the configured teacher: ``eps [B, F, C, H, W] -> Trajectory``."""
    cfg, b = config.ode_pairs, config.model.block_size
    mode = AttentionMode.TEACHER_FORCING if cfg.teacher is PairTeacher.AR else AttentionMode.BIDIRECTIONAL
    field = common.guided_field(runner, text, negative, cfg.guidance_scale, mode, b, clean)
    grid = torch.as_tensor(sigma_grid(cfg.num_steps, config.model.shift), dtype=torch.float64)

    def run(eps):
        with torch.no_grad():
            return integrate(field, eps, grid, Method.EULER, keep_at=keep_at)

    return run


def make_pairs(config: RunConfig, ctx: DistContext) -> Path:
    """Write the pair set to ``<out>/ode-pairs`` (resumable shard by shard); returns its folder."""
    cfg = config.ode_pairs
    inputs = stage_inputs(config, STAGE)
    model = common.build_model(config, inputs.init, f"{cfg.teacher.value} teacher")
    data = common.open_set(config.data.latents, SetKind.LATENTS, "ode-pairs")
    data.check_latent_shape(common.latent_shape(config, model))
    common.check_text(data, model)
    # Replicated, not sharded: each process integrates its own shards, so processes run different numbers of
    # forward passes, which FSDP (a collective per pass) cannot do. The frozen teacher fits one device.
    if cfg.precision is Precision.BF16:
        cast_keeping_fp32(model, torch.bfloat16)
    runner = place_frozen(model, ctx, Parallelism.DDP, cfg.precision)
    keep = few_step_sigmas(config.model.few_step_timesteps, config.model.shift)  # float64: exactly on the grid
    count = len(data) if cfg.max_pairs is None else min(cfg.max_pairs, len(data))
    meta = {
        "teacher": cfg.teacher.value,
        "sigmas": keep.tolist(),
        "num_steps": cfg.num_steps,
        "guidance_scale": cfg.guidance_scale,
        "block_size": config.model.block_size,
        "shift": config.model.shift,
        "source": str(data.path),
        "weights": str(inputs.init) if inputs.init else "base model",
    }
    out = stage_dir(config, STAGE)
    writer = ShardWriter(out, SetKind.ODE_PAIRS, cfg.shard_size, meta=meta)
    groups = writer.pending_groups(count, ctx.rank, ctx.world_size)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(groups), desc=STAGE.value, disable=not (ctx.is_main and config.logging.progress))
    for g, items in groups:
        fields: dict[str, list[torch.Tensor]] = {"states": [], "target": [], "text": [], "clean": []}
        for start in range(0, len(items), cfg.batch_size):
            chunk = items[start : start + cfg.batch_size]
            batch = {k: v.to(ctx.device, torch.float32) for k, v in data.fetch(chunk).items()}
            x0, text = batch["latents"], batch["text"]
            negative = data.negative.to(ctx.device, torch.float32)[None].expand(len(chunk), -1, -1)
            eps = torch.stack(
                [
                    torch.randn(
                        x0.shape[1:], generator=generator(ctx.device, config.seed, "ode-pairs", i), device=ctx.device
                    )
                    for i in chunk
                ]
            )
            clean = x0 if cfg.teacher is PairTeacher.AR else None
            traj = teacher_map(runner, config, text, negative, clean, keep)(eps)
            fields["states"].append(traj.states.float().cpu())
            fields["target"].append(traj.end.float().cpu())
            fields["text"].append(text.cpu())
            fields["clean"].append(x0.cpu())
        names = [k for k in fields if k != "clean" or cfg.teacher is PairTeacher.AR]
        tensors = {k: torch.cat(fields[k]).to(cfg.storage.torch) for k in names}
        writer.write_group(g, tensors, [data.captions[i] for i in items])
        bar.update(1)
    bar.close()
    barrier(ctx)
    if ctx.is_main:
        writer.write_negative(data.negative)
        writer.finish(count)
    barrier(ctx)
    return out
