"""Benchmark: ``cf-ref full sample --preset small`` — the shipped student's speed on the CPU and its scores.

Times (median of ``--repeats``, wall and CPU seconds, one torch thread) loading the preset and sampling one video
(12 latent frames, 4 blocks of 3, 4 steps, decoded to 128×128), then scores the student with the small track's
detector on every caption of the grammar (4 colours × 2 shapes × 4 directions) × ``--seeds`` noise seeds, beside the
same DiT at random weights. Prints the machine and the load average.

    python benchmarks/small_sample.py [--seeds 4] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import torch

from cf_ref.machine import machine_summary
from full.components import WanComponents, load_preset
from full.model import CausalWanTransformer3DModel
from full.sample_files import preset_config
from full.sampler import generate
from full.small.settings import SMALL
from full.small.ship import score_latents
from full.synthetic import COLOURS, DIRECTIONS, SHAPES

PROMPTS = [f"a {c} {s} moving {d}" for c, s, d in itertools.product(COLOURS, SHAPES, DIRECTIONS)]


def timed(fn) -> tuple[float, float, object]:
    """``(wall s, CPU s, result)`` of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def scores(components: WanComponents, preset, seeds: int) -> dict[str, float]:
    """Mean detector scores over PROMPTS × seeds (and the per-seed ``follows_all``)."""
    per_seed = []
    for seed in range(seeds):
        latents = generate(components, components.text.encode(PROMPTS), preset_config(preset, seed=seed), decode=False)
        per_seed.append(score_latents(latents.latents, PROMPTS, SMALL.data.patch, SMALL.data.size))
    out = {k: statistics.fmean(s[k] for s in per_seed) for k in per_seed[0]}
    out["follows_all_per_seed"] = [s["follows_all"] for s in per_seed]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine_summary()}; load average before: {os.getloadavg()}")
    loads = [timed(lambda: load_preset("small")) for _ in range(args.repeats)]
    components, preset = loads[-1][2]
    embeds = components.text.encode(["a red square moving left"])
    samples = [timed(lambda: generate(components, embeds, preset_config(preset))) for _ in range(args.repeats)]
    result = {
        "machine": machine_summary(),
        "load_s": {"wall": statistics.median(w for w, _, _ in loads), "cpu": statistics.median(c for _, c, _ in loads)},
        "sample_s": {
            "wall": statistics.median(w for w, _, _ in samples),
            "cpu": statistics.median(c for _, c, _ in samples),
        },
        "student": scores(components, preset, args.seeds),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random = CausalWanTransformer3DModel.from_config(components.transformer.config).eval()
    result["random_weights"] = scores(WanComponents(random, components.vae, components.text), preset, args.seeds)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
