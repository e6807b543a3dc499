"""The report: run folders in, one row per configuration out (the Report that `regbench report`
prints and writes).

`build` reads the runs (regbench.reporting.collect) and aggregates them
(regbench.reporting.aggregate); regbench.reporting.report_format prints and writes a Report
(runs.csv, report.csv, report.md, report.html), regbench.reporting.report_command is the
command. The same `build` / `write` / `render` steps run at the end of every multirun (see
regbench.cli.callbacks), so `regbench report SWEEP` later gives the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.config.keys import KEYS, ONLY_FOR
from regbench.reporting.aggregate import (SeedsPlan, against_baseline, describe_config, set_aside_duplicates, summarize,
                                         with_config_ids)
from regbench.reporting.collect import collect


@dataclass
class Report:
    """Everything a report shows: the runs, the per-configuration table and what was left out.

    `runs` holds one run per configuration and seed; `duplicates` the runs set aside for
    repeating one of them (see regbench.reporting.aggregate.set_aside_duplicates). `notes` are what the
    user should read about the comparison (an unmatched or ambiguous baseline).
    """

    runs: pd.DataFrame
    table: pd.DataFrame
    constants: dict[str, Any]
    baseline: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    seeds: SeedsPlan = field(default_factory=SeedsPlan)  # the settings of the seeds-needed figures


def build(paths: list[Path], baseline: str | None = None, baseline_config: int | None = None,
          seeds: SeedsPlan | None = None) -> Report:
    """Reads the runs under `paths` and aggregates them.

    Args:
        paths: sweep folders, run folders or trees of them, merged.
        baseline: the reg label to compare against; None means `none`. When no run has the
            label, a note says so (and, for `none`, how to add it).
        baseline_config: a configuration id (report.csv's `config`) to compare against instead.
        seeds: alpha, power and minimal effect of the seeds-needed figures (default SeedsPlan()).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no finished run was found, or `baseline_config` names no configuration.
    """
    collected = collect(paths)
    if collected.runs.empty:
        where = ", ".join(str(p) for p in paths)
        raise ValueError(f"no finished runs (result.json) under {where}")
    runs, duplicates = set_aside_duplicates(with_config_ids(collected.runs))
    table, constants = summarize(runs)
    notes = []
    label = "none" if baseline is None else baseline
    if baseline_config is not None:
        if baseline_config not in set(table["config"]):
            raise ValueError(f"--baseline-config {baseline_config}: no such configuration "
                             f"(the config column of report.csv: {', '.join(map(str, sorted(table['config'])))})")
        ok_ids = set(runs.loc[runs["status"] == "ok", "config"])
        if baseline_config not in ok_ids:
            notes.append(f"--baseline-config {baseline_config} has no run with status ok: no paired differences")
        label = describe_config(table, baseline_config)
    elif not (runs["reg"] == label).any():
        labels = ", ".join(sorted(runs["reg"].astype(str).unique()))
        notes.append(f"--baseline {baseline} matches no run (the labels here: {labels}): no paired differences"
                     if baseline is not None else no_baseline(labels))
    seeds = seeds or SeedsPlan()
    table, chosen = against_baseline(runs, table, label, baseline_config, seeds)
    return Report(runs=runs, table=table, constants=constants, baseline=label, skipped=collected.skipped,
                  duplicates=duplicates, notes=collected.notes + notes + chosen, seeds=seeds)


def no_baseline(labels: str) -> str:
    """The line for runs without the default baseline, the label `none`."""
    return (f"no run is labelled none, the baseline (the labels here: {labels}): Δ, d_z and p-values need it; "
            "run it as its own sweep, `regbench run -m reg=none` with the same overrides but no reg.* one, and merge "
            "the two (`regbench report SWEEP BASELINE`), or compare with another label: --baseline LABEL")


def applies(key: str, runs: pd.DataFrame) -> bool:
    """Whether `key` means something for at least one of the runs (its declared `applies`:
    regbench.config.keys.ONLY_FOR)."""
    if key not in ONLY_FOR:
        return True
    owner, values = ONLY_FOR[key]
    column = runs.get(f"params.{owner}")
    if column is None:
        return True
    if values is None:  # the owning knob switches it on: anything but 0 / false / missing
        return bool((column.notna() & (column != 0) & (column != False)).any())  # noqa: E712
    return bool(column.isin(values).any())


def idle(key: str, runs: pd.DataFrame) -> bool:
    """Whether `key` is a knob of a built-in regularizer that acts in none of the runs (its label
    part is None in every run, from the run's knob values and model): the runs' `reg` labels
    already say that it is off, so the constants line need not list its knobs (`reg.swa=0`,
    `reg.mix_prob=1`); or a corruption of `shift` that no run lists (`shift.contrast=[]`). A run whose values cannot be read counts as one where it acts."""
    from types import SimpleNamespace

    from regbench.regularizers.registry import knob_owners

    if key.startswith("shift.") and f"params.{key}" in runs:  # a corruption no run listed: no column under it either
        return bool(runs[f"params.{key}"].map(lambda v: v in ("[]", None) or v != v).all())
    cls = knob_owners().get(key)
    if cls is None or runs.empty:
        return False
    # each distinct combination of its knobs and the model once (a study holds thousands of runs)
    columns = [c for c in (*(f"params.reg.{k.name}" for k in cls.knobs), "params.model.name") if c in runs]
    first = ~runs[columns].astype(str).duplicated()
    for _, recorded in runs[first.to_numpy()].iterrows():
        try:
            values = {k.name: _value(recorded.get(f"params.reg.{k.name}"), k.default) for k in cls.knobs}
            if cls.label(values, SimpleNamespace(name=recorded.get("params.model.name"))) is not None:
                return False
        except Exception:  # noqa: BLE001  (an odd recorded value: keep the key in the line)
            return False
    return True


def _value(recorded: Any, default: Any) -> Any:
    """A recorded knob value as its Knob reads it (a run recorded before the knob existed ran
    with its default)."""
    if recorded is None or (isinstance(recorded, float) and pd.isna(recorded)):
        return default
    return recorded


def all_runs(report: Report) -> pd.DataFrame:
    """runs.csv: the kept runs, then the duplicates set aside (with `duplicate_of`)."""
    if report.duplicates.empty:
        return report.runs.assign(duplicate_of=None)
    return pd.concat([report.runs.assign(duplicate_of=None), report.duplicates], ignore_index=True)


def computed(key: str) -> bool:
    """Whether `key` can change what a run computes (its declaration's `computed`,
    regbench.config.keys): False for what is kept, where, or how a job runs (overwrite,
    trainer.checkpoint_seconds, search.seeds, ...). A key the table does not declare (a user
    regularizer's knob, an entry of model.kwargs) counts as computed."""
    declared = KEYS.get(key)
    return declared is None or declared.computed
