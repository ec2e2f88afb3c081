"""Throughput of causal few-step generation with the KV cache: DiT-only and end-to-end (with VAE decode).

On CUDA (default ``--preset wan1.3b``): the real Wan2.1-T2V-1.3B DiT configuration and the real Wan VAE
configuration with random weights (speed does not depend on their values), bf16, 480×832, 21 latent
frames (81 video frames), 4 denoising steps + the cache pass per block, chunk-wise (3 latent frames a
block) and frame-wise (1). Text encoding is excluded (once per prompt); a random ``[1, 512, 4096]`` prompt
embedding stands in for UMT5's output.

On CPU (``--preset tiny``, the default there): the tiny random models of :mod:`full.tiny` at 64×64, same
frame counts and steps — a functional speed check, not comparable to GPU figures.

Reported per block size (medians over ``--repeats`` runs after one warm-up run):
* DiT FPS = video frames / DiT time; end-to-end FPS = video frames / (DiT + streaming decode);
* first-block latency: DiT-only (denoise + cache pass of block 0), end-to-end (+ decoding it);
* peak GPU memory (``torch.cuda.max_memory_allocated``);
* ``--recompute`` adds the no-cache baseline: each denoising call re-runs the block-causal DiT over the
  whole clean prefix instead of reading cached K/V (what the cache saves).

    python benchmarks/full_throughput.py                      # auto: wan1.3b on CUDA, tiny on CPU
    python benchmarks/full_throughput.py --compile --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cf_ref.machine import machine_info, machine_summary
from cf_ref.masks import AttentionMode
from cf_ref.schedule import interpolate, x0_from_velocity
from full.dtypes import cast_keeping_fp32
from full.model import WAN21_T2V_1_3B, CausalWanTransformer3DModel
from full.sampler import SampleConfig, WanComponents, generate
from full.video import video_frames

WAN_TEXT = (512, 4096)


def build(preset: str, device: torch.device, dtype: torch.dtype):
    """(components, text embeddings, sample size) for a preset."""
    from diffusers import AutoencoderKLWan

    if preset == "tiny":
        from full.tiny import TINY, tiny_transformer, tiny_vae

        transformer, vae = tiny_transformer(0), tiny_vae(1)
        text = torch.randn(1, TINY.text_length, TINY.text_dim)
        size = (TINY.height, TINY.width)
    else:
        with torch.device(device):
            transformer = CausalWanTransformer3DModel(**WAN21_T2V_1_3B)
            vae = AutoencoderKLWan()  # Wan2.1 VAE configuration
        text = torch.randn(1, *WAN_TEXT)
        size = (480, 832)
    transformer = cast_keeping_fp32(transformer.to(device), dtype).eval().requires_grad_(False)
    vae = cast_keeping_fp32(vae.to(device), dtype).eval().requires_grad_(False)
    return WanComponents(transformer, vae, text=None), text.to(device=device, dtype=dtype), size


@torch.no_grad()
def recompute_baseline(components: WanComponents, text: torch.Tensor, config: SampleConfig) -> float:
    """Seconds for the same few-step generation without a KV cache (block-causal forward over the prefix)."""
    model, device, b = components.transformer, components.device, config.block_size
    c, h, w = components.latent_shape(config.height, config.width)
    sigmas = [float(s) for s in config.sigmas()]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    done = torch.zeros(1, 0, c, h, w, device=device)
    for _ in range(config.num_frames // b):
        x = torch.randn(1, b, c, h, w, device=device)
        for k, s in enumerate(sigmas):
            levels = torch.cat([torch.zeros(1, done.shape[1]), torch.full((1, b), s)], dim=1).to(device)
            v = model.velocity(torch.cat([done, x], 1), levels, text, mode=AttentionMode.BLOCK_CAUSAL, block_size=b)
            x0 = x0_from_velocity(x, v[:, -b:], s)
            x = interpolate(x0, torch.randn_like(x0), sigmas[k + 1]) if k + 1 < len(sigmas) else x0
        done = torch.cat([done, x], 1)
    sync()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = args.preset or ("wan1.3b" if device.type == "cuda" else "tiny")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    components, text, (height, width) = build(preset, device, dtype)
    if args.attention_backend:
        components.transformer.set_attention_backend(args.attention_backend)
    if args.compile:
        components.transformer.compile_repeated_blocks(fullgraph=True)
    results = {"machine": machine_info(), "preset": preset, "dtype": str(dtype), "height": height, "width": width}
    results["frames"] = {"latent": args.frames, "video": video_frames(args.frames)}
    results["steps"], results["compile"], results["runs"] = args.steps, args.compile, []
    for block in args.blocks:
        config = SampleConfig(
            steps=args.steps, block_size=block, num_frames=args.frames, height=height, width=width, seed=0
        )
        row = {"block_size": block}
        for decode in (False, True):
            times = []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for rep in range(args.repeats + 1):  # the first run warms up (and compiles)
                result = generate(components, text, config, decode=decode)
                if rep:
                    times.append(result.timings)
            key = "e2e" if decode else "dit"
            total = statistics.median(t["total"] for t in times)
            row[f"{key}_fps"] = video_frames(args.frames) / total
            row[f"{key}_seconds"] = total
            row[f"{key}_first_block_s"] = statistics.median(t["first_block"] for t in times)
            if decode:
                row["decode_seconds"] = statistics.median(t["decode"] for t in times)
            if device.type == "cuda":
                row[f"{key}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if args.recompute:
            recompute_baseline(components, text, config)  # warm-up
            base = statistics.median(recompute_baseline(components, text, config) for _ in range(args.repeats))
            row["recompute_dit_seconds"] = base
            row["kv_cache_speedup"] = base / row["dit_seconds"]
        results["runs"].append(row)
        print(json.dumps(row))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["wan1.3b", "tiny"], help="default: wan1.3b on CUDA, tiny on CPU")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 1], help="block sizes (3 chunk-, 1 frame-wise)")
    parser.add_argument("--frames", type=int, default=21, help="latent frames (21 = 81 video frames)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    parser.add_argument("--attention-backend", help="diffusers attention backend (e.g. flash, _flash_3)")
    parser.add_argument("--recompute", action="store_true", help="also time the no-KV-cache baseline")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_summary())
    results = run(args)
    if args.json:
        from cf_ref.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
