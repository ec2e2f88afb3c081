"""A tiny toy-pipeline configuration shared by the tests of the pipeline and the comparison."""

from cf_ref.schedule import FewStepSchedule
from toy.data import DatasetKind, DatasetSpec
from toy.pipeline_config import BudgetConfig, DMDConfig, EvalConfig, NetworkConfig, PipelineConfig, ScheduleConfig

TINY = PipelineConfig(
    dataset=DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=2),
    num_frames=2,
    network=NetworkConfig(hidden=16, depth=2),
    schedule=ScheduleConfig(FewStepSchedule(ode_steps=8)),
    budget=BudgetConfig(batch_size=32, base_steps=8, teacher_steps=8, init_steps=6, dmd_steps=4, num_pairs=64),
    dmd=DMDConfig(critic_updates_per_generator=2, eval_every=2),
    eval=EvalConfig(num_samples=64, curve_samples=32, velocity_samples=64),
)
