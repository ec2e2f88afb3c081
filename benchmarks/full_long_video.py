"""Long video: memory and time per block of a rollout 10× longer than the trained length.

The students are trained on 21 latent frames (81 video frames). This drives :class:`full.sampler.BlockSampler`
block by block for ``--length`` × 21 latent frames and records after every block:

* **cache MB** — the bytes of every K/V tensor the KV cache holds (exact; what grows with the video);
* **RSS MB** — the process's resident memory (``/proc/self/statm``; includes the allocator's slack). The modes run
  one after another in one process and freed memory is not returned to the system, so a mode's RSS cannot fall
  below an earlier mode's peak: run a windowed mode alone (``--modes adjacent``) for its own RSS;
* **ms** / **CPU ms** — wall and process CPU time of the block (denoise ``--steps`` steps, commit; no VAE decode
  unless ``--decode``); on a shared machine the CPU time is the steadier of the two.

Modes: ``full`` (no window: the whole history is kept — grows linearly), ``sink`` (a rolling cache of
``--window`` blocks plus the first block as an attention sink at its written RoPE positions) and ``adjacent``
(the same, the sink RoPE-rotated to just before the window: the authors' long-video model). With blocks of 3 and
a window of 6 a block attends to 3 (sink) + 15 (window) + 3 (itself) = 21 frames, the trained length.

Model: ``wide`` — Wan2.1's head layout and width (12 heads × 128 = 1536) with ``--layers`` layers, the tiny
preset's VAE and text encoder, 128×128 pixels (16×16 latents, 64 tokens per frame), fp32 on the CPU; random
weights (memory and time do not depend on them).

    python benchmarks/full_long_video.py --length 10 --json long_video.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from cf_ref.machine import machine_info, machine_summary
from full.architectures import WAN21_T2V_1_3B
from full.components import WanComponents, load_preset
from full.model import CausalWanTransformer3DModel
from full.sampler import BlockSampler, NoiseSource, SampleConfig
from full.tiny import TINY

TRAINED_FRAMES = 21


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cache_mb(cache) -> float:
    return sum(t.nbytes for kv in cache.layers for t in (kv.key, kv.value) if t is not None) / 2**20


def wide_components(layers: int) -> WanComponents:
    tiny, _ = load_preset("tiny")
    kwargs = dict(WAN21_T2V_1_3B, num_layers=layers, in_channels=TINY.latent_channels)
    kwargs |= {"out_channels": TINY.latent_channels, "text_dim": TINY.text_dim}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CausalWanTransformer3DModel(**kwargs).eval().requires_grad_(False)
    return WanComponents(model, tiny.vae, tiny.text)


def rollout(components: WanComponents, mode: str, args) -> list[dict]:
    frames = args.length * TRAINED_FRAMES
    window = None if mode == "full" else args.window
    positions = "adjacent" if mode == "adjacent" else "fixed"
    config = SampleConfig(steps=args.steps, block_size=3, num_frames=frames, height=128, width=128, window=window,
                          sink=mode != "full", sink_positions=positions)  # fmt: skip
    sampler = BlockSampler(components, config, NoiseSource.from_seed(0, "cpu"), decode=args.decode)
    sampler.set_text(components.text.encode(["a long walk along a river"]))
    rows = []
    for j in range(frames // 3):
        t0, c0 = time.perf_counter(), time.process_time()
        sampler.next_block()
        ms, cpu_ms = 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)
        rows.append({"block": j + 1, "frames": 3 * (j + 1), "cache_mb": cache_mb(sampler.cache), "rss_mb": rss_mb(),
                     "ms": ms, "cpu_ms": cpu_ms})  # fmt: skip
    sampler.close()
    return rows


def summarise(mode: str, rows: list[dict]) -> dict:
    trained = rows[TRAINED_FRAMES // 3 - 1]  # the block that ends the trained length
    last = rows[-1]
    late, early = rows[len(rows) // 2 :], rows[: TRAINED_FRAMES // 3]
    return {
        "mode": mode,
        "cache_mb_at_trained_length": trained["cache_mb"],
        "cache_mb_at_end": last["cache_mb"],
        "cache_growth": last["cache_mb"] / trained["cache_mb"],
        "rss_mb_at_trained_length": trained["rss_mb"],
        "rss_mb_at_end": last["rss_mb"],
        "ms_per_block_first_21_frames": statistics.median(r["ms"] for r in early),
        "ms_per_block_second_half": statistics.median(r["ms"] for r in late),
        "cpu_ms_per_block_first_21_frames": statistics.median(r["cpu_ms"] for r in early),
        "cpu_ms_per_block_second_half": statistics.median(r["cpu_ms"] for r in late),
        "rss_mb_max": max(r["rss_mb"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=10, help="video length in trained lengths (21 latent frames)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--window", type=int, default=6, help="rolling cache, blocks of 3 frames")
    parser.add_argument("--modes", default="full,sink,adjacent")
    parser.add_argument("--decode", action="store_true", help="also decode every block (streaming VAE)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every block's row and the summaries here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_summary())
    components = wide_components(args.layers)
    out = {"machine": machine_info(), "args": vars(args), "modes": {}}
    cpu0 = time.process_time()
    for mode in args.modes.split(","):
        rows = rollout(components, mode, args)
        summary = summarise(mode, rows)
        out["modes"][mode] = {"summary": summary, "rows": rows}
        print(
            f"{mode:9s} cache {summary['cache_mb_at_trained_length']:.1f} MB at 21 frames -> "
            f"{summary['cache_mb_at_end']:.1f} MB at {rows[-1]['frames']} ({summary['cache_growth']:.2f}x); "
            f"RSS {summary['rss_mb_at_trained_length']:.0f} -> {summary['rss_mb_at_end']:.0f} MB; "
            f"ms/block {summary['ms_per_block_first_21_frames']:.0f} (first 21 frames) -> "
            f"{summary['ms_per_block_second_half']:.0f} (second half); CPU ms/block "
            f"{summary['cpu_ms_per_block_first_21_frames']:.0f} -> {summary['cpu_ms_per_block_second_half']:.0f}"
        )
    out["cpu_seconds"] = time.process_time() - cpu0
    print(f"CPU seconds: {out['cpu_seconds']:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
