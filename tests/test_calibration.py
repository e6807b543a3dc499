"""Calibration metrics (regbench.engine.calibration): the ECE against torchmetrics'
MulticlassCalibrationError (l1 norm), the Brier score against a direct numpy computation, on the
same predictions; and end to end, a run's result.json against both on its saved model's
predictions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn

from regbench.data.datasets import load
from regbench.engine.calibration import calibration, summary
from regbench.engine.runner import run
from regbench.models import build_model

torchmetrics = pytest.importorskip("torchmetrics", reason="the ECE oracle: pip install torchmetrics (the test extra)")
from torchmetrics.classification import MulticlassCalibrationError  # noqa: E402

QUIET = Console(quiet=True)


def _logits_data(n: int, classes: int, seed: int, scale: float = 3.0) -> SimpleNamespace:
    """A split of random logits (the network is nn.Identity) and labels that agree with them often."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g) * scale
    y = torch.where(torch.rand(n, generator=g) < 0.7, logits.argmax(1), torch.randint(classes, (n,), generator=g))
    return SimpleNamespace(x_test=logits, y_test=y, prepare=lambda x: x)


def _brier(probs: np.ndarray, y: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[y]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


@pytest.mark.parametrize("classes,bins,batch", [(10, 15, 4096), (10, 15, 7), (3, 10, 50), (2, 15, 64), (5, 1, 33)])
def test_ece_and_brier_against_torchmetrics_and_numpy(classes, bins, batch):
    data = _logits_data(500, classes, seed=classes * 100 + bins)
    values = calibration(nn.Identity(), data, "test", batch, bins).tolist()
    probs = torch.softmax(data.x_test.double(), dim=1)
    assert (probs.max(1).values < 1).all()  # torchmetrics gives a confidence of exactly 1 a bin of its own
    oracle = MulticlassCalibrationError(num_classes=classes, n_bins=bins, norm="l1")(probs, data.y_test).item()
    assert values[0] == pytest.approx(oracle, abs=1e-6)  # torchmetrics bins float32 confidences
    assert values[1] == pytest.approx(_brier(probs.numpy(), data.y_test.numpy()), rel=1e-12)
    diagram = summary(values, bins)
    assert sum(diagram["count"]) == 500
    top = probs.max(1).values.numpy()
    hit = (probs.argmax(1) == data.y_test).numpy()
    which = np.minimum((top * bins).astype(int), bins - 1)
    for b in range(bins):
        inside = which == b
        assert diagram["count"][b] == inside.sum()
        if inside.any():
            assert diagram["confidence"][b] == pytest.approx(top[inside].mean(), rel=1e-12)
            assert diagram["accuracy"][b] == pytest.approx(hit[inside].mean(), rel=1e-12)
        else:
            assert diagram["confidence"][b] is None and diagram["accuracy"][b] is None


def test_perfect_and_certain_predictions():
    """Confident and right: ECE 0 and Brier 0, a confidence of 1 in the last bin; confident and
    wrong: ECE 1 and Brier 2 (the largest)."""
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    right = SimpleNamespace(x_test=logits, y_test=torch.tensor([0, 1]), prepare=lambda x: x)
    wrong = SimpleNamespace(x_test=logits, y_test=torch.tensor([1, 0]), prepare=lambda x: x)
    ece, brier, *rest = calibration(nn.Identity(), right, "test", 8, 15).tolist()
    assert ece == pytest.approx(0.0, abs=1e-12) and brier == pytest.approx(0.0, abs=1e-12)
    assert summary([ece, brier, *rest], 15)["count"][-1] == 2
    ece, brier, *_ = calibration(nn.Identity(), wrong, "test", 8, 15).tolist()
    assert ece == pytest.approx(1.0) and brier == pytest.approx(2.0)


def test_run_reports_the_saved_models_calibration(tiny_cfg, tmp_path):
    """result.json's ECE and Brier score of each split are the saved model's, recomputed with
    torchmetrics and numpy; its reliability diagram holds every test sample; metrics.csv has no
    calibration columns (computed once, on the reported weights)."""
    cfg = tiny_cfg("dataset=digits", "save_model=true", "trainer.ece_bins=10")
    result = run(cfg, tmp_path / "run", QUIET)
    assert result["status"] == "ok", result.get("error")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["metrics"] == result["metrics"]
    data = load(cfg.dataset, torch.device("cpu"))
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task, [])
    model.load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    model.eval()
    for split in ("train", "val", "test"):
        with torch.no_grad():
            probs = torch.softmax(model(data.prepare(getattr(data, f"x_{split}"))).double(), dim=1)
        y = getattr(data, f"y_{split}")
        assert (probs.max(1).values.float() < 1).all()  # see test_ece_and_brier_against_torchmetrics_and_numpy
        oracle = MulticlassCalibrationError(num_classes=data.n_outputs, n_bins=10, norm="l1")(probs, y).item()
        assert result["metrics"][f"{split}_ece"] == pytest.approx(oracle, abs=1e-6), split
        assert result["metrics"][f"{split}_brier"] == pytest.approx(_brier(probs.numpy(), y.numpy()), rel=1e-9), split
    assert result["calibration"]["bins"] == 10 and sum(result["calibration"]["test"]["count"]) == len(data.y_test)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "ece" not in header and "brier" not in header


