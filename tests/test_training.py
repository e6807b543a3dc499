"""Tests of regbench.engine.loop (early stopping, divergence, evaluation) and of the runner's
reproducibility. The regularizers' own tests of the training step (augmentation, label smoothing,
batch norm, L1's proximal step) are in tests/regularizers/."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.metrics import mean_squared_error, r2_score
from torch import nn
from torch.nn import functional as F

import regbench.engine.steps as engine
from regbench.data.datasets import Data
from regbench.engine.loop import evaluate, fit
from regbench.engine.runner import run
from regbench.engine.network import tensors
from regbench.models import Regressor, build_model
from tests.helpers.configs import make_cfg
from tests.helpers.data import table_data as _table_data
from tests.helpers.data import torchvision_root
from tests.helpers.engine import stack_of
from tests.helpers.rundirs import metrics_rows
from tests.helpers.syncs import HostSyncs, fit_under_host_syncs


def _quiet() -> Console:
    return Console(file=io.StringIO())


# --------------------------------------------------------------------------- early stopping (scripted)


class Script:
    """Stands in for train_epoch and evaluate: every epoch writes a recognisable value into all
    parameters and buffers, snapshots the state, and the val loss of that epoch is scripted."""

    def __init__(self, val_losses, step_losses=None):
        self.val_losses = list(val_losses)
        self.step_losses = step_losses
        self.epoch = 0
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def train_epoch(self, stack, data, batch):
        self.epoch += 1
        with torch.no_grad():
            for i, t in enumerate(stack.params + stack.buffers):
                t.fill_(self.epoch + 0.01 * i)
            stack.step += 1
        self.snapshots[self.epoch] = stack.member_state(0)
        step = 0.0 if self.step_losses is None else self.step_losses[self.epoch - 1]
        return torch.tensor([step])

    def evaluate(self, stack, data, split, batch):
        loss = self.val_losses[self.epoch - 1] if split == "val" else 1.0
        return torch.tensor([[loss, 0.5]], dtype=torch.float64)


def _scripted_fit(monkeypatch, val_losses, *overrides, step_losses=None):
    script = Script(val_losses, step_losses)
    monkeypatch.setattr(engine, "train_epoch", script.train_epoch)
    monkeypatch.setattr(engine, "evaluate", script.evaluate)
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[4]", "reg.batchnorm=true", *overrides)
    data = _table_data()
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    stack = stack_of(cfg, model)
    rows = []
    fit(stack, data, on_row=lambda member, row: rows.append(row))
    return stack.members[0].state, model, script, rows


def _assert_state(model: nn.Module, expected: list[torch.Tensor]) -> None:
    params, _, buffers = tensors(model)
    assert len(params + buffers) == len(expected)
    for i, (t, e) in enumerate(zip(params + buffers, expected)):
        assert torch.equal(t, e), i


def test_early_stopping_stops_at_best_plus_patience_and_restores_best(monkeypatch):
    val = [5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    result, model, script, rows = _scripted_fit(monkeypatch, val, "trainer.patience=3", "trainer.max_epochs=12")
    assert result.best_epoch == 4
    assert len(result.history) == script.epoch == 4 + 3
    assert result.stopped_early and not result.diverged
    assert [r["val_loss"] for r in result.history] == val[:7]
    assert [r["epoch"] for r in rows] == list(range(1, 8))  # on_epoch saw every epoch
    _assert_state(model, script.snapshots[4])  # parameters and batch-norm buffers of the best epoch
    assert not torch.equal(model[1].weight, script.snapshots[7][2])  # the batch norm's weight


def test_early_stopping_patience_one(monkeypatch):
    result, model, script, _ = _scripted_fit(monkeypatch, [3.0, 2.0, 2.0, 1.0], "trainer.patience=1")
    assert (result.best_epoch, len(result.history), result.stopped_early) == (2, 3, True)
    _assert_state(model, script.snapshots[2])  # an equal val loss is no improvement


def test_min_delta_requires_an_improvement_larger_than_min_delta(monkeypatch):
    # best 4.0 @1; 3.75 improves by exactly min_delta (no); 3.5 by 0.5 (yes, @3);
    # 3.375 and 3.3 improve on 3.5 by less than 0.25 (no): stop after 3 + 3 epochs.
    val = [4.0, 3.75, 3.5, 3.375, 3.3, 3.3, 3.0, 2.0]
    result, model, script, _ = _scripted_fit(
        monkeypatch, val, "trainer.patience=3", "trainer.min_delta=0.25", "trainer.max_epochs=8"
    )
    assert result.best_epoch == 3
    assert len(result.history) == 6 and result.stopped_early
    _assert_state(model, script.snapshots[3])


def test_without_min_delta_small_improvements_count(monkeypatch):
    val = [4.0, 3.75, 3.5, 3.375, 3.3, 3.3, 3.3, 3.3, 3.3]
    result, model, script, _ = _scripted_fit(monkeypatch, val, "trainer.patience=3", "trainer.max_epochs=9")
    assert result.best_epoch == 5 and len(result.history) == 8 and result.stopped_early
    _assert_state(model, script.snapshots[5])


def test_patience_null_runs_all_epochs_and_keeps_last_weights(monkeypatch):
    val = [5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 3.5, 4.0]
    result, model, script, _ = _scripted_fit(monkeypatch, val, "trainer.patience=null", "trainer.max_epochs=8")
    assert len(result.history) == 8 and not result.stopped_early and not result.diverged
    assert result.best_epoch == 4
    _assert_state(model, script.snapshots[8])


def test_patience_not_exhausted_still_restores_best(monkeypatch):
    val = [5.0, 4.0, 3.0, 2.0, 2.5, 3.0]
    result, model, script, _ = _scripted_fit(monkeypatch, val, "trainer.patience=10", "trainer.max_epochs=6")
    assert len(result.history) == 6 and not result.stopped_early
    _assert_state(model, script.snapshots[4])


@pytest.mark.parametrize("where", ["val", "step"])
def test_scripted_nan_marks_diverged_and_restores_best_finite(monkeypatch, where):
    val = [3.0, 2.0, 2.5, 1.0, 0.5]
    steps = [1.0] * 5
    if where == "val":
        val[3] = math.nan
    else:
        steps[3] = math.inf
    result, model, script, _ = _scripted_fit(
        monkeypatch, val, "trainer.patience=null", "trainer.max_epochs=5", step_losses=steps
    )
    assert result.diverged and not result.stopped_early
    assert len(result.history) == 4
    assert result.best_epoch == 2
    _assert_state(model, script.snapshots[2])  # even with patience=null


# --------------------------------------------------------------------------- divergence, for real


def test_huge_learning_rate_diverges_and_run_records_it(tmp_path):
    cfg = make_cfg("optim=sgd", "optim.lr=1e6", "dataset=digits", "dataset.train_size=200",
                   "model.hidden_sizes=[16]", "trainer.max_epochs=5")
    result = run(cfg, tmp_path, _quiet())  # must not raise
    assert result["status"] == "diverged"
    assert result["error"] is None
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["status"] == "diverged"
    assert 1 <= on_disk["epochs_run"] < 5
    assert on_disk["epochs_run"] == len(list(csv.DictReader(open(tmp_path / "metrics.csv"))))


def test_fit_flags_real_divergence():
    cfg = make_cfg("optim=sgd", "optim.lr=1e6", "model.hidden_sizes=[16]", "trainer.max_epochs=5",
                   "trainer.batch_size=16")
    data = _table_data(n=64)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    stack = stack_of(cfg, model)
    fit(stack, data)
    result = stack.members[0].state
    assert result.diverged
    last = result.history[-1]
    assert not all(math.isfinite(last[k]) for k in ("train_loss", "val_loss"))


# --------------------------------------------------------------------------- evaluate


def _dropout_bn_model(data: Data):
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[16]", "reg.dropout=0.5", "reg.batchnorm=true")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task)
    model.train()
    with torch.no_grad():  # move the batch-norm running statistics away from their defaults
        for _ in range(3):
            model(data.x_train * 2 + 1)
    return model


def test_evaluate_is_in_eval_mode_and_plain_cross_entropy():
    data = _table_data(n=80)
    model = _dropout_bn_model(data)
    a = evaluate(model, data, "train", 8192)
    b = evaluate(model, data, "train", 8192)
    assert torch.equal(a, b)
    assert not model.training
    with torch.no_grad():
        out = model(data.x_train)
        loss = F.cross_entropy(out, data.y_train).item()
        acc = (out.argmax(1) == data.y_train).double().mean().item()
    assert a[0].item() == pytest.approx(loss, rel=1e-6)
    assert a[1].item() == pytest.approx(acc, abs=1e-12)
    # a train-mode computation would differ (dropout, batch statistics)
    model.train()
    with torch.no_grad():
        train_mode = F.cross_entropy(model(data.x_train), data.y_train).item()
    assert abs(train_mode - loss) > 1e-3


def test_evaluate_batch_size_does_not_change_results():
    data = _table_data(n=80)
    model = _dropout_bn_model(data)
    for split in ("train", "val", "test"):
        full = evaluate(model, data, split, 8192)
        small = evaluate(model, data, split, 7)
        torch.testing.assert_close(full, small, rtol=1e-6, atol=1e-9)


def test_evaluate_regression_matches_sklearn():
    data = _table_data("regression", n=90)
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8]", "reg.dropout=0.3")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.reg, data.input_shape, 1, "regression")
    for split in ("train", "val"):
        mse, r2 = evaluate(model, data, split, 16).tolist()
        with torch.no_grad():
            model.eval()
            pred = model(getattr(data, f"x_{split}")).double().numpy()
        y = getattr(data, f"y_{split}").double().numpy()
        assert r2 == pytest.approx(r2_score(y, pred), rel=1e-6)
        assert mse == pytest.approx(mean_squared_error(y, pred), rel=1e-6)
    # a perfect predictor: r2 = 1, mse = 0
    perfect = Data("regression", data.x_train, data.x_train[:, 0] * 2.0, data.x_val, data.x_val[:, 0] * 2.0,
                   data.x_test, data.x_test[:, 0] * 2.0, 1, False)
    lin = nn.Sequential(nn.Linear(5, 1))
    with torch.no_grad():
        lin[0].weight.zero_()
        lin[0].weight[0, 0] = 2.0
        lin[0].bias.zero_()
    mse, r2 = evaluate(Regressor(lin), perfect, "val", 10).tolist()
    assert mse == pytest.approx(0.0, abs=1e-10) and r2 == pytest.approx(1.0, abs=1e-10)


# --------------------------------------------------------------------------- runner reproducibility

RUN = ("dataset=digits", "dataset.train_size=200", "trainer.max_epochs=3", "model.hidden_sizes=[32]",
       "reg.dropout=0.2", "reg.augment=true", "optim.lr=0.01")


def test_run_twice_same_seed_identical_metrics(tmp_path):
    a = run(make_cfg(*RUN), tmp_path / "a", _quiet())
    b = run(make_cfg(*RUN), tmp_path / "b", _quiet())
    assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
    assert a["epochs_run"] == 3
    assert a["metrics"] == b["metrics"]
    assert all(v is not None for v in a["metrics"].values())
    assert a["gap"] == b["gap"]
    assert (a["best_epoch"], a["sparsity"], a["n_params"]) == (b["best_epoch"], b["sparsity"], b["n_params"])
    assert metrics_rows(tmp_path / "a") == metrics_rows(tmp_path / "b")
    # a different seed gives different numbers: the equality above is not vacuous
    c = run(make_cfg(*RUN, "seed=1"), tmp_path / "c", _quiet())
    assert c["metrics"] != a["metrics"]


def test_run_result_json_matches_returned_result(tmp_path):
    result = run(make_cfg(*RUN, "trainer.max_epochs=2"), tmp_path, _quiet())
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["status"] == "ok"
    assert on_disk["metrics"] == result["metrics"]
    assert on_disk["epochs_run"] == 2 == len(metrics_rows(tmp_path))
    assert on_disk["params"]["reg.dropout"] == 0.2
    assert np.isfinite(on_disk["metrics"]["test_loss"])


def test_the_host_sync_probe_sees_each_kind_of_sync():
    with HostSyncs() as probe:
        t = torch.arange(4.0)
        float(t.sum())
        t[t > 1]
        t.tolist()
        t.sum().item()
        if t.any():
            t[1:3] + 1  # plain slicing and arithmetic: no sync
    assert [call for call, _ in probe.calls] == ["__float__", "__getitem__", "tolist", "item", "__bool__"]


def test_the_host_sync_probe_names_only_the_packages_own_functions(tmp_path):
    """A clone named `regbench` (git clone's default) puts the tests under a `/regbench/` folder
    too: their frames must not count as the package's."""
    import importlib.util

    from regbench.regularizers import sparsity

    folder = tmp_path / "regbench" / "tests"
    folder.mkdir(parents=True)
    (folder / "caller.py").write_text("def call_sparsity(f, w):\n    return f(w)\n")
    spec = importlib.util.spec_from_file_location("caller", folder / "caller.py")
    caller = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(caller)
    with HostSyncs() as probe:
        caller.call_sparsity(sparsity, [torch.zeros(2, 2)])
    assert probe.calls and all(where == ("sparsity",) for _, where in probe.calls)


@pytest.mark.parametrize("overrides", [
    ["reg=elasticnet"],                                          # proximal Adam
    ["reg=l1", "optim=sgd"],                                     # proximal SGD with momentum
    ["reg=weight_decay", "reg.dropout=0.3", "reg.batchnorm=true"],
    ["reg=l1", "reg.l1_proximal=false", "optim=adamw", "reg.weight_decay=1e-2", "reg.label_smoothing=0.1"],
    ["dataset=synthetic_regression", "reg=l2"],
    ["dataset=mnist", "model=cnn", "reg=augment", "model.channels=[4]", "model.hidden_sizes=[8]"],
    ["reg=[mixup,cutout,input_noise]", "reg.label_smoothing=0.1"],
    ["dataset=mnist", "model=cnn", "reg=[cutmix,cutout]", "model.channels=[4]", "model.hidden_sizes=[8]"],
    ["dataset=breast_cancer", "reg=[cutmix,cutout,input_noise]"],
], ids=["adam-prox", "sgd-prox", "decay-dropout-bn", "adamw-l1-in-loss", "regression", "mnist-cnn-augment",
        "mixup-cutout-noise", "mnist-cnn-cutmix-cutout", "table-cutmix-cutout-noise"])
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_training_reads_back_from_the_device_once_per_epoch(tmp_path, overrides):
    """The inner loop (steps, penalties, proximal and decay updates, evaluation of train and
    val) never waits for the device; fit reads the epoch's five numbers back in one call.
    On the CPU the probe stands in for the GPU check of tests/test_cuda.py, which needs CUDA."""
    if overrides[0] == "dataset=mnist":
        overrides = [*overrides, f"dataset.root={torchvision_root(tmp_path, 'MNIST')}", "dataset.train_size=512"]
    cfg = make_cfg("dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=4",
                   "trainer.patience=null", *overrides)
    stack, probe = fit_under_host_syncs(cfg, tmp_path)
    assert len(stack.members[0].state.history) == 4
    assert probe.calls == [("tolist", ("fit",))] * 4


def test_a_penalty_too_strong_to_learn_under_is_flagged_early_best(tmp_path, tiny_cfg):
    """alpha 0.1 of L1 zeroes the network within a few epochs: the validation loss is lowest at the
    start and early stopping reports an epoch-1-ish model. result.json says so."""
    strong = run(tiny_cfg("reg=l1", "reg.alpha=0.1", "trainer.max_epochs=20", "trainer.patience=3"), tmp_path / "strong")
    assert strong["stopped_early"] and strong["best_epoch"] <= 3 and strong["early_best"] is True
    assert json.loads((tmp_path / "strong" / "result.json").read_text())["early_best"] is True
    plain = run(tiny_cfg("trainer.max_epochs=20", "trainer.patience=3"), tmp_path / "plain")
    assert plain["best_epoch"] > 3 and plain["early_best"] is False
