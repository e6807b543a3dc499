"""A stack's members against their lone runs (bit for bit, or within the tolerance docs/how-to/launchers.md states),
and two results that differ only in their timing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from regbench.engine import grouping, sweep as stacking
from regbench.engine.runner import run
from tests.helpers.configs import make_cfg
from tests.helpers.rundirs import metrics_rows

SMALL = ["dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=12"]
# What must match between a member and its lone run (seconds and stack_size may not).
SAME = ("status", "metrics", "gap", "best_epoch", "epochs_run", "stopped_early", "sparsity", "n_params",
        "config_hash", "params", "reg", "seed")


def alone_and_stacked(tmp_path: Path, common: list[str], variants: list[list[str]]):
    """Each variant (SMALL, then `common`, then its own overrides) run alone into tmp_path/alone<i>
    and all of them as one stack into tmp_path/stacked<i>; their results (a stack they must form)."""
    cfgs = [make_cfg(*SMALL, *common, *v) for v in variants]
    assert len({grouping.stack_key(c) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    alone = [run(c, tmp_path / f"alone{i}", quiet) for i, c in enumerate(cfgs)]
    stacked = stacking.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], quiet)
    return alone, stacked


def bit_for_bit(tmp_path: Path, alone: list[dict], stacked: list[dict], variants: list[list[str]]) -> None:
    """Each member ends exactly where its lone run ends: every SAME key of result.json and every
    metrics.csv row but its wall-clock seconds."""
    for i, (a, s) in enumerate(zip(alone, stacked)):
        assert {k: s[k] for k in SAME} == {k: a[k] for k in SAME}, variants[i]
        assert metrics_rows(tmp_path / f"stacked{i}") == metrics_rows(tmp_path / f"alone{i}"), variants[i]


def within_tolerance(alone: list[dict], stacked: list[dict], variants: list[list[str]]) -> None:
    """Each member against its lone run within the tolerance docs/how-to/launchers.md states for stacks that are not bit
    for bit (conv nets, SAM): losses and Brier scores rel 1e-3 / abs 2e-3, accuracies and ECE 0.01 (one sample of
    300 is 0.0033)."""
    for i, (a, s) in enumerate(zip(alone, stacked)):
        assert a["status"] == s["status"] == "ok", (a.get("error"), s.get("error"))
        assert s["stack_size"] == len(variants) and s["n_params"] == a["n_params"] and s["config_hash"] == a["config_hash"]
        for key, value in a["metrics"].items():
            # ECE counts top-label hits per bin: a flipped sample moves it as it moves acc (as it moves an accuracy under shift)
            if key.endswith(("_acc", "_ece")) or "_acc@" in key:
                assert abs(s["metrics"][key] - value) <= 0.01, (variants[i], key)
            else:
                assert s["metrics"][key] == pytest.approx(value, rel=1e-3, abs=2e-3), (variants[i], key)
        assert s["sparsity"] == pytest.approx(a["sparsity"], abs=0.01)


def same_except_timing(a: dict, b: dict) -> None:
    """Two result.json alike but for their seconds, resume point and finish time."""
    ignore = {"seconds", "resumed_from_epoch", "finished_at"}
    assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def stacks_bit_for_bit(tmp_path: Path, common: list[str], variants: list[list[str]]) -> tuple[list[dict], list[dict]]:
    """alone_and_stacked, every lone run ok, then bit_for_bit; returns (alone, stacked)."""
    alone, stacked = alone_and_stacked(tmp_path, common, variants)
    assert all(a["status"] == "ok" for a in alone), [a.get("error") for a in alone]
    bit_for_bit(tmp_path, alone, stacked, variants)
    return alone, stacked


def ends_alike(a: dict, a_folder: Path, b: dict, b_folder: Path) -> None:
    """Two runs that end alike, as a resumed run and its never-interrupted twin must: result.json
    but for its timing (same_except_timing), metrics.csv but for its seconds, bit for bit."""
    same_except_timing(a, b)
    drop_seconds = lambda d: pd.read_csv(d / "metrics.csv").drop(columns="seconds")  # noqa: E731
    pd.testing.assert_frame_equal(drop_seconds(a_folder), drop_seconds(b_folder), check_exact=True)
