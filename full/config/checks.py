"""Cross-field validation of a typed :class:`~full.config.schema.RunConfig`: every problem found, in one
:class:`ConfigError`. One function per section; each appends its problems to ``errors``.

Every float setting must be finite and fit a float32 (the values end up in fp32 tensors: ``lr=1e39`` would
overflow AdamW's update), except those marked :data:`~full.config.schema.UNBOUNDED`, where ``inf`` means no limit.
"""

from __future__ import annotations

import dataclasses
import math

from cf_ref.granularity import Granularity
from cf_ref.recipes import GeneratorInput
from cf_ref.rollout import CacheGradient
from full.config.errors import ConfigError
from full.config.schema import SIGMA_SAMPLERS, LoopConfig, OptimizerConfig, RunConfig, get_setting, leaf_settings

FLOAT32_MAX = 3.4028234663852886e38
MAX_LR = 1.0  # AdamW moves each weight by about lr per step: beyond 1 nothing useful can be learned


def _check_numbers(config: RunConfig, errors: list[str]) -> None:
    """Every float setting finite (or inf where that means no limit) and within the float32 range."""
    for name, f, _ in leaf_settings():
        value = get_setting(config, name)
        values = value if isinstance(value, tuple) else (value,)
        for v in (v for v in values if isinstance(v, float)):
            if math.isnan(v):
                errors.append(f"{name} is not a number (nan)")
            elif math.isinf(v) and not (f.metadata.get("inf") and v > 0):
                errors.append(f"{name} must be finite, got {v}")
            elif math.isfinite(v) and abs(v) > FLOAT32_MAX:
                errors.append(f"{name} = {v:g} overflows a float32 (the largest is {FLOAT32_MAX:.3g})")


def _check_loop(loop: LoopConfig, where: str, errors: list[str]) -> None:
    if loop.steps < 1:
        errors.append(f"{where}.steps must be >= 1, got {loop.steps}")
    if loop.batch_size < 1:
        errors.append(f"{where}.batch_size must be >= 1, got {loop.batch_size}")
    if loop.grad_accum < 1:
        errors.append(f"{where}.grad_accum must be >= 1, got {loop.grad_accum}")
    if loop.checkpoint_every < 1:
        errors.append(f"{where}.checkpoint_every must be >= 1, got {loop.checkpoint_every}")
    if loop.keep_checkpoints < 1:
        errors.append(
            f"{where}.keep_checkpoints must be >= 1 (the last good checkpoint is kept), got {loop.keep_checkpoints}"
        )


def _check_optim(optim: OptimizerConfig, where: str, errors: list[str]) -> None:
    if math.isfinite(optim.lr) and not 0 < optim.lr <= MAX_LR:
        errors.append(
            f"{where}.lr must lie in (0, {MAX_LR:g}] (AdamW moves each weight by about lr per step), got {optim.lr:g}"
        )
    if not all(0.0 <= b < 1.0 for b in optim.betas):
        errors.append(f"{where}.betas must lie in [0, 1), got {list(optim.betas)}")
    if optim.weight_decay < 0:
        errors.append(f"{where}.weight_decay must be >= 0, got {optim.weight_decay}")
    if optim.max_grad_norm <= 0:
        errors.append(f"{where}.max_grad_norm must be > 0, got {optim.max_grad_norm}")


def _check_model(config: RunConfig, errors: list[str]) -> None:
    m, v = config.model, config.video
    if (m.path is None) == (m.preset is None):
        errors.append("model: give exactly one of model.path (a diffusers Wan transformer folder) or model.preset")
    if m.block_size < 1:
        errors.append(f"model.block_size must be >= 1, got {m.block_size}")
    elif v.latent_frames % m.block_size:
        errors.append(
            f"model.block_size {m.block_size} does not divide video.latent_frames {v.latent_frames}; "
            f"use a frame count that is a multiple of {m.block_size}"
        )
    tb = m.tiny_base
    sizes_ok = tb.steps >= 0 and tb.batch_size >= 1 and tb.lr > 0 and tb.videos >= 1 and tb.warmup >= 0
    if not (sizes_ok and 0 <= tb.caption_dropout <= 1 and 0 <= tb.ema_decay < 1):
        errors.append(
            "model.tiny_base: need steps >= 0, batch_size >= 1, lr > 0, videos >= 1, warmup >= 0, caption_dropout "
            f"in [0, 1], ema_decay in [0, 1), got {dataclasses.asdict(tb)}"
        )
    if tb.sigma_sampler not in SIGMA_SAMPLERS or not (tb.sigma_shift is None or tb.sigma_shift > 0):
        errors.append(
            f"model.tiny_base: need sigma_sampler in {SIGMA_SAMPLERS} and sigma_shift > 0 or null, "
            f"got {tb.sigma_sampler!r}, {tb.sigma_shift}"
        )
    if min(v.latent_frames, v.latent_height, v.latent_width) < 1:
        errors.append(f"video: latent sizes must be >= 1, got {dataclasses.asdict(v)}")


def _check_schedule(config: RunConfig, errors: list[str]) -> None:
    """The kept ODE states must sit exactly on the teacher's grid: the few-step σ's must be grid points."""
    if config.schedule.ode_steps < 2:
        errors.append(f"schedule.ode_steps must be >= 2, got {config.schedule.ode_steps}")
    if not all(math.isfinite(v) for v in (config.schedule.shift, *config.schedule.timesteps)):
        return  # reported by _check_numbers
    try:
        config.schedule.check_on_grid()
    except ValueError as exc:
        errors.append(f"schedule: {exc}")


