"""The files of a ``cf-ref toy run`` output folder, written atomically and read back (for re-drawing figures).

``metrics.json`` (the numbers, schema in docs/toy.md), ``summary.md`` (:func:`toy.report.summary_markdown`),
``plot_data.safetensors`` (every tensor the figures use) and ``timings.json`` (wall and CPU seconds per stage,
kept out of ``metrics.json`` so that one seed gives identical metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from cf_ref.errors import UserError
from cf_ref.io import load_tensors, save_tensors, write_json, write_text
from toy.report import summary_markdown

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
PLOT_DATA_FILE = "plot_data.safetensors"
TIMINGS_FILE = "timings.json"


def write_outputs(out_dir: str | Path, metrics: dict, plots: dict[str, Tensor], timings: dict | None = None) -> Path:
    """Write ``metrics.json``, ``summary.md``, ``plot_data.safetensors`` (and ``timings.json``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / METRICS_FILE, metrics)
    write_text(out / SUMMARY_FILE, summary_markdown(metrics))
    save_tensors(out / PLOT_DATA_FILE, plots, metadata={"preset": metrics["preset"], "seed": str(metrics["seed"])})
    if timings is not None:
        write_json(out / TIMINGS_FILE, timings)
    return out


def earlier_results(out_dir: str | Path) -> list[Path]:
    """The result files of an earlier run in ``out_dir`` (a new run would replace them)."""
    out = Path(out_dir)
    return [out / name for name in (METRICS_FILE, SUMMARY_FILE, PLOT_DATA_FILE) if (out / name).exists()]


def read_outputs(run_dir: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(metrics, plot tensors)`` of a finished run; a clear error if the folder holds none."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    missing = [name for name in (METRICS_FILE, PLOT_DATA_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir} is not a finished `cf-ref toy run` folder (no {' or '.join(missing)})")
    return json.loads(metrics_path.read_text(encoding="utf-8")), load_tensors(run_dir / PLOT_DATA_FILE)
