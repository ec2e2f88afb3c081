r"""The one time convention of cf-ref: rectified flow as in Wan2.1.

Everything in the package (toy and full track) imports its conversions from here.

Convention (σ = 1 is pure noise, σ = 0 is data):

.. math::

    x_\sigma = (1-\sigma)\,x_0 + \sigma\,\varepsilon, \qquad
    v = \frac{dx_\sigma}{d\sigma} = \varepsilon - x_0 .

Timesteps live on Wan's 0…1000 scale, ``t = 1000·σ``. Wan's shift warps σ towards the noisy end,
``σ' = sσ / (1 + (s-1)σ)``.

Shapes: a state ``x`` is ``[B, F, *S]`` (batch, frames, per-frame shape: ``[d]`` in the toy,
``[C, H, W]`` for video latents). A noise level ``sigma`` is a Python float, a 0-d tensor, ``[B]``
(per sample) or ``[B, F]`` (per frame); :func:`broadcast_sigma` right-pads it with singleton
dimensions so it broadcasts against ``x``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
"""Wan's timestep scale: ``t = NUM_TRAIN_TIMESTEPS · σ``."""

DEFAULT_SHIFT = 5.0
"""Wan's shift in the published Causal Forcing / Self Forcing setting (``timestep_shift: 5.0`` in their configs)."""

GRID_TOLERANCE = 1e-9
"""Two σ's closer than this are the same grid point (the few-step list is computed exactly on the grid in float64)."""


class Prediction(enum.Enum):
    """What a network's output stands for."""

    VELOCITY = "velocity"  # v = ε - x0 (Wan's native output)
    X0 = "x0"  # clean sample
    EPSILON = "epsilon"  # noise


def _as_tensor(sigma: float | Tensor, like: Tensor | None = None) -> Tensor:
    if isinstance(sigma, Tensor):
        return sigma if like is None else sigma.to(device=like.device, dtype=like.dtype)
    if like is None:
        return torch.tensor(float(sigma), dtype=torch.float64)
    return torch.tensor(float(sigma), device=like.device, dtype=like.dtype)


def broadcast_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Right-pad ``sigma`` with singleton dims so that it broadcasts against ``x``.

    sigma: scalar, ``[]``, ``[B]`` or ``[B, F]`` (any leading prefix of ``x.shape``); x: ``[B, F, *S]``.
    Returns a tensor of ``x.ndim`` dims on ``x``'s device and dtype.
    """
    s = _as_tensor(sigma, x)
    if s.ndim > x.ndim or (s.numel() != 1 and tuple(s.shape) != tuple(x.shape[: s.ndim])):
        raise ValueError(
            f"sigma of shape {tuple(s.shape)} does not match a leading prefix of x's shape {tuple(x.shape)}"
        )
    if s.numel() == 1:
        return s.reshape((1,) * x.ndim)
    return s.reshape(tuple(s.shape) + (1,) * (x.ndim - s.ndim))


def sigma_per_frame(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Expand a noise level (scalar, ``[B]`` or ``[B, F]``) to the per-frame levels ``[B, F]`` of ``x: [B, F, *S]``."""
    if x.ndim < 2:
        raise ValueError(f"x must be [B, F, *S], got shape {tuple(x.shape)}")
    s = _as_tensor(sigma, x)
    if s.numel() == 1:
        return s.reshape(1, 1).expand(x.shape[0], x.shape[1])
    if s.ndim == 1 and s.shape[0] == x.shape[0]:
        return s[:, None].expand(x.shape[0], x.shape[1])
    if s.shape == x.shape[:2]:
        return s
    raise ValueError(f"sigma of shape {tuple(s.shape)} cannot be read per frame for x of shape {tuple(x.shape)}")


def interpolate(x0: Tensor, eps: Tensor, sigma: float | Tensor) -> Tensor:
    r"""Forward process :math:`x_\sigma = (1-\sigma)x_0 + \sigma\varepsilon`.

    x0, eps: ``[B, F, *S]``; sigma: broadcastable prefix (see module doc). Returns ``[B, F, *S]``.
    """
    if x0.shape != eps.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and eps {tuple(eps.shape)} must have the same shape")
    s = broadcast_sigma(sigma, x0)
    return (1 - s) * x0 + s * eps


def velocity_target(x0: Tensor, eps: Tensor) -> Tensor:
    r"""Flow-matching target :math:`v = \varepsilon - x_0`. Shapes ``[B, F, *S]``."""
    return eps - x0


