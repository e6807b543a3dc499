"""Stacked sweeps (regbench.engine.stack and hydra/launcher=stacked): every member of a stack
must end exactly where the same job run alone ends.

With one torch thread (the suite's default) the arithmetic is the same, so the comparison is
bit for bit: every metrics.csv row (except its wall-clock `seconds`) and every number of
result.json. With several threads the kernels split a stacked product differently from a
lone one and the last bits differ; `test_with_two_threads_a_stack_agrees_within_tolerance`
checks the tolerance docs/how-to/launchers.md states.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console

from regbench import UserInputError

from regbench.engine import grouping, steps, sweep as stacking
from regbench.engine.interrupt import Interrupted
from tests.helpers.cli import regbench
from tests.helpers.compare import SAME, SMALL, alone_and_stacked, bit_for_bit, stacks_bit_for_bit, within_tolerance
from tests.helpers.configs import make_cfg
from tests.helpers.interrupt import interrupt_stack_after
from tests.helpers.rundirs import metrics_rows
from tests.helpers.syncs import HostSyncs, finish_reads

FAMILIES = {
    "adam: penalties, proximal L1, lr, dropout, seeds": (
        ["trainer.patience=3", "dataset.split_seed=0"],
        [["reg=none"], ["reg=l2", "reg.alpha=1e-2"], ["reg=l1", "reg.alpha=1e-3"], ["reg=elasticnet", "reg.alpha=1e-3"],
         ["reg=l1", "reg.alpha=1e-3", "optim.lr=3e-3"], ["reg=dropout"], ["reg=dropout", "reg.dropout=0.2", "optim.lr=1e-2"],
         ["reg=l2", "seed=1"]],
    ),
    "sgd with momentum: decay, L1 prox, lr": (
        ["optim=sgd", "trainer.patience=2"],
        [["reg=l1"], ["reg=l2", "optim.lr=0.05"], ["reg=weight_decay"], ["reg=elasticnet", "reg.alpha=1e-2"]],
    ),
    "adamw: decoupled decay": (
        ["optim=adamw", "trainer.patience=2"],
        [["reg=weight_decay"], ["reg=weight_decay", "reg.weight_decay=0.1", "optim.lr=3e-3"], ["reg=none"]],
    ),
    "batch norm with dropout": (
        ["reg.batchnorm=true", "trainer.patience=2"],
        [["reg.alpha=0"], ["reg=dropout", "reg.batchnorm=true", "optim.lr=3e-3"], ["reg=l2", "reg.batchnorm=true"]],
    ),
    "label smoothing": (["reg=label_smoothing"], [["reg.alpha=0"], ["reg.alpha=1e-3", "reg.l1_ratio=1"]]),
    "L1 in the loss (no proximal step)": (
        ["reg.l1_proximal=false"], [["reg=elasticnet"], ["reg=l1", "reg.alpha=1e-2"], ["reg=none"]],
    ),
    "regression": (
        ["dataset=diabetes", "dataset.train_size=200", "trainer.patience=2"],
        [["reg=l2"], ["reg=l1", "optim.lr=1e-2"], ["reg=dropout"]],
    ),
    "linear model, input dropout": (["model=linear"], [["reg=l2"], ["reg=dropout", "reg.dropout=0.2"], ["reg=l1", "optim.lr=1e-2"]]),
    "no early stopping": (["trainer.patience=null"], [["reg=l2"], ["optim.lr=1e-1"]]),
    "mixup and cutmix, each member its own alphas and draws": (
        ["trainer.patience=2"],
        [["reg=mixup"], ["reg=cutmix", "reg.label_smoothing=0.1"], ["reg=[mixup,cutmix]", "reg.mix_prob=0.5"],
         ["reg=mixup", "reg.mixup=1.0", "reg.cutout=0.5", "reg.cutout_size=0.2"],
         ["reg=mixup", "reg.input_noise=0.1", "reg.alpha=1e-4", "reg.l1_ratio=1"]],
    ),
    "cutout and input noise beside members without them": (
        ["trainer.patience=2"],
        [["reg=cutout"], ["reg=input_noise", "reg.input_noise=0.3"], ["reg=none"], ["reg=label_smoothing"]],
    ),
    "table: column cutmix, cutout, noise": (
        ["dataset=breast_cancer", "trainer.patience=2"],
        [["reg=cutmix"], ["reg=[mixup,cutmix,cutout]"], ["reg=[mixup,input_noise]"]],
    ),
    "ema: each member its own decay, with batch norm and L1's proximal step": (
        ["reg=ema", "reg.batchnorm=true", "trainer.patience=2"],
        [["reg.ema=0.9"], ["reg.ema=0.99", "reg.alpha=1e-3", "reg.l1_ratio=1"], ["reg.ema=0.5", "reg.dropout=0.2"]],
    ),
    "swa: each member its own start, rate and annealing, batch norm recomputed": (
        ["reg=swa", "reg.batchnorm=true", "trainer.patience=2"],
        [["reg.swa=0.5"], ["reg.swa=0.25", "reg.swa_lr=3e-3", "reg.swa_anneal_epochs=2"],
         ["reg.swa=0.75", "reg.dropout=0.2", "optim.schedule=cosine"]],
    ),
    "augmentation, each member's label smoothing and L1 mode": (
        ["reg.augment=true", "trainer.patience=2"],
        [["reg=none"], ["reg=label_smoothing"], ["reg=label_smoothing", "reg.label_smoothing=0.2", "reg=l1"],
         ["reg=l1", "reg.l1_proximal=false", "reg.alpha=1e-3"]],
    ),
}


def test_conv_nets_stack_and_agree_with_their_lone_runs_within_tolerance(tmp_path):
    """model=cnn stacks through one grouped convolution (every member's channels side by side),
    with batch norm, dropout in the head, augmentation and per-member penalties. A grouped
    convolution sums in another order than a lone one: equal to rounding, not bit for bit."""
    common = ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]", "reg.batchnorm=true",
              "reg.augment=true", "trainer.max_epochs=4", "trainer.patience=null"]
    variants = [["reg=none"], ["reg=l1", "reg.alpha=1e-3"], ["reg=dropout", "reg.dropout=0.3", "optim.lr=3e-3"],
                ["reg=weight_decay", "seed=1", "dataset.split_seed=0"]]
    within_tolerance(*alone_and_stacked(tmp_path, common, variants), variants)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_every_member_of_a_stack_ends_bit_for_bit_where_its_lone_run_ends(tmp_path, family):
    common, variants = FAMILIES[family]
    alone, stacked = stacks_bit_for_bit(tmp_path, common, variants)
    for i, (a, s) in enumerate(zip(alone, stacked)):
        written = json.loads((tmp_path / f"stacked{i}" / "result.json").read_text())
        assert written["stack_size"] == len(variants) and written["metrics"] == a["metrics"]


def test_members_stop_at_their_own_epochs_and_a_diverged_one_leaves_the_others_alone(tmp_path):
    variants = [["optim.lr=1e20"], ["optim.lr=1e-2"], ["optim.lr=5e-2"], ["optim.lr=3e-3"]]
    alone, stacked = alone_and_stacked(tmp_path, ["optim=sgd", "trainer.patience=2", "trainer.max_epochs=40"], variants)
    assert [s["status"] for s in stacked] == ["diverged", "ok", "ok", "ok"]
    assert len({s["epochs_run"] for s in stacked}) >= 3  # members really left the stack at different epochs
    bit_for_bit(tmp_path, alone, stacked, variants)


def test_a_stack_reads_back_from_the_device_once_per_epoch(tmp_path):
    """The stacked loop (batched steps, every member's penalty and update, evaluation) never
    waits for the device; each epoch's numbers of every member come back in one call, and a
    member that stops reads its final numbers back once. The CPU twin of the GPU check in
    tests/test_cuda.py (see tests/helpers/syncs.py's HostSyncs)."""
    variants = [["reg=l1"], ["reg=dropout", "optim.lr=3e-2"], ["reg=elasticnet"], ["reg=l2", "optim.lr=1e-2"]]
    cfgs = [make_cfg(*SMALL, "trainer.patience=2", "trainer.max_epochs=40", "reg.batchnorm=true", *v) for v in variants]
    with HostSyncs() as probe:
        results = stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], Console(quiet=True))
    epochs = [r["epochs_run"] for r in results]
    assert len(set(epochs)) >= 2 and all(r["status"] == "ok" for r in results)  # members left at different epochs
    loop = ("train", "_train", "fit")  # train holds the folders' locks, _train runs the engine's loop
    per_epoch = [call for call in probe.calls if call[1] == loop]
    assert per_epoch == [("tolist", loop)] * max(epochs)
    at_finish = [call for call in probe.calls if call[1] != loop]
    assert all(where[:5] == (*loop, "finished", "_finish") for _, where in at_finish)
    finish_reads([where for _, where in at_finish], probe.calls, len(cfgs))  # sparsity, final metrics, predictions


def test_save_model_writes_the_lone_runs_weights(tmp_path):
    variants = [["reg=l2", "save_model=true"], ["reg=dropout", "reg.batchnorm=true", "save_model=true"]]
    alone_and_stacked(tmp_path, ["reg.batchnorm=true", "trainer.patience=2"], variants)
    for i in range(2):
        a = torch.load(tmp_path / f"alone{i}" / "model.pt", weights_only=True)
        s = torch.load(tmp_path / f"stacked{i}" / "model.pt", weights_only=True)
        assert a.keys() == s.keys() and all(torch.equal(a[k], s[k]) for k in a)


def test_with_two_threads_a_stack_agrees_within_tolerance(tmp_path):
    torch.set_num_threads(2)  # the autouse fixture restores the thread count
    variants = [["reg=none"], ["reg=l2", "reg.alpha=1e-2"], ["reg=dropout"], ["reg=l1", "optim.lr=3e-3"]]
    alone, stacked = alone_and_stacked(tmp_path, ["trainer.patience=null", "trainer.max_epochs=5"], variants)
    for a, s in zip(alone, stacked):
        for key in ("train_loss", "val_loss", "test_loss"):
            assert s["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-3, abs=1e-4)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert abs(s["metrics"][key] - a["metrics"][key]) <= 0.01
        assert s["sparsity"] == pytest.approx(a["sparsity"], abs=0.01)


def test_only_jobs_with_one_structure_share_a_stack():
    key = lambda *o: grouping.stack_key(make_cfg(*o))  # noqa: E731
    base = key("reg=l2")
    assert base is not None
    # members may differ in these
    for o in (["reg=l1", "reg.alpha=0.1"], ["reg=weight_decay"], ["reg=dropout"], ["optim.lr=0.1"],
              ["reg=label_smoothing"], ["reg=l1", "reg.l1_proximal=false"],
              ["seed=3", "dataset.split_seed=0"], ["trainer.num_threads=1", "save_model=true"]):
        assert key(*o) == base, o
    # and not in these (a seed alone changes the data split, dataset.split_seed=${seed})
    for o in (["seed=3"], ["trainer.batch_size=32"], ["model.hidden_sizes=[8]"], ["reg=batchnorm"],
              ["optim=sgd"], ["trainer.patience=3"], ["dataset=wine"], ["reg=augment"], ["model=cnn"]):
        assert key(*o) not in (base, None), o
    assert key("model=cnn", "reg=l1") == key("model=cnn", "reg=l2", "reg.dropout=0.3")  # conv nets stack too
    # mixing on or off is shared by a stack (soft targets for all or none); its alphas are not
    assert key("reg=mixup") != base and key("reg=mixup") == key("reg=cutmix", "reg.mix_prob=0.5")


def test_a_stack_refuses_what_the_dataset_cannot_do_like_a_lone_run(tmp_path):
    cfgs = [make_cfg(*SMALL, "dataset=diabetes", "dataset.train_size=200", "reg=label_smoothing", f"reg.alpha={a}")
            for a in (0, 1e-3)]
    with pytest.raises(UserInputError, match="label_smoothing applies to classification"):
        stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], Console(quiet=True))


