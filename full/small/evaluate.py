"""Score a model of the small track: sample it on fixed held-out captions and noise, decode, run the metrics.

Each seed is scored on ``eval_videos`` scenes drawn with seed ``seed + EVAL_OFFSET`` (never trained on) and
fixed noise; the data's own renderings of those scenes are the reference (:mod:`full.small.metrics`), a second fresh
set (``seed + FLOOR_OFFSET``) against it gives the energy distance's noise floor. Samplers, all through the full
track's code with the KV cache where causal: the base model by the bidirectional PF-ODE (Euler on the schedule's
grid), the AR teacher by its block-wise PF-ODE (:func:`full.stages.previews.ar_teacher_sample`), a few-step student
by its few-step rollout (:func:`full.stages.previews.few_step_sample`). Results are cached per model in
``seed-<s>/eval/<name>.json`` (with the first samples' latents beside it), so a resumed compare skips them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cf_ref.io import load_tensors, save_tensors, write_json
from cf_ref.masks import AttentionMode
from cf_ref.seeding import generator
from cf_ref.solvers import Method, integrate
from full.config import RunConfig
from full.distributed import Runner
from full.small.metrics import score_videos
from full.small.settings import SmallSettings
from full.stages.fields import guided_field
from full.stages.models import build_model
from full.stages.previews import ar_teacher_sample, few_step_sample
from full.synthetic import Scene, embed_caption, patch_decode, patch_encode

EVAL_OFFSET, FLOOR_OFFSET = 10_000, 20_000
KEPT_SAMPLES = 4  # latents kept per model for figures and MP4s
SAMPLERS = ("base", "ar-teacher", "student")


def eval_scenes(settings: SmallSettings, seed: int, offset: int = EVAL_OFFSET) -> list[Scene]:
    """The held-out scenes a seed's models are scored on."""
    return dataclasses.replace(settings.data, count=settings.eval_videos, seed=seed + offset).scenes()


def rendered(settings: SmallSettings, scenes: list[Scene]) -> Tensor:
    """The data's RGB videos ``[N, F, H, W, 3]`` of ``scenes``."""
    return torch.stack([settings.data.render(s) for s in scenes])


def eval_inputs(settings: SmallSettings, scenes: list[Scene], seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Text ``[N, L, D]``, negative ``[N, L, D]`` and noise ``[N, F, C, h, w]`` (fixed by ``seed``) for ``scenes``."""
    d = settings.data
    text = torch.stack([embed_caption(s.caption, d.text_length, d.text_dim) for s in scenes])
    negative = embed_caption("", d.text_length, d.text_dim)[None].expand_as(text)
    shape = (len(scenes), d.frames, d.channels, d.pixels // d.patch, d.pixels // d.patch)
    noise = torch.randn(shape, generator=generator("cpu", seed, "small-eval"))
    return text, negative, noise


def sample(kind: str, config: RunConfig, weights: Path | None, text: Tensor, negative: Tensor, noise: Tensor) -> Tensor:
    """Latents ``[N, F, C, h, w]`` from the base model (``weights`` None), the AR teacher or a few-step student."""
    if kind not in SAMPLERS:
        raise ValueError(f"kind must be one of {SAMPLERS}, got {kind!r}")
    runner = Runner(build_model(config, weights, kind).eval())
    if kind == "student":
        return few_step_sample(runner, config, text, noise)
    if kind == "ar-teacher":
        return ar_teacher_sample(runner, config, text, negative, noise, 1.0)
    field = guided_field(runner, text, negative, 1.0, AttentionMode.BIDIRECTIONAL, config.model.block_size)
    with torch.no_grad():
        return integrate(field, noise, config.schedule.grid(), Method.EULER).end


def reference(settings: SmallSettings, seed: int) -> dict[str, Any]:
    """The data's scores on the held-out scenes and the noise floor of the energy distance."""
    scenes = eval_scenes(settings, seed)
    data = score_videos(rendered(settings, scenes), scenes)
    fresh_scenes = eval_scenes(settings, seed, FLOOR_OFFSET)
    fresh = score_videos(rendered(settings, fresh_scenes), fresh_scenes)
    summary = data.summary()
    return {
        "data": summary,
        "floor": fresh.summary(data.features),
        "features": data.features.tolist(),
        "iou_by_frame": data.iou_by_frame.tolist(),
    }


def cached_reference(settings: SmallSettings, seed: int, folder: Path) -> dict[str, Any]:
    """:func:`reference`, cached in ``folder/reference.json``."""
    path = folder / "reference.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    ref = reference(settings, seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, ref)
    return ref


def evaluate(
    name: str, kind: str, config: RunConfig, weights: Path | None, settings: SmallSettings, seed: int, folder: Path
) -> dict[str, Any]:
    """Sample, decode and score one model (module doc); cached in ``folder/<name>.json``."""
    path = folder / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    ref = cached_reference(settings, seed, folder)
    scenes = eval_scenes(settings, seed)
    text, negative, noise = eval_inputs(settings, scenes, seed)
    if config.parallel.cpu_threads is not None:
        torch.set_num_threads(config.parallel.cpu_threads)
    latents = sample(kind, config, weights, text, negative, noise).float()
    scores = score_videos(patch_decode(latents, settings.data.patch), scenes)
    result = {
        "name": name,
        "kind": kind,
        "weights": None if weights is None else str(weights),
        "summary": scores.summary(torch.tensor(ref["features"], dtype=torch.float64)),
        "iou_by_frame": scores.iou_by_frame.tolist(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / f"{name}.safetensors", {"latents": latents[:KEPT_SAMPLES].contiguous()})
    write_json(path, result)
    return result


def kept_samples(folder: Path, name: str) -> Tensor:
    """The first samples' latents ``[K, F, C, h, w]`` kept by :func:`evaluate`."""
    return load_tensors(folder / f"{name}.safetensors")["latents"]


def data_samples(settings: SmallSettings, seed: int) -> Tensor:
    """The data's latents of the first held-out scenes ``[K, F, C, h, w]`` (for figures beside the samples)."""
    scenes = eval_scenes(settings, seed)[:KEPT_SAMPLES]
    return patch_encode(rendered(settings, scenes), settings.data.patch)
