"""regbench's Optuna sweeper (hydra_plugins.regbench_optuna_sweeper), checked against Optuna itself:
the same sampler and seed ask the same trials as a plain ask-and-tell loop told the same values;
trials of a batch train as stacks equal to their lone runs; WilcoxonPruner stops a trial worse on
paired seeds and its finished runs stay; a killed study resumes to the trials of an uninterrupted one;
each regularizer gets the same budget under +search=each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from tests.helpers.cli import regbench, start  # noqa: E402
from tests.helpers.rundirs import csv_rows  # noqa: E402

SMALL = ["trainer.max_epochs=3", "dataset.train_size=200", "model.hidden_sizes=[16]"]


def _study(sweep: Path, name: str) -> optuna.study.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


def _val_loss(folder: Path) -> float:
    return json.loads((folder / "result.json").read_text())["metrics"]["val_loss"]


def test_the_search_space_syntax_is_hydras_optuna_sweepers():
    from hydra_plugins.regbench_optuna_sweeper.sweeper import parse_space

    space, fixed = parse_space([
        "reg.alpha=tag(log, interval(1e-6, 1e-1))", "reg.l1_ratio=interval(0.0, 1.0)", "model.depth=int(interval(1, 4))",
        "optim.name=choice(adam, sgd)", "trainer.batch_size=range(16, 80, 32)", "reg.dropout=0.1",
        "optim.lr=tag(log, interval(1, 100))"])
    assert space == {
        "reg.alpha": FloatDistribution(1e-6, 1e-1, log=True), "reg.l1_ratio": FloatDistribution(0.0, 1.0),
        "model.depth": IntDistribution(1, 4), "optim.name": CategoricalDistribution(["adam", "sgd"]),
        "trainer.batch_size": IntDistribution(16, 48, step=32),  # Hydra's range excludes its stop
        "optim.lr": FloatDistribution(1.0, 100.0, log=True)}  # interval() is a float range unless int()
    assert fixed == {"reg.dropout": "0.1"}
    with pytest.raises(ValueError, match=r"reg.alpha: a log interval must start above 0 \(got 0.0\)"):
        parse_space(["reg.alpha=tag(log, interval(0.0, 1.0))"])


def test_bad_input_is_one_line_before_anything_runs(tmp_path):
    out = regbench("run", "-m", "+search=elasticnet", "seed=0,1", *SMALL, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("regbench: error: seed=0,1: a search's trials share")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = regbench("run", "-m", "+search=elasticnet", "reg.alpha=tag(log, interval(0.0, 1.0))",
                   *SMALL, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == (
        "regbench: error: search space: reg.alpha: a log interval must start above 0 (got 0.0)")
    # both ends of every range (and every choice) are checked as a basic sweep's jobs are
    out = regbench("run", "-m", "+search=elasticnet", "reg.l1_ratio=interval(0.0, 2.0)",
                   *SMALL, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == "regbench: error: reg.l1_ratio must be in [0, 1] (got 2.0)"
    out = regbench("run", "-m", "+search=elasticnet", "optim.name=choice(adam,sgd,lbfgs)", *SMALL,
                   "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 2 and "lbfgs" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "sw").exists() or not list((tmp_path / "sw").glob("*/result.json"))


@pytest.mark.slow
def test_the_sweeper_asks_what_a_plain_optuna_loop_asks_and_a_batch_trains_as_its_lone_runs(tmp_path):
    """6 trials, 3 at a time, TPE modelling from the second batch on: the sweeper's trials are
    those of Optuna's own ask/tell loop (same sampler, same seed, told the same values), and
    each stacked trial's run equals the same configuration run alone, bit for bit."""
    # one torch thread, where bit for bit is the promise (on an AMD EPYC, with two, a stack's final forward
    # differs from the lone run's in the last bits, which the float64 calibration metrics show)
    args = ["+search=elasticnet", "hydra.sweeper.n_trials=6", "hydra.sweeper.batch=3", "hydra.sweeper.sampler.n_startup_trials=3",
            "hydra/launcher=stacked", "trainer.num_threads=1", *SMALL]
    out = regbench("run", "-m", *args, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("train as one model (3 members)") == 2, out.stdout[-3000:]
    sweep = tmp_path / "sw"
    values = [_val_loss(sweep / str(n)) for n in range(6)]
    # the oracle: Optuna's ask-and-tell loop, in batches of 3, told the values the runs gave
    space = {"reg.alpha": FloatDistribution(1e-6, 1e-1, log=True), "reg.l1_ratio": FloatDistribution(0.0, 1.0)}
    plain = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    asked = []
    for start in (0, 3):
        batch = [plain.ask(space) for _ in range(3)]
        for i, t in enumerate(batch):
            plain.tell(t, values[start + i])
        asked += [t.params for t in batch]
    study = _study(sweep, "regbench_elasticnet")
    assert [t.params for t in study.trials] == asked
    assert [t.value for t in study.trials] == values
    for n in (0, 4):  # a trial of each batch, alone
        p = study.trials[n].params
        lone = regbench("run", f"reg.alpha={p['reg.alpha']!r}", f"reg.l1_ratio={p['reg.l1_ratio']!r}", "reg=elasticnet",
                        "trainer.num_threads=1", *SMALL, f"hydra.run.dir=lone{n}", cwd=tmp_path)
        assert lone.returncode == 0, lone.stderr[-2000:]
        a = json.loads((tmp_path / f"lone{n}" / "result.json").read_text())
        b = json.loads((sweep / str(n) / "result.json").read_text())
        assert a["metrics"] == b["metrics"] and a["config_hash"] == b["config_hash"]
    search = json.loads((sweep / "search.json").read_text())
    assert search["studies"][0]["trials"] == 6 and search["studies"][0]["counted"] == 6 and search["batch"] == 3


@pytest.mark.slow
def test_wilcoxon_pruning_stops_a_trial_worse_on_paired_seeds_and_keeps_its_runs(tmp_path):
    """A good trial first, then a far too strong L1 penalty: on 5 paired seeds the pruner stops the
    second once 4 seeds are paired (one-sided signed-rank p = 1/16 < 0.1); its 4 runs stay."""
    out = regbench("run", "-m", "+search=elasticnet", "+search/prune=wilcoxon", "hydra.sweeper.n_trials=2", "search.seeds=5",
                   "hydra.sweeper.batch=1",
                   "hydra.sweeper.enqueue=[{reg.alpha: 1e-6, reg.l1_ratio: 0.5},{reg.alpha: 0.1, reg.l1_ratio: 1.0}]",
                   "trainer.max_epochs=5", "dataset.train_size=300", "model.hidden_sizes=[16]", "hydra/launcher=stacked",
                   "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "sw"
    assert "[trial 1] pruned after seeds 0-3 of 0-4" in out.stdout
    assert sorted(p.parent.name for p in (sweep / "1").glob("seed_*/result.json")) == [f"seed_{s}" for s in range(4)]
    assert len(list((sweep / "0").glob("seed_*/result.json"))) == 5
    study = _study(sweep, "regbench_elasticnet")
    good, bad = study.trials
    assert good.user_attrs["seeds"] == [0, 1, 2, 3, 4] and "pruned" not in good.user_attrs
    assert bad.user_attrs == {"pruned": True, "seeds": [0, 1, 2, 3]}
    bad_values = [_val_loss(sweep / "1" / f"seed_{s}") for s in range(4)]
    assert bad.intermediate_values == dict(enumerate(bad_values))
    assert bad.value == pytest.approx(sum(bad_values) / 4, rel=1e-15)  # Optuna's documented use: the mean so far
    # the pruner's own verdict on the same values (Optuna as the oracle)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    assert pruner.prune(study, bad) is True
    trial = json.loads((sweep / "1" / "trial.json").read_text())
    assert trial["state"] == "pruned" and trial["values"] == bad_values
    runs = csv_rows(sweep / "runs.csv")
    assert len(runs) == 9 and all(r["status"] == "ok" for r in runs)
    assert json.loads((sweep / "search.json").read_text())["studies"][0]["pruned"] == 1
    _dashboard_shows(sweep, bad_values)


@pytest.mark.slow
def test_across_datasets_every_trial_runs_every_instance_and_is_told_their_mean(tmp_path):
    """`hydra.sweeper.across=[dataset]`: one study whose every trial runs on both datasets at both
    paired seeds, in <trial>/<instance>/seed_<n>/; its value is the mean of the four runs'
    validation losses; the budget says so; a study of one dataset's runs still reads the sweep."""
    out = regbench("run", "-m", "dataset=wine,breast_cancer", "+search=elasticnet", "hydra.sweeper.across=[dataset]",
                   "hydra.sweeper.n_trials=3", "search.seeds=2", "trainer.max_epochs=3", "model.hidden_sizes=[16]",
                   "hydra/launcher=stacked", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ("1 study, 3 trials x 2 instances (dataset=wine, dataset=breast_cancer) x 2 paired seeds (0, 1)"
            in out.stdout), out.stdout[:2000]
    sweep = tmp_path / "sw"
    study = _study(sweep, "regbench_elasticnet")
    assert len(study.trials) == 3 and {t.state.name for t in study.trials} == {"COMPLETE"}
    units = [("wine", 0), ("breast_cancer", 0), ("wine", 1), ("breast_cancer", 1)]  # seed by seed
    for t in study.trials:
        runs = [sweep / str(t.number) / f"dataset={d}" / f"seed_{s}" for d, s in units]
        values = [_val_loss(r) for r in runs]
        assert t.intermediate_values == dict(enumerate(values))  # each run at its step, paired across trials
        assert t.value == pytest.approx(sum(values) / 4, rel=1e-15)
        assert t.user_attrs == {"seeds": [0, 0, 1, 1], "instances": [f"dataset={d}" for d, _ in units]}
        for r, (d, s) in zip(runs, units):
            params = json.loads((r / "result.json").read_text())
            assert params["params"]["dataset.name"] == d and params["seed"] == s
            assert params["params"]["reg.alpha"] == pytest.approx(t.params["reg.alpha"], rel=1e-12)
        trial = json.loads((sweep / str(t.number) / "trial.json").read_text())
        assert trial["values"] == values and trial["instances"] == t.user_attrs["instances"]
    search = json.loads((sweep / "search.json").read_text())
    assert search["studies"][0]["instances"] == ["dataset=wine", "dataset=breast_cancer"]
    report = regbench("report", "sw", cwd=tmp_path)
    assert "x 2 instances x 2 paired seeds each" in report.stdout, report.stdout[-3000:]


@pytest.mark.slow
def test_across_datasets_the_pruner_stops_a_worse_trial_between_datasets_and_keeps_its_runs(tmp_path):
    """Three datasets x 2 seeds are a trial's six paired runs (the pruner's steps): a far too strong
    L1 penalty after a good trial is stopped once 4 runs are paired (p = 1/16 < 0.1), before its
    remaining dataset and seed run, by the pruner's own verdict on the same values."""
    out = regbench("run", "-m", "dataset=wine,breast_cancer,digits", "+search=elasticnet", "+search/prune=wilcoxon",
                   "hydra.sweeper.across=[dataset]", "hydra.sweeper.n_trials=2", "search.seeds=2", "hydra.sweeper.batch=1",
                   "hydra.sweeper.enqueue=[{reg.alpha: 1e-6, reg.l1_ratio: 0.5},{reg.alpha: 0.1, reg.l1_ratio: 1.0}]",
                   "trainer.max_epochs=5", "model.hidden_sizes=[16]", "hydra/launcher=stacked", "hydra.sweep.dir=sw",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "sw"
    assert "[trial 1] pruned after 4 of 6 runs: worse than the best trial on the paired runs" in out.stdout
    order = [("wine", 0), ("breast_cancer", 0), ("digits", 0), ("wine", 1), ("breast_cancer", 1), ("digits", 1)]
    assert sorted(sweep.glob("0/*/seed_*/result.json")) == sorted(sweep / "0" / f"dataset={d}" / f"seed_{s}" / "result.json"
                                                                  for d, s in order)
    assert sorted(sweep.glob("1/*/seed_*/result.json")) == sorted(sweep / "1" / f"dataset={d}" / f"seed_{s}" / "result.json"
                                                                  for d, s in order[:4])
    good, bad = _study(sweep, "regbench_elasticnet").trials
    bad_values = [_val_loss(sweep / "1" / f"dataset={d}" / f"seed_{s}") for d, s in order[:4]]
    assert bad.intermediate_values == dict(enumerate(bad_values))
    assert bad.user_attrs["pruned"] is True and bad.user_attrs["seeds"] == [0, 0, 0, 1]
    assert bad.value == pytest.approx(sum(bad_values) / 4, rel=1e-15)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    assert pruner.prune(_study(sweep, "regbench_elasticnet"), bad) is True
    # the report keeps the pruned trial's runs as runs and leaves its configuration out of a study's candidates
    from regbench import budget

    runs = [p.parent for p in sorted(sweep.glob("*/*/seed_*/result.json"))]
    assert budget.pruned(runs) == [r.parts[-3] == "1" for r in runs]


def test_across_refusals_are_one_line_before_anything_runs(tmp_path):
    for extra, says in [(["hydra.sweeper.across=[dataset]"], "hydra.sweeper.across names dataset, which the command line"),
                        (["dataset=wine,digits", "hydra.sweeper.across=[seed]"], "seeds are every trial's already"),
                        (["dataset=wine,nosuch", "hydra.sweeper.across=[dataset]"], "Could not find 'dataset/nosuch'")]:
        out = regbench("run", "-m", "+search=elasticnet", *extra, "hydra.sweep.dir=sw", cwd=tmp_path)
        assert out.returncode == 2 and says in out.stderr, (extra, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "sw").exists()


def _dashboard_shows(sweep: Path, bad_values: list[float]) -> None:
    """optuna-dashboard, as the docs tell users to start it, serves the study: both trials, the
    pruned one's per-seed values and its `pruned` attribute."""
    import shutil
    import socket
    import urllib.request

    exe = shutil.which("optuna-dashboard")
    if exe is None:
        pytest.skip('optuna-dashboard is not installed (pip install -e ".[test]" brings it)')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, f"sqlite:///{sweep / 'optuna.db'}", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 30, None
        while studies is None and time.time() < deadline:
            try:
                studies = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read())
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "optuna-dashboard did not answer in 30 s"
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "regbench_elasticnet"
        detail = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?after=0", timeout=5).read())
        bad = detail["trials"][1]
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
        assert [v["value"] for v in bad["intermediate_values"]] == bad_values
        assert {a["key"]: a["value"] for a in bad["user_attrs"]}["pruned"] == "True"
    finally:
        server.kill()
        server.wait()


def _params(sweep: Path, name: str) -> list[tuple[int, dict, float | None, str]]:
    return [(t.number, t.params, t.value, t.state.name) for t in _study(sweep, name).trials]


@pytest.mark.slow
def test_a_killed_study_resumes_to_the_trials_of_an_uninterrupted_one(tmp_path):
    """SIGKILL during the second batch, then the same command: the study ends with the very trials,
    values and runs of one that was never interrupted (the sampler's random state was pickled after
    each batch's asks; the interrupted trials run again in their folders)."""
    args = ["+search=elasticnet", "hydra.sweeper.n_trials=6", "hydra.sweeper.batch=2", "hydra.sweeper.sampler.n_startup_trials=2",
            "search.seeds=2", "trainer.max_epochs=30", "dataset.train_size=300", "model.hidden_sizes=[16]",
            "hydra/launcher=stacked"]
    whole = regbench("run", "-m", *args, "hydra.sweep.dir=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    proc = start(["run", "-m", *args, "hydra.sweep.dir=killed"], tmp_path)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "2").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = tmp_path / "killed"
    assert (killed / "2").exists() and not (killed / "2" / "trial.json").exists()
    states = [t.state.name for t in _study(killed, "regbench_elasticnet").trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and states[2:] == ["RUNNING", "RUNNING"], states
    again = regbench("run", "-m", *args, "hydra.sweep.dir=killed", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "trials 2, 3 were interrupted; they run again" in again.stdout
    # job labels go on from the interrupted launch's (its batch began at job 4), as an uninterrupted study's
    assert "[job 4] " in again.stdout and "[job 0] " not in again.stdout, again.stdout[-3000:]
    assert _params(killed, "regbench_elasticnet") == _params(tmp_path / "whole", "regbench_elasticnet")
    for n in range(6):
        for s in (0, 1):
            assert _val_loss(killed / str(n) / f"seed_{s}") == _val_loss(tmp_path / "whole" / str(n) / f"seed_{s}")
    # once done, the same command runs nothing more
    third = regbench("run", "-m", *args, "hydra.sweep.dir=killed", cwd=tmp_path)
    assert third.returncode == 0 and len(_study(killed, "regbench_elasticnet").trials) == 6
    assert "(12 skipped as already done, 0 resumed, 0 ran)" in third.stdout, third.stdout[-2000:]


@pytest.mark.slow
def test_each_regularizer_gets_its_own_study_with_the_same_budget_and_the_study_states_it(tmp_path):
    from hydra import compose, initialize_config_dir

    from regbench.cli.app import config_dir
    from regbench.regularizers import search_space

    out = regbench("run", "-m", "reg=none,l2,dropout", "dataset=digits,wine", "+search=each", "hydra.sweeper.n_trials=3",
                   "search.seeds=2", "trainer.max_epochs=3", "dataset.train_size=100", "model.hidden_sizes=[16]",
                   "hydra/launcher=stacked", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "sw"
    search = json.loads((sweep / "search.json").read_text())
    studies = {s["key"]: s for s in search["studies"]}
    assert sorted(studies) == sorted(f"reg={r},dataset={d}" for r in ("none", "l2", "dropout") for d in ("digits", "wine"))
    for key, s in studies.items():
        reg = key.split(",")[0].removeprefix("reg=")
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"reg={reg}"])
        declared = search_space(cfg.reg, (), cfg.model)
        assert sorted(s["space"]) == sorted(declared), key  # the regularizer's own space, nothing else
        assert s["trials"] == s["counted"] == (1 if reg == "none" else 3) and s["seeds"] == [0, 1], key
        study = _study(sweep, f"regbench[{key}]")
        assert len(study.trials) == s["trials"] and all(t.state.name == "COMPLETE" for t in study.trials)
        for t in study.trials:  # every trial's seeds are runs in the study's own folder
            assert all((sweep / key / str(t.number) / f"seed_{i}" / "result.json").exists() for i in (0, 1))
    # each study has its own copy of the same seeded sampler: the same space asks the same first trials
    assert _study(sweep, "regbench[reg=l2,dataset=digits]").trials[0].params == \
        _study(sweep, "regbench[reg=l2,dataset=wine]").trials[0].params
    assert "each 1/3 trials x 2 paired seeds" in out.stdout
    study = regbench("study", "sw", cwd=tmp_path)
    assert study.returncode == 0, study.stderr[-2000:]
    assert "tuning budget (sw/search.json): 6 studies, 3 trials x 2 paired seeds each, TPESampler(seed=0), no pruner" in study.stdout
    assert "reg=l2,dataset=wine: 3 of 3 trials (0 pruned, 0 failed); best trial" in study.stdout
    assert "UNEQUAL" not in study.stdout
    report = regbench("report", "sw", cwd=tmp_path)
    assert report.returncode == 0 and "tuning budget (sw/search.json)" in report.stdout


def test_unequal_budgets_are_said_loudly(tmp_path):
    from regbench import budget

    studies = [{"key": "reg=l2", "space": {"reg.alpha": "x"}, "trials": 20, "seeds": [0, 1, 2], "counted": 20,
                "pruned": 2, "failed": 0, "running": 0, "best": {"trial": 3, "value": 0.5, "params": {"reg.alpha": 0.01}}},
               {"key": "reg=dropout", "space": {"reg.dropout": "x"}, "trials": 10, "seeds": [0, 1, 2], "counted": 7,
                "pruned": 0, "failed": 1, "running": 3, "best": None},
               {"key": "reg=none", "space": {}, "trials": 1, "seeds": [0, 1, 2], "counted": 1, "pruned": 0, "failed": 0,
                "running": 0, "best": None}]
    (tmp_path / "search.json").write_text(json.dumps({"studies": studies, "batch": 8, "sampler": {
        "_target_": "optuna.samplers.TPESampler", "seed": 0}, "pruner": None}))
    lines = budget.lines([tmp_path])
    assert lines[0].endswith("3 studies, 10/20 trials x 3 paired seeds each, TPESampler(seed=0), no pruner, 8 trials at a "
                             "time — UNEQUAL budgets: the comparison is not fair")
    assert lines[1:] == ["  reg=l2: 20 of 20 trials (2 pruned, 0 failed); best trial 3: mean val_loss 0.5 at reg.alpha=0.01",
                         "  reg=dropout: 7 of 10 trials (0 pruned, 1 failed), 3 unfinished",
                         "  reg=none: 1 of 1 trials (nothing to tune)"]


@pytest.mark.slow
def test_with_a_fixed_split_a_batch_with_its_seeds_is_one_stack_and_a_lost_study_is_told_from_its_runs(tmp_path):
    """dataset.split_seed=0: the batch's 2 trials x 3 seeds share a structure and train as one stack of 6.
    With the study kept in memory only, the same command again asks the same trials (same sampler seed),
    finds their runs done and tells Optuna their values from them: nothing trains twice."""
    args = ["+search=elasticnet", "hydra.sweeper.n_trials=4", "hydra.sweeper.batch=2", "search.seeds=3",
            "dataset.split_seed=0", "hydra.sweeper.storage=memory", "hydra/launcher=stacked", *SMALL, "hydra.sweep.dir=sw"]
    out = regbench("run", "-m", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("train as one model (6 members)") == 2, out.stdout[-3000:]
    assert not (tmp_path / "sw" / "optuna.db").exists() and not (tmp_path / "sw" / ".regbench").exists()
    first = [json.loads((tmp_path / "sw" / str(n) / "trial.json").read_text()) for n in range(4)]
    again = regbench("run", "-m", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(12 skipped as already done, 0 resumed, 0 ran)" in again.stdout, again.stdout[-2000:]
    assert [json.loads((tmp_path / "sw" / str(n) / "trial.json").read_text()) for n in range(4)] == first


def test_without_optuna_the_search_is_refused_in_regbenchs_words(monkeypatch):
    import importlib.util

    from omegaconf import OmegaConf

    from regbench.cli.callbacks import sweeper_problem

    sweeper = OmegaConf.create({"_target_": "hydra_plugins.regbench_optuna_sweeper.sweeper.RegbenchOptunaSweeper"})
    assert sweeper_problem(sweeper) is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    assert sweeper_problem(sweeper) == (
        'the Optuna sweeper (+search=..., hydra/sweeper=regbench_optuna) needs Optuna: pip install "regbench[search]"', 1)
    assert sweeper_problem(OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"})) is None


def test_the_search_file_is_the_one_report_and_study_read():
    from hydra_plugins.regbench_optuna_sweeper.sweeper import SEARCH_FILE

    from regbench import budget

    assert SEARCH_FILE == budget.FILE  # the plugin module imports no regbench module at its top (Hydra scans it)


def test_a_pruned_trials_seeds_are_told_apart_by_its_trial_json(tmp_path):
    from regbench import budget

    for trial, state in (("0", "complete"), ("1", "pruned")):
        (tmp_path / trial / "seed_0").mkdir(parents=True)
        (tmp_path / trial / "trial.json").write_text(json.dumps({"state": state}))
    (tmp_path / "2").mkdir()  # a run of a trial with one seed: no trial.json above it
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "trial.json").write_text("[")  # unreadable: not pruned
    folders = [tmp_path / "0" / "seed_0", tmp_path / "1" / "seed_0", tmp_path / "1" / "seed_1", tmp_path / "2",
               tmp_path / "3" / "seed_0"]
    assert budget.pruned(folders) == [False, True, True, False, False]
