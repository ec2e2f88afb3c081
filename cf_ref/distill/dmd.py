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

Both tracks also take from here the two remaining pieces of the DMD stage:

* the levels σ of the scores and the critic (:func:`dmd_sigmas`): one per video,
  :math:`\sigma = \mathrm{clamp}(\mathrm{shift}(u), t_{min}/1000, t_{max}/1000)`, ``u ~ U[0, 1)``, as the
  authors' ``model/dmd.py`` (``t ~ U{0…999}``, shifted by 5, clamped to [20, 980]);
* the generator's training samples: :func:`self_rollout_samples` (Self / Causal Forcing) or
  :func:`data_context_samples` (CausVid), chosen by :class:`cf_ref.recipes.GeneratorInput`.

:func:`score_on_grid` reproduces how the authors' score wrappers read a velocity (on a 1000-step grid of their own
shift, 8, while the noise uses the model's, 5); cf-ref's default uses the exact σ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.granularity import Granularity, sample_training_sigmas
from cf_ref.losses import flow_matching_loss
from cf_ref.rollout import BlockwiseModel, few_step_rollout
from cf_ref.schedule import broadcast_sigma, interpolate, x0_from_velocity
from cf_ref.solvers import VelocityField
from cf_ref.time_grid import nearest_grid_sigma


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


def score_on_grid(score: VelocityField, grid: Tensor) -> VelocityField:
    r"""A score network read the way the authors' ``WanDiffusionWrapper`` reads it: :math:`\hat x_0 = x - \tilde\sigma
    v(x, \sigma)` with :math:`\tilde\sigma` the point of ``grid`` nearest to σ
    (:func:`cf_ref.time_grid.nearest_grid_sigma`), returned as the velocity

    .. math::  v'(x, \sigma) = v(x, \sigma)\,\tilde\sigma / \sigma ,

    so that every use of the field sees what the wrapper computes: :math:`x - \sigma v' = x - \tilde\sigma v` (the
    scores' :math:`\hat x_0` in :func:`dmd_generator_loss`), and the critic's flow prediction
    :math:`(x - \hat x_0)/\sigma = v'` in :func:`critic_loss`. The network is still told σ. σ > 0 (the DMD levels
    are ≥ 0.02). x: ``[B, F, *S]``; sigma: ``[B, F]`` (or ``[B]``, 0-d).
    """

    def field(x: Tensor, sigma: Tensor) -> Tensor:
        s = torch.as_tensor(sigma, device=x.device)
        if bool((s <= 0).any()):
            raise ValueError("score_on_grid needs levels σ > 0 (the DMD levels are clamped to [0.02, 0.98])")
        ratio = nearest_grid_sigma(s.to(torch.float64), grid) / s.to(torch.float64)
        return score(x, sigma) * broadcast_sigma(ratio, x)

    return field


def critic_loss(
    fake_score: VelocityField, x: Tensor, sigma: Tensor, eps: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Denoising (flow-matching) loss of the fake score on generator samples ``sg(x)``: ``x, eps [B, F, *S]``, ``sigma [B, F]``."""
    x = x.detach()
    x_sigma = interpolate(x, eps, sigma)
    return flow_matching_loss(fake_score(x_sigma, sigma), x, eps, weight)


def dmd_sigmas(
    batch_size: int,
    num_frames: int,
    shift: float,
    t_min: float = 20.0,
    t_max: float = 980.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Levels of the DMD scores and the critic, ``[B, F]`` float32: one per video,
    :math:`\sigma = \mathrm{clamp}(\mathrm{shift}(u),\ t_{min}/1000,\ t_{max}/1000)`, ``u ~ U[0, 1)``.

    With the published shift 5 and [20, 980], 0.4 % of the draws sit at the floor σ = 0.02 and 9.3 % at the
    ceiling 0.98 (:func:`cf_ref.granularity.sample_training_sigmas` with ``Granularity.SAMPLE``).
    """
    return sample_training_sigmas(
        batch_size, num_frames, Granularity.SAMPLE, shift=shift, t_min=t_min, t_max=t_max, generator=generator,
        device=device,
    )  # fmt: skip


def self_rollout_samples(
    model: BlockwiseModel,
    noise: Tensor,
    block_size: int,
    sigmas: Tensor,
    cache: object,
    exit_steps: list[int],
    context_noise: float = 0.0,
    generator: torch.Generator | None = None,
    first_sigmas: Tensor | None = None,
) -> Tensor:
    r"""Self Forcing's generator samples ``[B, F, *S]``: the few-step AR rollout on the generator's own outputs.

    Block j is denoised from ``noise[:, block j]`` down the few-step list ``sigmas [K]`` and stops at
    ``exit_steps[j]`` (:func:`cf_ref.rollout.sample_exit_steps`); only that call carries gradient when grad
    mode is on (stochastic gradient truncation), and the block is committed to ``cache`` without gradient at
    ``context_noise`` (:func:`cf_ref.rollout.few_step_rollout`); ``first_sigmas`` ``[K_0]``, block 0's own list
    (Causal Forcing++'s 1-/2-step students: the 4-step list), its exit step in ``[0, K_0)``.
    """
    rollout = few_step_rollout(
        model, noise, block_size, sigmas, cache, exit_steps, context_noise, generator, first_sigmas
    )
    return rollout.x0


def data_context_samples(
    teacher_forced: VelocityField, x0: Tensor, noise: Tensor, sigmas: Tensor, index: Tensor
) -> Tensor:
    r"""CausVid's generator samples ``[B, F, *S]``: one teacher-forced step from noised data, no rollout.

    Each block of the data ``x0 [B, F, *S]`` is noised to the few-step level :math:`\sigma_k`,
    ``k = index [B, F]`` (one draw per block, :func:`cf_ref.granularity.sample_indices`), and the generator
    predicts :math:`\hat x_0 = x - \sigma_k v_\theta(x, \sigma_k \mid x_{0,<j})` with the clean data of
    earlier blocks as context: ``teacher_forced(x, σ)`` is the generator evaluated teacher-forced on ``x0``.
    """
    sigma = sigmas.to(device=x0.device, dtype=x0.dtype)[index.to(x0.device)]
    x = interpolate(x0, noise, sigma)
    return x0_from_velocity(x, teacher_forced(x, sigma), sigma)
