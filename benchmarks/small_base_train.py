"""Train the small track's shared base model alone — the first step of ``cf-ref full compare`` — into ``OUT/base``.

``cf-ref full compare --preset P --out OUT`` later reuses it (:func:`full.small.run.prepare_base` skips a saved base
model; an interrupted pretraining resumes from its checkpoints, one every eighth of the steps). Prints the machine,
the load average before and after, wall-clock and CPU seconds; each checkpoint ``OUT/base/base-pretrain/
checkpoint-*/base.safetensors`` can be scored as it appears with ``benchmarks/small_base_curve.py``.

    python benchmarks/small_base_train.py [--preset small] [--out runs/small]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import torch

from cf_ref.machine import machine_summary
from full.distributed import init_distributed
from full.small.run import prepare_base
from full.small.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--out", default="runs/small")
    args = parser.parse_args()
    print(f"machine: {machine_summary()}; load average before: {os.getloadavg()}", flush=True)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    folder = prepare_base(get_settings(args.preset), Path(args.out), init_distributed("cpu"))
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(f"load average after: {os.getloadavg()}")
    print(f"{folder}: {(time.perf_counter() - t0) / 60:.1f} min wall, {(use.ru_utime + use.ru_stime) / 60:.1f} CPU min")


if __name__ == "__main__":
    main()
