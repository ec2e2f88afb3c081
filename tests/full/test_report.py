"""``cf-ref full report``: loss curves and the stage summary of a tiny run's logs; a folder without logs is one line."""

from __future__ import annotations

import json
import math

from click.testing import CliRunner

from cf_ref.cli import main
from full.logs import read_metrics
from full.report import stage_summary

TINY_RUN = [
    "logging.progress=false",
    "logging.sample_count=0",
    "model.tiny_base.steps=2",
    "model.tiny_base.videos=8",
    "ar_diffusion.loop.steps=3",
    "ode_pairs.max_pairs=4",
    "schedule.ode_steps=4",
    "ode.loop.steps=3",
    "dmd.loop.steps=6",
]


def invoke(*args: str):
    return CliRunner().invoke(main, ["full", *args])


def test_report_of_a_tiny_run(tmp_path):
    run = tmp_path / "run"
    trained = invoke("train", "--preset", "tiny", "--device", "cpu", "--out", str(run), *TINY_RUN)
    assert trained.exit_code == 0, trained.output
    (run / "injectivity.json").write_text(
        json.dumps({"eta_by_frame": {"ar": [0.0, 0.01], "bidirectional": [0.3, 0.1]}})
    )
    result = invoke("report", str(run))
    assert result.exit_code == 0, result.output
    report = (run / "report" / "report.md").read_text()
    for stage in ("ar-diffusion", "ode", "dmd", "base-pretrain"):
        assert f"### {stage}\n" in report
    assert (run / "report" / "losses.png").is_file() and (run / "report" / "losses.pdf").is_file()
    assert "`generator_loss`" in report and "`critic_grad_norm`" in report
    assert "bidirectional teacher: non-injectivity η per frame 0.300, 0.100" in report
    assert "### ode-pairs" in report and "teacher" in report
    rows = read_metrics(run / "dmd" / "metrics.jsonl")
    s = stage_summary(rows)
    critic = [r["critic_loss"] for r in rows]
    assert s["steps"] == 6 and s["critic_loss"]["first"] == critic[0] and s["critic_loss"]["min"] == min(critic)
    assert math.isclose(s["critic_loss"]["last"], critic[-1])  # the mean of the last 10 % of 6 steps: the last one


def test_a_folder_without_logs_is_one_line(tmp_path):
    for folder, message in [(tmp_path / "none", "does not exist"), (tmp_path, "no metrics.jsonl under")]:
        result = invoke("report", str(folder))
        assert result.exit_code != 0 and message in result.output and len(result.output.strip().splitlines()) == 1
