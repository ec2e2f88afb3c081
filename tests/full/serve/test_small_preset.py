"""``cf-ref full serve --preset small``: the shipped small student behind the web app, at its own settings."""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")
websockets_sync = pytest.importorskip("websockets.sync.client", reason="the serve extra is not installed")

PROMPT = "a yellow square moving down"


def test_serve_streams_the_small_student_at_its_settings(serve_process):
    from PIL import Image

    from full.components import load_preset
    from full.sample_files import preset_config
    from full.sampler import generate
    from full.video import to_uint8

    with serve_process("--preset", "small") as port:
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=10).read())
        assert (info["model"], info["height"], info["width"], info["fps"]) == ("preset:small", 128, 128, 6)
        with websockets_sync.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            json.loads(ws.recv(timeout=30))  # hello
            start = {"type": "start", "prompt": PROMPT, "steps": 4, "seed": 2, "max_blocks": 2, "pace": False}
            ws.send(json.dumps(start | {"format": "png"}))
            frames = []
            while True:
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] == "block":
                    frames += [np.asarray(Image.open(io.BytesIO(ws.recv(timeout=60)))) for _ in range(msg["frames"])]
                if msg["type"] in ("stopped", "error"):
                    break
        assert msg["type"] == "stopped", msg
    components, preset = load_preset("small")
    # the server's rolling cache (window 6, sink) holds both blocks: the same frames as one 6-frame video
    reference = generate(components, components.text.encode([PROMPT]), preset_config(preset, seed=2, num_frames=6))
    np.testing.assert_array_equal(np.stack(frames), to_uint8(reference.video[0]))  # PNG is lossless