def x0_from_velocity(x: Tensor, v: Tensor, sigma: float | Tensor) -> Tensor:
    r""":math:`\hat x_0 = x_\sigma - \sigma v`. x, v: ``[B, F, *S]``."""
    return x - broadcast_sigma(sigma, x) * v


def eps_from_velocity(x: Tensor, v: Tensor, sigma: float | Tensor) -> Tensor:
    r""":math:`\hat\varepsilon = x_\sigma + (1-\sigma) v`. x, v: ``[B, F, *S]``."""
    return x + (1 - broadcast_sigma(sigma, x)) * v


def velocity_from_x0(x: Tensor, x0: Tensor, sigma: float | Tensor) -> Tensor:
    r""":math:`v = (x_\sigma - \hat x_0)/\sigma` (undefined at σ = 0). x, x0: ``[B, F, *S]``."""
    return (x - x0) / broadcast_sigma(sigma, x)


def velocity_from_eps(x: Tensor, eps: Tensor, sigma: float | Tensor) -> Tensor:
    r""":math:`v = (\hat\varepsilon - x_\sigma)/(1-\sigma)` (undefined at σ = 1). Shapes ``[B, F, *S]``."""
    return (eps - x) / (1 - broadcast_sigma(sigma, x))


def convert_prediction(
    x: Tensor, output: Tensor, sigma: float | Tensor, source: Prediction, target: Prediction
) -> Tensor:
    """Convert a network output between x0 / ε / velocity parameterisations at state ``x``, level ``sigma``.

    Goes through the velocity: ``source → v → target``. x, output: ``[B, F, *S]``.
    """
    if not isinstance(source, Prediction) or not isinstance(target, Prediction):
        raise ValueError(f"source and target must be Prediction members, got {source!r}, {target!r}")
    if source is target:
        return output
    if source is Prediction.VELOCITY:
        v = output
    elif source is Prediction.X0:
        v = velocity_from_x0(x, output, sigma)
    else:
        v = velocity_from_eps(x, output, sigma)
    if target is Prediction.VELOCITY:
        return v
    if target is Prediction.X0:
        return x0_from_velocity(x, v, sigma)
    return eps_from_velocity(x, v, sigma)


def shift_sigma(sigma: float | Tensor, shift: float) -> Tensor:
    r"""Wan's timestep shift :math:`\sigma' = s\sigma / (1 + (s-1)\sigma)`; a bijection of [0, 1] for s > 0."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    s = _as_tensor(sigma)
    return shift * s / (1 + (shift - 1) * s)


def unshift_sigma(sigma: float | Tensor, shift: float) -> Tensor:
    r"""Inverse of :func:`shift_sigma`: :math:`\sigma = \sigma' / (s - (s-1)\sigma')`."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    s = _as_tensor(sigma)
    return s / (shift - (shift - 1) * s)


def timestep_from_sigma(sigma: float | Tensor) -> Tensor:
    """``t = 1000·σ`` (Wan's timestep scale)."""
    return _as_tensor(sigma) * NUM_TRAIN_TIMESTEPS


def sigma_from_timestep(t: float | Tensor) -> Tensor:
    """``σ = t / 1000``."""
    return _as_tensor(t) / NUM_TRAIN_TIMESTEPS


def sigma_grid(num_steps: int, shift: float = 1.0, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Decreasing σ grid of ``num_steps`` solver steps from 1 to 0, warped by the shift.

    :math:`\sigma_k = \mathrm{shift}(1 - k/N)`, k = 0…N. Returns ``[num_steps + 1]`` with
    ``grid[0] = 1`` and ``grid[-1] = 0``. This is the grid of the teacher's PF-ODE (N = 48 in the
    published setting).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    base = torch.linspace(1.0, 0.0, num_steps + 1, dtype=dtype)
    return shift_sigma(base, shift).to(dtype)


def few_step_sigmas(
    timesteps: Sequence[float] = (1000, 750, 500, 250), shift: float = DEFAULT_SHIFT, dtype: torch.dtype = torch.float64
) -> Tensor:
    r"""The few-step student's denoising list, mapped through the shift.

    ``timesteps`` are given on the unshifted 0…1000 scale, as in the published configs
    (1000/750/500/250 with ``warp_denoising_step``); returns ``[K]`` σ's, decreasing, all > 0.
    With ``N`` a multiple of ``K``, ``few_step_sigmas(K-list) == sigma_grid(N, shift)[::N//K][:-1]``,
    so the ODE-trajectory states kept at indices 0, N/K, 2N/K, … are exactly at these σ's.
    """
    ts = torch.as_tensor(list(timesteps), dtype=dtype)
    if ts.ndim != 1 or len(ts) == 0:
        raise ValueError("timesteps must be a non-empty 1-D sequence")
    if (ts <= 0).any() or (ts > NUM_TRAIN_TIMESTEPS).any():
        raise ValueError(f"timesteps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {ts.tolist()}")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"timesteps must be strictly decreasing, got {ts.tolist()}")
    return shift_sigma(sigma_from_timestep(ts), shift).to(dtype)


