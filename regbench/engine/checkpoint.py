"""last.pt: everything a run needs to continue exactly where it stopped.

Written at the end of an epoch once `trainer.checkpoint_seconds` have passed since the
last write (or since training started; 0: after every epoch), never after the final epoch,
atomically (temporary file, then rename), and loaded with `torch.load(...,
weights_only=True)`: the run's share of its stack of one (weights, batch-norm statistics,
optimizer moments and step, its data order and named random streams, the
early-stopping state, the learning-rate schedule's state and the metrics history) and torch's, numpy's and python's global
random states. A run resumed from it re-trains the epochs after it and ends with the
same numbers, bit for bit on the CPU, as the same run never interrupted.

A member's share of a stack (`share`, put back by `restore_shares`) is what last.pt holds of
a lone run and what each member's stack.pt holds in a stacked sweep (regbench.engine.sweep).
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

from regbench.engine.fitstate import FitState, schedule_of
from regbench.engine.member import NETWORK_STREAM
from regbench.engine.schedules import check_state

CHECKPOINT_FILE = "last.pt"
FORMAT = "regbench-checkpoint-2"  # a stack member's share (`share`)
OLDER_FORMATS = ("regbench-checkpoint-1",)  # a torch model and optimizer state (regbench 0.1)
# Streams that shares written before every stream was a named one (up to commit 5be3e05) kept
# under keys of their own, and the named streams (regbench.engine.member) they are now: the
# network's (then called dropout's), and the one regbench.regularizers.augment opens by that name.
LEGACY_STREAMS = {"dropout": NETWORK_STREAM, "augment": "augment"}


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


def share(stack: Any, k: int) -> dict[str, Any]:
    """Member k's share of the stack (regbench.engine.stack.Stack), for its checkpoint: its
    weights, batch-norm statistics, optimizer moments, early-stopping state and random streams,
    with the stack's step. Plain values and tensors only (what weights_only loading accepts)."""
    member = stack.members[k]
    return {
        "step": stack.step,
        # clones: saving a view would write the whole stacked tensor
        "params": [t[k].detach().clone() for t in stack.params],
        "buffers": [t[k].clone() for t in stack.buffers],
        "moments": [[t[k].clone() for t in moments] for moments in stack.moments],
        "fit": fit_payload(member.state),
        "best_steps": member.best_steps,
        "order": member.order.get_state(),
        "streams": member.stream_states(),
        "reg_state": {name: {key: [t[k].clone() for t in ts] for key, ts in state.items()}
                      for name, state in stack.reg_state.items()},
    }


def streams_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The named streams a member's share holds (`Member.stream_states`), those that a share
    written before every stream was a named one kept under keys of their own included."""
    streams = dict(payload.get("streams", {}))
    for key, name in LEGACY_STREAMS.items():
        if key in payload:
            streams.setdefault(name, payload[key])
    return streams


@torch.no_grad()
def restore_shares(stack: Any, payloads: list[dict[str, Any]]) -> None:
    """Puts every member's checkpointed share (see `share`) back into the stack.

    Raises:
        KeyError, TypeError, ValueError, IndexError, RuntimeError: the payloads do not fit.
    """
    device = stack.params[0].device
    params = [torch.stack([p["params"][j] for p in payloads]).to(device) for j in range(len(stack.params))]
    buffers = [torch.stack([p["buffers"][j] for p in payloads]).to(device) for j in range(len(stack.buffers))]
    if any(a.shape != b.shape for a, b in zip(params + buffers, stack.params + stack.buffers)) or \
            len(payloads[0]["params"]) != len(stack.params) or len(payloads[0]["buffers"]) != len(stack.buffers):
        raise ValueError("the weights' shapes differ from this model's")
    moments = [[torch.stack([p["moments"][j][i] for p in payloads]).to(device)
                for i in range(len(payloads[0]["moments"][j]))] for j in range(len(stack.params))]
    if len({int(p["step"]) for p in payloads}) != 1:
        raise ValueError("the members' checkpoints disagree on the step")
    states = [fit_state(p["fit"], device) for p in payloads]
    schedules = [schedule_of(m.cfg, state) for m, state in zip(stack.members, states)]
    for member, payload, state, schedule in zip(stack.members, payloads, states, schedules):
        member.schedule = schedule
        member.order.set_state(payload["order"])
        member.load_streams(streams_of(payload), device)
        member.state, member.best_steps = state, int(payload["best_steps"])
    stack.params = [t.requires_grad_() for t in params]
    stack.buffers, stack.moments, stack.step = buffers, moments, int(payloads[0]["step"])
    saved = payloads[0].get("reg_state", {})
    stack.reg_state = {name: {key: [torch.stack([p["reg_state"][name][key][i] for p in payloads])
                                    .to(device) for i in range(len(ts))]
                              for key, ts in state.items()}
                       for name, state in saved.items()}
    stack.follow_schedules()


def save(folder: Path, config_hash: str, stack: Any, seconds: float, data: dict[str, Any] | None = None) -> None:
    """Writes last.pt of a lone run (a stack of one) atomically: a kill mid-write leaves the
    previous checkpoint intact. `data`: the fingerprint of a user's data (the run's
    `data_fingerprint`), kept so that a checkpoint refused for it says which file changed."""
    payload = {
        "format": FORMAT,
        "config_hash": config_hash,
        **({"data_fingerprint": data} if data is not None else {}),
        "member": share(stack, 0),
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
        if tmp.name.split(".")[1] in ("last", "stack", "result", "model", "predictions"):
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
        restore_shares(stack, [payload["member"]])
        _set_rng_states(payload["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        return None, f"incomplete ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return Restored(state=stack.members[0].state, seconds=float(payload.get("seconds", 0.0))), ""
