"""Client messages: what is accepted, and the one-line reason for everything else."""

from __future__ import annotations

import json

import pytest

from full.serve.protocol import PromptChange, ProtocolError, ServeLimits, Start, StepsChange, Stop, parse_message

LIMITS = ServeLimits(max_prompt_chars=20, max_steps=8, max_blocks=50)


def msg(**fields) -> str:
    return json.dumps(fields)


def test_valid_messages_and_defaults():
    start = parse_message(msg(type="start", prompt="a cat"), LIMITS)
    assert isinstance(start, Start) and (start.steps, start.seed, start.max_blocks, start.pace) == (4, 0, None, True)
    assert isinstance(parse_message(msg(type="prompt", prompt="a dog"), LIMITS), PromptChange)
    assert parse_message(msg(type="steps", steps=2), LIMITS) == StepsChange(type="steps", steps=2)
    assert isinstance(parse_message(msg(type="stop"), LIMITS), Stop)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("not json", "not JSON"),
        (b"\x00\x01", "not binary"),
        ("[1, 2]", 'JSON object with a "type"'),
        (msg(type="dance"), "unknown message type; expected one of start, prompt, steps, stop"),
        (msg(type="start", prompt="   "), "the prompt is empty"),
        (msg(type="start", prompt="x" * 21), "at most 20"),
        (msg(type="start", prompt="a", steps=1000), "steps must be between 1 and 8"),
        (msg(type="start", prompt="a", steps=0), "steps: Input should be greater than or equal to 1"),
        (msg(type="start", prompt="a", steps="4"), "steps: Input should be a valid integer"),
        (msg(type="start", prompt="a", seed=-1), "seed: Input should be greater than or equal to 0"),
        (msg(type="start", prompt="a", seed=2**40), "seed must be between 0 and"),
        (msg(type="start", prompt="a", max_blocks=10**9), "max_blocks must be at most 50"),
        (msg(type="start", prompt="a", first_block_steps=99), "first_block_steps must be between 1 and 8"),
        (msg(type="start", prompt="a", colour="red"), "unexpected field 'colour'"),
        (msg(type="start", prompt="a", format="gif"), "format"),
        (msg(type="start"), "prompt: Field required"),
        (msg(type="prompt", prompt=""), "the prompt is empty"),
        (msg(type="steps", steps=9), "steps must be between 1 and 8"),
        ("x" * (64 * 1024 + 1), "larger than"),
    ],
)
def test_bad_messages_get_a_clear_reason(text, reason):
    with pytest.raises(ProtocolError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        parse_message(text, LIMITS)
