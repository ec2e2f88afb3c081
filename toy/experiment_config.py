"""What a ``cf-ref toy run`` depends on besides its seed: :class:`ExperimentConfig`, and the two presets."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cf_ref.io import to_plain
from cf_ref.recipes import PairTeacher
from cf_ref.solvers import Method
from toy.data import CORE_DATASETS, DatasetKind, DatasetSpec
from toy.evaluation import SampleSizes
from toy.pairs import GridConfig
from toy.preset import Preset
from toy.students import StudentConfig
from toy.training import OptimConfig


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on besides the seed (presets: :func:`preset_config`)."""

    preset: str
    datasets: tuple[DatasetSpec, ...]
    num_frames: int = 4
    grid: GridConfig = GridConfig()
    student: StudentConfig = StudentConfig()
    causal_student: StudentConfig | None = None  # the students of causal pairs, if not ``student``
    gaussian_steps: int | None = None  # training steps of every student of Gaussian data, if not its route's
    num_pairs: int = 16384  # training pairs per pair teacher
    num_eval_pairs: int = 8192  # held-out pairs for the errors to the flow map
    num_ce_pairs: int = 256  # the first of them, for the conditional expectation (Monte Carlo: the costly part)
    num_resamples: int = 128  # Monte Carlo copies per pair for the conditional expectation (bidirectional pairs)
    causal_resamples: int = 2  # the causal pairs' conditional variance is 0; two copies show it
    samples: SampleSizes = SampleSizes()
    noise_draws: int = 8  # fresh data sets for the energy distance's noise floor (toy.claims: ≥ 20m − 1)
    plot_samples: int = 1000  # samples per source kept for the figures
    plot_trajectories: int = 24  # teacher trajectories kept for the figures
    figure_resamples: int = 512  # unseen-noise draws in the conditional-expectation figure

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("an experiment needs at least one dataset")
        if self.num_pairs < 1 or not 2 <= self.num_ce_pairs <= self.num_eval_pairs:
            raise ValueError(
                "need num_pairs >= 1 and 2 <= num_ce_pairs <= num_eval_pairs, got "
                f"{self.num_pairs}, {self.num_ce_pairs}, {self.num_eval_pairs}"
            )
        if self.plot_samples > self.samples.variance:
            raise ValueError("plot_samples cannot exceed the number of samples drawn")
        if self.gaussian_steps is not None and self.gaussian_steps < 1:
            raise ValueError(f"gaussian_steps must be >= 1 (or None), got {self.gaussian_steps}")

    def student_of(self, teacher: PairTeacher, gaussian: bool = False) -> StudentConfig:
        """The student configuration of ``teacher``'s pairs: ``causal_student`` for the AR teacher's, if set; on
        Gaussian data (``gaussian``: one component) trained ``gaussian_steps``, if set. There both the conditional
        expectation and the AR flow map are affine in the visible states at each level, which the affine skip
        holds exactly (:class:`toy.networks.LevelAffineSkip`): the MLP has only a zero remainder to learn."""
        sc = self.causal_student if teacher is PairTeacher.AR and self.causal_student is not None else self.student
        if gaussian and self.gaussian_steps is not None:
            return replace(sc, optim=replace(sc.optim, steps=self.gaussian_steps))
        return sc

    def describe(self) -> dict:
        """JSON-ready settings (:func:`cf_ref.io.to_plain`), with every student's σ list."""
        out = to_plain(self)
        out["grid"]["student_sigmas"] = {str(k): self.grid.student_sigmas(k).tolist() for k in self.grid.student_steps}
        return out


STEP_SCALES = (2.0, 8.0, 16.0, 64.0, 128.0, 512.0)
"""Scales of the students' steep own-state features (:mod:`toy.networks`): transitions down to ~1/500 wide."""


def preset_config(preset: Preset) -> ExperimentConfig:
    """``quick``: the four core datasets, 16-step teacher grid, small students (under a minute on 2 cores).
    ``paper``: adds the independent-frames control, a 48-step grid, larger students and more samples."""
    return _quick() if preset is Preset.QUICK else _paper()


def _quick() -> ExperimentConfig:
    student = StudentConfig(
        hidden=64,
        depth=3,
        batch_size=256,
        optim=OptimConfig(steps=800, lr=3e-2, final_lr_fraction=0.01),
        own_step_scales=STEP_SCALES,
        affine_skip=True,
    )
    return ExperimentConfig(
        preset=Preset.QUICK.value,
        datasets=CORE_DATASETS,
        grid=GridConfig(teacher_steps=16, shift=2.0, method=Method.RK4, student_steps=(4, 1)),
        student=student,
        # a causal student regresses a step-like flow map (mixtures), a bidirectional one the smooth conditional
        # expectation: 1000 steps for the first (mixture_k4_d2 1-step off-manifold 0.32 -> 0.28 % at seed 2)
        causal_student=replace(student, optim=replace(student.optim, steps=1000)),
        # the Gaussians' maps are affine per level (the skip holds them): 400 steps hold every claim there
        # (seeds 0-2, docs/toy.md §4)
        gaussian_steps=400,
        num_pairs=16384,
        num_eval_pairs=4096,
        num_ce_pairs=128,
        num_resamples=64,
        samples=SampleSizes(variance=8192, energy=1024),
        noise_draws=159,  # 8 energy-distance checks: per-check level 1/160, 5 % for the run (toy.claims)
        plot_samples=500,
        figure_resamples=256,
    )


def _paper() -> ExperimentConfig:
    return ExperimentConfig(
        preset=Preset.PAPER.value,
        datasets=CORE_DATASETS + (DatasetSpec(DatasetKind.INDEPENDENT_GAUSSIAN, dim=1),),
        grid=GridConfig(teacher_steps=48, shift=2.0, method=Method.RK4, student_steps=(4, 1)),
        student=StudentConfig(
            hidden=128,
            depth=3,
            batch_size=512,
            # a 100-step warm-up: without it the 1-step mixture_k4_d2 causal student's last frame stalled at
            # 6.7 % error (seed 0; docs/toy.md §4)
            optim=OptimConfig(steps=2000, lr=2e-2, final_lr_fraction=0.01, warmup_steps=100),
            own_step_scales=STEP_SCALES,
            affine_skip=True,
        ),
        num_pairs=65536,
        num_eval_pairs=8192,
        num_ce_pairs=256,
        num_resamples=128,
        samples=SampleSizes(variance=16384, energy=2048),
        noise_draws=199,  # 10 energy-distance checks: per-check level 1/200
        plot_samples=1500,
        figure_resamples=1024,
    )
