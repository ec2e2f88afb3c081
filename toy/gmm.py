r"""Exact Gaussian-mixture algebra under the rectified-flow forward process.

A mixture :math:`p(x_0) = \sum_k \pi_k \mathcal N(x_0; \mu_k, \Sigma_k)` over ``D`` coordinates, noised
coordinate-wise with levels :math:`\sigma \in [0,1]^D` (a common σ, or one per frame):

.. math::
    x_\sigma = A x_0 + S\varepsilon,\quad A = \mathrm{diag}(1-\sigma),\ S = \mathrm{diag}(\sigma),
    \qquad x_\sigma \mid k \sim \mathcal N(A\mu_k,\ C_k),\ C_k = A\Sigma_k A + S^2 .

Posterior quantities are Gaussian regressions per component, mixed with the responsibilities
:math:`w_k(x) \propto \pi_k \mathcal N(x; A\mu_k, C_k)`:

.. math::
    \mathbb E[x_0\mid x,k] = \mu_k + \Sigma_k A C_k^{-1}(x - A\mu_k),\qquad
    \mathbb E[\varepsilon\mid x,k] = S C_k^{-1}(x - A\mu_k),

and the exact PF-ODE velocity is :math:`v(x) = \mathbb E[\varepsilon - x_0 \mid x]`, finite at σ = 0
and σ = 1. Conditioning a mixture on a sub-vector gives again a mixture (:func:`condition`).

Shapes: mixture parameters may carry a leading batch dimension ``B`` (a different mixture per sample,
as after conditioning on a per-sample context); states are ``[B, M, D]`` with ``M`` copies per mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Mixture:
    """Gaussian mixture over D coordinates, optionally batched.

    log_weights: ``[K]`` or ``[B, K]`` (normalised); means: ``[K, D]`` or ``[B, K, D]``; covs: ``[K, D, D]``
    (never batched: conditioning changes means and weights, not covariances).
    """

    log_weights: Tensor
    means: Tensor
    covs: Tensor

    def __post_init__(self) -> None:
        k, d = self.covs.shape[0], self.covs.shape[-1]
        if self.covs.shape != (k, d, d):
            raise ValueError(f"covs must be [K, D, D], got {tuple(self.covs.shape)}")
        if self.means.shape[-2:] != (k, d) or self.means.ndim not in (2, 3):
            raise ValueError(f"means must be [K, D] or [B, K, D] with K={k}, D={d}, got {tuple(self.means.shape)}")
        if self.log_weights.shape[-1] != k or self.log_weights.ndim != self.means.ndim - 1:
            raise ValueError(f"log_weights must be [K] or [B, K] matching means, got {tuple(self.log_weights.shape)}")

    @property
    def dim(self) -> int:
        return self.covs.shape[-1]

    @property
    def num_components(self) -> int:
        return self.covs.shape[0]

    @property
    def batched(self) -> bool:
        return self.means.ndim == 3


def _batched(mix: Mixture) -> tuple[Tensor, Tensor]:
    """log_weights ``[B|1, K]`` and means ``[B|1, K, D]``."""
    if mix.batched:
        return mix.log_weights, mix.means
    return mix.log_weights[None], mix.means[None]


def posterior_means(mix: Mixture, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(\mathbb E[x_0\mid x_\sigma], \mathbb E[\varepsilon\mid x_\sigma])`, each ``[B, M, D]``.

    x: ``[B, M, D]`` (``B`` = 1 or the mixture's batch); sigma: a float / 0-d tensor (shared level), or a
    tensor broadcastable to ``x`` (a level per coordinate).
    """
    if x.ndim != 3 or x.shape[-1] != mix.dim:
        raise ValueError(f"x must be [B, M, D={mix.dim}], got {tuple(x.shape)}")
    log_w, means = _batched(mix)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    eye = torch.eye(mix.dim, dtype=x.dtype, device=x.device)
    covs = mix.covs.to(x)
    if s.numel() == 1:
        a = 1 - s.reshape(())
        c = a * a * covs + (s.reshape(()) ** 2) * eye  # [K, D, D]
        chol = torch.linalg.cholesky(c)
        c_inv = torch.cholesky_inverse(chol)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
        r = x[:, :, None, :] - a * means[:, None]  # [B, M, K, D]
        z = torch.einsum("kde,bmke->bmkd", c_inv, r)
        ex0 = means[:, None] + a * torch.einsum("kde,bmke->bmkd", covs, z)
        eeps = s.reshape(()) * z
    else:
        s = torch.broadcast_to(s, x.shape)
        a = 1 - s
        c = covs[None, None] * a[:, :, None, :, None] * a[:, :, None, None, :]
        c = c + torch.diag_embed(s * s)[:, :, None]  # [B, M, K, D, D]
        chol = torch.linalg.cholesky(c)
        r = x[:, :, None, :] - a[:, :, None, :] * means[:, None]
        z = torch.cholesky_solve(r[..., None], chol)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [B, M, K]
        ex0 = means[:, None] + torch.einsum("kde,bmke->bmkd", covs, a[:, :, None, :] * z)
        eeps = s[:, :, None, :] * z
    log_lik = -0.5 * ((r * z).sum(-1) + logdet + mix.dim * math.log(2 * math.pi))
    resp = torch.softmax(log_w[:, None] + log_lik, dim=-1)[..., None]  # [B, M, K, 1]
    return (resp * ex0).sum(2), (resp * eeps).sum(2)


