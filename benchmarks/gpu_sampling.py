"""Sampling speed of the causal Wan DiT per execution mode: eager, compiled, CUDA graphs — the GPU suite's sampling part.

Modes (all with the KV cache; ``full.sampler.generate``, 4 steps + the cache pass per block):

* ``eager-dynamic`` — the growing cache (:class:`full.cache.WanKVCache`), eager;
* ``eager-static`` — the fixed-shape cache (:class:`full.static_cache.StaticKVCache`), eager;
* ``compiled`` — static cache, transformer blocks ``torch.compile``'d (``full.graphs.compile_blocks``);
* ``cuda-graphs`` — static cache, compiled blocks, each block's passes replayed as CUDA graphs (CUDA only).

For chunk-wise (3 latent frames a block) and frame-wise (1) generation of 21 latent frames (81 video frames) at
480×832 with the Wan2.1-T2V-1.3B DiT and the Wan VAE (random weights, bf16): DiT time per block including its cache
pass, DiT-only and end-to-end (streaming VAE decode) FPS, and the first block's latency end to end (for frame-wise:
the first frame's). The goals are printed beside the figures (DiT ≤ 250 ms per 3-frame chunk on one H100,
end to end ≥ 25 FPS, frame-wise first frame ≤ 0.3 s). Writes ``sampling.md`` and ``sampling.json`` to ``--out``.

    python benchmarks/gpu_sampling.py --out results/            # CUDA: the real sizes
    python benchmarks/gpu_sampling.py --tiny --out /tmp/s        # CPU smoke run: tiny models, compile on aot_eager
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from full_throughput import build  # noqa: E402  (a sibling script)
from gpu_tables import sampling_table  # noqa: E402  (a sibling script, torch-free)

from cf_ref.machine import machine_info, machine_summary  # noqa: E402
from full.graphs import compile_blocks  # noqa: E402
from full.sampler import BlockSampler, NoiseSource, SampleConfig  # noqa: E402
from full.video import video_frames  # noqa: E402

MODES = {
    "eager-dynamic": dict(cache="dynamic"),
    "eager-static": dict(cache="static"),
    "compiled": dict(cache="static", compile=True),
    "cuda-graphs": dict(cache="static", compile=True, cuda_graphs=True),
}


def one_video(sampler: BlockSampler, count: int) -> dict:
    """Generate ``count`` blocks from a restarted sampler; timings as :func:`full.sampler.generate` reports them."""
    sampler.restart(NoiseSource.from_seed(0, sampler.device))
    sampler.sync()
    start = time.perf_counter()
    blocks, first = [], 0.0
    for j in range(count):
        blocks.append(sampler.next_block())
        if j == 0:
            first = time.perf_counter() - start
    sampler.sync()
    return {"total": time.perf_counter() - start, "first_block": first, "dit": sum(b.timings["dit"] for b in blocks)}


def measure(components, text, config: SampleConfig, repeats: int) -> dict:
    """Medians over ``repeats`` videos after one warm-up video that also compiles / captures (0: the warm-up video
    alone, a smoke check). One sampler serves all of them (restarted between videos), so the static cache's buffers,
    compiled blocks and captured graphs are reused as in a long-running server."""
    rows = {}
    count = config.num_frames // config.block_size
    for decode in (False, True):
        sampler = BlockSampler(components, config, NoiseSource.from_seed(0, components.device), 1, decode)
        sampler.set_text(text)
        timings = [one_video(sampler, count) for _ in range(repeats + 1)]
        sampler.close()
        timings = timings[1:] or timings
        key = "e2e" if decode else "dit"
        total = statistics.median(t["total"] for t in timings)
        rows[f"{key}_fps"] = video_frames(config.num_frames) / total
        rows[f"{key}_first_block_s"] = statistics.median(t["first_block"] for t in timings)
        if not decode:
            rows["dit_ms_per_block"] = 1000 * statistics.median(t["dit"] for t in timings) / count
    return rows


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke run")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    components, text, (height, width) = build("tiny" if args.tiny else "wan1.3b", device, dtype)
    results = {"machine": machine_info(), "tiny": args.tiny, "height": height, "width": width, "rows": []}
    for mode in args.modes:
        opts = MODES[mode]
        if opts.get("cuda_graphs") and device.type != "cuda":
            results["rows"].append({"mode": mode, "skipped": "needs CUDA"})
            continue
        if opts.get("compile"):
            compile_blocks(components.transformer, **({"backend": "aot_eager"} if args.tiny else {}))
        for block in args.blocks:
            config = SampleConfig(
                block_size=block, num_frames=args.frames, height=height, width=width, seed=0,
                **{k: v for k, v in opts.items() if k != "compile"},
            )  # fmt: skip
            t0 = time.perf_counter()
            row = {"mode": mode, "block_size": block, **measure(components, text, config, args.repeats)}
            row["wall_s"] = time.perf_counter() - t0
            if device.type == "cuda":
                row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            save(results, args.out)  # after every row: a suite that stops this part at its limit keeps the rows done
    return results


def save(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sampling.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "sampling.md").write_text(sampling_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (a smoke run)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 1], help="block sizes (3 chunk-, 1 frame-wise)")
    parser.add_argument("--frames", type=int, default=21, help="latent frames (21 = 81 video frames)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-up (0: none, smoke)")
    parser.add_argument("--out", type=Path, required=True, help="folder for sampling.md / sampling.json")
    args = parser.parse_args()
    print(machine_summary(), flush=True)
    results = run(args)
    save(results, args.out)
    print(sampling_table(results))


if __name__ == "__main__":
    main()
