"""``cf-ref full serve``: the command starts a server on 127.0.0.1 that answers, and bad options fail in one line."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner

from cf_ref.cli import main

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")


def test_serve_command_answers_on_localhost(serve_process):
    with serve_process("--preset", "tiny") as port:
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=10).read())
        assert info["model"] == "preset:tiny" and info["busy"] is False


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
