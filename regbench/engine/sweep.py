"""The sweep driver: the jobs of a sweep that share one structure, trained as one stack.

The stacked launcher (hydra_plugins.regbench_stacked_launcher) and search.seeds hand it each
group of jobs; a lone run is regbench.engine.runner's. Jobs that differ only in what
`regbench.engine.grouping` lets members differ in (regularizers' strengths, learning rate,
seed, ...) and agree on everything else (dataset and its split, model architecture,
batch size, epoch budget, optimizer, early-stopping rule) become the members of one stack (regbench.engine.stack.Stack), trained by the one training
loop a lone run uses (regbench.engine.loop.fit). A member that stops leaves the stack with its
best weights while the others go on, and its metrics.csv and result.json are written at once,
in the schema of a lone run. On a time budget, each live member also writes its share of the
stack (stack.pt) into its folder, from which a rerun continues the stack, as a lone run
continues from last.pt.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

from regbench import UserInputError, loggers
from regbench.console import progress_bar
from regbench.data.datasets import Data, load
from regbench.engine import checkpoint, folderlock, interrupt, predictions
from regbench.engine.device import resolve_device
from regbench.engine.interrupt import Interrupted
from regbench.engine.fitstate import FitState, schedule_of
from regbench.engine.loop import fit
from regbench.engine.member import Member
from regbench.engine.runner import adopt_data, data_problem, member_weights, new_result, new_stack, print_summary, record
from regbench.engine.stack import Stack
from regbench.regularizers import regularizers
from regbench.predictions import PREDICTIONS_FILE
from regbench.results import MetricsWriter, write_result

# A live member's share of an interrupted stack, in its run folder (removed when it finishes).
STACK_CHECKPOINT = "stack.pt"
STACK_PREVIOUS = "stack.prev.pt"  # the one before, until the next is written (see _save)
STACK_FORMAT = "regbench-stack-member-2"  # regbench.engine.checkpoint.share


def train(jobs: list[tuple[Any, Path]], console: Console | None = None, done: dict[int, dict[str, Any]] | None = None,
          on_done: Callable[[int, dict[str, Any]], None] = lambda index, result: None,
          search: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Trains the jobs of one stack, each a (composed config, run folder) pair, all sharing one
    `regbench.engine.grouping.stack_key`.

    `search`: folders where a user regularizer's module may lie (see regbench.engine.runner.run).
    Every member's metrics.csv and result.json are written to its folder as it finishes, and
    its result is put in `done` (index -> result) at once, so that a caller whose stack later
    fails knows which jobs are already finished, and handed to `on_done(index, result)`, so
    that the user reads each job's line when it finishes, not when the last one does.

    Returns:
        The results, in the order of `jobs`.

    Raises:
        UserInputError: the jobs cannot run on this dataset, or one's folder is in use by another
            process (FolderBusy); nothing was written, and the folders this call made are
            removed; the lone runs report it per job.
        Interrupted: Ctrl-C or SIGTERM, once the epoch it came in was checkpointed.
    """
    made = [Path(out_dir) for _, out_dir in jobs if not Path(out_dir).exists()]
    try:
        with contextlib.ExitStack() as locks:
            for _, out_dir in jobs:
                locks.enter_context(folderlock.hold(Path(out_dir)))
            return _train(jobs, console, {} if done is None else done, on_done, search)
    except UserInputError:  # raised before training (runner.run's `prepared`): no member wrote anything
        for out_dir in made:
            folderlock.remove_unused(out_dir)
        raise


