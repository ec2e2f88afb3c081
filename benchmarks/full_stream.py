"""The streaming API against ``generate``: overhead on the same work, prompt-switch latency, re-cache or not.

Measured (medians over ``--repeats``, the two paths interleaved so drift hits both alike):

* **overhead** — ``generate`` (prompt encoded, every block denoised, committed and decoded) against iterating a
  :class:`full.stream.VideoStream` over the same blocks with the same seed (the same frames, tested): wall and
  CPU seconds, ratio stream / generate (target ≤ 1.05);
* **prompt switch** — ``set_prompt`` right after a block was delivered, then the time until the first block under
  the new prompt is decoded (encode + optional re-cache + one block), against a block without a switch; with
  and without LongLive's re-cache;
* **re-cache or not** (numbers only; the tiny/wide models have random weights, so nothing here says which
  *looks* better): after the switch, the RMS distance of the latents to a stream that had the new prompt from
  the start (same noise) — how fully the video has moved to the new prompt — and the jump across the switch
  (RMS difference of the last frame before and the first after, over that of consecutive frames elsewhere);
* on CUDA (``--preset wan1.3b``): stream FPS at 480×832, chunk-wise and frame-wise, steady state (blocks after
  the first) and first-block latency, against the Self Forcing anchors (17.0 / 8.9 FPS on one H100).

Presets: ``tiny`` (the tiny random models, 64×64), ``wide`` (CPU: Wan's width — 1536, 12 heads — with 2 layers,
the tiny VAE and text encoder, 128×128), ``wan1.3b`` (CUDA: Wan2.1-T2V-1.3B's DiT and VAE configurations with
random weights, bf16, a random stand-in for UMT5's output).

    python benchmarks/full_stream.py --preset tiny --threads 1 --json stream_tiny.json
    python benchmarks/full_stream.py --preset wan1.3b --device cuda --json stream_gpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from cf_ref.machine import machine_info, machine_summary
from full.components import WanComponents
from full.dtypes import cast_keeping_fp32
from full.model import WAN21_T2V_1_3B, CausalWanTransformer3DModel
from full.sampler import SampleConfig, generate
from full.stream import VideoStream
from full.video import video_frames

A, B = "a red ball bouncing on a wooden floor", "a blue cube spinning in the snow"


class RandomText:
    """Stands in for UMT5 at real size (speed does not depend on the values): a fixed random embedding per prompt."""

    def __init__(self, length: int, dim: int, device: torch.device, dtype: torch.dtype):
        self.length, self.dim, self.device, self.dtype = length, dim, device, dtype

    def encode(self, prompts: list[str]) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(map(ord, prompts[0])))
        return torch.randn(len(prompts), self.length, self.dim, generator=g).to(self.device, self.dtype)


def build(preset: str, device: torch.device) -> tuple[WanComponents, SampleConfig]:
    from full.components import load_preset
    from full.tiny import TINY

    if preset == "tiny":
        components, _ = load_preset("tiny", device)
        return components, SampleConfig(height=TINY.height, width=TINY.width, block_size=3)
    if preset == "wide":
        components, _ = load_preset("tiny", device)
        kwargs = dict(WAN21_T2V_1_3B, num_layers=2, in_channels=TINY.latent_channels, out_channels=TINY.latent_channels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            wide = CausalWanTransformer3DModel(**(kwargs | {"text_dim": TINY.text_dim})).eval()
        return WanComponents(wide.to(device), components.vae, components.text), SampleConfig(height=128, width=128)
    from diffusers import AutoencoderKLWan

    with torch.device(device):
        transformer = CausalWanTransformer3DModel(**WAN21_T2V_1_3B)
        vae = AutoencoderKLWan()
    transformer = cast_keeping_fp32(transformer, torch.bfloat16).eval().requires_grad_(False)
    vae = cast_keeping_fp32(vae, torch.bfloat16).eval().requires_grad_(False)
    return WanComponents(transformer, vae, RandomText(512, 4096, device, torch.bfloat16)), SampleConfig()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[float, float]:
    _sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w, time.process_time() - c


def overhead(components, config, repeats: int) -> dict:
    dtype, device = components.transformer.compute_dtype, components.device
    blocks = config.num_frames // config.block_size

    def by_generate():
        generate(components, components.text.encode([A]).to(dtype), config)

    def by_stream():
        stream = VideoStream(components, A, config, max_blocks=blocks)
        for _ in stream:
            pass
        stream.close()

    by_generate(), by_stream()  # warm-up
    runs = {"generate": [], "stream": []}
    for _ in range(repeats):
        runs["generate"].append(timed(by_generate, device))
        runs["stream"].append(timed(by_stream, device))
    out = {}
    for name, values in runs.items():
        out[f"{name}_wall_s"] = statistics.median(v[0] for v in values)
        out[f"{name}_cpu_s"] = statistics.median(v[1] for v in values)
    out["ratio_wall"] = out["stream_wall_s"] / out["generate_wall_s"]
    out["ratio_cpu"] = out["stream_cpu_s"] / out["generate_cpu_s"]
    out["ratios_per_repeat"] = [s[0] / g[0] for s, g in zip(runs["stream"], runs["generate"])]
    return out


def stream_layer_share(components, config) -> dict:
    """The stream's own share of the work, from one profiled run (load hits numerator and denominator alike):
    time inside ``VideoStream.__next__`` not spent in ``BlockSampler.next_block``, over ``__next__``'s total."""
    import cProfile
    import pstats

    stream = VideoStream(components, A, config, max_blocks=config.num_frames // config.block_size)
    profile = cProfile.Profile()
    profile.enable()
    for _ in stream:
        pass
    profile.disable()
    stream.close()
    stats = pstats.Stats(profile).stats
    cum = {f"{fn[0].rsplit('/', 1)[-1]}:{fn[2]}": v[3] for fn, v in stats.items()}
    outer, inner = cum["stream.py:__next__"], cum["sampler.py:next_block"]
    return {"next_s": outer, "next_block_s": inner, "stream_layer_fraction": (outer - inner) / outer}


def switch_latency(components, config, repeats: int, recache: bool) -> dict:
    """Blocks 0..2 under A; then alternate: a plain block, a block right after set_prompt (A ↔ B)."""
    stream = VideoStream(components, A, replace(config, window=config.window or 3), recache=recache)
    device = components.device
    for _ in range(3):
        next(stream)
    plain, switched, prompts = [], [], [B, A]
    for i in range(repeats):
        plain.append(timed(lambda: next(stream), device))
        stream.set_prompt(prompts[i % 2])
        switched.append(timed(lambda: next(stream), device))
    stream.close()
    out = {"recache": recache}
    for k, kind in enumerate(("wall", "cpu")):
        block, switch = statistics.median(p[k] for p in plain), statistics.median(s[k] for s in switched)
        out |= {f"block_{kind}_s": block, f"switch_to_first_new_block_{kind}_s": switch}
        out[f"switch_overhead_{kind}_s"] = switch - block
    return out


def recache_effect(components, config, switch_at: int = 3, after: int = 3) -> dict:
    """How far the blocks after a switch A→B are from a B-only stream (same noise), with and without re-cache."""
    config = replace(config, window=config.window or 3)
    total = switch_at + after

    def collect(stream, switch=False):
        out = []
        for i, block in enumerate(stream):
            out.append(block.latents.float())
            if switch and i == switch_at - 1:
                stream.set_prompt(B)
            if len(out) == total:
                break
        stream.close()
        return torch.cat(out, dim=1)

    b_only = collect(VideoStream(components, B, config, decode=False))
    result = {}
    for recache in (False, True):
        x = collect(VideoStream(components, A, config, recache=recache, decode=False), switch=True)
        cut = switch_at * config.block_size
        dist = [
            (x[:, cut + j * config.block_size : cut + (j + 1) * config.block_size] - b_only[:, cut + j * config.block_size : cut + (j + 1) * config.block_size])
            .pow(2)
            .mean()
            .sqrt()
            .item()
            for j in range(after)
        ]  # fmt: skip
        steps = (x[:, 1:] - x[:, :-1]).pow(2).mean(dim=(0, 2, 3, 4)).sqrt()
        jump = steps[cut - 1] / torch.cat([steps[: cut - 1], steps[cut:]]).median()
        result["recache" if recache else "plain"] = {"rms_to_new_prompt_stream": dist, "jump_ratio": jump.item()}
    return result


def steady_fps(components, config, blocks: int, repeats: int) -> dict:
    stream = VideoStream(components, A, config)
    device = components.device
    first = timed(lambda: next(stream), device)[0]
    times = [timed(lambda: next(stream), device)[0] for _ in range(blocks * repeats)]
    stream.close()
    per_block = statistics.median(times)
    return {"block_size": config.block_size, "first_block_s": first, "fps": 4 * config.block_size / per_block}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "wide", "wan1.3b"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=21, help="latent frames per video (overhead)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_summary())
    device = torch.device(args.device)
    components, base = build(args.preset, device)
    config = replace(base, steps=args.steps, num_frames=args.frames)
    results = {"machine": machine_info(), "preset": args.preset, "config": config.__dict__}
    with torch.no_grad():
        results["overhead"] = overhead(components, config, args.repeats)
        results["overhead"] |= stream_layer_share(components, config)
        print("overhead", results["overhead"])
        results["switch"] = [switch_latency(components, config, args.repeats, r) for r in (False, True)]
        print("switch", results["switch"])
        results["recache_effect"] = recache_effect(components, config)
        print("recache effect", results["recache_effect"])
        if device.type == "cuda":
            results["fps"] = [
                steady_fps(components, replace(config, block_size=b, num_frames=b, window=21 // b), 7 // b + 2, 2)
                for b in (3, 1)
            ]
            print("fps", results["fps"], "video frames/s; anchors: 17.0 chunk-wise, 8.9 frame-wise (H100)")
    results["video_frames"] = video_frames(args.frames)
    if args.json:
        from cf_ref.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
