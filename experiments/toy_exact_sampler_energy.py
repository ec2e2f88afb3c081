r"""Is a causal student's energy-distance miss the student or the draw? (docs/toy.md §4)

``cf-ref toy run`` scores the K-step causal student's first ``samples.energy`` samples against the reference and
compares with the calibrated threshold (``toy.claims.energy_threshold``). This script runs the **same K-step
sampler with the exact AR flow map in place of the student** — at each level σ_k the clean estimate is the AR
teacher's PF-ODE integrated from σ_k to 0 given the committed frames, :math:`\hat x_0 = \Phi_{\sigma_k\to 0}(x;
c_{<i})`, the velocity handed to :func:`cf_ref.rollout.few_step_rollout` is :math:`(x - \hat x_0)/\sigma_k` — on the
run's own evaluation noise and re-noising generator (``cf_ref.seeding.generator(seed, dataset, "rollout", key)``),
so its samples differ from the student's only by the student's error. If the exact sampler misses as well, the miss
is the draw.

Prints the exact sampler's energy distance on the claim's set and on every disjoint set of the same size, its
off-manifold fraction (mixtures) and the run's threshold.

    python experiments/toy_exact_sampler_energy.py --seed 1 --dataset mixture_k4_d2 --steps 4
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch import Tensor

from cf_ref.recipes import PairTeacher
from cf_ref.rollout import few_step_rollout
from cf_ref.seeding import generator
from cf_ref.solvers import integrate
from toy import metrics
from toy.claims import ENERGY_FAMILY_LEVEL, energy_threshold
from toy.evaluation import energy_noise_floor
from toy.experiment import student_key
from toy.experiment_config import preset_config
from toy.preset import Preset
from toy.teachers import ARTeacher


class ExactFewStep:
    """:class:`cf_ref.rollout.BlockwiseModel` of the exact AR flow map: velocity ``(x - Φ_{σ→0}(x; c))/σ`` of one
    frame ``x: [B, 1, d]`` at level σ given the committed clean frames (the cache, a list of ``[B, 1, d]``)."""

    def __init__(self, teacher: ARTeacher, grid: Tensor, method):
        self.teacher, self.grid, self.method = teacher, grid, method

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: list) -> Tensor:
        s = float(sigma.flatten()[0])
        ctx = torch.cat(cache, 1).double() if cache else x.new_zeros(x.shape[0], 0, x.shape[2]).double()
        mix = self.teacher.block_mixture(block, ctx)
        grid = self.grid[self.grid <= s + 1e-12]  # the teacher grid from σ (a grid point) to 0

        def field(xb: Tensor, sg: Tensor) -> Tensor:
            return self.teacher.block_velocity(mix, xb, sg)

        x0 = integrate(field, x.double()[:, None], grid, self.method).end[:, 0]
        return ((x.double() - x0) / s).to(x.dtype)

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: list) -> list:
        return [*cache, x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dataset", default="mixture_k4_d2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--preset", choices=[p.value for p in Preset], default="quick")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    cfg = preset_config(Preset(args.preset))
    data = next(d for d in (s.build(cfg.num_frames) for s in cfg.datasets) if d.name == args.dataset)
    n, e, name = cfg.samples.variance, cfg.samples.energy, data.name
    reference = data.sample(n, generator("cpu", args.seed, name, "reference"))[0]
    noise = torch.randn(
        n, data.num_frames, data.dim, generator=generator("cpu", args.seed, name, "noise"), dtype=torch.float64
    )
    key = student_key(PairTeacher.AR, args.steps, cfg.grid)
    model = ExactFewStep(ARTeacher(data), cfg.grid.grid(), cfg.grid.method)
    rollout_gen = generator("cpu", args.seed, name, "rollout", key)
    sigmas = cfg.grid.student_sigmas(args.steps).float()
    x = few_step_rollout(model, noise.float(), 1, sigmas, [], generator=rollout_gen).x0.double()
    sets = [metrics.energy_distance(x[i * e : (i + 1) * e], reference[:e]) for i in range(n // e)]
    floor = energy_noise_floor(data, reference[:e], cfg.noise_draws, generator("cpu", args.seed, name, "noise-floor"))
    checks = len(cfg.datasets) * len(cfg.grid.student_steps)  # one per student of causal pairs
    threshold, level = energy_threshold(floor["draws"], ENERGY_FAMILY_LEVEL / checks)
    print(f"{name}, seed {args.seed}, exact {args.steps}-step sampler on the run's noise ({key}):")
    print(f"  energy distance, the claim's set: {sets[0]:.4f} (threshold {threshold:.4f}, level {level:.4f})")
    print(f"  the {len(sets)} disjoint sets of {e}: " + ", ".join(f"{v:.4f}" for v in sets))
    if data.num_components > 1:
        print(f"  off-manifold fraction: {metrics.off_manifold_fraction(x, data):.4%}")
    cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0
    print(f"  {time.perf_counter() - t0:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
