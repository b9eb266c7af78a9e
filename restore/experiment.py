"""One run per experiment folder: an exclusive lock for the life of a run, and the folder's set-up.

The lock is ``<experiments_root>/.<name>.lock``, beside the folder rather than in it, so that
archiving the folder never moves the lock a second run would look for. It is an ``flock`` on an
open file: the kernel releases it when the process ends however it ends (``kill -9`` included),
so a lock left by a killed run is simply taken over; the file records who held it for messages.
Only the main process of a distributed run holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from restore.errors import RestoreError
from restore.paths import inside, path_component


class ExperimentBusy(RestoreError):
    """Another live run holds the experiment folder."""


def experiment_dir(experiments_root: str | os.PathLike, name: str) -> Path:
    """``experiments_root/name``, refusing names that are not one plain folder name."""
    return inside(experiments_root, path_component(name, "name"), what="name")


class ExperimentLock:
    """``with ExperimentLock(folder):`` holds `folder` exclusively or raises ExperimentBusy at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder.with_name(f".{folder.name}.lock")
        self.previous_holder: dict | None = None  # a finished or killed run whose lock file we took over
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ExperimentBusy(
                    f"{self.folder}: another run is using this experiment ({describe_holder(holder)}); two runs "
                    "with one name would mix their logs, weights and states. Wait for it, stop it, or choose "
                    "another name (--set name=...)."
                ) from None
            # The holder we waited on may have removed the file and another run made a new one: only a lock
            # on the file that is at the path now counts.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.previous_holder = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting run re-checks the path
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500]}


def _read_holder(fd: int) -> dict | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict | None) -> str:
    """Who holds (or held) a lock, for messages."""
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def archive_folder(folder: Path) -> Path:
    """Move an earlier run's folder aside (never overwrite it) and return where it went."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    archived = folder.with_name(f"{folder.name}_archived_{stamp}")
    suffix = 1
    while archived.exists():
        suffix += 1
        archived = folder.with_name(f"{folder.name}_archived_{stamp}_{suffix}")
    shutil.move(str(folder), str(archived))
    return archived


def make_run_folders(folder: Path) -> None:
    for sub in ("models", "training_states", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
