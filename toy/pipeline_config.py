r"""The toy pipeline's one configuration, shared by every recipe (equal budgets), and its two presets.

The recipes themselves — which initialisation, whose pairs, what the DMD generator conditions on — are
:data:`cf_ref.recipes.RECIPES`, the vocabulary both tracks speak. This module holds only what is specific to the
toy: the network size, the schedule (wrapping :class:`cf_ref.schedule.FewStepSchedule`), step counts and learning
rates, the DMD and CD settings, the evaluation sizes. All recipes share one :class:`PipelineConfig`, so no recipe
is tuned more than another. The bidirectional base model (real score, critic initialisation, bidirectional ODE
teacher) is common to all; the AR-teacher recipes additionally train the teacher-forcing AR teacher, which is
part of their cost (reported as its own stage).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cf_ref.masks import AttentionMode
from cf_ref.schedule import FewStepSchedule
from toy.data import DatasetKind, DatasetSpec, SequenceData
from toy.networks import FrameNetConfig
from toy.preset import Preset
from toy.training import OptimConfig


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
    """Noise levels. ``few_step``: the published schedule (1000/750/500/250, Wan's shift 5, a 48-step teacher
    grid) — the student's list, the teacher PF-ODE grid (ODE pairs, CD, AR-teacher sampling) and, through its
    shift, the DMD levels; ``training_shift`` warps the flow-matching training levels of the base model, the AR
    teachers and the critic."""

    few_step: FewStepSchedule = FewStepSchedule()
    training_shift: float = 1.0

    def __post_init__(self) -> None:
        self.few_step.check_on_grid()


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

    critic_updates_per_generator: int = 5
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
    dataset: DatasetSpec = MIXTURE_4_MODES
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