def velocity(mix: Mixture, x: Tensor, sigma: float | Tensor) -> Tensor:
    r"""Exact PF-ODE velocity :math:`\mathbb E[\varepsilon - x_0 \mid x_\sigma]`: ``[B, M, D]`` (shapes as :func:`posterior_means`)."""
    ex0, eeps = posterior_means(mix, x, sigma)
    return eeps - ex0


def log_prob(mix: Mixture, x: Tensor) -> Tensor:
    r""":math:`\log\sum_k \pi_k\,\mathcal N(x; \mu_k, \Sigma_k)` of clean points ``x: [B, M, D]`` → ``[B, M]``."""
    log_w, means = _batched(mix)
    chol = torch.linalg.cholesky(mix.covs.to(x))
    r = x[:, :, None, :] - means[:, None]  # [B, M, K, D]
    sol = torch.linalg.solve_triangular(chol, r[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    ll = -0.5 * ((sol * sol).sum(-1) + logdet + mix.dim * math.log(2 * math.pi))
    return torch.logsumexp(log_w[:, None] + ll, dim=-1)


def marginal(mix: Mixture, index: Tensor) -> Mixture:
    """The mixture's marginal on coordinates ``index`` (``[D']`` long): select means and covariance blocks."""
    return Mixture(mix.log_weights, mix.means[..., index], mix.covs[:, index][:, :, index])


def condition(mix: Mixture, observed: Tensor, values: Tensor, free: Tensor) -> Mixture:
    r"""Mixture of ``x[free]`` given ``x[observed] = values`` (per sample), marginalising the rest.

    For each component: :math:`\mu_{f|o} = \mu_f + \Sigma_{fo}\Sigma_{oo}^{-1}(c - \mu_o)`,
    :math:`\Sigma_{f|o} = \Sigma_{ff} - \Sigma_{fo}\Sigma_{oo}^{-1}\Sigma_{of}`, and weights
    :math:`\pi_k \mathcal N(c; \mu_{o,k}, \Sigma_{oo,k})` renormalised. observed: ``[D_o]`` long, free: ``[D_f]``
    long, values: ``[B, D_o]``. Returns a batched mixture over ``D_f`` coordinates (``B`` rows).
    """
    if values.ndim != 2 or values.shape[1] != len(observed):
        raise ValueError(f"values must be [B, {len(observed)}], got {tuple(values.shape)}")
    both = set(observed.tolist()) & set(free.tolist())
    if both:
        raise ValueError(f"observed and free coordinates must not overlap, both contain {sorted(both)}")
    if len(observed) == 0:
        m = marginal(mix, free)
        b = values.shape[0]
        if m.batched:
            return m
        return Mixture(m.log_weights.expand(b, -1), m.means.expand(b, -1, -1), m.covs)
    log_w, means = _batched(mix)
    covs = mix.covs.to(values)
    s_oo = covs[:, observed][:, :, observed]
    s_fo = covs[:, free][:, :, observed]
    s_ff = covs[:, free][:, :, free]
    chol = torch.linalg.cholesky(s_oo)
    gain = torch.cholesky_solve(s_fo.transpose(1, 2), chol).transpose(1, 2)  # Σ_fo Σ_oo^{-1}: [K, Df, Do]
    r = values[:, None, :] - means[..., observed]  # [B, K, Do]
    cond_means = means[..., free] + torch.einsum("kfo,bko->bkf", gain, r)
    cond_covs = s_ff - gain @ s_fo.transpose(1, 2)
    cond_covs = 0.5 * (cond_covs + cond_covs.transpose(1, 2))
    sol = torch.linalg.solve_triangular(chol[None], r[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    ll = -0.5 * ((sol * sol).sum(-1) + logdet + len(observed) * math.log(2 * math.pi))
    new_log_w = torch.log_softmax(log_w + ll, dim=-1)
    return Mixture(new_log_w, cond_means, cond_covs)


def moments(mix: Mixture) -> tuple[Tensor, Tensor]:
    r"""Mean ``[D]`` and covariance ``[D, D]`` of an unbatched mixture: :math:`\sum\pi_k\mu_k`,
    :math:`\sum \pi_k(\Sigma_k + \mu_k\mu_k^\top) - \mu\mu^\top`."""
    if mix.batched:
        raise ValueError("moments() needs an unbatched mixture")
    w = mix.log_weights.exp()
    mean = w @ mix.means
    second = torch.einsum("k,kde->de", w, mix.covs + mix.means[:, :, None] * mix.means[:, None, :])
    return mean, second - torch.outer(mean, mean)


def sample(mix: Mixture, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""Draw ``n`` points from an unbatched mixture: :math:`k \sim \pi`, :math:`x = \mu_k + L_k z` with
    :math:`L_k L_k^\top = \Sigma_k`, :math:`z \sim \mathcal N(0, I)`. Returns ``(x [n, D], component [n])``."""
    if mix.batched:
        raise ValueError("sample() needs an unbatched mixture")
    comp = torch.multinomial(mix.log_weights.exp(), n, replacement=True, generator=generator)
    chol = torch.linalg.cholesky(mix.covs)
    z = torch.randn(n, mix.dim, generator=generator, dtype=mix.means.dtype)
    x = mix.means[comp] + torch.einsum("nde,ne->nd", chol[comp], z)
    return x, comp


def noised(mix: Mixture, sigma: float) -> Mixture:
    r"""Law of :math:`x_\sigma = (1-\sigma)x_0 + \sigma\varepsilon`: means :math:`(1-\sigma)\mu_k`, covariances
    :math:`(1-\sigma)^2\Sigma_k + \sigma^2 I`, same weights (shared σ in [0, 1]; batched or not)."""
    if not 0.0 <= float(sigma) <= 1.0:
        raise ValueError(f"sigma must lie in [0, 1], got {sigma}")
    a = 1.0 - float(sigma)
    eye = torch.eye(mix.dim, dtype=mix.covs.dtype, device=mix.covs.device)
    return Mixture(mix.log_weights, a * mix.means, a * a * mix.covs + float(sigma) ** 2 * eye)


def sample_rows(mix: Mixture, num: int, generator: torch.Generator | None = None) -> Tensor:
    """``num`` draws from every row of a mixture (batched: row b uses weights and means ``[b]``): ``[B, num, D]``.

    An unbatched mixture is treated as one row (``B = 1``).
    """
    log_w, means = _batched(mix)
    b = log_w.shape[0]
    comp = torch.multinomial(log_w.exp(), num, replacement=True, generator=generator)  # [B, num]
    chol = torch.linalg.cholesky(mix.covs)  # [K, D, D]
    z = torch.randn(b, num, mix.dim, generator=generator, dtype=means.dtype).to(means.device)
    mu = torch.gather(means, 1, comp[..., None].expand(b, num, mix.dim))
    return mu + torch.einsum("bnde,bne->bnd", chol[comp], z)
