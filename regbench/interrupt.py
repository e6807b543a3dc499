"""Ctrl-C during training: finish the epoch, write its checkpoint, then stop.

A plain KeyboardInterrupt lands anywhere in a step and loses every epoch since the last
checkpoint (up to `trainer.checkpoint_seconds`). Inside `deferred()`, the first Ctrl-C only
asks training to stop: the loop checks `requested` at the end of each epoch, writes the
checkpoint of that epoch and raises `Interrupted`. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class Interrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C; `where` says what was kept, `resume` is the override that
    points a rerun at the same folder (the Hydra app fills it in)."""

    def __init__(self, where: str, resume: str | None = None) -> None:
        super().__init__(where)
        self.where, self.resume = where, resume


class Request:
    """Whether Ctrl-C asked training to stop at the end of the current epoch."""

    requested = False


@contextmanager
def deferred() -> Iterator[Request]:
    """Defers Ctrl-C (SIGINT) to the end of the epoch while training runs.

    Only where Python's own handler is in place, in the main thread: a process that ignores
    SIGINT (a background job) or handles it itself keeps its behaviour.
    """
    request = Request()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.requested:  # the second Ctrl-C
            raise KeyboardInterrupt
        request.requested = True
        print("\nregbench: Ctrl-C: stopping after this epoch, once its checkpoint is written "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def resumable(error: KeyboardInterrupt, override: str) -> Interrupted:
    """`error` as an Interrupted whose rerun points at the folder `override` names
    (`hydra.run.dir=...` or `hydra.sweep.dir=...`), unless it already knows one."""
    if not isinstance(error, Interrupted):
        error = Interrupted("")
    if error.resume is None:
        error.resume = override
    return error


def report(error: KeyboardInterrupt, args: list[str]) -> str:
    """The line printed for an interrupted `regbench run ARGS`: what was kept, and the command
    that resumes it (the same arguments, pinned to the same folder)."""
    import shlex

    where = error.where if isinstance(error, Interrupted) else ""
    line = f"regbench: interrupted {where}".rstrip()
    resume = error.resume if isinstance(error, Interrupted) else None
    if resume:
        kept = [a for a in args if not a.startswith(resume.partition("=")[0] + "=")]
        line += "; to resume: regbench run " + " ".join(shlex.quote(a) for a in [*kept, resume])
    return line
