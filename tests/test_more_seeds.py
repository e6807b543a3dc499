"""`regbench more-seeds`: the seeds planned for inconclusive comparisons (and their baseline),
dry runs, and a real sweep extended, interrupted and resumed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from regbench.reporting import more_seeds
from regbench.reporting.aggregate import SeedsPlan
from regbench.reporting.report import build
from tests.helpers.cli import regbench, start
from tests.helpers.rundirs import write_run


def _with_overrides(folder: Path, *overrides: str) -> None:
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def _sweep(root: Path, l2: list[float], base_seeds=(0, 1, 2)) -> Path:
    """A baseline and an l2 configuration on one split (the plain paired test), val 0.8 + noise."""
    base = [0.80, 0.75, 0.70, 0.72, 0.78]
    for seed in base_seeds:
        _with_overrides(write_run(root / f"n{seed}", reg="none", seed=seed, val=base[seed], split_seed=0),
                        "reg=none", f"seed={seed}", "dataset.split_seed=0")
    for seed, value in enumerate(l2):
        _with_overrides(write_run(root / f"l{seed}", reg="l2", alpha=1e-3, seed=seed, val=value, split_seed=0),
                        "reg=l2", "reg.alpha=1e-3", f"seed={seed}", "dataset.split_seed=0")
    return root


def test_an_inconclusive_comparison_gets_the_seeds_it_needs_for_itself_and_its_baseline(tmp_path):
    sweep = _sweep(tmp_path / "s", [0.82, 0.76, 0.74])  # Δ 0.02, 0.01, 0.04
    report = build([sweep])
    row = report.table[report.table["reg"] == "l2"].iloc[0]
    needs = int(row["delta.val_acc.needs_seeds"])
    assert needs > 3
    commands, lines = more_seeds.plan(report, tmp_path / "round1", max_seeds=20)
    new = list(range(3, needs))
    config, base = int(row["config"]), int(row["delta.baseline_config"])
    assert {c["config"]: c["seeds"] for c in commands} == {config: new, base: new}  # the pair's both sides
    (l2,) = [c for c in commands if c["config"] == config]
    assert l2["argv"] == ["run", "-m", "reg=l2", "reg.alpha=1e-3", "dataset.split_seed=0",
                          f"seed={','.join(map(str, new))}", f"hydra.sweep.dir={tmp_path}/round1/config{config}"]
    assert lines == [f"l2 (config {config}): inconclusive with 3 pairs: adding {needs - 3} to {needs}: "
                     f"seed {','.join(map(str, new))}"]
    capped, lines = more_seeds.plan(report, tmp_path / "round1", max_seeds=4)
    assert [c["seeds"] for c in capped] == [[3], [3]] and f"(--max-seeds 4; it needs ~{needs})" in lines[0]


def test_seeds_only_one_side_has_are_paired_first(tmp_path):
    sweep = _sweep(tmp_path / "s", [0.82, 0.76, 0.74], base_seeds=(0, 1, 2, 3, 4))
    # the baseline's seeds 3 and 4 are free pairs: l2 runs them, then both run seed 5
    report = build([sweep])
    l2 = int(report.table.loc[report.table["reg"] == "l2", "config"].item())
    commands, _ = more_seeds.plan(report, tmp_path / "r", max_seeds=6)
    assert {c["config"]: c["seeds"] for c in commands} == {1 - l2: [5], l2: [3, 4, 5]}
    json.dumps(commands)  # plan.json holds them: plain ints, never numpy's


def test_conclusive_or_never_settled_comparisons_get_none(tmp_path):
    clear = _sweep(tmp_path / "clear", [0.90, 0.85, 0.80])  # Δ 0.10 every seed: no spread, nothing to plan
    assert more_seeds.plan(build([clear]), tmp_path / "r", 20)[0] == []
    resplit = tmp_path / "resplit"  # each seed its own split: the correction keeps the power below 80%
    for seed, (b, v) in enumerate([(0.8, 0.82), (0.75, 0.74), (0.7, 0.74)]):
        write_run(resplit / f"n{seed}", reg="none", seed=seed, val=b)
        write_run(resplit / f"l{seed}", reg="l2", alpha=1e-3, seed=seed, val=v)
    commands, lines = more_seeds.plan(build([resplit], seeds=SeedsPlan(min_effect=0.01)), tmp_path / "r", 20)
    assert commands == [] and "no number of seeds settles it (the re-split correction)" in lines[0]


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path, capsys):
    sweep = _sweep(tmp_path / "s", [0.82, 0.76, 0.74])
    assert more_seeds.main([str(sweep), "--dry-run", "--max-seeds", "4"]) == 0
    out = capsys.readouterr().out
    assert f"regbench run -m reg=none dataset.split_seed=0 seed=3 hydra.sweep.dir={sweep}/more_seeds/round1/config" \
        in out
    assert not (sweep / "more_seeds").exists()


def test_bad_options_are_one_line_before_any_work(tmp_path, capsys):
    for argv, what in ([str(tmp_path), "--max-seeds", "1"], "--max-seeds 1"), ([str(tmp_path / "x")], "is not"), \
                      ([str(tmp_path), "--power", "2"], "--power 2.0"):
        assert more_seeds.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("regbench: error:") and what in err and "\n" not in err


@pytest.mark.slow
def test_a_sweep_is_extended_and_the_new_report_includes_the_seeds(tmp_path):
    tiny = ["trainer.max_epochs=3", "dataset.train_size=300", "model.hidden_sizes=[32]", "dataset.split_seed=0",
            "device=cpu"]
    sweep = tmp_path / "sweep"
    done = regbench("run", "-m", "reg=none,dropout", "seed=0,1,2", *tiny, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = regbench("report", str(sweep), cwd=tmp_path)
    assert "inconclusive: dropout (config 1)" in report.stdout and "needs ~4 seeds (has 3)" in report.stdout
    extended = regbench("more-seeds", str(sweep), "--max-seeds", "6", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert "dropout (config 1): inconclusive with 3 pairs: adding 1 to 4: seed 3" in extended.stdout
    assert regbench("report", str(sweep), cwd=tmp_path).returncode == 0
    runs = pd.read_csv(sweep / "runs.csv")
    assert sorted(runs.groupby("reg")["seed"].apply(sorted).to_dict().items()) == [("dropout", [0, 1, 2, 3]),
                                                                                    ("none", [0, 1, 2, 3])]
    table = pd.read_csv(sweep / "report.csv")
    assert table.loc[table["reg"] == "dropout", "delta.n_pairs"].item() == 4
    assert not (sweep / "more_seeds" / "round2").exists()


@pytest.mark.slow
def test_an_extension_interrupted_with_ctrl_c_resumes_where_it_stopped(tmp_path):
    tiny = ["trainer.max_epochs=3", "dataset.train_size=300", "model.hidden_sizes=[32]", "dataset.split_seed=0",
            "device=cpu"]
    sweep = tmp_path / "sweep"
    done = regbench("run", "-m", "reg=none,dropout", "seed=0,1,2", *tiny, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    round1 = sweep / "more_seeds" / "round1"
    first, second = round1 / "config0" / "0" / "result.json", round1 / "config1" / "0" / "result.json"
    process = start(["more-seeds", str(sweep), "--max-seeds", "6"], cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not first.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.is_file() and not second.is_file(), process.communicate()[0]
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group, the running job included
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output
    assert "interrupted" in output and not second.is_file()
    resumed = regbench("more-seeds", str(sweep), "--max-seeds", "6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {round1}" in resumed.stdout and "1 skipped as already done" in resumed.stdout
    assert second.is_file() and not (sweep / "more_seeds" / "round2").exists()
    assert regbench("report", str(sweep), cwd=tmp_path).returncode == 0
    table = pd.read_csv(sweep / "report.csv")
    assert table.loc[table["reg"] == "dropout", "delta.n_pairs"].item() == 4
