"""Keeps Python's garbage collector off the objects that a run's imports create.

Importing torch, scikit-learn, scipy and pandas creates a few million objects that live
until the process exits, and none of them is garbage. While they are being created, the
collector walks all of them again and again (full collections: 0.5 s of a default
`regbench run` on a 2-core machine), and once more at exit (0.3 s or more). So the heavy
imports run inside `imports()`, with automatic collection off; after the first such block
every object alive is frozen (`gc.freeze`: out of every later collection) and collection is
back on for what the run creates. Freezing happens once per process: freezing again after
a job would also freeze whatever garbage that job left behind, and keep it forever.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_frozen = False


@contextmanager
def imports() -> Iterator[None]:
    """Collection off for the block (heavy imports); then, the first time, freeze what is alive."""
    global _frozen
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not _frozen:
            gc.freeze()
            _frozen = True
        if was_enabled:
            gc.enable()


def at_exit() -> None:
    """Skips the interpreter's last collection, for a process about to end: every file is
    written and closed by then, and atexit handlers still run."""
    gc.freeze()
