"""Overhead of the KV cache at Wan's real width on CPU: the profiler's self time outside matmuls and attention.

A Wan2.1-T2V-1.3B-shaped DiT cut to ``--layers`` transformer blocks (width 1536 = 12 heads × 128, FFN 8960,
random weights, fp32) generates a video block by block exactly as the sampler does (``few_step_rollout`` over one
block: ``--steps`` denoising passes + the cache pass) at the real token count per latent frame (480×832 →
latent 60×104 → 30×52 = 1560 tokens). The cache rolls with ``--window`` blocks; blocks run until the window is full
and the ring has wrapped, then one block is profiled (``torch.profiler``, CPU) with each cache:

* **matmul** — self time of ``aten::mm / addmm / bmm / baddbmm / matmul`` and the patch embedding's convolution;
* **attention** — self time of the SDPA kernels (``aten::_scaled_dot_product_*``, and ``aten::_softmax`` should
  SDPA fall back to its math path);
* **other** — every other op's self time: the overhead, reported as a share of the block's total self time; split
  into **data movement** (``cat``, copies, dtype casts, indexing, allocation — where a cache's bookkeeping shows)
  and **elementwise** compute (norms, GELU, RoPE and modulation arithmetic, which eager PyTorch runs op by op).

Before and after in one run: ``--baseline REV`` runs every measurement also on the code of git revision ``REV``
(extracted with ``git archive`` into a temporary folder, imported instead of this tree's ``full``); each
measurement runs in its own process, a before/after pair side by side (``--parallel 2``), so both see the same
machine load. ``--memory reuse`` measures in processes that keep freed memory for reuse (glibc ``mallopt``: no
``mmap`` per large tensor, no trimming — what PyTorch's CUDA caching allocator, or jemalloc / tcmalloc, do): with
glibc's defaults every large fresh tensor is fresh pages from the kernel, whose first touch is counted in whichever
op touches it first (mostly the ``copy_`` of a linear layer's bias into its fresh output).

    python benchmarks/full_cache_overhead.py                         # frame-wise, window 3, 1 thread
    python benchmarks/full_cache_overhead.py --baseline 4c88b0b --cache static dynamic --memory default reuse
    python benchmarks/full_cache_overhead.py --block 3 --window 2 --json out.json
    python benchmarks/full_cache_overhead.py --compile --cache static     # inductor-compiled blocks

Prints the machine; medians are over ``--repeats`` profiled blocks (each after the warm-up blocks, which run one
denoising step each: they only fill the window and wrap the ring).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cf_ref.machine import machine_info, machine_summary
from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import FewStepSchedule
from full.model import WAN21_T2V_1_3B, CausalWanTransformer3DModel

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::mkldnn_convolution"}
MATMUL |= {"aten::convolution", "aten::_convolution", "aten::conv3d", "aten::_mkldnn_convolution"}
MATMUL |= {"aten::slow_conv3d_forward"}
ATTENTION_PREFIX = ("aten::_scaled_dot_product", "aten::scaled_dot_product", "aten::_softmax")


MOVEMENT = {
    "aten::cat", "aten::copy_", "aten::clone", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::index_copy_",
    "aten::index_select", "aten::index", "aten::slice", "aten::select", "aten::as_strided", "aten::view",
    "aten::expand", "aten::reshape", "aten::_unsafe_view", "aten::unflatten", "aten::flatten", "aten::permute",
    "aten::transpose", "aten::t", "aten::empty", "aten::empty_like", "aten::zeros", "aten::zero_", "aten::fill_",
    "aten::empty_strided", "aten::resolve_conj", "aten::resolve_neg", "aten::unbind", "aten::split",
    "aten::split_with_sizes", "aten::chunk", "aten::narrow", "aten::detach", "aten::alias", "aten::lift_fresh",
    "aten::repeat_interleave", "aten::unsqueeze", "aten::squeeze", "aten::_reshape_alias", "aten::new_empty",
}  # fmt: skip


def category(name: str) -> str:
    if name in MATMUL:
        return "matmul"
    if name.startswith(ATTENTION_PREFIX):
        return "attention"
    return "other"


def profile_block(step, top: int = 8) -> dict:
    """Self CPU time per category (seconds) of one call of ``step``, its wall time, and the largest 'other' ops."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        wall = time.perf_counter() - t0
    times = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    others = []
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        times[category(event.key)] += seconds
        if category(event.key) == "other":
            others.append((seconds, event.key, event.count))
    total = sum(times.values())
    others.sort(reverse=True)
    movement = sum(s for s, k, _ in others if k in MOVEMENT)
    return {
        **times,
        "total": total,
        "wall": wall,
        "other_share": times["other"] / total,
        "movement": movement,
        "movement_share": movement / total,
        "elementwise_share": (times["other"] - movement) / total,
        "top_other": [{"op": k, "s": round(s, 4), "calls": c} for s, k, c in others[:top]],
        "all_other": [{"op": k, "s": round(s, 5), "calls": c} for s, k, c in others],
    }


