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

#: The sampling goals printed beside the figures (DiT per 3-frame chunk on one H100, end to end, frame-wise first frame).
GOALS = {"dit_ms_per_chunk": 250.0, "e2e_fps": 25.0, "first_frame_s": 0.3}


def sampling_table(results: dict) -> str:
    """The table of ``gpu_sampling.py``'s ``results`` with the goals beside the figures."""
    g = GOALS
    lines = [
        f"Machine: {results['machine'].get('gpu', 'none')}; {'tiny CPU smoke run' if results['tiny'] else 'Wan2.1 1.3B + Wan VAE, random weights, bf16'}, "
        f"{results['height']}×{results['width']}.",
        "",
        f"| mode | block | DiT ms/block (goal ≤ {g['dit_ms_per_chunk']:.0f} per 3-frame chunk) | DiT FPS | end-to-end FPS "
        f"(goal ≥ {g['e2e_fps']:.0f}) | first block end to end, s (frame-wise goal ≤ {g['first_frame_s']}) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for r in results["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['mode']} | – | {r['skipped']} | | | |")
            continue
        lines.append(
            f"| {r['mode']} | {r['block_size']} | {r['dit_ms_per_block']:.1f} | {r['dit_fps']:.2f} | "
            f"{r['e2e_fps']:.2f} | {r['e2e_first_block_s']:.3f} |"
        )
    return "\n".join(lines) + "\n"


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
