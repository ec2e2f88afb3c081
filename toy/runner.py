"""``cf-ref toy run``: every dataset of a preset through :func:`toy.experiment.run_dataset` — in this process or
in worker processes, with a progress bar — then the metrics document, its claims and the output folder.

The numbers do not depend on the number of workers: every draw is seeded per dataset and purpose.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from queue import Empty

import torch
from torch import Tensor
from tqdm.auto import tqdm

from cf_ref.timing import StageTimes
from toy.claims import check_claims, tally
from toy.data import DatasetKind, DatasetSpec
from toy.experiment import run_dataset, stages_per_dataset
from toy.experiment_config import ExperimentConfig
from toy.plots import draw_dataset_unprefixed, plot_errors
from toy.run_files import write_outputs

DatasetCallback = Callable[[str, dict, dict], object]
"""``(name, result, tensors)`` called in the process that ran the dataset, right after it (e.g. draw its figures)."""

DatasetOutput = tuple[str, dict, dict[str, Tensor], StageTimes]

_WORKER_QUEUE = None


def _run_one(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, times: StageTimes, on_dataset: DatasetCallback | None
) -> DatasetOutput:
    name, result, tensors = run_dataset(spec, config, seed, times)
    if on_dataset is not None:
        with times.stage("figures"):
            on_dataset(name, result, tensors)
    return name, result, tensors, StageTimes(stages=times.stages)


def _worker_init(queue, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    torch.set_num_threads(threads)


def _worker_task(
    spec: DatasetSpec, config: ExperimentConfig, seed: int, on_dataset: DatasetCallback | None
) -> DatasetOutput:
    return _run_one(spec, config, seed, StageTimes(report=_WORKER_QUEUE.put), on_dataset)


def costliest_first(specs: tuple[DatasetSpec, ...]) -> list[int]:
    """Indices of ``specs``, costliest dataset first: mixtures (step-like maps, the longest-trained students, K
    posterior components) before Gaussians, then by dimension and modes; ties keep their order."""
    cost = [(spec.kind is DatasetKind.SHARED_MODE_MIXTURE, spec.dim, spec.num_modes) for spec in specs]
    return sorted(range(len(specs)), key=lambda i: cost[i], reverse=True)


def _run_parallel(
    config: ExperimentConfig, seed: int, workers: int, bar: tqdm, on_dataset: DatasetCallback | None
) -> list[DatasetOutput]:
    """Datasets in ``workers`` spawned processes, each with this process's torch thread count."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(queue, torch.get_num_threads())
    ) as pool:
        # the costliest datasets first, so that the last one to start is a cheap one (results in config order)
        futures = {
            i: pool.submit(_worker_task, config.datasets[i], config, seed, on_dataset)
            for i in costliest_first(config.datasets)
        }
        while not all(f.done() for f in futures.values()):
            try:
                bar.set_postfix_str(queue.get(timeout=0.2), refresh=False)
                bar.update(1)
            except Empty:
                pass
        bar.update(bar.total - bar.n)
        return [futures[i].result() for i in range(len(config.datasets))]


def _run_serial(config: ExperimentConfig, seed: int, bar: tqdm, on_dataset: DatasetCallback | None):
    def report(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    return [_run_one(spec, config, seed, StageTimes(report=report), on_dataset) for spec in config.datasets]


def _collect(outputs: list[DatasetOutput]) -> tuple[dict, dict[str, Tensor], StageTimes]:
    """Merge the per-dataset outputs: experiments by name, plot tensors prefixed ``"<name>/"`` (float32), and the
    stage times summed over datasets."""
    experiments, plots, times = {}, {}, StageTimes()
    for name, result, tensors, dataset_times in outputs:
        if name in experiments:
            raise ValueError(f"dataset {name} appears twice in the preset")
        experiments[name] = result
        plots.update({f"{name}/{k}": v.detach().to(torch.float32).contiguous() for k, v in tensors.items()})
        times = times.merged(dataset_times)
    return experiments, plots, times


def run(
    config: ExperimentConfig,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    on_dataset: DatasetCallback | None = None,
) -> tuple[dict, dict[str, Tensor], dict]:
    """Run every dataset of ``config``: ``(metrics, plot_data, timings)``.

    metrics: the JSON document described in docs/toy.md, with its claims (:func:`toy.claims.check_claims`)
    and their counts per kind (``claim_counts``, :func:`toy.claims.tally`);
    plot_data: flat ``{"<dataset>/<what>": tensor}``; timings: wall and CPU seconds per stage, summed over datasets
    (kept out of metrics so that one seed gives identical metrics). ``workers`` > 1 runs datasets in parallel
    processes; ``on_dataset`` (picklable when ``workers`` > 1) runs in that process after each dataset.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    per_dataset = stages_per_dataset(config) + (on_dataset is not None)
    bar = tqdm(total=len(config.datasets) * per_dataset, desc="cf-ref toy run", disable=not progress)
    start = time.perf_counter()
    try:
        if workers == 1 or len(config.datasets) == 1:
            outputs = _run_serial(config, seed, bar, on_dataset)
        else:
            outputs = _run_parallel(config, seed, min(workers, len(config.datasets)), bar, on_dataset)
    finally:
        bar.close()
    experiments, plots, times = _collect(outputs)
    metrics = {"preset": config.preset, "seed": seed, "settings": config.describe(), "experiments": experiments}
    metrics["claims"] = check_claims(metrics)
    metrics["claim_counts"] = tally(metrics["claims"])
    timings = {"total_s": time.perf_counter() - start, "workers": workers, "stages_s": times.as_dict()}
    return metrics, plots, timings


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
    :func:`toy.run_files.write_outputs`, then the all-dataset error figure. Returns ``(metrics, timings)``."""
    on_dataset = partial(draw_dataset_unprefixed, out_dir=out_dir, dpi=dpi) if figures else None
    metrics, plots, timings = run(config, seed=seed, progress=progress, workers=workers, on_dataset=on_dataset)
    out = write_outputs(out_dir, metrics, plots, timings)
    if figures:
        plot_errors(metrics, out, dpi)
    return metrics, timings
