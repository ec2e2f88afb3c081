"""``cf-ref full report RUN_DIR``: every stage's loss curves and a markdown summary of a run's logs.

Finds each ``metrics.jsonl`` under ``RUN_DIR`` (a ``cf-ref full train`` output folder, a small-track seed folder, or
one stage's folder) and writes ``RUN_DIR/report/losses.png`` (+ ``.pdf``: one panel per stage, every ``*_loss`` on a
log scale against the step, with gradient norms in a second row) and ``RUN_DIR/report/report.md``: per stage the
steps logged, first / last / min of every loss (mean of the last 10 % of steps), the gradient norms' median and max,
non-finite values, the time per step — and, where the run holds them, the AR teacher's injectivity check on its own
ODE pairs (``injectivity.json``, written by the small track) and the pair set's provenance.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cf_ref.errors import UserError  # noqa: E402
from cf_ref.io import atomic_path, write_text  # noqa: E402
from full.logs import METRICS, read_metrics  # noqa: E402


class ReportError(UserError):
    """A run folder without logs."""


def stage_logs(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{stage name (its folder relative to run_dir): metric rows}`` for every ``metrics.jsonl`` under ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist")
    found = sorted(run_dir.rglob(METRICS))
    if not found:
        raise ReportError(f"no {METRICS} under {run_dir}; point at a cf-ref full train output folder")
    return {str(p.parent.relative_to(run_dir)) or p.parent.name: read_metrics(p) for p in found}


def _keys(rows: list[dict[str, Any]], suffix: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.endswith(suffix)})


def save_figure(fig, path: Path) -> list[Path]:
    """Write ``fig`` as ``path`` with suffixes .png and .pdf (atomically), then close it."""
    out = []
    for fmt in ("png", "pdf"):
        target = path.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")
        out.append(target)
    plt.close(fig)
    return out


def plot_losses(logs: dict[str, list[dict[str, Any]]], path: Path) -> list[Path]:
    """Loss curves (top row) and gradient norms (bottom row), one column per stage; PNG + PDF."""
    n = len(logs)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n, 5.2), squeeze=False)
    for col, (name, rows) in enumerate(logs.items()):
        for row, suffix in enumerate(("_loss", "_grad_norm")):
            ax = axes[row, col]
            for key in _keys(rows, suffix):
                pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key]) and r[key] > 0]
                if pts:
                    ax.plot(*zip(*pts), lw=1, label=key.removesuffix(suffix))
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(name if row == 0 else "", fontsize=9)
            ax.set_ylabel("loss" if row == 0 else "grad norm", fontsize=8)
            if ax.lines:
                ax.legend(fontsize=7)
    return save_figure(fig, path)


def stage_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sanity numbers of one stage's rows (module doc)."""
    tail = rows[-max(1, len(rows) // 10) :]
    out: dict[str, Any] = {"steps": rows[-1]["step"] if rows else 0}
    for key in _keys(rows, "_loss"):
        vals = [r[key] for r in rows if key in r]
        finite = [v for v in vals if math.isfinite(v)]
        out[key] = {
            "first": vals[0],
            "last": statistics.fmean(r[key] for r in tail if key in r) if any(key in r for r in tail) else math.nan,
            "min": min(finite) if finite else math.nan,
            "non_finite": len(vals) - len(finite),
        }
    for key in _keys(rows, "_grad_norm"):
        vals = [r[key] for r in rows if key in r and math.isfinite(r[key])]
        out[key] = {"median": statistics.median(vals), "max": max(vals)} if vals else {}
    times = [r["step_time_s"] for r in rows if "step_time_s" in r]
    if times:
        out["step_time_s"] = statistics.median(times)
    return out


def _stage_lines(name: str, s: dict[str, Any]) -> list[str]:
    lines = [
        f"### {name}",
        "",
        f"{s['steps']} steps" + (f", {s['step_time_s']:.3g} s per step" if "step_time_s" in s else ""),
    ]
    for key, v in s.items():
        if key.endswith("_loss"):
            bad = f", **{v['non_finite']} non-finite**" if v["non_finite"] else ""
            lines.append(f"- `{key}`: first {v['first']:.4g}, last {v['last']:.4g}, min {v['min']:.4g}{bad}")
        elif key.endswith("_grad_norm") and v:
            lines.append(f"- `{key}`: median {v['median']:.4g}, max {v['max']:.4g}")
    return lines + [""]


def _extras(run_dir: Path) -> list[str]:
    lines = []
    for path in sorted(run_dir.rglob("injectivity.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"### injectivity check ({path.relative_to(run_dir)})", ""]
        for teacher, eta in data.get("eta_by_frame", {}).items():
            lines.append(f"- {teacher} teacher: non-injectivity η per frame " + ", ".join(f"{x:.3f}" for x in eta))
        lines.append("")
    for index in sorted(run_dir.rglob("ode-pairs/index.json")):
        meta = json.loads(index.read_text(encoding="utf-8")).get("meta", {})
        lines += [f"### {index.parent.relative_to(run_dir)}", "", f"- {json.dumps(meta)}", ""]
    return lines


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/`` (module doc); returns the markdown file's path."""
    run_dir = Path(run_dir)
    logs = stage_logs(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    plot_losses(logs, out / "losses.png")
    lines = [f"# Run report: {run_dir}", "", "![losses](losses.png)", "", "## Stages", ""]
    for name, rows in logs.items():
        lines += _stage_lines(name, stage_summary(rows))
    lines += _extras(run_dir)
    path = out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
