"""Turns the runs table into the comparison tables: per-configuration statistics across seeds,
paired differences against a baseline, and a pivot view.

A configuration is every `params.*` value except the seed (and `dataset.split_seed` when it
follows the seed). Runs with status `diverged` or `failed` are counted, never averaged.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

SEED = "params.seed"
SPLIT_SEED = "params.dataset.split_seed"


def metric_of(runs: pd.DataFrame) -> str:
    """`acc` when any run is a classification, else `r2`."""
    return "acc" if "val_acc" in runs and runs["val_acc"].notna().any() else "r2"


def summary_columns(runs: pd.DataFrame) -> list[str]:
    """The quantities summarised per configuration, in the order they are reported."""
    cols = []
    for m in ("acc", "r2"):
        cols += [f"{s}_{m}" for s in ("train", "val", "test")] + [f"gap.{m}"]
    cols += ["train_loss", "val_loss", "test_loss", "gap.loss", "sparsity", "best_epoch", "epochs_run", "seconds"]
    return [c for c in cols if c in runs and runs[c].notna().any()]


def config_keys(runs: pd.DataFrame) -> list[str]:
    """The `params.*` columns that identify a configuration (the seed excluded)."""
    keys = [c for c in runs.columns if c.startswith("params.") and c != SEED]
    if SPLIT_SEED in runs and SEED in runs and (runs[SPLIT_SEED] == runs[SEED]).all():
        keys.remove(SPLIT_SEED)
    return keys


def as_text(values: pd.Series) -> pd.Series:
    """Values as text, missing ones included ("None"/"nan"), for grouping and comparing."""
    return values.map(str)


def varying(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys that take more than one value (missing values count as a value)."""
    return [k for k in keys if as_text(frame[k]).nunique() > 1]


