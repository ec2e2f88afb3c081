r"""Sample-quality metrics for toy sequences ``x: [n, N, d]`` against a :class:`toy.data.SequenceData`.

* energy distance :math:`\mathcal E(P,Q) = 2\mathbb E\lVert X-Y\rVert - \mathbb E\lVert X-X'\rVert - \mathbb E\lVert Y-Y'\rVert`
  (U-statistics for the within-sample terms, so it is unbiased and ≈ 0 for equal laws);
* sliced Wasserstein-2 over random directions (1-D W2 by sorting);
* per-frame variance :math:`\mathrm{tr}\,\mathrm{Var}(x_i)` (summed over the d dims);
* for mixtures: squared Mahalanobis distance to every component, the *off-manifold fraction* (share of
  samples whose squared Mahalanobis distance to **every** component exceeds the χ²_D quantile at
  ``level``, default 0.999 — so data itself has ≤ 0.1 % off-manifold), and *mode coverage* (share of
  components that receive at least ``min_share`` of their expected number of samples).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from scipy.special import chdtri
from torch import Tensor

from toy.data import SequenceData

OFF_MANIFOLD_LEVEL = 0.999


def _flat(x: Tensor) -> Tensor:
    if x.ndim != 3:
        raise ValueError(f"samples must be [n, N, d], got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1).double()


def _same_layout(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    a, b = _flat(x), _flat(y)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"samples must share the sequence shape [N, d], got {tuple(x.shape[1:])} and {tuple(y.shape[1:])}"
        )
    return a, b


def _within(a: Tensor) -> Tensor:
    """Mean distance over the ordered pairs i ≠ j of ``a: [n, D]`` (the U-statistic's within-sample term)."""
    n = len(a)
    if n < 2:
        raise ValueError("energy distance needs at least 2 samples on each side")
    return torch.cdist(a, a).sum() / (n * (n - 1))


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance between samples ``x: [n, N, d]`` and ``y: [m, N, d]`` (Euclidean on the flattened sequence)."""
    return energy_distances([x], y)[0]


def energy_distances(xs: Iterable[Tensor], y: Tensor) -> list[float]:
    """:func:`energy_distance` of every sample ``x: [n, N, d]`` of ``xs`` against one reference ``y: [m, N, d]``
    (the reference's within-sample term computed once)."""
    b = _flat(y)
    yy = _within(b)
    out = []
    for x in xs:
        a, _ = _same_layout(x, y)
        xx = _within(a)
        out.append(float(2 * torch.cdist(a, b).mean() - xx - yy))
    return out


def sliced_wasserstein2(
    x: Tensor, y: Tensor, num_projections: int = 128, generator: torch.Generator | None = None
) -> float:
    r"""Sliced W2 between equal-size samples ``[n, N, d]``: :math:`\big(\mathbb E_\theta W_2^2(\theta^\top X, \theta^\top Y)\big)^{1/2}`
    over ``num_projections`` uniform unit directions θ, each 1-D W2² the mean squared gap of the sorted projections."""
    a, b = _same_layout(x, y)
    if len(a) != len(b):
        raise ValueError(f"sliced W2 here needs equal sample sizes, got {len(a)} and {len(b)}")
    dirs = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return float((pa - pb).pow(2).mean().sqrt())


def per_frame_variance(x: Tensor) -> Tensor:
    """:math:`\\mathrm{tr}\\,\\mathrm{Var}(x_i)` per frame: ``[n, N, d] -> [N]``."""
    if x.ndim != 3:
        raise ValueError(f"samples must be [n, N, d], got {tuple(x.shape)}")
    return x.double().var(dim=0, unbiased=True).sum(dim=-1)


def mahalanobis_sq(x: Tensor, data: SequenceData) -> Tensor:
    r""":math:`(x - \mu_k)^\top \Sigma_k^{-1} (x - \mu_k)` of each sample to each component: ``[n, N, d] -> [n, K]``."""
    flat = _flat(x)
    if x.shape[1:] != (data.num_frames, data.dim):
        raise ValueError(f"samples must be [n, {data.num_frames}, {data.dim}] for {data.name}, got {tuple(x.shape)}")
    mix = data.mixture
    chol = torch.linalg.cholesky(mix.covs)
    r = flat[:, None, :] - mix.means[None]  # [n, K, D]
    sol = torch.linalg.solve_triangular(chol[None], r[..., None], upper=False)[..., 0]
    return sol.pow(2).sum(-1)


def off_manifold_threshold(data: SequenceData, level: float = OFF_MANIFOLD_LEVEL) -> float:
    """χ²_D quantile at ``level`` with D = N·d: the squared Mahalanobis radius holding ``level`` of a component
    (the inverse survival function ``chdtri(D, 1 - level)``; ``scipy.special``, not ``scipy.stats``: 0.3 s less import
    in every worker process)."""
    return float(chdtri(data.mixture.dim, 1.0 - level))


def off_manifold_fraction(x: Tensor, data: SequenceData, level: float = OFF_MANIFOLD_LEVEL) -> float:
    """Share of samples farther than the ``level`` χ² radius from every component."""
    d2 = mahalanobis_sq(x, data)
    return float((d2.min(dim=1).values > off_manifold_threshold(data, level)).double().mean())


def mode_shares(x: Tensor, data: SequenceData) -> Tensor:
    r"""Share of samples assigned to each component by maximum responsibility,
    :math:`\arg\max_k \log\pi_k - \tfrac12(d_k^2 + \log\det\Sigma_k)`: ``[n, N, d] -> [K]``."""
    d2 = mahalanobis_sq(x, data)
    logdet = 2 * torch.log(torch.diagonal(torch.linalg.cholesky(data.mixture.covs), dim1=-2, dim2=-1)).sum(-1)
    score = data.mixture.log_weights[None] - 0.5 * (d2 + logdet[None])
    assign = score.argmax(dim=1)
    return torch.bincount(assign, minlength=data.num_components).double() / len(assign)


def mode_coverage(x: Tensor, data: SequenceData, min_share: float = 0.25) -> float:
    """Share of components holding at least ``min_share`` × their weight of the samples."""
    shares = mode_shares(x, data)
    weights = data.mixture.log_weights.exp()
    return float((shares >= min_share * weights).double().mean())


def summary(x: Tensor, reference: Tensor, data: SequenceData) -> dict[str, float | list[float]]:
    """All metrics of samples ``x`` against fresh data ``reference`` (both ``[n, N, d]``) as a JSON-ready dict."""
    out: dict[str, float | list[float]] = {
        "energy_distance": energy_distance(x, reference),
        "sample_variance": per_frame_variance(x).tolist(),
        "variance_ratio": (per_frame_variance(x) / per_frame_variance(reference)).tolist(),
    }
    if data.num_components > 1:
        out["off_manifold_fraction"] = off_manifold_fraction(x, data)
        out["mode_coverage"] = mode_coverage(x, data)
    if not math.isfinite(out["energy_distance"]):
        raise FloatingPointError("energy distance is not finite: samples contain NaN/inf")
    return out
