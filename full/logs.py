"""Run logging on rank 0: JSONL metrics, a tqdm progress bar, optional TensorBoard, sample videos.

``<stage>/metrics.jsonl`` gets one JSON object per logged step (``{"step": …, "time": …, <metric>: …}``).
On resume the lines after the resumed step are dropped first, so the file reads as one uninterrupted run.
Sample videos: latents are written as safetensors and as MP4 — decoded by a Wan VAE when one is given,
otherwise a false-colour preview of the first three latent channels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cf_ref.io import save_tensors, write_text
from full.config import LoggingConfig
from full.distributed import DistContext

METRICS = "metrics.jsonl"


class RunLogger:
    """Metrics of one stage; every method is a no-op off rank 0."""

    def __init__(
        self, stage_dir: str | Path, stage: str, ctx: DistContext, config: LoggingConfig, total: int, start: int = 0
    ):
        self.stage, self.ctx, self.config = stage, ctx, config
        self.path = Path(stage_dir) / METRICS
        self.bar = None
        self.tb = None
        self.t0 = time.time()
        if not ctx.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_after(self.path, start)
        if config.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc=stage, dynamic_ncols=True)
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(stage_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record the metrics of (1-based) step ``step`` and advance the bar."""
        if not self.ctx.is_main:
            return
        if self.bar is not None:
            self.bar.update(1)
            shown = {k: f"{v:.4g}" for k, v in metrics.items() if k.endswith("loss")}
            self.bar.set_postfix(shown, refresh=False)
        if step % self.config.log_every and step != 1:
            return
        line = {"step": step, "time": round(time.time() - self.t0, 3), **metrics}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{self.stage}/{k}", v, step)

    def message(self, text: str) -> None:
        if not self.ctx.is_main:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def truncate_after(path: Path, step: int) -> None:
    """Drop the JSONL lines of steps > ``step`` (lines logged by a run that was interrupted later)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    write_text(path, "".join(k + "\n" for k in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All JSONL records of a metrics file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def latent_preview(latents: Tensor, min_size: int = 128) -> np.ndarray:
    """False-colour video ``[F, H', W', 3]`` uint8 of latents ``[F, C, H, W]``: first 3 channels, min-max scaled."""
    x = latents.detach().float().cpu()
    if x.shape[1] < 3:
        x = torch.cat([x, x[:, :1].expand(-1, 3 - x.shape[1], -1, -1)], dim=1)
    x = x[:, :3]
    lo, hi = x.amin(), x.amax()
    x = (x - lo) / (hi - lo).clamp_min(1e-6)
    scale = max(1, -(-min_size // min(x.shape[-2:])))
    x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # even sizes for H.264
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def write_samples(folder: str | Path, latents: Tensor, captions: Sequence[str], vae=None, fps: int = 8) -> Path:
    """Write ``latents [N, F, C, H, W]`` as ``latents.safetensors`` + one MP4 per sample + ``captions.txt``
    (decoded with :func:`full.video.decode_latents` when a VAE is given, else :func:`latent_preview`)."""
    from full.video import decode_latents, to_uint8, write_mp4

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / "latents.safetensors", {"latents": latents})
    write_text(folder / "captions.txt", "".join(c + "\n" for c in captions))
    for i, z in enumerate(latents):
        frames = to_uint8(decode_latents(vae, z[None])[0]) if vae is not None else latent_preview(z)
        write_mp4(folder / f"sample-{i:02d}.mp4", frames, fps=fps)
    return folder
