"""A reduced ``cf-ref toy run`` configuration shared by the tests of the experiment, the runner and the plots."""

from dataclasses import replace

from cf_ref.solvers import Method
from toy.data import DatasetKind, DatasetSpec
from toy.evaluation import SampleSizes
from toy.experiment_config import ExperimentConfig, preset_config
from toy.pairs import GridConfig
from toy.preset import Preset
from toy.students import StudentConfig
from toy.training import OptimConfig


def tiny_config(steps: int = 300, datasets=None, num_frames: int = 3) -> ExperimentConfig:
    """The quick preset cut down so a run takes seconds (the assertions are qualitative)."""
    student = StudentConfig(
        hidden=48, depth=3, batch_size=256, optim=OptimConfig(steps=steps, lr=3e-2, final_lr_fraction=0.01)
    )
    return replace(
        preset_config(Preset.QUICK),
        datasets=datasets
        or (
            DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
            DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),
        ),
        num_frames=num_frames,
        grid=GridConfig(teacher_steps=8, shift=2.0, method=Method.RK4, student_steps=(2, 1)),
        student=student,
        causal_student=None,  # the preset trains causal students longer; here every student gets ``steps``
        gaussian_steps=None,  # nor the Gaussian students shorter
        num_pairs=4096,
        num_eval_pairs=1024,
        num_ce_pairs=48,
        num_resamples=32,
        samples=SampleSizes(variance=2048, energy=384),
        noise_draws=5,
        plot_samples=200,
        plot_trajectories=6,
        figure_resamples=48,
    )
