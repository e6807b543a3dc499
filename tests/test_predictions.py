"""Saved predictions (predictions.npz, issue 27 item 3): what a run keeps, its float16 criterion,
and what `regbench report --ensemble / --temperature` makes of it, against outside oracles: the
models recomputed from their saved weights (model.pt), torchmetrics' ECE, scikit-learn's R² and
scipy's bounded minimiser for the temperature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from regbench import predictions as P
from regbench.data.datasets import load
from regbench.engine import predictions as engine_predictions
from regbench.engine.runner import run
from regbench.models import build_model
from regbench.reporting import ensemble
from regbench.reporting.report import build

QUIET = Console(quiet=True)


def _within(measured: float, oracle: float) -> bool:
    """The tolerance the file states: TOLERANCE x max(1, |value|)."""
    return abs(measured - oracle) <= P.TOLERANCE * max(1.0, abs(oracle))


def _recomputed(cfg, folder: Path, data) -> torch.Tensor:
    """A run's test outputs recomputed from its model.pt (float64)."""
    model = build_model(cfg.model, cfg.reg, data.input_shape, data.n_outputs, data.task, [])
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        return model(data.prepare(data.x_test.clone())).double()


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_seed_ensemble_from_saved_predictions_equals_the_models_recomputed_from_their_weights(tiny_cfg, tmp_path):
    """The issue's check: the ensemble `regbench report --ensemble` evaluates from predictions.npz
    equals the average of the class probabilities of the models reloaded from model.pt, scored
    with torchmetrics (ECE) and numpy (NLL, accuracy, Brier score), within the stated tolerance."""
    from torchmetrics.classification import MulticlassCalibrationError

    cfgs = [tiny_cfg("dataset=digits", "dataset.split_seed=0", f"seed={s}", "save_model=true") for s in range(3)]
    for i, cfg in enumerate(cfgs):
        assert run(cfg, tmp_path / f"s{i}", QUIET)["status"] == "ok"
        assert (tmp_path / f"s{i}" / P.PREDICTIONS_FILE).is_file()
    data = load(cfgs[0].dataset, torch.device("cpu"))
    probs = torch.stack([torch.softmax(_recomputed(c, tmp_path / f"s{i}", data), 1) for i, c in enumerate(cfgs)]).mean(0)
    y = data.y_test
    oracle = {
        "loss": -torch.log(probs[torch.arange(len(y)), y]).mean().item(),
        "acc": (probs.argmax(1) == y).double().mean().item(),
        "ece": MulticlassCalibrationError(num_classes=data.n_outputs, n_bins=15, norm="l1")(probs, y).item(),
        "brier": ((probs - torch.nn.functional.one_hot(y, data.n_outputs).double()) ** 2).sum(1).mean().item(),
    }
    report = build([tmp_path])
    got = ensemble.evaluate(report.runs, report.table, [""], False)
    assert got.notes == [] and len(got.ensembles) == 1
    row = got.ensembles.iloc[0]
    assert row["members"] == 3
    for k, v in oracle.items():
        assert _within(row[f"ensemble_test_{k}"], v), (k, row[f"ensemble_test_{k}"], v)
    # the members' mean is the runs' own test figures (result.json), averaged
    for k in oracle:
        assert _within(row[f"mean_member_test_{k}"], report.runs[f"test_{k}"].mean()), k
    # an ensemble differs from its members: the check is not of one model against itself
    assert row["ensemble_test_loss"] != pytest.approx(row["mean_member_test_loss"], abs=1e-4)


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_regression_ensemble_averages_the_outputs(tiny_cfg, tmp_path):
    """A regression's ensemble: the mean of the reloaded models' outputs, scored with scikit-learn."""
    from sklearn.metrics import mean_squared_error, r2_score

    cfgs = [tiny_cfg("dataset=diabetes", "dataset.train_size=null", "dataset.split_seed=0", f"seed={s}",
                     "save_model=true") for s in range(2)]
    for i, cfg in enumerate(cfgs):
        assert run(cfg, tmp_path / f"s{i}", QUIET)["status"] == "ok"
    data = load(cfgs[0].dataset, torch.device("cpu"))
    mean = torch.stack([_recomputed(c, tmp_path / f"s{i}", data) for i, c in enumerate(cfgs)]).mean(0).numpy()
    y = data.y_test.double().numpy().reshape(mean.shape)
    report = build([tmp_path])
    row = ensemble.evaluate(report.runs, report.table, [""], False).ensembles.iloc[0]
    assert _within(row["ensemble_test_r2"], r2_score(y, mean))
    assert _within(row["ensemble_test_loss"], mean_squared_error(y, mean) * y.shape[1] if y.ndim == 2 else
                   mean_squared_error(y, mean))


