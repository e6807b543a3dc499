"""`regbench` end to end, in subprocesses, as a user would call it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from regbench import __version__
from tests.helpers.cli import regbench
from tests.helpers.configs import REPO, TINY
from tests.helpers.rundirs import results_under

pytestmark = pytest.mark.slow

RESULT_KEYS = {
    "status", "error", "task", "dataset", "model", "reg", "seed", "params", "metrics", "gap",
    "best_epoch", "epochs_run", "stopped_early", "sparsity", "n_params", "seconds", "device", "versions",
}


def test_top_level_help_version_and_unknown_command(tmp_path):
    out = regbench("--help", cwd=tmp_path)
    assert out.returncode == 0 and "run" in out.stdout and "usage: regbench" in out.stdout
    assert regbench("--version", cwd=tmp_path).stdout.strip() == f"regbench {__version__}"
    bad = regbench("train", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "run" in bad.stderr


def test_run_help_and_cfg_job_compose_without_training(tmp_path):
    helped = regbench("run", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    for group in ("dataset", "model", "reg", "optim"):
        assert f"{group}:" in helped.stdout
    cfg = regbench("run", "--cfg", "job", "reg=elasticnet", cwd=tmp_path)
    assert cfg.returncode == 0 and "l1_ratio: 0.5" in cfg.stdout and "name: digits" in cfg.stdout
    assert not (tmp_path / "outputs").exists()


def test_single_run_writes_result_and_metrics(tmp_path):
    out = regbench("run", "reg=elasticnet", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (result,) = results_under(tmp_path / "outputs" / "runs")
    assert RESULT_KEYS <= result.keys()
    assert result["status"] == "ok" and result["reg"] == "elasticnet" and result["params"]["reg.alpha"] == 1e-4
    m = result["metrics"]
    assert result["gap"]["acc"] == pytest.approx(m["train_acc"] - m["val_acc"])
    assert result["gap"]["loss"] == pytest.approx(m["val_loss"] - m["train_loss"])
    run_dir = next((tmp_path / "outputs" / "runs").iterdir())
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds"
    assert len(rows) - 1 == result["epochs_run"] == 3
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    for label in ("train", "val", "test", "gap", "best epoch"):
        assert label in out.stdout


def test_multirun_2x2_leaves_four_results(tmp_path):
    out = regbench("run", "-m", "reg=l1,l2", "seed=0,1", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1", "2", "3"]
    results = results_under(sweeps[0])
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    assert sorted((r["reg"], r["seed"]) for r in results) == [("l1", 0), ("l1", 1), ("l2", 0), ("l2", 1)]
    assert "sweep done: 4 ok, 0 diverged, 0 failed" in out.stdout


def test_regularizers_combine_with_list_syntax(tmp_path):
    out = regbench("run", "reg=[elasticnet,dropout,batchnorm]", "reg.dropout=0.3", "dataset=breast_cancer", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (result,) = results_under(tmp_path)
    assert result["reg"] == "elasticnet+dropout+batchnorm" and result["dataset"] == "breast_cancer"
    assert result["params"]["reg.dropout"] == 0.3 and result["params"]["reg.batchnorm"] is True


def test_same_seed_gives_identical_metrics_across_processes(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        assert regbench("run", "reg=l1", *TINY, cwd=tmp_path / sub).returncode == 0
    (a,), (b,) = results_under(tmp_path / "a"), results_under(tmp_path / "b")
    assert a["metrics"] == b["metrics"] and a["sparsity"] == b["sparsity"] and a["best_epoch"] == b["best_epoch"]


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    import shutil
    import sys

    exe = shutil.which("regbench") or sys.executable
    procs = [
        subprocess.Popen([exe, "run", "trainer.max_epochs=1", "dataset.train_size=100"], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 2
    assert len(results_under(tmp_path)) == 2


def test_saved_model_is_the_reported_one_and_loads_with_weights_only(tmp_path):
    from omegaconf import OmegaConf

    from regbench.data.datasets import load
    from regbench.models import build_model
    from regbench.engine.loop import evaluate

    assert regbench("run", "save_model=true", "reg=dropout", *TINY, cwd=tmp_path).returncode == 0
    (path,) = (tmp_path / "outputs").rglob("model.pt")
    cfg = OmegaConf.load(path.parent / ".hydra" / "config.yaml")
    (result,) = results_under(tmp_path)
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.load_state_dict(torch.load(path, weights_only=True))
    val_loss, val_acc = evaluate(model, data, "val", 4096).tolist()
    assert val_loss == result["metrics"]["val_loss"] and val_acc == result["metrics"]["val_acc"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("reg.alpha=-1", "reg.alpha must be >= 0"),
        ("reg.l1_ratio=1.5", "reg.l1_ratio must be in [0, 1]"),
        ("reg.dropout=1.0", "reg.dropout must be in [0, 1)"),
        ("trainer.checkpoint_seconds=-1", "trainer.checkpoint_seconds must be >= 0"),
        ("reg.alpha=inf", "reg.alpha must be a finite number (got inf)"),
        ("optim.momentum=1.5", "optim.momentum must be in [0, 1) (got 1.5)"),
        ("reg=[l1,l2]", "reg=[l1,l2]: the presets disagree on reg.l1_ratio (l1 sets 1.0, l2 sets 0.0)"),
    ],
)
def test_bad_values_get_one_line_before_training(tmp_path, override, message):
    out = regbench("run", override, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(f"regbench: error: {message}")
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("metrics.csv"))  # nothing trained


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(tmp_path):
    out = regbench("run", "device=cuda", cwd=tmp_path)
    assert out.returncode == 2 and "CUDA is not available" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["reg=lasso"], "Could not find 'reg/lasso'; Available options in 'reg': "
                        + ", ".join(sorted(p.stem for p in (REPO / "conf" / "reg").glob("*.yaml")))),
        (["reg.alpah=0.1"], "Could not override 'reg.alpah': Key 'alpah' not in 'RegConfig' (did you mean reg.alpha?)"),
        (["trainer.patiense=3"], "(did you mean trainer.patience?)"),
        (["reg.alpha=lots"], "reg.alpha=lots: Value 'lots' of type 'str' could not be converted to Float"),
        (["reg.alpha=[1,2"], "no viable alternative at input '[1,2'"),
        (["+reg.extras=1"], "reg.extras is not a regbench option: nothing would read it"),
        (["reg.alpha=${oops}"], "reg.alpha: Interpolation key 'oops' not found"),
        (["-m", "reg.alpah=0.1", "seed=0,1"], "(did you mean reg.alpha?)"),  # a typo outside the swept keys
        (["--cfg", "job", "reg.alpah=0.1"], "(did you mean reg.alpha?)"),
        (["-m", "--cfg", "job"], "Only one of --run, --multirun, --cfg, --info and --shell_completion"),
        (["--resolve"], "The --resolve flag can only be used in conjunction with --cfg or --help"),
    ],
    ids=["option", "key", "key2", "type", "syntax", "added-key", "interpolation", "multirun", "cfg", "flags",
         "resolve"],
)
def test_a_bad_override_gets_one_line_and_nothing_runs(tmp_path, overrides, message):
    """Hydra prints these over several lines with a hint about HYDRA_FULL_ERROR; regbench
    folds each into one line, with the reason OmegaConf gives and the key probably meant."""
    out = regbench("run", *overrides, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("regbench: error: ") and message in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "HYDRA_FULL_ERROR" not in out.stderr
    assert not list(tmp_path.rglob("metrics.csv")) and not list(tmp_path.rglob("result.json"))  # nothing trained
    if overrides[0] not in ("+reg.extra=1", "reg.alpha=${oops}"):  # those compose; regbench's check refuses them
        assert not (tmp_path / "outputs").exists()  # refused while composing: not even a run folder


def test_hydra_full_error_still_gives_the_full_trace(tmp_path):
    out = regbench("run", "reg.alpah=0.1", cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert out.returncode == 1 and "Traceback" in out.stderr and "ConfigCompositionException" in out.stderr


def test_missing_dataset_files_without_download(tmp_path):
    out = regbench("run", "dataset=mnist", f"dataset.root={tmp_path / 'nodata'}", "dataset.download=false", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(tmp_path / "nodata") in out.stderr and "dataset.download=true" in out.stderr
    assert out.stderr.strip().count("\n") == 0


def test_a_relative_dataset_root_is_where_regbench_started_even_with_chdir(tmp_path):
    """hydra.job.chdir=true runs the job inside its run folder; dataset.root=data still means
    the data folder beside the command (the error names the folder looked in)."""
    out = regbench("run", "dataset=mnist", "dataset.root=data", "dataset.download=false", "hydra.job.chdir=true",
                   "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2 and f"files not found under {tmp_path / 'data' / 'MNIST' / 'raw'} " in out.stderr


def test_a_sweep_resolves_hydra_values_with_each_jobs_own_hydra_config(tmp_path):
    """`${hydra:...}` values work in a sweep as in a single run: the check of every job before
    the sweep starts reads that job's Hydra config, as the job itself will."""
    out = regbench("run", "-m", "dataset.root=${hydra:runtime.cwd}/data", "seed=${hydra:job.num}", "reg.alpha=1e-4,1e-3",
                   *TINY, "trainer.max_epochs=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    params = sorted((r["params"]["seed"], r["params"]["dataset.root"]) for r in results_under(tmp_path))
    assert params == [(0, str(tmp_path / "data")), (1, str(tmp_path / "data"))]


def test_multirun_with_a_bad_value_runs_nothing(tmp_path):
    out = regbench("run", "-m", "reg.alpha=1e-4,-1", *TINY, cwd=tmp_path)
    assert out.returncode == 2 and "reg.alpha must be >= 0" in out.stderr and "nothing was run" in out.stderr
    assert not results_under(tmp_path)
    unknown = regbench("run", "-m", "reg=l1,lasso", *TINY, cwd=tmp_path)
    assert unknown.returncode == 2 and "Available options in 'reg'" in unknown.stderr
    assert not results_under(tmp_path)
    typo = regbench("run", "-m", "reg.alpah=0.1,0.2", "reg.alpha=${oops},1", *TINY, cwd=tmp_path)
    assert typo.returncode == 2 and typo.stderr.count("regbench: error:") == 1  # one message for both jobs
    assert "(did you mean reg.alpha?) (in 4 of 4 jobs" in typo.stderr
    mixed = regbench("run", "-m", "reg=l1,[l1,l2]", *TINY, cwd=tmp_path)
    assert mixed.returncode == 2 and "the presets disagree on reg.l1_ratio" in mixed.stderr
    assert "(in 1 of 2 jobs, e.g. reg=[l1,l2] " in mixed.stderr and not results_under(tmp_path)
    assert not results_under(tmp_path)
    bad = regbench("run", "-m", "reg.alpha=${oops},1", *TINY, cwd=tmp_path)
    assert bad.returncode == 2 and "reg.alpha: Interpolation key 'oops' not found (in 1 of 2 jobs" in bad.stderr
    assert not results_under(tmp_path)


def test_glob_sweeps_and_sweeper_params_are_checked_and_resumed_like_any_sweep(tmp_path):
    """Hydra's other ways to name a sweep's values: `glob(...)` over a group's options, and
    `hydra.sweeper.params` in a config. Both are checked before anything runs and resume."""
    bad = regbench("run", "-m", "reg=glob(l*)", "reg.alpha=-1", *TINY, cwd=tmp_path)
    n = len(list((REPO / "conf" / "reg").glob("l*.yaml")))  # l1, l2, label_smoothing, lookahead, ...
    assert n >= 3 and bad.returncode == 2 and f"reg.alpha must be >= 0 (got -1.0) (in {n} of {n} jobs" in bad.stderr
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    (tmp_path / "conf" / "sweep" / "alphas.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      reg.alpha: 1e-4,-1\n")
    args = ["run", "-m", "--config-dir", str(tmp_path / "conf"), "+sweep=alphas", "reg=l2", *TINY, "hydra.sweep.dir=s"]
    refused = regbench(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "(in 1 of 2 jobs, e.g. reg.alpha=-1" in refused.stderr
    (tmp_path / "conf" / "sweep" / "alphas.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      reg.alpha: 1e-4,1e-3\n")
    first, again = (regbench(*args, cwd=tmp_path) for _ in range(2))
    assert first.returncode == again.returncode == 0, again.stderr
    assert "sweep done: 2 ok, 0 diverged, 0 failed (2 skipped as already done, 0 resumed, 0 ran)" in again.stdout


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    # A network that crashes once training starts (bad input, such as model=cnn on a table, is
    # refused before any job runs: tests/test_refusals.py): that job fails, the other still runs.
    (tmp_path / "nets.py").write_text(
        "import math\nfrom torch import nn\n\n\nclass Crashes(nn.Linear):\n"
        "    def forward(self, x):\n        if self.training:\n            raise RuntimeError('out of memory')\n"
        "        return super().forward(x.flatten(1))\n\n\n"
        "def fine(input_shape, n_outputs):\n    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))\n\n\n"
        "def crashes(input_shape, n_outputs):\n    return Crashes(math.prod(input_shape), n_outputs)\n")
    out = regbench("run", "-m", "model=custom", "model._target_=nets.crashes,nets.fine", "trainer.max_epochs=2", cwd=tmp_path)
    assert out.returncode == 1
    statuses = sorted((r["params"]["model._target_"], r["status"]) for r in results_under(tmp_path))
    assert statuses == [("nets.crashes", "failed"), ("nets.fine", "ok")]
    assert "1 ok, 0 diverged, 1 failed" in out.stdout and "RuntimeError: out of memory" in out.stdout


def test_a_diverging_job_is_recorded_and_the_sweep_finishes(tmp_path):
    out = regbench("run", "-m", "optim=sgd", "optim.lr=1e9,0.01", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr  # diverged is a result, not a failure
    statuses = sorted((r["params"]["optim.lr"], r["status"]) for r in results_under(tmp_path))
    assert statuses == [(0.01, "ok"), (1e9, "diverged")]
    assert "1 ok, 1 diverged, 0 failed" in out.stdout and "diverged: " in out.stdout


def test_shell_completion_goes_through_the_run_subcommand(tmp_path):
    import os

    env = dict(os.environ, COMP_LINE="regbench run reg=", COMP_POINT="17")
    out = regbench("-sc", "query=bash", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "reg=elasticnet" in out.stdout and "reg=l1" in out.stdout
    env = dict(os.environ, COMP_LINE="regbench r", COMP_POINT="10")
    assert regbench("-sc", "query=bash", cwd=tmp_path, env=env).stdout.split() == ["run", "report"]
    env = dict(os.environ, COMP_LINE="regbench ru", COMP_POINT="11")
    assert regbench("-sc", "query=bash", cwd=tmp_path, env=env).stdout.split() == ["run"]
    script = regbench("run", "-sc", "install=bash", cwd=tmp_path).stdout
    assert "complete -o nospace -o default -F hydra_bash_completion regbench" in script


def test_heavy_imports_run_without_collection_and_freeze_once(monkeypatch):
    import gc

    from regbench.engine import gcpause

    monkeypatch.setattr(gcpause, "_frozen", False)
    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with gcpause.imports():
            assert not gc.isenabled()
            alive = [[] for _ in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= before + len(alive)
        frozen = gc.get_freeze_count()
        later = [[] for _ in range(1000)]  # made after the freeze: a later block must not freeze it
        with gcpause.imports():
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() == frozen and later
        gc.disable()
        with gcpause.imports():
            pass
        assert not gc.isenabled()  # it gives back the state it found
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_sweep_composes_each_structure_once_and_hands_out_independent_copies(monkeypatch):
    import pickle

    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from regbench.cli.app import config_dir
    from regbench.cli.callbacks import ComposeOnce

    calls = []
    real = ConfigLoaderImpl.load_configuration
    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", lambda *a, **k: calls.append(1) or real(*a, **k))
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        master = compose("config", overrides=["hydra/launcher=stacked"], return_hydra_config=True)
        sweep_dir = str(master.hydra.sweep.dir)  # resolved (a random id) before any job, as in a multirun
        loader = GlobalHydra.instance().config_loader()
        fresh = loader.load_sweep_config(master, ["reg.alpha=0.1", "seed=1"])
        ComposeOnce.install(loader)
        calls.clear()
        first = loader.load_sweep_config(master, ["reg.alpha=0.1", "seed=1"])
        with open_dict(first):
            first.hydra.job.num = 7  # what a launcher does to its copy
        again = loader.load_sweep_config(master, ["reg.alpha=0.1", "seed=1"])
        other = loader.load_sweep_config(master, ["reg.alpha=0.2", "seed=1"])
        assert len(calls) == 1  # one composition per structure: these differ in plain values only
        elastic = loader.load_sweep_config(master, ["reg=elasticnet", "reg.alpha=0.2"])
        assert len(calls) == 2 and elastic.hydra.runtime.choices.reg == "elasticnet"  # another group choice: composed
        assert OmegaConf.to_container(again) == OmegaConf.to_container(fresh)
        assert OmegaConf.is_missing(again.hydra.job, "num") and other.reg.alpha == 0.2
        assert again.hydra.sweep.dir == fresh.hydra.sweep.dir == sweep_dir  # the master's resolved values
        shipped = pickle.loads(pickle.dumps(loader))  # joblib and submitit send the loader to workers
        assert shipped.load_sweep_config.cache == {}
        assert OmegaConf.to_container(shipped.load_sweep_config(master, ["reg.alpha=0.1", "seed=1"])) == OmegaConf.to_container(fresh)
        ComposeOnce.remove(loader)
        assert "load_sweep_config" not in vars(loader)


def test_the_interrupt_line_pins_the_rerun_to_the_same_folder():
    from regbench.engine.interrupt import Interrupted, report, resumable

    sweep = resumable(Interrupted("after epoch 3 of a stack, its 2 unfinished jobs checkpointed in their folders"),
                      "hydra.sweep.dir=outputs/sweeps/a b")
    line = report(sweep, ["-m", "hydra/launcher=stacked", "reg.alpha=1e-4,1e-3", "hydra.sweep.dir=old"])
    assert line == ("regbench: interrupted after epoch 3 of a stack, its 2 unfinished jobs checkpointed in their "
                    "folders; to resume: regbench run -m hydra/launcher=stacked reg.alpha=1e-4,1e-3 "
                    "'hydra.sweep.dir=outputs/sweeps/a b'")
    plain = resumable(KeyboardInterrupt(), "hydra.run.dir=outputs/runs/x")  # a second Ctrl-C, or before training
    assert report(plain, ["reg=l1"]) == "regbench: interrupted; to resume: regbench run reg=l1 hydra.run.dir=outputs/runs/x"
    assert report(KeyboardInterrupt(), ["reg=l1"]) == "regbench: interrupted"


COUNT_CHECKS = """
import sys

from regbench.cli.main import main
from regbench.config import checks
from regbench.engine import runner

calls = []
real = checks.check

def counted(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)

checks.check = runner.check = counted
code = main(sys.argv[1:])
print(f"checks: {len(calls)}", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args, jobs", [([], 1), (["-m", "seed=0,1"], 2)], ids=["run", "sweep"])
def test_the_config_is_checked_once_where_hydra_composes_it(tmp_path, args, jobs):
    """The callbacks check each job's config before any folder is made; the job and the runner
    receive it checked and do not check it again."""
    out = subprocess.run([sys.executable, "-c", COUNT_CHECKS, "run", *args, *TINY, "trainer.max_epochs=1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert f"checks: {jobs}" in out.stderr
    assert len(results_under(tmp_path)) == jobs


# Sweep jobs: plain values, group choices before and after them, an added group, typed values,
# an interpolation, and overrides Hydra refuses (an unknown key, a value of the wrong type).
JOBS = [
    ["reg.alpha=0.1", "seed=1"],
    ["reg=elasticnet", "reg.alpha=0.01", "reg.l1_ratio=0.3", "seed=2"],
    ["reg.alpha=0.01", "reg=elasticnet", "seed=0"],
    ["dataset=wine", "model.hidden_sizes=[32,16]", "trainer.patience=null", "optim.lr=1e-3"],
    ["dataset=wine", "model.hidden_sizes=[64]", "trainer.patience=5", "optim.lr=0.01"],
    ["+search=elasticnet", "reg.alpha=0.5", "seed=1"],
    ["reg=dropout", "reg.dropout=0.25", "device=cpu", "trainer.num_threads=1"],
    ["reg=dropout", "reg.dropout=0.5", "device='cpu'", "dataset.label_noise=${reg.dropout}"],
    ["+reg.extra=1", "seed=1"],  # refused: reg is a structured config
    ["++trainer.patience=3", "seed=1"],
    ["name=x", "seed=3"],
    ["seed=abc"],
    ["reg=l2", "reg.alpha=[1,2]"],
    ["trainer.max_epochs=3.5"],
    # hydra's node's plain values, as every job of a search has them, before, between and after others
    ["reg.alpha=0.1", "seed=1", "hydra.sweep.subdir='0/seed_1'"],
    ["hydra.sweep.subdir='reg=l2,dataset=wine/3'", "reg=l2", "reg.alpha=0.2", "hydra.job.chdir=false"],
    ["reg=l2", "hydra.sweep.subdir=x", "hydra/launcher=basic", "reg.alpha=0.3"],
    ["hydra.sweep.nosuch=1", "seed=1"],  # refused: no such key in hydra's node
    ["hydra.sweep.subdir=[1,2]", "seed=1"],  # refused: a list for a string
]


def test_a_job_made_from_its_structure_equals_hydras_own_composition_of_it():
    """The oracle is Hydra: each job composed by its config loader, and the same jobs made by
    ComposeOnce (one composition per structure, the values set on a copy): the same YAML, hydra
    node included, the same flags, and the same error where Hydra refuses the job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from regbench.cli.app import config_dir
    from regbench.cli.callbacks import ComposeOnce

    def made(job: list[str]) -> tuple[str, bool, bool] | str:
        try:
            cfg = loader.load_sweep_config(master, job)
        except Exception as e:  # noqa: BLE001 - compared, message and cause, with Hydra's
            return f"{type(e).__name__}: {e} / {e.__cause__!r}"
        return OmegaConf.to_yaml(cfg), OmegaConf.is_struct(cfg), OmegaConf.is_readonly(cfg.hydra)

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        master = compose("config", overrides=["hydra/launcher=stacked"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        hydras = [made(job) for job in JOBS]
        compose_once = ComposeOnce.install(loader)
        try:
            ours = [made(job) for job in JOBS]
            again = [made(job) for job in JOBS]  # from the cache
        finally:
            ComposeOnce.remove(loader)
    assert [job for job, h in zip(JOBS, hydras) if isinstance(h, str)] == [  # the refused ones are refused
        ["+reg.extra=1", "seed=1"], ["name=x", "seed=3"], ["seed=abc"], ["reg=l2", "reg.alpha=[1,2]"],
        ["trainer.max_epochs=3.5"], ["hydra.sweep.nosuch=1", "seed=1"], ["hydra.sweep.subdir=[1,2]", "seed=1"]]
    for job, hydra_s, ours_s, again_s in zip(JOBS, hydras, ours, again):
        assert ours_s == hydra_s == again_s, job
    assert len(compose_once.cache) < len(JOBS) - 5  # some were made from a structure, not composed
