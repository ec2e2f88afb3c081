"""The live server (uvicorn on 127.0.0.1) driven by WebSocket clients: a stream, prompt switches, busy and
queued clients, a client that disconnects mid-stream, bad messages."""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.request

import numpy as np
import pytest

websockets_sync = pytest.importorskip("websockets.sync.client", reason="the serve extra is not installed")

from full.sampler import SampleConfig, generate  # noqa: E402
from full.video import to_uint8  # noqa: E402

A, B = "a red ball bouncing", "a blue cube spinning"


class Client:
    def __init__(self, address: str):
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(websockets_sync.connect(f"ws://{address}/ws", open_timeout=10))
        self.hello = self.next_json()

    def send(self, **message) -> None:
        self.ws.send(json.dumps(message))

    def next(self, timeout: float = 30):
        return self.ws.recv(timeout=timeout)

    def next_json(self, timeout: float = 30) -> dict:
        message = self.next(timeout)
        assert isinstance(message, str), "expected a JSON text message, got a frame"
        return json.loads(message)

    def until(self, kind: str, timeout: float = 30) -> tuple[dict, list]:
        """Read until a message of ``kind``; returns it and the (block, frames) pairs seen before it."""
        blocks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.next_json(timeout)
            if msg["type"] == "block":
                blocks.append((msg, [self.next(timeout) for _ in range(msg["frames"])]))
            if msg["type"] == kind:
                return msg, blocks
        raise AssertionError(f"no {kind} message within {timeout} s")

    def close(self) -> None:
        self.stack.close()