def with_config_ids(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds `config`: the same integer for runs of the same configuration (in order of first
    appearance), so runs.csv rows join report.csv rows."""
    keys = config_keys(runs)
    if not keys or runs.empty:
        return runs.assign(config=0)
    text = as_text(runs[keys[0]])
    for key in keys[1:]:
        text = text + "\x1f" + as_text(runs[key])
    return runs.assign(config=pd.factorize(text)[0])


def ci95(std: pd.Series, n: pd.Series) -> pd.Series:
    """Half-width of the 95% confidence interval of a mean: t(0.975, n-1) * std / sqrt(n)."""
    n = n.astype(float)
    t = pd.Series(np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan), index=n.index)
    return t * std / np.sqrt(n)


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Returns (report, constants): one row per configuration, and the parameters that are
    the same in every run (named once instead of repeated per row).

    `runs` must carry `config` ids (see with_config_ids). Columns: the varying parameters
    (without the `params.` prefix), `reg`, `n_seeds` (ok runs), `n_diverged`, `n_failed`,
    `<quantity>.mean/.std/.ci95` for each summarised quantity, and `config`. Sorted by mean
    validation metric, best first.
    """
    keys = config_keys(runs)
    vary = varying(runs, keys)
    constants = {k.removeprefix("params."): runs[k].iloc[0] for k in keys if k not in vary}
    first = runs.drop_duplicates("config").set_index("config", drop=False)
    report = first[vary + ["reg"]].copy()
    report.columns = [c.removeprefix("params.") for c in report.columns]
    status = runs.groupby("config")["status"]
    report["n_seeds"] = status.apply(lambda s: int((s == "ok").sum()))
    report["n_diverged"] = status.apply(lambda s: int((s == "diverged").sum()))
    report["n_failed"] = status.apply(lambda s: int((s == "failed").sum()))
    ok = runs[runs["status"] == "ok"]
    quantities = summary_columns(ok) if len(ok) else []
    grouped = ok.groupby("config")[quantities].agg(["mean", "std", "count"]) if quantities else None
    for q in quantities:
        mean, std, n = (grouped[(q, s)].reindex(report.index) for s in ("mean", "std", "count"))
        report[f"{q}.mean"], report[f"{q}.std"], report[f"{q}.ci95"] = mean, std, ci95(std, n.fillna(0))
    report["config"] = report.index  # last: the parameters lead, as in a paper's table
    m = metric_of(runs)
    sort_key = f"val_{m}.mean"
    if sort_key in report:
        report = report.sort_values(sort_key, ascending=False, na_position="last", kind="stable")
    return report.reset_index(drop=True).rename_axis(None), constants


def _per_seed(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby(SEED)[column].mean()


def _paired_p(diff: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of the paired t-test and the Wilcoxon signed-rank test of `diff`."""
    if len(diff) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_t = float(stats.ttest_1samp(diff, 0.0).pvalue)  # equals ttest_rel(config, baseline)
        try:
            p_w = float(stats.wilcoxon(diff).pvalue)
        except ValueError:  # every difference is zero: no evidence either way
            p_w = math.nan
    return p_t, p_w


def against_baseline(runs: pd.DataFrame, report: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Adds the paired differences to the baseline configuration to `report` (same row order).

    Each configuration is paired with the baseline (label `baseline`) that shares its
    non-regularization parameters (dataset, model, optimizer, trainer...), over the seeds
    both have with status ok: same seed, same split and same initial weights. Columns:
    `delta.n_pairs`, and for the validation and test metric and both gaps, `delta.<q>` (mean
    of config minus baseline), `delta.<q>.p_ttest` and `delta.<q>.p_wilcoxon` (empty below 2
    pairs). The baseline's own rows and configurations without a baseline stay empty.
    """
    m = metric_of(runs)
    quantities = [q for q in (f"val_{m}", f"test_{m}", f"gap.{m}", "gap.loss") if q in runs]
    pair_keys = [k for k in varying(runs, config_keys(runs)) if not k.startswith("params.reg.")]
    ok = runs[runs["status"] == "ok"]
    by_config = dict(tuple(ok.groupby("config")))
    bases = [f for f in by_config.values() if f["reg"].iloc[0] == baseline]
    out = {"delta.n_pairs": [np.nan] * len(report)}
    for q in quantities:
        for suffix in ("", ".p_ttest", ".p_wilcoxon"):
            out[f"delta.{q}{suffix}"] = [np.nan] * len(report)
    for row, cid in enumerate(report["config"]):
        frame = by_config.get(cid)
        if frame is None or frame["reg"].iloc[0] == baseline:
            continue
        same = [b for b in bases if all(str(b[k].iloc[0]) == str(frame[k].iloc[0]) for k in pair_keys)]
        if not same:
            continue
        base = max(same, key=lambda b: len(set(b[SEED]) & set(frame[SEED])))  # first on ties
        seeds = sorted(set(frame[SEED]) & set(base[SEED]))
        out["delta.n_pairs"][row] = len(seeds)
        for q in quantities if seeds else ():
            diff = (_per_seed(frame, q).loc[seeds] - _per_seed(base, q).loc[seeds]).to_numpy(dtype=float)
            out[f"delta.{q}"][row] = float(diff.mean())
            out[f"delta.{q}.p_ttest"][row], out[f"delta.{q}.p_wilcoxon"][row] = _paired_p(diff)
    return report.drop(columns="config").assign(**out, config=report["config"])  # config stays last


def pivot(runs: pd.DataFrame, key: str, metric: str) -> pd.DataFrame:
    """One row per regularizer label (and per value of any other varying parameter the label
    does not determine), one column per value of `key`, cells "mean ± std" of `metric` over
    the ok runs (just the mean for a single run).

    Raises:
        KeyError: `key` is not a parameter or `metric` not a column of the runs.
    """
    column = key if key.startswith("params.") else f"params.{key}"
    if column not in runs:
        raise KeyError(f"--pivot {key}: no such parameter (try e.g. reg.alpha, reg.dropout, dataset.train_size)")
    if metric not in runs:
        raise KeyError(f"--metric {metric}: no such column (try val_acc, test_acc, gap.acc, gap.loss, sparsity)")
    ok = runs[runs["status"] == "ok"]
    others = [k for k in varying(ok, config_keys(ok)) if k != column]
    # Parameters fixed by the label (l1_ratio for l1/l2/elasticnet) would only repeat it.
    others = [k for k in others if ok.groupby("reg")[k].agg(lambda s: as_text(s).nunique()).max() > 1]
    rows = ["reg"] + others
    stats_ = ok.groupby(rows + [column], dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
    stats_["cell"] = [
        f"{mean:.4f}" if count < 2 else f"{mean:.4f} ± {std:.4f}"
        for mean, std, count in zip(stats_["mean"], stats_["std"], stats_["count"])
    ]
    table = stats_.pivot_table(index=rows, columns=column, values="cell", aggfunc="first", dropna=False)
    table = table.reindex(sorted(table.columns, key=_sort_key), axis=1)
    table.columns = [f"{key.removeprefix('params.')}={c}" for c in table.columns]
    table = table.reset_index()
    table.columns = [str(c).removeprefix("params.") for c in table.columns]
    return table


def _sort_key(value: Any) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))
