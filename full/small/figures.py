"""The small track's figures (PNG + PDF) and MP4s: metric bars per recipe, frame strips, early-frame IoU, losses.

* ``metrics`` — one panel per metric: each recipe's init and DMD student (mean ± std over seeds), the data and
  the base model as lines;
* ``strips`` — the first held-out caption of seed 0: data, base, and every recipe's init and DMD sample, frame by
  frame;
* ``iou_by_frame`` — mean soft IoU per frame of every init and DMD student (the injectivity signature: blur on
  the early frames), data and base for reference, and the pair teachers' non-injectivity η per frame;
* ``losses`` — seed 0's loss curves of every stage (:func:`full.report.plot_losses`);
* ``videos/<recipe>.mp4`` — seed 0's first DMD samples, decoded and enlarged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from full.report import plot_losses, save_figure, stage_logs  # noqa: E402
from full.small.evaluate import data_samples, kept_samples  # noqa: E402
from full.small.run import BASE  # noqa: E402
from full.small.settings import SmallSettings  # noqa: E402
from full.small.summary import LABELS, METRICS  # noqa: E402
from full.synthetic import patch_decode  # noqa: E402
from full.video import write_mp4  # noqa: E402


def plot_metric_bars(result: dict[str, Any], path: Path) -> list[Path]:
    """Metric bars per recipe (init and DMD, mean ± std), data and base as horizontal lines."""
    s, recipes = result["summary"], result["recipes"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.0 * len(METRICS), 3.4))
    x = np.arange(len(recipes))
    for ax, m in zip(axes, METRICS):
        for k, (when, colour) in enumerate((("init", "#9ecae1"), ("dmd", "#3182bd"))):
            stats = [s[f"{r}/{when}"][m] for r in recipes]
            ax.bar(
                x + 0.38 * (k - 0.5),
                [t["mean"] for t in stats],
                0.38,
                yerr=[t["std"] for t in stats],
                color=colour,
                label=when,
            )
        for ref, style in (("data", "k--"), ("base", "r:")):
            if m in s[ref]:
                ax.axhline(s[ref][m]["mean"], ls=style[1:], color=style[0], lw=1, label=ref)
        ax.set_xticks(x, recipes, rotation=35, ha="right", fontsize=7)
        ax.set_title(LABELS[m], fontsize=9)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def _strip_rows(result: dict[str, Any], settings: SmallSettings, out: Path) -> dict[str, torch.Tensor]:
    """Seed 0's first video of each row as RGB ``[F, H, W, 3]``."""
    seed = result["seeds"][0]
    folder = out / f"seed-{seed}" / "eval"
    p = settings.data.patch
    rows = {
        "data": patch_decode(data_samples(settings, seed)[0], p),
        "base": patch_decode(kept_samples(folder, "base")[0], p),
    }
    runs = result["per_seed"][str(seed)]["recipes"]
    for r in result["recipes"]:
        rows[f"{r} init"] = patch_decode(kept_samples(folder, runs[r]["init"]["name"])[0], p)
        rows[f"{r} dmd"] = patch_decode(kept_samples(folder, f"{r}.dmd")[0], p)
    return rows


def plot_strips(rows: dict[str, torch.Tensor], path: Path, title: str = "") -> list[Path]:
    """Frame strips: one row per entry of ``rows`` (RGB ``[F, H, W, 3]``), one column per frame."""
    frames = next(iter(rows.values())).shape[0]
    fig, axes = plt.subplots(len(rows), frames, figsize=(0.75 * frames + 1.2, 0.8 * len(rows) + 0.4), squeeze=False)
    for i, (name, video) in enumerate(rows.items()):
        for f in range(frames):
            ax = axes[i, f]
            ax.imshow(video[f].numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
            if i == 0:
                ax.set_title(str(f), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_iou_by_frame(result: dict[str, Any], path: Path, block: int) -> list[Path]:
    """Mean soft IoU per frame of data, base and every recipe's init / DMD student (mean over seeds), and the
    non-injectivity index η per frame of each pair teacher."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    curves = result["iou_by_frame"]
    for teacher, eta in result["injectivity"].items():
        axes[2].plot(eta, marker="s", ms=3, lw=1, label=f"{teacher} pairs")
    axes[2].set_xlabel("frame")
    axes[2].set_title("non-injectivity η of the ODE pairs", fontsize=9)
    axes[2].legend(fontsize=7)
    for ax, when in zip(axes[:2], ("init", "dmd")):
        for name in ("data", "base"):
            ax.plot(curves[name], "k--" if name == "data" else "r:", lw=1, label=name)
        for r in result["recipes"]:
            ax.plot(curves[f"{r}/{when}"], marker="o", ms=3, lw=1, label=r)
        for b in range(block, len(curves["data"]), block):
            ax.axvline(b - 0.5, color="0.85", lw=0.8)
        ax.set_xlabel("frame")
        ax.set_title(f"after {when}", fontsize=9)
    axes[0].set_ylabel("soft IoU")
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def enlarge(video: torch.Tensor, scale: int = 8) -> np.ndarray:
    """RGB ``[F, H, W, 3]`` in [0, 1] → uint8, each pixel a ``scale``² block."""
    up = video.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_videos(result: dict[str, Any], settings: SmallSettings, out: Path) -> None:
    """``videos/<recipe>.mp4``: seed 0's kept DMD samples side by side; ``videos/data.mp4`` the data's."""
    seed = result["seeds"][0]
    folder, p = out / f"seed-{seed}" / "eval", settings.data.patch
    videos = out / "videos"
    videos.mkdir(exist_ok=True)
    named = {"data": data_samples(settings, seed)} | {r: kept_samples(folder, f"{r}.dmd") for r in result["recipes"]}
    for name, latents in named.items():
        rgb = patch_decode(latents, p)  # [K, F, H, W, 3]
        tiled = torch.cat(list(rgb), dim=2)  # side by side
        write_mp4(videos / f"{name}.mp4", enlarge(tiled), fps=settings.fps)


def write_figures(result: dict[str, Any], settings: SmallSettings, out: Path) -> None:
    """Every figure and video of the module doc, under ``out/figures`` and ``out/videos``."""
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_metric_bars(result, figures / "metrics.png")
    plot_strips(_strip_rows(result, settings, out), figures / "strips.png")
    plot_iou_by_frame(result, figures / "iou_by_frame.png", int(settings.stages["model"]["block_size"]))
    base = {f"base/{k}": rows for k, rows in stage_logs(out / BASE).items()} if (out / BASE).is_dir() else {}
    plot_losses({**base, **stage_logs(out / f"seed-{result['seeds'][0]}")}, figures / "losses.png")
    write_videos(result, settings, out)
