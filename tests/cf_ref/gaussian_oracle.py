"""Closed-form PF-ODE of a Gaussian sequence, used as an oracle by the distillation tests.

For x0 ~ N(μ, Σ): x_σ = (1-σ)μ + A_σ ε along the PF-ODE, A_σ = ((1-σ)²Σ + σ²I)^{1/2}; the flow map from level σ
is f*(x, σ) = μ + Σ^{1/2} A_σ^{-1} (x - (1-σ)μ) (all matrices commute).
"""

import torch

from toy.closed_form import symmetric_sqrt
from toy.data import SequenceData


def a_sigma(cov: torch.Tensor, sigma: float) -> torch.Tensor:
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return symmetric_sqrt((1 - sigma) ** 2 * cov + sigma**2 * eye)


def state_at(data: SequenceData, eps: torch.Tensor, sigma: float) -> torch.Tensor:
    mean, cov = data.mixture.means[0], data.mixture.covs[0]
    return data.unflatten((1 - sigma) * mean + data.flatten(eps) @ a_sigma(cov, sigma).T)


def flow_map_from(data: SequenceData, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """f*(x, σ) for x: [B, N, d] and one level per sample σ: [B] (or scalar)."""
    mean, cov = data.mixture.means[0], data.mixture.covs[0]
    root = symmetric_sqrt(cov)
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1)
    s = s.expand(x.shape[0]) if s.numel() == 1 else s
    out = []
    for b in range(x.shape[0]):
        sb = float(s[b])
        if sb == 0.0:
            out.append(data.flatten(x[b]))
            continue
        a_inv = torch.linalg.inv(a_sigma(cov, sb))
        out.append(mean + root @ a_inv @ (data.flatten(x[b]) - (1 - sb) * mean))
    return data.unflatten(torch.stack(out))
