"""search.seeds (regbench.cli.app.trial): a sweeper's trial scored by the mean validation loss of
several paired seeds, each seed's run in its own folder; stacked where the seeds share a split."""

from __future__ import annotations

import ast
import json
import math
import re

import pytest
from omegaconf import OmegaConf

from regbench.config.checks import check
from regbench.engine import grouping
from tests.helpers.cli import regbench
from tests.helpers.configs import make_cfg
from tests.helpers.rundirs import csv_rows

pytestmark = pytest.mark.slow
SMALL = ["trainer.max_epochs=3", "dataset.train_size=200", "model.hidden_sizes=[16]"]


def test_bad_seed_counts_are_refused_and_a_trial_with_seeds_runs_them_itself():
    assert check(make_cfg("search.seeds=0")) == ["search.seeds must be >= 1 (got 0)"]
    assert grouping.why_alone(make_cfg("search.seeds=3")) == (
        "search.seeds=3: each trial trains its seeds itself (as one stack where they share a split)")
    # how a trial is scored changes no run: the hash of a seed's run is that of the same run without it
    assert grouping.stack_key(make_cfg("search.seeds=1")) == grouping.stack_key(make_cfg())


def test_each_trial_runs_the_same_seeds_and_returns_their_mean(tmp_path):
    out = regbench("run", "-m", "search.seeds=3", "reg=l1,l2", *SMALL, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train one by one (their splits differ" in out.stdout
    trial_text = {}
    for job in ("0", "1"):
        trial_text[job] = (tmp_path / "sw" / job / "trial.json").read_text()
        trial = json.loads(trial_text[job])
        assert trial["seeds"] == [0, 1, 2]  # paired across trials
        results = [json.loads((tmp_path / "sw" / job / f"seed_{s}" / "result.json").read_text()) for s in (0, 1, 2)]
        assert [r["seed"] for r in results] == [0, 1, 2] and len({r["params"]["dataset.split_seed"] for r in results}) == 3
        assert trial["values"] == [r["metrics"]["val_loss"] for r in results]
        assert trial["mean"] == pytest.approx(sum(trial["values"]) / 3, rel=1e-15)
        assert f"[job {job}] mean val_loss over seeds 0-2: {trial['mean']:.6g}" in out.stdout
    runs = csv_rows(tmp_path / "sw" / "runs.csv")  # the six seed runs, the trial folders not taken for runs
    assert len(runs) == 6 and "(0 skipped as already done, 0 resumed, 6 ran)" in out.stdout
    # a rerun finds every seed done and returns the same means
    again = regbench("run", "-m", "search.seeds=3", "reg=l1,l2", *SMALL, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert again.returncode == 0 and "(6 skipped as already done, 0 resumed, 0 ran)" in again.stdout, again.stdout[-2000:]
    assert [json.loads((tmp_path / "sw" / j / "trial.json").read_text())["mean"] for j in ("0", "1")] == [
        json.loads(t)["mean"] for t in (trial_text["0"], trial_text["1"])]


def test_with_a_shared_split_a_trials_seeds_train_as_one_stack_equal_to_their_lone_runs(tmp_path):
    # one torch thread: bit for bit is the promise there (docs/how-to/launchers.md); with two, this machine's
    # (AMD EPYC) final forward differs in the last bits between the stack and the lone run, which the float64
    # calibration metrics show while the float32 losses round them away
    args = ["search.seeds=3", "dataset.split_seed=0", "reg=l2", "trainer.num_threads=1", *SMALL]
    out = regbench("run", "-m", "hydra/launcher=stacked", *args, "hydra.sweep.dir=stacked", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run alone: search.seeds=3: each trial trains its seeds itself" in out.stdout
    assert "[job 0] search.seeds: seeds 0, 1, 2 train as one model" in out.stdout
    for s in (0, 1, 2):
        lone = regbench("run", f"seed={s}", "dataset.split_seed=0", "reg=l2", "trainer.num_threads=1", *SMALL,
                        f"hydra.run.dir=lone{s}", cwd=tmp_path)
        assert lone.returncode == 0
        a = json.loads((tmp_path / f"lone{s}" / "result.json").read_text())
        b = json.loads((tmp_path / "stacked" / "0" / f"seed_{s}" / "result.json").read_text())
        assert a["metrics"] == b["metrics"] and a["config_hash"] == b["config_hash"]


def test_an_optuna_study_minimises_the_trials_mean_over_seeds(tmp_path):
    pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')
    out = regbench("run", "-m", "+search=elasticnet", "hydra.sweeper.n_trials=3", "search.seeds=2", *SMALL,
                   "hydra.sweep.dir=study", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    means = [json.loads((tmp_path / "study" / str(j) / "trial.json").read_text())["mean"] for j in range(3)]
    best = OmegaConf.load(tmp_path / "study" / "optimization_results.yaml")
    assert math.isclose(best.best_value, min(means), rel_tol=1e-12)
    printed = ast.literal_eval(re.search(r"Best parameters: (\{.*\})", out.stdout).group(1))
    assert printed == OmegaConf.to_container(best.best_params)
    assert len(csv_rows(tmp_path / "study" / "runs.csv")) == 6


@pytest.mark.parametrize("split", ["dataset.split_seed=0", "dataset.split_seed=${seed}"])
def test_a_seed_whose_folder_another_process_holds_fails_the_trial_and_the_others_run(tmp_path, monkeypatch, split):
    """One seed's folder busy (another process trains there): that seed is skipped in one line,
    the other seeds run (stacked or one by one), and the trial returns None, the sweeper's FAIL."""
    import io

    from rich.console import Console

    from regbench.cli.app import trial
    from tests.helpers.cli import hold_in_another_process

    monkeypatch.setattr("regbench.cli.app.config_search_dirs", lambda: ())
    cfg = make_cfg("search.seeds=3", split, *SMALL)
    holder = hold_in_another_process(tmp_path / "trial" / "seed_1")
    try:
        out = io.StringIO()
        assert trial(cfg, tmp_path / "trial", Console(file=out, width=300), "job 0") is None
    finally:
        holder.kill()
    printed = out.getvalue()
    assert "[job 0 seed 1] skipped:" in printed and "the trial counts as failed" in printed
    record = json.loads((tmp_path / "trial" / "trial.json").read_text())
    assert record["values"][1] is None and None not in (record["values"][0], record["values"][2])
    assert all((tmp_path / "trial" / f"seed_{s}" / "result.json").is_file() for s in (0, 2))