def test_float16_only_where_no_metric_moves_beyond_the_tolerance():
    """Moderate logits keep float16 (every metric within TOLERANCE, as the file records); logits
    so large that float16 rounding moves the loss, or beyond float16's range, keep float32."""
    g = np.random.default_rng(0)
    y = {s: g.integers(0, 10, 2000) for s in P.SPLITS}
    moderate = {s: (g.normal(size=(2000, 10)) * 3).astype(np.float32) for s in P.SPLITS}
    dtype, largest = P.storage("classification", moderate, y, 15)
    assert dtype == np.float16 and largest <= P.TOLERANCE
    for s in P.SPLITS:  # the stated criterion, checked independently on the round trip
        exact = P.scores("classification", moderate[s], y[s], 15)
        rounded = P.scores("classification", moderate[s].astype(np.float16).astype(np.float32), y[s], 15)
        assert all(_within(rounded[k], exact[k]) for k in ("loss", "acc", "ece", "brier"))
    # logits offset by 2000 (softmax does not see the offset; float16 keeps whole numbers only there)
    offset = {s: (2000 + g.normal(size=(2000, 10)) * 2).astype(np.float32) for s in P.SPLITS}
    dtype, largest = P.storage("classification", offset, y, 15)
    assert dtype == np.float32 and largest > P.TOLERANCE
    huge = {s: np.full((5, 2), 7e4, np.float32) for s in P.SPLITS}
    assert P.storage("regression", huge, {s: np.zeros((5, 2), np.float32) for s in P.SPLITS}, 15)[0] == np.float32


def test_the_file_round_trips_and_says_its_dtype(tiny_cfg, tmp_path):
    """What a run writes reads back: its metrics from the saved outputs are result.json's within
    the tolerance; save_predictions=false, and auto above its size, write nothing."""
    result = run(tiny_cfg("dataset=digits"), tmp_path / "run", QUIET)
    saved = P.read(tmp_path / "run" / P.PREDICTIONS_FILE)
    assert saved["meta"]["dtype"] in ("float16", "float32") and saved["meta"]["config_hash"] == result["config_hash"]
    assert saved["meta"]["largest_change"] <= P.TOLERANCE or saved["meta"]["dtype"] == "float32"
    for s in P.SPLITS:
        mine = P.scores("classification", saved[f"{s}_outputs"], saved[f"{s}_targets"], 15)
        for k in ("loss", "acc", "ece", "brier"):
            # result.json's figures come from float32 torch arithmetic: their own 1e-6 on top of the file's tolerance
            assert abs(mine[k] - result["metrics"][f"{s}_{k}"]) <= P.TOLERANCE * max(1, abs(mine[k])) + 1e-6, (s, k)
    assert run(tiny_cfg("dataset=digits", "save_predictions=false"), tmp_path / "off", QUIET)["status"] == "ok"
    assert not (tmp_path / "off" / P.PREDICTIONS_FILE).exists()


