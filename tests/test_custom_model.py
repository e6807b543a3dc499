"""model=custom: any nn.Module from a factory named by model._target_ (regbench/models.py,
regbench/engine/network.py's `Network._run_custom`): trained by the one engine with the regularizers that
act on any model, refused in one line where a regularizer cannot reach it, run alone by the
stacked launcher, resumed bit for bit."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
import torch
from rich.console import Console

from regbench import UserInputError
from regbench.config.checks import check
from regbench.engine import grouping
from regbench.engine.runner import run
from tests.helpers.cli import regbench
from tests.helpers.configs import make_cfg

QUIET = Console(quiet=True)

NET = textwrap.dedent('''
    import math
    import torch
    from torch import nn


    class Gated(nn.Module):
        """Not a Sequential: a gated MLP with a LayerNorm, a bias-free layer and a registered buffer."""

        def __init__(self, n_in, n_out, hidden, dropout, batchnorm):
            super().__init__()
            self.inp = nn.Linear(n_in, hidden)
            self.gate = nn.Linear(n_in, hidden, bias=False)
            self.norm = nn.BatchNorm1d(hidden) if batchnorm else nn.LayerNorm(hidden)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(hidden, n_out)
            self.register_buffer("scale", torch.tensor(1.0))

        def forward(self, x):
            x = x.flatten(1)
            h = self.norm(self.inp(x)) * torch.sigmoid(self.gate(x))
            return self.out(self.drop(torch.relu(h))) * self.scale


    def make_net(input_shape, n_outputs, hidden=32, reg=None):
        reg = reg or {}
        return Gated(math.prod(input_shape), n_outputs, hidden, reg.get("dropout", 0.0), reg.get("batchnorm", False))


    def no_reg(input_shape, n_outputs, hidden=16):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))


    def broken(input_shape, n_outputs):
        raise RuntimeError("no such layer")


    def not_a_module(input_shape, n_outputs):
        return 42
''')
SMALL = ("dataset.train_size=300", "trainer.max_epochs=4", "trainer.patience=null")


@pytest.fixture
def netdir(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(NET)
    monkeypatch.chdir(tmp_path)  # found beside the config, as a user's file in the current folder
    yield tmp_path


def cfg(*overrides):
    return make_cfg(*SMALL, "model=custom", "model._target_=mynet.make_net", *overrides)


def test_a_custom_model_trains_with_penalties_dropout_batchnorm_and_its_kwargs(netdir):
    result = run(cfg("reg=[l1,dropout,batchnorm]", "+model.kwargs.hidden=24", "save_model=true"), netdir / "run", QUIET)
    assert result["status"] == "ok", result.get("error")
    assert result["model"] == "custom" and result["reg"] == "l1+dropout+batchnorm"
    assert result["params"]["model.kwargs.hidden"] == 24 and result["params"]["model._target_"] == "mynet.make_net"
    state = torch.load(netdir / "run" / "model.pt", weights_only=True)
    assert state["inp.weight"].shape == (24, 64) and "norm.running_mean" in state
    assert result["sparsity"] > 0  # L1's proximal step reached the user's weights (not its bias or norm)
    assert (state["inp.bias"] != 0).all()
    import mynet

    model = mynet.make_net((1, 8, 8), 10, hidden=24, reg={"dropout": 0.5, "batchnorm": True})
    model.load_state_dict(state)
    from regbench.data.datasets import load
    from regbench.engine.loop import evaluate

    data = load(cfg().dataset, torch.device("cpu"))
    loss, acc = evaluate(model, data, "val", 8192).tolist()
    assert (loss, acc) == (result["metrics"]["val_loss"], result["metrics"]["val_acc"])


@pytest.mark.parametrize("regs", ["[mixup,ema]", "[sam,weight_decay]", "[swa,batchnorm] reg.swa=0.25", "[label_smoothing,cutout]"])
def test_the_model_agnostic_regularizers_act_on_a_custom_model(netdir, regs):
    base = run(cfg(), netdir / "base", QUIET)
    result = run(cfg(*f"reg={regs}".split()), netdir / "reg", QUIET)
    assert result["status"] == "ok", result.get("error")
    assert result["metrics"] != base["metrics"]


def test_a_custom_model_with_dropout_resumes_bit_for_bit(netdir, monkeypatch):
    from regbench.results import MetricsWriter

    args = ("reg=[dropout,sam]", "trainer.max_epochs=6", "trainer.checkpoint_seconds=0")
    clean = run(cfg(*args), netdir / "clean", QUIET)
    write = MetricsWriter.write

    def stop_after_3(self, row):
        write(self, row)
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(MetricsWriter, "write", stop_after_3)
    with pytest.raises(KeyboardInterrupt):
        run(cfg(*args), netdir / "resumed", QUIET)
    monkeypatch.setattr(MetricsWriter, "write", write)
    resumed = run(cfg(*args), netdir / "resumed", QUIET)
    assert resumed["resumed_from_epoch"] == 2 and resumed["metrics"] == clean["metrics"]
    a, b = (pd.read_csv(netdir / d / "metrics.csv").drop(columns="seconds") for d in ("clean", "resumed"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_what_cannot_reach_a_custom_model_is_refused_in_one_line(netdir):
    assert check(cfg("model._target_=mynet.no_reg", "reg=dropout")) == [
        "reg.dropout=0.5 cannot act on model=custom: mynet.no_reg takes no `reg` argument (a factory with one "
        "receives the reg node, e.g. reg['dropout'], and builds the layers itself)"]
    assert check(cfg("model._target_=mynet.no_reg", "reg=[l2,mixup]")) == []
    assert check(cfg("reg=drop_path"))[0].startswith("reg.drop_path")
    assert check(make_cfg("model=custom")) == [
        "model=custom needs model._target_, your factory (module.name), e.g. model._target_=mynet.make_net"]
    assert check(cfg("model._target_=mynet.nothing")) == ["model._target_=mynet.nothing: mynet has no nothing"]
    assert check(cfg("model._target_=nosuch.make")) == [
        "model._target_=nosuch.make: no module nosuch on the Python path, nor nosuch.py in the current folder"]
    for target, message in [("mynet.broken", "model._target_=mynet.broken failed for input shape (1, 8, 8) and 10 "
                             "outputs: RuntimeError: no such layer"),
                            ("mynet.not_a_module", "model._target_=mynet.not_a_module returned a int, not a torch.nn.Module")]:
        with pytest.raises(UserInputError) as refused:  # bad input: raised before anything is written
            run(cfg(f"model._target_={target}"), netdir / target, QUIET)
        assert str(refused.value) == message and not (netdir / target).exists()


def test_the_stacked_launcher_runs_custom_jobs_alone_and_says_why(netdir):
    assert grouping.why_alone(cfg()) == "model=custom runs as its own module, one job at a time"
    assert grouping.stack_key(cfg()) is None


@pytest.mark.slow
def test_a_custom_model_from_the_command_line_in_a_stacked_sweep(netdir):
    out = regbench("run", "-m", "hydra/launcher=stacked", "model=custom", "model._target_=mynet.make_net",
                   "+model.kwargs.hidden=16", "reg=none,l2", *SMALL, "hydra.sweep.dir=sweep", cwd=netdir)
    assert out.returncode == 0, out.stderr
    assert "run alone: model=custom runs as its own module, one job at a time" in out.stdout + out.stderr
    results = [json.loads((netdir / "sweep" / str(i) / "result.json").read_text()) for i in range(2)]
    assert [r["status"] for r in results] == ["ok", "ok"] and [r["reg"] for r in results] == ["none", "l2"]


@pytest.mark.slow
def test_the_worked_example_runs_end_to_end_from_a_subprocess(tmp_path):
    """examples/custom_model/run.sh, as a user runs it: their CSV and their model file, five
    regularizers x three seeds, then the report."""
    import shutil
    import subprocess

    from tests.helpers.configs import REPO

    example = tmp_path / "custom_model"
    shutil.copytree(REPO / "examples" / "custom_model", example, ignore=shutil.ignore_patterns("outputs"))
    out = subprocess.run(["bash", str(example / "run.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run alone: model=custom runs as its own module, one job at a time" in out.stdout
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "sweep").glob("*/result.json"))]
    assert len(results) == 15 and {r["status"] for r in results} == {"ok"}
    assert sorted({r["reg"] for r in results}) == ["dropout", "l2", "mixup", "none", "sam"]
    assert {r["model"] for r in results} == {"custom"} and all(r["classes"] == ["no", "yes"] for r in results)
    assert {r["params"]["model.kwargs.width"] for r in results} == {64}
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert "classes of table churn.csv: 0=no, 1=yes" in report
    assert sorted(row[5] for row in rows) == ["dropout", "l2", "mixup", "none", "sam"] and {row[6] for row in rows} == {"3"}
