"""Benchmark: ``cf-ref toy compare --preset quick --seeds 3`` end to end, and each stage's time.

Prints the machine, the whole comparison's wall-clock and process CPU time, and per stage the median over
seeds of its wall and CPU seconds (shared stages counted once). Target: the whole comparison under 10 minutes
on 2 CPU cores. CPU seconds are the steadier figure when the cores are shared with other work.

    python benchmarks/toy_compare.py [--preset quick] [--seeds 3] [--threads 1] [--out runs/bench-toy-compare]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from cf_ref.machine import machine_summary
from cf_ref.recipes import Recipe
from cf_ref.timing import Stopwatch
from toy.compare import run_compare
from toy.pipeline import recipe_stage_keys
from toy.pipeline_config import pipeline_config
from toy.preset import Preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[p.value for p in Preset], default=Preset.QUICK.value)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-toy-compare")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"machine: {machine_summary()}")
    preset = Preset(args.preset)
    with Stopwatch().running() as clock:
        result = run_compare(pipeline_config(preset), list(range(args.seeds)), Path(args.out), preset)
    print(
        f"compare --preset {preset.value} --seeds {args.seeds}: wall {clock.wall:.1f} s, process CPU {clock.cpu:.1f} s"
    )

    stages: dict[str, dict[str, dict[str, float]]] = {}  # stage key -> wall/cpu -> seed -> seconds
    for recipe in Recipe:
        per_seed = result["recipes"][recipe.value]["per_seed"]
        for role, key in recipe_stage_keys(recipe).items():  # shared stages: same record under every recipe
            times = stages.setdefault(key, {"wall": {}, "cpu": {}})
            for seed, record in per_seed.items():
                times["wall"][seed], times["cpu"][seed] = record[role]["seconds"], record[role]["cpu_seconds"]
    for seed, teachers in result["teachers_per_seed"].items():
        for forcing, record in teachers.items():
            times = stages.setdefault(f"ar_teacher/{forcing}", {"wall": {}, "cpu": {}})
            times["wall"][seed], times["cpu"][seed] = record["seconds"], record["cpu_seconds"]
    print(f"{'stage':34s} {'median wall (s)':>16s} {'median CPU (s)':>15s}")
    for key, times in stages.items():
        print(
            f"{key:34s} {statistics.median(times['wall'].values()):16.2f} "
            f"{statistics.median(times['cpu'].values()):15.2f}"
        )
    per_seed_cpu = sum(statistics.median(t["cpu"].values()) for t in stages.values())
    print(f"sum of stage CPU medians (one seed, shared stages once): {per_seed_cpu:.1f} s")


if __name__ == "__main__":
    main()
