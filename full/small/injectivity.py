r"""The injectivity check on video: how far each pair teacher's clean frames are determined by what the causal
student sees (:mod:`cf_ref.injectivity`, the non-injectivity index :math:`\eta_i`, per frame).

* **bidirectional pairs** (self-forcing, causvid): the base model's PF-ODE map ``ε → x0`` (bidirectional
  attention); the student sees the noise of its own and earlier blocks (block-causal visibility);
* **AR pairs** (causal forcing): the AR teacher's PF-ODE map with the clean context of the data video
  (teacher forcing, as its ODE pairs are made); the student sees its own block's noise (and the same context).

Frame i is injective for the student exactly when :math:`\eta_i = 0`; the MSE-optimal student then regresses onto
the teacher's flow map instead of a conditional expectation (blur). Both maps integrate the schedule's grid with
Euler, as :mod:`full.stages.ode_pairs` does; ``samples`` outer noises, ``resamples`` copies of the hidden noise each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from cf_ref.injectivity import non_injectivity_index
from cf_ref.masks import AttentionMode, block_causal_visibility
from cf_ref.seeding import generator
from cf_ref.solvers import Method, integrate
from full.config import RunConfig
from full.distributed import Runner
from full.small.evaluate import eval_inputs, eval_scenes, rendered
from full.small.settings import SmallSettings
from full.stages.fields import velocity_field
from full.stages.models import build_model
from full.synthetic import patch_encode


def own_block_visibility(frames: int, block_size: int) -> Tensor:
    """``[F, F]`` bool: frame i sees the frames of its own block only."""
    block = torch.arange(frames) // block_size
    return block[:, None] == block[None, :]


def flow_map(config: RunConfig, weights: Path | None, text: Tensor, clean: Tensor | None):
    """``u [B, M, F, C, h, w] → x0`` of the base model (``weights`` None, bidirectional) or the AR teacher with
    clean context ``clean [B, F, C, h, w]`` (teacher forcing)."""
    runner = Runner(build_model(config, weights, "pair teacher").eval())
    mode = AttentionMode.BIDIRECTIONAL if clean is None else AttentionMode.TEACHER_FORCING
    grid = config.schedule.grid()

    def run(u: Tensor) -> Tensor:
        m = u.shape[1]
        flat = rearrange(u, "b m ... -> (b m) ...")
        ctx = None if clean is None else repeat(clean, "b ... -> (b m) ...", m=m)
        field = velocity_field(runner, repeat(text, "b ... -> (b m) ...", m=m), mode, config.model.block_size, ctx)
        with torch.no_grad():
            x0 = integrate(field, flat, grid, Method.EULER).end
        return rearrange(x0, "(b m) ... -> b m ...", m=m)

    return run


def pair_injectivity(
    settings: SmallSettings, config: RunConfig, teacher: Path | None, seed: int, samples: int = 6, resamples: int = 4
) -> dict[str, Any]:
    """η per frame of the bidirectional pairs and (with ``teacher``, the AR teacher's weights) of the AR pairs."""
    scenes = eval_scenes(settings, seed)[:samples]
    text, _, noise = eval_inputs(settings, scenes, seed)
    frames, b = settings.data.frames, config.model.block_size
    gen = generator("cpu", seed, "small-injectivity")
    bi = non_injectivity_index(
        flow_map(config, None, text, None), noise, block_causal_visibility(frames, b), resamples, generator=gen
    )
    out = {"samples": samples, "resamples": resamples, "eta_by_frame": {"bidirectional": bi.tolist()}}
    if teacher is not None:
        clean = patch_encode(rendered(settings, scenes), settings.data.patch)
        ar = non_injectivity_index(
            flow_map(config, teacher, text, clean), noise, own_block_visibility(frames, b), resamples, generator=gen
        )
        out["eta_by_frame"]["ar"] = ar.tolist()
    return out
