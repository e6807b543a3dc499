"""Robustness under shift (regbench.data.corrupt, regbench.engine.shift): the corrupted test batch
against torchvision's own transforms and independent numpy/scipy oracles; severity 0 equals the
clean metric exactly; the noise is deterministic, the same in any evaluation batch, and apart from
training (the clean numbers are unchanged); a stacked member equals its lone run; refusals in one
line; end to end through the CLI, to the report's columns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn

from regbench import UserInputError
from regbench.config import schema
from regbench.data import corrupt
from regbench.data.datasets import Data
from regbench.engine import shift
from regbench.engine.loop import evaluate
from regbench.engine.runner import new_result, run
from tests.helpers.cli import regbench
from tests.helpers.compare import alone_and_stacked, bit_for_bit
from tests.helpers.configs import make_cfg

QUIET = Console(quiet=True)
SMALL = ["trainer.max_epochs=3", "model.hidden_sizes=[32]"]


def _images(n: int = 40, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> Data:
    """A classification of random uint8 images, stored as regbench stores images (per-channel statistics)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=g)
    mean = x.double().div(255).mean(dim=(0, 2, 3)).float().reshape(-1, 1, 1)
    std = x.double().div(255).std(dim=(0, 2, 3)).float().reshape(-1, 1, 1)
    return Data("classification", x, y, x, y, x, y, 4, True, mean, std)


def _table(n: int = 50, p: int = 6, task: str = "classification", seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if task == "classification" else torch.randn(n, 1, generator=g)
    return Data(task, x, y, x, y, x, y, 3 if task == "classification" else 1, False)


def _corrupted(data: Data, name: str, severity: float, seed: int = 0) -> torch.Tensor:
    return shift.inputs(data, seed, name, severity)(data.x_test, 0)


# --- the corruptions against torchvision and numpy / scipy ---------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name, severity", [("gaussian_blur", 0.7), ("gaussian_blur", 2.0), ("gaussian_blur", 9.0),
                                            ("contrast", 0.4), ("contrast", 1.0), ("brightness", 0.3)])
