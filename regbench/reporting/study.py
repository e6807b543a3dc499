"""`regbench study`: run folders spanning several datasets in; ranks, corrected tests, a
critical-difference diagram, win/tie/loss counts, performance profiles and report.html out.

    regbench study PATH [PATH ...] [--out DIR] [--metric NAME[,NAME]] [--reg LABEL,LABEL[,...]]
                   [--posthoc nemenyi|wilcoxon] [--alpha A] [--rope [R]] [--seed S]

Each regularizer (the `reg` label) enters once per dataset, at its best configuration (strength,
or any other swept parameter) by the mean *validation* metric over seeds; it is scored by the
mean *test* metric of that configuration. The statistics are in regbench.reporting.ranking.
This module builds the Study; regbench.reporting.study_format prints and writes it (with the
figures of regbench.reporting.studyplots), regbench.reporting.study_command is the command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench import UserInputError, budget
from regbench.reporting import ranking
from regbench.reporting.aggregate import (SEED, SPLIT_SEED, config_keys, config_sizes, resplits, set_aside_duplicates,
                                          shifted_names, value_text, varying, with_config_ids)
from regbench.reporting.collect import collect


@dataclass(frozen=True)
class Metric:
    """How a dataset is scored: `column` (val_<column>, test_<column>), for which task (None:
    any), whether higher is better, and its cost for the performance profiles (>= 0, lower better)."""

    name: str
    column: str
    task: str | None
    higher_better: bool
    rope: float | None = None  # the default region of practical equivalence (`--rope` alone), in its units
    val_column: str | None = None  # chosen on val_<val_column> (None: val_<column>): a test-only metric's clean twin

    @property
    def columns(self) -> tuple[str, str]:
        """The runs' columns it chooses a configuration by (validation) and ranks by (test)."""
        return f"val_{self.val_column or self.column}", f"test_{self.column}"

    def cost(self, value: np.ndarray) -> np.ndarray:
        # acc and r2 are at most 1: 1 - value is the error rate, or the unexplained variance.
        return 1 - value if self.higher_better else value


COCKTAIL = "cocktail"  # the label of the cocktail search's runs (regbench.regularizers.registry.COCKTAIL)

METRICS = {
    # rope 0.01: one point of accuracy, of explained variance, of calibration error (Benavoli et al. 2017
    # use 0.01 for accuracy); a loss or mean squared error has its data's units, and no default
    "acc": Metric("acc", "acc", "classification", True, 0.01),
    "r2": Metric("r2", "r2", "regression", True, 0.01),
    "mse": Metric("mse", "loss", "regression", False),  # a regression run's loss is its mean squared error
    "loss": Metric("loss", "loss", None, False),
    # a classification's calibration (regbench.engine.calibration): ECE in [0, 1], Brier in [0, 2], both >= 0
    "ece": Metric("ece", "ece", "classification", False, 0.01),
    "brier": Metric("brier", "brier", "classification", False, 0.01),
}


def default_rope(metrics: list[Metric]) -> float:
    """The rope `--rope` alone means: the metrics' common default.

    Raises:
        UserInputError: a metric without one (a loss, in its data's units), or metrics whose defaults differ.
    """
    missing = [m.name for m in metrics if m.rope is None]
    if missing:
        raise UserInputError(f"--rope: {', '.join(missing)} has no default region of practical equivalence (it is in "
                             "its data's units); give one, e.g. --rope 0.05")
    ropes = {m.rope for m in metrics}
    if len(ropes) > 1:
        raise UserInputError(f"--rope: the metrics' default ropes differ ({', '.join(f'{m.name} {m.rope:g}' for m in metrics)}); "
                             "give one")
    return ropes.pop()
DEFAULT_METRICS = ("acc", "r2")
POSTHOCS = ("nemenyi", "wilcoxon")