def _runs(sweep: Path) -> dict[str, dict[str, str]]:
    with open(sweep / "runs.csv", newline="") as f:
        return {Path(r["folder"]).name: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_stacked_launcher_gives_the_basic_launchers_sweep(tmp_path):
    """End to end: one sweep with both launchers; the mlp and the cnn jobs make two stacks; a
    rerun skips everything."""
    common = ["trainer.num_threads=1", "trainer.max_epochs=4", "dataset.train_size=200", "model.hidden_sizes=[16]",
              "model.channels=[4]", "reg=l2", "reg.alpha=1e-4,1e-2", "model=mlp,cnn", "optim.lr=1e-3,1e-2"]
    basic = regbench("run", "-m", *common, "hydra.sweep.dir=basic", cwd=tmp_path)
    stacked = regbench("run", "-m", "hydra/launcher=stacked", *common, "hydra.sweep.dir=stacked", cwd=tmp_path)
    for out in (basic, stacked):
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "sweep done: 8 ok" in out.stdout
    assert "stacked: jobs 0-1,4-5 train as one model (4 members)" in stacked.stdout
    assert "stacked: jobs 2-3,6-7 train as one model (4 members)" in stacked.stdout
    assert stacked.stdout.count("[stacked]") == 8
    a, s = _runs(tmp_path / "basic"), _runs(tmp_path / "stacked")
    assert sorted(a) == sorted(s) == [str(n) for n in range(8)]
    for job in a:
        mlp = s[job]["params.model.name"] == "mlp"
        for col in ("val_loss", "val_acc", "test_loss", "test_acc", "train_loss", "best_epoch", "epochs_run", "config_hash"):
            if mlp or col in ("epochs_run", "config_hash"):  # bit for bit on one thread
                assert s[job][col] == a[job][col], (job, col)
            elif col.endswith("_acc"):  # a grouped convolution sums in another order: the tolerance docs/how-to/launchers.md states
                assert abs(float(s[job][col]) - float(a[job][col])) <= 0.01, (job, col)
            else:
                assert float(s[job][col]) == pytest.approx(float(a[job][col]), rel=1e-3, abs=2e-3), (job, col)
        assert (tmp_path / "stacked" / job / ".hydra" / "overrides.yaml").is_file()
        assert s[job]["stack_size"] == "4"
    reports = [pd.read_csv(tmp_path / d / "report.csv") for d in ("basic", "stacked")]
    model = next(c for c in reports[0].columns if c in ("model", "model.name"))
    kept = [r[[c for c in r.columns if "seconds" not in c]] for r in reports]
    mlp = [r[r[model] == "mlp"].reset_index(drop=True) for r in kept]
    cnn = [r[r[model] == "cnn"].reset_index(drop=True) for r in kept]
    assert len(mlp[0]) == len(cnn[0]) == 4
    pd.testing.assert_frame_equal(*mlp, check_exact=True)  # bit for bit on one thread
    pd.testing.assert_frame_equal(*cnn, check_exact=False, rtol=1e-3, atol=2e-3)  # the grouped convolution's tolerance
    again = regbench("run", "-m", "hydra/launcher=stacked", *common, "hydra.sweep.dir=stacked", cwd=tmp_path)
    assert again.returncode == 0 and "8 skipped as already done" in again.stdout and "stacked: jobs" not in again.stdout


def _sweep_configs(tmp_path: Path, *alphas: float, extra: tuple[str, ...] = ()) -> list:
    """Per-job configs as the launcher receives them (with the hydra node, job numbers set)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from regbench.cli.app import config_dir

    jobs = []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for i, alpha in enumerate(alphas):
            cfg = compose(config_name="config", return_hydra_config=True,
                          overrides=["device=cpu", *SMALL, "trainer.max_epochs=3", "reg=l2", f"reg.alpha={alpha}",
                                     f"hydra.sweep.dir={tmp_path}", *extra])
            with open_dict(cfg):
                cfg.hydra.job.num = cfg.hydra.job.id = i
            jobs.append(cfg)
    return jobs


def test_the_launcher_splits_groups_by_max_stack_and_runs_a_lone_leftover_alone(tmp_path):
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _train_stacks

    results = _train_stacks(_sweep_configs(tmp_path, 1e-4, 1e-3, 1e-2), max_stack=2)
    assert sorted(results) == [0, 1] and all(r["stack_size"] == 2 for r in results.values())
    assert (tmp_path / "1" / "result.json").is_file() and not (tmp_path / "2").exists()


def test_hydra_values_of_stacked_jobs_resolve_with_each_jobs_own_hydra_config(tmp_path):
    """All jobs are composed before the stack trains: `${hydra:job.num}` must still give each
    job its own number, not the last job's."""
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _train_stacks

    jobs = _sweep_configs(tmp_path, 1e-4, 1e-3, 1e-2, extra=("seed=${hydra:job.num}", "dataset.split_seed=0"))
    results = _train_stacks(jobs, max_stack=64)
    assert sorted(results) == [0, 1, 2] and all(r["stack_size"] == 3 for r in results.values())
    assert [results[n]["params"]["seed"] for n in range(3)] == [0, 1, 2]
    for n in range(3):
        assert json.loads((tmp_path / str(n) / "result.json").read_text())["params"]["seed"] == n


def test_a_failing_stack_hands_its_unfinished_jobs_back_to_run_alone(tmp_path, monkeypatch, caplog):
    import logging

    from hydra_plugins.regbench_stacked_launcher import stacked_launcher
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _train_stacks

    # What an earlier in-process test in the same worker left in the logging system (a logger
    # disabled or cut off from the root by a logging config, a global logging.disable) must not
    # hide the warning from caplog's handler on the root logger: 1 in 2 runs of the fast loop did.
    logger = logging.getLogger(stacked_launcher.__name__)
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    caplog.set_level(logging.WARNING, logger=logger.name)
    finished = {"status": "ok"}

    def fails_after_one(jobs, console, done, on_done, search=()):
        done[0] = finished
        on_done(0, {**finished, "task": "classification", "reg": "l2", "seed": 0, "error": None,
                    "metrics": {"val_acc": 0.9, "test_acc": 0.9}, "gap": {"acc": 0.0}, "epochs_run": 3})
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(stacking, "train", fails_after_one)
    results = _train_stacks(_sweep_configs(tmp_path, 1e-4, 1e-3, 1e-2), max_stack=64)
    assert results == {0: finished}  # jobs 1 and 2 are left to the task function: they run alone
    assert "failed (RuntimeError: CUDA out of memory); its 2 unfinished jobs run one by one" in caplog.text


@pytest.mark.slow
def test_a_bad_max_stack_is_refused_in_one_line_before_anything_runs(tmp_path):
    out = regbench("run", "-m", "hydra/launcher=stacked", "hydra.launcher.max_stack=0", "reg=l2", "reg.alpha=1e-3,1e-2",
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["regbench: error: hydra.launcher.max_stack must be at least 1 (got 0)",
                                       "regbench: nothing was run"]
    assert not (tmp_path / "sweep").exists()


RESUMABLE = ["trainer.checkpoint_seconds=0", "trainer.patience=3", "dataset.split_seed=0"]
# With batch norm these stop after 5, 8, 12, 12 and 12 epochs.
RESUMABLE_VARIANTS = [["reg=l2", "optim.lr=1e-1"], ["reg=l2", "optim.lr=3e-2"], ["reg=l1", "reg.alpha=1e-3"],
                      ["reg=dropout", "reg.batchnorm=true"], ["reg=elasticnet", "seed=1", "reg.batchnorm=true"]]


def test_an_interrupted_stack_resumes_where_it_stopped_and_ends_bit_for_bit(tmp_path, monkeypatch):
    cfgs = [make_cfg(*SMALL, "reg.batchnorm=true", *RESUMABLE, *v) for v in RESUMABLE_VARIANTS]
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    stop = 6
    assert min(r["epochs_run"] for r in whole) < stop < max(r["epochs_run"] for r in whole)  # some finish first
    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    interrupt_stack_after(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    _resume_and_compare(tmp_path, jobs, whole, stop)


def _resume_and_compare(tmp_path: Path, jobs: list, whole: list[dict], stop: int) -> None:
    """Does what the launcher does again (the finished jobs are skipped, the others stack
    again) and checks every job against the stack never interrupted, `whole`, bit for bit."""
    unfinished = [i for i, (_, out) in enumerate(jobs) if not (out / "result.json").exists()]
    assert 0 < len(unfinished) < len(jobs)
    assert all((jobs[i][1] / stacking.STACK_CHECKPOINT).is_file() for i in unfinished)
    resumed = stacking.train([jobs[i] for i in unfinished], Console(quiet=True))
    assert [r["resumed_from_epoch"] for r in resumed] == [stop] * len(unfinished)
    for i, w in enumerate(whole):
        cut = json.loads((tmp_path / f"cut{i}" / "result.json").read_text())
        assert {k: cut[k] for k in SAME} == {k: w[k] for k in SAME}, RESUMABLE_VARIANTS[i]
        assert metrics_rows(tmp_path / f"cut{i}") == metrics_rows(tmp_path / f"whole{i}"), RESUMABLE_VARIANTS[i]
        assert not list((tmp_path / f"cut{i}").glob("stack*.pt"))


def test_ctrl_c_checkpoints_the_stack_at_the_end_of_its_epoch(tmp_path, monkeypatch, ctrl_c_raises):
    """With the default 30 s budget the stack holds no checkpoint yet; Ctrl-C during epoch 6
    ends that epoch, checkpoints every live member and stops; the rerun ends bit for bit."""
    cfgs = [make_cfg(*SMALL, "reg.batchnorm=true", "trainer.patience=3", "dataset.split_seed=0", *v)
            for v in RESUMABLE_VARIANTS]  # RESUMABLE without its checkpoint after every epoch
    assert len({grouping.stack_key(c) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    stop = 6
    assert min(r["epochs_run"] for r in whole) < stop < max(r["epochs_run"] for r in whole)  # some finish first
    real, calls = steps.train_epoch, []

    def ctrl_c_in_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    monkeypatch.setattr(steps, "train_epoch", ctrl_c_in_epoch)
    with pytest.raises(Interrupted, match=f"after epoch {stop} of a stack"):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    _resume_and_compare(tmp_path, jobs, whole, stop)


@pytest.mark.parametrize("damaged", [[stacking.STACK_CHECKPOINT], [stacking.STACK_CHECKPOINT, stacking.STACK_PREVIOUS]],
                         ids=["latest", "both"])
def test_a_damaged_stack_checkpoint_falls_back_to_the_one_before_or_starts_afresh(tmp_path, monkeypatch, damaged):
    cfgs = [make_cfg(*SMALL, *RESUMABLE, *v) for v in RESUMABLE_VARIANTS[:2]]
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    interrupt_stack_after(monkeypatch, 3)  # checkpoints of epochs 3 (latest) and 2 (previous) are kept
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    for name in damaged:
        (jobs[1][1] / name).write_bytes(b"not a checkpoint")
    console = Console(record=True, width=300)
    again = stacking.train(jobs, console)
    said = console.export_text()
    assert f"{jobs[1][1] / damaged[0]} is unreadable" in said
    if len(damaged) == 1:
        assert "resuming the stack from the checkpoint of epoch 2" in said
        assert [a["resumed_from_epoch"] for a in again] == [2, 2]
    else:
        assert "the stack starts afresh" in said and [a["resumed_from_epoch"] for a in again] == [None, None]
    for w, a in zip(whole, again):
        assert {k: a[k] for k in SAME} == {k: w[k] for k in SAME}


@pytest.mark.slow
def test_a_killed_stacked_sweep_resumes_to_the_same_report(tmp_path):
    from tests.helpers.interrupt import RESUMABLE as LONG
    from tests.helpers.cli import start
    from tests.helpers.interrupt import kill_when
    from tests.helpers.rundirs import epochs_in

    sweep_args = ["run", "-m", "hydra/launcher=stacked", "trainer.num_threads=1", "reg=l1,l2", "optim.lr=1e-3,3e-3",
                  *LONG[1:]]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start([*sweep_args, f"hydra.sweep.dir={killed}"], tmp_path)
    kill_when(proc, lambda: epochs_in(killed / "0" / "metrics.csv") >= 4 and (killed / "0" / stacking.STACK_CHECKPOINT).exists())
    assert not (killed / "0" / "result.json").exists()
    again = regbench(*sweep_args, f"hydra.sweep.dir={killed}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the stack from the checkpoint of epoch" in again.stdout
    resumed = pd.read_csv(killed / "runs.csv")["resumed_from_epoch"].dropna()
    # killed after the 4th row of metrics.csv, perhaps before the 4th checkpoint
    assert len(resumed) >= 1 and (resumed >= 3).all() and f"{len(resumed)} resumed, 0 ran" in again.stdout
    assert regbench(*sweep_args, f"hydra.sweep.dir={clean}", cwd=tmp_path).returncode == 0
    timing = [c for c in pd.read_csv(clean / "report.csv").columns if c.startswith("seconds.")]
    a, b = (pd.read_csv(d / "report.csv").drop(columns=timing) for d in (killed, clean))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not list(killed.glob("*/stack*.pt"))
