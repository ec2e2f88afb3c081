"""toy.report: every number of ``summary.md`` read back (parsed, not re-formatted) equals the metrics it came from."""

import pytest

from tests.toy.experiment_configs import tiny_config
from toy.claims import EXPECTATION, THEOREM
from toy.data import DatasetKind, DatasetSpec
from toy.report import summary_markdown
from toy.runner import run


@pytest.fixture(scope="module")
def metrics():
    config = tiny_config(steps=40, datasets=(DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),))
    return run(config, seed=0, progress=False)[0]


def cells(summary: str, *first: str, width: int | None = None) -> list[str]:
    """The cells after ``first`` of the one table row (of ``width`` cells, if given) that starts with ``first``."""
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in summary.splitlines()]
    rows = [r for r in rows if r[: len(first)] == list(first) and width in (None, len(r))]
    assert len(rows) == 1, (first, rows)
    return rows[0][len(first) :]


def numbers(cell: str) -> list[float]:
    return [float(v) for v in cell.split(" / ")]


def test_tables_hold_the_metrics(metrics):
    summary = summary_markdown(metrics)
    (name, exp), close = next(iter(metrics["experiments"].items())), {"rel": 5e-3, "abs": 5e-4}
    kinds = {kind: [c["holds"] for c in metrics["claims"] if c["kind"] == kind] for kind in (THEOREM, EXPECTATION)}
    line = f"theorem checks {sum(kinds[THEOREM])}/{len(kinds[THEOREM])} hold, "
    assert line + f"expectations {sum(kinds[EXPECTATION])}/{len(kinds[EXPECTATION])} hold" in summary
    eta = cells(summary, name, width=3)  # the first table: non-injectivity of bidirectional and causal pairs
    assert numbers(eta[0]) == pytest.approx(exp["non_injectivity"]["bidirectional"], **close)
    assert numbers(eta[1]) == pytest.approx(exp["non_injectivity"]["ar"], **close)
    student = exp["students"]["causal-ode"]
    label = f"causal-ODE student, {student['num_steps']}-step"
    errors = cells(summary, name, label)
    keys = ("error_to_flow_map", "error_to_flow_map_ce_subset", "error_to_conditional_expectation")
    for cell, key in zip(errors, keys):
        assert numbers(cell) == pytest.approx(student[key], **close)
    sample = cells(summary, name, label + " (clean context)")
    assert float(sample[0]) == pytest.approx(student["energy_distance"], abs=5e-5)
    assert numbers(sample[1]) == pytest.approx(student["variance_ratio"], abs=5e-3)
    assert float(sample[2]) == pytest.approx(student["off_manifold_fraction"], abs=5e-5)


def test_every_claim_is_a_row_with_its_verdict(metrics):
    summary = summary_markdown(metrics)
    for c in metrics["claims"]:
        claim = f"{c['claim']} ({c['statement']})"
        value, threshold, margin, verdict = cells(summary, c["dataset"], c["subject"], claim)
        assert float(value) == pytest.approx(c["value"], abs=5e-5)
        relation, bound = threshold.split(" ")
        assert relation == c["relation"] and float(bound) == pytest.approx(c["threshold"], abs=5e-5)
        assert float(margin) == pytest.approx(c["margin"], abs=5e-5)
        assert verdict == ("yes" if c["holds"] else "**no**")