@dataclass
class Study:
    """A study: the table of chosen configurations and every statistic over it.

    `cells` has one row per dataset and regularizer: the configuration chosen on validation
    (`chosen`, `config`), its seeds, its mean validation and test metric, `score` (the test mean)
    and `rank` (1 best). `scores` is datasets × regularizers with higher better.
    """

    cells: pd.DataFrame
    datasets: list[str]
    regs: list[str]
    metrics: dict[str, Metric]
    scores: np.ndarray
    mean_rank: np.ndarray
    friedman: ranking.Friedman
    cd: float
    alpha: float
    posthoc: str
    p_nemenyi: np.ndarray
    p_wilcoxon: np.ndarray
    p_wilcoxon_holm: np.ndarray
    wtl: np.ndarray
    ratios: np.ndarray
    rope: float | None = None
    bayes: list[dict[str, Any]] = field(default_factory=list)
    hierarchical: list[dict[str, Any]] = field(default_factory=list)  # regbench.reporting.hierarchical, per pair
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    budget: list[str] = field(default_factory=list)  # what each tuned regularizer's search spent (regbench.budget)

    def different(self) -> np.ndarray:
        """k × k: the pairs the chosen post-hoc test tells apart (none when Friedman does not reject)."""
        k = len(self.regs)
        if not self.friedman.conclusive or not self.friedman.p < self.alpha:
            return np.zeros((k, k), bool)
        if self.posthoc == "nemenyi":
            return np.abs(self.mean_rank[:, None] - self.mean_rank[None, :]) >= self.cd
        return np.nan_to_num(self.p_wilcoxon_holm, nan=1.0) < self.alpha


