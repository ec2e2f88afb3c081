"""Wall and CPU time of ``cf-ref toy run`` (the whole pipeline with figures), and why pairs are batched.

Reported:

* per preset, over ``--repeats`` runs: median wall seconds of :func:`toy.runner.run_to_directory` (what the
  CLI does: pairs, conditional expectations, 16–20 students, metrics, figures, files), the CPU seconds of this
  process and its worker processes, and the load average around the run (the machine may be shared: CPU time is
  what an idle machine would need, wall time what this one took);
* per stage: CPU seconds summed over datasets (from ``timings.json``);
* pair generation: causal (AR-teacher) pairs built batched on tensors vs one sample at a time in a Python
  loop, seconds per 1000 pairs and the ratio.

    python benchmarks/toy_run.py                       # quick preset, 3 repeats, 2 worker processes
    python benchmarks/toy_run.py --preset paper --repeats 1
    python benchmarks/toy_run.py --seeds                 # quick preset on seeds 0, 1, 2 (claims per seed)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

import torch

from cf_ref.io import write_json
from cf_ref.machine import machine_info, machine_summary
from toy.data import shared_mode_mixture
from toy.experiment_config import preset_config
from toy.pairs import GridConfig, causal_pairs
from toy.preset import Preset
from toy.report import claims_line
from toy.runner import run_to_directory


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once they have exited
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_pipeline(preset: Preset, workers: int, figures: bool, keep: str | None = None, seed: int = 0) -> dict:
    config = preset_config(preset)
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or tmp
        load_before = os.getloadavg()[0]
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        metrics, timings = run_to_directory(config, out, seed=seed, workers=workers, figures=figures, progress=False)
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
        load_after = os.getloadavg()[0]
    held = sum(c["holds"] for c in metrics["claims"])
    stages = {k: round(v["cpu_s"], 1) for k, v in timings["stages_s"].items()}
    return {
        "seed": seed,
        "claims_by_kind": claims_line(metrics),
        "missed": [
            f"{c['dataset']} {c['subject']}: {c['claim']} (margin {c['margin']:.3g})"
            for c in metrics["claims"]
            if not c["holds"]
        ],  # fmt: skip
        "wall_s": wall,
        "cpu_s": cpu,
        "load": (load_before, load_after),
        "claims": f"{held}/{len(metrics['claims'])}",
        "stages_cpu_s": stages,
    }


def time_pairs(num: int = 2048, looped: int = 64) -> dict:
    """Causal pairs (AR teacher, clean context) on the 2-d 4-mode mixture: batched vs per-sample loop."""
    data = shared_mode_mixture(4, 2, num_modes=4)
    grid = GridConfig(teacher_steps=16, shift=2.0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(num, 4, 2, generator=gen, dtype=torch.float64)
    context, _ = data.sample(num, gen)
    causal_pairs(data, noise[:8], context[:8], grid)  # warm-up
    t = time.perf_counter()
    batched = causal_pairs(data, noise, context, grid)
    batched_s = (time.perf_counter() - t) / num * 1000
    t = time.perf_counter()
    one = [causal_pairs(data, noise[b : b + 1], context[b : b + 1], grid).target for b in range(looped)]
    loop_s = (time.perf_counter() - t) / looped * 1000
    assert torch.allclose(torch.cat(one), batched.target[:looped], atol=1e-12)
    return {"batched_s_per_1000": batched_s, "loop_s_per_1000": loop_s, "ratio": loop_s / batched_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=[p.value for p in Preset], default="quick")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", action="store_true", help="Run r uses seed r (0, 1, 2, …) instead of seed 0.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument("--out", default=None, help="Keep the last run's outputs (metrics, summary, figures) here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_summary())
    pairs = time_pairs()
    print(
        f"causal pairs: batched {pairs['batched_s_per_1000']:.3f} s / 1000, per-sample loop "
        f"{pairs['loop_s_per_1000']:.2f} s / 1000 ({pairs['ratio']:.0f}x)"
    )
    runs = []
    for r in range(args.repeats):
        keep = args.out if r == args.repeats - 1 else None
        res = time_pipeline(Preset(args.preset), args.workers, not args.no_figures, keep, r if args.seeds else 0)
        runs.append(res)
        print(
            f"{args.preset} run {r} (seed {res['seed']}): wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, "
            f"load {res['load'][0]:.1f}→{res['load'][1]:.1f}, claims {res['claims']} ({res['claims_by_kind']}), "
            f"stage CPU {res['stages_cpu_s']}"
        )
        for line in res["missed"]:
            print(f"  missed: {line}")
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    print(
        f"{args.preset}: median wall {wall:.1f} s, median CPU {cpu:.1f} s over {len(runs)} run(s), {args.workers} workers"
    )
    if args.json:
        write_json(
            args.json,
            {"machine": machine_info(), "pairs": pairs, "runs": runs, "median_wall_s": wall, "median_cpu_s": cpu},
        )


if __name__ == "__main__":
    main()
