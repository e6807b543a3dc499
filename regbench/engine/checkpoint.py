"""last.pt: everything a run needs to continue exactly where it stopped.

Written at the end of an epoch once `trainer.checkpoint_seconds` have passed since the
last write (or since training started; 0: after every epoch), never after the final epoch,
atomically (temporary file, then rename), and loaded with `torch.load(...,
weights_only=True)`: the run's share of its stack of one (weights, batch-norm statistics,
optimizer moments and step, its data-order, augmentation and dropout streams, the
early-stopping state, the learning-rate schedule's state and the metrics history) and torch's, numpy's and python's global
random states. A run resumed from it re-trains the epochs after it and ends with the
same numbers, bit for bit on the CPU, as the same run never interrupted.
"""

from __future__ import annotations

import io
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from regbench.engine.loop import FitState
from regbench.engine.schedules import check_state

CHECKPOINT_FILE = "last.pt"
FORMAT = "regbench-checkpoint-2"  # a stack member's share (regbench.engine.stack.Stack.payload)
OLDER_FORMATS = ("regbench-checkpoint-1",)  # a torch model and optimizer state (regbench 0.1)


@dataclass
class Restored:
    """What `load` hands back to the runner."""

    state: FitState
    seconds: float


class Budget:
    """When last.pt is due: once `seconds` have passed since the last write (or since the
    budget was made, when training starts); with 0 after every epoch. A checkpoint of a
    model that trains in milliseconds per epoch would otherwise cost as much as the epoch."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.last = clock()

    def due(self) -> bool:
        return self.seconds <= 0 or self.clock() - self.last >= self.seconds

    def written(self) -> None:
        """Starts the next interval: counted from the end of a write, so a slow write never
        makes every epoch due."""
        self.last = self.clock()


def _rng_states() -> dict[str, Any]:
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def _set_rng_states(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def fit_payload(state: FitState) -> dict[str, Any]:
    """The early-stopping state as plain values and tensors (what weights_only loading accepts)."""
    return {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_loss": state.best_loss if math.isfinite(state.best_loss) else None,
        "best_state": state.best_state,
        "waited": state.waited,
        "schedule": state.schedule,
    }


def fit_state(fit: dict[str, Any], device: torch.device) -> FitState:
    """The FitState that `fit_payload` stored, its best weights moved to `device`."""
    if fit.get("schedule") is not None:
        check_state(fit["schedule"])  # damaged: KeyError/TypeError, reported by `load` as incomplete
    best = fit["best_state"]
    if best is not None:
        best = [v.to(device) for v in best]
    return FitState(
        history=list(fit["history"]),
        best_epoch=fit["best_epoch"],
        best_loss=math.inf if fit["best_loss"] is None else fit["best_loss"],
        best_state=best,
        waited=fit["waited"],
        schedule=fit.get("schedule"),  # absent from checkpoints written before schedules (constant-rate runs)
    )


def save(folder: Path, config_hash: str, stack: Any, seconds: float, data: dict[str, Any] | None = None) -> None:
    """Writes last.pt of a lone run (a stack of one) atomically: a kill mid-write leaves the
    previous checkpoint intact. `data`: the fingerprint of a user's data (the run's
    `data_fingerprint`), kept so that a checkpoint refused for it says which file changed."""
    payload = {
        "format": FORMAT,
        "config_hash": config_hash,
        **({"data_fingerprint": data} if data is not None else {}),
        "member": stack.payload(0),
        "rng": _rng_states(),
        "seconds": seconds,
    }
    write_atomic(Path(folder) / CHECKPOINT_FILE, payload)


def write_atomic(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then a rename: a kill mid-write leaves
    the previous file intact.

    Serialised in memory first: torch's writer, writing into a file, reports a full disk as
    `unexpected pos ...`; a plain write raises the OSError that says what happened.

    Raises:
        OSError: the file could not be written (nothing of it is left behind).
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:  # a failed write names no file: name the one that was meant
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, e.filename or str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def other_data(payload: dict[str, Any], data: dict[str, Any] | None) -> str | None:
    """Why a checkpoint of another hash was made on other data than the run's fingerprint
    `data`, or None (a bundled dataset, or the same data: another configuration)."""
    if data is None:
        return None
    before = payload.get("data_fingerprint")
    names = " and ".join(Path(e["path"]).name for e in data["files"].values())
    if not isinstance(before, dict):
        return f"made before regbench recorded which version of {names} a checkpoint was made on"
    if before.get("sha256") == data["sha256"]:
        return None
    return f"made on another version of {names} (sha256 {str(before.get('sha256'))[:8]} -> {data['sha256'][:8]})"


def remove_temporaries(folder: Path) -> None:
    """Removes the temporary files of atomic writes (`.last.pt.<random>.tmp`, ...) that a
    process killed mid-write left in `folder`. Call it only while holding the folder's lock."""
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.name.split(".")[1] in ("last", "stack", "result", "model"):
            tmp.unlink(missing_ok=True)


def load(folder: Path, config_hash: str, stack: Any, data: dict[str, Any] | None = None) -> tuple[Restored | None, str]:
    """Restores last.pt into a lone run's stack of one (weights, optimizer moments, random
    streams, early-stopping state).

    Returns (restored, "") on success, (None, "") when there is no checkpoint, and
    (None, reason) when the file is corrupt, foreign, from another configuration, made on
    another version of a user's data (`data`, the run's fingerprint) or from an older regbench. After a failed load the stack may be partly overwritten: the caller starts
    fresh by building it again.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None, ""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding objects weights_only refuses
        return None, f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if isinstance(payload, dict) and payload.get("format") in OLDER_FORMATS:
        return None, "written by an older regbench, whose checkpoints this one cannot continue"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None, "not a regbench checkpoint"
    if payload.get("config_hash") != config_hash:
        return None, other_data(payload, data) or "written by a different configuration"
    try:
        stack.load([payload["member"]])
        _set_rng_states(payload["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        return None, f"incomplete ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return Restored(state=stack.members[0].state, seconds=float(payload.get("seconds", 0.0))), ""