def test_an_image_corruption_is_torchvisions_transform_of_the_raw_images(channels, name, severity):
    """The corrupted, standardised batch equals torchvision's pipeline on the raw uint8 images: to
    float pixels, its transform, Normalize with the data's statistics."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    data = _images(c=channels)
    k = corrupt.blur_kernel_size(severity, 12, 10)
    transform = {"gaussian_blur": lambda: v2.GaussianBlur(k, sigma=(severity, severity)),
                 "contrast": lambda: v2.ColorJitter(contrast=(1 - severity, 1 - severity)),
                 "brightness": lambda: v2.ColorJitter(brightness=(1 - severity, 1 - severity))}[name]()
    oracle = v2.Compose([v2.ToDtype(torch.float32, scale=True), transform,
                         v2.Normalize(data.mean.flatten().tolist(), data.std.flatten().tolist())])
    expected = oracle(tv_tensors.Image(data.x_test))
    torch.testing.assert_close(_corrupted(data, name, severity), expected.as_subclass(torch.Tensor),
                               rtol=1e-5, atol=1e-5)


def _numpy_pixels(x: np.ndarray, name: str, severity: float) -> np.ndarray:
    """The image corruptions written out in numpy/scipy, from their definitions (float64 pixels in [0, 1])."""
    from scipy import ndimage

    if name == "gaussian_blur":
        radius = corrupt.blur_kernel_size(severity, *x.shape[-2:]) // 2
        # torch's reflect padding is scipy's `mirror` (the edge pixel not repeated)
        return ndimage.gaussian_filter(x, sigma=(0, 0, severity, severity), mode="mirror", radius=(0, 0, radius, radius))
    factor = 1 - severity
    if name == "brightness":
        return np.clip(x * factor, 0, 1)
    gray = x[:, 0] if x.shape[1] == 1 else 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # ITU-R 601-2 luma
    mean = gray.mean(axis=(1, 2))[:, None, None, None]
    return np.clip(factor * x + (1 - factor) * mean, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name, severity", [("gaussian_blur", 0.5), ("gaussian_blur", 1.5), ("contrast", 0.6),
                                            ("brightness", 0.8)])
def test_an_image_corruption_against_its_definition_in_numpy(channels, name, severity):
    data = _images(c=channels, seed=3)
    pixels = data.x_test.numpy().astype(np.float64) / 255
    mean, std = data.mean.double().numpy(), data.std.double().numpy()
    expected = (_numpy_pixels(pixels, name, severity) - mean) / std
    np.testing.assert_allclose(_corrupted(data, name, severity).double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_blur_kernel_is_three_sigmas_each_side_capped_by_the_image():
    assert [corrupt.blur_kernel_size(s, 28, 28) for s in (0.1, 0.5, 1, 1.5, 2)] == [3, 5, 7, 11, 13]
    assert corrupt.blur_kernel_size(20, 28, 12) == 23  # the reflection pad (11) fits in the narrower side (12)


def test_gaussian_noise_on_a_table_has_the_severitys_standard_deviation_in_standardised_units():
    data = _table(n=4000, p=25)
    for severity in (0.1, 0.5, 2.0):
        added = (_corrupted(data, "gaussian_noise", severity) - data.x_test).double()
        assert added.mean().item() == pytest.approx(0, abs=4 * severity / 316)  # 4 standard errors, n = 1e5
        assert added.std().item() == pytest.approx(severity, rel=0.01)
    assert not torch.equal(_corrupted(data, "gaussian_noise", 0.5), data.x_test)  # the stored split is untouched
    assert torch.equal(data.x_test, _table(n=4000, p=25).x_test)


def test_gaussian_noise_on_images_is_per_channel_noise_in_pixels_clipped_to_the_pixels_range():
    """Numpy oracle: pixel + severity * channel std * z, clipped to [0, 1], then standardised."""
    data = _images(n=30, c=3, seed=5)
    severity = 0.8
    z = shift.noise(tuple(data.x_test.shape), 0, 0, "gaussian_noise", severity, torch.device("cpu")).double().numpy()
    mean, std = data.mean.double().numpy(), data.std.double().numpy()
    pixels = np.clip(data.x_test.numpy() / 255 + severity * std * z, 0, 1)
    got = _corrupted(data, "gaussian_noise", severity).double().numpy()
    np.testing.assert_allclose(got, (pixels - mean) / std, rtol=1e-5, atol=1e-5)
    clipped = (pixels == 0) | (pixels == 1)
    assert 0.05 < clipped.mean() < 0.9  # the clipping was exercised


def test_noise_is_deterministic_per_seed_and_severity_and_the_same_in_any_batch():
    cpu = torch.device("cpu")
    whole = shift.noise((3000, 4), 0, 7, "gaussian_noise", 0.5, cpu)
    assert torch.equal(whole, shift.noise((3000, 4), 0, 7, "gaussian_noise", 0.5, cpu))
    for first, n in [(0, 1), (1000, 100), (1020, 10), (2047, 953)]:  # within a block, across blocks, to the end
        assert torch.equal(shift.noise((n, 4), first, 7, "gaussian_noise", 0.5, cpu), whole[first : first + n])
    assert not torch.equal(whole, shift.noise((3000, 4), 0, 8, "gaussian_noise", 0.5, cpu))  # another seed
    assert not torch.equal(whole, shift.noise((3000, 4), 0, 7, "gaussian_noise", 0.25, cpu))  # another severity
    state = torch.get_rng_state()
    shift.noise((3000, 4), 0, 7, "gaussian_noise", 0.5, cpu)
    assert torch.equal(state, torch.get_rng_state())  # the global stream training draws from is not touched


def _net(data: Data) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(data.input_shape)), data.n_outputs))


@pytest.mark.parametrize("make, names", [(_images, corrupt.CORRUPTIONS), (_table, ("gaussian_noise",)),
                                         (lambda: _table(task="regression"), ("gaussian_noise",))])
def test_severity_zero_is_the_clean_metric_exactly(make, names):
    data = make()
    model = _net(data)
    clean = evaluate(model, data, "test", 7)
    for name in names:
        assert torch.equal(evaluate(model, data, "test", 7, shift.inputs(data, 0, name, 0.0)), clean), name
        assert not torch.equal(evaluate(model, data, "test", 7, shift.inputs(data, 0, name, 0.5)), clean), name


def test_the_shifted_metric_does_not_depend_on_the_evaluation_batch():
    data = _table(n=2500, p=4)
    model = _net(data)
    by = [evaluate(model, data, "test", b, shift.inputs(data, 3, "gaussian_noise", 1.0)) for b in (2500, 1024, 333)]
    torch.testing.assert_close(by[0], by[1], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(by[0], by[2], rtol=1e-6, atol=1e-9)


def test_the_shift_node_holds_each_corruption_once():
    assert tuple(f.name for f in dataclasses.fields(schema.ShiftConfig)) == corrupt.CORRUPTIONS


# --- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("shift.contrast=[0.5]", "shift.contrast applies to images (dataset=mnist, fashion_mnist, cifar10, image_folder, "
                             "or arrays of uint8 images); dataset=digits is a table of 64 standardised pixels: use "
                             "shift.gaussian_noise"),
    ("shift.gaussian_noise=[-0.5]", "shift.gaussian_noise must be a list of distinct values >= 0 (got [-0.5])"),
    ("shift.brightness=[1.5]", "shift.brightness must be a list of distinct values in [0, 1] (got [1.5])"),
    ("shift.gaussian_noise=[0.5,0.5]", "shift.gaussian_noise must be a list of distinct values >= 0 (got [0.5, 0.5])"),
])
def test_a_corruption_that_does_not_apply_is_refused_in_one_line_before_any_work(override, message):
    from regbench.config.checks import check

    problems = check(make_cfg(override))
    assert message in problems and all("\n" not in p for p in problems)


def test_the_cli_refuses_blur_on_a_table_in_one_line_and_writes_nothing(tmp_path):
    out = regbench("run", "dataset=wine", "shift.gaussian_blur=[1]", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "regbench: error: shift.gaussian_blur applies to images (dataset=mnist, fashion_mnist, cifar10, image_folder, "
        "or arrays of uint8 images); dataset=wine is a table of standardised features: use shift.gaussian_noise"]
    assert not (tmp_path / "run").exists()


def _arrays(tmp_path: Path, x: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=rng.integers(0, 2, len(x)))
    return path


@pytest.mark.parametrize("x, override, message", [
    (np.random.default_rng(0).normal(size=(60, 5)), "shift.contrast=[0.5]",
     "shift.contrast applies to images stored as pixels; dataset=arrays holds a table of 5 standardised features: "
     "use shift.gaussian_noise"),
    (np.random.default_rng(0).integers(0, 256, (60, 2, 6, 6), dtype=np.uint8), "shift.brightness=[0.5]",
     "shift.brightness takes images of 1 or 3 channels (torchvision's adjust_brightness); dataset=arrays has 2"),
])
def test_a_users_arrays_are_refused_once_read_before_training(tmp_path, x, override, message):
    cfg = make_cfg("dataset=arrays", f"dataset.path={_arrays(tmp_path, x)}", override, *SMALL)
    with pytest.raises(UserInputError) as e:
        run(cfg, tmp_path / "run", QUIET)
    assert str(e.value) == message
    assert not (tmp_path / "run").exists()


# --- runs: the clean numbers unchanged, deterministic, stacked as alone ----------------------------------------


def test_a_run_with_shift_keeps_every_clean_number_and_its_config_hash(tmp_path):
    plain = run(make_cfg(*SMALL), tmp_path / "plain", QUIET)
    shifted = run(make_cfg(*SMALL, "shift.gaussian_noise=[0,0.5,2]"), tmp_path / "shifted", QUIET)
    again = run(make_cfg(*SMALL, "shift.gaussian_noise=[0,0.5,2]"), tmp_path / "again", QUIET)
    assert plain["config_hash"] != shifted["config_hash"]  # it computes more: another configuration
    assert plain["config_hash"] == new_result(make_cfg(*SMALL, "shift.gaussian_noise=[]"))["config_hash"]
    clean = {k: v for k, v in shifted["metrics"].items() if "@" not in k}
    assert clean == plain["metrics"]
    assert (tmp_path / "plain" / "metrics.csv").read_text().splitlines()[0] == \
        (tmp_path / "shifted" / "metrics.csv").read_text().splitlines()[0]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "plain" / "metrics.csv").drop(columns="seconds"),
                                  pd.read_csv(tmp_path / "shifted" / "metrics.csv").drop(columns="seconds"))
    m = shifted["metrics"]
    assert m["test_acc@gaussian_noise=0"] == m["test_acc"] and m["test_loss@gaussian_noise=0"] == m["test_loss"]
    assert m["test_acc@gaussian_noise=2"] < m["test_acc"]
    assert shifted["shift"] == {"gaussian_noise": {
        s: {"loss": m[f"test_loss@gaussian_noise={s}"], "acc": m[f"test_acc@gaussian_noise={s}"]} for s in ("0", "0.5", "2")}}
    assert again["metrics"] == shifted["metrics"] and again["shift"] == shifted["shift"]
    on_disk = json.loads((tmp_path / "shifted" / "result.json").read_text())
    assert on_disk["shift"] == shifted["shift"]


def test_a_regression_reports_r2_under_shift(tmp_path):
    result = run(make_cfg(*SMALL, "dataset=diabetes", "shift.gaussian_noise=[0,1]"), tmp_path / "run", QUIET)
    m = result["metrics"]
    assert m["test_r2@gaussian_noise=0"] == m["test_r2"] and m["test_r2@gaussian_noise=1"] < m["test_r2"]
    assert set(result["shift"]["gaussian_noise"]["1"]) == {"loss", "r2"}


@pytest.mark.slow
def test_a_stacked_member_is_its_lone_run_under_shift(tmp_path):
    variants = [["reg=none"], ["reg=l2", "reg.alpha=1e-3"], ["reg=none", "seed=1"]]  # seed 1: other noise, one split
    alone, stacked = alone_and_stacked(tmp_path, ["shift.gaussian_noise=[0.5,1.5]", "dataset.split_seed=0"], variants)
    bit_for_bit(tmp_path, alone, stacked, variants)
    for a, s in zip(alone, stacked):
        assert s["shift"] == a["shift"] and "test_acc@gaussian_noise=1.5" in s["metrics"]


@pytest.mark.slow
def test_image_corruptions_end_to_end_on_a_users_images_to_the_report(tmp_path):
    """dataset=arrays of uint8 images, two regularizers x two seeds through the CLI, every corruption;
    the report's csv and terminal table carry the shifted accuracies beside the clean one."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 240)
    x = np.clip(rng.normal(90 + 80 * y[:, None, None, None], 40, (240, 1, 10, 10)), 0, 255).astype(np.uint8)
    path = tmp_path / "images.npz"
    np.savez(path, x=x, y=y)
    out = regbench("run", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "dataset=arrays", f"dataset.path={path}",
                   "reg=none,l2", "seed=0,1", "trainer.max_epochs=3", "model.hidden_sizes=[16]",
                   "shift.gaussian_noise=[1]", "shift.gaussian_blur=[0,1]", "shift.contrast=[0.9]",
                   "shift.brightness=[0.5]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").rglob("result.json"))]
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    for r in results:
        assert set(r["shift"]) == {"gaussian_noise", "gaussian_blur", "contrast", "brightness"}
        assert r["metrics"]["test_acc@gaussian_blur=0"] == r["metrics"]["test_acc"]
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    for column in ("test_acc@gaussian_noise=1.mean", "test_acc@gaussian_blur=1.ci95", "test_acc@contrast=0.9.mean",
                   "test_loss@brightness=0.5.mean", "delta.test_acc@contrast=0.9", "delta.test_acc@contrast=0.9.p_ttest"):
        assert column in report, column
    means = report.set_index("reg")
    for reg in ("none", "l2"):
        runs = [r for r in results if r["reg"] == reg]
        assert means.loc[reg, "test_acc@contrast=0.9.mean"] == pytest.approx(
            np.mean([r["metrics"]["test_acc@contrast=0.9"] for r in runs]))
    table = regbench("report", str(tmp_path / "sweep"), "--format", "md", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    markdown = (tmp_path / "sweep" / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("|") and "test_acc" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells.index("test_acc (95% CI)") + 1 == cells.index("test_acc@gaussian_noise=1 (95% CI)")


# --- the study and the report read the shifted metrics --------------------------------------------------------


def _study_runs(root: Path) -> Path:
    """Three datasets, none against l2 at two strengths: l2 at 1e-4 is best on (clean) validation and on the
    clean test split, but under noise it loses to none; l2 at 1e-2 would win under noise, chosen by nobody."""
    from tests.helpers.rundirs import write_run

    n = 0
    for dataset in ("d0", "d1", "d2"):
        for reg, alpha, val, test, noisy in (("none", 0.0, 0.80, 0.80, 0.70), ("l2", 1e-4, 0.90, 0.85, 0.60),
                                              ("l2", 1e-2, 0.70, 0.70, 0.75)):
            for seed in (0, 1, 2):
                folder = write_run(root / str(n), reg=reg, alpha=alpha, seed=seed, dataset=dataset, val=val,
                                   test=test, extra={"reg.l1_ratio": 0.0 if reg == "l2" else 0.5})
                result = json.loads((folder / "result.json").read_text())
                result["metrics"]["test_acc@gaussian_noise=1"] = noisy + 0.001 * seed
                (folder / "result.json").write_text(json.dumps(result))
                n += 1
    return root


def test_a_study_ranks_by_a_shifted_metric_choosing_the_strength_on_clean_validation(tmp_path):
    from regbench.reporting.study import build, parse_metrics

    runs = _study_runs(tmp_path)
    clean = build([runs])
    assert (clean.cells.set_index("reg").loc["l2", "rank"] == 1).all()
    shifted = build([runs], parse_metrics("acc@gaussian_noise=1"))
    l2 = shifted.cells[shifted.cells["reg"] == "l2"]
    assert (l2["chosen"] == "alpha=0.0001").all()  # on the clean validation metric, never on a test one
    assert l2["score"].to_numpy() == pytest.approx([0.601] * 3)
    assert (l2["rank"] == 2).all() and (shifted.cells[shifted.cells["reg"] == "none"]["rank"] == 1).all()
    with pytest.raises(UserInputError, match=r"^--metric acc@fog=1: unknown metric acc@fog=1 \(choose from"):
        parse_metrics("acc@fog=1")


def test_the_report_reads_a_shifted_metric_like_the_others(tmp_path):
    from regbench.reporting.aggregate import shifted_names

    names = ["test_acc", "test_acc@gaussian_blur=2", "test_acc@gaussian_noise=1", "test_loss@gaussian_noise=0.5",
             "test_acc@gaussian_noise=0.5", "test_acc@fog=1", "val_acc@gaussian_noise=1", "test_acc@contrast=x"]
    assert shifted_names(names) == ["test_acc@gaussian_noise=0.5", "test_loss@gaussian_noise=0.5",
                                    "test_acc@gaussian_noise=1", "test_acc@gaussian_blur=2"]
    out = regbench("report", str(_study_runs(tmp_path / "runs")), "--plots", "--pivot", "reg.alpha",
                   "--metric", "test_acc@gaussian_noise=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = pd.read_csv(tmp_path / "runs" / "report.csv")
    chosen = report[(report["dataset.name"] == "d0") & (report["reg"] == "none")]
    assert chosen["test_acc@gaussian_noise=1.mean"].item() == pytest.approx(0.701)
    assert "delta.test_acc@gaussian_noise=1.p_ttest" in report
    assert (tmp_path / "runs" / "shift.png").is_file()
    assert 'alt="shift"' in (tmp_path / "runs" / "report.html").read_text()
    pivot = pd.read_csv(tmp_path / "runs" / "pivot.csv")
    assert (pivot["metric"] == "test_acc@gaussian_noise=1").all()


def test_the_constants_line_leaves_out_a_corruption_no_run_lists():
    from regbench.reporting.report import idle

    runs = pd.DataFrame({"params.shift.contrast": ["[]", "[]", None], "params.shift.gaussian_noise": ["[]", "[0.5]", "[]"]})
    assert idle("shift.contrast", runs) and not idle("shift.gaussian_noise", runs)
