"""Turns the runs table into the comparison tables: per-configuration statistics across seeds,
paired differences against a baseline, and a pivot view.

A configuration is every `params.*` value except the seed (and `dataset.split_seed` when it
follows the seed). A seed is one observation: of the runs with the same configuration and
seed only one is kept (see `set_aside_duplicates`). Runs with status `diverged` or `failed`
are counted, never averaged.

The paired t-test against a baseline is the plain one where the seeds share one split, and the
corrected resampled t-test of Nadeau & Bengio (2003) where each seed re-splits the data (see
`paired_p`, `split_sizes`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from regbench.reporting import power as power_analysis

SEED = "params.seed"
SPLIT_SEED = "params.dataset.split_seed"


# A classification's calibration metrics (result.json `<split>_ece`, `<split>_brier`; regbench.engine.calibration):
# lower is better.
CALIBRATION = ("ece", "brier")


def shifted_names(names: Any, metrics: tuple[str, ...] = ("acc", "r2", "loss")) -> list[str]:
    """Of the column `names`, the test metrics on corrupted copies (result.json's
    `test_acc@gaussian_noise=0.5`, regbench.engine.shift) of `metrics`, by corruption
    (regbench.data.corrupt.CORRUPTIONS' order), then severity, then metric."""
    from regbench.data.corrupt import CORRUPTIONS

    found = []
    for c in names:
        c = str(c)
        metric, at, rest = c.removeprefix("test_").partition("@")
        name, _, severity = rest.partition("=")
        if c.startswith("test_") and at and metric in metrics and name in CORRUPTIONS:
            try:
                found.append(((CORRUPTIONS.index(name), float(severity), metrics.index(metric)), c))
            except ValueError:  # not a severity: not a column regbench wrote
                continue
    return [c for _, c in sorted(found)]


def shifted_columns(runs: pd.DataFrame, metrics: tuple[str, ...] = ("acc", "r2", "loss")) -> list[str]:
    """`shifted_names` of the columns of `runs` that hold a value."""
    return [c for c in shifted_names(runs.columns, metrics) if runs[c].notna().any()]


def metric_of(runs: pd.DataFrame) -> str:
    """`acc` when any run is a classification, else `r2`."""
    return "acc" if "val_acc" in runs and runs["val_acc"].notna().any() else "r2"


def summary_columns(runs: pd.DataFrame) -> list[str]:
    """The quantities summarised per configuration, in the order they are reported."""
    cols = []
    for m in ("acc", "r2"):
        cols += [f"{s}_{m}" for s in ("train", "val", "test")] + [f"gap.{m}"]
    cols += ["train_loss", "val_loss", "test_loss", "gap.loss"]
    cols += [f"{s}_{c}" for c in CALIBRATION for s in ("train", "val", "test")]  # classification only
    cols += shifted_columns(runs)  # where runs were evaluated under shift
    cols += ["sparsity", "best_epoch", "epochs_run", "seconds"]
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


def set_aside_duplicates(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits `runs` (with `config` ids) into (kept, duplicates): one run per configuration and
    seed is kept, so that a rerun or a merged copy of a sweep never counts as another seed.

    The rule: the newest run that finished (status ok or diverged) is kept; a failed run is kept
    only when no run of that configuration and seed finished. Newest by `finished_at` (when
    result.json was written), then by folder name. Each duplicate names, in `duplicate_of`, the
    folder of the run kept in its place.
    """
    if runs.empty:
        return runs, runs.iloc[0:0]
    finished = runs["status"].isin(["ok", "diverged"]).astype(int)
    when = runs["finished_at"].astype(str) if "finished_at" in runs else pd.Series("", index=runs.index)
    order = pd.DataFrame({"finished": finished, "when": when, "folder": runs["folder"].astype(str)}, index=runs.index)
    ranked = runs.loc[order.sort_values(["finished", "when", "folder"], ascending=False, kind="stable").index]
    first = ~ranked.duplicated(["config", SEED], keep="first")
    kept, duplicates = ranked[first], ranked[~first]
    kept_folder = kept.set_index(["config", SEED])["folder"]
    duplicates = duplicates.assign(
        duplicate_of=[kept_folder.loc[(c, s)] for c, s in zip(duplicates["config"], duplicates[SEED])]
    )
    return kept.sort_index(), duplicates.sort_index()


def ci95(std: pd.Series, n: pd.Series) -> pd.Series:
    """Half-width of the 95% confidence interval of a mean: t(0.975, n-1) * std / sqrt(n)."""
    n = n.astype(float)
    t = pd.Series(np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan), index=n.index)
    return t * std / np.sqrt(n)


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Returns (report, constants): one row per configuration, and the parameters that are
    the same in every run (named once instead of repeated per row).

    `runs` must carry `config` ids (see with_config_ids) and hold one run per configuration and
    seed (see set_aside_duplicates). Columns: the varying parameters (without the `params.`
    prefix), `reg`, `n_seeds` (distinct seeds of ok runs), `n_diverged`, `n_failed`,
    `n_early_best` (ok runs whose reported epoch lies within the first `patience`),
    `<quantity>.mean/.std/.ci95` for each summarised quantity, and `config`. Grouped by dataset
    and model (see group_keys: their columns lead, the groups in the order the runs first show
    them), and within each group sorted by mean validation metric, best first.
    """
    keys = config_keys(runs)
    vary = varying(runs, keys)
    groups = group_keys(vary)
    vary = groups + [k for k in vary if k not in groups]  # the group leads the row
    constants = {k.removeprefix("params."): runs[k].iloc[0] for k in keys if k not in vary}
    first = runs.drop_duplicates("config").set_index("config", drop=False)
    report = first[vary + ["reg"]].copy()
    report.columns = [c.removeprefix("params.") for c in report.columns]
    status = runs.groupby("config")["status"]
    ok = runs[runs["status"] == "ok"]
    report["n_seeds"] = ok.groupby("config")[SEED].nunique().reindex(report.index).fillna(0).astype(int)
    report["n_diverged"] = status.apply(lambda s: int((s == "diverged").sum()))
    report["n_failed"] = status.apply(lambda s: int((s == "failed").sum()))
    if "early_best" in ok:  # results written before the flag existed have none
        flagged = ok["early_best"].map(lambda v: v is not None and v == v and bool(v))  # None/NaN: unknown
        report["n_early_best"] = flagged.groupby(ok["config"]).sum().reindex(report.index).fillna(0).astype(int)
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
    if groups:  # index = config id, the order of first appearance: the groups keep the sweep's order
        text = as_text(first[groups[0]])
        for k in groups[1:]:
            text = text + "\x1f" + as_text(first[k])
        rank = pd.Series(pd.factorize(text.sort_index())[0], index=text.sort_index().index)
        report = report.iloc[np.argsort(rank.reindex(report.index).to_numpy(), kind="stable")]
    return report.reset_index(drop=True).rename_axis(None), constants


def group_keys(vary: list[str]) -> list[str]:
    """The varying parameters that say what a row was trained on, data and model
    (`params.dataset.*`, `params.model.*`): rows are grouped by them, since validation metrics
    compare only within one dataset and model."""
    return [k for k in vary if k.startswith(GROUPED)]


GROUPED = ("params.dataset.", "params.model.")


def group_of(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each row's group of a summarized table (its leading dataset and model columns, as text)."""
    columns = [c for c in table.columns[: list(table.columns).index("reg")] if f"params.{c}".startswith(GROUPED)]
    return [tuple(str(row[c]) for c in columns) for _, row in table.iterrows()] if columns else [()] * len(table)


def _per_seed(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby(SEED)[column].mean()


def _paired_differences(values: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, float]:
    """`values - base` with rounding residues (4 ulps of the larger compared value) set to zero,
    and that tolerance: 2/288 - 1/288 and 3/288 - 2/288 differ in the last bit, not in evidence."""
    diff = values - base
    scale = max(float(np.abs(values).max()), float(np.abs(base).max()), np.finfo(float).tiny)
    tolerance = 4 * np.finfo(float).eps * scale
    return np.where(np.abs(diff) <= tolerance, 0.0, diff), tolerance


def paired_p(values: np.ndarray, base: np.ndarray, correction: float | None = None) -> tuple[float, float]:
    """Two-sided p-values of the paired t-test and the Wilcoxon signed-rank test of
    `values - base` (one entry per seed); NaN where the test is undefined.

    With `correction` (n_test / n_train, see `split_sizes`) the t-test is the corrected
    resampled t-test (Nadeau & Bengio 2003): the variance of the mean difference is the sample
    variance times 1/J + n_test/n_train instead of 1/J (J pairs), with J - 1 degrees of freedom.
    Seeds that re-split the data train on overlapping rows, so their differences are correlated
    and the plain test's 1/J makes it too confident. The Wilcoxon test has no such correction.

    Differences that are equal up to the rounding of the subtraction (4 ulps of the larger
    value; 2/288 - 1/288 and 3/288 - 2/288 differ in the last bit) count as equal. The t-test
    is undefined when every difference is the same (no variance: scipy would divide a rounding
    residue by another and report p = 1e-15); the Wilcoxon test when every difference is zero
    (whatever the installed scipy returns for it). Below 2 pairs both are undefined.
    """
    if len(values) < 2:
        return math.nan, math.nan
    diff, tolerance = _paired_differences(values, base)
    if np.ptp(diff) <= tolerance:
        p_t = math.nan
    elif correction is None:
        p_t = float(stats.ttest_1samp(diff, 0.0).pvalue)  # equals ttest_rel(config, baseline)
    else:
        t = diff.mean() / math.sqrt(diff.var(ddof=1) * (1 / len(diff) + correction))
        p_t = float(2 * stats.t.sf(abs(t), len(diff) - 1))
    if not diff.any():
        return p_t, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that exact p-values are unavailable with zeros or ties
        p_w = float(stats.wilcoxon(diff).pvalue)
    return p_t, p_w


def effect_size(values: np.ndarray, base: np.ndarray, correction: float | None = None) -> float:
    """Cohen's d_z of the paired differences `values - base`: their mean over their sample
    standard deviation (n-1), the paired t statistic divided by sqrt(n). It says how large the
    difference is in units of its seed-to-seed spread, where the p-value says only how sure.

    With `correction` (see `paired_p`) it uses the corrected test's variance: the corrected t
    over sqrt(n), i.e. the standard deviation widened by sqrt(1 + n * correction), so that it
    never claims more than the p-value beside it.

    NaN where the paired t-test is undefined (see `paired_p`): below 2 pairs, or when every
    difference is the same up to rounding (no variance: the ratio would be infinite, or the
    quotient of two rounding residues).
    """
    if len(values) < 2:
        return math.nan
    diff, tolerance = _paired_differences(values, base)
    if np.ptp(diff) <= tolerance:
        return math.nan
    widen = 1.0 if correction is None else math.sqrt(1 + len(diff) * correction)
    return float(diff.mean() / (diff.std(ddof=1) * widen))


def _known(value: Any) -> Any:
    """`value`, or None where it is missing (None, NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


PLAIN_T = "paired t"
CORRECTED_T = "corrected resampled t (Nadeau-Bengio)"
SPLITS = ("train", "val", "test")
# Rows of the bundled datasets (a torchvision dataset's official train and test parts), for
# the split sizes of runs recorded before result.json had them.
BUNDLED_ROWS = {"digits": 1797, "breast_cancer": 569, "wine": 178, "diabetes": 442}
OFFICIAL_SPLIT = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}


def measured_on(quantity: str) -> str:
    """The split a compared quantity is measured on: test for the test metric, else validation
    (a gap is train minus validation)."""
    return "test" if quantity.startswith("test_") else "val"


def resplits(frame: pd.DataFrame) -> bool:
    """Whether the runs of `frame` (one configuration) differ in `dataset.split_seed`: each seed
    its own split (the default, `dataset.split_seed=${seed}`), not one split for all."""
    return SPLIT_SEED in frame and frame[SPLIT_SEED].nunique(dropna=False) > 1


def split_sizes(run: pd.Series | dict[str, Any]) -> dict[str, float] | None:
    """The train, val and test sizes of a run (a runs-table row): as it recorded them
    (result.json `split_sizes`), else as its data config gives them (the fractions, the
    train_size, the bundled dataset's rows; fractions of the whole where the row count is
    unknown, which gives the same ratios). None where neither tells (an official test split of
    unknown size, or a train_size count on data of unknown size).
    """
    recorded = [_known(run.get(f"split_sizes.{s}")) for s in SPLITS]
    if all(v is not None for v in recorded):
        return dict(zip(SPLITS, map(float, recorded)))
    name, v, t, size = (_known(run.get(f"params.dataset.{k}")) for k in ("name", "val_fraction", "test_fraction",
                                                                           "train_size"))
    if v is None or t is None:
        return None
    if name in OFFICIAL_SPLIT:
        trainval, n_test = OFFICIAL_SPLIT[name]
        counted = True
    elif name in ("arrays", "image_folder") or _known(run.get("params.dataset.test_path")) \
            or _known(run.get("params.dataset.split_column")):
        return None  # a user's data may hold its own test rows (x_test, test/), of a size no parameter says
    else:
        rows = BUNDLED_ROWS.get(name) or (_known(run.get("params.dataset.n_samples"))
                                          if str(name).startswith("synthetic") else None)
        counted = rows is not None
        n_test = math.ceil(t * rows) if counted else t  # the splitter's rounding (regbench.data.splitting)
        trainval = (rows if counted else 1) - n_test
    n_val = math.ceil(v * trainval) if counted else v * trainval
    pool = trainval - n_val
    if size is None or size == 1:
        n_train = pool
    elif size > 1:
        if not counted:
            return None
        n_train = size
    else:
        n_train = round(size * pool) if counted else size * pool
    return {"train": float(n_train), "val": float(n_val), "test": float(n_test)}


def config_sizes(frame: pd.DataFrame) -> dict[str, float] | None:
    """The split sizes of the runs of one configuration: the mean of what they recorded, else
    what its data config gives (see split_sizes; the same for every run of a configuration)."""
    columns = [f"split_sizes.{s}" for s in SPLITS]
    if all(c in frame for c in columns) and frame[columns].notna().all().all():
        return {s: float(frame[c].mean()) for s, c in zip(SPLITS, columns)}
    return split_sizes({c: frame[c].iat[0] for c in frame.columns if c.startswith("params.dataset.")})


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment of one family of p-values (Holm 1979; Demšar 2006, sec. 3.2.2):
    with the m defined p-values sorted increasingly, p_(i) is multiplied by m - i + 1 (m, m-1,
    ..., 1), a running maximum keeps the order, and the result is capped at 1. Rejecting where
    the adjusted p is below alpha controls the chance of any false rejection in the family at
    alpha. NaN entries (undefined tests) are not part of the family and stay NaN.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    m = len(defined)
    if m:
        order = defined[np.argsort(p[defined], kind="stable")]
        steps = np.maximum.accumulate((m - np.arange(m)) * p[order])
        adjusted[order] = np.minimum(steps, 1.0)
    return adjusted


def against_baseline(
    runs: pd.DataFrame, report: pd.DataFrame, baseline: str = "none", baseline_config: int | None = None,
    seeds: SeedsPlan | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Adds the paired differences to a baseline configuration to `report` (same row order).

    Each configuration is paired with the baseline that shares its non-regularization
    parameters (dataset, model, optimizer, trainer...), over the seeds both have with status
    ok: same seed, same split and same initial weights. Where the seeds re-split the data (see
    `resplits`) the t-test is Nadeau & Bengio's corrected one (see `paired_p`), with n_test/n_train
    from the runs' split sizes (see `split_sizes`; n_test that of the split the quantity is
    measured on: validation for the validation metric and the gaps, test for the test metric).
    The baseline is configuration
    `baseline_config` when given, else a configuration labelled `baseline`; where several
    with that label qualify, the one sharing the most seeds (the lowest config id on ties), and
    a note says which. Columns: `delta.n_pairs`, `delta.test` (which t-test: PLAIN_T or
    CORRECTED_T), `delta.n_train`, `delta.n_val`, `delta.n_test` (the split sizes the corrected
    test used, averaged over the paired runs; empty for the plain test), and for the validation and test metric,
    both gaps and (classification) the test ECE and Brier score (lower better: a negative delta is
    better calibrated), `delta.<q>` (mean of config minus baseline), `delta.<q>.d_z` (the effect size,
    see `effect_size`), `delta.<q>.p_ttest` and `delta.<q>.p_wilcoxon` (see `paired_p`), and
    `delta.<q>.p_ttest_holm` and `delta.<q>.p_wilcoxon_holm`: those p-values Holm-adjusted
    (see `holm`) within each family, one dataset, one quantity and one test, over the
    configurations compared with a baseline whose test is defined. The baseline's own rows and
    configurations without a baseline stay empty. `delta.baseline_config` names the baseline each
    row was paired with. For the validation and test metric, the seeds a conclusion needs (see
    regbench.reporting.power, with `seeds`' alpha, power and minimal effect): `delta.<q>.ci_low`
    and `.ci_high` (the 1 - alpha confidence interval of the mean difference, corrected as the
    t-test is), `delta.<q>.seeds_needed` (the pairs that detect the observed difference; inf:
    no number does) and `delta.<q>.needs_seeds` (only where the interval holds both 0 and a
    difference of the minimal effect: the pairs that would settle it).

    Returns:
        The table, and notes on how baselines were chosen (for the user to read).
    """
    m = metric_of(runs)
    quantities = [q for q in (f"val_{m}", f"test_{m}", f"gap.{m}", "gap.loss", *(f"test_{c}" for c in CALIBRATION),
                              *shifted_columns(runs, (m,))) if q in runs]
    pair_keys = [k for k in varying(runs, config_keys(runs)) if not k.startswith("params.reg.")]
    ok = runs[runs["status"] == "ok"]
    by_config = dict(tuple(ok.groupby("config")))
    if baseline_config is not None:
        bases = [by_config[baseline_config]] if baseline_config in by_config else []
        is_base = lambda frame: frame is bases[0]  # noqa: E731
    else:
        bases = [f for f in by_config.values() if f["reg"].iloc[0] == baseline]
        is_base = lambda frame: frame["reg"].iloc[0] == baseline  # noqa: E731
    seeds = seeds or SeedsPlan()
    out = {"delta.n_pairs": [np.nan] * len(report), "delta.test": [None] * len(report)}
    out |= {f"delta.n_{split}": [np.nan] * len(report) for split in SPLITS}
    out["delta.baseline_config"] = [np.nan] * len(report)
    unknown_sizes = []  # configurations whose seeds re-split data of sizes nothing records
    for q in quantities:
        for suffix in ("", ".d_z", ".p_ttest", ".p_wilcoxon", ".p_ttest_holm", ".p_wilcoxon_holm"):
            out[f"delta.{q}{suffix}"] = [np.nan] * len(report)
    planned_quantities = [q for q in (f"val_{m}", f"test_{m}") if q in quantities]
    for q in planned_quantities:
        for suffix in PLANNED:
            out[f"delta.{q}{suffix}"] = [np.nan] * len(report)
    choices: dict[tuple[tuple[int, ...], int], None] = {}
    family = [None] * len(report)  # the dataset of each compared row: Holm adjusts within one
    for row, cid in enumerate(report["config"]):
        frame = by_config.get(cid)
        if frame is None or is_base(frame):
            continue
        same = [b for b in bases if all(str(b[k].iloc[0]) == str(frame[k].iloc[0]) for k in pair_keys)]
        if not same:
            continue
        base = max(same, key=lambda b: len(set(b[SEED]) & set(frame[SEED])))  # the first, lowest id, on ties
        if len(same) > 1:
            choices[(tuple(int(b["config"].iloc[0]) for b in same), int(base["config"].iloc[0]))] = None
        paired_seeds = sorted(set(frame[SEED]) & set(base[SEED]))
        out["delta.n_pairs"][row] = len(paired_seeds)
        out["delta.baseline_config"][row] = int(base["config"].iloc[0])
        family[row] = str(frame["dataset"].iloc[0]) if "dataset" in frame else ""
        paired = frame[frame[SEED].isin(paired_seeds)]
        corrected = resplits(paired)
        mean_size = (config_sizes(paired) if corrected else None) or {}
        known = bool(mean_size)
        if len(paired_seeds) >= 2:
            out["delta.test"][row] = CORRECTED_T if corrected else PLAIN_T
            if corrected and not known:
                unknown_sizes.append(int(cid))
        for split, n in mean_size.items():
            out[f"delta.n_{split}"][row] = n
        for q in quantities if paired_seeds else ():
            values, base_values = (_per_seed(f, q).loc[paired_seeds].to_numpy(dtype=float) for f in (frame, base))
            correction = mean_size[measured_on(q)] / mean_size["train"] if known else None
            out[f"delta.{q}"][row] = float((values - base_values).mean())
            out[f"delta.{q}.d_z"][row] = effect_size(values, base_values, correction)
            p_t, p_w = paired_p(values, base_values, correction)
            out[f"delta.{q}.p_ttest"][row], out[f"delta.{q}.p_wilcoxon"][row] = p_t, p_w
            if corrected and not known:  # no honest t-test without the sizes; the Wilcoxon test needs none
                out[f"delta.{q}.d_z"][row] = out[f"delta.{q}.p_ttest"][row] = math.nan
            elif q in planned_quantities:
                for suffix, value in zip(PLANNED, seeds.of(values, base_values, correction)):
                    out[f"delta.{q}{suffix}"][row] = value
    for dataset in {f for f in family if f is not None}:
        rows = [row for row, f in enumerate(family) if f == dataset]
        for q in quantities:
            for test in ("p_ttest", "p_wilcoxon"):
                adjusted = holm([out[f"delta.{q}.{test}"][row] for row in rows])
                for row, p in zip(rows, adjusted):
                    out[f"delta.{q}.{test}_holm"][row] = float(p)
    notes = [
        f"--baseline {baseline} matches {len(candidates)} configurations that could pair "
        f"({'; '.join(describe_config(report, c) for c in candidates)}): compared with {describe_config(report, chosen)}, "
        "the one sharing the most seeds (the lowest config id on ties); choose one with --baseline-config N"
        for candidates, chosen in choices
    ]
    if unknown_sizes:
        notes.append(f"config {', '.join(map(str, unknown_sizes))}: the seeds re-split the data, but the runs record "
                     "no split sizes (result.json split_sizes, written by newer regbench) and the data config does not "
                     "give them: no corrected t-test or d_z (runs of a regbench that records split sizes have them)")
    for column in ("delta.n_pairs", "delta.baseline_config"):
        out[column] = pd.array([None if math.isnan(n) else int(n) for n in out[column]], dtype="Int64")
    # one concat, not a column at a time (pandas warns of a fragmented frame); config stays last
    kept = report.drop(columns=["config", *[c for c in out if c in report.columns]])
    table = pd.concat([kept, pd.DataFrame(out, index=report.index), report[["config"]]], axis=1)
    return table, notes


PLANNED = (".ci_low", ".ci_high", ".seeds_needed", ".needs_seeds")  # see SeedsPlan.of


@dataclass(frozen=True)
class SeedsPlan:
    """The settings of the seeds-needed figures (`regbench report --alpha --power --min-effect`).

    Attributes:
        alpha: the level of the two-sided paired t-test, and 1 - the confidence of the interval.
        power: the chance of detecting the difference asked of the seeds needed.
        min_effect: the smallest difference that matters, in the metric's units (0.01: one
            point of accuracy or R^2); None: no comparison is flagged inconclusive.
    """

    alpha: float = 0.05
    power: float = 0.8
    min_effect: float | None = 0.01

    def of(self, values: np.ndarray, base: np.ndarray, correction: float | None) -> tuple[float, ...]:
        """(ci_low, ci_high, seeds_needed, needs_seeds) of one comparison (see regbench.reporting.power)."""
        diff, tolerance = _paired_differences(values, base)
        low, high = power_analysis.interval(diff, self.alpha, correction)
        if len(diff) < 2 or np.ptp(diff) <= tolerance:  # no spread: no t-test, nothing to plan
            return low, high, math.nan, math.nan
        needed, _, _, needs = power_analysis.planned(diff, self.alpha, self.power, correction, self.min_effect)
        return low, high, needed, needs


def describe_config(report: pd.DataFrame, config: int) -> str:
    """`config N (reg.alpha=0.001, ...)`: the id and the varying parameters that set it apart."""
    row = report[report["config"] == config]
    if row.empty:
        return f"config {config}"
    columns = list(report.columns)
    params = columns[: columns.index("reg")] if "reg" in columns else []
    values = ", ".join(f"{p}={value_text(row[p].iloc[0], p)}" for p in params)
    return f"config {config} ({values})" if values else f"config {config}"


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
        raise KeyError(f"--metric {metric}: no such column (try val_acc, test_acc, gap.acc, gap.loss, sparsity, "
                       "test_ece, test_brier)")
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
    table = table.reindex(sorted(table.columns, key=sort_key), axis=1)
    table.columns = [f"{key.removeprefix('params.')}={value_text(c, column)}" for c in table.columns]
    table = table.reset_index()
    for k in others:  # row labels as the config spells them
        table[k] = table[k].map(lambda v, k=k: value_text(v, k))
    table.columns = [str(c).removeprefix("params.") for c in table.columns]
    return table


def value_text(value: Any, key: str = "") -> str:
    """A parameter value as the config spells it: null (off for trainer.patience) for a missing
    value, true/false, whole numbers without `.0`, others as `:g`."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "off" if key.endswith("trainer.patience") else "null"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    return str(value)


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in increasing order, then everything else as text."""
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))
