"""One seed of the toy pipeline: the stages of :mod:`toy.stages` chained per recipe, each run once per seed.

:class:`SeedRun` memoises every stage (base model, AR teachers, initialisations, DMD runs), so running several
recipes on one seed trains the shared stages once. Every stage draws its randomness from its own generator,
seeded from ``(seed, stage)``: a recipe gives the same numbers whether it runs alone (``cf-ref toy pipeline``)
or beside the others (``cf-ref toy compare``). Wall times count training only, not evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import torch
from torch import Tensor

from cf_ref.masks import AttentionMode
from toy.evaluation import SampleSizes, energy_noise_floor, sample_quality
from toy.experiment import derive_seed
from toy.networks import MaskedFrameMLP, with_mode
from toy.recipes import RECIPES, Init, PipelineConfig, RealScore, Recipe
from toy.stages import (
    DMDSettings,
    Forcing,
    ar_sample,
    distill_ode,
    few_step_sample,
    joint_sample,
    ode_pairs,
    sample_data,
    train_ar_teacher,
    train_base_model,
    train_cd_student,
    train_dmd,
)
from toy.students import build_network
from toy.teachers import BidirectionalTeacher
from toy.velocity_errors import History, ar_velocity_error, bidirectional_velocity_error


@dataclass
class Stopwatch:
    """Accumulated wall-clock and process CPU seconds (CPU time is the steadier figure on a shared machine)."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu

    def minus(self, other: Stopwatch) -> Stopwatch:
        return Stopwatch(self.wall - other.wall, self.cpu - other.cpu)


def stage_rng(seed: int, stage: str) -> torch.Generator:
    """The generator of one stage, seeded by :func:`toy.experiment.derive_seed` from ``(seed, "pipeline", stage)``
    so stages do not share random streams."""
    return torch.Generator().manual_seed(derive_seed(seed, "pipeline", stage))


def jsonable(obj: Any) -> Any:
    """Dataclasses, enums and tensors turned into JSON-ready values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Tensor):
        return obj.tolist()
    return obj


def recipe_stage_keys(recipe: Recipe) -> dict[str, str]:
    """Stage role -> stage key of a recipe's chain, e.g. ``{"base": "base", "ar_teacher": ..., "init": ..., "dmd": ...}``."""
    spec = RECIPES[recipe]
    keys = {"base": "base"}
    if spec.init.needs_ar_teacher:
        keys["ar_teacher"] = f"ar_teacher/{Forcing.TEACHER.value}"
    keys["init"] = f"init/{spec.init.value}"
    keys["dmd"] = f"dmd/{recipe.value}"
    return keys