def parse_metrics(text: str) -> list[Metric]:
    """`acc,r2` -> the Metric of each name.

    Raises:
        UserInputError: an unknown name.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS and under_shift(n) is None]
    if unknown or not names:
        raise UserInputError(f"--metric {text}: unknown metric {', '.join(unknown) or '(none)'} "
                             f"(choose from {', '.join(METRICS)}, or acc@<corruption>=<severity>, r2@... for the test "
                             "split under shift, comma-separated)")
    return [METRICS[n] if n in METRICS else under_shift(n) for n in names]


def under_shift(name: str) -> Metric | None:
    """`acc@gaussian_noise=0.5` (or `r2@...`): the test metric on a corrupted copy of the test split
    (regbench.engine.shift; report.csv's `test_acc@gaussian_noise=0.5`), ranked on it, the
    configuration still chosen on the clean validation metric (no run sees a corrupted validation
    split). None for any other name."""
    base, at, rest = name.partition("@")
    if not at or base not in ("acc", "r2") or not shifted_names([f"test_{name}"], (base,)):
        return None
    return Metric(name, name, METRICS[base].task, True, METRICS[base].rope, val_column=base)


def problem_names(runs: pd.DataFrame) -> pd.Series:
    """A dataset of the study: the dataset's name, with the dataset parameters that vary among
    its own runs (train_size, label_noise, ...; not the split seed) in brackets."""
    keys = [k for k in config_keys(runs) if k.startswith("params.dataset.") and k not in ("params.dataset.name", SPLIT_SEED)]
    names = runs["dataset"].astype(str)
    for dataset, frame in runs.groupby("dataset", sort=False):
        own = varying(frame, keys)
        if own:
            names.loc[frame.index] = dataset + " (" + frame[own].apply(
                lambda row: ", ".join(f"{k.removeprefix('params.dataset.')}={value_text(v, k)}" for k, v in row.items()),
                axis=1) + ")"
    return names


def _metric_for(task: str, metrics: list[Metric], runs: pd.DataFrame) -> Metric | None:
    for m in metrics:
        columns = m.columns
        if (m.task is None or m.task == task) and all(c in runs and runs[c].notna().any() for c in columns):
            return m
    return None


def choose(runs: pd.DataFrame, metrics: list[Metric]) -> tuple[pd.DataFrame, dict[str, Metric]]:
    """One row per dataset and regularizer label: its configuration with the best mean validation
    metric over ok seeds (the lowest config id on ties), and that configuration's test mean.

    Raises:
        UserInputError: a dataset has no metric of `metrics` for its task.
    """
    ok = runs[runs["status"] == "ok"].assign(problem=lambda f: problem_names(f))
    keys = [k for k in varying(ok, config_keys(ok)) if not k.startswith("params.dataset.")]
    rows, chosen_metric = [], {}
    for problem, frame in ok.groupby("problem", sort=True):
        task = str(frame["task"].iloc[0])
        metric = _metric_for(task, metrics, frame)
        if metric is None:
            raise UserInputError(f"--metric {','.join(m.name for m in metrics)}: none applies to dataset "
                                 f"{problem} ({task}; its runs record {task_metric_names(frame)})")
        chosen_metric[problem] = metric
        sign = 1 if metric.higher_better else -1
        for reg, by_reg in frame.groupby("reg", sort=True):
            val, test = metric.columns
            means = by_reg.groupby("config").agg(val=(val, "mean"), test=(test, "mean"),
                                                 n_seeds=(SEED, "nunique"))
            best = (sign * means["val"]).idxmax()  # idxmax: the first (lowest config id) on ties
            first = by_reg[by_reg["config"] == best].iloc[0]
            own = [k for k in keys if by_reg[k].map(str).nunique() > 1]  # what was chosen among
            chosen = ", ".join(f"{k.removeprefix('params.reg.').removeprefix('params.')}={value_text(first[k], k)}"
                               for k in own) or "(one configuration)"
            if str(reg) == COCKTAIL:
                chosen = cocktail_text(first, own)
            rows.append({"dataset": problem, "task": task, "metric": metric.name, "reg": str(reg), "chosen": chosen,
                         "config": int(best), "candidates": len(means), "n_seeds": int(means.loc[best, "n_seeds"]),
                         "val": float(means.loc[best, "val"]), "score": float(means.loc[best, "test"])})
    return pd.DataFrame(rows), chosen_metric


def cocktail_text(run: pd.Series, own: list[str]) -> str:
    """What a cocktail run (`reg.cocktail`) combined, from its params: each regularizer it switched
    on with the knobs of it that the cocktail's search varied, `l2 (alpha=0.0012) + dropout
    (dropout=0.31)`; `(nothing on)` for the cocktail of none."""
    from regbench.regularizers import builtin_knobs, ingredients

    defaults = {k.name: k.default for k in builtin_knobs()}
    reg = {name: _param(run, f"params.reg.{name}", default) for name, default in defaults.items()}
    model = {key.removeprefix("params.model."): _param(run, key, None) for key in run.index
             if str(key).startswith("params.model.")}
    parts = []
    for part, knobs in ingredients(reg, _Node(model)):
        varied = [f"{k}={value_text(v, f'params.reg.{k}')}" for k, v in knobs.items()
                  if f"params.reg.{k}" in own and v != defaults[k]]  # an off knob (cutmix=0 beside mixup) says nothing
        parts.append(f"{part} ({', '.join(varied)})" if varied else part)
    return " + ".join(parts) or "(nothing on)"


def _param(run: pd.Series, key: str, default: Any) -> Any:
    value = run.get(key, default)
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


class _Node(dict):
    """A run's `model` params as the node a label reads (`model.name`)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def task_metric_names(frame: pd.DataFrame) -> str:
    return ", ".join(c.removeprefix("test_") for c in frame.columns if c.startswith("test_") and frame[c].notna().any())


def complete_blocks(cells: pd.DataFrame, regs: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Keeps one complete block: the same regularizers on every dataset kept (the tests need
    complete blocks, Demšar 2006), with a note (one line each) naming what was left out and why.

    `regs` (--reg) chooses the regularizers; a dataset without an ok run of one of them is left
    out. By default they are the ones with ok runs on every dataset, so that one regularizer
    missing from one dataset costs that regularizer, not every dataset; a dataset is left out only
    when it has fewer than two regularizers, which no study can rank.
    """
    have = {d: set(frame["reg"]) for d, frame in cells.groupby("dataset", sort=True)}
    notes = []
    if regs is not None:
        keep = [d for d, present in have.items() if set(regs) <= present]
        notes += [f"dataset {d} left out: no ok run of {', '.join(r for r in regs if r not in present)} (--reg)"
                  for d, present in have.items() if d not in keep]
        chosen = list(regs)
    else:
        keep = [d for d, present in have.items() if len(present) >= 2]
        notes += [f"dataset {d} left out: it has ok runs of {', '.join(sorted(present)) or 'nothing'} alone, and a "
                  "study ranks two or more regularizers" for d, present in have.items() if d not in keep]
        common = set.intersection(*(have[d] for d in keep)) if keep else set()
        left = sorted(set().union(*(have[d] for d in keep)) - common)
        if left:
            where = "; ".join(f"{r} on {_listed([d for d in keep if r not in have[d]])}" for r in left)
            notes.append(f"left out {', '.join(left)}: not on every dataset (no ok run of {where}); "
                         "--reg chooses the regularizers")
        chosen = sorted(common)
    return cells[cells["dataset"].isin(keep) & cells["reg"].isin(chosen)], notes


def _listed(names: list[str], most: int = 4) -> str:
    """`a, b, c, d and 3 more`: a list that stays one readable line."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def parse_regs(text: str | None, runs: pd.DataFrame) -> list[str] | None:
    """`none,l2,dropout` -> those labels (sorted, as the study orders them); None for None.

    Raises:
        UserInputError: fewer than two labels, or one that no ok run has.
    """
    if text is None:
        return None
    names = sorted({n.strip() for n in text.split(",") if n.strip()})
    labels = sorted(runs.loc[runs["status"] == "ok", "reg"].astype(str).unique())
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise UserInputError(f"--reg {text}: no ok run of {', '.join(unknown)} (the labels here: {', '.join(labels)})")
    if len(names) < 2:
        raise UserInputError(f"--reg {text}: a study ranks two or more regularizers (the labels here: "
                             f"{', '.join(labels)})")
    return names


def build(paths: list[Path], metrics: list[Metric] | None = None, posthoc: str = "nemenyi", alpha: float = 0.05,
          rope: float | None = None, seed: int = 0, regs: str | None = None) -> Study:
    """Reads the runs under `paths` and computes the study; `regs` (--reg, comma-separated
    labels) chooses the regularizers compared (see complete_blocks).

    Raises:
        UserInputError: no finished run, fewer than 2 datasets or 2 regularizers with complete
            scores, a metric that does not apply, or a bad --reg.
    """
    metrics = metrics or [METRICS[n] for n in DEFAULT_METRICS]
    if posthoc not in POSTHOCS:
        raise UserInputError(f"--posthoc {posthoc}: choose from {', '.join(POSTHOCS)}")
    for path in paths:
        if not Path(path).exists():
            raise UserInputError(f"{path} does not exist")
    collected = collect(paths)
    if collected.runs.empty or not (collected.runs["status"] == "ok").any():
        raise UserInputError(f"no finished run with status ok under {', '.join(map(str, paths))}")
    runs, _ = set_aside_duplicates(with_config_ids(collected.runs))
    # a trial the search pruned ran only some of its paired seeds: its configuration is no candidate
    cut = pd.Series(budget.pruned(runs["folder"]), index=runs.index) if "folder" in runs and len(runs) else None
    pruned_note = []
    if cut is not None and cut.any():
        pruned_note = [f"{int(runs.loc[cut, 'config'].nunique())} configurations of trials the search pruned "
                       f"({int(cut.sum())} runs) are not candidates: they ran only some of the paired seeds"]
        runs = runs[~cut]
    asked = parse_regs(regs, runs)
    cells, chosen_metric = choose(runs, metrics)
    cells, notes = complete_blocks(cells, asked)
    notes = collected.notes + pruned_note + notes
    datasets, regs = sorted(cells["dataset"].unique()), sorted(cells["reg"].unique())
    if len(regs) < 2 or len(datasets) < 2:
        raise UserInputError(f"a study needs at least 2 datasets with ok runs of the same 2 or more regularizers; "
                             f"found {len(datasets)} dataset(s) ({_listed(datasets) or 'none'}) and {len(regs)} "
                             f"regularizer(s) ({_listed(regs) or 'none'})" + "".join(f"; {n}" for n in notes))
    grid = cells.pivot(index="dataset", columns="reg", values="score").loc[datasets, regs]
    sign = np.array([1.0 if chosen_metric[d].higher_better else -1.0 for d in datasets])[:, None]
    scores = sign * grid.to_numpy(float)
    rank = ranking.ranks(scores)
    rank_of = {(d, r): rank[i, j] for i, d in enumerate(datasets) for j, r in enumerate(regs)}
    cells = cells.assign(rank=[rank_of[(d, r)] for d, r in zip(cells["dataset"], cells["reg"])])
    costs = np.vstack([chosen_metric[d].cost(grid.loc[d].to_numpy(float)) for d in datasets])
    raw, adjusted = ranking.wilcoxon_holm(scores)
    study = Study(
        cells=cells.sort_values(["dataset", "rank", "reg"]).reset_index(drop=True), datasets=datasets, regs=regs,
        metrics={d: chosen_metric[d] for d in datasets}, scores=scores, mean_rank=rank.mean(axis=0),
        friedman=ranking.friedman(scores), cd=ranking.nemenyi_cd(len(regs), len(datasets), alpha), alpha=alpha,
        posthoc=posthoc, p_nemenyi=ranking.nemenyi_p(scores), p_wilcoxon=raw, p_wilcoxon_holm=adjusted,
        wtl=ranking.win_tie_loss(scores), ratios=ranking.performance_ratios(np.maximum(costs, 0.0)), rope=rope,
        notes=notes, skipped=collected.skipped, budget=budget.lines(paths),
    )
    if rope is not None:
        study.bayes = bayes_pairs(study, rope, seed)
        study.hierarchical, more = hierarchical_pairs(study, runs, rope, seed)
        study.notes += more
    note = profile_note(study)
    if note:
        study.notes.append(f"performance profiles: {note}")
    return study


def profile_note(study: Study, tau: str = "tau") -> str:
    """What a best cost of 0 does to the performance profiles, or "" where no best cost is 0.

    Where the best regularizer's cost on a dataset is 0 (a perfect test score: accuracy 1, r2 1,
    or a loss of 0), a ratio to it is undefined; ranking.performance_ratios gives the
    regularizers that reach 0 too a ratio of 1 and the others infinity, so that dataset never
    counts as within any tau for them, and their curves end below 1. Says on which datasets,
    by whom, and how far each curve reaches.
    """
    infinite = ~np.isfinite(study.ratios)
    rows = [i for i in range(len(study.datasets)) if infinite[i].any()]
    if not rows:
        return ""
    n = len(study.datasets)
    parts = [f"{study.datasets[i]} ({study.metrics[study.datasets[i]].name} = "
             f"{value_text(_best_score(study, i))}: "
             f"{', '.join(study.regs[j] for j in range(len(study.regs)) if not infinite[i, j])})"
             for i in rows]
    where = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    capped = [j for j in np.argsort(study.mean_rank, kind="stable") if infinite[:, j].any()]
    reach = ", ".join(f"{study.regs[j]} at {n - int(infinite[:, j].sum())}/{n}" for j in capped)
    datasets = "1 dataset" if len(rows) == 1 else f"{len(rows)} datasets"
    return (f"a best cost of 0 (a perfect score) on {datasets}, {where}, makes the other regularizers' ratios there "
            f"infinite: never within any {tau}, their curves end below 1 ({reach})")


def _best_score(study: Study, i: int) -> float:
    """The best mean test score on dataset `i`, in the metric's own direction."""
    sign = 1.0 if study.metrics[study.datasets[i]].higher_better else -1.0
    return float(sign * study.scores[i].max())


def bayes_pairs(study: Study, rope: float, seed: int) -> list[dict[str, Any]]:
    """The Bayesian signed-rank test for every pair, left the better by average rank."""
    order = list(np.argsort(study.mean_rank, kind="stable"))
    out = []
    for a, i in enumerate(order):
        for j in order[a + 1:]:
            left, equal, right = ranking.bayes_signed_rank(study.scores[:, i], study.scores[:, j], rope, seed=seed)
            out.append({"left": study.regs[i], "right": study.regs[j], "p_left_better": left,
                        "p_equivalent": equal, "p_right_better": right})
    return out


def seed_scores(study: Study, runs: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Per dataset and regularizer, the ok runs of the chosen configuration, indexed by seed, with
    `score`: the test metric signed so that higher is better."""
    ok = runs[runs["status"] == "ok"]
    ok = ok.assign(problem=problem_names(ok))
    out = {}
    for (d, r), row in study.cells.set_index(["dataset", "reg"]).iterrows():
        metric = study.metrics[d]
        frame = ok[(ok["problem"] == d) & (ok["config"] == row["config"])].drop_duplicates(SEED).set_index(SEED)
        out[(d, r)] = frame.assign(score=(1.0 if metric.higher_better else -1.0) * frame[metric.columns[1]])
    return out


def seeds_correlation(frame: pd.DataFrame) -> tuple[float, str]:
    """The correlation between one dataset's seeds that the hierarchical test assumes (see
    regbench.reporting.hierarchical), and how it was set: n_test / (n_train + n_test) for seeds
    that re-split the data (the correlation behind the corrected t-test, regbench.reporting.power),
    0 for seeds on one fixed split, NaN where the seeds re-split data of sizes nothing records."""
    if not resplits(frame):
        return 0.0, "fixed split"
    sizes = config_sizes(frame)
    if not sizes or not sizes["train"] > 0:
        return math.nan, "re-split, sizes unknown"
    return sizes["test"] / (sizes["train"] + sizes["test"]), "re-split"


def hierarchical_pairs(study: Study, runs: pd.DataFrame, rope: float, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The hierarchical Bayesian test (regbench.reporting.hierarchical) for every pair, left the
    better by average rank (as bayes_pairs), on every paired seed's test score; and notes.

    A pair needs at least 2 paired seeds on every dataset; the seeds of a dataset whose runs
    re-split data of unknown sizes are taken as one K-fold cross-validation with K the number of
    seeds (rho = 1/K, baycomp's default), which a note says.
    """
    from regbench.reporting import hierarchical

    scores = seed_scores(study, runs)
    order = list(np.argsort(study.mean_rank, kind="stable"))
    wanted, inputs, rhos, notes, unknown = [], [], [], [], set()
    for a, i in enumerate(order):
        for j in order[a + 1:]:
            left, right, rho, short = [], [], [], []
            for d in study.datasets:
                x, y = scores[(d, study.regs[i])], scores[(d, study.regs[j])]
                common = sorted(set(x.index) & set(y.index))
                if len(common) < 2:
                    short.append(d)
                    continue
                left.append(x.loc[common, "score"].to_numpy(float))
                right.append(y.loc[common, "score"].to_numpy(float))
                r, how = seeds_correlation(pd.concat([x.loc[common], y.loc[common]]))
                if math.isnan(r):
                    unknown.add(d)
                    r = 1 / len(common)
                rho.append(r)
            if short:
                notes.append(f"hierarchical test of {study.regs[i]} vs {study.regs[j]} not run: fewer than 2 paired "
                             f"seeds on {_listed(short)}")
                continue
            wanted.append((study.regs[i], study.regs[j]))
            inputs.append((left, right))
            rhos.append(rho)
    if unknown:
        notes.append(f"hierarchical test: the seeds of {_listed(sorted(unknown))} re-split data of sizes nothing "
                     "records; their correlation is taken as 1/seeds (baycomp's, for one K-fold cross-validation)")
    if not inputs:
        return [], notes
    results = hierarchical.compare_many(inputs, rope, rhos, seed=seed)  # baycomp's (x, y) = (left, right)
    out = []
    for (left, right), res in zip(wanted, results):
        # mean_delta0 is the posterior mean of right - left; the record says by how much left is better
        out.append({"left": left, "right": right, "p_left_better": res.p_left, "p_equivalent": res.p_rope,
                    "p_right_better": res.p_right, "mean_difference": -res.mean_delta0, "rhat": res.rhat,
                    "ess": res.ess, "draws": res.n_draws, "seconds": res.seconds})
        warning = res.warning(f"of {left} vs {right}")
        if warning:
            notes.append(warning)
    return out, notes


def tests_record(study: Study, command: str = "") -> dict[str, Any]:
    """study_tests.json: every statistic, named, with the inputs that set it."""
    f = study.friedman
    regs = study.regs

    def pairs(matrix: np.ndarray) -> list[dict[str, Any]]:
        return [{"left": regs[i], "right": regs[j], "p": _num(matrix[i, j])}
                for i in range(len(regs)) for j in range(i + 1, len(regs))]

    return {
        "command": command,
        "datasets": study.datasets,
        "metric": {d: study.metrics[d].name for d in study.datasets},
        "regularizers": regs,
        "average_rank": dict(zip(regs, map(float, study.mean_rank))),
        "alpha": study.alpha,
        "friedman": {"n_datasets": f.n_datasets, "k": f.k, "chi2": _num(f.chi2), "p_chi2": _num(f.p_chi2),
                     "iman_davenport_f": _num(f.f), "p": _num(f.p), "conclusive": f.conclusive, "note": f.note},
        "nemenyi": {"critical_difference": study.cd, "pairs": pairs(study.p_nemenyi)},
        "wilcoxon": {"pairs": [dict(p, p_holm=_num(study.p_wilcoxon_holm[regs.index(p["left"]), regs.index(p["right"])]))
                               for p in pairs(study.p_wilcoxon)]},
        "posthoc": study.posthoc,
        "groups_not_told_apart": [[regs[i] for i in g] for g in ranking.cliques(study.mean_rank, study.different())],
        "bayes_signed_rank": {"rope": study.rope, "pairs": study.bayes} if study.rope is not None else None,
        "bayes_hierarchical": {"rope": study.rope, "pairs": [{k: _num(v) if isinstance(v, float) else v
                                                              for k, v in p.items()} for p in study.hierarchical]}
        if study.rope is not None else None,
        "notes": study.notes,
    }


def _num(value: float) -> float | None | str:
    """JSON has no NaN or infinity: NaN is null, infinity the string "inf"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return "inf" if value == math.inf else float(value)


def wtl_table(study: Study) -> pd.DataFrame:
    """wtl.csv: row regularizer against column regularizer, `wins/ties/losses` over datasets."""
    cells = [[f"{w}/{t}/{l}" if i != j else "" for j, (w, t, l) in enumerate(row)] for i, row in enumerate(study.wtl)]
    return pd.DataFrame(cells, index=pd.Index(study.regs, name="reg"), columns=study.regs)


def profile_taus(study: Study) -> np.ndarray:
    finite = study.ratios[np.isfinite(study.ratios)]
    top = max(float(finite.max()) if finite.size else 1.0, 1.0)
    return np.unique(np.concatenate([np.geomspace(1.0, top * 1.05 + 1e-9, 200), finite]))
