"""The GPU suite's Python parts run end to end on the CPU with ``--tiny`` (a smoke run: tiny models, every mode that
does not need CUDA, the CUDA-graph mode reported as skipped) and their tables render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_gpu_sampling_tiny_smoke_and_tables(tmp_path):
    modes = ["eager-dynamic", "eager-static", "cuda-graphs"]
    done = _run("benchmarks/gpu_sampling.py", "--tiny", "--frames", "2", "--blocks", "1", "--repeats", "0",
                "--modes", *modes, "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "sampling.json").read_text())
    rows = {r["mode"]: r for r in results["rows"]}
    assert rows["cuda-graphs"] == {"mode": "cuda-graphs", "skipped": "needs CUDA"}
    for mode in modes[:2]:
        assert rows[mode]["dit_ms_per_block"] > 0 and rows[mode]["e2e_fps"] > 0
    (tmp_path / "training.json").write_text(json.dumps({"results": {"ode": {"s_per_step": 0.5, "peak_gb": 1.25}}}))
    tables = _run("benchmarks/gpu_tables.py", str(tmp_path))
    assert tables.returncode == 0, tables.stderr
    assert "| eager-static | 1 |" in tables.stdout and "needs CUDA" in tables.stdout
    assert "| ode | 1.25 | 0.5 |" in tables.stdout