def test_regression_has_no_calibration(tiny_cfg, tmp_path):
    result = run(tiny_cfg("dataset=diabetes", "dataset.train_size=null", "trainer.max_epochs=1"), tmp_path / "run", QUIET)
    assert result["status"] == "ok", result.get("error")
    assert not any("ece" in k or "brier" in k for k in result["metrics"]) and "calibration" not in result


# ------------------------------------------------------------------ reports and studies


def _calibrated_run(folder, *, reg, alpha, seed, dataset, acc, ece, brier):
    """A classification run folder whose result.json has calibration metrics (val = test here, unless a tuple)."""
    from tests.helpers.rundirs import write_run

    (val_ece, test_ece) = ece if isinstance(ece, tuple) else (ece, ece)
    metrics = {"train_acc": 1.0, "val_acc": acc, "test_acc": acc, "train_loss": 0.0, "val_loss": 1 - acc,
               "test_loss": 1 - acc, "train_ece": 0.0, "val_ece": val_ece, "test_ece": test_ece, "train_brier": 0.0,
               "val_brier": brier, "test_brier": brier}
    return write_run(folder, reg=reg, alpha=alpha, seed=seed, dataset=dataset, metrics=metrics,
                     extra={"reg.l1_ratio": 0.5, "reg.dropout": 0.0})


def test_study_ranks_by_ece_and_brier_lower_better_and_chooses_on_validation(tmp_path):
    """l2 is more accurate but worse calibrated: by acc it ranks first, by ece or brier last; its
    strength is the one with the lowest validation ECE, its score that one's test ECE."""
    from regbench.reporting.study import METRICS, build

    n = 0
    for d in range(3):
        for seed in range(3):
            off = 0.001 * (seed - 1)
            _calibrated_run(tmp_path / str(n), reg="none", alpha=0.0, seed=seed, dataset=f"d{d}", acc=0.8 + off,
                            ece=0.05 + off, brier=0.3 + off)
            # l2 at 1e-4: best validation ECE, worse test ECE; at 1e-2 the reverse
            _calibrated_run(tmp_path / str(n + 1), reg="l2", alpha=1e-4, seed=seed, dataset=f"d{d}", acc=0.9 + off,
                            ece=(0.01 + off, 0.10 + off), brier=0.4 + off)
            _calibrated_run(tmp_path / str(n + 2), reg="l2", alpha=1e-2, seed=seed, dataset=f"d{d}", acc=0.85 + off,
                            ece=(0.2 + off, 0.001 + off), brier=0.5 + off)
            n += 3
    by = {m: build([tmp_path], [METRICS[m]]).cells.set_index(["dataset", "reg"]) for m in ("acc", "ece", "brier")}
    assert (by["acc"].xs("l2", level="reg")["rank"] == 1).all()
    for m in ("ece", "brier"):
        assert (by[m].xs("none", level="reg")["rank"] == 1).all(), m
    l2 = by["ece"].xs("l2", level="reg")
    assert (l2["chosen"] == "alpha=0.0001").all() and l2["score"].to_numpy() == pytest.approx([0.10] * 3)
    assert (by["brier"].xs("l2", level="reg")["chosen"] == "alpha=0.0001").all()  # brier 0.4 < 0.5


def test_report_summarises_calibration_and_its_delta_and_pivots_on_it(tmp_path):
    """report.csv: test_ece / test_brier means over seeds and their paired deltas against the
    baseline (negative: better calibrated than it); `--metric test_ece` pivots on it."""
    from regbench.reporting.aggregate import pivot
    from regbench.reporting.report import build

    for seed in range(3):
        _calibrated_run(tmp_path / f"n{seed}", reg="none", alpha=0.0, seed=seed, dataset="digits", acc=0.9,
                        ece=0.08 + 0.01 * seed, brier=0.2)
        _calibrated_run(tmp_path / f"l{seed}", reg="l2", alpha=1e-3, seed=seed, dataset="digits", acc=0.9,
                        ece=0.03 + 0.012 * seed, brier=0.15 + 0.001 * seed)
    report = build([tmp_path])
    row = report.table.set_index("reg").loc["l2"]
    assert row["test_ece.mean"] == pytest.approx(0.042) and row["val_ece.mean"] == pytest.approx(0.042)
    assert row["test_brier.mean"] == pytest.approx(0.151)
    assert row["delta.test_ece"] == pytest.approx(0.042 - 0.09) and row["delta.test_brier"] == pytest.approx(-0.049)
    assert row["delta.n_pairs"] == 3
    table = pivot(report.runs, "reg.alpha", "test_ece")
    assert list(table.columns) == ["reg", "reg.alpha=0", "reg.alpha=0.001"]