def test_auto_keeps_nothing_above_its_size(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_predictions, "AUTO_MAX_VALUES", 10)
    assert run(tiny_cfg("dataset=digits"), tmp_path / "auto", QUIET)["status"] == "ok"
    assert not (tmp_path / "auto" / P.PREDICTIONS_FILE).exists()
    assert run(tiny_cfg("dataset=digits", "save_predictions=true"), tmp_path / "on", QUIET)["status"] == "ok"
    assert (tmp_path / "on" / P.PREDICTIONS_FILE).is_file()


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_the_temperature_minimises_the_validation_nll_as_scipy_finds(scale):
    """fit_temperature against scipy's bounded scalar minimiser on log T of the same NLL."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    g = np.random.default_rng(int(scale * 10))
    z = g.normal(size=(3000, 5)) * scale
    y = np.where(g.random(3000) < 0.6, z.argmax(1), g.integers(0, 5, 3000))

    def nll(log_t: float) -> float:
        return -log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean()

    oracle = np.exp(minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded",
                                    options={"xatol": 1e-10}).x)
    t = ensemble.fit_temperature(z, y)
    assert t == pytest.approx(oracle, rel=1e-4)
    assert nll(np.log(t)) <= nll(np.log(oracle)) + 1e-12


def _fake_run(folder: Path, test_targets: np.ndarray | None, seed: int, reg: str = "none") -> None:
    """A finished run's folder (tests.helpers.rundirs) with, unless `test_targets` is None, a predictions.npz."""
    from tests.helpers.rundirs import write_run

    write_run(folder, reg=reg, alpha=0.0 if reg == "none" else 1e-3, seed=seed, dataset="digits")
    if test_targets is not None:
        g = np.random.default_rng(seed)
        n = len(test_targets)
        # informative logits with one sample wrong: a temperature with a finite optimum (pure noise has none,
        # and neither has a split classified perfectly: report --temperature leaves such runs out)
        logits = 2.0 * np.eye(3)[test_targets] + 0.3 * g.normal(size=(n, 3))
        logits[0] = 2.0 * np.eye(3)[(test_targets[0] + 1) % 3]
        P.write(folder / P.PREDICTIONS_FILE, {s: logits.astype(np.float32) for s in P.SPLITS},
                {"val": test_targets, "test": test_targets},
                {"task": "classification", "dtype": "float32", "tolerance": P.TOLERANCE, "bins": 15})


