"""The plan tables of docs/full.md: the published chunk-wise and frame-wise configurations on 1, 8 and 16 GPUs.

For each configuration, ``cf-ref full plan`` (:func:`full.plan.planner.make_plan`) with the DMD real score at the
published Wan2.1-T2V-14B, on H100 SXM 80 GB: peak memory per GPU of every stage step, FLOPs per step, roofline
time at MFU 0.4, sampling per chunk. Writes ``<out>/<config>-<gpus>.json`` and ``.md`` after each
configuration, and prints the machine, wall and CPU seconds.

    python benchmarks/plan_tables.py --out runs/plan-tables               # both configs, 1/8/16 GPUs
    python benchmarks/plan_tables.py --configs chunkwise --gpus 1          # a quicker subset
    python benchmarks/plan_tables.py --gpus 8 16 --stages ar-diffusion ode cd dmd --no-flops   # in parallel
    python benchmarks/plan_tables.py --configs framewise --stages dmd sampling --depths 2       # cheaper
    python benchmarks/plan_tables.py --configs framewise --gpus 8 --stages dmd --set video.latent_frames=17
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings
from pathlib import Path

from cf_ref.io import write_json, write_text
from cf_ref.machine import machine_summary
from full.config import build_config
from full.plan.planner import make_plan, plan_json, plan_text
from full.plan.stages import BUILDERS

CONFIGS = {
    "chunkwise": "configs/full/causal_forcing_chunkwise.yaml",
    "framewise": "configs/full/causal_forcing_framewise.yaml",
}


def print_now(line: str) -> None:
    print(line, flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/plan-tables"))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--gpus", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--gpu", default="h100-sxm-80gb")
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--real-score", default="wan2.1-t2v-14b")
    parser.add_argument("--stages", nargs="+", default=list(BUILDERS), help="stage families to simulate")
    parser.add_argument("--no-flops", action="store_true", help="memory only (e.g. a second process for 8/16 GPUs)")
    parser.add_argument("--full-depth", action="store_true", help="simulate every block instead of extrapolating")
    parser.add_argument("--depths", type=int, choices=[2, 3], default=3, help="shallow simulations to extrapolate")
    parser.add_argument("--set", nargs="+", default=[], help="config overrides, e.g. video.latent_frames=17")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine_summary(), flush=True)
    for name in args.configs:
        wall, cpu = time.perf_counter(), cpu_seconds()
        config = build_config(CONFIGS[name], args.set)
        plan = make_plan(
            config,
            args.gpus,
            args.gpu,
            args.mfu,
            args.real_score,
            args.stages,
            progress=print_now,
            count_flops=not args.no_flops,
            extrapolate=not args.full_depth,
            depths=args.depths,
        )
        data = plan_json(plan) | {"config": CONFIGS[name], "overrides": args.set, "cpu_seconds": cpu_seconds() - cpu}
        write_json(args.out / f"{name}.json", data)
        write_text(args.out / f"{name}.md", plan_text(plan) + "\n")
        print(plan_text(plan), flush=True)
        print(
            f"{name}: {time.perf_counter() - wall:.0f} s wall, {cpu_seconds() - cpu:.0f} s CPU, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
