"""Bad input known only once the data is loaded or the model built (issue 21, items 4 and 10) is a
refusal, as a bad value is: one line, exit 2, no run folder, nothing a user computed touched.
Runtime failures stay results (tests/test_cli.py's failing job)."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from rich.console import Console
from torch import nn

from regbench import UserInputError
from regbench.data.datasets import load
from regbench.engine.runner import refusal, run
from regbench.models import build_model, probe_custom
from tests.helpers.cli import regbench
from tests.helpers.configs import TINY, make_cfg

QUIET = Console(quiet=True)

BADNET = textwrap.dedent('''
    import itertools
    import math

    import torch
    from torch import nn


    def wrong_outputs(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


    def unflattened(input_shape, n_outputs):
        return nn.Linear(64, n_outputs)


    def good(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))


    _calls = itertools.count(1)


    def every_other(input_shape, n_outputs):
        """Right on odd calls (the sweep's own check, then job 1), wrong on even ones (job 0): a job
        whose bad input the sweep's check before any job could not see."""
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs if next(_calls) % 2 else 3))
''')


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("regbench: error: "), stderr
    return lines[0].removeprefix("regbench: error: ")


def digits_train_split() -> int:
    """The digits training split before dataset.train_size, from scikit-learn's own numbers:
    test and validation fractions of 0.2 each, rounded up as train_test_split rounds them."""
    from sklearn.datasets import load_digits

    n = len(load_digits().target)
    rest = n - math.ceil(0.2 * n)
    return rest - math.ceil(0.2 * rest)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "badnet.py").write_text(BADNET)
    (tmp_path / "empty").mkdir()
    return tmp_path


CASES = {
    "train_size": (["dataset.train_size=5000"],
                   lambda: f"dataset.train_size=5000 but the training split has only {digits_train_split()} samples"),
    "cnn-on-a-table": (["model=cnn", "dataset=wine"],
                       lambda: "model=cnn needs image data (digits, mnist, fashion_mnist, cifar10); this dataset has 13 "
                               "tabular features"),
    "label-smoothing-regression": (["dataset=diabetes", "reg=label_smoothing"],
                                   lambda: "reg.label_smoothing applies to classification; diabetes is a regression"),
    "mixup-regression": (["dataset=diabetes", "reg=mixup"],
                         lambda: "reg.mixup and reg.cutmix mix class labels; diabetes is a regression"),
    "cifar10-missing": (["dataset=cifar10", "dataset.root=empty", "dataset.download=false"],
                        lambda: "cifar10 files not found under {tmp}/empty/cifar-10-batches-py and dataset.download=false"),
    "custom-wrong-outputs": (["model=custom", "model._target_=badnet.wrong_outputs"],
                             lambda: "model=custom: badnet.wrong_outputs maps (B, 1, 8, 8) to (B, 5); regbench needs (B, 10)"),
    "custom-unflattened": (["model=custom", "model._target_=badnet.unflattened"],
                           lambda: f"model=custom: badnet.unflattened fails on inputs (B, 1, 8, 8): RuntimeError: "
                                   f"{torch_error()}; regbench needs it to map them to (B, 10)"),
}


def torch_error() -> str:
    """torch's own words for a Linear(64, 10) given unflattened (2, 1, 8, 8) digits."""
    with pytest.raises(RuntimeError) as e:
        nn.Linear(64, 10)(torch.zeros(2, 1, 8, 8))
    return str(e.value).splitlines()[0]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_bad_input_known_once_the_data_is_loaded_is_one_line_and_no_folder(workdir, case):
    args, message = CASES[case]
    out = regbench("run", "trainer.max_epochs=1", *args, cwd=workdir)
    assert out.returncode == 2, out.stderr
    line = only_line(out.stderr)
    expected = message().format(tmp=workdir)
    assert line == expected or (case == "cifar10-missing" and line.startswith(expected)), line
    assert not (workdir / "outputs").exists()  # not even the empty outputs/runs/ made for it


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_refused_rerun_leaves_a_finished_folder_as_it_was(workdir):
    first = regbench("run", *TINY, "hydra.run.dir=mine", cwd=workdir)
    assert first.returncode == 0, first.stderr
    folder = workdir / "mine"
    # every file but the record of the config last run there (.hydra/) and the lock's last holder
    kept = lambda p: p.is_file() and ".hydra" not in p.parts and p.name != ".regbench.lock"  # noqa: E731
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if kept(p)}
    again = regbench("run", *TINY, "dataset.train_size=5000", "overwrite=true", "hydra.run.dir=mine", cwd=workdir)
    assert again.returncode == 2
    assert only_line(again.stderr).startswith("dataset.train_size=5000 but the training split has only")
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if kept(p)}
    assert after == before and {"result.json", "metrics.csv"} <= {p.name for p in before} and json.loads((folder / "result.json").read_text())["status"] == "ok"


def test_a_search_trial_is_refused_like_a_run(workdir):
    out = regbench("run", *TINY, "search.seeds=2", "dataset.train_size=5000", "hydra.run.dir=trial", cwd=workdir)
    assert out.returncode == 2
    assert only_line(out.stderr).startswith("dataset.train_size=5000 but the training split has only")
    assert not (workdir / "trial").exists()


@pytest.mark.parametrize("launcher", ["basic", "stacked"])
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_sweep_with_a_job_the_data_refuses_is_refused_before_any_job_runs(workdir, launcher):
    out = regbench("run", "-m", *(["hydra/launcher=stacked"] if launcher == "stacked" else []), *TINY,
                   "dataset.train_size=100,5000", "reg=none,l2", "hydra.sweep.dir=sweep", cwd=workdir)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"regbench: error: dataset.train_size=5000 but the training split has only {digits_train_split()} "
                     "samples (in 2 of 4 jobs, e.g. " + lines[0].split("e.g. ")[1], "regbench: nothing was run"]
    assert not (workdir / "sweep").exists()


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_sweep_job_refused_as_it_starts_leaves_no_folder_and_the_sweep_exits_2(workdir):
    out = regbench("run", "-m", *TINY, "model=custom", "model._target_=badnet.every_other", "seed=0,1",
                   "hydra.sweep.dir=sweep", cwd=workdir)
    assert out.returncode == 2, out.stderr
    refused = [line for line in out.stderr.splitlines() if "refused" in line]
    assert refused == ["regbench: error: [job 0] refused: model=custom: badnet.every_other maps (B, 1, 8, 8) to (B, 3); "
                       "regbench needs (B, 10)"]
    assert not (workdir / "sweep" / "0").exists()
    assert json.loads((workdir / "sweep" / "1" / "result.json").read_text())["status"] == "ok"
    assert "sweep done: 1 ok, 0 diverged, 0 failed, 1 refused" in out.stdout
    assert (workdir / "sweep" / "runs.csv").read_text().count("\n") == 2  # a header and job 1: nothing of job 0


def test_run_raises_bad_input_writes_nothing_and_removes_only_the_folder_it_made(tmp_path):
    with pytest.raises(UserInputError, match="dataset.train_size=5000 but the training split has only"):
        run(make_cfg(*TINY, "dataset.train_size=5000"), tmp_path / "new", QUIET)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError):
        run(make_cfg(*TINY, "dataset=diabetes", "reg=mixup"), tmp_path / "old", QUIET)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == [".regbench.lock", "notes.txt"]


class Noisy(nn.Module):
    """A custom network that draws random numbers and moves its batch norm's statistics in its
    forward pass, in eval mode too: the probe must leave both as they were."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, 16)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, n_out)

    def forward(self, x):
        self.norm.running_mean.add_(1.0)
        h = self.norm(self.lin(x.flatten(1))) + 1e-3 * torch.rand(x.shape[0], 16)
        return self.out(torch.relu(h))


def test_the_probe_leaves_random_streams_buffers_and_modes_as_they_were(monkeypatch):
    import sys
    import types

    module = types.ModuleType("noisynet")
    module.make = lambda input_shape, n_outputs: Noisy(math.prod(input_shape), n_outputs)
    monkeypatch.setitem(sys.modules, "noisynet", module)
    cfg = make_cfg("model=custom", "model._target_=noisynet.make")
    data = load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(3)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    probe_custom(model, data.prepare(data.x_train[:2].clone()), "noisynet.make")
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())


def test_a_custom_regression_network_must_give_one_output_column(monkeypatch):
    import sys
    import types

    module = types.ModuleType("regnet")
    module.flat = lambda input_shape, n_outputs: nn.Sequential(nn.Linear(input_shape[0], 1), nn.Flatten(0))
    module.column = lambda input_shape, n_outputs: nn.Linear(input_shape[0], n_outputs)
    monkeypatch.setitem(sys.modules, "regnet", module)
    data = load(make_cfg("dataset=diabetes").dataset, torch.device("cpu"))
    assert refusal(make_cfg("dataset=diabetes", "model=custom", "model._target_=regnet.flat"), data) == (
        "model=custom: regnet.flat maps (B, 10) to (B,); regbench needs (B, 1)")
    assert refusal(make_cfg("dataset=diabetes", "model=custom", "model._target_=regnet.column"), data) is None
