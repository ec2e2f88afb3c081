"""toy.runner: the metrics document of a run, its determinism (same seed, same numbers; serial or in worker
processes) and the output folder."""

import json

import pytest

from tests.toy.experiment_configs import tiny_config
from toy.data import DatasetKind, DatasetSpec
from toy.runner import costliest_first, run, run_to_directory

TWO_DATASETS = (
    DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=3),
    DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
)


def test_document_has_settings_experiments_claims_and_timings():
    config = tiny_config(steps=30, datasets=TWO_DATASETS)
    metrics, plots, timings = run(config, seed=0, progress=False)
    assert metrics["preset"] == "quick" and metrics["seed"] == 0
    assert set(metrics["experiments"]) == {"mixture_k3_d2", "gaussian_ar1_d1"}
    assert metrics["settings"]["grid"]["student_sigmas"]["1"] == [1.0]
    assert metrics["claims"] and {"dataset", "claim", "value", "threshold", "holds"} <= set(metrics["claims"][0])
    assert all(k.split("/")[0] in metrics["experiments"] for k in plots)
    assert timings["total_s"] > 0 and timings["stages_s"]["pairs"]["cpu_s"] > 0
    json.dumps(metrics)


def test_same_seed_same_numbers_in_one_process_or_two():
    config = tiny_config(steps=20, datasets=TWO_DATASETS)
    a, _, _ = run(config, seed=5, progress=False)
    b, _, _ = run(config, seed=5, progress=False, workers=2)
    c, _, _ = run(config, seed=6, progress=False)
    assert a == b
    assert a["experiments"] != c["experiments"]


def test_run_to_directory_writes_every_file(tmp_path):
    config = tiny_config(steps=20, datasets=TWO_DATASETS[:1])
    metrics, _ = run_to_directory(config, tmp_path, seed=0, progress=False, dpi=40)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"summary.md", "timings.json", "plot_data.safetensors", "errors.png", "samples_mixture_k3_d2.pdf"} <= names


def test_bad_worker_count_is_refused():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run(tiny_config(steps=5, datasets=TWO_DATASETS[:1]), workers=0, progress=False)


def test_mixtures_and_larger_dimensions_start_first_and_ties_keep_their_order():
    specs = (
        DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
        DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),
        DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=2),
        DatasetSpec(DatasetKind.INDEPENDENT_GAUSSIAN, dim=1),
        DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=4),
    )
    assert costliest_first(specs) == [4, 1, 2, 0, 3]
