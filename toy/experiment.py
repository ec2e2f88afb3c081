r"""The toy injectivity experiment end to end (``cf-ref toy run``).

For every dataset of the preset:

1. **pairs** — bidirectional and causal ODE pairs (:mod:`toy.pairs`), a training set and a held-out set;
2. **conditional expectation** — on the held-out pairs, at every kept σ, the Monte Carlo conditional mean
   and variance of the teacher's end point given what the causal student reads, and the non-injectivity
   index (:mod:`toy.conditional`);
3. **students** — for each route and each step count, a few-step causal student trained by ODE regression
   (:mod:`toy.students`), its regression errors against the flow map and the conditional expectation, and
   the quality of its autoregressive samples;
4. **teachers and data** — samples of both exact teachers and a fresh data set, with the same metrics, and
   the energy distance's sampling-noise floor;
5. **closed forms** for Gaussian datasets (:mod:`toy.closed_form`);
6. **plot data** — the tensors the figures need (:mod:`toy.plots` draws them from disk).

:func:`run` returns ``(metrics, plot_data)``; :func:`write_outputs` writes ``metrics.json``, ``summary.md``,
``plot_data.safetensors`` and the figures. Every random draw comes from a generator seeded by
:func:`derive_seed` (seed, dataset, purpose), so one seed gives the same numbers whatever else runs.
"""

from __future__ import annotations

import enum
import hashlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Empty

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cf_ref.injectivity import ConditionalStatistics, conditional_moments
from cf_ref.io import save_tensors, write_json, write_text
from cf_ref.masks import AttentionMode, block_causal_visibility
from cf_ref.rollout import ar_ode_sample
from cf_ref.solvers import Method
from toy import closed_form
from toy.claims import check_claims
from toy.conditional import bidirectional_statistics, causal_statistics
from toy.data import SequenceData, ar1_gaussian, independent_gaussian, shared_mode_mixture
from toy.evaluation import (
    SampleSizes,
    data_frame_std,
    energy_noise_floor,
    pooled_rms,
    rms_per_frame,
    sample_quality,
)
from toy.pairs import GridConfig, PairSet, Route, make_pairs
from toy.students import ContextRegime, StudentConfig, TrainedStudent, predict_x0, sample, train_ode_student
from toy.teachers import ARTeacher, BidirectionalTeacher
from toy.training import OptimConfig

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
PLOT_DATA_FILE = "plot_data.safetensors"
TIMINGS_FILE = "timings.json"


class DatasetKind(enum.Enum):
    AR1_GAUSSIAN = "gaussian_ar1"
    INDEPENDENT_GAUSSIAN = "gaussian_independent"
    SHARED_MODE_MIXTURE = "shared_mode_mixture"