def _check_run(config: RunConfig, errors: list[str]) -> None:
    if not config.out.strip():
        errors.append("out is empty: give the run's output folder")
    if config.parallel.cpu_threads is not None and config.parallel.cpu_threads < 1:
        errors.append(f"parallel.cpu_threads must be >= 1 or null, got {config.parallel.cpu_threads}")
    if config.seed < 0:
        errors.append(f"seed must be >= 0, got {config.seed}")
    if config.logging.log_every < 1:
        errors.append(f"logging.log_every must be >= 1, got {config.logging.log_every}")
    if config.logging.sample_every < 0 or config.logging.sample_count < 0:
        errors.append("logging.sample_every and logging.sample_count must be >= 0")
    if config.logging.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            errors.append("logging.tensorboard is on but TensorBoard is not installed (pip install tensorboard)")


def _check_teacher_stages(config: RunConfig, errors: list[str]) -> None:
    """ar-diffusion, ode-pairs, ode, cd."""
    b = config.model.block_size
    _check_loop(config.ar_diffusion.loop, "ar_diffusion.loop", errors)
    _check_optim(config.ar_diffusion.optim, "ar_diffusion.optim", errors)
    if config.ar_diffusion.granularity is Granularity.FRAME and b != 1:
        errors.append("ar_diffusion.granularity 'frame' needs model.block_size 1 (one σ per block otherwise)")
    pairs = config.ode_pairs
    if pairs.batch_size < 1 or pairs.shard_size < 1:
        errors.append("ode_pairs.batch_size and shard_size must be >= 1")
    if pairs.guidance_scale < 0:
        errors.append(f"ode_pairs.guidance_scale must be >= 0, got {pairs.guidance_scale}")
    if pairs.max_pairs is not None and pairs.max_pairs < 1:
        errors.append(f"ode_pairs.max_pairs must be >= 1 or null, got {pairs.max_pairs}")
    _check_loop(config.ode.loop, "ode.loop", errors)
    _check_optim(config.ode.optim, "ode.optim", errors)
    if config.ode.index_granularity is Granularity.FRAME and b != 1:
        errors.append("ode.index_granularity 'frame' needs model.block_size 1")
    cd = config.cd
    _check_loop(cd.loop, "cd.loop", errors)
    _check_optim(cd.optim, "cd.optim", errors)
    if not 0.0 <= cd.ema_decay <= 1.0:
        errors.append(f"cd.ema_decay must lie in [0, 1], got {cd.ema_decay}")
    if cd.guidance_scale < 0:
        errors.append(f"cd.guidance_scale must be >= 0, got {cd.guidance_scale}")


def _check_dmd(config: RunConfig, errors: list[str]) -> None:
    d = config.dmd
    _check_loop(d.loop, "dmd.loop", errors)
    _check_optim(d.optim, "dmd.optim", errors)
    _check_optim(d.critic_optim, "dmd.critic_optim", errors)
    if d.critic_updates_per_generator < 1:
        errors.append(f"dmd.critic_updates_per_generator must be >= 1, got {d.critic_updates_per_generator}")
    if not 0.0 <= d.t_min < d.t_max <= 1000.0:
        errors.append(f"dmd: need 0 <= t_min < t_max <= 1000, got t_min={d.t_min}, t_max={d.t_max}")
    if not 0.0 <= d.ema_decay <= 1.0:
        errors.append(f"dmd.ema_decay must lie in [0, 1], got {d.ema_decay}")
    if d.ema_start < 0:
        errors.append(f"dmd.ema_start must be >= 0, got {d.ema_start}")
    if not 0.0 <= d.context_noise < 1.0:
        errors.append(f"dmd.context_noise must lie in [0, 1), got {d.context_noise}")
    if d.guidance_scale < 0:
        errors.append(f"dmd.guidance_scale must be >= 0, got {d.guidance_scale}")
    if d.score_shift is not None and d.score_shift <= 0:
        errors.append(f"dmd.score_shift must be > 0 or null (the exact σ), got {d.score_shift}")
    if d.cache not in ("dynamic", "static"):
        errors.append(f"dmd.cache must be dynamic or static, got {d.cache!r}")
    if d.cache_gradient is not CacheGradient.NONE and d.generator_input is not GeneratorInput.SELF_ROLLOUT:
        errors.append("dmd.cache_gradient applies to generator_input self (a KV-cache rollout); set it to none")
    self_rollout = d.generator_input is GeneratorInput.SELF_ROLLOUT
    if d.first_block_steps is not None and (d.first_block_steps < 1 or not self_rollout):
        errors.append(
            f"dmd.first_block_steps must be >= 1 with generator_input self, or null; got {d.first_block_steps}"
        )
    if d.image_to_video and not self_rollout:
        errors.append("dmd.image_to_video applies to generator_input self (a KV-cache rollout)")


def problems(config: RunConfig) -> list[str]:
    """Every problem of the configuration (empty when it is valid)."""
    errors: list[str] = []
    for check in (_check_model, _check_schedule, _check_run, _check_teacher_stages, _check_dmd):
        check(config, errors)
    numbers: list[str] = []
    _check_numbers(config, numbers)  # last: a setting whose range check already spoke is not repeated
    return errors + [m for m in numbers if not any(e.startswith(m.split(" ", 1)[0] + " ") for e in errors)]


def validate(config: RunConfig) -> None:
    """Cross-field checks; raises one :class:`ConfigError` listing every problem."""
    errors = problems(config)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
