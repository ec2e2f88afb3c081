"""cf_ref.run_lock: one owner per run folder; a live owner is named and refused, a dead one is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from cf_ref import run_lock
from cf_ref.run_lock import LOCK_FILE, FolderLocked, current_owner, locked, read_owner

ROOT = Path(__file__).resolve().parents[2]


def _write_lock(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    path.write_text(json.dumps(asdict(replace(current_owner(), **changes))))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_owner_is_named_and_refused(tmp_path):
    with locked(tmp_path / "run") as path:
        owner = read_owner(path)
        assert owner.pid == os.getpid() and owner.process_start is not None
        with pytest.raises(FolderLocked, match=rf"in use by pid {os.getpid()} on host .* since"):
            run_lock.acquire(tmp_path / "run")
    assert not path.exists()  # released


def test_the_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(RuntimeError), locked(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_dead_owner_on_this_host_is_taken_over_saying_so(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), process_start=None)
    said = []
    with locked(tmp_path, on_takeover=said.append) as path:
        assert read_owner(path).pid == os.getpid()
    assert len(said) == 1 and "no longer running" in said[0]


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path):
    """The recorded pid runs (it is ours), but it started at another time: the recorded owner is gone."""
    me = current_owner()
    _write_lock(tmp_path, process_start=me.process_start + 1)
    with locked(tmp_path) as path:
        assert read_owner(path).process_start == me.process_start


def test_another_host_is_never_taken_over(tmp_path):
    path = _write_lock(tmp_path, host="elsewhere", pid=_dead_pid())
    with pytest.raises(FolderLocked, match=f"cannot be checked from .*delete {path}"):
        run_lock.acquire(tmp_path)
    assert read_owner(path).host == "elsewhere"  # left alone


def test_release_only_removes_its_own_lock(tmp_path):
    path = _write_lock(tmp_path, pid=1)
    run_lock.release(path)
    assert path.exists()


def test_sigterm_releases_the_lock(tmp_path):
    code = (
        "import sys, time; from cf_ref import run_lock\n"
        "with run_lock.exit_on_sigterm(), run_lock.locked(sys.argv[1]):\n"
        "    print('locked', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"locked"
    assert read_owner(tmp_path / LOCK_FILE).pid == proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not (tmp_path / LOCK_FILE).exists()


def test_racing_takeovers_leave_one_owner(tmp_path):
    """Several processes start at once on a folder whose owner died: exactly one gets it."""
    _write_lock(tmp_path, pid=_dead_pid(), process_start=None)
    code = (
        "import sys, time; from cf_ref import run_lock\n"
        "try:\n"
        "    with run_lock.locked(sys.argv[1]):\n"
        "        print('owner', flush=True); time.sleep(4)\n"
        "except run_lock.FolderLocked:\n"
        "    print('refused', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env) for _ in range(4)
    ]
    deadline = time.time() + 60
    outs = [p.communicate(timeout=max(1, deadline - time.time()))[0].decode().strip() for p in procs]
    assert sorted(outs).count("owner") == 1 and outs.count("refused") == 3, outs
