"""`regbench report`: statistics against hand-computed values and scipy, status handling,
malformed files, the pivot view, plots, and the automatic report after a sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from regbench.reporting.report import build
from regbench.reporting.report_command import main
from regbench.reporting.report_format import markdown, write
from tests.helpers.cli import regbench
from tests.helpers.configs import TINY
from tests.helpers.rundirs import DIGITS_SIZES, write_run

T_975_2DF = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom
def make_sweep(root: Path, split_seed: int | None = None) -> Path:
    """A baseline and an l2 configuration over three seeds, plus a diverged and a failed l2 run;
    each seed its own split, or with `split_seed` one split for all."""
    for i, (seed, base, l2) in enumerate([(0, 0.9, 0.92), (1, 0.8, 0.85), (2, 0.7, 0.71)]):
        write_run(root / f"{2 * i}", reg="none", alpha=0.0, seed=seed, val=base, split_seed=split_seed)
        write_run(root / f"{2 * i + 1}", reg="l2", alpha=1e-3, seed=seed, val=l2, split_seed=split_seed)
    write_run(root / "6", reg="l2", alpha=1e-3, seed=3, val=0.05, status="diverged", split_seed=split_seed)
    write_run(root / "7", reg="l2", alpha=1e-3, seed=4, val=0.0, status="failed", error="RuntimeError: boom",
              split_seed=split_seed)
    return root


@pytest.fixture
def sweep(tmp_path) -> Path:
    return make_sweep(tmp_path / "sweep")


def row_of(report, reg):
    (index,) = report.table.index[report.table["reg"] == reg]
    return report.table.loc[index]


def test_mean_std_and_t_interval_match_hand_computed_values(sweep):
    report = build([sweep])
    base = row_of(report, "none")
    assert base["n_seeds"] == 3
    assert base["val_acc.mean"] == pytest.approx(0.8)
    assert base["val_acc.std"] == pytest.approx(0.1)  # sample standard deviation
    assert base["val_acc.ci95"] == pytest.approx(T_975_2DF * 0.1 / math.sqrt(3))
    assert base["gap.acc.mean"] == pytest.approx(0.2)


def test_diverged_and_failed_runs_are_counted_never_averaged(sweep):
    report = build([sweep])
    l2 = row_of(report, "l2")
    assert (l2["n_seeds"], l2["n_diverged"], l2["n_failed"]) == (3, 1, 1)
    assert l2["val_acc.mean"] == pytest.approx((0.92 + 0.85 + 0.71) / 3)
    text = markdown(report)
    assert f"diverged: {(sweep / '6').resolve()}" in text
    assert f"failed: {(sweep / '7').resolve()}: RuntimeError: boom" in text


def test_paired_differences_and_p_values_match_scipy(tmp_path):
    report = build([make_sweep(tmp_path, split_seed=0)])  # one split: the plain paired t-test
    l2, base = [0.92, 0.85, 0.71], [0.9, 0.8, 0.7]
    row = row_of(report, "l2")
    assert row["delta.n_pairs"] == 3
    assert row["delta.val_acc"] == pytest.approx((0.02 + 0.05 + 0.01) / 3)
    assert row["delta.val_acc.p_ttest"] == pytest.approx(stats.ttest_rel(l2, base).pvalue)
    assert row["delta.val_acc.p_wilcoxon"] == pytest.approx(stats.wilcoxon([a - b for a, b in zip(l2, base)]).pvalue)
    assert row["delta.test"] == "paired t" and math.isnan(row["delta.n_train"])
    assert math.isnan(row_of(report, "none")["delta.val_acc"])


def test_fewer_than_two_pairs_leave_the_p_values_empty(tmp_path):
    write_run(tmp_path / "a", reg="none", seed=0, val=0.8)
    write_run(tmp_path / "b", reg="l1", alpha=1e-3, seed=0, val=0.9)
    write_run(tmp_path / "c", reg="l1", alpha=1e-3, seed=1, val=0.9)
    row = row_of(build([tmp_path]), "l1")
    assert row["delta.n_pairs"] == 1 and row["delta.val_acc"] == pytest.approx(0.1)
    assert math.isnan(row["delta.val_acc.p_ttest"]) and math.isnan(row["delta.val_acc.p_wilcoxon"])


def test_baselines_pair_within_the_same_dataset(tmp_path):
    for d, base, l2 in [("wine", 0.5, 0.6), ("digits", 0.9, 0.8)]:
        for seed in (0, 1):
            write_run(tmp_path / f"{d}-none-{seed}", reg="none", dataset=d, seed=seed, val=base + seed / 100,
                      extra={"dataset.name": d})
            write_run(tmp_path / f"{d}-l2-{seed}", reg="l2", alpha=0.1, dataset=d, seed=seed, val=l2 + seed / 50,
                      extra={"dataset.name": d})
    t = build([tmp_path]).table
    deltas = dict(zip(t.loc[t["reg"] == "l2", "dataset.name"], t.loc[t["reg"] == "l2", "delta.val_acc"]))
    assert deltas["wine"] == pytest.approx(0.105) and deltas["digits"] == pytest.approx(-0.095)


def test_other_baseline_label(sweep):
    row = row_of(build([sweep], baseline="l2"), "none")
    assert row["delta.val_acc"] == pytest.approx(-(0.02 + 0.05 + 0.01) / 3)


def test_constant_columns_are_named_once_and_varying_ones_come_first(sweep, tmp_path):
    report = build([sweep])
    assert list(report.table.columns[:2]) == ["reg.alpha", "reg"] and report.table.columns[-1] == "config"
    assert "dataset.name" not in report.table and "optim.lr" not in report.table
    assert report.constants["dataset.name"] == "digits" and report.constants["optim.lr"] == 0.001
    assert "seed" not in report.constants and "dataset.split_seed" not in report.constants
    assert list(report.table["reg"]) == ["l2", "none"]  # best validation first
    files = write(report, tmp_path / "out")
    runs = pd.read_csv(files[0])
    assert "params.dataset.name" in runs and "params.seed" in runs and len(runs) == 8 and "folder" in runs


def test_malformed_results_are_skipped_with_one_warning_each(sweep, capsys):
    (sweep / "8").mkdir()
    (sweep / "8" / "result.json").write_text("")
    (sweep / "9").mkdir()
    (sweep / "9" / "result.json").write_text('{"status": "ok", "params": {')
    (sweep / "10").mkdir()
    (sweep / "10" / "result.json").write_text('{"status": "ok"}')
    (sweep / "11" / ".hydra").mkdir(parents=True)
    (sweep / "11" / "metrics.csv").write_text("epoch,train_loss\n1,0.5\n")
    assert main([str(sweep)]) == 0
    err = capsys.readouterr()
    warnings = [line for line in err.err.splitlines() if line.startswith("regbench: warning: skipped")]
    assert len(warnings) == 4
    assert any("8: empty result.json" in w for w in warnings)
    assert any("9: unreadable result.json" in w for w in warnings)
    assert any("10: malformed result.json (missing" in w for w in warnings)
    assert any("11: no result.json" in w for w in warnings)
    assert "skipped 4 run folder(s)" in err.out
    assert len(pd.read_csv(sweep / "runs.csv")) == 8


def test_pivot_cells_are_mean_and_std(sweep, tmp_path):
    assert main([str(sweep), "--out", str(tmp_path / "o"), "--pivot", "reg.alpha", "--metric", "val_acc"]) == 0
    table = pd.read_csv(tmp_path / "o" / "pivot.csv")
    assert list(table.columns) == ["metric", "reg", "reg.alpha=0", "reg.alpha=0.001"]  # issue 23: it names its metric
    assert set(table["metric"]) == {"val_acc"}
    row = table.set_index("reg")
    assert row.loc["none", "reg.alpha=0"] == "0.8000 ± 0.1000"
    l2 = [0.92, 0.85, 0.71]
    assert row.loc["l2", "reg.alpha=0.001"] == f"{sum(l2) / 3:.4f} ± {pd.Series(l2).std():.4f}"
    assert pd.isna(row.loc["none", "reg.alpha=0.001"])


def test_regression_reports_r2(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"r{seed}", task="regression", reg="none", seed=seed, val=0.4 + seed / 10)
    row = build([tmp_path]).table.iloc[0]
    assert row["val_r2.mean"] == pytest.approx(0.45) and "val_acc.mean" not in row


def test_bad_arguments_get_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"regbench: error: {tmp_path / 'missing'} does not exist"
    assert main([str(tmp_path)]) == 1
    assert "no finished runs" in capsys.readouterr().err
    write_run(tmp_path / "a")
    assert main([str(tmp_path), "--pivot", "reg.nope"]) == 2
    assert "no such parameter" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_reports_itself_and_the_command_gives_the_same_files(tmp_path):
    out = regbench("run", "-m", "reg=l1,none", "seed=0,1", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    auto = pd.read_csv(sweep / "report.csv")
    assert set(auto["reg"]) == {"l1", "none"} and list(auto["n_seeds"]) == [2, 2]
    assert "best validation first" in out.stdout
    again = regbench("report", str(sweep), "--out", str(tmp_path / "again"), "--format", "md", "--plots",
                     "--pivot", "reg.alpha", "--metric", "gap.acc", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "report.csv"), auto)
    assert (tmp_path / "again" / "runs.csv").read_text() == (sweep / "runs.csv").read_text()
    assert (tmp_path / "again" / "report.md").read_text().count("\n| ") >= 3
    for png in ("gap_vs_strength.png", "curves.png"):
        import matplotlib.image

        image = matplotlib.image.imread(tmp_path / "again" / png)
        assert (tmp_path / "again" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 300


def test_ctrl_c_during_a_report_is_one_line(tmp_path, monkeypatch, capsys):
    import regbench.reporting.report_command
    from regbench.cli.main import main as cli_main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(regbench.reporting.report_command, "main", interrupted)
    assert cli_main(["report", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "regbench: interrupted\n"


# --------------------------------------------------------------------------- a seed is one observation


def test_a_rerun_of_the_same_configuration_and_seed_is_not_another_seed(tmp_path):
    for i in range(3):  # `regbench run reg=elasticnet` three times: three folders, one observation
        write_run(tmp_path / f"run{i}", reg="elasticnet", alpha=1e-4, seed=0, val=0.9688,
                  finished_at=f"2026-11-29T10:0{i}:00+00:00")
    report = build([tmp_path])
    row = row_of(report, "elasticnet")
    assert row["n_seeds"] == 1 and math.isnan(row["val_acc.ci95"])
    assert len(report.runs) == 1 and report.runs["folder"].iloc[0] == str((tmp_path / "run2").resolve())
    assert sorted(report.duplicates["folder"]) == [str((tmp_path / f"run{i}").resolve()) for i in (0, 1)]
    assert set(report.duplicates["duplicate_of"]) == {str((tmp_path / "run2").resolve())}
    text = markdown(report)
    assert "set aside 2 duplicate run(s)" in text and f"duplicate: {(tmp_path / 'run0').resolve()}" in text
    runs = pd.read_csv(write(report, tmp_path / "out")[0])
    assert len(runs) == 3 and runs["duplicate_of"].notna().sum() == 2


def test_merging_two_copies_of_a_sweep_changes_no_statistic(sweep, tmp_path):
    import shutil

    shutil.copytree(sweep, tmp_path / "copy")
    once, twice = build([sweep]), build([sweep, tmp_path / "copy"])
    pd.testing.assert_frame_equal(once.table, twice.table)
    assert len(twice.duplicates) == len(once.runs) == 8


def test_the_newest_finished_run_is_kept_and_a_failed_rerun_does_not_replace_a_result(tmp_path):
    write_run(tmp_path / "old", reg="l2", alpha=1e-3, seed=0, val=0.7, finished_at="2026-11-01T00:00:00+00:00")
    write_run(tmp_path / "new", reg="l2", alpha=1e-3, seed=0, val=0.8, finished_at="2026-11-02T00:00:00+00:00")
    write_run(tmp_path / "newest", reg="l2", alpha=1e-3, seed=0, val=0.0, status="failed", error="OSError: disk",
              finished_at="2026-11-03T00:00:00+00:00")
    report = build([tmp_path])
    row = row_of(report, "l2")
    assert row["val_acc.mean"] == pytest.approx(0.8) and (row["n_seeds"], row["n_failed"]) == (1, 0)
    assert sorted(report.duplicates["folder"].map(lambda f: Path(f).name)) == ["newest", "old"]


def test_duplicates_never_enter_a_paired_test(tmp_path):
    for seed, (base, l1) in enumerate([(0.80, 0.83), (0.90, 0.91), (0.70, 0.74)]):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=base, split_seed=0)
        for copy in range(3):
            write_run(tmp_path / f"l1-{seed}-{copy}", reg="l1", alpha=1e-3, seed=seed, val=l1, split_seed=0)
    row = row_of(build([tmp_path]), "l1")
    assert row["delta.n_pairs"] == 3
    diffs = [0.83 - 0.80, 0.91 - 0.90, 0.74 - 0.70]
    assert row["delta.val_acc.p_ttest"] == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue)


# --------------------------------------------------------------------------- p-values that mean something


def test_equal_paired_differences_leave_the_t_test_empty_and_say_why(tmp_path):
    # both seeds gain 2/288 of validation accuracy: scipy's t-test would say p = 5e-15
    for seed, base in enumerate([200, 201]):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=base / 288)
        write_run(tmp_path / f"l2{seed}", reg="l2", alpha=1e-3, seed=seed, val=(base + 2) / 288)
    differences = [202 / 288 - 200 / 288, 203 / 288 - 201 / 288]
    assert differences[0] != differences[1]  # unequal in the last bit: the trap the report must not fall in
    assert stats.ttest_1samp(differences, 0).pvalue < 1e-10
    report = build([tmp_path])
    row = row_of(report, "l2")
    assert math.isnan(row["delta.val_acc.p_ttest"])
    assert row["delta.val_acc.p_wilcoxon"] == pytest.approx(stats.wilcoxon([1.0, 1.0]).pvalue)  # defined: 0.5
    text = markdown(report)
    assert "– / 0.500" in text and "the t-test when every paired difference is the same (no variance)" in text


def test_all_zero_differences_leave_both_tests_empty_whatever_scipy_returns(tmp_path):
    for seed, val in enumerate([0.8, 0.9, 0.7]):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=val)
        write_run(tmp_path / f"l2{seed}", reg="l2", alpha=1e-5, seed=seed, val=val)
    row = row_of(build([tmp_path]), "l2")
    assert row["delta.n_pairs"] == 3 and row["delta.val_acc"] == 0
    assert math.isnan(row["delta.val_acc.p_ttest"]) and math.isnan(row["delta.val_acc.p_wilcoxon"])


def test_a_baseline_label_that_matches_nothing_is_one_warning(sweep, capsys, tmp_path):
    assert main([str(sweep), "--baseline", "l3", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["regbench: warning: --baseline l3 matches no run (the labels here: l2, none): no paired differences"]
    assert build([sweep]).notes == []  # the default baseline is not asked for: no warning without one


def test_several_baseline_configurations_name_the_one_used(tmp_path, capsys):
    for seed, (small, large, l1) in enumerate([(0.80, 0.82, 0.85), (0.90, 0.93, 0.91), (0.70, 0.75, 0.72)]):
        write_run(tmp_path / f"a{seed}", reg="l2", alpha=1e-4, seed=seed, val=small)
        write_run(tmp_path / f"b{seed}", reg="l2", alpha=1e-2, seed=seed, val=large)
        write_run(tmp_path / f"c{seed}", reg="l1", alpha=1e-3, seed=seed, val=l1)
    report = build([tmp_path], baseline="l2")
    (note,) = report.notes
    ids = dict(zip(report.table["reg.alpha"], report.table["config"]))
    first = min(ids[1e-4], ids[1e-2])
    assert note.startswith("--baseline l2 matches 2 configurations") and "--baseline-config N" in note
    assert f"compared with config {first} (reg.alpha=" in note
    row = row_of(report, "l1")
    chosen = [0.80, 0.90, 0.70] if first == ids[1e-4] else [0.82, 0.93, 0.75]
    assert row["delta.val_acc"] == pytest.approx((0.85 + 0.91 + 0.72 - sum(chosen)) / 3)
    # --baseline-config picks one; the other l2 configuration is then compared with it too
    chosen = build([tmp_path], baseline_config=int(ids[1e-2]))
    assert chosen.notes == [] and chosen.baseline == f"config {ids[1e-2]} (reg.alpha=0.01)"
    t = chosen.table.set_index("reg.alpha")
    assert t.loc[1e-3, "delta.val_acc"] == pytest.approx((0.85 + 0.91 + 0.72 - 0.82 - 0.93 - 0.75) / 3)
    assert t.loc[1e-4, "delta.val_acc"] == pytest.approx((0.80 + 0.90 + 0.70 - 0.82 - 0.93 - 0.75) / 3)
    assert math.isnan(t.loc[1e-2, "delta.val_acc"])
    assert main([str(tmp_path), "--baseline-config", "99", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("regbench: error: --baseline-config 99: no such configuration")


def test_runs_reported_from_within_patience_are_flagged(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=0.9, early_best=False,
                  extra={"trainer.patience": 10})
        write_run(tmp_path / f"l1{seed}", reg="l1", alpha=1e-2, seed=seed, val=0.4, early_best=seed < 2,
                  best_epoch=1 if seed < 2 else 12, extra={"trainer.patience": 10})
    report = build([tmp_path])
    assert row_of(report, "l1")["n_early_best"] == 2 and row_of(report, "none")["n_early_best"] == 0
    text = markdown(report)
    assert "early best †" in text and "| 2/3 |" in text
    assert "† runs whose reported (best) epoch lies within the first 10 epochs" in text


# --------------------------------------------------------------------------- what the user reads


def _printed(report, width: int) -> str:
    from io import StringIO

    from rich.console import Console

    from regbench.reporting.report_format import render

    out = StringIO()
    render(report, Console(file=out, width=width, force_terminal=True, color_system=None))
    return out.getvalue()


def test_numbers_never_wrap_on_a_narrow_terminal(sweep):
    import re

    report = build([sweep])
    wide = _printed(report, 250)
    assert "test_acc (95% CI)" in wide and "left out" not in wide
    for width in (100, 80):
        text = _printed(report, width)
        table = text.split("constant in every run")[0]
        assert max(len(line) for line in table.splitlines()) <= width  # issue 23: at 80 too
        # no number is split: every mean ± CI whole on one line, as in the wide table (at 100);
        # at 80 the means alone, their CI left out, and the line under the table says so
        assert not re.search(r"\d\.\d{0,3}[^\d ±]", table.replace("pHolm t/W", ""))
        if width == 100:
            assert re.findall(r"\d\.\d{4} ± \d\.\d{4}", table) and "means without" not in text
        else:
            assert "±" not in table and re.findall(r"│ 0\.8267 ", table)
            assert text.rstrip().endswith("means without their 95% CI (report.csv has every column; --format md "
                                          "writes the whole table)")
        assert f"for a {width}-column terminal: left out pairs; left out epochs" in text
        assert "report.csv has every column" in text


def test_nulls_read_as_the_config_spells_them(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"p{seed}", seed=seed, val=0.9, extra={"trainer.patience": 10, "dataset.train_size": None})
        write_run(tmp_path / f"q{seed}", seed=seed, val=0.8, extra={"trainer.patience": None, "dataset.train_size": None})
    report = build([tmp_path])
    header, rows = __import__("regbench.reporting.report_format", fromlist=["display_table"]).display_table(report)
    assert header[0] == "trainer.patience" and sorted(r[0] for r in rows) == ["10", "off"]
    line = __import__("regbench.reporting.report_format", fromlist=["constants_line"]).constants_line(report)
    assert "dataset.train_size=null" in line and "None" not in line and "nan" not in line
    main([str(tmp_path), "--out", str(tmp_path / "o"), "--pivot", "trainer.patience"])
    assert list(pd.read_csv(tmp_path / "o" / "pivot.csv").columns) == ["metric", "reg", "trainer.patience=10",
                                                                         "trainer.patience=off"]


def test_the_constants_line_names_only_keys_that_apply(sweep):
    write_run(sweep / "extra", seed=9, val=0.9, extra={"dataset.n_samples": 1000, "dataset.noise": 10.0,
                                                       "dataset.root": "/data", "optim.momentum": 0.0, "optim.name": "adam",
                                                       "dataset.test_fraction": 0.2})
    line = __import__("regbench.reporting.report_format", fromlist=["constants_line"]).constants_line(build([sweep / "extra"]))
    assert "dataset.name=digits" in line and "dataset.test_fraction=0.2" in line
    for key in ("n_samples", "noise", "root", "momentum"):
        assert key not in line


def test_one_number_format_per_column_and_integer_pairs(tmp_path):
    from regbench.reporting.report_format import display_table

    for seed in (0, 1):
        write_run(tmp_path / f"a{seed}", reg="none", seed=seed, val=0.9)
        write_run(tmp_path / f"b{seed}", reg="l2", alpha=1e-5, seed=seed, val=0.9 + 1e-5 * (seed + 1))
        write_run(tmp_path / f"c{seed}", reg="l2", alpha=1e-3, seed=seed, val=0.95)
    report = build([tmp_path])
    header, rows = display_table(report)
    alphas = sorted(r[0] for r in rows)
    assert alphas == ["0", "1e-03", "1e-05"]  # not 0.001 beside 1e-05
    delta = [r[header.index("Δval_acc vs none")] for r in rows if r[header.index("Δval_acc vs none")]]
    assert all("e" in d for d in delta)  # one tiny delta: the whole column is scientific
    files = write(report, tmp_path / "o")
    pairs = pd.read_csv(files[1])["delta.n_pairs"]
    assert pairs.dropna().map(lambda v: float(v).is_integer()).all()
    assert ",2," in files[1].read_text() and ",2.0," not in files[1].read_text()


def test_report_help_says_95_percent_once(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "95% CI" in out and "95%%" not in out


def test_a_plot_that_cannot_be_drawn_says_why(sweep, tmp_path, capsys):
    for folder in sweep.iterdir():
        result = json.loads((folder / "result.json").read_text())
        result["params"]["reg.alpha"] = 0.0
        (folder / "result.json").write_text(json.dumps(result))
    assert main([str(sweep), "--out", str(tmp_path / "o"), "--plots"]) == 0
    err = capsys.readouterr().err
    assert "no gap_vs_strength.png: its x axis is reg.alpha, and no ok run has reg.alpha > 0" in err


# --------------------------------------------------------------------------- corrected p-values, effect sizes

NAN = math.nan


@pytest.mark.parametrize("family", [
    [0.01, 0.04, 0.03, 0.005],
    [0.02, 0.02, 0.02],  # ties
    [0.25, 0.25, 0.5, 0.75, 1.0],  # Wilcoxon's few values on 3 seeds: ties and a cap at 1
    [0.3, 0.6, 0.9],  # every adjusted value capped at 1
    [0.001],  # a family of one: unchanged
    [NAN, 0.01, NAN, 0.04, 0.02],  # undefined tests are not in the family
    [NAN, NAN],
    [],
    [0.049, 0.0001, 0.2, 0.0001, 0.03, 0.5, 0.011, 0.012],
])
def test_holm_matches_statsmodels(family):
    from statsmodels.stats.multitest import multipletests

    from regbench.reporting.aggregate import holm

    p = pd.Series(family, dtype=float)
    adjusted = pd.Series(holm(family))
    assert adjusted.isna().equals(p.isna())  # undefined stays undefined
    defined = p.notna()
    if defined.any():
        expected = multipletests(p[defined].to_numpy(), method="holm")[1]
        assert adjusted[defined].to_numpy() == pytest.approx(expected, rel=1e-12, abs=0)


def test_holm_matches_statsmodels_on_random_families():
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    from regbench.reporting.aggregate import holm

    rng = np.random.default_rng(15)
    for m in range(1, 30):
        p = np.round(rng.uniform(0, 0.3, m), 2)  # rounded: ties in most families
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12, abs=0)


def _two_datasets(root: Path, split_seed: int | None = None) -> dict:
    """digits and wine, each with a baseline and four l2 strengths over four seeds: three with noisy
    gains, one identical to the baseline (both tests undefined), and on wine one strength that shares a
    single seed with the baseline (too few pairs); each seed its own split unless `split_seed` fixes
    one. Returns the values written, per run."""
    import numpy as np

    rng = np.random.default_rng(0)
    written = {}
    for d, shift in (("digits", 0.0), ("wine", -0.2)):
        for seed in range(4):
            base = 0.8 + shift + 0.03 * seed
            values = {0.0: base, 1e-5: base}
            for alpha, gain in ((1e-4, 0.02), (1e-3, 0.005), (1e-2, -0.04)):
                values[alpha] = base + gain + float(rng.normal(0, 0.01))
            for alpha, val in values.items():
                reg = "none" if alpha == 0 else "l2"
                if alpha != 1e-5:  # 1e-5: the baseline's every number
                    test = val - 0.03 + float(rng.normal(0, 0.01))
                    train = min(1.0, val + 0.1 + float(rng.normal(0, 0.02)))
                write_run(root / f"{d}-{alpha}-{seed}", reg=reg, alpha=alpha, dataset=d, seed=seed, val=val, test=test,
                          train=train, extra={"dataset.name": d}, split_seed=split_seed)
                written[(d, alpha, seed)] = (val, test, train)
        write_run(root / f"{d}-one-pair", reg="l2", alpha=0.1, dataset=d, seed=0, val=0.5, extra={"dataset.name": d},
                  split_seed=split_seed)
    return written


def test_holm_adjusts_within_each_dataset_quantity_and_test(tmp_path):
    from statsmodels.stats.multitest import multipletests

    _two_datasets(tmp_path)
    t = build([tmp_path]).table
    families = 0
    for q in ("val_acc", "test_acc", "gap.acc", "gap.loss"):
        for test in ("p_ttest", "p_wilcoxon"):
            raw, adjusted = t[f"delta.{q}.{test}"], t[f"delta.{q}.{test}_holm"]
            assert adjusted.isna().equals(raw.isna())  # the baseline, one pair, no differences: empty in both
            for d in ("digits", "wine"):
                mine = (t["dataset.name"] == d) & raw.notna()
                assert mine.sum() == 3  # l2 at 1e-4, 1e-3, 1e-2: not 1e-5 (no difference), not 0.1 (one pair)
                expected = multipletests(raw[mine].to_numpy(), method="holm")[1]
                assert adjusted[mine].to_numpy() == pytest.approx(expected, rel=1e-12, abs=0)
                families += 1
            # one family per dataset, not one over the whole report
            pooled = multipletests(raw.dropna().to_numpy(), method="holm")[1]
            if q == "val_acc" and test == "p_ttest":
                assert adjusted.dropna().to_numpy() != pytest.approx(pooled)
    assert families == 16
    row = t[(t["dataset.name"] == "wine") & (t["reg.alpha"] == 1e-5)].iloc[0]
    assert row["delta.n_pairs"] == 4 and row["delta.val_acc"] == 0 and math.isnan(row["delta.val_acc.p_ttest_holm"])
    assert math.isnan(row["delta.val_acc.d_z"])


def test_raw_p_values_stay_and_the_adjusted_ones_sit_beside_them(tmp_path):
    _two_datasets(tmp_path)
    files = write(build([tmp_path]), tmp_path / "out")
    columns = list(pd.read_csv(files[1]).columns)
    start = columns.index("delta.val_acc")
    assert columns[start:start + 6] == ["delta.val_acc", "delta.val_acc.d_z", "delta.val_acc.p_ttest",
                                        "delta.val_acc.p_wilcoxon", "delta.val_acc.p_ttest_holm",
                                        "delta.val_acc.p_wilcoxon_holm"]


def test_raw_p_values_match_scipy_in_every_family(tmp_path):
    import numpy as np

    written = _two_datasets(tmp_path, split_seed=0)  # one split: the plain paired t-test
    t = build([tmp_path]).table
    for d in ("digits", "wine"):
        for alpha in (1e-4, 1e-3, 1e-2):
            row = t[(t["dataset.name"] == d) & (t["reg.alpha"] == alpha)].iloc[0]
            diff = np.array([written[(d, alpha, s)][0] - written[(d, 0.0, s)][0] for s in range(4)])
            assert row["delta.val_acc.p_ttest"] == pytest.approx(stats.ttest_1samp(diff, 0).pvalue)
            assert row["delta.val_acc.p_wilcoxon"] == pytest.approx(stats.wilcoxon(diff).pvalue)
            # the effect size: the t statistic over sqrt(n) (scipy), the mean over the sample std (by hand)
            assert row["delta.val_acc.d_z"] == pytest.approx(stats.ttest_1samp(diff, 0).statistic / 2)
            assert row["delta.val_acc.d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1))


def test_effect_size_of_the_sweep_and_where_it_is_undefined(tmp_path):
    import numpy as np

    sweep = make_sweep(tmp_path / "sweep", split_seed=0)  # one split: the plain d_z
    diff = np.array([0.92, 0.85, 0.71]) - np.array([0.9, 0.8, 0.7])
    row = row_of(build([sweep]), "l2")
    assert row["delta.val_acc.d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    # one comparison: a family of one, adjusted = raw
    assert row["delta.val_acc.p_ttest_holm"] == row["delta.val_acc.p_ttest"]
    assert row["delta.val_acc.p_wilcoxon_holm"] == row["delta.val_acc.p_wilcoxon"]
    assert math.isnan(row_of(build([sweep]), "none")["delta.val_acc.d_z"])
    # equal differences up to rounding (the 4-ulp rule of the t-test): no variance, no effect size
    for seed, base in enumerate([200, 201]):
        write_run(tmp_path / "eq" / f"none{seed}", reg="none", seed=seed, val=base / 288)
        write_run(tmp_path / "eq" / f"l2{seed}", reg="l2", alpha=1e-3, seed=seed, val=(base + 2) / 288)
    report = build([tmp_path / "eq"])
    assert math.isnan(row_of(report, "l2")["delta.val_acc.d_z"])
    text = markdown(report)
    assert "| – | – / 0.500 |" in text and "d_z: the effect size" in text
    assert "; – where every paired difference is the same (no variance)" in text
    # one pair: empty
    write_run(tmp_path / "one" / "a", reg="none", seed=0, val=0.8)
    write_run(tmp_path / "one" / "b", reg="l1", alpha=1e-3, seed=0, val=0.9)
    assert math.isnan(row_of(build([tmp_path / "one"]), "l1")["delta.val_acc.d_z"])


def test_the_printed_table_shows_the_adjusted_p_values_and_says_so(tmp_path):
    from regbench.reporting.report_format import display_table

    _two_datasets(tmp_path)
    report = build([tmp_path])
    header, rows = display_table(report)
    assert "p Holm (t-test / Wilcoxon)" in header and "p (t-test / Wilcoxon)" not in header
    assert header.index("d_z") == header.index("Δval_acc vs none") + 1
    t = report.table
    for (_, r), row in zip(t.iterrows(), rows):
        cell = row[header.index("p Holm (t-test / Wilcoxon)")]
        if r["reg"] == "none" or r["delta.n_pairs"] < 2:
            assert cell == ""
            continue
        p_t, p_w = r["delta.val_acc.p_ttest_holm"], r["delta.val_acc.p_wilcoxon_holm"]
        shown = [("–" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}") for p in (p_t, p_w)]
        assert cell == " / ".join(shown)
        d = r["delta.val_acc.d_z"]
        assert row[header.index("d_z")] == ("–" if math.isnan(d) else f"{d:.2f}")
    # the correction changes what is printed: some adjusted p differs from its raw value at three decimals
    tested = t["delta.val_acc.p_ttest"].notna()
    raw, adjusted = t.loc[tested, "delta.val_acc.p_ttest"], t.loc[tested, "delta.val_acc.p_ttest_holm"]
    assert (raw.round(3) != adjusted.round(3)).any()
    text = markdown(report)
    assert "p Holm: p-values Holm-adjusted for the comparisons with the baseline, within each dataset" in text
    assert "report.csv also has the raw ones" in text


def test_a_narrow_terminal_leaves_out_the_effect_size_and_its_footnote(tmp_path):
    _two_datasets(tmp_path)
    report = build([tmp_path])
    assert "d_z: the effect size" in _printed(report, 250)
    text = _printed(report, 100)
    assert "left out d_z" in text and "d_z: the effect size" not in text and "pHolm t/W" in text


def test_runs_from_before_the_newer_knobs_merge_with_runs_that_have_them_at_their_defaults(tmp_path):
    """Every key added since the first release at its default (the regularizers' `since` knobs,
    the residual and custom models' knobs, search.seeds): a run recorded before they existed is
    the same configuration as one recorded after, so old and new runs of a sweep report together."""
    from regbench.config.keys import MODEL_KNOBS_SINCE
    from regbench.engine.runner import new_result
    from regbench.regularizers import builtin_knobs
    from regbench.reporting.report import build
    from tests.helpers.configs import make_cfg

    params = new_result(make_cfg())["params"]
    newer = [f"reg.{k.name}" for k in builtin_knobs() if k.since] + [f"model.{k}" for k in MODEL_KNOBS_SINCE]
    newer += ["search.seeds"]
    extra = {k: params[k] for k in newer if k in params}
    assert {"reg.mixup", "reg.ema", "reg.sam", "model.groups", "model._target_", "search.seeds"} <= set(extra)
    for seed in (0, 1):
        write_run(tmp_path / "old" / str(seed), seed=seed, finished_at="2026-01-01")
        write_run(tmp_path / "new" / str(seed), seed=seed, extra=extra, finished_at="2026-02-01")
    report = build([tmp_path / "old", tmp_path / "new"])
    assert len(report.table) == 1 and len(report.duplicates) == 2


def test_the_constant_line_leaves_out_knobs_the_runs_model_or_regularizers_do_not_read(tmp_path):
    from regbench.reporting.report import build
    from regbench.reporting.report_format import constants_line

    knobs = {"model.groups": 2, "model.depth": 20, "model.activation": "relu", "reg.swa": 0.0, "reg.swa_lr": 0.0,
             "reg.cutout": 0.5, "reg.cutout_size": 0.33}
    for seed in (0, 1):
        write_run(tmp_path / "custom" / str(seed), seed=seed,
                  extra={**knobs, "model.name": "custom", "model._target_": "net.make"})
        write_run(tmp_path / "mlp" / str(seed), seed=seed, dataset="wine", extra=knobs)
    custom = constants_line(build([tmp_path / "custom"]))
    assert "model._target_=net.make" in custom and "reg.cutout_size=0.33" in custom
    assert all(k not in custom for k in ("model.hidden_sizes", "model.activation", "model.groups", "model.depth",
                                         "reg.swa_lr"))
    mlp = constants_line(build([tmp_path / "mlp"]))
    assert "model.hidden_sizes=[8]" in mlp and "model.activation=relu" in mlp
    assert all(k not in mlp for k in ("model.groups", "model.depth", "model._target_", "reg.swa_lr"))


# --------------------------------------------------------------------------- seeds that re-split the data


def sklearn_corrected_ttest(differences, n_train: int, n_test: int) -> tuple[float, float]:
    """scikit-learn's documented example "Statistical comparison of models using grid search"
    (examples/model_selection/plot_grid_search_stats.py): its `corrected_std` and
    `compute_corrected_ttest`, as written there (older versions of the example had 1/n with
    n = n_train + n_test where 1/kr is meant; the current one, kr the number of differences).
    Right-tailed, as there: the report's two-sided p is twice it."""
    import numpy as np

    kr = len(differences)
    corrected_var = np.var(differences, ddof=1) * (1 / kr + n_test / n_train)
    t_stat = np.mean(differences) / np.sqrt(corrected_var)
    return float(t_stat), float(stats.t.sf(np.abs(t_stat), kr - 1))


def test_corrected_t_test_matches_scikit_learns_example_where_seeds_re_split(tmp_path):
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    written = _two_datasets(tmp_path)  # each seed its own split; digits' recorded split sizes
    t = build([tmp_path]).table
    n = DIGITS_SIZES
    for d in ("digits", "wine"):
        for alpha in (1e-4, 1e-3, 1e-2):
            row = t[(t["dataset.name"] == d) & (t["reg.alpha"] == alpha)].iloc[0]
            assert row["delta.test"] == "corrected resampled t (Nadeau-Bengio)"
            assert (row["delta.n_train"], row["delta.n_val"], row["delta.n_test"]) == (1149, 288, 360)
            val, test, train = (np.array([written[(d, alpha, s)][i] - written[(d, 0.0, s)][i] for s in range(4)])
                                for i in range(3))
            # each quantity against the size of the split it is measured on: a gap is train minus val
            for q, diff, n_test in (("val_acc", val, n["val"]), ("test_acc", test, n["test"]),
                                    ("gap.acc", train - val, n["val"]), ("gap.loss", val - train, n["val"])):
                t_stat, p_right = sklearn_corrected_ttest(diff, n["train"], n_test)
                assert row[f"delta.{q}.p_ttest"] == pytest.approx(2 * p_right, rel=1e-12, abs=0)
                assert row[f"delta.{q}.d_z"] == pytest.approx(t_stat / 2, rel=1e-12)  # the same variance: t / sqrt(4)
                # wider than the plain test, never narrower
                assert row[f"delta.{q}.p_ttest"] > stats.ttest_1samp(diff, 0).pvalue
            assert row["delta.val_acc.p_wilcoxon"] == pytest.approx(stats.wilcoxon(val).pvalue)  # unchanged
    # Holm applies to the corrected p-values as to any others
    for q in ("val_acc", "test_acc"):
        for d in ("digits", "wine"):
            mine = (t["dataset.name"] == d) & t[f"delta.{q}.p_ttest"].notna()
            expected = multipletests(t.loc[mine, f"delta.{q}.p_ttest"].to_numpy(), method="holm")[1]
            assert t.loc[mine, f"delta.{q}.p_ttest_holm"].to_numpy() == pytest.approx(expected, rel=1e-12, abs=0)


def test_a_fixed_split_keeps_the_plain_test_and_says_what_it_is_about(tmp_path):
    fixed, resplit = build([make_sweep(tmp_path / "fixed", split_seed=0)]), build([make_sweep(tmp_path / "resplit")])
    assert row_of(fixed, "l2")["delta.test"] == "paired t" and row_of(resplit, "l2")["delta.test"].startswith("corr")
    assert row_of(resplit, "l2")["delta.val_acc.p_ttest"] > row_of(fixed, "l2")["delta.val_acc.p_ttest"]
    text = markdown(fixed)
    assert "the conclusion holds for this one split, not for the dataset" in text and "Nadeau" not in text
    text = markdown(resplit)
    assert "Nadeau & Bengio's corrected resampled t-test" in text and "n_val/n_train = 0.251" in text
    assert "this one split" not in text and "d_z = t / √pairs" in text
    files = write(resplit, tmp_path / "out")
    columns = list(pd.read_csv(files[1]).columns)
    assert columns[columns.index("delta.n_pairs"):][:5] == ["delta.n_pairs", "delta.test", "delta.n_train",
                                                            "delta.n_val", "delta.n_test"]


def test_the_split_fractions_give_the_correction_for_runs_that_record_no_sizes(tmp_path):
    # the issue's numbers: test 0.2 of the rows, train 0.6 (val 0.25 of the rest): at 3 seeds the
    # standard error 1.4 (sqrt 2) times the plain one; a user's table, of a size no parameter says
    import numpy as np

    base, gain = [0.80, 0.90, 0.70], [0.83, 0.91, 0.74]
    fractions = {"dataset.name": "table", "dataset.test_fraction": 0.2, "dataset.val_fraction": 0.25,
                 "dataset.train_size": None}
    for seed in range(3):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=base[seed], test=base[seed], sizes=None,
                  dataset="table", extra=fractions)
        write_run(tmp_path / f"l1{seed}", reg="l1", alpha=1e-3, seed=seed, val=gain[seed], test=gain[seed] + 0.01,
                  sizes=None, dataset="table", extra=fractions)
    row = row_of(build([tmp_path]), "l1")
    diff = np.array(gain) + 0.01 - np.array(base)  # of the test metric
    plain = stats.ttest_1samp(diff, 0).statistic
    assert row["delta.test_acc.p_ttest"] == pytest.approx(2 * stats.t.sf(abs(plain) / math.sqrt(2), 2), rel=1e-12)
    assert row["delta.n_test"] / row["delta.n_train"] == pytest.approx(0.2 / 0.6)
    assert row["delta.n_val"] / row["delta.n_train"] == pytest.approx(0.2 / 0.6)
    # data that may hold its own test rows (x_test in an .npz, a test/ folder, a test file): no guess
    from regbench.reporting.aggregate import split_sizes

    params = {"params.dataset.val_fraction": 0.2, "params.dataset.test_fraction": 0.2}
    for name, more in (("arrays", {}), ("image_folder", {}), ("table", {"params.dataset.test_path": "t.csv"}),
                       ("table", {"params.dataset.split_column": "part"})):
        assert split_sizes({**params, "params.dataset.name": name, **more}) is None
    assert split_sizes({**params, "params.dataset.name": "table"}) is not None


