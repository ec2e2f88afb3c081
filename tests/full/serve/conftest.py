"""A real uvicorn server on 127.0.0.1 (an ephemeral port) in a background thread, for the server tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def running(app, limits):
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=limits.max_message_bytes)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextlib.contextmanager
def _serve_process(*options: str):
    """``cf-ref full serve OPTIONS --port 0 --device cpu`` in a subprocess; yields the port it prints; SIGINT at exit."""
    cmd = [sys.executable, "-m", "cf_ref.cli", "full", "serve", *options, "--port", "0", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def serve_process():
    """``with serve_process("--preset", "tiny") as port: …`` — the ``cf-ref full serve`` command, live on 127.0.0.1."""
    return _serve_process


@pytest.fixture(scope="module")
def serve_factory(tiny_components):
    """``with serve_factory(max_waiting=…) as (address, app): …`` — the tiny preset behind a live server."""
    for module in ("fastapi", "uvicorn", "websockets"):
        pytest.importorskip(module, reason="the serve extra is not installed (pip install -e '.[serve]')")
    from full.sampler import SampleConfig
    from full.serve.app import ServeSettings, create_app
    from full.serve.protocol import ServeLimits
    from full.tiny import TINY

    @contextlib.contextmanager
    def factory(max_waiting: int = 1, preset: str = "tiny", **limit_overrides):
        limits = ServeLimits(max_waiting=max_waiting, **limit_overrides)
        if preset == "tiny":
            components = tiny_components
            config = SampleConfig(height=TINY.height, width=TINY.width, block_size=3, num_frames=3, window=3, sink=True)
        else:
            from full.components import load_preset
            from full.sample_files import preset_config

            components, settings = load_preset(preset)
            config = preset_config(settings, num_frames=3, window=6, sink=True)
        app = create_app(components, ServeSettings(config, f"preset:{preset}", limits=limits))
        with running(app, limits) as address:
            yield address, app

    return factory
