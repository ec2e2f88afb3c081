"""Non-injectivity of bidirectional vs causal ODE pairs on the toy presets (``cf-ref toy injectivity``)."""

from __future__ import annotations

import torch

from cf_ref.injectivity import non_injectivity_index
from cf_ref.masks import block_causal_visibility
from cf_ref.recipes import PairTeacher
from toy.data import SequenceData, ar1_gaussian, independent_gaussian, shared_mode_mixture
from toy.teachers import ARTeacher, BidirectionalTeacher


def pair_injectivity(
    data: SequenceData, samples: int, resamples: int, generator: torch.Generator
) -> dict[str, list[float]]:
    """Per-frame index of the pairs of each :class:`cf_ref.recipes.PairTeacher`: bidirectional (the student sees
    ε_{≤i}) and AR (causal pairs: ε_i + clean context)."""
    eps = torch.randn(samples, data.num_frames, data.dim, generator=generator, dtype=torch.float64)
    context, _ = data.sample(samples, generator)
    bidirectional = BidirectionalTeacher(data)
    ar = ARTeacher(data)
    causal_vis = block_causal_visibility(data.num_frames)
    own_vis = torch.eye(data.num_frames, dtype=torch.bool)
    eta_bi = non_injectivity_index(
        lambda u: bidirectional.flow_map(u).end, eps, causal_vis, resamples, generator=generator
    )
    eta_ar = non_injectivity_index(lambda u: ar.flow_map(u, context).end, eps, own_vis, resamples, generator=generator)
    return {PairTeacher.BIDIRECTIONAL.value: eta_bi.tolist(), PairTeacher.AR.value: eta_ar.tolist()}


def injectivity_table(frames: int, dim: int, samples: int, resamples: int, seed: int) -> str:
    """A markdown table of :func:`pair_injectivity` on the Gaussian and mixture presets."""
    gen = torch.Generator().manual_seed(seed)
    rows = ["| dataset | pairs | " + " | ".join(f"frame {i}" for i in range(frames)) + " |"]
    rows.append("|---|---|" + "---|" * frames)
    for data in (ar1_gaussian(frames, dim), independent_gaussian(frames, dim), shared_mode_mixture(frames, dim)):
        eta = pair_injectivity(data, samples, resamples, gen)
        for kind, values in eta.items():
            rows.append(f"| {data.name} | {kind} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(rows)