@dataclass(frozen=True)
class DatasetSpec:
    """One toy dataset: a preset of :mod:`toy.data` with its dimension (and number of modes for mixtures)."""

    kind: DatasetKind
    dim: int
    num_modes: int = 2

    def build(self, num_frames: int) -> SequenceData:
        if self.kind is DatasetKind.AR1_GAUSSIAN:
            return ar1_gaussian(num_frames, self.dim)
        if self.kind is DatasetKind.INDEPENDENT_GAUSSIAN:
            return independent_gaussian(num_frames, self.dim)
        return shared_mode_mixture(num_frames, self.dim, num_modes=self.num_modes)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on besides the seed (presets: :func:`preset_config`)."""

    preset: str
    datasets: tuple[DatasetSpec, ...]
    num_frames: int = 4
    grid: GridConfig = GridConfig()
    student: StudentConfig = StudentConfig()
    num_pairs: int = 16384  # training pairs per route
    num_eval_pairs: int = 8192  # held-out pairs for the errors to the flow map
    num_ce_pairs: int = 256  # the first of them, for the conditional expectation (Monte Carlo: the costly part)
    num_resamples: int = 128  # Monte Carlo copies per pair for the conditional expectation (bidirectional route)
    causal_resamples: int = 2  # the causal route's conditional variance is 0; two copies show it
    samples: SampleSizes = SampleSizes()
    noise_draws: int = 8  # fresh data sets for the energy distance's noise floor
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

    def describe(self) -> dict:
        """JSON-ready settings (enums as their values)."""
        out = asdict(self)
        out["datasets"] = [{"kind": d.kind.value, "dim": d.dim, "num_modes": d.num_modes} for d in self.datasets]
        out["grid"]["method"] = self.grid.method.value
        out["grid"]["student_sigmas"] = {str(k): self.grid.student_sigmas(k).tolist() for k in self.grid.student_steps}
        out["student"]["prediction"] = self.student.prediction.value
        out["student"]["state_granularity"] = self.student.state_granularity.value
        return out


CORE_DATASETS = (
    DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
    DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=2),
    DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),
    DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=4),
)


class Preset(enum.Enum):
    QUICK = "quick"
    PAPER = "paper"


def preset_config(preset: Preset) -> ExperimentConfig:
    """``quick``: the four core datasets, 16-step teacher grid, small students (about a minute on 2 cores).
    ``paper``: adds the independent-frames control, a 48-step grid, larger students and more samples."""
    if preset is Preset.QUICK:
        return ExperimentConfig(
            preset=preset.value,
            datasets=CORE_DATASETS,
            grid=GridConfig(teacher_steps=16, shift=2.0, method=Method.RK4, student_steps=(4, 1)),
            student=StudentConfig(
                hidden=64, depth=3, batch_size=256, optim=OptimConfig(steps=800, lr=3e-2, final_lr_fraction=0.01)
            ),
            num_pairs=16384,
            num_eval_pairs=4096,
            num_ce_pairs=128,
            num_resamples=64,
            samples=SampleSizes(variance=8192, energy=1024),
            noise_draws=20,
            plot_samples=500,
            figure_resamples=256,
        )
    return ExperimentConfig(
        preset=preset.value,
        datasets=CORE_DATASETS + (DatasetSpec(DatasetKind.INDEPENDENT_GAUSSIAN, dim=1),),
        grid=GridConfig(teacher_steps=48, shift=2.0, method=Method.RK4, student_steps=(4, 1)),
        student=StudentConfig(
            hidden=128, depth=3, batch_size=512, optim=OptimConfig(steps=2000, lr=2e-2, final_lr_fraction=0.01)
        ),
        num_pairs=65536,
        num_eval_pairs=8192,
        num_ce_pairs=256,
        num_resamples=128,
        samples=SampleSizes(variance=16384, energy=2048),
        noise_draws=20,
        plot_samples=1500,
        figure_resamples=1024,
    )


def derive_seed(seed: int, *keys: str) -> int:
    """A 63-bit seed from the run seed and a path of names (stable across runs, orders and platforms)."""
    digest = hashlib.sha256("/".join([str(seed), *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(seed: int, *keys: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def student_key(route: Route, num_steps: int, grid: GridConfig) -> str:
    """``bidirectional_ode`` / ``causal_ode`` for the first (default) step count, ``…_ode_{K}step`` for the others."""
    base = f"{route.value}_ode"
    return base if num_steps == grid.student_steps[0] else f"{base}_{num_steps}step"


STUDENT_MODE = {Route.BIDIRECTIONAL: AttentionMode.BLOCK_CAUSAL, Route.CAUSAL: AttentionMode.TEACHER_FORCING}
SAMPLING_REGIME = {Route.BIDIRECTIONAL: ContextRegime.SAME_LEVEL, Route.CAUSAL: ContextRegime.CLEAN}


@dataclass
class _Stages:
    """Per-stage wall and CPU seconds of one process; ``report(label)`` is called after each stage."""

    report: Callable[[str], None] | None = None
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    _wall: float = field(default_factory=time.perf_counter)
    _cpu: float = field(default_factory=time.process_time)

    def done(self, label: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        entry = self.timings.setdefault(label, {"wall_s": 0.0, "cpu_s": 0.0})
        entry["wall_s"] += wall - self._wall
        entry["cpu_s"] += cpu - self._cpu
        self._wall, self._cpu = wall, cpu
        if self.report is not None:
            self.report(label)


def _conditional_statistics(
    data: SequenceData, pairs: PairSet, config: ExperimentConfig, generator: torch.Generator
) -> list[ConditionalStatistics]:
    """Per kept σ (``pairs.sigmas``), the conditional statistics of the held-out pairs' end points."""
    out = []
    for k, sigma in enumerate(pairs.sigmas.tolist()):
        states = pairs.states[:, k]
        if pairs.route is Route.BIDIRECTIONAL:
            stats = bidirectional_statistics(data, states, sigma, config.grid, config.num_resamples, generator)
        else:
            stats = causal_statistics(
                data, states, sigma, pairs.context, config.grid, config.causal_resamples, generator
            )
        out.append(stats)
    return out


