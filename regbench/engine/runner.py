"""`run(cfg, out_dir)`: one configuration from composed config to result.json.

Data flows one way: config -> dataset tensors on the device -> model, regularizers and
the engine's stack of one (or the state of last.pt, when `out_dir` holds one) ->
`regbench.engine.loop.fit` -> final evaluation -> metrics.csv and result.json in `out_dir`. The runner
never raises for a run that went wrong: a diverged run and a failed one are results too,
recorded with their status, so a sweep goes on. Bad input known only once the data is loaded or
the model is built (a train_size above the split, model=cnn on a table, a custom model that
does not map its inputs to the outputs regbench needs) is not a run: it is raised before
anything is written, and the caller refuses it in one line.
"""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console

from regbench import UserInputError

from regbench.engine import checkpoint, convex, folderlock, interrupt, predictions, shift
from regbench.console import progress_bar
from regbench.data.datasets import configured_task, load
from regbench.engine.device import resolve_device
from regbench.engine.interrupt import Interrupted
from regbench.engine.fitstate import FitState
from regbench.engine.calibration import calibration, summary
from regbench.engine.loop import evaluate, fit
from regbench.engine.member import NETWORK_STREAM, Member, network_stream, order_generator
from regbench.engine.network import tensors
from regbench.engine.stack import Stack
from regbench.models import build_model, probe_custom
from regbench.regularizers import label, penalised_weights, regularizers, sparsity
from regbench.regularizers.contract import defines
from regbench import loggers
from regbench.predictions import PREDICTIONS_FILE
from regbench.record import RECORD_VERSION, Record
from regbench.results import (
    METRICS_FILE,
    MODEL_FILE,
    RESULT_FILE,
    MetricsWriter,
    early_best,
    flatten,
    identity,
    metric_name,
    versions,
    write_result,
)
from regbench.config.checks import check, convex_obstacles, is_checked

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_result(cfg: Any, search: tuple[str, ...] = (), task: str | None = None) -> Record:
    """A result with every required key (regbench.record.Record), before anything has run.

    `task`: the loaded data's (a user's table decides it); by default the one the config says
    (regbench.data.datasets.configured_task), which `adopt_data` corrects once the data is loaded.
    """
    task = task or configured_task(cfg.dataset)
    m = metric_name(task)
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    digest, data = identity(params)
    try:
        reg = label(cfg.reg, cfg.model, search)
    except UserInputError:  # a user regularizer that does not load: `check` says why
        reg = "?"
    result: Record = {
        "record_version": RECORD_VERSION,
        "status": "failed",
        "error": None,
        "task": task,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "reg": reg,
        "seed": cfg.seed,
        "params": params,
        "config_hash": digest,
        "metrics": {f"{s}_{k}": None for s in ("train", "val", "test") for k in ("loss", m)},
        "gap": {m: None, "loss": None},
        "best_epoch": None,
        "epochs_run": 0,
        "stopped_early": False,
        "early_best": None,
        "weights": None,
        "sparsity": None,
        "optimality": None,
        "n_params": None,
        "seconds": None,
        "device": None,
        "threads": torch.get_num_threads(),
        "resumed_from_epoch": None,
        "versions": versions(),
    }
    if data is not None:  # a user's data: which version of its file(s) this run read
        result["data_fingerprint"] = data
    return result


def run(cfg: Any, out_dir: Path, console: Console | None = None, search: tuple[str, ...] = ()) -> Record:
    """Trains one configuration and writes metrics.csv and result.json into `out_dir`.

    Args:
        cfg: a composed config (see regbench.config.schema.Config); checked here unless the
            command line already found it valid (regbench.config.checks.refusals).
        out_dir: the run folder (Hydra's output directory of the job).
        console: where the progress bar goes; a default Console when None.
        search: folders where a user regularizer's module may lie (`--config-dir`), besides the
            Python path and the current folder (regbench.regularizers.load_user).

    Returns:
        The result, as written to result.json. Its status is `ok`, `diverged` (a non-finite
        loss stopped training) or `failed` (with the error).

    Raises:
        UserInputError: bad input, found before training (the config's checks, the data, the
            regularizers' `problem` hooks, the model's construction and model=custom's first
            forward pass): nothing was written, and `out_dir` is removed when this call made it.
        FolderBusy: another process trains in `out_dir`; nothing was written.
        Interrupted: Ctrl-C or SIGTERM, once the epoch it came in was checkpointed.

    A file that cannot be written (a full disk) does not stop the run: a checkpoint is a
    warning and training goes on; metrics.csv is rewritten from the history at the end; the
    final files that could not be written are named in the result's `files_not_written`
    (file -> reason), a key present only then.
    """
    made = not Path(out_dir).exists()  # a search trial's seed folder: made here, removed on a refusal
    try:
        with folderlock.hold(Path(out_dir)):
            try:
                return _run(cfg, Path(out_dir), console, search)
            finally:  # left by a process killed mid-write: this folder's lock says none is writing now
                checkpoint.remove_temporaries(Path(out_dir))
    except UserInputError:
        if made:
            folderlock.remove_unused(Path(out_dir))
        raise


