"""``cf-ref full sample`` / ``serve`` options that live in :mod:`full.cli_sampling`: ``--threads``."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from cf_ref.cli import main


def test_threads_sets_torchs_cpu_threads_for_the_sample(tmp_path):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    try:
        result = CliRunner().invoke(
            main,
            ["full", "sample", "--preset", "tiny", "--prompt", "a red ball", "--frames", "3", "--threads", str(target)]
            + ["--device", "cpu", "--out", str(tmp_path / "out")],
        )
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == target
        assert list((tmp_path / "out").glob("*.mp4"))
    finally:
        torch.set_num_threads(before)


def test_threads_below_one_is_refused_before_any_work(tmp_path):
    for command in (["sample", "--prompt", "a red ball", "--out", str(tmp_path / "out")], ["serve"]):
        result = CliRunner().invoke(main, ["full", *command, "--preset", "tiny", "--threads", "0"])
        assert result.exit_code == 2 and "--threads" in result.output, result.output
    assert not (tmp_path / "out").exists()
