"""A Study as people read it: the printed rank table and tests, and the files `write` leaves
(study.csv, study_tests.json, wtl.csv, profiles.csv, the figures and report.html)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench.reporting import html, ranking, report_format
from regbench.reporting.study import COCKTAIL, Study, profile_taus, tests_record, wtl_table


def write(study: Study, out: Path, command: str = "", report: Any = None) -> list[Path]:
    """Writes study.csv, study_tests.json, wtl.csv, profiles.csv, cd.png, profiles.png (each
    figure with its SVG and PDF beside it) and report.html into `out`. The page's study part is
    this study's; the parts `regbench report` wrote there (the table, the pivot, the plots) stay
    (regbench.reporting.html). Where the page has no comparison table yet, `report`'s (a
    regbench.reporting.report.Report of the same runs), when given, goes under the study, until
    `regbench report` writes its own."""
    from regbench.reporting import studyplots

    out.mkdir(parents=True, exist_ok=True)
    files = [out / n for n in ("study.csv", "study_tests.json", "wtl.csv", "profiles.csv")]
    study.cells.to_csv(files[0], index=False)
    files[1].write_text(json.dumps(tests_record(study, command), indent=2) + "\n")
    wtl_table(study).to_csv(files[2])
    taus = profile_taus(study)
    pd.DataFrame(ranking.profile(study.ratios, taus), columns=study.regs).assign(tau=taus)[["tau", *study.regs]] \
        .to_csv(files[3], index=False)
    if study.rope is not None:
        files.append(out / "bayes.csv")
        bayes_table(study).to_csv(files[-1], index=False)
    files += studyplots.cd_diagram(study, out / "cd")
    files += studyplots.profiles(study, taus, out / "profiles.png")
    made = [html.Part("study", f"Study: {len(study.regs)} regularizers on {len(study.datasets)} datasets",
                      sections(study, out), command, ["study.csv", "cd.svg", "profiles.png"])]
    if report is not None:
        made += report_format.parts(report, command)[:1]  # the table only: pivot and plots are the report's
    files.append(html.write_parts(out / "report.html", made, ["study"], keep_existing=["table"]))
    return files


def render(study: Study, console: Any) -> None:
    """Prints the rank table, the chosen configurations, the tests and the notes."""
    from rich.table import Table

    table = Table(title=f"{len(study.regs)} regularizers on {len(study.datasets)} datasets, best average rank first "
                        "(rank per dataset by the mean test metric; 1 best)", title_justify="left")
    table.add_column("reg")
    table.add_column("avg rank", justify="right")
    for d in study.datasets:
        table.add_column(f"{d} ({study.metrics[d].name})", justify="right")
    cell = study.cells.set_index(["dataset", "reg"])
    for j in np.argsort(study.mean_rank, kind="stable"):
        r = study.regs[j]
        table.add_row(r, f"{study.mean_rank[j]:.2f}", *(f"{cell.loc[(d, r), 'score']:.4f} ({cell.loc[(d, r), 'rank']:g})"
                                                        for d in study.datasets))
    console.print(table)
    for line in summary_lines(study):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def summary_lines(study: Study, bayes: bool = True) -> list[str]:
    """The printed (and HTML) reading of the tests, one line each (the Bayesian test's only with `bayes`)."""
    f = study.friedman
    lines = []
    if not f.conclusive:
        lines.append(f.note)
    else:
        lines.append(f"Friedman (Iman–Davenport): F = {f.f:.3f}, p = {_p(f.p)} (chi2 = {f.chi2:.3f}, p = {_p(f.p_chi2)}); "
                     + ("the regularizers differ" if f.p < study.alpha else "no difference shown")
                     + f" at alpha = {study.alpha:g}" + (f". {f.note}" if f.note else ""))
    lines.append(f"Nemenyi critical difference (alpha = {study.alpha:g}): {study.cd:.3f} average ranks")
    different = study.different()
    if f.conclusive and f.p < study.alpha:
        name = "Nemenyi" if study.posthoc == "nemenyi" else "Wilcoxon signed-rank, Holm-adjusted"
        told = [f"{study.regs[i]} vs {study.regs[j]}" for i in range(len(study.regs))
                for j in range(i + 1, len(study.regs)) if different[i, j]]
        lines.append(f"post-hoc ({name}): " + ("; ".join(told) + " differ" if told else "no pair differs"))
    elif f.conclusive:
        lines.append("post-hoc tests not applied: the Friedman test did not reject")
    for b in study.bayes if bayes else ():
        lines.append(f"Bayesian signed-rank (rope {study.rope:g}): P({b['left']} better) = {b['p_left_better']:.3f}, "
                     f"P(equivalent) = {b['p_equivalent']:.3f}, P({b['right']} better) = {b['p_right_better']:.3f}")
    for h in study.hierarchical if bayes else ():
        lines.append(f"hierarchical Bayesian, every seed (rope {study.rope:g}): P({h['left']} better) = "
                     f"{h['p_left_better']:.3f}, P(equivalent) = {h['p_equivalent']:.3f}, "
                     f"P({h['right']} better) = {h['p_right_better']:.3f} (R-hat {h['rhat']:.3f}, ESS {h['ess']:.0f})")
    lines += cocktail_lines(study)
    for d in study.datasets:
        chosen = study.cells[(study.cells["dataset"] == d) & (study.cells["candidates"] > 1)]
        if len(chosen):
            lines.append(f"chosen on validation for {d}: " + "; ".join(f"{r['reg']}: {r['chosen']}" for _, r in chosen.iterrows()))
    lines += study.budget  # the tuning budget each regularizer had, where a search chose the configurations
    lines += [f"note: {n}" for n in study.notes]
    return lines


def bayes_table(study: Study) -> pd.DataFrame:
    """bayes.csv: one row per pair and Bayesian test (the signed-rank test on the datasets' means,
    the hierarchical one on every seed), the three probabilities, and for the hierarchical test
    the posterior mean difference (left - right, the metric's units and direction, higher better)
    and its chains' R-hat and bulk effective sample size."""
    rows = [{"test": "signed-rank", "rope": study.rope, **b} for b in study.bayes]
    rows += [{"test": "hierarchical", "rope": study.rope, **{k: v for k, v in h.items() if k not in ("draws", "seconds")}}
             for h in study.hierarchical]
    columns = ["test", "left", "right", "rope", "p_left_better", "p_equivalent", "p_right_better", "mean_difference",
               "rhat", "ess"]
    return pd.DataFrame(rows, columns=columns)


def cocktail_lines(study: Study) -> list[str]:
    """Regularization Cocktails' table, where the study holds the cocktail: the tuned cocktail's
    wins/ties/losses over the datasets against each other regularizer (its row of wtl.csv)."""
    if COCKTAIL not in study.regs:
        return []
    i = study.regs.index(COCKTAIL)
    against = [f"{r} {w}/{t}/{l}" for j, (r, (w, t, l)) in enumerate(zip(study.regs, study.wtl[i])) if j != i]
    return [f"the tuned cocktail against each (wins/ties/losses over {len(study.datasets)} datasets): "
            + ", ".join(against)]


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def sections(study: Study, out: Path) -> list[html.Block]:
    """The page's view: the rank table, the tests, the CD diagram, the chosen configurations,
    win/tie/loss and the profiles (the figures `write` left in `out`)."""
    cell = study.cells.set_index(["dataset", "reg"])
    order = sorted(range(len(study.regs)), key=lambda j: (study.mean_rank[j], j))
    ranks = [[study.regs[j], f"{study.mean_rank[j]:.2f}",
              *(f"{cell.loc[(d, study.regs[j]), 'score']:.4f} ({cell.loc[(d, study.regs[j]), 'rank']:g})"
                for d in study.datasets)] for j in order]
    chosen = [[d, *(cell.loc[(d, r), "chosen"] for r in study.regs)] for d in study.datasets]
    wtl = wtl_table(study)
    blocks = [
        html.Heading("Ranks", "Per dataset, each regularizer at its best configuration on validation, scored by its "
                     "mean test metric over seeds (rank in brackets, 1 the best, ties averaged)."),
        html.Table(["reg", "avg rank", *(f"{d} ({study.metrics[d].name})" for d in study.datasets)], ranks),
        html.Heading("Tests"), html.Lines(summary_lines(study, bayes=False)),
        html.Heading("Critical-difference diagram"), html.Figure(out / "cd.svg", "critical-difference diagram"),
        html.Heading("Configuration chosen on validation"), html.Table(["dataset", *study.regs], chosen, len(study.regs) + 1),
        html.Heading("Win/tie/loss", "Row against column: datasets won/tied/lost."),
        html.Table(["reg", *wtl.columns], [[r, *wtl.loc[r]] for r in wtl.index]),
        html.Heading("Performance profiles"), html.Figure(out / "profiles.png", "performance profiles"),
    ]
    if study.bayes:
        blocks += [html.Heading(f"Bayesian signed-rank test (rope {study.rope:g})"),
                   html.Table(["left", "right", "P(left better)", "P(equivalent)", "P(right better)"],
                              [[b["left"], b["right"], f"{b['p_left_better']:.3f}", f"{b['p_equivalent']:.3f}",
                                f"{b['p_right_better']:.3f}"] for b in study.bayes], 2)]
    if study.hierarchical:
        blocks += [html.Heading(f"Hierarchical Bayesian test, every seed (rope {study.rope:g})",
                                "Corani et al. 2017: each dataset's seeds as correlated draws around its own mean "
                                "difference, the datasets' differences drawn from one Student-t; the probabilities "
                                "are of the difference on a further dataset. Mean difference: left - right, higher "
                                "better."),
                   html.Table(["left", "right", "P(left better)", "P(equivalent)", "P(right better)", "mean difference",
                               "R-hat", "ESS"],
                              [[h["left"], h["right"], f"{h['p_left_better']:.3f}", f"{h['p_equivalent']:.3f}",
                                f"{h['p_right_better']:.3f}", f"{h['mean_difference']:+.4f}", f"{h['rhat']:.3f}",
                                f"{h['ess']:.0f}"] for h in study.hierarchical], 2)]
    return blocks