def _train(jobs: list[tuple[Any, Path]], console: Console | None, done: dict[int, dict[str, Any]],
           on_done: Callable[[int, dict[str, Any]], None], search: tuple[str, ...]) -> list[dict[str, Any]]:
    start = time.perf_counter()
    console = console or Console()
    cfg = jobs[0][0]
    tr = cfg.trainer
    device = resolve_device(cfg.device)
    data = load(cfg.dataset, device)
    print_summary(console, data)  # once per stack: its members share the data
    classes = regularizers(cfg.reg, search)
    problem = data_problem(cfg, data, classes)
    if problem:
        raise UserInputError(problem)
    triples = []
    for job_cfg, out_dir in jobs:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        triples.append((job_cfg, Path(out_dir), new_result(job_cfg, search, data.task)))
        adopt_data(triples[-1][2], data)
    stack = new_stack(triples, data, device, classes, search)
    members = list(stack.members)
    for member in members:
        member.result.update(device=str(device), n_params=sum(p.numel() for p in member.model.parameters()),
                             stack_size=len(jobs))
    resumed, prior_seconds = _restore(stack, console)
    start -= prior_seconds  # a member's `seconds` counts the interrupted process's time too
    for member in members:
        member.writer = MetricsWriter(member.out_dir, data.task, member.state.history)
        member.logger = loggers.live(member.cfg, member.out_dir, member.state.history)
        member.result["resumed_from_epoch"] = resumed or None
    budget = checkpoint.Budget(min(c.trainer.checkpoint_seconds for c, _ in jobs))
    failed_write = [""]  # why the last checkpoint could not be written ("" when it was)
    bar, bar_task = progress_bar(console, tr.max_epochs, f"stack of {len(jobs)}")
    shown = [resumed]  # the last epoch the bar shows

    def on_row(member: Member, row: dict[str, float]) -> None:
        member.writer.write(row)
        member.logger.epoch(row, lambda: member_weights(stack, member))  # read every N epochs only
        if row["epoch"] > shown[0]:
            shown[0] = row["epoch"]
            bar.update(bar_task, advance=1, losses=f"{len(stack.members)} of {len(jobs)} training")

    def finished(member: Member) -> None:
        _finish(member, data, start, classes)
        done[member.index] = member.result
        on_done(member.index, member.result)

    def on_epoch_end(epoch: int) -> None:
        if budget.due() or stop.requested:
            try:
                _save(stack, epoch, time.perf_counter() - start)
                failed_write[0] = ""
            except OSError as e:  # a full disk: the stack goes on, without a newer resume point
                if (e.strerror or str(e)) != failed_write[0]:
                    console.print(f"regbench: warning: could not write a member's {STACK_CHECKPOINT} after epoch "
                                  f"{epoch} ({e.strerror or e}: {e.filename}); the stack goes on without a "
                                  "newer resume point", highlight=False, markup=False, soft_wrap=True)
                failed_write[0] = e.strerror or str(e)
            budget.written()
        if stop.requested:
            kept = ("checkpointed in their folders" if not failed_write[0] else
                    f"not checkpointed ({failed_write[0]}): a rerun starts from their last checkpoints, if any")
            raise Interrupted(f"after epoch {epoch} of a stack, its {len(stack.members)} unfinished jobs {kept}",
                              signum=stop.signum)

    try:
        with bar, interrupt.deferred() as stop:  # Ctrl-C: the epoch ends and is checkpointed first
            bar.update(bar_task, completed=resumed)
            fit(stack, data, resumed, on_row, finished, on_epoch_end)
        if stop.requested:  # Ctrl-C in the last epoch: the stack finished; stop what comes after it
            raise Interrupted("as the stack finished (its jobs' results are in their folders)", signum=stop.signum)
    finally:
        for member in members:
            if member.writer is not None:
                member.writer.close()
    return [m.result for m in members]


def _save(stack: Stack, epoch: int, seconds: float) -> None:
    """Writes each live member's share of the stack (checkpoint.share) into its own folder,
    atomically, with the stack's epoch. The member's previous checkpoint is kept as
    STACK_PREVIOUS until its next one is written, so that a kill between two members' writes
    still leaves one epoch that every member holds."""
    for k, member in enumerate(stack.members):
        path = member.out_dir / STACK_CHECKPOINT
        if path.is_file():
            os.replace(path, member.out_dir / STACK_PREVIOUS)
        checkpoint.write_atomic(path, {
            "format": STACK_FORMAT,
            "config_hash": member.result["config_hash"],
            **({"data_fingerprint": member.result["data_fingerprint"]} if "data_fingerprint" in member.result else {}),
            "epoch": epoch,
            "member": checkpoint.share(stack, k),
            "seconds": seconds,
        })