def test_runs_that_re_split_data_of_unknown_size_get_no_t_test_and_a_note(tmp_path, capsys):
    for seed, (base, l1) in enumerate([(0.80, 0.83), (0.90, 0.91), (0.70, 0.74)]):
        write_run(tmp_path / f"none{seed}", reg="none", seed=seed, val=base, sizes=None)  # no fractions either
        write_run(tmp_path / f"l1{seed}", reg="l1", alpha=1e-3, seed=seed, val=l1, sizes=None)
    report = build([tmp_path])
    row = row_of(report, "l1")
    assert math.isnan(row["delta.val_acc.p_ttest"]) and math.isnan(row["delta.val_acc.d_z"])
    assert row["delta.val_acc.p_wilcoxon"] == pytest.approx(0.25)  # the Wilcoxon test needs no sizes
    assert len(report.notes) == 1 and "record no split sizes" in report.notes[0]
    assert "the corrected t-test also where the runs record no split sizes" in markdown(report)


@pytest.mark.parametrize("overrides", [
    (), ("dataset.train_size=300",), ("dataset.train_size=0.5", "dataset.val_fraction=0.3"),
    ("dataset=wine", "dataset.test_fraction=0.25"),
    ("dataset=synthetic", "dataset.n_samples=500", "dataset.train_size=100"),
    ("dataset=diabetes",), ("dataset=breast_cancer", "dataset.train_size=1.0"),
])
def test_split_sizes_from_the_config_are_those_the_data_loader_makes(overrides):
    """The fallback for runs without recorded sizes, against regbench's own loader (the sizes new runs record)."""
    import torch

    from regbench.data.datasets import load
    from regbench.engine.runner import adopt_data, new_result
    from regbench.reporting.aggregate import split_sizes
    from regbench.reporting.collect import flatten_result
    from tests.helpers.configs import make_cfg

    cfg = make_cfg(*overrides)
    result = new_result(cfg)
    adopt_data(result, load(cfg.dataset, torch.device("cpu")))
    recorded = result["split_sizes"]
    row = pd.Series(flatten_result(result))
    assert split_sizes(row) == {k: float(v) for k, v in recorded.items()}
    assert split_sizes(row.drop([f"split_sizes.{s}" for s in ("train", "val", "test")])) == split_sizes(row)


