"""Benchmark: ``cf-ref full compare --preset small --seeds 3`` end to end (the small track's budget).

Prints the machine, the load average before and after, the whole comparison's wall-clock and CPU seconds (this
process and its seed processes), and each seed's CPU and wall seconds as ``compare.json`` records them. Target:
under 60 minutes on 2 CPU cores. CPU seconds are the steadier figure when the cores are shared with other work.

    python benchmarks/small_compare.py [--preset small] [--seeds 3] [--jobs 3] [--out runs/bench-small-compare]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from cf_ref.machine import machine_summary
from full.small.compare import run_compare


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--out", default="runs/bench-small-compare")
    args = parser.parse_args()
    print(f"machine: {machine_summary()}; load average before: {os.getloadavg()}")
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = run_compare(args.preset, args.seeds, args.out, jobs=args.jobs)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"load average after: {os.getloadavg()}")
    print(f"{args.preset}, {args.seeds} seeds, {args.jobs} jobs: {wall / 60:.1f} min wall, {cpu / 60:.1f} CPU min")
    for seed, t in result["timings"].items():
        print(f"  seed {seed}: {t['cpu_s'] / 60:.1f} CPU min, {t['wall_s'] / 60:.1f} min wall")


if __name__ == "__main__":
    main()