def _run(cfg: Any, out_dir: Path, console: Console | None, search: tuple[str, ...]) -> Record:
    start = time.perf_counter()
    prior_seconds = 0.0  # wall time spent before a resume, carried by the checkpoint
    out_dir.mkdir(parents=True, exist_ok=True)
    result = new_result(cfg, search)
    console = console or Console()
    stop = interrupt.Request()  # replaced by the live one while training runs
    logger = loggers.NULL  # logger=tensorboard: the live one, once training starts
    unwritten: dict[str, str] = {}  # final files that could not be written, and why
    prepared = False  # until then, a UserInputError is bad input: raised, with nothing written
    try:
        problems = [] if is_checked(cfg, search) else check(cfg, search)  # checked by the command line
        if problems:
            raise UserInputError("; ".join(problems))
        device = resolve_device(cfg.device)
        result["device"] = str(device)
        data = load(cfg.dataset, device)
        adopt_data(result, data)
        print_summary(console, data)
        classes = regularizers(cfg.reg, search)
        problem = data_problem(cfg, data, classes)
        if problem:
            raise UserInputError(problem)
        stack = new_stack([(cfg, out_dir, result)], data, device, classes, search)
        prepared = True
        restored, why = checkpoint.load(out_dir, result["config_hash"], stack, result.get("data_fingerprint"))
        if why:
            console.print(f"regbench: warning: ignoring {out_dir / checkpoint.CHECKPOINT_FILE}: {why}; starting fresh",
                          highlight=False, markup=False, soft_wrap=True)
            stack = new_stack([(cfg, out_dir, result)], data, device, classes, search)
        member = stack.members[0]
        model = member.model
        if restored:
            prior_seconds = restored.seconds
            result["resumed_from_epoch"] = restored.state.epoch
            console.print(f"resuming from the checkpoint of epoch {restored.state.epoch} in {out_dir}",
                          highlight=False, markup=False, soft_wrap=True)
        result["n_params"] = sum(p.numel() for p in model.parameters())

        budget = checkpoint.Budget(cfg.trainer.checkpoint_seconds)
        failed_write = [""]  # why the last checkpoint could not be written ("" when it was)

        def save(epoch: int) -> None:
            if not (budget.due() or stop.requested):
                return
            elapsed = prior_seconds + time.perf_counter() - start
            try:
                checkpoint.save(out_dir, result["config_hash"], stack, elapsed, result.get("data_fingerprint"))
                failed_write[0] = ""
            except OSError as e:  # a full disk: the run goes on, without a newer resume point
                why = e.strerror or str(e)
                if why != failed_write[0]:
                    console.print(f"regbench: warning: could not write {out_dir / checkpoint.CHECKPOINT_FILE} "
                                  f"after epoch {epoch} ({why}); training goes on without a newer resume point",
                                  highlight=False, markup=False, soft_wrap=True)
                failed_write[0] = why
            budget.written()
            if stop.requested:
                kept = (f"checkpointed in {out_dir}" if not failed_write[0] else
                        f"but its checkpoint could not be written ({failed_write[0]}): a rerun starts from "
                        f"the last checkpoint written in {out_dir}, if any")
                raise Interrupted(f"after epoch {epoch}, {kept}", signum=stop.signum)

        state = restored.state if restored else None
        solver = cfg.optim.name == "fista"  # model=linear, convex: solved exactly (regbench.engine.convex)
        blocks = -(-cfg.optim.max_iter // cfg.optim.log_every)
        bar, bar_task = progress_bar(console, blocks if solver else cfg.trainer.max_epochs, result["reg"])
        logger = loggers.live(cfg, out_dir, state.history if state else ())
        # the weights, read only every logger.histogram_every epochs: fista solves in the model itself
        weights = model.named_parameters if solver else (lambda: member_weights(stack, member))
        with MetricsWriter(out_dir, data.task, state.history if state else ()) as metrics_csv, bar:
            bar.update(bar_task, completed=state.epoch if state else 0)

            def on_row(member: Member, row: dict[str, float]) -> None:
                metrics_csv.write(row)
                logger.epoch(row, weights)
                bar.update(bar_task, advance=1, losses=f"train {row['train_loss']:.4f}  val {row['val_loss']:.4f}")

            with interrupt.deferred() as stop:  # Ctrl-C, SIGTERM: the epoch ends and is checkpointed first
                if solver:
                    member.state = solve_exactly(model, data, cfg, lambda row: on_row(member, row), stop, console)
                else:
                    fit(stack, data, state.epoch if state else 0, on_row, on_epoch_end=save)
        fitted = member.state
        if metrics_csv.error:  # a row could not be written (full disk): all of them again, now
            try:
                with MetricsWriter(out_dir, data.task, fitted.history) as again:
                    pass
                if again.error:
                    raise again.error
            except OSError as e:
                unwritten[METRICS_FILE] = e.strerror or str(e)

        model = member.model  # the reported model: its network, or an ensemble of copies (Stack.conclude)
        record(result, fitted, model, data, cfg, member.reported_weights, classes)
        if why := predictions.keep(out_dir, result, model, data, cfg):  # predictions.npz, for the report's ensembles
            unwritten[PREDICTIONS_FILE] = why
        if cfg.save_model and result["status"] == "ok":
            try:
                checkpoint.write_atomic(out_dir / MODEL_FILE, model.state_dict())
            except OSError as e:
                unwritten[MODEL_FILE] = e.strerror or str(e)
    except Exception as e:  # recorded, not raised: one failed job must not stop a sweep
        if isinstance(e, UserInputError) and not prepared:
            raise
        result["status"] = "failed"
        result["error"] = str(e) if isinstance(e, UserInputError) else f"{type(e).__name__}: {e}"
        result["error_type"] = type(e).__name__
        if not isinstance(e, UserInputError):
            result["traceback"] = traceback.format_exc()
            log.error("run failed:\n%s", result["traceback"])
    result["seconds"] = prior_seconds + time.perf_counter() - start
    if unwritten:
        result["files_not_written"] = dict(unwritten)
    try:
        write_result(out_dir, result)
    except OSError:
        try:  # a full disk: the checkpoint, about to be deleted anyway, makes room for the result
            if cfg.keep_checkpoint or not (out_dir / checkpoint.CHECKPOINT_FILE).is_file():
                raise
            (out_dir / checkpoint.CHECKPOINT_FILE).unlink()
            write_result(out_dir, result)
        except OSError as e:  # the caller prints the result, and says it is not on disk
            result["files_not_written"] = {**unwritten, RESULT_FILE: e.strerror or str(e)}
    logger.finish(result)
    if not cfg.keep_checkpoint:
        (out_dir / checkpoint.CHECKPOINT_FILE).unlink(missing_ok=True)
    if stop.requested:  # Ctrl-C in the last epoch: the run finished; stop what comes after it
        raise Interrupted(f"as the run finished (its result is in {out_dir})", signum=stop.signum)
    return result


def adopt_data(result: Record, data: Any) -> None:
    """What only the loaded data tells a result: its task (a user's table or arrays decide it),
    with the metric keys that follow from it, its class names where the data has them, and the
    size of each split (the report's corrected t-test reads them: regbench.reporting.aggregate)."""
    if data.task != result["task"]:
        m = metric_name(data.task)
        result["task"] = data.task
        result["metrics"] = {f"{s}_{k}": None for s in ("train", "val", "test") for k in ("loss", m)}
        result["gap"] = {m: None, "loss": None}
    if data.classes is not None:
        result["classes"] = list(data.classes)
    if data.summary is not None:  # a user's data: what was read and what it became
        result["data_summary"] = data.summary
    result["split_sizes"] = {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test)}