@pytest.mark.slow
def test_split_sizes_recorded_by_a_run_and_derived_from_its_config(tmp_path):
    out = regbench("run", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["split_sizes"] == {**DIGITS_SIZES, "train": 300}  # TINY subsamples 300 of digits' 1149
    report = build([tmp_path / "run"])
    assert report.runs["split_sizes.val"].iloc[0] == 288


# --------------------------------------------------------------------------- a results folder that cannot be written


@pytest.mark.slow
def test_a_read_only_results_folder_prints_the_table_and_says_what_was_not_written(sweep, tmp_path, read_only):
    folder = read_only(sweep)
    out = regbench("report", str(folder), "--plots", cwd=tmp_path)
    assert out.returncode == 1
    assert "best validation first" in out.stdout and "Nadeau & Bengio" in out.stdout  # the table and its notes
    assert out.stderr == (f"regbench: error: cannot write {folder}/gap_vs_strength.png "
                          "(Read-only file system): the table above is complete, its files are not; --out DIR writes "
                          "them into another folder\n")
    again = regbench("report", str(folder), "--out", str(tmp_path / "elsewhere"), "--format", "md", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {p.name for p in (tmp_path / "elsewhere").iterdir()} == {"runs.csv", "report.csv", "report.md", "report.html"}


def test_a_file_that_cannot_be_written_costs_the_files_not_the_table(sweep, tmp_path, monkeypatch, capsys):
    # what a read-only or full file system does to the writer, simulated: root ignores chmod
    import errno
    import os

    import regbench.reporting.report_command as report_module

    def refused(report, out, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out / "runs.csv"))

    monkeypatch.setattr(report_module, "write", refused)
    assert main([str(sweep), "--pivot", "reg.alpha"]) == 1
    printed = capsys.readouterr()
    assert "best validation first" in printed.out and "mean ± std across seeds" in printed.out  # table and pivot
    assert printed.err == (f"regbench: error: cannot write {sweep / 'runs.csv'} (Read-only file system): the table "
                           "above is complete, its files are not; --out DIR writes them into another folder\n")
    assert "wrote " not in printed.out


def test_an_out_folder_inside_a_file_is_refused_before_any_work(sweep, tmp_path, capsys):
    from regbench.reporting import study_command as study

    inside = sweep / "0" / "result.json" / "out"
    assert main([str(sweep), "--out", str(inside)]) == 2
    assert capsys.readouterr() == ("", f"regbench: error: --out {inside}: {sweep / '0' / 'result.json'} is a file, "
                                       "not a folder\n")
    assert study.main([str(sweep), "--out", str(inside)]) == 2
    assert capsys.readouterr().err == f"regbench: error: --out {inside}: {sweep / '0' / 'result.json'} is a file, " \
                                      "not a folder\n"


def test_report_help_documents_out(capsys):
    from regbench.reporting.report_command import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--out DIR" in text and "read-only results folder" in text


def test_the_keys_of_a_users_data_are_left_out_of_the_constants_of_bundled_runs():
    """Every key a user's data added (results.OWN_DATA_DEFAULTS) says which datasets read it, so
    the constants line of a digits sweep does not list `dataset.index_col=null` and the like."""
    from regbench.config.keys import ONLY_FOR, OWN_DATA_DEFAULTS
    from regbench.reporting.report import applies

    bundled = pd.DataFrame({"params.dataset.name": ["digits"]})
    for key in OWN_DATA_DEFAULTS:
        assert key in ONLY_FOR, key
        assert not applies(key, bundled), key
