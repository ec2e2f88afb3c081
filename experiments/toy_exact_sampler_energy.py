r"""Is a causal student's unpaired energy-distance miss the student or the draw? (docs/toy.md §4)

``cf-ref toy run`` reports each K-step causal student's energy distance (its first ``samples.energy`` samples
against the reference) beside the calibrated threshold (``toy.claims.energy_threshold``); its claim is the paired
check on a separate draw (``toy.experiment.paired_energy``). This script runs the **same K-step sampler with the
exact AR flow map in place of the student** (:meth:`toy.teachers.ARTeacher.few_step_sample`: at each level σ_k the
clean estimate is the AR teacher's PF-ODE integrated from σ_k to 0 given the committed frames,
:math:`\hat x_0 = \Phi_{\sigma_k\to 0}(x; c_{<i})`) on the run's own evaluation noise and re-noising generator
(``cf_ref.seeding.generator(seed, dataset, "rollout", key)``), so its samples differ from the unpaired set's only
by the student's error. If the exact sampler misses as well, the miss is the draw.

Prints the exact sampler's energy distance on the claim's set and on every disjoint set of the same size, its
off-manifold fraction (mixtures) and the run's threshold.

    python experiments/toy_exact_sampler_energy.py --seed 1 --dataset mixture_k4_d2 --steps 4
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from cf_ref.recipes import PairTeacher
from cf_ref.seeding import generator
from toy import metrics
from toy.claims import ENERGY_FAMILY_LEVEL, energy_threshold
from toy.evaluation import energy_noise_floor
from toy.experiment import student_key
from toy.experiment_config import preset_config
from toy.preset import Preset
from toy.teachers import ARTeacher


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
    rollout_gen = generator("cpu", args.seed, name, "rollout", key)
    sigmas = cfg.grid.student_sigmas(args.steps).float()
    x = ARTeacher(data).few_step_sample(noise.float(), sigmas, cfg.grid.grid(), cfg.grid.method, rollout_gen).double()
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
