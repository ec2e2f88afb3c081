"""Markdown tables of a GPU-suite results folder (``benchmarks/gpu_suite.sh``), for docs/benchmarks.md.

Reads what the parts left in the folder — ``sampling.json`` (benchmarks/gpu_sampling.py), ``training.json``
(benchmarks/full_train_speed.py), ``plan.json`` (``cf-ref full plan --json``, shown as it is) — and prints one
table per part found, the goals beside the sampling figures.

    python benchmarks/gpu_tables.py results/gpu-20270101-120000/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_sampling import markdown as sampling_table  # noqa: E402  (a sibling script)


def training_table(results: dict) -> str:
    """One row per stage of ``full_train_speed.py``'s JSON: its step-time and memory fields as they are."""
    stages = results.get("results", results)
    rows = [(name, fields) for name, fields in stages.items() if isinstance(fields, dict)]
    if not rows:
        return "(no stage in training.json)\n"
    keys = sorted({k for _, fields in rows for k, v in fields.items() if isinstance(v, int | float)})
    lines = ["| stage | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for name, fields in rows:
        cells = [f"{fields[k]:.3g}" if isinstance(fields.get(k), int | float) else "" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(folder: Path) -> str:
    out = []
    if (folder / "sampling.json").is_file():
        out += ["## Sampling", "", sampling_table(json.loads((folder / "sampling.json").read_text()))]
    if (folder / "training.json").is_file():
        out += [
            "## Training step time and peak memory",
            "",
            training_table(json.loads((folder / "training.json").read_text())),
        ]
    if (folder / "plan.json").is_file():
        out += [
            "## The plan's predictions (plan.json)",
            "",
            "```",
            (folder / "plan.json").read_text().strip(),
            "```",
            "",
        ]
    return "\n".join(out) if out else "(no results in this folder)\n"


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: python benchmarks/gpu_tables.py RESULTS_FOLDER")
    print(tables(Path(sys.argv[1])))
