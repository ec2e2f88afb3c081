r"""How far the learned toy networks are from the exact teachers.

* :func:`bidirectional_velocity_error` — the base model against the exact joint velocity
  :math:`\mathbb E[\varepsilon - x_0 \mid x_\sigma]` (one σ per sample);
* :func:`ar_velocity_error` — an AR teacher on **clean** history (the sampling condition) against the exact AR
  velocity :math:`\mathbb E[\varepsilon_j - x_{0,j} \mid x_{\sigma,j}, x_{0,<j}]`, or on **noisy** history (the
  diffusion-forcing training condition, every frame at its own σ) against the exact block-causal velocity
  :math:`\mathbb E[\varepsilon_j - x_{0,j} \mid x_{\sigma,\le j}]` (:func:`block_causal_velocity`).

Errors are relative: :math:`\sqrt{\mathbb E\lVert v_\theta - v^\star\rVert^2 / \mathbb E\lVert v^\star\rVert^2}`
over data-noise pairs with uniformly drawn levels.
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor

from cf_ref.schedule import interpolate
from toy import gmm
from toy.data import SequenceData
from toy.networks import MaskedFrameMLP
from toy.teachers import ARTeacher, BidirectionalTeacher


class History(enum.Enum):
    """What an AR model sees as the frames before the current block."""

    CLEAN = "clean"  # clean data frames (teacher forcing; sampling with a clean KV cache)
    NOISY = "noisy"  # every frame noised with its own level (diffusion forcing)


def block_causal_velocity(data: SequenceData, x: Tensor, sigma: Tensor, block_size: int = 1) -> Tensor:
    r"""Exact :math:`\mathbb E[\varepsilon_j - x_{0,j} \mid x_{\sigma,\le j}]` for every block j, frame i at level σ_i.

    x: ``[n, F, d]``; sigma: ``[n, F]`` (any level in [0, 1]; σ = 0 history is clean conditioning, so with
    clean history this is the exact AR teacher's velocity). Uses the marginal of frames ≤ j and per-coordinate
    levels (:func:`toy.gmm.velocity`). Returns ``[n, F, d]`` in float64.
    """
    n, f, d = x.shape
    if f % block_size:
        raise ValueError(f"block size {block_size} does not divide the number of frames {f}")
    out = []
    for end in range(block_size, f + 1, block_size):
        mix = gmm.marginal(data.mixture, data.frame_index(range(end)))
        flat = data.flatten(x[:, :end]).double()[None]  # [1, n, end·d]
        levels = torch.repeat_interleave(sigma[:, :end].double(), d, dim=-1)[None]
        v = gmm.velocity(mix, flat, levels)[0, :, -block_size * d :]
        out.append(data.unflatten(v))
    return torch.cat(out, dim=1)


def _relative_error(pred: Tensor, exact: Tensor) -> float:
    return float(((pred.double() - exact).pow(2).mean() / exact.pow(2).mean()).sqrt())


@torch.no_grad()
def bidirectional_velocity_error(net: MaskedFrameMLP, data: SequenceData, n: int, rng: torch.Generator) -> float:
    """Relative velocity error of a bidirectional network on ``n`` noisy data samples, σ ~ U(0, 1) per sample."""
    x0 = data.sample(n, rng)[0]
    eps = torch.randn(x0.shape, generator=rng, dtype=x0.dtype)
    sigma = torch.rand(n, 1, generator=rng, dtype=x0.dtype).expand(n, data.num_frames)
    x = interpolate(x0, eps, sigma)
    exact = BidirectionalTeacher(data).velocity(x, sigma)
    return _relative_error(net.predict(x.float(), sigma.float()), exact)


def ar_velocity(data: SequenceData, x: Tensor, sigma: Tensor, context: Tensor, block_size: int = 1) -> Tensor:
    r"""Exact AR teacher velocity :math:`\mathbb E[\varepsilon_j - x_{0,j} \mid x_{\sigma,j}, c_{<j}]` of every block
    given clean ``context``: x, context ``[n, F, d]``; sigma ``[n, F]``. Returns ``[n, F, d]`` (float64)."""
    teacher = ARTeacher(data, block_size)
    out = []
    for j in range(teacher.num_blocks):
        span = slice(j * block_size, (j + 1) * block_size)
        mix = teacher.block_mixture(j, context.double())
        out.append(teacher.block_velocity(mix, x[:, None, span].double(), sigma[:, None, span].double())[:, 0])
    return torch.cat(out, dim=1)


@torch.no_grad()
def ar_velocity_error(net: MaskedFrameMLP, data: SequenceData, history: History, n: int, rng: torch.Generator) -> float:
    """Relative velocity error of a block-causal AR network, levels σ ~ U(0, 1) per block.

    ``CLEAN``: the network is evaluated teacher-forced on the clean data (its sampling condition) against
    :func:`ar_velocity`; ``NOISY``: every frame, history included, at its own level (the diffusion-forcing
    training condition) against :func:`block_causal_velocity`.
    """
    if not isinstance(history, History):
        raise ValueError(f"history must be a History member, got {history!r}")
    b = net.config.block_size
    x0 = data.sample(n, rng)[0]
    eps = torch.randn(x0.shape, generator=rng, dtype=x0.dtype)
    sigma = torch.repeat_interleave(torch.rand(n, data.num_frames // b, generator=rng, dtype=x0.dtype), b, dim=1)
    x = interpolate(x0, eps, sigma)
    if history is History.CLEAN:
        exact = ar_velocity(data, x, sigma, x0, b)
        pred = net.predict(x.float(), sigma.float(), context=x0.float())
    else:
        exact = block_causal_velocity(data, x, sigma, b)
        pred = net.predict(x.float(), sigma.float())
    return _relative_error(pred, exact)
