"""One seed of the toy pipeline: the stages of :mod:`toy.stages` chained per recipe
(:data:`cf_ref.recipes.RECIPES`), each run once per seed.

:class:`SeedRun` memoises every stage (base model, AR teachers, initialisations, DMD runs), so running several
recipes on one seed trains the shared stages once. Every stage draws its randomness from its own generator,
seeded by :func:`cf_ref.seeding.derive_seed` of ``(seed, "pipeline", stage)``: a recipe gives the same numbers
whether it runs alone (``cf-ref toy pipeline``) or beside the others (``cf-ref toy compare``). Times
(:class:`cf_ref.timing.Stopwatch`) count training only, not evaluation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from cf_ref.masks import AttentionMode
from cf_ref.recipes import RECIPES, Forcing, Init, Recipe, RecipeSpec
from cf_ref.seeding import derive_seed, generator
from cf_ref.timing import Stopwatch
from toy.evaluation import SampleSizes, energy_noise_floor, sample_quality
from toy.networks import MaskedFrameMLP, with_mode
from toy.pipeline_config import PipelineConfig, RealScore
from toy.stages import (
    DMDSettings,
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


def stage_rng(seed: int, stage: str) -> torch.Generator:
    """The generator of one stage, seeded from ``(seed, "pipeline", stage)`` so stages do not share random streams."""
    return generator("cpu", seed, "pipeline", stage)


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
        self.student_sigmas = config.schedule.few_step.student_sigmas(torch.float32)
        self.grid = config.schedule.few_step.grid(torch.float32)

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
    def init(self, spec: RecipeSpec) -> MaskedFrameMLP:
        """The few-step causal student of ``spec`` before DMD (every student starts from its teacher's weights).

        Memoised by ``spec.init``: recipes with one initialisation share it (they also share its ODE state
        granularity, :data:`cf_ref.recipes.RECIPES`)."""
        key = f"init/{spec.init.value}"
        if key not in self._nets:
            if spec.init is Init.AR_DIFFUSION:
                net, clock, losses = self.ar_teacher(Forcing.TEACHER), Stopwatch(), []
            elif spec.init is Init.CAUSAL_CD:
                net, clock, losses = self._consistency_student(stage_rng(self.seed, key))
            else:
                net, clock, losses = self._ode_student(spec, stage_rng(self.seed, key))
            self._finish(key, net, clock, losses, samples=self._few_step_metrics(key, net))
        return self._nets[key]

    def _ode_student(self, spec: RecipeSpec, rng: torch.Generator) -> tuple[MaskedFrameMLP, Stopwatch, list[float]]:
        """ODE pairs of the recipe's pair teacher (the base model's joint PF-ODE, or the teacher-forcing AR teacher
        with clean data context), then ODE regression with the recipe's state granularity."""
        b, (n, f, d) = self.config.budget, (self.config.budget.num_pairs, self.data.num_frames, self.data.dim)
        causal = spec.init is Init.CAUSAL_ODE
        teacher = self.ar_teacher(Forcing.TEACHER) if causal else self.base()
        net, clock = with_mode(teacher, AttentionMode.BLOCK_CAUSAL), Stopwatch()
        with clock.running():
            context = sample_data(self.data, n, rng) if causal else None
            eps = torch.randn(n, f, d, generator=rng)
            pairs = ode_pairs(teacher, eps, self.grid, self.student_sigmas, context=context)
            optim = b.optim(b.init_steps)
            losses = distill_ode(net, pairs, optim, b.batch_size, rng, spec.state_granularity)
        return net, clock, losses

    def _consistency_student(self, rng: torch.Generator) -> tuple[MaskedFrameMLP, Stopwatch, list[float]]:
        """Causal consistency distillation along the teacher-forcing AR teacher's PF-ODE (Causal Forcing++)."""
        c, b = self.config, self.config.budget
        teacher = self.ar_teacher(Forcing.TEACHER)
        net, clock = with_mode(teacher, AttentionMode.BLOCK_CAUSAL), Stopwatch()
        with clock.running():
            optim = b.optim(b.init_steps)
            losses = train_cd_student(net, teacher, self.data, self.grid, optim, b.batch_size, c.cd.ema_decay, rng)
        return net, clock, losses

    # ---- stage 4 -------------------------------------------------------------------------------------------
    def real_score(self):
        """The DMD real score: the learned base model, or the exact bidirectional teacher (a check)."""
        if self.config.dmd.real_score is RealScore.LEARNED:
            return self.base().velocity_field()
        exact = BidirectionalTeacher(self.data)
        return lambda x, sigma: exact.velocity(x.double(), sigma.double()).to(x.dtype)

    def dmd_settings(self, spec: RecipeSpec) -> DMDSettings:
        """The :class:`toy.stages.DMDSettings` of a recipe: the shared budget and DMD configuration, the recipe's
        generator input."""
        c, b = self.config, self.config.budget
        return DMDSettings(
            generator_optim=b.optim(b.dmd_steps, b.generator_lr),
            critic_optim=b.optim(b.dmd_steps * c.dmd.critic_updates_per_generator, b.critic_lr),
            batch_size=b.batch_size,
            student_sigmas=self.student_sigmas,
            shift=c.schedule.few_step.shift,
            generator_input=spec.generator_input,
            critic_updates_per_generator=c.dmd.critic_updates_per_generator,
            t_min=c.dmd.t_min,
            t_max=c.dmd.t_max,
            context_noise=c.dmd.context_noise,
            same_exit_across_blocks=c.dmd.same_exit_across_blocks,
            ema_decay=c.dmd.ema_decay,
        )

    def dmd(self, recipe: Recipe) -> MaskedFrameMLP:
        """Asymmetric DMD of the recipe's initialisation; records the metric curve every ``eval_every`` steps."""
        key = f"dmd/{recipe.value}"
        if key not in self._nets:
            c, spec = self.config, RECIPES[recipe]
            generator_net, critic = copy.deepcopy(self.init(spec)), copy.deepcopy(self.base())
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

            evaluate(0, generator_net)
            eval_clock.wall = eval_clock.cpu = 0.0  # the step-0 evaluation is not DMD time either
            with clock.running():
                result = train_dmd(
                    generator_net, critic, self.real_score(), self.data, self.dmd_settings(spec),
                    stage_rng(self.seed, key), on_step,
                )  # fmt: skip
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
