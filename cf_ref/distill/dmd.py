r"""Distribution matching distillation (DMD), as used by Self Forcing and Causal Forcing.

For a generator sample x (``[B, F, *S]``, from a self-forcing rollout), a level σ and fresh noise ε,
:math:`x_\sigma = (1-\sigma)x + \sigma\varepsilon`; the real score (the bidirectional teacher, with
guidance) and the fake score (a critic trained on generator samples) give clean estimates
:math:`\hat x^{\text{real}}_0, \hat x^{\text{fake}}_0`. The DMD gradient, normalised per sample,

.. math::  g = \frac{\hat x^{\text{fake}}_0 - \hat x^{\text{real}}_0}{\operatorname{mean}|x - \hat x^{\text{real}}_0|},
           \qquad \mathcal L_G = \tfrac12 \lVert x - \mathrm{sg}(x - g)\rVert^2 / |x|,

so :math:`\nabla_x \mathcal L_G = g/|x|` pushes x from the fake towards the real distribution
(an estimate of the reverse-KL gradient). The critic minimises the flow-matching loss on
:math:`\mathrm{sg}(x)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.losses import flow_matching_loss
from cf_ref.schedule import interpolate, x0_from_velocity
from cf_ref.solvers import VelocityField


def dmd_gradient(x: Tensor, real_x0: Tensor, fake_x0: Tensor, eps: float = 1e-12) -> Tensor:
    r""":math:`g = (\hat x_0^{\text{fake}} - \hat x_0^{\text{real}}) / \operatorname{mean}_{\neg b}|x - \hat x_0^{\text{real}}|`. All ``[B, ...]``."""
    if not (x.shape == real_x0.shape == fake_x0.shape):
        raise ValueError(f"shapes differ: x {tuple(x.shape)}, real {tuple(real_x0.shape)}, fake {tuple(fake_x0.shape)}")
    dims = tuple(range(1, x.ndim))
    normaliser = (x.detach() - real_x0).abs().mean(dim=dims, keepdim=True).clamp_min(eps)
    return (fake_x0 - real_x0) / normaliser


def dmd_surrogate_loss(x: Tensor, grad: Tensor) -> Tensor:
    r""":math:`\tfrac12\,\mathrm{mse}(x, \mathrm{sg}(x - g))`, whose gradient w.r.t. x is ``g / x.numel()``."""
    x64 = x.double()
    return 0.5 * torch.nn.functional.mse_loss(x64, (x64 - grad.double()).detach()).to(x.dtype)


def dmd_generator_loss(
    x: Tensor, real_score: VelocityField, fake_score: VelocityField, sigma: Tensor, eps: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Generator objective for a sample ``x: [B, F, *S]`` (with grad) at levels ``sigma: [B, F]``, noise ``eps``.

    Both scores are evaluated without gradient on :math:`x_\\sigma` built from ``sg(x)``. Returns the loss
    and diagnostics (gradient norm, normaliser).
    """
    with torch.no_grad():
        x_sigma = interpolate(x.detach(), eps, sigma)
        real_x0 = x0_from_velocity(x_sigma, real_score(x_sigma, sigma), sigma)
        fake_x0 = x0_from_velocity(x_sigma, fake_score(x_sigma, sigma), sigma)
        g = dmd_gradient(x.detach(), real_x0, fake_x0)
    loss = dmd_surrogate_loss(x, g)
    return loss, {"dmd_grad_norm": float(g.float().norm()), "real_fake_gap": float((real_x0 - fake_x0).abs().mean())}


def critic_loss(
    fake_score: VelocityField, x: Tensor, sigma: Tensor, eps: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Denoising (flow-matching) loss of the fake score on generator samples ``sg(x)``: ``x, eps [B, F, *S]``, ``sigma [B, F]``."""
    x = x.detach()
    x_sigma = interpolate(x, eps, sigma)
    return flow_matching_loss(fake_score(x_sigma, sigma), x, eps, weight)
