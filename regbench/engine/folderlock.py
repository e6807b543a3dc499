"""One process per run folder: a second regbench process started on a folder in use (the same
resume command in two terminals, a sweep requeued while the old one still runs) is refused
instead of interleaving its epochs, checkpoints and results with the first one's.

The lock is an advisory `flock` on `.regbench.lock` in the folder, held while the job trains
and released by the operating system when the process ends, however it ends (so a killed
run never leaves a stale lock). The file stays: deleting it would let two processes lock two
different files. Where `fcntl` does not exist (Windows) there is no lock.

A process may take a folder's lock several times (the Hydra callbacks take it before Hydra
writes the job's `.hydra/` record, the runner again around training): it is held until the
last `release`. The holder writes its pid, host and, in a sweep, the sweep's token
(REGBENCH_SWEEP_TOKEN, set by the sweep's callback) into the file, where they stay after the
lock is released: a sweep's summary tells from them, and from the file's mtime (when that holder
took it: the same holder taking it again does not rewrite it), which jobs this very sweep ran.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from regbench import UserInputError

LOCK_FILE = ".regbench.lock"
TOKEN_ENV = "REGBENCH_SWEEP_TOKEN"

# resolved folder -> [file descriptor holding the flock, how many times this process took it]
_held: dict[Path, list[int]] = {}


class FolderBusy(UserInputError):
    """Another process holds the run folder."""


def acquire(folder: Path) -> None:
    """Takes the folder's lock (creating the folder), or counts one more hold when this process
    has it already.

    Raises:
        FolderBusy: another process holds it; its pid and host are in the message.
        OSError: the folder or its lock file cannot be created (read-only, full disk...).
    """
    key = Path(folder).absolute()
    if key in _held:
        _held[key][1] += 1
        return
    try:
        import fcntl
    except ImportError:  # Windows
        _held[key] = [-1, 1]
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by another regbench process ({holder}); "
                         "wait for it to finish or stop it, then run again") from None
    try:
        token = os.environ.get(TOKEN_ENV)
        text = f"pid {os.getpid()} on {socket.gethostname()}{f', sweep {token}' if token else ''}".encode()
        # Rewritten only for another holder: the file's mtime stays the time this holder first took
        # it (`taken`), when the same process takes it again to report a job it trained (a stack).
        if os.pread(fd, len(text) + 1, 0) != text:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
    except OSError:  # a full disk: the lock holds all the same
        pass
    _held[key] = [fd, 1]


def release(folder: Path) -> None:
    """Gives back one hold; the lock is released with the last one."""
    key = Path(folder).absolute()
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[key]
        if entry[0] >= 0:
            os.close(entry[0])  # releases the lock


def holder(folder: Path) -> str:
    """What the folder's lock file says about its last holder ("" when there is none)."""
    try:
        return (Path(folder) / LOCK_FILE).read_text(errors="replace").strip()
    except OSError:
        return ""


def taken(folder: Path) -> float | None:
    """When the folder's last holder took its lock (the lock file's mtime, seconds since the
    epoch), or None without a lock file. A result written before it was written by an earlier
    holder: this one only found it (a sweep that reports a job another process finished)."""
    try:
        return (Path(folder) / LOCK_FILE).stat().st_mtime
    except OSError:
        return None


def remove_unused(folder: Path) -> None:
    """Removes `folder` when it holds nothing but its lock file: made for a job that was refused
    before it wrote anything (the caller made it; a folder that held anything is left alone)."""
    try:
        if {p.name for p in Path(folder).iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:  # gone already, or unreadable: nothing of this job's to remove
        pass


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Holds the folder's lock for the duration of the block (see `acquire`).

    Raises:
        FolderBusy: another process holds it; its pid and host are in the message.
    """
    acquire(folder)
    try:
        yield
    finally:
        release(folder)
