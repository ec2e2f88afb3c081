"""A real uvicorn server on 127.0.0.1 (an ephemeral port) in a background thread, for the server tests."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest


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
    def factory(max_waiting: int = 1, **limit_overrides):
        limits = ServeLimits(max_waiting=max_waiting, **limit_overrides)
        config = SampleConfig(height=TINY.height, width=TINY.width, block_size=3, num_frames=3, window=3, sink=True)
        app = create_app(tiny_components, ServeSettings(config, "preset:tiny", limits=limits))
        with running(app, limits) as address:
            yield address, app

    return factory
