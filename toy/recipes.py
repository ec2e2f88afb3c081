r"""The recipes of the field as chains of the toy stages, and their shared (equal-budget) configuration.

Every recipe ends with asymmetric DMD on the same block-causal few-step generator; they differ in how that
generator is initialised and in what it conditions on during DMD:

=====================  ==============================================  ==========================================
recipe                 initialisation of the few-step causal student   DMD generator input
=====================  ==============================================  ==========================================
causvid                bidirectional ODE distillation (base model)     clean data context (teacher-forced, no
                                                                       self rollout)
self-forcing           bidirectional ODE distillation (base model)     self rollout (own outputs as context)
causal-forcing         causal ODE distillation (TF AR teacher)         self rollout
causal-forcing-pp      causal consistency distillation (TF AR teacher) self rollout
ar-diffusion-init      the TF AR teacher itself, used with few steps   self rollout
=====================  ==============================================  ==========================================

All recipes share one :class:`PipelineConfig`: the same networks, batch, step counts, learning rates and
schedule, so no recipe is tuned more than another. The bidirectional base model (real score, critic
initialisation, bidirectional ODE teacher) is common to all; the AR-teacher recipes additionally train the
teacher-forcing AR teacher, which is part of their cost (reported as its own stage).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cf_ref.masks import AttentionMode
from cf_ref.schedule import few_step_sigmas, sigma_grid, uniform_few_step_timesteps
from toy.data import SequenceData
from toy.experiment import DatasetKind, DatasetSpec, Preset
from toy.networks import FrameNetConfig
from toy.training import OptimConfig


class Recipe(enum.Enum):
    CAUSAL_FORCING = "causal-forcing"
    CAUSAL_FORCING_PP = "causal-forcing-pp"
    SELF_FORCING = "self-forcing"
    CAUSVID = "causvid"
    AR_DIFFUSION_INIT = "ar-diffusion-init"


class Init(enum.Enum):
    """How the few-step causal student is initialised (stage 3)."""

    CAUSAL_ODE = "causal_ode"  # ODE regression on the TF AR teacher's PF-ODE with clean data context
    CAUSAL_CD = "causal_cd"  # consistency distillation along the TF AR teacher's PF-ODE (EMA target)
    BIDIRECTIONAL_ODE = "bidirectional_ode"  # ODE regression on the base model's joint PF-ODE
    AR_DIFFUSION = "ar_diffusion"  # the multi-step TF AR teacher itself

    @property
    def needs_ar_teacher(self) -> bool:
        return self is not Init.BIDIRECTIONAL_ODE


class GeneratorInput(enum.Enum):
    """What the generator conditions on while DMD trains it (stage 4)."""

    SELF_ROLLOUT = "self_rollout"  # Self Forcing: AR rollout on its own outputs, gradient through one step
    DATA_CONTEXT = "data_context"  # CausVid: one step from noised data, teacher-forced on clean data context


@dataclass(frozen=True)
class RecipeSpec:
    init: Init
    generator_input: GeneratorInput


RECIPES: dict[Recipe, RecipeSpec] = {
    Recipe.CAUSAL_FORCING: RecipeSpec(Init.CAUSAL_ODE, GeneratorInput.SELF_ROLLOUT),
    Recipe.CAUSAL_FORCING_PP: RecipeSpec(Init.CAUSAL_CD, GeneratorInput.SELF_ROLLOUT),
    Recipe.SELF_FORCING: RecipeSpec(Init.BIDIRECTIONAL_ODE, GeneratorInput.SELF_ROLLOUT),
    Recipe.CAUSVID: RecipeSpec(Init.BIDIRECTIONAL_ODE, GeneratorInput.DATA_CONTEXT),
    Recipe.AR_DIFFUSION_INIT: RecipeSpec(Init.AR_DIFFUSION, GeneratorInput.SELF_ROLLOUT),
}


class RealScore(enum.Enum):
    """The DMD real score."""

    LEARNED = "learned"  # the bidirectional base model (as the pretrained teacher in the real systems)
    EXACT = "exact"  # the exact bidirectional teacher of the toy data (a check of DMD itself)


@dataclass(frozen=True)
class NetworkConfig:
    """One network size for every model of every recipe (base, AR teachers, students, generator, critic)."""

    hidden: int = 64
    depth: int = 3
    sigma_frequencies: int = 6
    block_size: int = 1  # frames per AR block (1 = frame-wise, as the paper's default model)

    def frame_net(self, data: SequenceData, mode: AttentionMode) -> FrameNetConfig:
        return FrameNetConfig(
            num_frames=data.num_frames,
            dim=data.dim,
            mode=mode,
            block_size=self.block_size,
            hidden=self.hidden,
            depth=self.depth,
            sigma_frequencies=self.sigma_frequencies,
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """Noise levels. ``shift`` is Wan's shift of the published setting (5.0): teacher PF-ODE grid, the
    few-step list and the DMD levels; ``training_shift`` warps the flow-matching training levels of the base
    model, the AR teachers and the critic."""

    shift: float = 5.0
    training_shift: float = 1.0
    student_steps: int = 4  # K: 1000/750/500/250 before the shift
    ode_steps: int = 48  # N: the teacher PF-ODE grid (ODE pairs, CD, AR-teacher sampling); a multiple of K

    def __post_init__(self) -> None:
        if self.ode_steps % self.student_steps:
            raise ValueError(f"ode_steps {self.ode_steps} must be a multiple of student_steps {self.student_steps}")

    def student_sigmas(self):
        """``[K]`` few-step σ list (see :func:`cf_ref.schedule.few_step_sigmas`)."""
        return few_step_sigmas(uniform_few_step_timesteps(self.student_steps), self.shift)

    def teacher_grid(self):
        """``[N+1]`` the teacher PF-ODE grid; contains every σ of :meth:`student_sigmas`."""
        return sigma_grid(self.ode_steps, self.shift)


@dataclass(frozen=True)
class BudgetConfig:
    """Steps, batch and learning rates shared by all recipes."""

    batch_size: int = 256
    base_steps: int = 1500
    teacher_steps: int = 1500  # each AR teacher (teacher forcing, and diffusion forcing for the ablation)
    init_steps: int = 1000  # ODE regression or consistency distillation
    dmd_steps: int = 200  # generator updates
    num_pairs: int = 4096  # stored ODE pairs per ODE initialisation
    lr: float = 2e-3  # flow matching, ODE regression, CD
    generator_lr: float = 2e-4  # DMD generator
    critic_lr: float = 4e-4  # DMD critic (fake score)

    def optim(self, steps: int, lr: float | None = None) -> OptimConfig:
        return OptimConfig(steps=steps, lr=self.lr if lr is None else lr)


@dataclass(frozen=True)
class DMDConfig:
    """Asymmetric DMD (see :mod:`cf_ref.distill.dmd`), defaults from the published setting where they apply."""

    critic_ratio: int = 5  # critic updates per generator update
    t_min: float = 20.0  # DMD / critic timesteps are shifted, then clamped to [t_min, t_max]
    t_max: float = 980.0
    context_noise: float = 0.0  # level at which generated blocks are committed to the cache
    same_exit_across_blocks: bool = True  # one exit step per rollout (the published default)
    ema_decay: float | None = None  # EMA of the generator (None: evaluate the raw generator)
    real_score: RealScore = RealScore.LEARNED
    eval_every: int = 50  # generator steps between metric evaluations (the DMD curves)


@dataclass(frozen=True)
class CDConfig:
    ema_decay: float = 0.95  # target network θ⁻ ← μθ⁻ + (1-μ)θ


@dataclass(frozen=True)
class EvalConfig:
    num_samples: int = 2048  # samples per model for the final metrics
    curve_samples: int = 1024  # samples per point of the DMD curves
    velocity_samples: int = 2048  # noisy inputs for velocity errors
    noise_draws: int = 8  # fresh data sets scored against the reference: the energy distance's noise floor


MIXTURE_4_MODES = DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=4)
"""The comparison's dataset: four rotating mode trajectories in 2-D, the mode drawn once per sequence."""