def print_summary(console: Console, data: Any) -> None:
    """The one line that says what a user's data gave (rows, columns, features, classes), and
    its warnings; nothing for a bundled dataset."""
    if data.summary is None:
        return
    console.print(data.summary["line"], highlight=False, markup=False, soft_wrap=True)
    for warning in data.summary.get("warnings", ()):
        console.print(f"regbench: warning: {warning}", highlight=False, markup=False, soft_wrap=True)


def data_problem(cfg: Any, data: Any, classes: list[tuple[type, Any]]) -> str | None:
    """What makes `cfg` impossible on this dataset (known only once it is loaded), or None:
    the first regularizer's `problem` hook that names one, or the corruptions `shift` asks for."""
    for cls, _ in classes:
        message = cls.problem(cfg, data) if defines(cls, "problem") else None
        if message:
            return message
    return shift.problem(cfg, data)


def checked_model(cfg: Any, data: Any, device: torch.device, classes: list[tuple[type, Any]],
                  search: tuple[str, ...] = ()) -> torch.nn.Module:
    """The job's network on `device`; model=custom's tried once on two training examples first
    (regbench.models.probe_custom: built-in models are known to fit their data).

    Raises:
        UserInputError: the model cannot be built for this data, or model=custom's network fails on it.
    """
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task, [c for c, _ in classes], search)
    model = model.to(device)
    if getattr(model, "regbench_custom", False):
        probe_custom(model, data.prepare(data.x_train[:2].clone()), cfg.model._target_)
    return model


