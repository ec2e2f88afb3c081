"""What the checksums of weights and checkpoints cost (``cf_ref.io``): per GiB written and verified.

A checkpoint of the 1.3B DiT holds several GB (weights, EMA, critic, optimizer states); every safetensors file
written by :func:`cf_ref.io.save_tensors` carries the SHA-256 of its content, and every resume verifies them. Measured
on one ``--gib``-GiB float32 tensor (medians over ``--repeats``, wall and CPU seconds):

* ``save`` — :func:`cf_ref.io.save_tensors` (digest + write + fsync) against ``safetensors.torch.save_file`` alone
  (the cost of the checksum when writing);
* ``verify`` — :func:`cf_ref.checksums.verify_tensors` (streamed re-read + SHA-256) and the plain file hashes
  :func:`cf_ref.checksums.file_digest` (SHA-256) and BLAKE2b for comparison, from the page cache (the file was just written);
* the hash alone on bytes in memory: SHA-256 and BLAKE2b, GiB/s.

    python benchmarks/checksums.py --gib 1 --repeats 3 --json checksums.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from cf_ref.checksums import file_digest, verify_tensors
from cf_ref.io import save_tensors
from cf_ref.machine import machine_info, machine_summary


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def blake2b_file(path: Path) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def plain_save(tensors: dict, path: Path) -> None:
    save_file(tensors, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def measure(gib: float, repeats: int, folder: Path) -> dict[str, dict[str, float]]:
    n = int(gib * 2**30 / 4)
    tensors = {"w": torch.randn(n)}
    data = memoryview(tensors["w"].numpy()).cast("B")
    path = folder / "w.safetensors"
    cases = {
        "save_file (no checksum)": lambda: plain_save(tensors, path),
        "save_tensors (checksum)": lambda: save_tensors(path, tensors),
        "verify_tensors": lambda: verify_tensors(path, require=True),
        "file sha256": lambda: file_digest(path),
        "file blake2b": lambda: blake2b_file(path),
        "sha256 in memory": lambda: hashlib.sha256(data).hexdigest(),
        "blake2b in memory": lambda: hashlib.blake2b(data).hexdigest(),
    }
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeats):  # interleaved: machine drift hits every case alike
        for name, fn in cases.items():
            runs[name].append(timed(fn))
    out = {}
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        out[name] = {"wall_s_per_gib": wall / gib, "cpu_s_per_gib": cpu / gib, "gib_per_s": gib / wall}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the file (default: a temp folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine_summary())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        result = measure(args.gib, args.repeats, Path(tmp))
    print(f"| case ({args.gib:g} GiB, median of {args.repeats}) | wall s / GiB | CPU s / GiB | GiB/s |")
    print("| --- | --- | --- | --- |")
    for name, r in result.items():
        print(f"| {name} | {r['wall_s_per_gib']:.2f} | {r['cpu_s_per_gib']:.2f} | {r['gib_per_s']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), "gib": args.gib, "results": result}, indent=2))


if __name__ == "__main__":
    main()
