"""The figures of ``cf-ref toy compare`` / ``cf-ref toy pipeline``, from a result dict and one seed's samples.

* ``samples_init`` / ``samples_dmd`` — samples per recipe (rows) per frame (columns), after initialisation and
  after DMD; ``teachers`` — rollouts of the teacher-forcing and the diffusion-forcing AR teacher;
* ``dmd_curves`` — energy distance and off-manifold fraction against the DMD step per recipe, mean over seeds
  with a min–max band ("can DMD repair a bad initialisation?").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from cf_ref.recipes import RECIPES, Forcing, Recipe  # noqa: E402
from toy.compare_summary import metric  # noqa: E402
from toy.pipeline import recipe_stage_keys  # noqa: E402
from toy.plots import save_figure  # noqa: E402

FIGURE_DPI = 100


def _frame_axes_limits(reference: Tensor) -> list[tuple[float, float]]:
    lo, hi = reference.amin(dim=(0, 1)), reference.amax(dim=(0, 1))
    pad = 0.15 * (hi - lo)
    return [(float(a), float(b)) for a, b in zip(lo - pad, hi + pad)]


def plot_samples(rows: dict[str, Tensor], path: Path, title: str, max_points: int = 1000) -> None:
    """One row per model, one column per frame: 2-D scatter of the first two dims (histogram for d = 1);
    scatters show the first ``max_points`` samples (rasterised, so the PDF stays small)."""
    reference = rows["data"]
    f, d = reference.shape[1:]
    limits = _frame_axes_limits(reference)
    fig, axes = plt.subplots(len(rows), f, figsize=(2.2 * f, 2.0 * len(rows)), squeeze=False)
    for r, (label, x) in enumerate(rows.items()):
        for i in range(f):
            ax = axes[r, i]
            if d == 1:
                bins = torch.linspace(*limits[0], 60)
                ax.hist(reference[:, i, 0].numpy(), bins=bins.numpy(), color="0.8", density=True)
                ax.hist(x[:, i, 0].numpy(), bins=bins.numpy(), histtype="step", color="C0", density=True)
            else:
                pts = x[:max_points, i]
                ax.scatter(
                    pts[:, 0].numpy(), pts[:, 1].numpy(), s=1, alpha=0.4, color="C0" if r else "0.3", rasterized=True
                )
                ax.set_xlim(*limits[0])
                ax.set_ylim(*limits[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=9)
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path.parent, path.stem, FIGURE_DPI, tight=False)


def plot_dmd_curves(per_recipe_curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """Energy distance and off-manifold fraction against the DMD step, mean over seeds with a min–max band."""
    names = ("energy_distance", "off_manifold_fraction")
    fig, axes = plt.subplots(1, len(names), figsize=(5.0 * len(names), 3.6), squeeze=False)
    for c, (recipe, curves) in enumerate(per_recipe_curves.items()):
        steps = [p["step"] for p in curves[0]]
        for ax, name in zip(axes[0], names):
            values = torch.tensor([[metric(p, name) for p in curve] for curve in curves])
            ax.plot(steps, values.mean(0).numpy(), color=f"C{c}", label=recipe)
            ax.fill_between(steps, values.amin(0).numpy(), values.amax(0).numpy(), color=f"C{c}", alpha=0.15)
    for ax, name in zip(axes[0], names):
        ax.set_xlabel("DMD generator step")
        ax.set_ylabel(name.replace("_", " "))
    axes[0, 0].set_yscale("symlog", linthresh=1e-2)  # linear below 0.01 (sampling noise), logarithmic above
    axes[0, 0].set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Can DMD repair a bad initialisation? (mean over seeds, band = min–max)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path.parent, path.stem, FIGURE_DPI, tight=False)


def write_compare_figures(result: dict[str, Any], samples: dict[str, Tensor], seed: int, out: Path) -> None:
    """The comparison's figures from its result dict and one seed's evaluation samples (see :func:`redraw`)."""
    recipes = [Recipe(name) for name in result["recipes"]]
    init_rows = {"data": samples["data"]}
    final_rows = {"data": samples["data"]}
    for r in recipes:
        keys = recipe_stage_keys(r)
        init_rows[f"{r.value}\n({RECIPES[r].init.value})"] = samples[keys["init"]]
        final_rows[r.value] = samples[keys["dmd"]]
    plot_samples(init_rows, out / "samples_init", f"After initialisation (seed {seed})")
    plot_samples(final_rows, out / "samples_dmd", f"After DMD (seed {seed})")
    teacher_rows = {"data": samples["data"]}
    teacher_rows.update({f"{f.value} forcing": samples[f"ar_teacher/{f.value}"] for f in Forcing})
    plot_samples(teacher_rows, out / "teachers", f"AR teacher rollouts on clean self-generated history (seed {seed})")
    curves = {
        name: [per_seed["dmd"]["curve"] for per_seed in rec["per_seed"].values()]
        for name, rec in result["recipes"].items()
    }
    plot_dmd_curves(curves, out / "dmd_curves")
