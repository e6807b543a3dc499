"""The optional Hydra plugins (the `launchers` extra): joblib, submitit and the Optuna sweeper.

End-to-end: each test runs `regbench run -m` in a subprocess with a plugin and checks the
sweep folder (every job's result.json, the report of the on_multirun_end callback). A test
skips, saying which plugin is missing, when the extra is not installed
(`pip install -e ".[launchers]"`). SLURM cannot run here: its preset is checked down to the
sbatch script submitit would submit.
"""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from regbench.cli.app import config_dir
from tests.helpers.cli import regbench
from tests.helpers.rundirs import csv_rows

pytestmark = pytest.mark.slow

# Smaller than TINY: these tests check the plumbing, not the training.
SMALL = ["trainer.max_epochs=2", "dataset.train_size=200", "model.hidden_sizes=[16]"]
MISSING = 'needs the launchers extra: pip install -e ".[launchers]"'


def _plugin(name: str, minversion: str | None = None):
    return pytest.importorskip(f"hydra_plugins.{name}", minversion=minversion, reason=f"{name} not installed; {MISSING}")


def _hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def _sweep(tmp_path: Path) -> Path:
    """The one sweep folder the command made (all jobs land under a single one)."""
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def _check_sweep(out, tmp_path: Path, n_jobs: int) -> tuple[Path, list[dict[str, str]]]:
    """Every job left a result.json in ONE sweep folder, and the callback wrote its report."""
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = _sweep(tmp_path)
    assert sorted(p.parent.name for p in sweep.glob("*/result.json")) == [str(n) for n in range(n_jobs)]
    assert (sweep / "report.csv").is_file() and (sweep / "runs.csv").is_file()
    assert f"sweep done: {n_jobs} ok" in out.stdout
    runs = csv_rows(sweep / "runs.csv")
    assert len(runs) == n_jobs and {r["status"] for r in runs} == {"ok"}
    return sweep, runs


