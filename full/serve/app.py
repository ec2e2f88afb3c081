"""The FastAPI app of ``cf-ref full serve``: a static page, ``GET /info`` and the ``/ws`` streaming endpoint.

One WebSocket connection = one viewer. ``start`` takes the model's :class:`~full.serve.slot.GenerationSlot`
(or queues / answers "busy"), then a task runs a :class:`full.stream.VideoStream`: each block is generated and
its frames encoded in a worker thread (``asyncio.to_thread``, so the connection keeps reading messages), then
sent as a ``block`` message and one binary message per frame. ``prompt`` / ``steps`` messages go straight to
the stream, which applies them at its next block boundary. ``stop``, ``max_blocks`` or a disconnect end the
task at the next block boundary, and the slot is released (a block being computed is never abandoned
half-way, so the next client never shares the model with a running thread). Bad messages get an ``error``
message; the connection and the server stay up.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass, field, replace
from importlib import resources

import torch
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse

from cf_ref.errors import UserError
from full.components import WanComponents
from full.sampler import SampleConfig
from full.serve.protocol import PromptChange, ProtocolError, ServeLimits, Start, StepsChange, Stop, parse_message
from full.serve.slot import GenerationSlot, SlotBusy
from full.stream import StreamBlock, VideoStream
from full.video import WAN_FPS


@dataclass(frozen=True)
class ServeSettings:
    """The model's fixed sampling settings (what a client cannot change) and the server's limits."""

    config: SampleConfig
    model_name: str = ""
    fps: int = WAN_FPS
    limits: ServeLimits = field(default_factory=ServeLimits)


def encode_frame(frame, fmt: str) -> bytes:
    """A ``uint8`` ``[H, W, 3]`` frame → JPEG (quality 90) or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(frame)
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _produce(stream: VideoStream, fmt: str) -> tuple[StreamBlock, list[bytes]] | None:
    """Worker thread: the next block and its encoded frames (None when the stream is over)."""
    block = next(stream, None)
    if block is None:
        return None
    return block, [encode_frame(f, fmt) for f in block.frames_uint8()]


def _block_message(block: StreamBlock, frames: int) -> dict:
    ms = {f"{k}_ms": round(1000 * v, 2) for k, v in block.timings.items() if k != "steps"}
    return {
        "type": "block",
        "index": block.index,
        "start_frame": block.block.start_frame,
        "prompt": block.prompt,
        "prompt_index": block.prompt_index,
        "steps": block.steps,
        "frames": frames,
        **ms,
    }


class GenerationError(RuntimeError):
    """Building the stream or generating a block failed; the message goes to the page."""