def run(args: argparse.Namespace, cache_kind: str) -> dict:
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**{**WAN21_T2V_1_3B, "num_layers": args.layers}).eval().requires_grad_(False)
    text = torch.randn(1, 512, WAN21_T2V_1_3B["text_dim"])
    if args.compile:
        from full.graphs import compile_blocks

        compile_blocks(model)  # inductor: fused elementwise kernels count as "other", extern mm / SDPA as before
    bw = model.blockwise(text, args.block, window=args.window)
    warm = args.window + 1  # fill the window, then wrap the ring once
    cache = bw.new_cache(cache_kind, max_frames=(warm + args.repeats) * args.block)
    sigmas = FewStepSchedule.uniform(args.steps, 5.0).student_sigmas().float()
    h, w = args.grid
    g = torch.Generator().manual_seed(1)

    @torch.no_grad()
    def step(levels: torch.Tensor = sigmas) -> None:
        noise = torch.randn(1, args.block, 16, 2 * h, 2 * w, generator=g)
        few_step_rollout(bw, noise, args.block, levels, cache, generator=g)
        cache.rebase()

    for _ in range(warm):
        step(sigmas[:1])
    runs = [profile_block(step) for _ in range(args.repeats)]
    keys = ("matmul", "attention", "other", "total", "wall", "other_share", "movement_share", "elementwise_share")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["top_other"], out["all_other"] = runs[-1]["top_other"], runs[-1]["all_other"]
    out["cached_frames"] = cache.cached_frames
    return out


def reuse_freed_memory() -> None:
    """glibc: serve every allocation from the heap (no ``mmap``) and never trim it, so freed tensors are reused."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise RuntimeError("mallopt refused the settings")


def worker(args: argparse.Namespace) -> None:
    """One measurement (``--worker KIND``) in this process; the result as JSON on the last line of stdout."""
    if args.reuse_memory:
        reuse_freed_memory()
    torch.set_num_threads(args.threads)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    r = run(args, args.worker)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    r["process_wall_s"] = time.perf_counter() - t0
    r["process_cpu_s"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(json.dumps(r, default=str))


def extract(rev: str) -> str:
    """This repository's code at git revision ``rev`` in a new temporary folder."""
    import subprocess
    import tempfile

    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    folder = tempfile.mkdtemp(prefix="cache-overhead-")
    archive = subprocess.run(["git", "-C", root.stdout.strip(), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def measurements(args: argparse.Namespace) -> list[dict]:
    """Every (code, cache, memory) measurement, before/after pairs adjacent."""
    codes = [("before", extract(args.baseline)), ("after", None)] if args.baseline else [("after", None)]
    return [
        dict(code=c, tree=t, cache=k, reuse=m == "reuse") for m in args.memory for k in args.cache for c, t in codes
    ]


def launch(args: argparse.Namespace, row: dict):
    import os
    import subprocess
    import sys

    flags = [f"--{k}={v}" for k, v in (("layers", args.layers), ("block", args.block), ("window", args.window))]
    flags += [f"--grid={args.grid[0]}x{args.grid[1]}", f"--steps={args.steps}", f"--repeats={args.repeats}"]
    flags += [f"--threads={args.threads}", f"--worker={row['cache']}"]
    flags += ["--compile"] * args.compile + ["--reuse-memory"] * row["reuse"]
    env = dict(os.environ)
    if row["tree"]:
        env["PYTHONPATH"] = row["tree"]
    cmd = [sys.executable, __file__, *flags]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def report(row: dict) -> None:
    r = row["result"]
    name = f"{row['code']:6s} {row['cache']:7s}{' reuse' if row['reuse'] else '      '}"
    print(
        f"{name} block {r['wall']:.2f} s wall, self time: matmul {r['matmul']:.2f} s, attention "
        f"{r['attention']:.2f} s, other {r['other']:.3f} s = {100 * r['other_share']:.2f} % (data movement "
        f"{100 * r['movement_share']:.2f} %, elementwise {100 * r['elementwise_share']:.2f} %) "
        f"(cache holds {r['cached_frames']} frames; process {r['process_wall_s']:.0f} s wall, "
        f"{r['process_cpu_s']:.0f} s CPU)"
    )
    print("   largest other:", ", ".join(f"{o['op']} {o['s']:.3f}s×{o['calls']}" for o in r["top_other"][:6]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--grid", type=lambda s: tuple(int(v) for v in s.split("x")), default=(30, 52), help="HxW")
    parser.add_argument("--block", type=int, default=1, help="latent frames per block (1 frame-wise, 3 chunk-wise)")
    parser.add_argument("--window", type=int, default=3, help="rolling cache, blocks (query block included)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="profiled blocks per cache")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", nargs="+", default=["dynamic", "static"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the blocks (inductor; C++ compiler)")
    parser.add_argument("--baseline", help="git revision to measure too (the 'before' code)")
    parser.add_argument("--memory", nargs="+", choices=["default", "reuse"], default=["default"],
                        help="glibc's allocator as it is, and/or keeping freed memory for reuse")  # fmt: skip
    parser.add_argument("--reuse-memory", action="store_true", help=argparse.SUPPRESS)  # a worker's setting
    parser.add_argument("--parallel", type=int, default=2, help="measurements at once (one process each)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    info = machine_info()
    print(machine_summary())
    print(
        f"width 1536, 12 heads, {args.layers} layers, {args.grid[0]}x{args.grid[1]} = {args.grid[0] * args.grid[1]} "
        f"tokens/frame, block {args.block}, window {args.window}, {args.steps} steps + cache pass, fp32, "
        f"{args.threads} thread(s){', compiled blocks (inductor)' if args.compile else ''}"
    )
    rows, t0 = measurements(args), time.perf_counter()
    for start in range(0, len(rows), args.parallel):
        group = rows[start : start + args.parallel]
        procs = [launch(args, row) for row in group]
        for row, proc in zip(group, procs, strict=True):
            out, _ = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"measurement {row['code']} {row['cache']} failed (exit {proc.returncode})")
            row["result"] = json.loads(out.strip().splitlines()[-1])
            report(row)
    print(f"{time.perf_counter() - t0:.0f} s wall; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        results = {
            "machine": info,
            "args": vars(args),
            "rows": [{k: v for k, v in r.items() if k != "tree"} for r in rows],
        }
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