@dataclass(frozen=True)
class PipelineConfig:
    dataset: DatasetSpec = MIXTURE_4_MODES  # the datasets of `cf-ref toy run` (toy.experiment)
    num_frames: int = 4
    network: NetworkConfig = field(default_factory=NetworkConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    cd: CDConfig = field(default_factory=CDConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def build_data(self) -> SequenceData:
        return self.dataset.build(self.num_frames)


def pipeline_config(preset: Preset, real_score: RealScore = RealScore.LEARNED) -> PipelineConfig:
    """``QUICK``: the defaults (a 3-seed comparison of all recipes in minutes on 2 CPU cores);
    ``PAPER``: twice the network width, 4× the training steps and 4× the evaluation samples.
    ``real_score`` picks the DMD real score (the exact teacher is a check of DMD itself)."""
    if preset is Preset.QUICK:
        return PipelineConfig(dmd=DMDConfig(real_score=real_score))
    return PipelineConfig(
        network=NetworkConfig(hidden=128),
        budget=BudgetConfig(base_steps=6000, teacher_steps=6000, init_steps=4000, dmd_steps=1200),
        dmd=DMDConfig(eval_every=100, real_score=real_score),
        eval=EvalConfig(num_samples=8192, curve_samples=2048, velocity_samples=8192),
    )