async def _in_thread(fn, *args, **kwargs):
    """Run model work in a worker thread; its failures become :class:`GenerationError` (logged with traceback)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as exc:  # input the model refuses: one line in the log, no traceback
        logging.getLogger(__name__).warning("generation refused: %s", exc)
        raise GenerationError(str(exc)) from exc
    except Exception as exc:
        logging.getLogger(__name__).exception("generation failed")
        raise GenerationError(f"generation failed: {exc}") from exc


def _check_prompt(components: WanComponents, prompt: str) -> None:
    """A prompt the text encoder refuses becomes a :class:`ProtocolError` when it arrives (a prompt change is then
    refused and the video keeps playing)."""
    try:
        components.text.check(prompt)
    except UserError as exc:
        raise ProtocolError(str(exc)) from None


class Viewer:
    """One connection: its messages, its generation task, its stop signal."""

    def __init__(self, ws: WebSocket, components: WanComponents, settings: ServeSettings, slot: GenerationSlot):
        self.ws, self.components, self.settings, self.slot = ws, components, settings, slot
        self.task: asyncio.Task | None = None
        self.stream: VideoStream | None = None
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()  # cuts a pacing pause short (new prompt, stop)

    async def send(self, message: dict) -> None:
        await self.ws.send_json(message)

    async def handle(self, text: str | bytes) -> None:
        limits = self.settings.limits
        try:
            message = parse_message(text, limits)
            if isinstance(message, Start):
                if self.task is not None and not self.task.done():
                    raise ProtocolError("a video is already playing on this connection; send stop first")
                _check_prompt(self.components, message.prompt)
                self.stop, self.stream = asyncio.Event(), None
                self.task = asyncio.create_task(self.generate(message))
                return
            if isinstance(message, Stop):
                self.stop.set()
                self.wake.set()
                return
            if self.task is None or self.task.done():
                raise ProtocolError(f"nothing is playing; send start before {message.type}")
            if self.stream is None:
                raise ProtocolError(f"the video has not started yet (waiting for the model); {message.type} ignored")
            if isinstance(message, PromptChange):
                _check_prompt(self.components, message.prompt)
                self.stream.set_prompt(message.prompt, message.recache)
                self.wake.set()
            elif isinstance(message, StepsChange):
                self.stream.set_steps(message.steps)
        except ProtocolError as exc:
            await self.send({"type": "error", "message": str(exc)})

    async def generate(self, start: Start) -> None:
        """Wait for the slot, then stream blocks until stopped, finished or disconnected."""

        async def queued(position: int) -> None:
            await self.send({"type": "queued", "position": position})

        try:
            if not await self.slot.acquire(self.stop, queued):
                with contextlib.suppress(Exception):
                    await self.send({"type": "stopped", "reason": "stopped while waiting"})
                return
        except SlotBusy as exc:
            await self.send({"type": "busy", "message": str(exc)})
            return
        reason = "stopped"
        try:
            reason = await self._run(start)
        except GenerationError as exc:  # settings the model refuses, or a failure inside the model
            reason = "error"
            with contextlib.suppress(Exception):
                await self.send({"type": "error", "message": str(exc)})
        except (WebSocketDisconnect, RuntimeError, OSError):  # sending to a client that went away
            reason = "disconnected"
        finally:
            stream, self.stream = self.stream, None
            if stream is not None:
                stream.close()
            self.slot.release()
        with contextlib.suppress(Exception):
            await self.send({"type": "stopped", "reason": reason})

    async def _run(self, start: Start) -> str:
        config = replace(self.settings.config, steps=start.steps, first_block_steps=start.first_block_steps)
        self.stream = await _in_thread(
            VideoStream,
            self.components,
            start.prompt,
            config,
            max_blocks=start.max_blocks,
            recache=start.recache,
            generator=torch.Generator().manual_seed(start.seed),
        )
        await self.send({"type": "started", "prompt": start.prompt, "seed": start.seed})
        t0, sent = time.perf_counter(), 0
        while not self.stop.is_set():
            produced = await _in_thread(_produce, self.stream, start.format)
            if produced is None:
                return "max_blocks"
            block, frames = produced
            await self.send(_block_message(block, len(frames)))
            for frame in frames:
                await self.ws.send_bytes(frame)
            sent += len(frames)
            if start.pace:
                await self._pace(t0, sent, len(frames))
        return "stopped"

    async def _pace(self, t0: float, sent: int, per_block: int) -> None:
        """Stay about one block ahead of playback at ``fps``: sleep until the played time catches up."""
        ahead = sent / self.settings.fps - (time.perf_counter() - t0) - per_block / self.settings.fps
        if ahead > 0:
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=ahead)

    async def closed(self) -> None:
        """The client went away: stop at the next block boundary and wait until the slot is released."""
        self.stop.set()
        self.wake.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def _static(name: str):
    return resources.files("full.serve") / "static" / name


def create_app(components: WanComponents, settings: ServeSettings) -> FastAPI:
    """The app for one loaded model (one generation at a time, :attr:`ServeLimits.max_waiting` queued)."""
    components.latent_shape(settings.config.height, settings.config.width)
    app = FastAPI(title="cf-ref stream", docs_url=None, redoc_url=None)
    slot = GenerationSlot(settings.limits.max_waiting)
    app.state.slot = slot
    info = {
        "type": "hello",
        "model": settings.model_name,
        "height": settings.config.height,
        "width": settings.config.width,
        "block_size": settings.config.block_size,
        "fps": settings.fps,
        "limits": settings.limits.as_dict(),
    }

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(str(_static("index.html")), media_type="text/html")

    @app.get("/app.js")
    async def script() -> FileResponse:
        return FileResponse(str(_static("app.js")), media_type="text/javascript")

    @app.get("/info")
    async def model_info() -> JSONResponse:
        return JSONResponse(info | {"busy": slot.busy, "waiting": slot.waiting})

    @app.websocket("/ws")
    async def stream_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        viewer = Viewer(ws, components, settings, slot)
        await viewer.send(info)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await viewer.handle(message.get("text") if message.get("text") is not None else message.get("bytes"))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await viewer.closed()

    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 7860, limits: ServeLimits | None = None) -> None:
    """Serve ``app`` with uvicorn until interrupted (messages above ``limits.max_message_bytes`` close the
    connection at the protocol level)."""
    import uvicorn

    limits = limits or ServeLimits()
    uvicorn.run(app, host=host, port=port, ws_max_size=limits.max_message_bytes, log_level="info")
