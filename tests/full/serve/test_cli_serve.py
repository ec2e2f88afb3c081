"""``cf-ref full serve``: the command starts a server on 127.0.0.1 that answers, and bad options fail in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cf_ref.cli import main

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

ROOT = Path(__file__).resolve().parents[3]


def test_serve_command_answers_on_localhost():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "cf_ref.cli", "full", "serve", "--preset", "tiny", "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        deadline, port, seen = time.monotonic() + 120, None, []
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            port = match and int(match.group(1))
        assert port, "".join(seen[-20:])
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=10).read())
        assert info["model"] == "preset:tiny" and info["busy"] is False
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bad_options_fail_before_serving(tmp_path):
    cases = [
        (["--model", str(tmp_path / "nowhere")], "model folder"),
        (["--preset", "tiny", "--height", "72"], "must be a multiple of 16x16"),
        (["--preset", "tiny", "--block", "2", "--window", "2", "--no-sink", "--context-noise", "1.5"], "context_noise"),
        (["--preset", "tiny", "--model", str(tmp_path)], "exactly one of --model"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["full", "serve", *args, "--device", "cpu"])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
