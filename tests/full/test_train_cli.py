"""``cf-ref full prepare`` / ``cf-ref full train``: the tiny preset end to end, clear errors, a real kill -9 + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from click.testing import CliRunner

from cf_ref.cli import main
from cf_ref.io import load_tensors
from full.config import load_config
from full.data import SetKind, TensorSet
from full.tiny import tiny_vae
from full.video import read_mp4

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "logging.progress=false",
    "model.tiny_base.steps=2",
    "model.tiny_base.videos=8",
    "ar_diffusion.loop.steps=2",
    "ode_pairs.max_pairs=4",
    "schedule.ode_steps=4",
    "ode.loop.steps=2",
    "dmd.loop.steps=2",
]


def invoke(*args: str):
    return CliRunner().invoke(main, ["full", *args], catch_exceptions=False)


def test_train_preset_tiny_runs_every_stage(tmp_path):
    tiny_vae(seed=1).save_pretrained(tmp_path / "vae")
    result = invoke(
        "train", "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), *SMALL, "ode_pairs.storage=float16"
    )
    assert result.exit_code == 0, result.output
    assert TensorSet(tmp_path / "ode-pairs").index["fields"]["states"]["dtype"] == "F16"  # half the disk
    for stage in ("ar-diffusion", "ode-pairs", "ode", "dmd"):
        assert f"{stage}: {tmp_path / stage}" in result.output
    for stage in ("ar-diffusion", "ode", "dmd"):
        final = tmp_path / stage / "final"
        assert (final / "model.safetensors").is_file() and (tmp_path / stage / "metrics.jsonl").is_file()
        assert read_mp4(final / "samples" / "sample-00.mp4").shape == (4, 128, 128, 3)  # latent preview
    # sample videos decoded by a VAE (the tiny one: 4 latent frames → 13 video frames of 64×64)
    decoded = invoke(
        "train",
        "--preset",
        "tiny",
        "--stage",
        "dmd",
        "--out",
        str(tmp_path / "v"),
        *SMALL,
        "dmd.init=" + str(tmp_path / "ode" / "final" / "model.safetensors"),
        f"logging.vae={tmp_path / 'vae'}",
    )
    assert decoded.exit_code == 0, decoded.output
    assert read_mp4(tmp_path / "v" / "dmd" / "final" / "samples" / "sample-00.mp4").shape == (13, 64, 64, 3)
    config = load_config(tmp_path / "config.yaml")  # the resolved configuration beside the run
    assert config.ar_diffusion.loop.steps == 2 and config.data.latents == str(tmp_path / "data" / "latents")
    # running it again is refused (nothing is overwritten); --resume skips the finished stages
    again = CliRunner().invoke(main, ["full", "train", "--preset", "tiny", "--out", str(tmp_path), *SMALL])
    assert again.exit_code == 1 and "pass --resume" in again.output and "Traceback" not in again.output
    resumed = invoke(
        "train", "--preset", "tiny", "--out", str(tmp_path), "--resume", *SMALL, "ode_pairs.storage=float16"
    )
    assert resumed.exit_code == 0, resumed.output
    changed = CliRunner().invoke(
        main,
        [
            "full",
            "train",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path),
            "--resume",
            *SMALL,
            "ode_pairs.storage=float16",
            "dmd.guidance_scale=1.5",
        ],
    )
    assert changed.exit_code == 1 and "dmd.guidance_scale: 1.0 → 1.5" in changed.output


def test_cli_errors_are_one_clear_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["full", "train", "--preset", "tiny", "--set", "dmd.guidanse_scale=1"])
    assert bad.exit_code == 1 and "did you mean 'guidance_scale'" in bad.output and "Traceback" not in bad.output
    (tmp_path / "c.yaml").write_text("model:\n  path: /nowhere\n")
    missing = runner.invoke(main, ["full", "train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "/nowhere" in missing.output and "Traceback" not in missing.output
    none = runner.invoke(main, ["full", "prepare", "--out", str(tmp_path / "p")])
    assert none.exit_code == 2 and "exactly one of" in none.output


def test_prepare_synthetic_sets(tmp_path):
    result = invoke(
        "prepare",
        "--synthetic",
        "6",
        "--frames",
        "4",
        "--height",
        "8",
        "--width",
        "8",
        "--text-length",
        "16",
        "--out",
        str(tmp_path / "s"),
    )
    assert result.exit_code == 0, result.output
    data = TensorSet(tmp_path / "s", SetKind.LATENTS)
    assert len(data) == 6 and data.fields["latents"] == (4, 4, 8, 8) and data.fields["text"] == (16, 32)
    result = invoke(
        "prepare",
        "--synthetic-videos",
        "2",
        "--frames",
        "5",
        "--height",
        "16",
        "--width",
        "16",
        "--out",
        str(tmp_path / "v"),
    )
    assert result.exit_code == 0 and len(list((tmp_path / "v").glob("*.mp4"))) == 2


KILL = ["logging.progress=false", "logging.sample_count=0", "model.tiny_base.steps=0", "model.tiny_base.videos=8"]
KILL += ["ar_diffusion.loop.steps=60", "ar_diffusion.loop.checkpoint_every=10", "ar_diffusion.loop.batch_size=2"]


def test_kill_minus_nine_then_resume_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL a training process after its first checkpoint; ``--resume`` finishes it, bit for bit equal to an
    uninterrupted run (CPU, one thread, fp32)."""
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cf_ref.cli", "full", "train", "--preset", "tiny", "--device", "cpu"]
    cmd += ["--stage", "ar-diffusion", "--out", str(killed), *KILL]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = killed / "ar-diffusion" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not pointer.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed / "ar-diffusion" / "final").exists()
    args = ["train", "--preset", "tiny", "--device", "cpu", "--stage", "ar-diffusion", *KILL]
    assert invoke(*args, "--out", str(killed), "--resume").exit_code == 0
    assert invoke(*args, "--out", str(tmp_path / "whole")).exit_code == 0
    a = load_tensors(killed / "ar-diffusion" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "whole" / "ar-diffusion" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_runs_on_one_folder_the_second_is_refused_and_the_first_equals_a_lone_run(tmp_path):
    """A run owns its folder: a second run started while the first works is refused with the owner's pid, writes
    nothing; the first finishes exactly as if it had been alone."""
    shared = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["train", "--preset", "tiny", "--device", "cpu", "--stage", "ar-diffusion", *KILL]
    cmd = [sys.executable, "-m", "cf_ref.cli", "full", *args, "--out", str(shared)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (shared / "run.lock").is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = CliRunner().invoke(main, ["full", *args, "--out", str(shared)])
    assert second.exit_code == 1 and f"is in use by pid {first.pid} on host" in second.output, second.output
    assert "Traceback" not in second.output
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    assert not (shared / "run.lock").exists()  # released at the end
    assert invoke(*args, "--out", str(tmp_path / "lone")).exit_code == 0
    a = load_tensors(shared / "ar-diffusion" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "lone" / "ar-diffusion" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((shared / "ar-diffusion" / "metrics.jsonl").read_text().splitlines()) == 60


def test_train_inputs_that_used_to_raise_tracebacks_are_one_line(tmp_path):
    runner = CliRunner()
    cases = [
        (["ar_diffusion.optim.lr=1.0e+39"], "ar_diffusion.optim.lr must lie in (0, 1]"),
        (["video.latent_height=7"], "7 × 8 is not a multiple of the model's patch size 2 × 2"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "device cuda requested, but"))
    for args, message in cases:
        result = runner.invoke(main, ["full", "train", "--preset", "tiny", "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output and not (tmp_path / "o").exists()
    empty = runner.invoke(main, ["full", "train", "--preset", "tiny", "--out", ""])
    assert empty.exit_code == 2 and "'--out': is empty" in empty.output


def test_prepare_resumes_only_the_same_request(tmp_path):
    """Interrupted with one seed and re-run with another: refused, naming the difference; the same seed finishes
    the set; --restart starts clean; a set equals one written in one go."""
    out = tmp_path / "s"
    args = ["prepare", "--synthetic", "6", "--frames", "4", "--height", "8", "--width", "8", "--shard-size", "2"]
    args += ["--text-length", "16", "--out", str(out)]
    assert invoke(*args, "--seed", "0").exit_code == 0
    (out / "index.json").unlink()
    (out / "shard-00002.safetensors").unlink()  # as if interrupted before the last shard
    other = CliRunner().invoke(main, ["full", *args, "--seed", "1"])
    assert other.exit_code == 1 and "seed: 0 → 1" in other.output and "--restart" in other.output
    assert not (out / "index.json").exists() and not (out / "shard-00002.safetensors").exists()  # untouched
    assert invoke(*args, "--seed", "0").exit_code == 0  # the same request resumes
    assert invoke(*args, "--seed", "1", "--restart").exit_code == 0
    assert invoke(*args[:-1], str(tmp_path / "fresh"), "--seed", "1").exit_code == 0
    a, b = TensorSet(out), TensorSet(tmp_path / "fresh")
    assert torch.equal(a.fetch(range(6))["latents"], b.fetch(range(6))["latents"])
    for bad, message in ((["--frames", "0"], "'--frames': 0 is not in the range x>=1"), (["--out", ""], "is empty")):
        result = CliRunner().invoke(main, ["full", *args, *bad])
        assert result.exit_code == 2 and message in result.output
