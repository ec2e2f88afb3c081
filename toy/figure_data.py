r"""The tensors behind the per-dataset figures of ``cf-ref toy run`` that are not samples (:mod:`toy.plots` draws
them from ``plot_data.safetensors``):

* :func:`teacher_trajectories` — full PF-ODE trajectories of both exact teachers from the same noise;
* :func:`conditional_expectation_figure` — for one fixed noise ε and each frame i, the bidirectional teacher's
  :math:`x_{0,i}` over redrawn unseen noise :math:`\varepsilon_{>i}`, their mean (the conditional expectation the
  1-step student of bidirectional pairs converges to), that student's output and the flow map at ε.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.injectivity import conditional_moments
from cf_ref.masks import block_causal_visibility
from cf_ref.rollout import ar_ode_sample
from toy.data import SequenceData
from toy.pairs import GridConfig
from toy.students import TrainedStudent, predict_x0
from toy.teachers import ARTeacher, BidirectionalTeacher


def teacher_trajectories(data: SequenceData, noise: Tensor, grid: GridConfig) -> dict[str, Tensor]:
    """PF-ODE trajectories ``[n, N+1, F, d]`` of both teachers from ``noise [n, F, d]`` (the AR teacher on its own
    outputs), keys ``"bidirectional"`` and ``"ar"``."""
    g = grid.grid()
    joint = BidirectionalTeacher(data).flow_map(noise, g, grid.method, keep_at=g).states
    ar = ar_ode_sample(ARTeacher(data).as_blockwise(), noise, 1, g, [], grid.method, keep_at=g).states
    return {"bidirectional": joint, "ar": ar}


def conditional_expectation_figure(
    data: SequenceData, student: TrainedStudent, grid: GridConfig, resamples: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """For one noise ``ε [1, F, d]`` drawn from ``generator``: ``teacher_outputs [F, M, d]`` (frame i's end point
    over ``resamples`` redraws of ε_{>i}), their ``mean [F, d]``, the ``student``'s output ``[F, d]`` at ε and the
    ``flow_map [F, d]`` at ε, and the ``noise [F, d]``."""
    noise = torch.randn(1, data.num_frames, data.dim, generator=generator, dtype=torch.float64)
    teacher = BidirectionalTeacher(data)
    vis = block_causal_visibility(data.num_frames)

    def teacher_map(u: Tensor) -> Tensor:
        return teacher.flow_map(u, grid.grid(), grid.method).end

    outputs, means = [], []
    for i in range(data.num_frames):
        mean, _, x0 = conditional_moments(teacher_map, noise, vis[i], resamples, generator=generator)
        outputs.append(x0[0, :, i])
        means.append(mean[0, i])
    return {
        "noise": noise[0],
        "teacher_outputs": torch.stack(outputs),
        "mean": torch.stack(means),
        "student": predict_x0(student.net, noise, 1.0)[0],
        "flow_map": teacher_map(noise)[0],
    }