def test_refusals_are_one_line_each(tmp_path, capsys):
    """Members on different test sets: that ensemble refused in one line; runs without a file:
    one line, the rest ensembled; an unknown name: one error line, exit 2."""
    from regbench.reporting.report_command import main

    _fake_run(tmp_path / "a0", np.array([0, 1, 2, 0]), 0)
    _fake_run(tmp_path / "a1", np.array([0, 1, 2, 1]), 1)  # another split
    _fake_run(tmp_path / "b0", np.array([0, 1, 2, 0]), 0, reg="l2")
    _fake_run(tmp_path / "b1", np.array([0, 1, 2, 0]), 1, reg="l2")
    _fake_run(tmp_path / "b2", None, 2, reg="l2")  # older: no predictions
    report = build([tmp_path])
    got = ensemble.evaluate(report.runs, report.table, [""], True)
    assert list(got.ensembles["members"]) == [2] and got.ensembles["ensemble"].iloc[0].endswith(":l2")
    assert sum("test sets differ" in n for n in got.notes) == 1
    assert sum("have no predictions.npz" in n and n.startswith("1 of 5") for n in got.notes) == 1
    assert list(got.temperatures["runs"]) == [2, 2]
    assert main([str(tmp_path), "--ensemble", "nonesuch", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regbench: error: --ensemble nonesuch:")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_stacked_members_save_what_they_would_alone(tmp_path):
    """A stack's members write the predictions their lone runs write (stacks of MLPs are bit for bit)."""
    from tests.helpers.compare import alone_and_stacked

    variants = [["seed=0"], ["seed=1"]]
    alone, stacked = alone_and_stacked(tmp_path, ["dataset=digits", "dataset.split_seed=0"], variants)
    assert all(r["status"] == "ok" for r in alone + stacked)
    for i in range(len(variants)):
        a, s = (P.read(tmp_path / f"{w}{i}" / P.PREDICTIONS_FILE) for w in ("alone", "stacked"))
        assert a["meta"] == s["meta"]
        for k in ("val_outputs", "test_outputs", "val_targets", "test_targets"):
            np.testing.assert_array_equal(a[k], s[k])


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_resumed_run_saves_what_its_uninterrupted_twin_saves(tmp_path, monkeypatch):
    """Ctrl-C after epoch 7 (last.pt after epoch 6), then the same command: predictions.npz bit for bit
    the one of the run never interrupted."""
    from tests.helpers.configs import make_cfg
    from tests.helpers.interrupt import ctrl_c_after_row

    args = ("reg=[dropout,l1]", "dataset.train_size=300", "model.hidden_sizes=[32]", "trainer.max_epochs=10",
            "trainer.checkpoint_seconds=2.5")
    run(make_cfg(*args), tmp_path / "clean", QUIET)
    folder = tmp_path / "interrupted"
    let_run = ctrl_c_after_row(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(*args), folder, QUIET)
    let_run()
    assert not (folder / P.PREDICTIONS_FILE).exists()
    assert run(make_cfg(*args), folder, QUIET)["resumed_from_epoch"] == 6
    a, b = P.read(tmp_path / "clean" / P.PREDICTIONS_FILE), P.read(folder / P.PREDICTIONS_FILE)
    assert a["meta"] == b["meta"]
    for k in ("val_outputs", "test_outputs", "val_targets", "test_targets"):
        np.testing.assert_array_equal(a[k], b[k])


def test_the_command_writes_the_tables_and_the_page_keeps_them(tmp_path, capsys):
    """`regbench report --ensemble --temperature`: ensemble.csv and temperature.csv, the same
    tables on report.html, kept there by a later report without the options."""
    from regbench.reporting.report_command import ENSEMBLE_TITLE, TEMPERATURE_TITLE, main

    for seed in range(2):
        _fake_run(tmp_path / "runs" / f"n{seed}", np.array([0, 1, 2, 0, 2]), seed)
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs"), "--ensemble", "--temperature", "--plots", "--out", str(out)]) == 0
    assert (out / "reliability_ensemble.png").is_file() and (out / "reliability_temperature.png").is_file()
    ensembles, temperatures = (pd.read_csv(out / f) for f in ("ensemble.csv", "temperature.csv"))
    assert list(ensembles["members"]) == [2] and list(temperatures["runs"]) == [2]
    page = (out / "report.html").read_text()
    assert ENSEMBLE_TITLE.split(" (")[0] in page and TEMPERATURE_TITLE.split(":")[0] in page
    assert main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert ENSEMBLE_TITLE.split(" (")[0] in page and TEMPERATURE_TITLE.split(":")[0] in page
    capsys.readouterr()


def test_a_temperature_the_validation_split_cannot_tell_is_left_out_and_said(tmp_path):
    """A validation split classified perfectly: its NLL keeps falling as T -> 0, so the fit ends at
    the searched range's end; the run is left out of the temperature table, in one note."""
    from tests.helpers.rundirs import write_run

    targets = np.array([0, 1, 2, 0, 1])
    perfect = 3.0 * np.eye(3)[targets]
    assert ensemble.fit_temperature(perfect, targets) == ensemble.T_RANGE[0]
    for seed in (0, 1):
        folder = tmp_path / f"r{seed}"
        write_run(folder, reg="none", alpha=0.0, seed=seed, dataset="digits")
        logits = perfect.copy()
        if seed == 1:  # one sample wrong: a finite optimum
            logits[0] = 3.0 * np.eye(3)[1]
        P.write(folder / P.PREDICTIONS_FILE, {s: logits.astype(np.float32) for s in P.SPLITS},
                {"val": targets, "test": targets},
                {"task": "classification", "dtype": "float32", "tolerance": P.TOLERANCE, "bins": 15})
    report = build([tmp_path])
    got = ensemble.evaluate(report.runs, report.table, None, True)
    assert list(got.temperatures["runs"]) == [1]
    assert ensemble.T_RANGE[0] < got.temperatures["temperature"].iloc[0] < ensemble.T_RANGE[1]
    notes = [n for n in got.notes if "left out" in n]
    assert len(notes) == 1 and notes[0].startswith("--temperature: 1 of 2 runs of ") and "no minimum" in notes[0]
