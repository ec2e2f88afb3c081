r"""Synthetic sequence distributions with exact scores: N frames × d dims.

A :class:`SequenceData` is a Gaussian mixture over the flattened sequence (frame-major, coordinate
``f·d + j``), so every teacher velocity is available in closed form (:mod:`toy.gmm`). A single
Gaussian is the K = 1 case.

Presets:

* :func:`ar1_gaussian` — one Gaussian; frames follow an AR(1) chain,
  :math:`\mathrm{Cov}(x_f, x_g) = \rho^{|f-g|} B` (B a fixed d×d matrix), mean drifting linearly;
* :func:`independent_gaussian` — the same with ρ = 0 (frames independent: both teachers coincide);
* :func:`shared_mode_mixture` — K modes, each a smooth mean trajectory; the mode is drawn once per
  sequence and shared by all frames, with small AR(1) noise around it. Frames are strongly
  dependent through the (hidden) mode.

A :class:`DatasetSpec` names one preset with its sizes (what an experiment's configuration lists);
:data:`CORE_DATASETS` are the four of ``cf-ref toy run``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from toy import gmm


@dataclass(frozen=True)
class SequenceData:
    """A Gaussian-mixture distribution over sequences ``[N, d]`` (flattened to ``D = N·d``)."""

    name: str
    num_frames: int
    dim: int
    mixture: gmm.Mixture

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.dim < 1:
            raise ValueError(f"need num_frames, dim >= 1, got {self.num_frames}, {self.dim}")
        if self.mixture.dim != self.num_frames * self.dim:
            raise ValueError(
                f"mixture has {self.mixture.dim} coordinates, expected num_frames·dim = {self.num_frames * self.dim}"
            )
        if self.mixture.batched:
            raise ValueError("a dataset's mixture must be unbatched")

    @property
    def num_components(self) -> int:
        return self.mixture.num_components

    def flatten(self, x: Tensor) -> Tensor:
        """``[..., N, d] -> [..., N·d]``."""
        return rearrange(x, "... n d -> ... (n d)")

    def unflatten(self, x: Tensor) -> Tensor:
        """``[..., n·d] -> [..., n, d]`` (any number of frames n)."""
        return rearrange(x, "... (n d) -> ... n d", d=self.dim)

    def frame_index(self, frames: range | list[int]) -> Tensor:
        """Flat coordinates of the given frames: ``[len(frames)·d]`` long."""
        return torch.tensor([f * self.dim + j for f in frames for j in range(self.dim)], dtype=torch.long)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x0 [n, N, d], component [n])``."""
        x, comp = gmm.sample(self.mixture, n, generator)
        return self.unflatten(x), comp

    def mean(self) -> Tensor:
        """Mean ``[N, d]``."""
        return self.unflatten(gmm.moments(self.mixture)[0])

    def covariance(self) -> Tensor:
        """Covariance of the flattened sequence ``[N·d, N·d]``."""
        return gmm.moments(self.mixture)[1]

    def component_means(self) -> Tensor:
        """``[K, N, d]``."""
        return self.unflatten(self.mixture.means)

    def config(self) -> dict:
        """JSON-ready description (means and covariances as lists)."""
        out = {
            "name": self.name,
            "num_frames": self.num_frames,
            "dim": self.dim,
            "num_components": self.num_components,
            "weights": self.mixture.log_weights.exp().tolist(),
        }
        if self.num_components == 1:
            out["mean"] = self.mixture.means[0].tolist()
            out["covariance"] = self.mixture.covs[0].tolist()
        else:
            out["component_means"] = self.mixture.means.tolist()
            out["component_covariances"] = self.mixture.covs.tolist()
        return out


def _ar1_correlation(num_frames: int, rho: float) -> Tensor:
    f = torch.arange(num_frames, dtype=torch.float64)
    return rho ** (f[:, None] - f[None, :]).abs()


def _dim_mixing(dim: int) -> Tensor:
    """A fixed SPD d×d matrix with unit diagonal and correlation 0.5 between neighbouring dims."""
    j = torch.arange(dim, dtype=torch.float64)
    return 0.5 ** (j[:, None] - j[None, :]).abs()