def _checkpoints(member: Member) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The member's usable checkpoints by epoch, and what was wrong with the other files."""
    found, problems = {}, []
    for name in (STACK_CHECKPOINT, STACK_PREVIOUS):
        path = member.out_dir / name
        if not path.is_file():
            continue
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, not a torch file, or holding objects weights_only refuses
            problems.append(f"{path} is unreadable ({type(e).__name__})")
            continue
        if not isinstance(payload, dict) or payload.get("format") != STACK_FORMAT:
            problems.append(f"{path} is not a regbench stack checkpoint")
        elif payload.get("config_hash") != member.result["config_hash"]:
            why = checkpoint.other_data(payload, member.result.get("data_fingerprint"))
            problems.append(f"{path} was {why or 'written by a different configuration'}")
        else:
            found[payload["epoch"]] = payload
    return found, problems


def _restore(stack: Stack, console: Console) -> tuple[int, float]:
    """Continues the stack from the latest epoch of which every member holds a checkpoint of
    its configuration; returns (that epoch, the seconds trained before), or (0, 0.0) to
    start afresh (saying why, when checkpoints were there)."""
    names = (STACK_CHECKPOINT, STACK_PREVIOUS)
    if not any((m.out_dir / n).is_file() for m in stack.members for n in names):
        return 0, 0.0
    found = [_checkpoints(m) for m in stack.members]
    common = set.intersection(*(set(f) for f, _ in found))
    problems = [problem for _, member_problems in found for problem in member_problems]
    payloads = [f[max(common)] for f, _ in found] if common else []
    problem = None
    if not common:
        problem = problems[0] if problems else "the members' checkpoints share no epoch"
    streams = [(m.order.get_state(), m.stream_states()) for m in stack.members]
    if problem is None:
        try:
            checkpoint.restore_shares(stack, [p["member"] for p in payloads])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            problem = f"incomplete checkpoint ({type(e).__name__}: {e})"
    if problem:
        console.print(f"regbench: warning: {problem}; the stack starts afresh", highlight=False, markup=False, soft_wrap=True)
        for member, (order, named) in zip(stack.members, streams):  # undo what a partial load may have set
            member.order.set_state(order)
            member.reset_streams(named, stack.device)
            member.state, member.best_steps = FitState(), 0
            member.schedule = schedule_of(member.cfg, member.state)
        return 0, 0.0
    epoch = max(common)
    for problem in problems:  # files passed over for an older checkpoint that every member holds
        console.print(f"regbench: warning: {problem}; not used", highlight=False, markup=False, soft_wrap=True)
    console.print(f"resuming the stack from the checkpoint of epoch {epoch}", highlight=False, markup=False, soft_wrap=True)
    return epoch, max(float(p["seconds"]) for p in payloads)


def _finish(member: Member, data: Data, start: float, classes: list[tuple[type, Any]]) -> None:
    """Evaluates a member whose reported weights are in its own network (Stack.conclude)
    exactly as a lone run does (runner.record), and writes its files."""
    cfg, result = member.cfg, member.result
    record(result, member.state, member.model, data, cfg, member.reported_weights, classes)
    if why := predictions.keep(member.out_dir, result, member.model, data, cfg):  # what a lone run writes
        result.setdefault("files_not_written", {})[PREDICTIONS_FILE] = why
    if cfg.save_model and result["status"] == "ok":
        torch.save(member.model.state_dict(), member.out_dir / "model.pt")
    result["seconds"] = time.perf_counter() - start
    member.writer.close()
    write_result(member.out_dir, result)
    member.logger.finish(result)
    if not cfg.keep_checkpoint:
        (member.out_dir / STACK_CHECKPOINT).unlink(missing_ok=True)
    (member.out_dir / STACK_PREVIOUS).unlink(missing_ok=True)
    checkpoint.remove_temporaries(member.out_dir)  # left by a process killed mid-write; the stack holds the lock