def refusal(cfg: Any, data: Any, search: tuple[str, ...] = ()) -> str | None:
    """Why `cfg` cannot run on `data` (loaded on any device), found as a run finds it before
    training: a regularizer's `problem` hook, the model's construction, model=custom's first
    forward pass; or None. A sweep asks it of every job before any job runs."""
    try:
        classes = regularizers(cfg.reg, search)
        problem = data_problem(cfg, data, classes)
        if problem:
            return problem
        with torch.random.fork_rng(devices=[]):  # the model's initialisation draws from a copy of the global stream
            checked_model(cfg, data, data.x_train.device, classes, search)
    except UserInputError as e:
        return str(e)
    return None


def new_member(index: int, cfg: Any, out_dir: Path, result: dict[str, Any], data: Any, device: torch.device,
               classes: list[tuple[type, Any]], search: tuple[str, ...] = ()) -> Member:
    """A job's network and random streams, all from its seed: for one seed every regularizer
    starts from the same weights and sees the same batches."""
    seed_everything(cfg.seed)
    model = checked_model(cfg, data, device, classes, search)
    # the network's stream, opened where building the model left torch's global one
    streams = {NETWORK_STREAM: network_stream(cfg.seed, device)}
    return Member(index, cfg, Path(out_dir), result, model, order_generator(cfg.seed, device), streams)


def new_stack(jobs: list[tuple[Any, Path, dict[str, Any]]], data: Any, device: torch.device,
              classes: list[tuple[type, Any]], search: tuple[str, ...] = ()) -> Stack:
    """The engine's stack of the jobs, each a (config, run folder, result) triple sharing one
    `regbench.engine.grouping.stack_key`: a lone run is a stack of one."""
    members = [new_member(i, cfg, out_dir, result, data, device, classes, search)
               for i, (cfg, out_dir, result) in enumerate(jobs)]
    # the network with the most layers: a member with a regularizer's layers, where any member has them
    template = max((m.model for m in members), key=lambda model: len(list(model.modules())))
    return Stack(members, template, jobs[0][0].optim, classes, data.input_range)


def member_weights(stack: Stack, member: Member) -> list[tuple[str, Any]]:
    """A member's slices of the stacked parameters, under the names its own network gives them
    (`1.weight`, ...), the same as in a lone run: what its live logger's histograms read."""
    k = next(i for i, m in enumerate(stack.members) if m is member)
    names = {id(p): name for name, p in member.model.named_parameters()}
    return [(names[id(p)], t[k]) for p, t in zip(tensors(member.model)[0], stack.params)]


def record(result: Record, state: FitState, model: torch.nn.Module, data: Any, cfg: Any, weights: str,
           classes: list[tuple[type, Any]] = ()) -> None:
    """A finished member's result: how its training ended (from its FitState), which weights it
    reports (`weights`: Member.reported_weights), their sparsity (in `model`) and final metrics
    (with those of the `metrics` hooks of `classes`, the run's regularizers)."""
    result.update(
        status="diverged" if state.diverged else "ok",
        best_epoch=state.best_epoch or None,
        epochs_run=len(state.history),
        stopped_early=state.stopped_early,
        early_best=early_best(state.best_epoch or None, cfg.trainer.patience, state.stopped_early),
        sparsity=sparsity(penalised_weights(model)),
        weights=weights or "trained",
    )
    if state.best_epoch or not state.diverged:
        final_metrics(result, model, data, cfg, classes)


