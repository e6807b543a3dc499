"""Stacked sweeps (regbench.stacking and hydra/launcher=stacked): every member of a stack
must end exactly where the same job run alone ends.

With one torch thread (the suite's default) the arithmetic is the same, so the comparison is
bit for bit: every metrics.csv row (except its wall-clock `seconds`) and every number of
result.json. With several threads the kernels split a stacked product differently from a
lone one and the last bits differ; `test_with_two_threads_a_stack_agrees_within_tolerance`
checks the tolerance the README states.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console

from regbench import UserInputError, stacking
from regbench.runner import run
from tests.conftest import make_cfg, regbench

SMALL = ["dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=12"]
# What must match between a member and its lone run (seconds and stack_size may not).
SAME = ("status", "metrics", "gap", "best_epoch", "epochs_run", "stopped_early", "sparsity", "n_params",
        "config_hash", "params", "reg", "seed")


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _alone_and_stacked(tmp_path: Path, common: list[str], variants: list[list[str]]):
    cfgs = [make_cfg(*SMALL, *common, *v) for v in variants]
    assert len({stacking.stack_key(c) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    alone = [run(c, tmp_path / f"alone{i}", quiet) for i, c in enumerate(cfgs)]
    stacked = stacking.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], quiet)
    return alone, stacked


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
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_member_of_a_stack_ends_bit_for_bit_where_its_lone_run_ends(tmp_path, family):
    common, variants = FAMILIES[family]
    alone, stacked = _alone_and_stacked(tmp_path, common, variants)
    for i, (a, s) in enumerate(zip(alone, stacked)):
        assert a["status"] == "ok", a.get("error")
        assert {k: s[k] for k in SAME} == {k: a[k] for k in SAME}, (family, variants[i])
        assert _rows(tmp_path / f"stacked{i}") == _rows(tmp_path / f"alone{i}"), (family, variants[i])
        written = json.loads((tmp_path / f"stacked{i}" / "result.json").read_text())
        assert written["stack_size"] == len(variants) and written["metrics"] == a["metrics"]


def test_members_stop_at_their_own_epochs_and_a_diverged_one_leaves_the_others_alone(tmp_path):
    variants = [["optim.lr=1e20"], ["optim.lr=1e-2"], ["optim.lr=5e-2"], ["optim.lr=3e-3"]]
    alone, stacked = _alone_and_stacked(tmp_path, ["optim=sgd", "trainer.patience=2", "trainer.max_epochs=40"], variants)
    assert [s["status"] for s in stacked] == ["diverged", "ok", "ok", "ok"]
    assert len({s["epochs_run"] for s in stacked}) >= 3  # members really left the stack at different epochs
    for i, (a, s) in enumerate(zip(alone, stacked)):
        assert {k: s[k] for k in SAME} == {k: a[k] for k in SAME}, variants[i]
        assert _rows(tmp_path / f"stacked{i}") == _rows(tmp_path / f"alone{i}")


def test_save_model_writes_the_lone_runs_weights(tmp_path):
    variants = [["reg=l2", "save_model=true"], ["reg=dropout", "reg.batchnorm=true", "save_model=true"]]
    _alone_and_stacked(tmp_path, ["reg.batchnorm=true", "trainer.patience=2"], variants)
    for i in range(2):
        a = torch.load(tmp_path / f"alone{i}" / "model.pt", weights_only=True)
        s = torch.load(tmp_path / f"stacked{i}" / "model.pt", weights_only=True)
        assert a.keys() == s.keys() and all(torch.equal(a[k], s[k]) for k in a)


def test_with_two_threads_a_stack_agrees_within_tolerance(tmp_path):
    torch.set_num_threads(2)  # the autouse fixture restores the thread count
    variants = [["reg=none"], ["reg=l2", "reg.alpha=1e-2"], ["reg=dropout"], ["reg=l1", "optim.lr=3e-3"]]
    alone, stacked = _alone_and_stacked(tmp_path, ["trainer.patience=null", "trainer.max_epochs=5"], variants)
    for a, s in zip(alone, stacked):
        for key in ("train_loss", "val_loss", "test_loss"):
            assert s["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-3, abs=1e-4)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert abs(s["metrics"][key] - a["metrics"][key]) <= 0.01
        assert s["sparsity"] == pytest.approx(a["sparsity"], abs=0.01)


def test_only_jobs_with_one_structure_share_a_stack():
    key = lambda *o: stacking.stack_key(make_cfg(*o))  # noqa: E731
    base = key("reg=l2")
    assert base is not None
    # members may differ in these
    for o in (["reg=l1", "reg.alpha=0.1"], ["reg=weight_decay"], ["reg=dropout"], ["optim.lr=0.1"],
              ["seed=3", "dataset.split_seed=0"], ["trainer.num_threads=1", "save_model=true"]):
        assert key(*o) == base, o
    # and not in these (a seed alone changes the data split, dataset.split_seed=${seed})
    for o in (["seed=3"], ["trainer.batch_size=32"], ["model.hidden_sizes=[8]"], ["reg=batchnorm"],
              ["optim=sgd"], ["trainer.patience=3"], ["dataset=wine"], ["reg=label_smoothing"]):
        assert key(*o) != base, o
    assert key("model=cnn") is None and key("reg=augment") is None


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
    """End to end: one sweep with both launchers; a cnn job runs alone; a rerun skips everything."""
    common = ["trainer.num_threads=1", "trainer.max_epochs=4", "dataset.train_size=200", "model.hidden_sizes=[16]",
              "model.channels=[4]", "reg=l2", "reg.alpha=1e-4,1e-2", "model=mlp,cnn", "optim.lr=1e-3,1e-2"]
    basic = regbench("run", "-m", *common, "hydra.sweep.dir=basic", cwd=tmp_path)
    stacked = regbench("run", "-m", "hydra/launcher=stacked", *common, "hydra.sweep.dir=stacked", cwd=tmp_path)
    for out in (basic, stacked):
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "sweep done: 8 ok" in out.stdout
    assert "stacked: jobs 0-1,4-5 train as one model (4 members)" in stacked.stdout
    assert stacked.stdout.count("[stacked]") == 4
    a, s = _runs(tmp_path / "basic"), _runs(tmp_path / "stacked")
    assert sorted(a) == sorted(s) == [str(n) for n in range(8)]
    for job in a:
        for col in ("val_loss", "val_acc", "test_loss", "test_acc", "train_loss", "best_epoch", "epochs_run", "config_hash"):
            assert s[job][col] == a[job][col], (job, col)
        assert (tmp_path / "stacked" / job / ".hydra" / "overrides.yaml").is_file()
        assert s[job]["stack_size"] == ("4.0" if s[job]["params.model.name"] == "mlp" else "")
    reports = [pd.read_csv(tmp_path / d / "report.csv") for d in ("basic", "stacked")]
    pd.testing.assert_frame_equal(*(r[[c for c in r.columns if "seconds" not in c]] for r in reports))
    again = regbench("run", "-m", "hydra/launcher=stacked", *common, "hydra.sweep.dir=stacked", cwd=tmp_path)
    assert again.returncode == 0 and "8 skipped as already done" in again.stdout and "stacked: jobs" not in again.stdout


def _sweep_configs(tmp_path: Path, *alphas: float) -> list:
    """Per-job configs as the launcher receives them (with the hydra node, job numbers set)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from regbench.app import config_dir

    jobs = []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for i, alpha in enumerate(alphas):
            cfg = compose(config_name="config", return_hydra_config=True,
                          overrides=["device=cpu", *SMALL, "trainer.max_epochs=3", "reg=l2", f"reg.alpha={alpha}",
                                     f"hydra.sweep.dir={tmp_path}"])
            with open_dict(cfg):
                cfg.hydra.job.num = cfg.hydra.job.id = i
            jobs.append(cfg)
    return jobs


def test_the_launcher_splits_groups_by_max_stack_and_runs_a_lone_leftover_alone(tmp_path):
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _train_stacks

    results = _train_stacks(_sweep_configs(tmp_path, 1e-4, 1e-3, 1e-2), max_stack=2)
    assert sorted(results) == [0, 1] and all(r["stack_size"] == 2 for r in results.values())
    assert (tmp_path / "1" / "result.json").is_file() and not (tmp_path / "2").exists()


def test_a_failing_stack_hands_its_unfinished_jobs_back_to_run_alone(tmp_path, monkeypatch, caplog):
    from hydra_plugins.regbench_stacked_launcher.stacked_launcher import _train_stacks

    finished = {"status": "ok"}

    def fails_after_one(jobs, console, done):
        done[0] = finished
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