def ar1_gaussian(
    num_frames: int = 4, dim: int = 1, rho: float = 0.9, std: float = 1.0, drift: float = 0.5
) -> SequenceData:
    r"""One Gaussian: mean :math:`\mu_f = \mathrm{drift}\cdot f \cdot \mathbf 1`, covariance
    :math:`\mathrm{std}^2\,R_\rho \otimes B` with :math:`(R_\rho)_{fg} = \rho^{|f-g|}`."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must lie in [0, 1), got {rho}")
    if std <= 0:
        raise ValueError(f"std must be > 0 (a positive-definite covariance), got {std}")
    cov = std**2 * torch.kron(_ar1_correlation(num_frames, rho), _dim_mixing(dim))
    mean = drift * torch.arange(num_frames, dtype=torch.float64)[:, None].expand(num_frames, dim).reshape(-1)
    name = f"gaussian_ar1_d{dim}" if rho > 0 else f"gaussian_independent_d{dim}"
    mix = gmm.Mixture(torch.zeros(1, dtype=torch.float64), mean[None].clone(), cov[None])
    return SequenceData(name, num_frames, dim, mix)


def independent_gaussian(num_frames: int = 4, dim: int = 1, std: float = 1.0, drift: float = 0.5) -> SequenceData:
    """:func:`ar1_gaussian` with ρ = 0: frames independent."""
    return ar1_gaussian(num_frames, dim, rho=0.0, std=std, drift=drift)


def shared_mode_mixture(
    num_frames: int = 4,
    dim: int = 1,
    num_modes: int = 2,
    radius: float = 1.5,
    within_std: float = 0.25,
    rho: float = 0.5,
    turn: float = 0.35,
) -> SequenceData:
    r"""K equally weighted modes whose mean trajectories never cross.

    d = 1: mode k sits at level :math:`r(2k/(K-1) - 1)`, moving by ``turn`` per frame (all modes together).
    d ≥ 2: mode k starts at angle :math:`2\pi k/K` on a circle of radius r in the first two dims and
    rotates by ``turn`` radians per frame (other dims 0). Within a mode, frames carry AR(1) noise of
    std ``within_std`` and correlation ``rho``.
    """
    if num_modes < 2:
        raise ValueError(f"a mixture needs num_modes >= 2, got {num_modes}")
    if within_std <= 0 or not -1.0 < rho < 1.0:
        raise ValueError(
            f"need within_std > 0 and -1 < rho < 1 (positive-definite covariance), got {within_std}, {rho}"
        )
    f = torch.arange(num_frames, dtype=torch.float64)
    means = torch.zeros(num_modes, num_frames, dim, dtype=torch.float64)
    for k in range(num_modes):
        if dim == 1:
            means[k, :, 0] = radius * (2 * k / (num_modes - 1) - 1) + turn * f
        else:
            angle = 2 * math.pi * k / num_modes + turn * f
            means[k, :, 0] = radius * torch.cos(angle)
            means[k, :, 1] = radius * torch.sin(angle)
    cov = within_std**2 * torch.kron(_ar1_correlation(num_frames, rho), torch.eye(dim, dtype=torch.float64))
    mix = gmm.Mixture(
        torch.full((num_modes,), -math.log(num_modes), dtype=torch.float64),
        means.reshape(num_modes, -1),
        cov[None].expand(num_modes, -1, -1).clone(),
    )
    return SequenceData(f"mixture_k{num_modes}_d{dim}", num_frames, dim, mix)


class DatasetKind(enum.Enum):
    """Which preset a :class:`DatasetSpec` builds."""

    AR1_GAUSSIAN = "gaussian_ar1"
    INDEPENDENT_GAUSSIAN = "gaussian_independent"
    SHARED_MODE_MIXTURE = "shared_mode_mixture"


@dataclass(frozen=True)
class DatasetSpec:
    """One toy dataset: a preset with its dimension (and number of modes for mixtures)."""

    kind: DatasetKind
    dim: int
    num_modes: int = 2

    def build(self, num_frames: int) -> SequenceData:
        """The :class:`SequenceData` of ``num_frames`` frames."""
        if self.kind is DatasetKind.AR1_GAUSSIAN:
            return ar1_gaussian(num_frames, self.dim)
        if self.kind is DatasetKind.INDEPENDENT_GAUSSIAN:
            return independent_gaussian(num_frames, self.dim)
        return shared_mode_mixture(num_frames, self.dim, num_modes=self.num_modes)


CORE_DATASETS = (
    DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
    DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=2),
    DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=1, num_modes=2),
    DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=4),
)
"""The datasets of ``cf-ref toy run --preset quick`` (the paper preset adds the independent-frames control)."""


def frames_dependent(data: SequenceData) -> bool:
    """Whether frames are statistically dependent: a mixture of several modes, or a Gaussian with cross-frame
    covariance."""
    if data.num_components > 1:
        return True
    cov = data.mixture.covs[0]
    same_frame = torch.block_diag(*[torch.ones(data.dim, data.dim, dtype=torch.bool)] * data.num_frames)
    return bool((cov[~same_frame].abs() > 0).any())
