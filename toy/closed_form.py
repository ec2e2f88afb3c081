r"""Closed forms for a single Gaussian sequence :math:`x_0 \sim \mathcal N(\mu, \Sigma)` (flattened, D = N·d).

With the symmetric root :math:`R = \Sigma^{1/2}` split into d×d blocks :math:`R_{ij}` (frame i, frame j):

* joint (bidirectional) flow map: :math:`\Phi(\varepsilon) = \mu + R\varepsilon` — the rectified-flow
  PF-ODE between N(0, I) and N(μ, Σ) is linear and commutes with Σ's eigenbasis;
* AR flow map of frame block i given clean context c: :math:`m_i(c) + S_i^{1/2}\varepsilon_i`, with
  :math:`m_i, S_i` the conditional mean and Schur complement;
* conditional expectation seen by a causal student of the bidirectional pairs (noise of frames ≤ i):
  :math:`\mathbb E[x_{0,i}\mid\varepsilon_{\le i}] = \mu_i + \sum_{j\le i} R_{ij}\varepsilon_j`, whose per-frame
  variance is :math:`\sum_{j\le i}\lVert R_{ij}\rVert_F^2` and whose lost variance is
  :math:`\sum_{j>i}\lVert R_{ij}\rVert_F^2`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from toy.data import SequenceData


def _single_gaussian(data: SequenceData) -> tuple[Tensor, Tensor]:
    if data.num_components != 1:
        raise ValueError(f"closed forms need a single Gaussian, {data.name} has {data.num_components} components")
    return data.mixture.means[0], data.mixture.covs[0]


def symmetric_sqrt(cov: Tensor) -> Tensor:
    r"""Symmetric PSD root :math:`\Sigma^{1/2} = Q\,\mathrm{diag}(\sqrt\lambda)\,Q^\top` of ``cov: [D, D]``."""
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def root_blocks(data: SequenceData) -> Tensor:
    """:math:`R_{ij}` as ``[N, N, d, d]``."""
    _, cov = _single_gaussian(data)
    return rearrange(symmetric_sqrt(cov), "(i a) (j b) -> i j a b", a=data.dim, b=data.dim)


def joint_flow_map(data: SequenceData, eps: Tensor) -> Tensor:
    r""":math:`\mu + \Sigma^{1/2}\varepsilon`; eps ``[..., N, d]`` → ``[..., N, d]``."""
    mean, cov = _single_gaussian(data)
    flat = data.flatten(eps)
    return data.unflatten(mean + flat @ symmetric_sqrt(cov).T)


def ar_flow_map(data: SequenceData, eps: Tensor, context: Tensor, block_size: int = 1) -> Tensor:
    r"""Per-block :math:`m_j(c) + S_j^{1/2}\varepsilon_j` with clean ``context: [B, N, d]``; eps ``[B, N, d]``."""
    mean, cov = _single_gaussian(data)
    out = torch.empty_like(eps)
    for start in range(0, data.num_frames, block_size):
        o = data.frame_index(range(start))
        f = data.frame_index(range(start, start + block_size))
        s_fo, s_oo = cov[f][:, o], cov[o][:, o]
        if len(o):
            gain = torch.linalg.solve(s_oo, s_fo.T).T
            m = mean[f] + (data.flatten(context[:, :start]) - mean[o]) @ gain.T
            schur = cov[f][:, f] - gain @ s_fo.T
        else:
            m = mean[f].expand(eps.shape[0], -1)
            schur = cov[f][:, f]
        blk = data.flatten(eps[:, start : start + block_size]) @ symmetric_sqrt(schur).T
        out[:, start : start + block_size] = data.unflatten(m + blk)
    return out


def causal_conditional_expectation(data: SequenceData, eps: Tensor) -> Tensor:
    r""":math:`\mathbb E[x_{0,i}\mid\varepsilon_{\le i}] = \mu_i + \sum_{j\le i}R_{ij}\varepsilon_j`; eps ``[..., N, d]``."""
    mean, _ = _single_gaussian(data)
    r = root_blocks(data)
    lower = torch.tril(torch.ones(data.num_frames, data.num_frames, dtype=torch.bool))
    r_causal = r * lower[:, :, None, None]
    return data.unflatten(mean) + torch.einsum("ijab,...jb->...ia", r_causal, eps)


def conditional_expectation_variance(data: SequenceData) -> Tensor:
    r"""Per-frame total variance of the causal conditional expectation, :math:`\sum_{j\le i}\lVert R_{ij}\rVert_F^2`: ``[N]``."""
    sq = root_blocks(data).pow(2).sum(dim=(2, 3))
    return torch.tril(sq).sum(dim=1)


def lost_variance(data: SequenceData) -> Tensor:
    r"""Variance the bidirectional-pair student cannot recover, :math:`\sum_{j>i}\lVert R_{ij}\rVert_F^2`: ``[N]``.

    Equals the irreducible regression loss :math:`\mathbb E\,\mathrm{tr}\,\mathrm{Var}(x_{0,i}\mid\varepsilon_{\le i})`.
    """
    sq = root_blocks(data).pow(2).sum(dim=(2, 3))
    return torch.triu(sq, diagonal=1).sum(dim=1)


def frame_variance(data: SequenceData) -> Tensor:
    """Per-frame total variance of the data, :math:`\\mathrm{tr}\\,\\Sigma_{ii}`: ``[N]``."""
    _, cov = _single_gaussian(data)
    blocks = rearrange(cov, "(i a) (j b) -> i j a b", a=data.dim, b=data.dim)
    return torch.stack([torch.diagonal(blocks[i, i]).sum() for i in range(data.num_frames)])


def marginal_covariance(data: SequenceData, sigma: float) -> Tensor:
    r""":math:`C_\sigma = (1-\sigma)^2\Sigma + \sigma^2 I`, the covariance of :math:`x_\sigma` (flattened ``[D, D]``)."""
    _, cov = _single_gaussian(data)
    return (1 - sigma) ** 2 * cov + sigma**2 * torch.eye(cov.shape[0], dtype=cov.dtype)


def causal_regression_matrix(data: SequenceData, sigma: float) -> Tensor:
    r"""The conditional-expectation student at level σ on bidirectional pairs, :math:`\hat x_0 = \mu + A(x_\sigma - (1-\sigma)\mu)`.

    On the joint PF-ODE :math:`x_\sigma = (1-\sigma)\mu + C_\sigma^{1/2}\varepsilon` (Σ and :math:`C_\sigma` commute),
    so :math:`\mathrm{Cov}(x_0, x_\sigma) = \Sigma^{1/2}C_\sigma^{1/2} =: G`. Row block i of A regresses frame i on
    the states of frames ≤ i: :math:`A_{i,\le i} = G_{i,\le i}\,(C_\sigma)_{\le i,\le i}^{-1}`, zero elsewhere.
    Returns ``[D, D]`` (block lower-triangular); at σ = 1 it is the block-lower part of :math:`\Sigma^{1/2}`.
    """
    _, cov = _single_gaussian(data)
    c = marginal_covariance(data, sigma)
    g = symmetric_sqrt(cov) @ symmetric_sqrt(c)
    a = torch.zeros_like(cov)
    for i in range(data.num_frames):
        rows, seen = data.frame_index([i]), data.frame_index(range(i + 1))
        a[rows[:, None], seen[None, :]] = torch.linalg.solve(c[seen][:, seen], g[rows][:, seen].T).T
    return a


def few_step_sampler_moments(data: SequenceData, sigmas: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean ``[N, d]`` and covariance ``[D, D]`` of the K-step sampler of the conditional-expectation student.

    The sampler runs all frames together (each frame reading the states of frames ≤ i at the current level):
    :math:`x^{(1)} = \varepsilon`; :math:`\hat x_0^{(k)} = \mu + A_k(x^{(k)} - (1-\sigma_k)\mu)`
    (:func:`causal_regression_matrix`); :math:`x^{(k+1)} = (1-\sigma_{k+1})\hat x_0^{(k)} + \sigma_{k+1}\varepsilon_k'`
    with fresh noise. Moments propagate exactly: mean :math:`m \mapsto \mu + A_k(m - (1-\sigma_k)\mu)`,
    covariance :math:`P \mapsto A_k P A_k^\top`, re-noising :math:`P \mapsto (1-\sigma)^2P + \sigma^2 I`.
    ``sigmas: [K]`` decreasing with ``sigmas[0] = 1``.
    """
    mean, cov = _single_gaussian(data)
    s = [float(v) for v in sigmas]
    if not s or s[0] != 1.0:
        raise ValueError(f"the sampler starts from noise: sigmas[0] must be 1, got {s}")
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    m, p = torch.zeros_like(mean), eye.clone()
    for k, sigma in enumerate(s):
        a = causal_regression_matrix(data, sigma)
        m = mean + a @ (m - (1 - sigma) * mean)
        p = a @ p @ a.T
        if k + 1 < len(s):
            nxt = s[k + 1]
            m, p = (1 - nxt) * m, (1 - nxt) ** 2 * p + nxt**2 * eye
    return data.unflatten(m), p


def few_step_sampler_variance(data: SequenceData, sigmas: Tensor) -> Tensor:
    r"""Per-frame total variance ``[N]`` of :func:`few_step_sampler_moments`; for K = 1 it equals
    :func:`conditional_expectation_variance`."""
    _, p = few_step_sampler_moments(data, sigmas)
    blocks = rearrange(p, "(i a) (j b) -> i j a b", a=data.dim, b=data.dim)
    return torch.stack([torch.diagonal(blocks[i, i]).sum() for i in range(data.num_frames)])


def variance_report(data: SequenceData, student_sigmas: dict[int, Tensor]) -> dict:
    """The per-frame closed forms a run reports for a Gaussian dataset, JSON-ready: data variance, the
    conditional-expectation student's variance and lost variance, and the K-step sampler's variance for each
    student list ``student_sigmas = {K: sigmas [K]}``."""
    return {
        "conditional_expectation_variance": conditional_expectation_variance(data).tolist(),
        "lost_variance": lost_variance(data).tolist(),
        "data_variance": frame_variance(data).tolist(),
        "few_step_sampler_variance": {
            str(k): few_step_sampler_variance(data, sigmas).tolist() for k, sigmas in student_sigmas.items()
        },
    }