def _state_index(pairs: PairSet, sigma: float) -> int:
    return int(torch.argmin((pairs.sigmas - sigma).abs()))


def _regression_errors(
    student: TrainedStudent,
    pairs: PairSet,
    ce_pairs: PairSet,
    stats: list[ConditionalStatistics],
    num_resamples: int,
) -> dict:
    r"""Per-frame RMS errors of a student on held-out pairs: to the flow map on ``pairs``, to the conditional
    expectation on ``ce_pairs`` (where ``stats`` were estimated with ``num_resamples`` copies each).

    Also: the error to the flow map on ``ce_pairs`` (the like-for-like comparison), the Monte Carlo standard error of the conditional-expectation estimate (RMS of sqrt(Var/M)), the
    error to it with that noise removed (:math:`\sqrt{\max(0, e^2 - \mathrm{Var}/M)}`, unbiased for the squared
    error), and the median over samples of the per-sample error to the flow map (RMS over dims and states).
    """
    to_map, to_map_subset, to_ce, mc, per_sample = [], [], [], [], []
    for sigma in student.sigmas.tolist():
        k = _state_index(pairs, sigma)
        x0 = predict_x0(student.net, pairs.states[:, k], sigma, pairs.context)
        to_map.append(rms_per_frame(x0, pairs.target))
        per_sample.append((x0.double() - pairs.target).pow(2).mean(dim=2))  # [B, F]
        x0_ce = predict_x0(student.net, ce_pairs.states[:, k], sigma, ce_pairs.context)
        to_ce.append(rms_per_frame(x0_ce, stats[k].mean))
        to_map_subset.append(rms_per_frame(x0_ce, ce_pairs.target))
        mc.append((stats[k].variance / num_resamples).mean(dim=(0, 2)).sqrt())
    to_map, to_ce, mc = torch.stack(to_map), torch.stack(to_ce), torch.stack(mc)
    to_map_subset = torch.stack(to_map_subset)
    median = torch.stack(per_sample).mean(dim=0).median(dim=0).values.sqrt()
    debiased = (to_ce.pow(2) - mc.pow(2)).clamp_min(0).sqrt()
    return {
        "error_to_flow_map": pooled_rms(to_map).tolist(),
        "error_to_conditional_expectation": pooled_rms(to_ce).tolist(),
        "error_to_flow_map_ce_subset": pooled_rms(to_map_subset).tolist(),
        "error_to_conditional_expectation_debiased": pooled_rms(debiased).tolist(),
        "conditional_expectation_mc_error": pooled_rms(mc).tolist(),
        "median_error_to_flow_map": median.tolist(),
        "error_to_flow_map_per_state": to_map.tolist(),
        "error_to_conditional_expectation_per_state": to_ce.tolist(),
    }


def _teacher_samples(data: SequenceData, noise: Tensor, grid: GridConfig) -> dict[str, Tensor]:
    """Samples of both exact teachers from the same noise ``[n, F, d]``: joint flow map and AR rollout."""
    bidirectional = BidirectionalTeacher(data).flow_map(noise, grid.grid(), grid.method).end
    ar = ARTeacher(data).sample(noise, grid.grid(), grid.method).x0
    return {"bidirectional": bidirectional, "ar": ar}


def _teacher_trajectories(data: SequenceData, noise: Tensor, grid: GridConfig) -> dict[str, Tensor]:
    """Full PF-ODE trajectories ``[n, N+1, F, d]`` of both teachers from ``noise`` (AR: on its own outputs)."""
    g = grid.grid()
    joint = BidirectionalTeacher(data).flow_map(noise, g, grid.method, keep_at=g).states
    ar = ar_ode_sample(ARTeacher(data).as_blockwise(), noise, 1, g, [], grid.method, keep_at=g).states
    return {"bidirectional": joint, "ar": ar}


