"""toy.run_files: a run's files round-trip (metrics exactly, tensors as float32)."""

import torch

from tests.toy.experiment_configs import tiny_config
from toy.run_files import read_outputs, write_outputs


def test_outputs_round_trip(tmp_path):
    metrics = {"preset": "quick", "seed": 3, "settings": tiny_config().describe(), "experiments": {}, "claims": []}
    plots = {"d/reference": torch.randn(5, 2, 1), "d/trajectory/sigmas": torch.linspace(1, 0, 4)}
    out = write_outputs(tmp_path, metrics, plots, {"total_s": 1.0})
    back, tensors = read_outputs(out)
    assert back == metrics and set(tensors) == set(plots)
    torch.testing.assert_close(tensors["d/reference"], plots["d/reference"])
    assert (tmp_path / "summary.md").read_text().startswith("# cf-ref toy run")
    assert (tmp_path / "timings.json").exists()
