"""A run owns its output folder: a lock file that names its owner, taken atomically, released on exit.

``<folder>/run.lock`` is created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ filesystems) and holds
the owner's host, pid, process start time and command. While it exists another run on the folder is refused
with a message naming the owner. It is taken over only when the owner is provably gone: same host and the
pid is not running (or runs a different process, found by its start time). A lock held from another host is
never taken over automatically — the message says how to remove it once that run is known to be dead.

The lock is released when the ``with`` block ends, also on exceptions; :func:`exit_on_sigterm` turns SIGTERM
(what ``torchrun`` and schedulers send) into ``SystemExit`` so that the release runs then too. After a
``kill -9`` the file stays and the next run takes it over, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cf_ref.errors import UserError

LOCK_FILE = "run.lock"


class FolderLocked(UserError):
    """Another live run owns the folder."""


@dataclass(frozen=True)
class Owner:
    """Who holds a lock: host, pid, the process's start time (``/proc``, None elsewhere), when, and the command."""

    host: str
    pid: int
    process_start: int | None
    since: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.since} ({self.command})"


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc/PID/stat`` field 22), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # fields after "(comm)": state is field 3


def current_owner() -> Owner:
    return Owner(
        host=socket.gethostname(),
        pid=os.getpid(),
        process_start=process_start_time(os.getpid()),
        since=time.strftime("%Y-%m-%d %H:%M:%S"),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    )


def _alive(owner: Owner) -> bool:
    """Whether ``owner`` (on this host) still runs: the pid exists and, where known, started when it did."""
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    start = process_start_time(owner.pid)
    return owner.process_start is None or start is None or start == owner.process_start


def read_owner(path: Path) -> Owner | None:
    """The owner recorded in a lock file; None if it is unreadable (torn by a crash between create and write)."""
    try:
        return Owner(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _create(path: Path, owner: Owner) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(owner), fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _refuse(path: Path, holder: Owner | None, here: str) -> FolderLocked:
    folder = path.parent
    if holder is None:
        return FolderLocked(
            f"{folder} is locked ({path} exists but is unreadable; it may be being written right now); "
            f"if no run uses the folder, delete {path}"
        )
    if holder.host != here:
        return FolderLocked(
            f"{folder} is in use by {holder.describe()}; its process cannot be checked from {here}: "
            f"wait for it, or if that run is dead, delete {path}"
        )
    return FolderLocked(f"{folder} is in use by {holder.describe()}; wait for it to finish or use another folder")


def acquire(folder: str | os.PathLike, on_takeover=None) -> Path:
    """Take ``folder``'s lock (creating the folder); raises :class:`FolderLocked` if a live run holds it.
    ``on_takeover(message)`` is told when a dead owner's lock is taken over. Returns the lock file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    me = current_owner()
    for _ in range(3):
        if _create(path, me):
            return path
        holder = read_owner(path)
        if holder is None:
            time.sleep(0.2)  # a creator between O_EXCL and its write: look again
            holder = read_owner(path)
        if holder is None or holder.host != me.host or _alive(holder):
            raise _refuse(path, holder, me.host)
        # The owner is gone. Move its lock aside under a name of our own, so two runs taking over at once
        # cannot both succeed: only one rename of the same file wins, the other finds it missing and retries.
        stale = folder / f".{LOCK_FILE}.{me.pid}.stale"
        try:
            os.rename(path, stale)
        except FileNotFoundError:
            continue
        stale.unlink(missing_ok=True)
        if on_takeover is not None:
            on_takeover(f"taking over {path}: its owner ({holder.describe()}) is no longer running")
    raise _refuse(path, read_owner(path), me.host)


def release(path: Path) -> None:
    """Remove the lock file if this process still owns it."""
    holder = read_owner(path)
    if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(folder: str | os.PathLike, on_takeover=None) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (see module doc)."""
    path = acquire(folder, on_takeover)
    try:
        yield path
    finally:
        release(path)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block SIGTERM raises ``SystemExit(143)``, so ``finally`` clauses (lock release) run. Only in the
    main thread (elsewhere signal handlers cannot be set); the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