def uniform_few_step_timesteps(num_steps: int) -> tuple[float, ...]:
    """The unshifted list ``1000, 1000(1-1/K), …`` for a K-step student (K=4 → 1000/750/500/250)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return tuple(NUM_TRAIN_TIMESTEPS * (1 - k / num_steps) for k in range(num_steps))


def grid_index(grid: Tensor, sigma: float | Tensor, advice: str = "choose a grid that contains it") -> int:
    r"""The first index n of ``grid`` (``[N+1]``) with :math:`|\sigma_n - \sigma| \le` :data:`GRID_TOLERANCE`.

    The one "is σ on the grid" lookup of the package; a ``ValueError`` naming the nearest point (and ``advice``)
    if σ is not a grid point.
    """
    g = grid.detach().to(torch.float64).reshape(-1)
    gap = (g - float(sigma)).abs()
    hits = torch.nonzero(gap <= GRID_TOLERANCE).flatten()
    if len(hits) == 0:
        nearest = float(g[gap.argmin()])
        raise ValueError(f"σ={float(sigma):.6g} is not on the {len(g) - 1}-step grid (nearest {nearest:.6g}); {advice}")
    return int(hits[0])


@dataclass(frozen=True)
class FewStepSchedule:
    r"""The few-step student's σ list and the teacher PF-ODE grid it lies on — one object for both tracks.

    ``timesteps`` (unshifted, 0…1000, decreasing) become the student's list
    :math:`\sigma_k = \mathrm{shift}(t_k/1000)` (:meth:`student_sigmas`, ``[K]``); the teacher integrates its
    PF-ODE on :math:`\mathrm{shift}(1 - n/N)`, n = 0…N (:meth:`grid`, ``[N+1]``, ``N = ode_steps``). The
    published setting: 1000/750/500/250, shift 5, N = 48, whose student σ's sit at grid indices 0, 12, 24, 36.
    With uniform timesteps the list lies on the grid exactly when K divides N (:meth:`check_on_grid`).
    """

    timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    shift: float = DEFAULT_SHIFT
    ode_steps: int = 48

    def __post_init__(self) -> None:
        if self.ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1, got {self.ode_steps}")
        few_step_sigmas(self.timesteps, self.shift)  # validates the list and the shift

    @classmethod
    def uniform(cls, num_steps: int, shift: float = DEFAULT_SHIFT, ode_steps: int = 48) -> FewStepSchedule:
        """The K-step schedule with timesteps ``1000, 1000(1-1/K), …`` (:func:`uniform_few_step_timesteps`)."""
        return cls(uniform_few_step_timesteps(num_steps), shift, ode_steps)

    @property
    def num_steps(self) -> int:
        """K, the student's number of denoising steps."""
        return len(self.timesteps)

    def student_sigmas(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[K]`` the student's σ list, decreasing (:func:`few_step_sigmas`)."""
        return few_step_sigmas(self.timesteps, self.shift).to(dtype)

    def grid(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[N+1]`` the teacher's PF-ODE grid from 1 to 0 (:func:`sigma_grid`)."""
        return sigma_grid(self.ode_steps, self.shift).to(dtype)

    def index_of(self, sigma: float | Tensor) -> int:
        r"""The grid index n with :math:`\sigma_n = \sigma` (:func:`grid_index`); a ``ValueError`` if σ is off the grid."""
        return grid_index(
            self.grid(), sigma, f"use an ode_steps that is a multiple of the student's {self.num_steps} steps"
        )

    def student_indices(self) -> list[int]:
        """Grid indices of the student's σ's (``[0, 12, 24, 36]`` in the published setting); raises if one is off."""
        return [self.index_of(s) for s in self.student_sigmas().tolist()]

    def check_on_grid(self) -> None:
        """Raise a ``ValueError`` unless every student σ is a grid point (ODE pairs keep the states there)."""
        self.student_indices()