def _diagram(count, confidence, accuracy, bins=4):
    return json.dumps({"bins": bins, "test": {"count": count, "confidence": confidence, "accuracy": accuracy}})


def test_the_reliability_diagram_pools_the_seeds_and_keeps_the_figure_contract(tmp_path, monkeypatch):
    """Per bin: the seeds' counts added, confidence and accuracy weighted by them; the accuracy
    bar reaches the pooled accuracy and the gap bar the pooled confidence; an empty bin has no
    bar; one panel per configuration, in the order given; the report figures' contract holds."""
    from regbench.reporting import plots
    from tests.test_report_figures import _contract

    closed: list = []
    monkeypatch.setattr(plots.plt, "close", closed.append)
    runs = pd.DataFrame([
        {"status": "ok", "config": 0, "test_ece": 0.1,
         "calibration": _diagram([0, 2, 1, 1], [None, 0.4, 0.6, 0.9], [None, 0.5, 1.0, 0.0])},
        {"status": "ok", "config": 0, "test_ece": 0.3,
         "calibration": _diagram([0, 2, 0, 3], [None, 0.3, None, 0.95], [None, 1.0, None, 1.0])},
        {"status": "ok", "config": 1, "test_ece": 0.0,
         "calibration": _diagram([0, 0, 0, 5], [None, None, None, 0.8], [None, None, None, 0.8])},
        {"status": "failed", "config": 1, "test_ece": None, "calibration": None},
    ])
    pooled = plots.pooled_bins(runs.loc[runs["config"] == 0, "calibration"])
    assert pooled["count"].tolist() == [0, 4, 1, 4] and int(pooled["runs"]) == 2
    assert pooled["confidence"][1:].tolist() == pytest.approx([0.35, 0.6, (0.9 + 3 * 0.95) / 4])
    assert pooled["accuracy"][1:].tolist() == pytest.approx([0.75, 1.0, 0.75]) and np.isnan(pooled["accuracy"][0])
    png = plots.reliability(runs, tmp_path / "reliability.png", {0: "none", 1: "l2: alpha=0.001"}, [1, 0])
    fig = closed[-1]
    assert [ax.get_title() for ax in fig.axes] == ["l2: alpha=0.001", "none"]
    ax = fig.axes[1]
    accuracy = [p for p in ax.patches if p.get_gid() == "accuracy:0"]
    gap = [p for p in ax.patches if p.get_gid() == "gap:0"]
    assert [round(p.get_x(), 6) for p in accuracy] == [0.25, 0.5, 0.75]  # bin 0 is empty
    assert [p.get_height() for p in accuracy] == pytest.approx([0.75, 1.0, 0.75])
    assert [p.get_y() + p.get_height() for p in gap] == pytest.approx([0.35, 0.6, (0.9 + 3 * 0.95) / 4])
    assert "ECE 0.200" in " ".join(t.get_text() for t in ax.texts)  # the mean of its seeds' test ECE
    _contract(png, fig)


def test_no_reliability_diagram_without_recorded_bins():
    from regbench.reporting import plots

    assert plots.reliability(pd.DataFrame({"status": ["ok"], "config": [0]}), Path("unused.png"), {}) is None


def test_non_finite_outputs_give_null_bins_not_nan():
    """A network whose outputs are NaN (a diverged run's): its ECE and Brier are NaN (null in
    result.json, like its loss), and the diagram's confidences null: result.json cannot hold NaN."""
    data = SimpleNamespace(x_test=torch.full((4, 3), float("nan")), y_test=torch.tensor([0, 1, 2, 0]),
                           prepare=lambda x: x)
    values = calibration(nn.Identity(), data, "test", 8, 5).tolist()
    assert np.isnan(values[0]) and np.isnan(values[1])
    diagram = summary(values, 5)
    assert sum(diagram["count"]) == 4
    assert all(v is None for v in diagram["confidence"])
    json.dumps(diagram, allow_nan=False)  # the accuracy of NaN's argmax is a number
