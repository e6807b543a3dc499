"""Calibration metrics (regbench.engine.calibration): the ECE against torchmetrics'
MulticlassCalibrationError (l1 norm), the Brier score against a direct numpy computation, on the
same predictions; and end to end, a run's result.json against both on its saved model's
predictions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
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
