r"""Figures of a toy run, drawn from its saved results only (``metrics.json`` + ``plot_data.safetensors``).

Per dataset:

* ``samples_<dataset>`` — samples per frame (columns) of the data, both teachers and every student (rows):
  histograms for d = 1, scatter of the first two dims for d ≥ 2 (mixture component means marked);
* ``trajectories_<dataset>`` — PF-ODE trajectories of both teachers from the same noise, first dim vs σ;
* ``conditional_expectation_<dataset>`` — for one fixed noise ε and each frame i: the bidirectional teacher's
  :math:`x_{0,i}` over redrawn unseen noise ε_{>i} (the spread the causal student cannot resolve), their mean
  (the conditional expectation), the 1-step bidirectional-ODE student's output and the teacher's flow map at ε.

And ``errors``: per-frame regression errors of every student to the flow map and to the conditional
expectation (Monte Carlo standard error as error bars). Each figure is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402

from cf_ref.io import atomic_path  # noqa: E402
from toy.run_files import read_outputs  # noqa: E402

FORMATS = ("png", "pdf")
PANEL_INCHES = 1.9
HIST_BINS = 40
TITLE_INCHES = 0.6
COLORS = {
    "teacher/bidirectional": "tab:purple",
    "teacher/ar": "tab:green",
    "bidirectional": "tab:red",
    "ar": "tab:blue",
}
STUDENT_NAME = {"bidirectional": "bidirectional-ODE", "ar": "causal-ODE"}
"""Student label by pair teacher (``PairTeacher`` value)."""


def save_figure(fig: plt.Figure, out_dir: Path, stem: str, dpi: int, tight: bool = True) -> list[Path]:
    """Write ``fig`` atomically as ``out_dir/stem.png`` and ``.pdf`` (cropped to its content if ``tight``), close it."""
    paths = []
    box = None
    if tight:  # the content's box, measured once for both formats (savefig's "tight" would draw twice per format)
        fig.set_dpi(dpi)
        box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)  # savefig's default pad_inches
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches=box)
        paths.append(path)
    plt.close(fig)
    return paths


def _panel_grid(rows: int, cols: int, height: float, sharey: bool) -> tuple[plt.Figure, np.ndarray]:
    """A rows × cols grid of small panels sharing x (and y if asked), tick labels on the outer panels only."""
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(PANEL_INCHES * cols, height * rows + TITLE_INCHES),
        sharex="col",
        sharey="all" if sharey else False,
        squeeze=False,
    )
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(MaxNLocator(3))
        ax.tick_params(labelsize=6, length=2)
        ax.label_outer()
    fig.subplots_adjust(
        left=0.12, right=0.98, bottom=0.06, top=1 - 0.45 / (height * rows + 0.6), wspace=0.08, hspace=0.12
    )
    return fig, axes


def _density(values: Tensor, edges: Tensor) -> np.ndarray:
    """Histogram density of ``values [n]`` on ``edges [m+1]`` (as numpy, for ``Axes.stairs``)."""
    counts = torch.histc(values.double(), bins=len(edges) - 1, min=float(edges[0]), max=float(edges[-1]))
    return (counts / (counts.sum().clamp_min(1) * (edges[1] - edges[0]))).numpy()


def _sources(tensors: dict[str, Tensor], name: str, exp: dict) -> list[tuple[str, str, Tensor]]:
    """``(label, colour, samples [n, F, d])`` rows of the samples figure, in reading order."""
    rows = [
        ("bidirectional teacher", COLORS["teacher/bidirectional"], tensors[f"{name}/teacher/bidirectional"]),
        ("AR teacher", COLORS["teacher/ar"], tensors[f"{name}/teacher/ar"]),
    ]
    for key, s in exp["students"].items():
        teacher = s["pair_teacher"]
        regime = s["context_regime"].replace("_", "-")
        label = f"{STUDENT_NAME[teacher]} {s['num_steps']}-step\n({regime} context)"
        rows.append((label, COLORS[teacher], tensors[f"{name}/student/{key}"]))
    return rows


def plot_samples(tensors: dict[str, Tensor], name: str, exp: dict, out_dir: Path, dpi: int) -> list[Path]:
    rows = _sources(tensors, name, exp)
    ref = tensors[f"{name}/reference"]
    frames, dim = ref.shape[1], ref.shape[2]
    fig, axes = _panel_grid(len(rows), frames, height=0.8 * PANEL_INCHES, sharey=dim > 1)
    lo, hi = float(ref.min()) - 0.5, float(ref.max()) + 0.5
    means = (
        torch.tensor(exp["config"]["component_means"]).reshape(-1, frames, dim)
        if "component_means" in exp["config"]
        else None
    )
    for r, (label, color, x) in enumerate(rows):
        for i in range(frames):
            ax = axes[r, i]
            if dim == 1:
                edges = torch.linspace(lo, hi, HIST_BINS + 1)
                ax.stairs(_density(ref[:, i, 0], edges), edges.numpy(), fill=True, color="0.85")
                ax.stairs(_density(x[:, i, 0], edges), edges.numpy(), color=color, lw=1.2)
                ax.set_yticks([])
            else:
                ax.scatter(ref[:, i, 0], ref[:, i, 1], s=1, color="0.85", rasterized=True)
                ax.scatter(x[:, i, 0], x[:, i, 1], s=1, color=color, alpha=0.5, rasterized=True)
                if means is not None:
                    ax.scatter(means[:, i, 0], means[:, i, 1], marker="x", color="k", s=18, lw=1)
                ax.set_ylim(lo, hi)
            ax.set_xlim(lo, hi)
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=8)
            if i == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(f"{name}: samples per frame (grey: fresh data)", fontsize=9, y=1 - 0.1 / fig.get_figheight())
    return save_figure(fig, out_dir, f"samples_{name}", dpi)


def plot_trajectories(tensors: dict[str, Tensor], name: str, out_dir: Path, dpi: int) -> list[Path]:
    sig = tensors[f"{name}/trajectory/sigmas"]
    rows = [
        ("bidirectional teacher", "bidirectional", COLORS["teacher/bidirectional"]),
        ("AR teacher", "ar", COLORS["teacher/ar"]),
    ]
    frames = tensors[f"{name}/trajectory/bidirectional"].shape[2]
    fig, axes = _panel_grid(2, frames, height=0.9 * PANEL_INCHES, sharey=True)
    for r, (label, key, color) in enumerate(rows):
        traj = tensors[f"{name}/trajectory/{key}"]  # [n, N+1, F, d]
        for i in range(frames):
            ax = axes[r, i]
            lines = torch.stack([sig.expand_as(traj[:, :, i, 0]), traj[:, :, i, 0]], dim=-1)  # [n, N+1, 2]
            ax.add_collection(LineCollection(lines.numpy(), colors=color, linewidths=0.6, alpha=0.7))
            ax.autoscale_view()
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=8)
            if r == 1:
                ax.set_xlabel("σ", fontsize=7)
            if i == 0:
                ax.set_ylabel(f"{label}\nx (dim 0)", fontsize=7)
    for ax in axes[0]:
        ax.invert_xaxis()  # x is shared by column: every panel runs from noise (σ = 1) to data (σ = 0)
    fig.suptitle(
        f"{name}: PF-ODE trajectories from the same noise (σ = 1 → 0)", fontsize=9, y=1 - 0.1 / fig.get_figheight()
    )
    return save_figure(fig, out_dir, f"trajectories_{name}", dpi)


def _ce_panel_1d(ax, spread: Tensor, mean: Tensor, student: Tensor, flow: Tensor) -> None:
    """One frame of the conditional-expectation figure, d = 1: spread ``[M]`` as a histogram, the rest as lines."""
    lo, hi = float(spread.min()) - 0.1, float(spread.max()) + 0.1
    edges = torch.linspace(lo, hi, HIST_BINS // 2 + 1)
    ax.stairs(_density(spread, edges), edges.numpy(), fill=True, color="0.8", label="teacher x0 over unseen noise")
    ax.axvline(float(mean), color="k", ls="--", lw=1.2, label="conditional expectation")
    ax.axvline(float(student), color=COLORS["bidirectional"], lw=1.5, label="bidirectional-ODE student")
    ax.axvline(float(flow), color=COLORS["teacher/bidirectional"], ls=":", lw=1.5, label="flow map at ε")
    ax.set_yticks([])


def _ce_panel_2d(ax, spread: Tensor, mean: Tensor, student: Tensor, flow: Tensor) -> None:
    """One frame of the conditional-expectation figure, d ≥ 2 (first two dims): spread ``[M, d]`` as a scatter."""
    ax.scatter(spread[:, 0], spread[:, 1], s=2, color="0.7", rasterized=True, label="teacher x0 over unseen noise")
    ax.scatter(mean[0], mean[1], marker="+", color="k", s=80, lw=1.5, label="conditional expectation")
    ax.scatter(
        student[0], student[1], marker="o", facecolors="none", edgecolors=COLORS["bidirectional"], s=60, lw=1.5,
        label="bidirectional-ODE student",
    )  # fmt: skip
    flow_color = COLORS["teacher/bidirectional"]
    ax.scatter(flow[0], flow[1], marker="x", color=flow_color, s=40, lw=1.2, label="flow map at ε")
    ax.set_aspect("equal", adjustable="datalim")


def plot_conditional_expectation(tensors: dict[str, Tensor], name: str, out_dir: Path, dpi: int) -> list[Path]:
    p = f"{name}/conditional_expectation"
    spread, mean = tensors[f"{p}/teacher_outputs"], tensors[f"{p}/mean"]  # [F, M, d], [F, d]
    student, flow = tensors[f"{p}/student"], tensors[f"{p}/flow_map"]
    frames, dim = spread.shape[0], spread.shape[2]
    fig, axes = plt.subplots(1, frames, figsize=(PANEL_INCHES * frames, PANEL_INCHES), squeeze=False)
    for i in range(frames):
        ax = axes[0, i]
        if dim == 1:
            _ce_panel_1d(ax, spread[i, :, 0], mean[i, 0], student[i, 0], flow[i, 0])
        else:
            _ce_panel_2d(ax, spread[i], mean[i], student[i], flow[i])
        ax.tick_params(labelsize=6)
        ax.set_title(f"frame {i}: sees ε≤{i}", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"{name}: what the causal student of bidirectional pairs can learn (one fixed ε)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, f"conditional_expectation_{name}", dpi)


def _error_bars(ax, students: list[dict], frames: int) -> None:
    """Per frame, for each student: its error to the flow map (solid) and to the conditional expectation (hatched,
    with the Monte Carlo error as the error bar)."""
    bars = []
    for s in students:
        label, color = STUDENT_NAME[s["pair_teacher"]], COLORS[s["pair_teacher"]]
        bars.append((f"{label} → flow map", s["error_to_flow_map"], None, color, None))
        ce = s["error_to_conditional_expectation"]
        bars.append((f"{label} → cond. exp.", ce, s["conditional_expectation_mc_error"], color, "///"))
    width = 0.8 / max(1, len(bars))
    for b, (label, values, err, color, hatch) in enumerate(bars):
        xs = [i - 0.4 + width * (b + 0.5) for i in range(frames)]
        fill = color if hatch is None else "white"
        ax.bar(xs, values, width, yerr=err, color=fill, edgecolor=color, hatch=hatch, label=label, error_kw={"lw": 0.6})
    ax.set_xticks(range(frames))
    ax.tick_params(labelsize=6)


def plot_errors(metrics: dict, out_dir: Path, dpi: int) -> list[Path]:
    """Per dataset (columns) and step count (rows): every student's per-frame regression errors (:func:`_error_bars`)."""
    exps = metrics["experiments"]
    steps = [int(k) for k in metrics["settings"]["grid"]["student_sigmas"]]
    fig, axes = plt.subplots(len(steps), len(exps), figsize=(2.4 * len(exps), 2.0 * len(steps)), squeeze=False)
    for c, (name, exp) in enumerate(exps.items()):
        frames = len(exp["non_injectivity"]["bidirectional"])
        for r, k in enumerate(steps):
            ax = axes[r, c]
            _error_bars(ax, [s for s in exp["students"].values() if s["num_steps"] == k], frames)
            ax.set_title(f"{name}, {k}-step", fontsize=8)
            if c == 0:
                ax.set_ylabel("RMS error", fontsize=7)
            if r == len(steps) - 1:
                ax.set_xlabel("frame", fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Regression error of the few-step students on held-out pairs", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "errors", dpi)


def draw_dataset(tensors: dict[str, Tensor], name: str, exp: dict, out_dir: str | Path, dpi: int = 130) -> list[Path]:
    """The three figures of one dataset from its plot tensors (keys ``"<name>/…"``) and its metrics entry."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return (
        plot_samples(tensors, name, exp, out, dpi)
        + plot_trajectories(tensors, name, out, dpi)
        + plot_conditional_expectation(tensors, name, out, dpi)
    )


def draw_dataset_unprefixed(name: str, result: dict, tensors: dict[str, Tensor], out_dir: str | Path, dpi: int = 130):
    """:func:`draw_dataset` for the raw output of :func:`toy.experiment.run_dataset` (keys without the name);
    usable as ``run(..., on_dataset=partial(draw_dataset_unprefixed, out_dir=…))`` to draw while other datasets run."""
    prefixed = {f"{name}/{k}": v.detach().to(torch.float32) for k, v in tensors.items()}
    return draw_dataset(prefixed, name, result, out_dir, dpi)


def draw_all(run_dir: str | Path, out_dir: str | Path | None = None, dpi: int = 130) -> list[Path]:
    """Re-draw every figure of a run from ``run_dir`` (its ``metrics.json`` and ``plot_data.safetensors``)."""
    metrics, tensors = read_outputs(run_dir)
    out = Path(run_dir) if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, exp in metrics["experiments"].items():
        paths += draw_dataset(tensors, name, exp, out, dpi)
    return paths + plot_errors(metrics, out, dpi)
