"""Ctrl-C and SIGTERM during training: finish the epoch, write its checkpoint, then stop.

A plain KeyboardInterrupt lands anywhere in a step and loses every epoch since the last
checkpoint (up to `trainer.checkpoint_seconds`). Inside `deferred()`, the first Ctrl-C
(SIGINT) or SIGTERM (what `kill`, SLURM at the end of a job's time, and `docker stop` send)
only asks training to stop: the loop checks `requested` at the end of each epoch, writes the
checkpoint of that epoch and raises `Interrupted`. A second signal stops at once. Outside
training, `terminate_as_interrupt()` makes SIGTERM end `regbench run` as Ctrl-C does (one
line, no traceback) instead of killing it silently.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
if hasattr(signal, "SIGUSR2"):  # submitit's signal before a SLURM element's time limit (the stacked launcher)
    SIGNAL_NAMES[signal.SIGUSR2] = "SLURM's time-limit signal (USR2)"


class Interrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM (`signum`); `where` says what was kept, `resume`
    is the override that points a rerun at the same folder (the Hydra app fills it in)."""

    def __init__(self, where: str, resume: str | None = None, signum: int = signal.SIGINT) -> None:
        super().__init__(where)
        self.where, self.resume, self.signum = where, resume, signum


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (or a second one during it): stop at once, as Ctrl-C does."""

    signum = signal.SIGTERM


class Request:
    """Whether a signal asked training to stop at the end of the current epoch, which, and when
    (time.monotonic())."""

    requested = False
    signum: int = signal.SIGINT
    at = 0.0


# SIGTERMs this many seconds after the one that asked training to stop are the same request, not
# the second signal that stops at once. 0 (every second signal stops at once) but in a SLURM
# element (`one_sigterm_within`): SLURM's preemption delivers SIGTERM to the element's process
# twice, about 20 ms apart (slurmstepd's own, then the one srun forwards), and the second one
# would lose the epoch's checkpoint; SIGKILL follows KillWait seconds later in any case.
_same_sigterm_s = [0.0]


@contextmanager
def one_sigterm_within(seconds: float) -> Iterator[None]:
    """For the duration of the block, SIGTERMs within `seconds` of the SIGTERM that asked training
    to stop after its epoch only repeat that request."""
    before = _same_sigterm_s[0]
    _same_sigterm_s[0] = seconds
    try:
        yield
    finally:
        _same_sigterm_s[0] = before


_open: list[Request] = []  # the requests of the deferred() blocks now open in the main thread, innermost last


def stopping() -> int | None:
    """The signal that asked the training now running (the innermost `deferred()` block) to stop
    after its epoch; None when none has, or outside training. A SLURM element's handlers use it to
    tell a preemption's second signal (SIGTERM and USR2 come together) from a request to stop at once."""
    return _open[-1].signum if _open and _open[-1].requested else None


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) for the duration of the block, in the
    main thread of a process that left SIGTERM at its default (which kills without a word)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def deferred() -> Iterator[Request]:
    """Defers Ctrl-C (SIGINT) and SIGTERM to the end of the epoch while training runs.

    Only where the default behaviour is in place, in the main thread: Python's own SIGINT
    handler, and SIGTERM's default (or `terminate_as_interrupt`'s). A process that ignores
    a signal (a background job ignores SIGINT) or handles it itself keeps its behaviour.
    """
    request = Request()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    defaults = {signal.SIGINT: (signal.default_int_handler,), signal.SIGTERM: (signal.SIG_DFL, _raise_terminated)}
    previous = {s: signal.getsignal(s) for s in defaults}
    handled = [s for s, allowed in defaults.items() if previous[s] in allowed]

    def handler(signum: int, frame: Any) -> None:
        if request.requested:  # the second signal, unless the same SIGTERM again (a SLURM preemption)
            since = time.monotonic() - request.at
            if signum == signal.SIGTERM == request.signum and since < _same_sigterm_s[0]:
                print(f"regbench: SIGTERM again {since:.2f} s later (SLURM's preemption sends it twice): still "
                      "stopping after this epoch", file=sys.stderr, flush=True)
                return
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()
        request.requested, request.signum, request.at = True, signum, time.monotonic()
        again = "Ctrl-C" if signum == signal.SIGINT else "a second SIGTERM"
        print(f"\nregbench: {SIGNAL_NAMES.get(signum, signum)}: stopping after this epoch, once its checkpoint is "
              f"written ({again} to stop at once)", file=sys.stderr, flush=True)

    for s in handled:
        signal.signal(s, handler)
    _open.append(request)
    try:
        yield request
    finally:
        _open.remove(request)
        for s in handled:
            signal.signal(s, previous[s])


def resumable(error: KeyboardInterrupt, override: str) -> Interrupted:
    """`error` as an Interrupted whose rerun points at the folder `override` names
    (`hydra.run.dir=...` or `hydra.sweep.dir=...`), unless it already knows one."""
    if not isinstance(error, Interrupted):
        error = Interrupted("", signum=getattr(error, "signum", signal.SIGINT))
    if error.resume is None:
        error.resume = override
    return error


def exit_code(error: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: what a shell reports for a process those signals ended."""
    return 128 + int(getattr(error, "signum", signal.SIGINT))


def hydra_value(value: str) -> str:
    """`value` written so that Hydra's override parser reads it back unchanged: as it is when
    Hydra reads it so, else in single quotes (escaping quotes, the backslashes before them and
    `${`, which Hydra would read as an interpolation)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()

    def reads_back(text: str) -> bool:
        try:  # as the config will hold it: parsed, then resolved
            return OmegaConf.create({"k": parser.parse_override(f"k={text}").value()}).k == value
        except Exception:  # a syntax error or an interpolation: it needs quotes
            return False

    if value and reads_back(value):
        return value
    out, backslashes = "'", 0
    for ch in value:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == "'":
            out += "\\" * (2 * backslashes) + "\\'"
        else:
            out += "\\" * backslashes + ("\\$" if ch == "$" else ch)
        backslashes = 0
    out += "\\" * (2 * backslashes) + "'"
    return out


def report(error: KeyboardInterrupt, args: list[str]) -> str:
    """The line printed for an interrupted `regbench run ARGS`: what was kept, and the command
    that resumes it (the same arguments, pinned to the same folder), quoted for a POSIX shell."""
    import shlex

    where = error.where if isinstance(error, Interrupted) else ""
    verb = "terminated (SIGTERM)" if getattr(error, "signum", signal.SIGINT) == signal.SIGTERM else "interrupted"
    line = f"regbench: {verb} {where}".rstrip()
    resume = error.resume if isinstance(error, Interrupted) else None
    if resume:
        kept = [a for a in args if not a.startswith(resume.partition("=")[0] + "=")]
        line += "; to resume: regbench run " + " ".join(shlex.quote(a) for a in [*kept, resume])
    return line
