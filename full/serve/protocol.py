"""The WebSocket protocol of ``cf-ref full serve`` and the limits the server enforces.

Client → server: one JSON object per text message, ``type`` first:

* ``{"type": "start", "prompt": str, "steps": 4, "first_block_steps": null, "seed": 0, "max_blocks": null,
  "recache": false, "pace": true, "format": "jpeg"}`` — start a video (``max_blocks`` null = until stopped,
  at most :attr:`ServeLimits.max_blocks`; ``pace``: stay about one block ahead of real-time playback;
  ``format``: ``jpeg`` or ``png`` frames);
* ``{"type": "prompt", "prompt": str, "recache": null}`` — change the prompt from the next block on;
* ``{"type": "steps", "steps": int}`` — steps per block from the next block on;
* ``{"type": "stop"}`` — stop after the current block.

Server → client: JSON text messages ``hello`` (model, video size, fps, limits), ``queued`` (position),
``busy``, ``started``, ``block`` (index, prompt, prompt_index, steps, frame count, timings in ms) followed by
that many binary messages (one encoded frame each), ``stopped`` (reason), ``error`` (message; the
connection stays open).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError


@dataclass(frozen=True)
class ServeLimits:
    """What a client may ask for. ``max_waiting``: clients queued behind the running one (0 = "busy" at once)."""

    max_prompt_chars: int = 1000
    max_steps: int = 8
    max_blocks: int = 100_000
    max_seed: int = 2**31 - 1
    max_waiting: int = 1
    max_message_bytes: int = 64 * 1024

    def as_dict(self) -> dict:
        return asdict(self)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(_Message):
    type: Literal["start"]
    prompt: StrictStr
    steps: StrictInt = Field(4, ge=1)
    first_block_steps: StrictInt | None = Field(None, ge=1)
    seed: StrictInt = Field(0, ge=0)
    max_blocks: StrictInt | None = Field(None, ge=1)
    recache: StrictBool = False
    pace: StrictBool = True
    format: Literal["jpeg", "png"] = "jpeg"


class PromptChange(_Message):
    type: Literal["prompt"]
    prompt: StrictStr
    recache: StrictBool | None = None


class StepsChange(_Message):
    type: Literal["steps"]
    steps: StrictInt = Field(ge=1)


class Stop(_Message):
    type: Literal["stop"]


Message = Annotated[Start | PromptChange | StepsChange | Stop, Field(discriminator="type")]
_ADAPTER = TypeAdapter(Message)
TYPES = ("start", "prompt", "steps", "stop")


class ProtocolError(ValueError):
    """A message the server refuses; ``str()`` is the one line sent back to the page."""


def _check_prompt(prompt: str, limits: ServeLimits) -> None:
    if not prompt.strip():
        raise ProtocolError("the prompt is empty")
    if len(prompt) > limits.max_prompt_chars:
        raise ProtocolError(f"the prompt has {len(prompt)} characters; at most {limits.max_prompt_chars}")


def _check_steps(steps: int | None, limits: ServeLimits, name: str) -> None:
    if steps is not None and steps > limits.max_steps:
        raise ProtocolError(f"{name} must be between 1 and {limits.max_steps}, got {steps}")


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "union_tag_invalid" or first["type"] == "union_tag_not_found":
        return f"unknown message type; expected one of {', '.join(TYPES)}"
    if first["type"] == "extra_forbidden":
        return f"unexpected field {where.split('.')[-1]!r}"
    return f"{where}: {first['msg']}" if where else first["msg"]


def parse_message(text: str | bytes, limits: ServeLimits) -> Start | PromptChange | StepsChange | Stop:
    """One client message → its typed form, or :class:`ProtocolError` with a one-line reason."""
    if isinstance(text, bytes):
        raise ProtocolError("send JSON text messages, not binary ones")
    if len(text.encode("utf-8", "replace")) > limits.max_message_bytes:
        raise ProtocolError(f"message larger than {limits.max_message_bytes} bytes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"the message is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict) or "type" not in data:
        raise ProtocolError(f'a message is a JSON object with a "type" ({", ".join(TYPES)})')
    try:
        message = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None
    if isinstance(message, Start | PromptChange):
        _check_prompt(message.prompt, limits)
    if isinstance(message, Start):
        _check_steps(message.steps, limits, "steps")
        _check_steps(message.first_block_steps, limits, "first_block_steps")
        if message.seed > limits.max_seed:
            raise ProtocolError(f"seed must be between 0 and {limits.max_seed}, got {message.seed}")
        if message.max_blocks is not None and message.max_blocks > limits.max_blocks:
            raise ProtocolError(f"max_blocks must be at most {limits.max_blocks}, got {message.max_blocks}")
    if isinstance(message, StepsChange):
        _check_steps(message.steps, limits, "steps")
    return message
