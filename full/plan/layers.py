r"""A real-size step from two shallow simulations: linear extrapolation in the number of transformer blocks.

The blocks of a Wan DiT are identical (same weights' shapes, same computation on the same shapes), so every
quantity of a step is an affine function of the block count ``L`` as long as the peak falls at the same point of
the step: the weights, gradients, optimizer state, EMA and frozen models (bytes per block × ``L``), the
checkpointed block inputs and the KV cache (per block), the FLOPs and bytes moved (per block):

.. math::

    q(L) = q(L_1) + \frac{L - L_1}{L_2 - L_1}\,\big(q(L_2) - q(L_1)\big)

A step with two models of different depths (the DMD generator's 30 blocks beside the 40 of a 14B real score)
scales both together: with ``g = gcd(L_base, L_real)`` the unit is ``(L_base/g, L_real/g)`` blocks and the
simulations take ``m``, ``2m`` and ``3m`` units, ``m`` the smallest with at least 2 blocks per model (a 1-block
model's peak falls elsewhere: 0.2 % off at Wan-1.3B width); the ratio of the depths is kept. The memory is
extrapolated through the two deeper simulations; the one through the two shallower ones gives the **spread**
``|q_{23}(L) - q_{12}(L)|``, reported with the plan: the peak is a maximum over the points of a step of affine
functions of ``L``, so it is convex in ``L``, and a spread of 0 says the same point held the peak in all three.
The FLOPs and bytes moved have no maximum in them (exactly affine) and are counted in the two shallower ones.
With ``depths=2`` only the two shallower runs are simulated (about half the cost: ``m + 2m`` units instead of
``m + 2m + 3m``) and the memory is extrapolated through them; there is then no spread to report (``None``): use it
where a three-depth plan of the same steps measured a spread of about 0.
:func:`layer_plan` says what is simulated, :func:`extrapolate_memory` / :func:`extrapolate_ops` combine.
Tested against full simulations at small sizes (within 1 %).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from full.plan.flops import OpCount
from full.plan.memory import MemoryPeak
from full.plan.stages import Architectures

#: fewest blocks of any model in a shallow simulation
MIN_BLOCKS = 2


@dataclass(frozen=True)
class LayerPlan:
    """The depths ``(base blocks, real-score blocks)`` of each simulation and of the configured models."""

    simulated: tuple[tuple[int, int], ...]
    target: tuple[int, int]

    @property
    def extrapolated(self) -> bool:
        return self.simulated != (self.target,)

    def describe(self) -> str:
        runs = ", ".join(f"{b}/{r}" for b, r in self.simulated)
        if not self.extrapolated:
            return f"simulated at full depth ({runs} blocks, base/real score)"
        t = self.target
        return f"simulated at {runs} blocks (base/real score), extrapolated linearly to {t[0]}/{t[1]}"

    def json(self) -> dict:
        return {
            "simulated_blocks": [list(s) for s in self.simulated],
            "target_blocks": list(self.target),
            "extrapolated": self.extrapolated,
            "rule": "linear in the block count" if self.extrapolated else "full simulation",
        }


def layer_plan(arch: Architectures, extrapolate: bool = True, depths: int = 3) -> LayerPlan:
    """``depths`` (2 or 3) shallow simulations (see module doc), or the full depth where three would not be
    shallower."""
    if depths not in (2, 3):
        raise ValueError(f"the plan extrapolates from 2 or 3 shallow depths, got {depths}")
    target = (arch.base["num_layers"], arch.real_score["num_layers"])
    g = math.gcd(*target)
    unit = (target[0] // g, target[1] // g)
    m = math.ceil(MIN_BLOCKS / min(unit))
    if not extrapolate or 3 * m >= g:
        return LayerPlan((target,), target)
    return LayerPlan(tuple((k * m * unit[0], k * m * unit[1]) for k in range(1, depths + 1)), target)


def with_blocks(arch: Architectures, blocks: tuple[int, int]) -> Architectures:
    """``arch`` with ``blocks`` = (base, real-score) transformer blocks."""
    base = dict(arch.base, num_layers=blocks[0])
    return dataclasses.replace(arch, base=base, real_score=dict(arch.real_score, num_layers=blocks[1]))


def _line(x1: int, y1: int, x2: int, y2: int, x: int) -> int:
    return round(y1 + (y2 - y1) * (x - x1) / (x2 - x1))


def extrapolate_memory(peaks: Sequence[MemoryPeak], xs: Sequence[int], x: int) -> tuple[MemoryPeak, int | None]:
    """Every field of the peak at ``x`` on the line through the two deeper of the simulations at depths ``xs``
    (three, or two), and the spread of the total (see module doc), in bytes (None from two simulations)."""
    b, c = peaks[-2:]
    x2, x3 = xs[-2:]
    fields = {f.name: _line(x2, getattr(b, f.name), x3, getattr(c, f.name), x) for f in dataclasses.fields(b)}
    if len(peaks) == 2:
        return MemoryPeak(**fields), None
    spread = abs(fields["total"] - _line(xs[0], peaks[0].total, x2, b.total, x))
    return MemoryPeak(**fields), spread


def extrapolate_ops(a: OpCount | None, b: OpCount | None, x1: int, x2: int, x: int) -> OpCount | None:
    """FLOPs and bytes on the line through ``(x1, a)`` and ``(x2, b)``, at ``x`` (None if either is None)."""
    if a is None or b is None:
        return None
    return OpCount(_line(x1, a.flops, x2, b.flops, x), _line(x1, a.bytes, x2, b.bytes, x))