def final_metrics(result: Record, model: torch.nn.Module, data: Any, cfg: Any,
                  classes: list[tuple[type, Any]] = ()) -> None:
    """Evaluates the reported weights on train, val and test, and the gap between them; adds
    the metrics of the `metrics` hooks of the regularizer classes `classes` (regularizers' pairs);
    and, for a classification, each split's ECE and Brier score with the test split's reliability
    diagram (regbench.engine.calibration), all read back in one host sync; then the test metrics on
    corrupted copies that `shift` asks for (regbench.engine.shift, in one more)."""
    m = metric_name(data.task)
    batch = cfg.trainer.eval_batch_size
    scores = torch.cat([evaluate(model, data, s, batch) for s in SPLITS])
    own: dict[str, torch.Tensor] = {}  # the regularizers' `metrics` hooks: robustness under FGSM...
    for cls, values in classes:
        if defines(cls, "metrics"):
            own.update(cls.metrics(values(cfg.reg), model, data, batch))
    bins = cfg.trainer.ece_bins
    calibrated = [calibration(model, data, s, batch, bins) for s in SPLITS] if data.task == "classification" else []
    read = torch.cat([scores, *(t.reshape(1).to(scores) for t in own.values()), *calibrated]).tolist()  # one host sync
    train_loss, train_m, val_loss, val_m, test_loss, test_m = read[:6]
    result["metrics"] = {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "test_loss": test_loss,
        f"train_{m}": train_m,
        f"val_{m}": val_m,
        f"test_{m}": test_m,
        **dict(zip(own, read[6 : 6 + len(own)])),
    }
    if calibrated:  # the ECE and Brier score of each split, and the test split's reliability diagram
        per_split = [read[6 + len(own) + i * (2 + 3 * bins):][: 2 + 3 * bins] for i in range(len(SPLITS))]
        for s, values in zip(SPLITS, per_split):
            result["metrics"][f"{s}_ece"], result["metrics"][f"{s}_brier"] = values[:2]
        result["calibration"] = {"bins": bins, "test": summary(per_split[-1], bins)}
    result["gap"] = {m: train_m - val_m, "loss": val_loss - train_loss}
    if not convex_obstacles(cfg):  # model=linear with the penalty alone: how close to the optimum
        result["optimality"] = convex.optimality_violation(model, data, cfg.reg, cfg.trainer.eval_batch_size)
    shift.record(result, model, data, cfg)  # the test split corrupted, where `shift` asks (after the clean metrics)


def solve_exactly(model: torch.nn.Module, data: Any, cfg: Any, on_epoch: Any, stop: interrupt.Request,
                  console: Console) -> FitState:
    """optim=fista in place of `fit`: `convex.solve`, its iterate evaluated like an epoch (the
    same columns, `epoch` numbering blocks of optim.log_every iterations, `lr` the line search's
    step size) after every block; the last iterate is the reported one. It keeps no checkpoint:
    Ctrl-C or SIGTERM stops it after the current block, and a rerun solves from the start."""
    state, m, o = FitState(), metric_name(data.task), cfg.optim

    def on_block(iterations: int, step: float, seconds: float, last: bool) -> None:
        scores = torch.cat([evaluate(model, data, s, cfg.trainer.eval_batch_size) for s in ("train", "val")])
        train_loss, train_m, val_loss, val_m = scores.tolist()
        row = {"epoch": state.epoch + 1, "train_loss": train_loss, f"train_{m}": train_m, "val_loss": val_loss,
               f"val_{m}": val_m, "lr": step, "seconds": seconds}
        state.history.append(row)
        on_epoch(row)
        if stop.requested and not last:
            raise Interrupted(f"after {iterations} iterations of optim=fista, which keeps no checkpoint: "
                              "a rerun solves from the start", signum=stop.signum)

    solution = convex.solve(model, data, cfg.reg, tol=o.tol, max_iter=o.max_iter, step=o.lr, every=o.log_every,
                            on_block=on_block)
    state.best_epoch, state.diverged = state.epoch, not math.isfinite(solution.objective)
    if not solution.converged and not state.diverged:
        console.print(f"regbench: warning: optim=fista stopped at optim.max_iter={o.max_iter} iterations with an "
                      f"optimality violation of {solution.violation:.3g} > optim.tol={o.tol:g}: raise optim.max_iter",
                      highlight=False, markup=False, soft_wrap=True)
    return state