def test_joblib_runs_every_job_in_worker_processes(tmp_path):
    _plugin("hydra_joblib_launcher")
    out = regbench("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "reg=l1,l2", "seed=0,1", *SMALL,
                   cwd=tmp_path)
    assert "Joblib.Parallel(n_jobs=2" in out.stdout
    _, runs = _check_sweep(out, tmp_path, 4)
    assert sorted((r["reg"], r["seed"]) for r in runs) == [("l1", "0"), ("l1", "1"), ("l2", "0"), ("l2", "1")]
    assert {r["threads"] for r in runs} == {str(max(1, len(os.sched_getaffinity(0)) // 2))}  # cores / 2 workers


def test_submitit_local_runs_each_job_as_its_own_process(tmp_path):
    _plugin("hydra_submitit_launcher")
    out = regbench("run", "-m", "hydra/launcher=submitit_local", "reg=l1,l2", "seed=0,1", *SMALL, cwd=tmp_path)
    sweep, _ = _check_sweep(out, tmp_path, 4)
    # submitit's local executor names each job after the pid of the process it started.
    jobs = sorted(p for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
    assert len(jobs) == 4 and len({j.name for j in jobs}) == 4
    logs = ""
    for job in jobs:
        assert (job / f"{job.name}_0_result.pkl").is_file()
        logs += (job / f"{job.name}_0_log.out").read_text()
    # each job's own line went to its process's log, not to the launching process
    assert "[job 0]" in logs and "[job 1]" in logs and "[job 0]" not in out.stdout


def test_slurm_preset_composes_and_prints_with_cfg_hydra(tmp_path):
    _plugin("hydra_submitit_launcher")
    out = regbench("run", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    launcher = OmegaConf.create(out.stdout).hydra.launcher
    # Hydra's submitit SLURM launcher, quiet without accounting and one line on a refusal
    assert launcher._target_ == "hydra_plugins.regbench_stacked_launcher.quiet_slurm.SlurmLauncher"
    # mem_gb null: no --mem, the cluster's default (a fixed 8 GB was refused by nodes with less)
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == ("gpu", 60, 2, None)
    assert launcher.gpus_per_node is None and launcher.array_parallelism == 32
    assert "submitit_folder: ${hydra.sweep.dir}/.submitit/%j" in out.stdout  # submitit's logs: in the sweep folder


def test_slurm_preset_gives_the_sbatch_script_submitit_would_submit(tmp_path, monkeypatch):
    """Runs the plugin's own launch() up to submission: submitit validates the parameters and
    writes the sbatch script, but map_array (which calls sbatch) is replaced."""
    _plugin("hydra_submitit_launcher")
    import submitit
    from hydra.utils import instantiate

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit's "are we on SLURM?" check
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    submitted = {}

    def fake_map_array(self, fn, *args):
        submitted["executor"], submitted["jobs"] = self, list(zip(*args))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    cfg = _hydra_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                     "hydra.launcher.mem_gb=8", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["reg=l1"], ["reg=l2"]], initial_job_idx=0)
    assert [job[0] for job in submitted["jobs"]] == [["reg=l1"], ["reg=l2"]]
    slurm = submitted["executor"]._executor
    assert slurm.parameters["array_parallelism"] == 32
    script = slurm._make_submission_file_text("python -u -m submitit.core._submit", "uid")
    for flag in ("--partition=gpu", "--time=60", "--cpus-per-task=2", "--mem=8GB", "--gpus-per-node=1", "--job-name=regbench"):
        assert f"#SBATCH {flag}\n" in script, script
    assert f"{tmp_path / 'sweep'}/.submitit/" in script


@pytest.mark.parametrize("launcher", ["submitit_slurm", "submitit_local", "joblib"])
def test_plugin_launchers_compose(launcher):
    _plugin("hydra_joblib_launcher" if launcher == "joblib" else "hydra_submitit_launcher")
    cfg = _hydra_cfg(f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.")


def test_search_presets_compose():
    pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')
    sweeper = _hydra_cfg("+search=elasticnet").hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.regbench_optuna_sweeper.sweeper.RegbenchOptunaSweeper"
    assert (sweeper.direction, sweeper.batch, sweeper.sampler.seed, sweeper.max_failure_rate) == ("minimize", None, 0, 1.0)
    assert dict(sweeper.params) == {"reg.alpha": "tag(log, interval(1e-6, 1e-1))", "reg.l1_ratio": "interval(0.0, 1.0)"}
    params = _hydra_cfg("+search=elasticnet_dropout").hydra.sweeper.params
    assert sorted(params) == ["reg.alpha", "reg.dropout", "reg.l1_ratio"]
    each = _hydra_cfg("+search=each", "+search/prune=wilcoxon").hydra.sweeper
    assert each.each is True and each.pruner._target_ == "optuna.pruners.WilcoxonPruner" and each.params == {}


def test_optuna_study_runs_every_trial_past_a_diverged_one_and_reports_the_best(tmp_path):
    """Three trials of the elasticnet preset, one of them diverging (SGD at lr 1e9, no finite
    epoch): the task returns None for it, the sweeper tells Optuna FAIL and the study goes on."""
    pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')
    out = regbench("run", "-m", "+search=elasticnet", "hydra.sweeper.n_trials=3", "optim=sgd",
                   "optim.lr=choice(1e9,0.01)", *SMALL, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = _sweep(tmp_path)
    assert sorted(p.parent.name for p in sweep.glob("*/result.json")) == ["0", "1", "2"]
    runs = csv_rows(sweep / "runs.csv")
    # with the preset's TPE seed the trials draw both learning rates
    assert sorted({r["status"] for r in runs}) == ["diverged", "ok"], [r["params.optim.lr"] for r in runs]
    n_diverged = sum(r["status"] == "diverged" for r in runs)
    assert len(re.findall(r"\[trial \d\] failed", out.stdout)) == n_diverged
    assert f"sweep done: {3 - n_diverged} ok, {n_diverged} diverged, 0 failed" in out.stdout
    assert "setup plugin alembic" not in out.stdout and "alembic" not in out.stderr
    for r in runs:  # every trial is a regbench run with values drawn from the search space
        assert 1e-6 <= float(r["params.reg.alpha"]) <= 1e-1 and 0 <= float(r["params.reg.l1_ratio"]) <= 1
    assert len({r["config"] for r in runs}) == 3 and len(csv_rows(sweep / "report.csv")) == 3
    # the study minimised what the task returned, the validation loss in result.json, and said so
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    printed = ast.literal_eval(re.search(r"Best parameters: (\{.*\})", out.stdout).group(1))
    assert printed == OmegaConf.to_container(best.best_params) and printed["optim.lr"] == 0.01
    winner = min((r for r in runs if r["status"] == "ok"), key=lambda r: float(r["val_loss"]))
    assert math.isclose(best.best_value, float(winner["val_loss"]), rel_tol=1e-12)
    assert math.isclose(best.best_params["reg.alpha"], float(winner["params.reg.alpha"]), rel_tol=1e-12)
