"""One process per run folder: a second regbench process started on a folder in use (the same
resume command in two terminals, a sweep requeued while the old one still runs) is refused
instead of interleaving its epochs, checkpoints and results with the first one's.

The lock is an advisory `flock` on `.regbench.lock` in the folder, held while the job trains
and released by the operating system when the process ends, however it ends (so a killed
run never leaves a stale lock). The file stays: deleting it would let two processes lock two
different files. Where `fcntl` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from regbench import UserInputError

LOCK_FILE = ".regbench.lock"


class FolderBusy(UserInputError):
    """Another process holds the run folder."""


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Holds the folder's lock for the duration of the block.

    Raises:
        FolderBusy: another process holds it; its pid and host are in the message.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusy(f"{folder} is in use by another regbench process ({holder}); "
                             "wait for it to finish or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