def _conditional_expectation_figure(
    data: SequenceData,
    student: TrainedStudent,
    config: ExperimentConfig,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """For one fixed noise ``ε`` and each frame i: the teacher's :math:`x_{0,i}` over redrawn ε_{>i}, their mean,
    and the 1-step bidirectional-ODE student's output at ε_{≤i}."""
    noise = torch.randn(1, data.num_frames, data.dim, generator=generator, dtype=torch.float64)
    teacher = BidirectionalTeacher(data)
    vis = block_causal_visibility(data.num_frames)
    outputs, means = [], []

    def teacher_map(u: Tensor) -> Tensor:
        return teacher.flow_map(u, config.grid.grid(), config.grid.method).end

    for i in range(data.num_frames):
        mean, _, x0 = conditional_moments(teacher_map, noise, vis[i], config.figure_resamples, generator=generator)
        outputs.append(x0[0, :, i])
        means.append(mean[0, i])
    return {
        "noise": noise[0],
        "teacher_outputs": torch.stack(outputs),  # [F, M, d]
        "mean": torch.stack(means),  # [F, d]
        "student": predict_x0(student.net, noise, 1.0)[0],  # [F, d]
        "flow_map": teacher.flow_map(noise, config.grid.grid(), config.grid.method).end[0],  # [F, d]
    }


def _closed_form(data: SequenceData, grid: GridConfig) -> dict:
    out = {
        "conditional_expectation_variance": closed_form.conditional_expectation_variance(data).tolist(),
        "lost_variance": closed_form.lost_variance(data).tolist(),
        "data_variance": closed_form.frame_variance(data).tolist(),
        "few_step_sampler_variance": {
            str(k): closed_form.few_step_sampler_variance(data, grid.student_sigmas(k)).tolist()
            for k in grid.student_steps
        },
    }
    return out


def _student(
    data: SequenceData,
    route: Route,
    num_steps: int,
    train_pairs: PairSet,
    eval_pairs: PairSet,
    ce_pairs: PairSet,
    stats: list[ConditionalStatistics],
    noise: Tensor,
    reference: Tensor,
    config: ExperimentConfig,
    seed: int,
) -> tuple[TrainedStudent, dict, Tensor]:
    """Train one few-step student on ``train_pairs``, measure it: ``(student, metrics entry S, samples [n, F, d])``.

    Samples come from ``noise`` in the route's regime (:data:`SAMPLING_REGIME`); a bidirectional student is also
    rolled out with clean context (``clean_context_rollout``, a regime it was not trained in).
    """
    key = student_key(route, num_steps, config.grid)
    gen = _generator(seed, data.name, "rollout", key)
    pairs = train_pairs.select(config.grid.student_sigmas(num_steps))
    student = train_ode_student(
        config.student.network(data.num_frames, data.dim, STUDENT_MODE[route]),
        pairs.states,
        pairs.sigmas,
        pairs.target,
        pairs.context,
        config.student.optim,
        config.student.batch_size,
        seed=derive_seed(seed, data.name, "student", key),
        state_granularity=config.student.state_granularity,
    )
    tail = student.history[-max(1, len(student.history) // 20) :]
    entry = {
        "route": route.value,
        "num_steps": num_steps,
        "sigmas": student.sigmas.tolist(),
        "context_regime": SAMPLING_REGIME[route].value,
        "final_loss": sum(tail) / len(tail),
    }
    entry.update(_regression_errors(student, eval_pairs, ce_pairs, stats, _resamples(route, config)))
    samples = sample(student, noise, SAMPLING_REGIME[route], gen).double()
    entry.update(sample_quality(samples, reference, data, config.samples))
    if route is Route.BIDIRECTIONAL:
        clean = sample(student, noise, ContextRegime.CLEAN, _generator(seed, data.name, "rollout-clean", key))
        entry["clean_context_rollout"] = sample_quality(clean.double(), reference, data, config.samples)
    return student, entry, samples


def run_dataset(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, stages: _Stages
) -> tuple[str, dict, dict[str, Tensor]]:
    """The whole experiment on one dataset: ``(name, metrics, plot tensors)`` (see module doc)."""
    data = spec.build(config.num_frames)
    name = data.name

    def gen(*keys: str) -> torch.Generator:
        return _generator(seed, name, *keys)

    train_pairs = {r: make_pairs(data, r, config.num_pairs, config.grid, gen("pairs", r.value)) for r in Route}
    eval_pairs = {r: make_pairs(data, r, config.num_eval_pairs, config.grid, gen("eval", r.value)) for r in Route}
    stages.done("pairs")

    ce_pairs = {r: eval_pairs[r].head(config.num_ce_pairs) for r in Route}
    stats = {r: _conditional_statistics(data, ce_pairs[r], config, gen("ce", r.value)) for r in Route}
    kept = ce_pairs[Route.BIDIRECTIONAL].sigmas
    result: dict = {
        "config": data.config(),
        "non_injectivity": {
            "bidirectional": stats[Route.BIDIRECTIONAL][0].index.tolist(),
            "causal": stats[Route.CAUSAL][0].index.tolist(),
            "sigmas": kept.tolist(),
            "bidirectional_per_state": [s.index.tolist() for s in stats[Route.BIDIRECTIONAL]],
            "causal_per_state": [s.index.tolist() for s in stats[Route.CAUSAL]],
        },
    }
    result["config"]["frame_std"] = data_frame_std(data).tolist()
    result["config"]["frames_dependent"] = frames_dependent(data)
    if data.num_components == 1:
        result["closed_form"] = _closed_form(data, config.grid)
    stages.done("conditional expectation")

    reference = data.sample(config.samples.variance, gen("reference"))[0]
    noise = torch.randn(config.samples.variance, data.num_frames, data.dim, generator=gen("noise"), dtype=torch.float64)
    plots: dict[str, Tensor] = {"reference": reference[: config.plot_samples]}

    students: dict[str, dict] = {}
    trained: dict[str, TrainedStudent] = {}
    for route in Route:
        for k in config.grid.student_steps:
            key = student_key(route, k, config.grid)
            trained[key], students[key], samples = _student(
                data,
                route,
                k,
                train_pairs[route],
                eval_pairs[route],
                ce_pairs[route],
                stats[route],
                noise,
                reference,
                config,
                seed,
            )
            plots[f"student/{key}"] = samples[: config.plot_samples]
            stages.done(f"student {key}")
    result["students"] = students

    teacher_samples = _teacher_samples(data, noise, config.grid)
    result["teachers"] = {key: sample_quality(x, reference, data, config.samples) for key, x in teacher_samples.items()}
    fresh = data.sample(config.samples.variance, gen("fresh"))[0]
    result["data"] = sample_quality(fresh, reference, data, config.samples)
    result["data"]["energy_distance_noise"] = energy_noise_floor(
        data, reference[: config.samples.energy], config.noise_draws, gen("noise-floor")
    )
    for key, x in teacher_samples.items():
        plots[f"teacher/{key}"] = x[: config.plot_samples]
    stages.done("teachers and data")

    traj = _teacher_trajectories(data, noise[: config.plot_trajectories], config.grid)
    plots["trajectory/bidirectional"] = traj["bidirectional"]
    plots["trajectory/ar"] = traj["ar"]
    plots["trajectory/sigmas"] = config.grid.grid()
    one_step = trained[student_key(Route.BIDIRECTIONAL, min(config.grid.student_steps), config.grid)]
    for key, value in _conditional_expectation_figure(data, one_step, config, gen("figure")).items():
        plots[f"conditional_expectation/{key}"] = value
    stages.done("plot data")
    return name, result, plots


def frames_dependent(data: SequenceData) -> bool:
    """Whether frames are statistically dependent: a mixture of several modes, or a Gaussian with cross-frame covariance."""
    if data.num_components > 1:
        return True
    cov = data.mixture.covs[0]
    same_frame = torch.block_diag(*[torch.ones(data.dim, data.dim, dtype=torch.bool)] * data.num_frames)
    return bool((cov[~same_frame].abs() > 0).any())


def _resamples(route: Route, config: ExperimentConfig) -> int:
    return config.num_resamples if route is Route.BIDIRECTIONAL else config.causal_resamples


def stages_per_dataset(config: ExperimentConfig) -> int:
    """Number of progress steps of :func:`run_dataset`."""
    return 4 + len(Route) * len(config.grid.student_steps)


_WORKER_QUEUE = None


DatasetCallback = Callable[[str, dict, dict], object]
"""``(name, result, tensors)`` called in the process that ran the dataset, right after it (e.g. draw its figures)."""


def _worker_init(queue, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    torch.set_num_threads(threads)


def _run_one(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, stages: _Stages, on_dataset: DatasetCallback | None
) -> tuple[str, dict, dict, dict]:
    name, result, tensors = run_dataset(spec, config, seed, stages)
    if on_dataset is not None:
        on_dataset(name, result, tensors)
        stages.done("figures")
    return name, result, tensors, stages.timings


def _worker_task(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, on_dataset: DatasetCallback | None
) -> tuple[str, dict, dict, dict]:
    return _run_one(spec, config, seed, _Stages(report=lambda label: _WORKER_QUEUE.put(label)), on_dataset)


def _run_parallel(
    config: ExperimentConfig, seed: int, workers: int, bar: tqdm, on_dataset: DatasetCallback | None
) -> list[tuple[str, dict, dict, dict]]:
    """Datasets in ``workers`` spawned processes (same numbers as one process: every draw is seeded per dataset)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(queue, torch.get_num_threads())
    ) as pool:
        futures = [pool.submit(_worker_task, spec, config, seed, on_dataset) for spec in config.datasets]
        while not all(f.done() for f in futures):
            try:
                bar.set_postfix_str(queue.get(timeout=0.2), refresh=False)
                bar.update(1)
            except Empty:
                pass
        bar.update(bar.total - bar.n)
        return [f.result() for f in futures]


def run(
    config: ExperimentConfig,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    on_dataset: DatasetCallback | None = None,
) -> tuple[dict, dict[str, Tensor], dict]:
    """Run every dataset of ``config``: ``(metrics, plot_data, timings)``.

    metrics: the JSON document described in docs/toy.md; plot_data: flat ``{"<dataset>/<what>": tensor}``;
    timings: wall and CPU seconds per stage, summed over datasets (kept out of metrics so that one seed gives
    identical metrics). ``workers`` > 1 runs datasets in parallel processes, each with this process's torch thread count;
    ``on_dataset`` (picklable when ``workers`` > 1) runs in that process after each dataset.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    per_dataset = stages_per_dataset(config) + (on_dataset is not None)
    bar = tqdm(total=len(config.datasets) * per_dataset, desc="cf-ref toy run", disable=not progress)
    start = time.perf_counter()
    try:
        if workers == 1 or len(config.datasets) == 1:
            outputs = []
            for spec in config.datasets:
                stages = _Stages(report=lambda label: (bar.set_postfix_str(label, refresh=False), bar.update(1)))
                outputs.append(_run_one(spec, config, seed, stages, on_dataset))
        else:
            outputs = _run_parallel(config, seed, min(workers, len(config.datasets)), bar, on_dataset)
    finally:
        bar.close()
    experiments, plots, stage_times = {}, {}, {}
    for name, result, tensors, times in outputs:
        if name in experiments:
            raise ValueError(f"dataset {name} appears twice in the preset")
        experiments[name] = result
        plots.update({f"{name}/{k}": v.detach().to(torch.float32).contiguous() for k, v in tensors.items()})
        for label, t in times.items():
            entry = stage_times.setdefault(label, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += t["wall_s"]
            entry["cpu_s"] += t["cpu_s"]
    metrics = {"preset": config.preset, "seed": seed, "settings": config.describe(), "experiments": experiments}
    metrics["claims"] = check_claims(metrics)
    timings = {"total_s": time.perf_counter() - start, "workers": workers, "stages_s": stage_times}
    return metrics, plots, timings


def write_outputs(out_dir: str | Path, metrics: dict, plots: dict[str, Tensor], timings: dict | None = None) -> Path:
    """Write ``metrics.json``, ``summary.md``, ``plot_data.safetensors`` (and ``timings.json``) into ``out_dir``."""
    from toy.report import summary_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / METRICS_FILE, metrics)
    write_text(out / SUMMARY_FILE, summary_markdown(metrics))
    save_tensors(out / PLOT_DATA_FILE, plots, metadata={"preset": metrics["preset"], "seed": str(metrics["seed"])})
    if timings is not None:
        write_json(out / TIMINGS_FILE, timings)
    return out


def run_to_directory(
    config: ExperimentConfig,
    out_dir: str | Path,
    seed: int = 0,
    workers: int = 1,
    figures: bool = True,
    progress: bool = True,
    dpi: int = 130,
) -> tuple[dict, dict]:
    """What ``cf-ref toy run`` does: :func:`run` (each dataset's figures drawn by the process that ran it),
    :func:`write_outputs`, then the all-dataset error figure. Returns ``(metrics, timings)``."""
    from functools import partial

    from toy.plots import draw_dataset_unprefixed, plot_errors

    on_dataset = partial(draw_dataset_unprefixed, out_dir=out_dir, dpi=dpi) if figures else None
    metrics, plots, timings = run(config, seed=seed, progress=progress, workers=workers, on_dataset=on_dataset)
    out = write_outputs(out_dir, metrics, plots, timings)
    if figures:
        plot_errors(metrics, out, dpi)
    return metrics, timings


def reduced(config: ExperimentConfig, **changes) -> ExperimentConfig:
    """``config`` with some fields replaced (tests and benchmarks shrink a preset this way)."""
    return replace(config, **changes)
