r"""The injectivity experiment on one dataset (what ``cf-ref toy run`` does per dataset).

1. **pairs** — ODE pairs of both pair teachers (:mod:`toy.pairs`), a training set and a held-out set;
2. **conditional expectation** — on the held-out pairs, at every kept σ, the Monte Carlo conditional mean and
   variance of the teacher's end point given what the causal student reads, and the non-injectivity index
   (:mod:`toy.conditional`);
3. **students** — for each pair teacher and each step count, a few-step causal student trained by ODE regression
   (:mod:`toy.students`), its regression errors against the flow map and the conditional expectation
   (:func:`toy.evaluation.regression_errors`), and the quality of its autoregressive samples; a student of
   causal pairs is also scored beside the exact K-step AR sampler on the same random numbers (:func:`paired_energy`);
4. **teachers and data** — samples of both exact teachers and a fresh data set, with the same metrics, and the
   energy distance's sampling-noise floor;
5. **closed forms** for Gaussian datasets (:func:`toy.closed_form.variance_report`);
6. **plot data** — the tensors the figures need (:mod:`toy.figure_data`).

:func:`run_dataset` returns ``(name, metrics entry, plot tensors)``. Every random draw comes from a generator
seeded by :func:`cf_ref.seeding.derive_seed` of ``(seed, dataset, purpose, …)``, so one seed gives the same numbers
whatever else runs and in whichever process. :mod:`toy.runner` runs the datasets and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.injectivity import ConditionalStatistics
from cf_ref.recipes import Init, PairTeacher
from cf_ref.seeding import derive_seed, generator
from cf_ref.timing import StageTimes
from toy import closed_form, metrics
from toy.conditional import bidirectional_statistics, causal_statistics
from toy.data import DatasetSpec, SequenceData, frames_dependent
from toy.evaluation import data_frame_std, energy_noise_floor, regression_errors, sample_quality
from toy.experiment_config import ExperimentConfig
from toy.figure_data import conditional_expectation_figure, teacher_trajectories
from toy.pairs import GridConfig, PairSet, make_pairs
from toy.students import SAMPLING_REGIME, STUDENT_MODE, ContextRegime, TrainedStudent, sample, train_ode_student
from toy.teachers import ARTeacher, BidirectionalTeacher

PAIR_INIT = {teacher: next(i for i in Init if i.pair_teacher is teacher) for teacher in PairTeacher}
"""The initialisation each pair teacher's student is (causal ODE for the AR teacher, bidirectional ODE otherwise)."""


def student_key(teacher: PairTeacher, num_steps: int, grid: GridConfig) -> str:
    """``causal-ode`` / ``bidirectional-ode`` (:class:`cf_ref.recipes.Init`) for the first step count of ``grid``,
    ``…-{K}step`` for the others."""
    base = PAIR_INIT[teacher].value
    return base if num_steps == grid.student_steps[0] else f"{base}-{num_steps}step"


def stages_per_dataset(config: ExperimentConfig) -> int:
    """Number of timed stages (progress steps) of :func:`run_dataset`."""
    return 4 + len(PairTeacher) * len(config.grid.student_steps)


@dataclass(frozen=True)
class HeldOut:
    """One pair teacher's held-out pairs, their first ``num_ce_pairs`` and those pairs' conditional statistics
    (one per kept σ)."""

    pairs: PairSet
    ce_pairs: PairSet
    stats: list[ConditionalStatistics]
    num_resamples: int


def _held_out(data: SequenceData, pairs: PairSet, config: ExperimentConfig, seed: int) -> HeldOut:
    """The conditional statistics of the first ``num_ce_pairs`` held-out ``pairs`` at every kept σ."""
    teacher = pairs.teacher
    ce_pairs = pairs.head(config.num_ce_pairs)
    gen = generator("cpu", seed, data.name, "ce", teacher.value)
    stats, copies = [], config.num_resamples if teacher is PairTeacher.BIDIRECTIONAL else config.causal_resamples
    for k, sigma in enumerate(ce_pairs.sigmas.tolist()):
        states = ce_pairs.states[:, k]
        if teacher is PairTeacher.BIDIRECTIONAL:
            stats.append(bidirectional_statistics(data, states, sigma, config.grid, copies, gen))
        else:
            stats.append(causal_statistics(data, states, sigma, ce_pairs.context, config.grid, copies, gen))
    return HeldOut(pairs, ce_pairs, stats, copies)


