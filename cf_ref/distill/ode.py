r"""ODE distillation: regress a few-step student onto a teacher's PF-ODE end points.

Pairs come from :func:`cf_ref.solvers.integrate` (or :func:`cf_ref.rollout.ar_ode_sample`) with
``keep_at`` = the few-step σ list: ``states: [B, K, F, *S]`` at ``sigmas: [K]`` and ``target: [B, F, *S]``
the end point. Each training sample picks one of the K states per video or per block
(:func:`cf_ref.granularity.sample_indices` with the recipe's ``state_granularity``,
:data:`cf_ref.recipes.RECIPES`); the student sees it and predicts the end point:

.. math::  \mathcal L = \mathbb E_{k}\, \lVert x_{\sigma_k} - \sigma_k v_\theta(x_{\sigma_k}, \sigma_k) - \Phi(\varepsilon) \rVert^2 .

The minimiser is :math:`\mathbb E[\Phi(\varepsilon)_i \mid \text{student inputs}]`; it equals the
teacher's flow map only when the pairs are frame-level injective (:mod:`cf_ref.injectivity`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.losses import x0_regression_loss
from cf_ref.schedule import x0_from_velocity
from cf_ref.solvers import VelocityField


def gather_states(states: Tensor, sigmas: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Pick ``x[b, f] = states[b, index[b, f], f]`` and its level.

    states: ``[B, K, F, *S]``; sigmas: ``[K]``; index: ``[B, F]`` long. Returns ``(x [B, F, *S], sigma [B, F])``.
    """
    b, k, f = states.shape[:3]
    if index.shape != (b, f):
        raise ValueError(f"index must be [B, F] = [{b}, {f}], got {tuple(index.shape)}")
    if sigmas.shape != (k,):
        raise ValueError(f"sigmas must be [K] = [{k}], got {tuple(sigmas.shape)}")
    idx = index.to(states.device).reshape(b, 1, f, *([1] * (states.ndim - 3)))
    x = torch.take_along_dim(states, idx.expand(b, 1, f, *states.shape[3:]), dim=1).squeeze(1)
    sigma = sigmas.to(device=states.device, dtype=states.dtype)[index.to(states.device)]
    return x, sigma


def ode_regression_loss(
    student: VelocityField, states: Tensor, sigmas: Tensor, target: Tensor, index: Tensor
) -> Tensor:
    r""":math:`\lVert x - \sigma v_\theta(x,\sigma) - x_0^\star\rVert^2` at the states chosen by ``index``.

    states: ``[B, K, F, *S]``; sigmas: ``[K]``; target: ``[B, F, *S]``; index: ``[B, F]``.
    """
    if target.shape != states[:, 0].shape:
        raise ValueError(f"target {tuple(target.shape)} must match a state {tuple(states[:, 0].shape)}")
    x, sigma = gather_states(states, sigmas, index)
    x0 = x0_from_velocity(x, student(x, sigma), sigma)
    return x0_regression_loss(x0, target)
