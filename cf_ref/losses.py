r"""Regression losses shared by every stage.

All take states ``[B, F, *S]`` and reduce to a scalar; optional per-frame weights ``[B, F]`` (the
schedule's loss weighting, or a 0/1 mask of the frames that carry loss).

* flow matching: :math:`\mathcal L = \mathbb E\, w(\sigma)\, \lVert v_\theta(x_\sigma,\sigma) - (\varepsilon - x_0)\rVert^2`
  (the AR teacher, the base model, and the DMD critic all train with it);
* x0 regression: :math:`\mathcal L = \mathbb E\, \lVert \hat x_0 - x_0^\star\rVert^2` (ODE distillation).
"""

from __future__ import annotations

import enum
import math

import torch
from torch import Tensor

from cf_ref.schedule import velocity_target


class LossWeighting(enum.Enum):
    """Per-σ weight of the flow-matching loss."""

    UNIFORM = "uniform"
    BELL = "bell"  # Wan / Self Forcing's bell-shaped weight over the timestep


def loss_weight(sigma: Tensor, weighting: LossWeighting = LossWeighting.UNIFORM) -> Tensor:
    r"""Per-σ weight of the flow-matching loss, same shape as ``sigma``.

    ``UNIFORM``: 1. ``BELL``: the bell over the timestep used by Wan / Self Forcing,
    :math:`w(t) = \frac{e^{-2((t-500)/1000)^2} - e^{-1/2}}{Z}` with ``t = 1000σ``, normalised so that
    its mean over a uniform t ∈ [0, 1000] is 1 (:math:`Z = \int_0^1 e^{-2(u-1/2)^2}du - e^{-1/2}`).
    """
    if not isinstance(weighting, LossWeighting):
        raise ValueError(f"weighting must be a LossWeighting member, got {weighting!r}")
    if weighting is LossWeighting.UNIFORM:
        return torch.ones_like(sigma)
    u = sigma  # t / 1000
    bump = torch.exp(-2 * (u - 0.5) ** 2) - math.exp(-0.5)
    z = math.sqrt(math.pi / 2) * math.erf(1 / math.sqrt(2)) - math.exp(-0.5)
    return bump / z


def per_frame_mse(pred: Tensor, target: Tensor) -> Tensor:
    r""":math:`\ell_{bf} = \lVert \mathrm{pred}_{bf} - \mathrm{target}_{bf}\rVert^2 / |S|`: ``[B, F, *S] -> [B, F]``.

    Computed in float32 whatever the input dtype: half-precision inputs are upcast, float64 inputs are rounded
    (relative error ~1e-7), and the result is float32.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim < 2:
        raise ValueError(f"expected [B, F, *S] tensors, got shape {tuple(pred.shape)}")
    diff = pred.float() - target.float()
    return diff.pow(2).reshape(*diff.shape[:2], -1).mean(dim=2)  # [B, F] inputs (empty S) give the squared error


def weighted_mean(per_frame: Tensor, weight: Tensor | None = None) -> Tensor:
    r""":math:`\sum_{b,f} w_{bf}\,\ell_{bf} / (B F)`; ``weight=None`` is the plain mean. per_frame, weight: ``[B, F]``."""
    if weight is None:
        return per_frame.mean()
    if weight.shape != per_frame.shape:
        raise ValueError(f"weight {tuple(weight.shape)} must be per frame {tuple(per_frame.shape)}")
    return (per_frame * weight.to(per_frame.dtype)).mean()


def flow_matching_loss(v_pred: Tensor, x0: Tensor, eps: Tensor, weight: Tensor | None = None) -> Tensor:
    r"""Conditional flow matching :math:`\mathrm{mean}_{b,f}\, w_{bf} \lVert v_\theta - (\varepsilon - x_0)\rVert^2 / |S|`.

    v_pred, x0, eps: ``[B, F, *S]``; weight: ``[B, F]`` or None.
    """
    return weighted_mean(per_frame_mse(v_pred, velocity_target(x0, eps)), weight)


def x0_regression_loss(x0_pred: Tensor, x0_target: Tensor, weight: Tensor | None = None) -> Tensor:
    r"""ODE-distillation regression :math:`\mathrm{mean}_{b,f}\, w_{bf}\lVert \hat x_0 - x_0^\star\rVert^2/|S|`. Shapes ``[B, F, *S]``."""
    return weighted_mean(per_frame_mse(x0_pred, x0_target), weight)


def finite_or_raise(loss: Tensor, what: str = "loss") -> Tensor:
    """Return ``loss`` if finite, else raise ``FloatingPointError`` naming it (training keeps its last checkpoint)."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise FloatingPointError(f"{what} is not finite ({loss.detach().flatten()[:4].tolist()})")
    return loss
