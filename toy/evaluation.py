r"""Measurements of the toy experiment: regression errors of students, sample quality of generators.

* regression error of a student at its σ list against a reference ``[B, F, d]`` (the teacher's flow map, or
  the conditional expectation): per frame, root-mean-square over samples and dims,
  :math:`\mathrm{err}_i = \big(\tfrac1{Bd}\sum_{b,j}(\hat x_{0,bij} - y_{bij})^2\big)^{1/2}`, for each state and
  pooled over the student's K states (the square root of the per-frame ODE-regression loss);
* sample quality of ``[n, F, d]`` samples against fresh data: per-frame variance (summed over dims) and
  its ratio to the data's, energy distance on a subsample, and for mixtures the off-manifold fraction and
  mode coverage (:mod:`toy.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from toy import metrics
from toy.data import SequenceData


def rms_per_frame(pred: Tensor, reference: Tensor) -> Tensor:
    """Root-mean-square over samples and dims: ``[B, F, d]`` × 2 → ``[F]`` (float64)."""
    if pred.shape != reference.shape or pred.ndim != 3:
        raise ValueError(f"need two [B, F, d] tensors of one shape, got {tuple(pred.shape)}, {tuple(reference.shape)}")
    return (pred.double() - reference.double()).pow(2).mean(dim=(0, 2)).sqrt()


def pooled_rms(per_state: Tensor) -> Tensor:
    """Pool per-state RMS errors ``[K, F]`` into ``[F]``: the square root of the mean squared error over states."""
    return per_state.pow(2).mean(dim=0).sqrt()


@dataclass(frozen=True)
class SampleSizes:
    """How many samples the sample-quality metrics use.

    ``variance``: samples for the per-frame variance and the mixture metrics (the variance's relative
    standard error is about ``sqrt(2/n)``); ``energy``: the first ``energy`` of them against as many reference
    points for the energy distance (quadratic cost).
    """

    variance: int = 8192
    energy: int = 2048

    def __post_init__(self) -> None:
        if self.energy < 2 or self.variance < self.energy:
            raise ValueError(f"need 2 <= energy <= variance, got {self}")


def sample_quality(samples: Tensor, reference: Tensor, data: SequenceData, sizes: SampleSizes) -> dict:
    """JSON-ready sample metrics of ``samples [n, F, d]`` against fresh data ``reference [n, F, d]``.

    Keys: ``sample_variance`` and ``variance_ratio`` (per frame), ``energy_distance`` and, for mixtures,
    ``off_manifold_fraction``, ``mode_coverage``, ``mode_shares``.
    """
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    if not bool(torch.isfinite(samples).all()):
        raise FloatingPointError("samples contain NaN/inf")
    var = metrics.per_frame_variance(samples)
    ref_var = metrics.per_frame_variance(reference)
    e = sizes.energy
    out = {
        "sample_variance": var.tolist(),
        "variance_ratio": (var / ref_var).tolist(),
        "energy_distance": metrics.energy_distance(samples[:e], reference[:e]),
    }
    if data.num_components > 1:
        out["off_manifold_fraction"] = metrics.off_manifold_fraction(samples, data)
        out["mode_coverage"] = metrics.mode_coverage(samples, data)
        out["mode_shares"] = metrics.mode_shares(samples, data).tolist()
    return out


def energy_noise_floor(data: SequenceData, reference: Tensor, draws: int, generator: torch.Generator) -> dict:
    """Energy distance of ``draws`` independent fresh data sets (size of ``reference``) against ``reference``.

    An exact sampler scores within this spread: ``{"mean", "std", "draws": [...]}``.
    """
    values = [metrics.energy_distance(data.sample(len(reference), generator)[0], reference) for _ in range(draws)]
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if draws > 1 else 0.0, "draws": values}


def data_frame_std(data: SequenceData) -> Tensor:
    r"""Per-frame standard deviation of the data, RMS over dims: :math:`\sqrt{\mathrm{tr}\,\mathrm{Var}(x_i)/d}`, ``[F]``."""
    cov = data.covariance()
    diag = data.unflatten(torch.diagonal(cov))  # [F, d]
    return diag.mean(dim=-1).sqrt()
