r"""Measurements of the toy experiment: regression errors of students, sample quality of generators.

* regression error of a student at its σ list against a reference ``[B, F, d]`` (the teacher's flow map, or
  the conditional expectation): per frame, root-mean-square over samples and dims,
  :math:`\mathrm{err}_i = \big(\tfrac1{Bd}\sum_{b,j}(\hat x_{0,bij} - y_{bij})^2\big)^{1/2}`, for each state and
  pooled over the student's K states (the square root of the per-frame ODE-regression loss);
* :func:`regression_errors` — a trained student's errors on held-out pairs against both references at once, with
  the Monte Carlo noise of the conditional-expectation estimate removed in quadrature;
* sample quality of ``[n, F, d]`` samples against fresh data: per-frame variance (summed over dims) and
  its ratio to the data's, energy distance on a subsample, and for mixtures the off-manifold fraction and
  mode coverage (:mod:`toy.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cf_ref.injectivity import ConditionalStatistics
from toy import metrics
from toy.data import SequenceData
from toy.pairs import PairSet
from toy.students import TrainedStudent, predict_x0


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

    The energy distance of an exact sampler's ``len(reference)`` samples (drawn independently of ``reference``)
    against the same reference is exchangeable with these draws, so it exceeds the r-th smallest of N draws with
    probability (N + 1 - r)/(N + 1) (:func:`toy.claims.energy_threshold`). Returns ``{"mean", "std", "draws": [...]}``.
    """
    fresh = (data.sample(len(reference), generator)[0] for _ in range(draws))
    values = metrics.energy_distances(fresh, reference)
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if draws > 1 else 0.0, "draws": values}


def data_frame_std(data: SequenceData) -> Tensor:
    r"""Per-frame standard deviation of the data, RMS over dims: :math:`\sqrt{\mathrm{tr}\,\mathrm{Var}(x_i)/d}`, ``[F]``."""
    cov = data.covariance()
    diag = data.unflatten(torch.diagonal(cov))  # [F, d]
    return diag.mean(dim=-1).sqrt()


def regression_errors(
    student: TrainedStudent, pairs: PairSet, ce_pairs: PairSet, stats: list[ConditionalStatistics], num_resamples: int
) -> dict[str, list]:
    r"""Per-frame RMS errors ``[F]`` of a student on held-out pairs, pooled over its states, and per state ``[K, F]``.

    ``error_to_flow_map`` on ``pairs``; on ``ce_pairs`` (whose conditional statistics ``stats``, one per kept σ of
    ``ce_pairs``, were estimated with ``num_resamples`` copies): ``error_to_conditional_expectation``, the flow-map
    error on the same pairs (``error_to_flow_map_ce_subset``, the like-for-like comparison), the Monte Carlo
    standard error of the estimate (RMS of :math:`\sqrt{\mathrm{Var}/M}`) and the error with that noise removed,
    :math:`\sqrt{\max(0, e^2 - \mathrm{Var}/M)}` (unbiased for the squared error); and the median over samples of
    the per-sample error to the flow map (RMS over dims and states).
    """
    to_map, to_map_subset, to_ce, mc, per_sample = [], [], [], [], []
    for sigma in student.sigmas.tolist():
        k = pairs.state_index(sigma)
        x0 = predict_x0(student.net, pairs.states[:, k], sigma, pairs.context)
        to_map.append(rms_per_frame(x0, pairs.target))
        per_sample.append((x0.double() - pairs.target).pow(2).mean(dim=2))  # [B, F]
        x0_ce = predict_x0(student.net, ce_pairs.states[:, k], sigma, ce_pairs.context)
        to_ce.append(rms_per_frame(x0_ce, stats[k].mean))
        to_map_subset.append(rms_per_frame(x0_ce, ce_pairs.target))
        mc.append((stats[k].variance / num_resamples).mean(dim=(0, 2)).sqrt())
    to_map, to_ce, mc, to_map_subset = (torch.stack(v) for v in (to_map, to_ce, mc, to_map_subset))
    median = torch.stack(per_sample).mean(dim=0).median(dim=0).values.sqrt()
    debiased = (to_ce.pow(2) - mc.pow(2)).clamp_min(0).sqrt()
    return {
        "error_to_flow_map": pooled_rms(to_map).tolist(),
        "error_to_conditional_expectation": pooled_rms(to_ce).tolist(),
        "error_to_flow_map_ce_subset": pooled_rms(to_map_subset).tolist(),
        "error_to_conditional_expectation_debiased": pooled_rms(debiased).tolist(),
        "conditional_expectation_mc_error": pooled_rms(mc).tolist(),
        "median_error_to_flow_map": median.tolist(),
        "error_to_flow_map_per_state": to_map.tolist(),
        "error_to_conditional_expectation_per_state": to_ce.tolist(),
    }