class SeedRun:
    """The stages of every recipe on one seed, run lazily and once (see module doc).

    ``records[key]`` holds each finished stage's JSON-ready record (seconds, final loss, metrics) and
    ``samples[key]`` its evaluation samples ``[n, F, d]`` (``"data"`` is the fresh reference data).
    """

    def __init__(self, config: PipelineConfig, seed: int):
        self.config, self.seed = config, seed
        self.data = config.build_data()
        g = stage_rng(seed, "evaluation")
        n, f, d = config.eval.num_samples, self.data.num_frames, self.data.dim
        self.samples: dict[str, Tensor] = {"data": sample_data(self.data, n, g)}
        self.eval_noise = torch.randn(n, f, d, generator=g)
        self.records: dict[str, dict[str, Any]] = {}
        self._nets: dict[str, MaskedFrameMLP] = {}
        self.student_sigmas = config.schedule.student_sigmas().float()
        self.grid = config.schedule.teacher_grid().float()

    # ---- helpers -------------------------------------------------------------------------------------------
    def _summary(self, key: str, samples: Tensor) -> dict[str, Any]:
        self.samples[key] = samples
        return self._quality(samples, self.samples["data"])

    def _quality(self, samples: Tensor, reference: Tensor) -> dict[str, Any]:
        """The sample metrics of ``cf-ref toy run`` (:func:`toy.evaluation.sample_quality`) on all samples."""
        n = len(samples)
        return sample_quality(samples, reference, self.data, SampleSizes(variance=n, energy=n))

    def _few_step_metrics(self, key: str, net: MaskedFrameMLP) -> dict[str, Any]:
        rng = stage_rng(self.seed, f"eval/{key}")
        return self._summary(key, few_step_sample(net, self.eval_noise, self.student_sigmas, rng=rng))

    def _finish(self, key: str, net: MaskedFrameMLP, clock: Stopwatch, losses: list[float], **extra: Any) -> None:
        self._nets[key] = net
        self.records[key] = {
            "seconds": clock.wall,
            "cpu_seconds": clock.cpu,
            "final_loss": losses[-1] if losses else None,
            **extra,
        }

    # ---- stage 1 -------------------------------------------------------------------------------------------
    def base(self) -> MaskedFrameMLP:
        """The bidirectional base model (stand-in for the pretrained video model)."""
        key = "base"
        if key not in self._nets:
            c = self.config
            net_config = c.network.frame_net(self.data, AttentionMode.BIDIRECTIONAL)
            net = build_network(net_config, derive_seed(self.seed, "pipeline", "base", "weights"))
            clock = Stopwatch()
            with clock.running():
                losses = train_base_model(
                    net, self.data, c.budget.optim(c.budget.base_steps), c.budget.batch_size,
                    c.schedule.training_shift, stage_rng(self.seed, key),
                )  # fmt: skip
            err = bidirectional_velocity_error(net, self.data, c.eval.velocity_samples, stage_rng(self.seed, "eval/v"))
            samples = self._summary(key, joint_sample(net, self.eval_noise, self.grid))
            self._finish(key, net, clock, losses, velocity_error=err, samples=samples)
        return self._nets[key]

    # ---- stage 2 -------------------------------------------------------------------------------------------
    def ar_teacher(self, forcing: Forcing) -> MaskedFrameMLP:
        """The block-causal AR diffusion teacher trained by teacher or diffusion forcing (from the base weights)."""
        key = f"ar_teacher/{forcing.value}"
        if key not in self._nets:
            c = self.config
            net = with_mode(self.base(), AttentionMode.BLOCK_CAUSAL)
            clock = Stopwatch()
            with clock.running():
                losses = train_ar_teacher(
                    net, self.data, forcing, c.budget.optim(c.budget.teacher_steps), c.budget.batch_size,
                    c.schedule.training_shift, stage_rng(self.seed, key),
                )  # fmt: skip
            n = c.eval.velocity_samples
            errors = {h.value: ar_velocity_error(net, self.data, h, n, stage_rng(self.seed, "eval/v")) for h in History}
            samples = self._summary(key, ar_sample(net, self.eval_noise, self.grid))
            self._finish(key, net, clock, losses, velocity_error=errors, samples=samples)
        return self._nets[key]

    # ---- stage 3 -------------------------------------------------------------------------------------------
    def init(self, kind: Init) -> MaskedFrameMLP:
        """The few-step causal student before DMD (every student starts from its teacher's weights)."""
        key = f"init/{kind.value}"
        if key not in self._nets:
            c, b = self.config, self.config.budget
            rng = stage_rng(self.seed, key)
            optim = b.optim(b.init_steps)
            clock, losses = Stopwatch(), []
            if kind is Init.AR_DIFFUSION:
                net = self.ar_teacher(Forcing.TEACHER)
            elif kind is Init.BIDIRECTIONAL_ODE:
                teacher = self.base()
                net = with_mode(teacher, AttentionMode.BLOCK_CAUSAL)
                with clock.running():
                    eps = torch.randn(b.num_pairs, self.data.num_frames, self.data.dim, generator=rng)
                    pairs = ode_pairs(teacher, eps, self.grid, self.student_sigmas)
                    losses = distill_ode(net, pairs, optim, b.batch_size, rng)
            else:
                teacher = self.ar_teacher(Forcing.TEACHER)
                net = with_mode(teacher, AttentionMode.BLOCK_CAUSAL)
                with clock.running():
                    if kind is Init.CAUSAL_ODE:
                        context = sample_data(self.data, b.num_pairs, rng)
                        eps = torch.randn(context.shape, generator=rng)
                        pairs = ode_pairs(teacher, eps, self.grid, self.student_sigmas, context=context)
                        losses = distill_ode(net, pairs, optim, b.batch_size, rng)
                    else:
                        losses = train_cd_student(
                            net, teacher, self.data, self.grid, optim, b.batch_size, c.cd.ema_decay, rng
                        )
            self._finish(key, net, clock, losses, samples=self._few_step_metrics(key, net))
        return self._nets[key]

    # ---- stage 4 -------------------------------------------------------------------------------------------
    def real_score(self):
        """The DMD real score: the learned base model, or the exact bidirectional teacher (a check)."""
        if self.config.dmd.real_score is RealScore.LEARNED:
            return self.base().velocity_field()
        exact = BidirectionalTeacher(self.data)
        return lambda x, sigma: exact.velocity(x.double(), sigma.double()).to(x.dtype)

    def dmd(self, recipe: Recipe) -> MaskedFrameMLP:
        """Asymmetric DMD of the recipe's initialisation; records the metric curve every ``eval_every`` steps."""
        key = f"dmd/{recipe.value}"
        if key not in self._nets:
            c, spec = self.config, RECIPES[recipe]
            generator = copy.deepcopy(self.init(spec.init))
            critic = copy.deepcopy(self.base())
            settings = DMDSettings(
                generator_optim=c.budget.optim(c.budget.dmd_steps, c.budget.generator_lr),
                critic_optim=c.budget.optim(c.budget.dmd_steps * c.dmd.critic_ratio, c.budget.critic_lr),
                batch_size=c.budget.batch_size,
                student_sigmas=self.student_sigmas,
                shift=c.schedule.shift,
                generator_input=spec.generator_input,
                critic_ratio=c.dmd.critic_ratio,
                t_min=c.dmd.t_min,
                t_max=c.dmd.t_max,
                context_noise=c.dmd.context_noise,
                same_exit_across_blocks=c.dmd.same_exit_across_blocks,
                ema_decay=c.dmd.ema_decay,
            )
            curve: list[dict[str, Any]] = []
            eval_clock, clock = Stopwatch(), Stopwatch()
            n = c.eval.curve_samples

            def evaluate(step: int, model: MaskedFrameMLP) -> None:
                with eval_clock.running():
                    rng = stage_rng(self.seed, f"eval/{key}/curve")
                    x = few_step_sample(model, self.eval_noise[:n], self.student_sigmas, rng=rng)
                    curve.append({"step": step, **self._quality(x, self.samples["data"][:n])})

            def on_step(step: int, model: MaskedFrameMLP) -> None:
                if (step + 1) % c.dmd.eval_every == 0 or step + 1 == c.budget.dmd_steps:
                    evaluate(step + 1, model)

            evaluate(0, generator)
            eval_clock.wall = eval_clock.cpu = 0.0
            with clock.running():
                rng = stage_rng(self.seed, key)
                result = train_dmd(generator, critic, self.real_score(), self.data, settings, rng, on_step)
            self._finish(
                key, result.final, clock.minus(eval_clock), result.generator_losses,
                critic_final_loss=result.critic_losses[-1], curve=curve,
                samples=self._few_step_metrics(key, result.final),
            )  # fmt: skip
        return self._nets[key]

    # ---- a recipe ------------------------------------------------------------------------------------------
    def run(self, recipe: Recipe) -> dict[str, Any]:
        """Run (or reuse) every stage of ``recipe``; returns ``{stage role: record}`` for its chain."""
        self.dmd(recipe)
        return {role: self.records[key] for role, key in recipe_stage_keys(recipe).items()}

    def noise_floor(self) -> dict[str, Any]:
        """Energy distance of fresh data sets against the reference (:func:`toy.evaluation.energy_noise_floor`):
        an exact sampler scores within this spread."""
        if "data" not in self.records:
            rng = stage_rng(self.seed, "eval/noise_floor")
            floor = energy_noise_floor(self.data, self.samples["data"], self.config.eval.noise_draws, rng)
            self.records["data"] = {"energy_noise_floor": floor}
        return self.records["data"]["energy_noise_floor"]

    def teacher_ablation(self) -> dict[str, Any]:
        """Teacher forcing vs diffusion forcing: both AR teachers' records (trains them if needed)."""
        for forcing in Forcing:
            self.ar_teacher(forcing)
        return {f.value: self.records[f"ar_teacher/{f.value}"] for f in Forcing}