def png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_free(app, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while app.state.slot.busy:
        assert time.monotonic() < deadline, "the generation slot was not released"
        time.sleep(0.02)


def test_stream_frames_equal_generate(serve_factory, tiny_components):
    with serve_factory() as (address, app):
        info = json.loads(urllib.request.urlopen(f"http://{address}/info", timeout=10).read())
        assert (info["height"], info["width"], info["block_size"], info["busy"]) == (64, 64, 3, False)
        page = urllib.request.urlopen(f"http://{address}/", timeout=10).read().decode()
        assert "<canvas" in page and "/app.js" in page
        client = Client(address)
        assert client.hello["type"] == "hello" and client.hello["limits"]["max_steps"] == 8
        client.send(type="start", prompt=A, steps=2, seed=5, max_blocks=3, pace=False, format="png")
        assert client.next_json()["type"] == "started"
        stopped, blocks = client.until("stopped")
        assert stopped["reason"] == "max_blocks" and [b["index"] for b, _ in blocks] == [0, 1, 2]
        assert [len(f) for _, f in blocks] == [9, 12, 12] and {b["prompt"] for b, _ in blocks} == {A}
        assert all(b["dit_ms"] > 0 and b["decode_ms"] > 0 for b, _ in blocks)
        frames = np.stack([png(f) for _, fs in blocks for f in fs])
        config = SampleConfig(height=64, width=64, num_frames=9, steps=2, window=3, sink=True, seed=5)
        ref = generate(tiny_components, tiny_components.text.encode([A]), config)
        np.testing.assert_array_equal(frames, to_uint8(ref.video[0]))  # PNG is lossless
        client.close()
        wait_free(app)


def test_prompt_and_steps_change_while_playing(serve_factory):
    with serve_factory() as (address, app):
        client = Client(address)
        client.send(type="start", prompt=A, steps=1, pace=False, max_blocks=40)
        client.until("block")
        client.send(type="prompt", prompt=B)
        client.send(type="steps", steps=2)
        seen = []
        while not seen or seen[-1]["prompt_index"] == 0 or seen[-1]["steps"] != 2:
            block = client.next_json()
            if block["type"] == "block":
                seen.append(block)
                [client.next() for _ in range(block["frames"])]
        indices = [b["prompt_index"] for b in seen]
        assert indices == sorted(indices) and seen[-1]["prompt"] == B  # switched at a boundary, never back
        client.send(type="stop")
        stopped, _ = client.until("stopped")
        assert stopped["reason"] == "stopped"
        client.send(type="prompt", prompt=A)  # nothing is playing any more
        assert "nothing is playing" in client.next_json()["message"]
        client.close()
        wait_free(app)


def test_a_second_client_is_told_busy_or_waits(serve_factory):
    with serve_factory(max_waiting=0) as (address, app):
        first, second = Client(address), Client(address)
        first.send(type="start", prompt=A, steps=1, pace=False)
        first.until("block")
        second.send(type="start", prompt=B, steps=1, pace=False)
        busy = second.next_json()
        assert busy["type"] == "busy" and "another client" in busy["message"]
        first.send(type="stop")
        first.until("stopped")
        wait_free(app)
        second.send(type="start", prompt=B, steps=1, pace=False, max_blocks=1)
        assert second.until("stopped")[0]["reason"] == "max_blocks"
        first.close(), second.close()
    with serve_factory(max_waiting=1) as (address, app):
        first, second = Client(address), Client(address)
        first.send(type="start", prompt=A, steps=1, pace=False)
        first.until("block")
        second.send(type="start", prompt=B, steps=1, pace=False, max_blocks=1)
        assert second.next_json() == {"type": "queued", "position": 1}
        second.send(type="stop")  # gives up its place
        assert second.next_json() == {"type": "stopped", "reason": "stopped while waiting"}
        second.send(type="start", prompt=B, steps=1, pace=False, max_blocks=1)
        assert second.next_json() == {"type": "queued", "position": 1}
        third = Client(address)
        third.send(type="start", prompt=B, steps=1, pace=False)
        assert third.next_json()["type"] == "busy"  # the line (1) is full
        first.send(type="stop")
        assert second.until("started")[0]["prompt"] == B
        assert second.until("stopped")[0]["reason"] == "max_blocks"
        first.close(), second.close(), third.close()
        wait_free(app)


def test_a_client_that_disconnects_releases_the_model(serve_factory):
    with serve_factory(max_waiting=1) as (address, app):
        first = Client(address)
        first.send(type="start", prompt=A, steps=1, pace=True)
        first.until("block")
        second = Client(address)
        second.send(type="start", prompt=B, steps=1, pace=False, max_blocks=2)
        assert second.next_json()["type"] == "queued"
        first.ws.close()  # gone mid-stream, without a stop
        assert second.until("started", timeout=30)[0]["prompt"] == B
        assert second.until("stopped")[0]["reason"] == "max_blocks"
        second.close()
        wait_free(app)


def test_bad_messages_get_an_error_and_the_server_keeps_running(serve_factory):
    with serve_factory() as (address, app):
        client = Client(address)
        bad = [
            "{not json",
            json.dumps({"type": "start", "prompt": ""}),
            json.dumps({"type": "start", "prompt": "x" * 1001}),
            json.dumps({"type": "start", "prompt": "a", "steps": 1000}),
            json.dumps({"type": "start", "prompt": "a", "max_blocks": 10**9}),
            json.dumps({"type": "warp"}),
            json.dumps({"type": "prompt", "prompt": "a"}),
        ]
        for text in bad:
            client.ws.send(text)
            reply = client.next_json()
            assert reply["type"] == "error" and reply["message"], text
        client.ws.send(b"\x00binary")
        assert "not binary" in client.next_json()["message"]
        client.send(type="start", prompt=A, steps=1, pace=False)
        client.until("block")
        client.send(type="start", prompt=A)
        assert "already playing" in client.until("error")[0]["message"]
        client.send(type="stop")
        client.until("stopped")
        client.send(type="start", prompt=A, steps=1, pace=False, max_blocks=1)  # still serving
        assert client.until("stopped")[0]["reason"] == "max_blocks"
        client.close()
        wait_free(app)


def test_a_failure_inside_the_model_is_reported_and_the_model_released(serve_factory, tiny_components):
    def fail(module, args):
        raise RuntimeError("out of memory (simulated)")

    with serve_factory() as (address, app):
        client = Client(address)
        hook = tiny_components.transformer.blocks[0].register_forward_pre_hook(fail)
        try:
            client.send(type="start", prompt=A, steps=1, pace=False)
            error, _ = client.until("error")
            assert "generation failed: out of memory (simulated)" in error["message"]
            assert client.until("stopped")[0]["reason"] == "error"
        finally:
            hook.remove()
        wait_free(app)
        client.send(type="start", prompt=A, steps=1, pace=False, max_blocks=1)
        assert client.until("stopped")[0]["reason"] == "max_blocks"
        client.close()


def test_a_prompt_the_text_encoder_refuses_is_an_error_line_and_the_video_keeps_playing(serve_factory, caplog):
    """The small preset understands one caption grammar: an unknown word is refused when the message arrives (one
    ``error`` message, nothing logged with a traceback); a refused prompt change leaves the video playing."""
    good, bad = "a red square moving left", "a purple dragon flying"
    with serve_factory(preset="small") as (address, app):
        client = Client(address)
        client.send(type="start", prompt=bad, steps=1, pace=False)
        reply = client.next_json()
        assert reply["type"] == "error" and "unknown word 'purple'" in reply["message"]
        client.send(type="start", prompt=good, steps=1, pace=False)
        client.until("block")
        client.send(type="prompt", prompt=bad)
        assert "unknown word 'purple'" in client.until("error")[0]["message"]
        client.until("block")  # still playing the good prompt
        client.send(type="stop")
        assert client.until("stopped")[0]["reason"] == "stopped"
        client.close()
        wait_free(app)
    assert not [r for r in caplog.records if r.exc_info], "a refused prompt must not log a traceback"
