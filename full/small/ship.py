r"""The trained small student shipped with the package (``--preset small``), and how it is made and scored.

:data:`SHIPPED` is a model folder like any other (``transformer/``: the student, a ``CausalWanTransformer3DModel``;
``vae/``, ``text_encoder/``: :mod:`full.small.components`' patch code and word vectors) plus ``student.json``:
the sampling settings the student was trained for (video size, latent frames, block size, steps, σ-list shift,
caption length, fps) and where it came from (run, seed, preset, its scores). :func:`ship_student` writes such a
folder from a small-track run (atomically: a temporary folder renamed into place); :func:`score_latents` scores
sampled latents with the small track's detector (:mod:`full.small.metrics`) against the prompts' captions.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cf_ref.errors import InvalidValue
from cf_ref.io import follow_umask, make_temp_dir, write_json
from cf_ref.schedule import FewStepSchedule
from full.checkpoint import load_weights
from full.config import RunConfig
from full.config.layers import load_config
from full.model_files import ModelFolderError
from full.small.components import check_prompt, write_small_components
from full.small.metrics import score_videos
from full.small.settings import SmallSettings
from full.stages.models import load_model
from full.synthetic import Scene, ShapeVideo, patch_decode

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "small"
MANIFEST = "student.json"
DISPLAY_SCALE = 8  # 16 px frames shown at 128 px


def sampling_settings(config: RunConfig, settings: SmallSettings, display_scale: int = DISPLAY_SCALE) -> dict:
    """The sampler settings a student of run ``config`` (preset ``settings``) was trained for."""
    schedule, d = config.schedule, settings.data
    if schedule.timesteps != FewStepSchedule.uniform(schedule.num_steps).timesteps:
        raise InvalidValue(f"the student's timesteps {schedule.timesteps} are not a uniform few-step list")
    return {
        "height": d.pixels * display_scale,
        "width": d.pixels * display_scale,
        "frames": config.video.latent_frames,
        "block_size": config.model.block_size,
        "steps": schedule.num_steps,
        "shift": schedule.shift,
        "text_length": d.text_length,
        "fps": settings.fps,
    }


def read_manifest(folder: str | os.PathLike = SHIPPED) -> dict[str, Any]:
    """``folder/student.json``; a missing or unreadable one is a one-line error."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ModelFolderError(f"{folder} holds no {MANIFEST}: the small student is not there (see docs/small.md)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{path} is not readable JSON ({exc})") from None


def ship_student(
    run_config: str | os.PathLike,
    weights: str | os.PathLike,
    settings: SmallSettings,
    out: str | os.PathLike,
    source: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write the student ``weights`` of the small-track run whose resolved ``config.yaml`` is ``run_config`` as a
    model folder ``out`` (module doc), with ``source`` (run, seed, preset, scores) in ``student.json``. Everything is
    read and checked first; ``out`` is replaced only by a complete folder."""
    config = load_config(run_config)
    model = load_model(config.model.path, "small student (base model)")
    load_weights(model, weights, what="small student")
    manifest = {"sampling": sampling_settings(config, settings), "source": source}
    out = Path(out)
    tmp = make_temp_dir(out.parent, out.name)
    try:
        (model if dtype == torch.float32 else model.to(dtype)).save_pretrained(tmp / "transformer")
        write_small_components(tmp, settings.data, DISPLAY_SCALE)
        write_json(tmp / MANIFEST, manifest)
        follow_umask(tmp)  # package data: readable by all (the writers make 0600 files)
        old = out.parent / f".{out.name}.old" if out.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def prompt_scene(prompt: str, size: float) -> Scene:
    """The scene a prompt of the training grammar describes, for the detector (colour, shape, direction, the data's
    shape ``size``; the start and speed are unknown and unused by the scores)."""
    words = prompt.lower().split()
    check_prompt(words, objects=max(1, (len(words) + 1) // 6))
    if not words:
        raise InvalidValue("the empty prompt describes no scene")
    objects = []
    for k in range(0, len(words), 6):
        _, colour, shape, _, direction = words[k : k + 5]
        objects.append(ShapeVideo(shape, colour, direction, (0.5, 0.5), 0.0, size, motion="bounce"))
    return Scene(tuple(objects))


def score_latents(latents: Tensor, prompts: list[str], patch: int, size: float) -> dict[str, float]:
    """Detector scores (:meth:`full.small.metrics.VideoSetScores.summary`) of sampled latents ``[N, F, C, h, w]``
    (the patch code) against ``prompts``' captions."""
    if len(latents) != len(prompts):
        raise ValueError(f"{len(latents)} videos for {len(prompts)} prompts")
    rgb = patch_decode(latents.float().cpu(), patch)
    return score_videos(rgb, [prompt_scene(p, size) for p in prompts]).summary()