def _non_injectivity(held_out: dict[PairTeacher, HeldOut]) -> dict:
    """η per frame at σ = 1 and at every kept σ, per pair teacher."""
    out: dict = {t.value: held_out[t].stats[0].index.tolist() for t in PairTeacher}
    out["sigmas"] = held_out[PairTeacher.BIDIRECTIONAL].ce_pairs.sigmas.tolist()
    out.update({f"{t.value}_per_state": [s.index.tolist() for s in held_out[t].stats] for t in PairTeacher})
    return out


@dataclass(frozen=True)
class Evaluation:
    """What every generator of one dataset is scored on: the sampling ``noise [n, F, d]`` and fresh ``reference``
    data ``[n, F, d]``."""

    data: SequenceData
    noise: Tensor
    reference: Tensor
    config: ExperimentConfig

    def quality(self, samples: Tensor) -> dict:
        return sample_quality(samples.double(), self.reference, self.data, self.config.samples)


def _student(
    teacher: PairTeacher, num_steps: int, train: PairSet, held_out: HeldOut, ev: Evaluation, seed: int
) -> tuple[TrainedStudent, dict, Tensor]:
    """Train one few-step student on ``train``, measure it: ``(student, metrics entry, samples [n, F, d])``.

    Samples come in the regime the student was trained in (:data:`toy.students.SAMPLING_REGIME`); a student of
    bidirectional pairs is also rolled out with clean context (``clean_context_rollout``, a regime it never saw).
    """
    c, data = ev.config, ev.data
    key = student_key(teacher, num_steps, c.grid)
    pairs = train.select(c.grid.student_sigmas(num_steps))
    sc = c.student_of(teacher, gaussian=data.num_components == 1)
    net_config = sc.network(data.num_frames, data.dim, STUDENT_MODE[teacher])
    student = train_ode_student(
        net_config, pairs.states, pairs.sigmas, pairs.target, pairs.context, sc.optim, sc.batch_size,
        seed=derive_seed(seed, data.name, "student", key), state_granularity=sc.state_granularity,
        ema_decay=sc.ema_decay,
    )  # fmt: skip
    tail = student.history[-max(1, len(student.history) // 20) :]
    entry = {
        "pair_teacher": teacher.value,
        "num_steps": num_steps,
        "sigmas": student.sigmas.tolist(),
        "context_regime": SAMPLING_REGIME[teacher].value,
        "final_loss": sum(tail) / len(tail),
        **regression_errors(student, held_out.pairs, held_out.ce_pairs, held_out.stats, held_out.num_resamples),
    }
    samples = sample(student, ev.noise, SAMPLING_REGIME[teacher], generator("cpu", seed, data.name, "rollout", key))
    entry.update(ev.quality(samples))
    if teacher is PairTeacher.BIDIRECTIONAL:
        clean = sample(student, ev.noise, ContextRegime.CLEAN, generator("cpu", seed, data.name, "rollout-clean", key))
        entry["clean_context_rollout"] = ev.quality(clean)
    else:
        entry["paired_energy"] = paired_energy(student, ev, generator("cpu", seed, data.name, "rollout-paired", key))
    return student, entry, samples.double()


def paired_energy(student: TrainedStudent, ev: Evaluation, rng: torch.Generator) -> dict:
    r"""A causal student and the exact K-step AR sampler on the same random numbers: ``{"student", "exact"}``, the
    energy distances of their samples to the reference's first ``e = samples.energy`` points.

    Both roll out from the evaluation noise's first e rows, the student's own σ list, with re-noising draws from
    generators in the same state (a copy of ``rng``): the exact sampler
    (:meth:`toy.teachers.ARTeacher.few_step_sample`) differs from the student only by the student's error, and
    its law is the data's, so ``student - exact`` is the student's excess with the draw's own noise cancelled.
    """
    e = ev.config.samples.energy
    noise, reference, grid = ev.noise[:e].float(), ev.reference[:e], ev.config.grid
    state = rng.get_state()
    x = sample(student, noise, ContextRegime.CLEAN, rng)
    rng.set_state(state)
    exact = ARTeacher(ev.data, student.net.config.block_size).few_step_sample(
        noise, student.sigmas.float(), grid.grid(), grid.method, rng
    )
    return {
        "student": metrics.energy_distance(x.double(), reference),
        "exact": metrics.energy_distance(exact.double(), reference),
    }


def _teachers_and_data(ev: Evaluation, seed: int) -> tuple[dict, dict, dict[str, Tensor]]:
    """Both exact teachers' samples from the evaluation noise (joint flow map, AR rollout) and a fresh data set,
    scored; the energy distance's noise floor. Returns ``(teachers entry, data entry, teacher samples)``."""
    c, data = ev.config, ev.data
    samples = {
        "bidirectional": BidirectionalTeacher(data).flow_map(ev.noise, c.grid.grid(), c.grid.method).end,
        "ar": ARTeacher(data).sample(ev.noise, c.grid.grid(), c.grid.method).x0,
    }
    teachers = {key: ev.quality(x) for key, x in samples.items()}
    fresh = ev.quality(data.sample(c.samples.variance, generator("cpu", seed, data.name, "fresh"))[0])
    fresh["energy_distance_noise"] = energy_noise_floor(
        data, ev.reference[: c.samples.energy], c.noise_draws, generator("cpu", seed, data.name, "noise-floor")
    )
    return teachers, fresh, samples


def _dataset_entry(data: SequenceData, held_out: dict[PairTeacher, HeldOut], grid: GridConfig) -> dict:
    """The dataset's description, its non-injectivity and (Gaussians) its closed forms."""
    result: dict = {
        "config": {
            **data.config(),
            "frame_std": data_frame_std(data).tolist(),
            "frames_dependent": frames_dependent(data),
        },
        "non_injectivity": _non_injectivity(held_out),
    }
    if data.num_components == 1:
        result["closed_form"] = closed_form.variance_report(
            data, {k: grid.student_sigmas(k) for k in grid.student_steps}
        )
    return result


def run_dataset(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, times: StageTimes
) -> tuple[str, dict, dict[str, Tensor]]:
    """The whole experiment on one dataset: ``(name, metrics entry, plot tensors)`` (see module doc)."""
    data = spec.build(config.num_frames)
    name, n, keep = data.name, config.samples.variance, config.plot_samples
    with times.stage("pairs"):
        train, evaluation = {}, {}
        for t in PairTeacher:
            train[t] = make_pairs(
                data, t, config.num_pairs, config.grid, generator("cpu", seed, name, "pairs", t.value)
            )
            evaluation[t] = make_pairs(
                data, t, config.num_eval_pairs, config.grid, generator("cpu", seed, name, "eval", t.value)
            )
    with times.stage("conditional expectation"):
        held_out = {t: _held_out(data, evaluation[t], config, seed) for t in PairTeacher}
        result = _dataset_entry(data, held_out, config.grid)
    reference = data.sample(n, generator("cpu", seed, name, "reference"))[0]
    noise = torch.randn(
        n, data.num_frames, data.dim, generator=generator("cpu", seed, name, "noise"), dtype=torch.float64
    )
    ev = Evaluation(data, noise, reference, config)
    plots: dict[str, Tensor] = {"reference": reference[:keep]}
    result["students"], trained = {}, {}
    for teacher in PairTeacher:
        for k in config.grid.student_steps:
            key = student_key(teacher, k, config.grid)
            with times.stage(f"student {key}"):
                trained[key], result["students"][key], samples = _student(
                    teacher, k, train[teacher], held_out[teacher], ev, seed
                )
            plots[f"student/{key}"] = samples[:keep]
    with times.stage("teachers and data"):
        result["teachers"], result["data"], teacher_samples = _teachers_and_data(ev, seed)
    plots.update({f"teacher/{key}": x[:keep] for key, x in teacher_samples.items()})
    with times.stage("plot data"):
        plots.update(_plot_data(data, config, trained, noise[: config.plot_trajectories], seed))
    return name, result, plots


def _plot_data(
    data: SequenceData, config: ExperimentConfig, trained: dict[str, TrainedStudent], noise: Tensor, seed: int
) -> dict[str, Tensor]:
    """Teacher trajectories from ``noise`` and the conditional-expectation figure of the fewest-step student of
    bidirectional pairs."""
    plots = {f"trajectory/{key}": x for key, x in teacher_trajectories(data, noise, config.grid).items()}
    plots["trajectory/sigmas"] = config.grid.grid()
    one_step = trained[student_key(PairTeacher.BIDIRECTIONAL, min(config.grid.student_steps), config.grid)]
    figure = conditional_expectation_figure(
        data, one_step, config.grid, config.figure_resamples, generator("cpu", seed, data.name, "figure")
    )
    plots.update({f"conditional_expectation/{key}": value for key, value in figure.items()})
    return plots
