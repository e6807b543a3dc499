"""`regbench report`: run folders in; runs.csv, report.csv, report.html (and pivot.csv, report.md, plots) out.

    regbench report PATH [PATH ...] [--out DIR] [--format csv|md] [--baseline LABEL]
                    [--baseline-config N] [--pivot KEY] [--metric NAME] [--plots]
                    [--alpha A] [--power P] [--min-effect E]
                    [--ensemble [NAME,NAME]] [--temperature]

The Report is built by regbench.reporting.report and printed and written by
regbench.reporting.report_format.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench import UserInputError
from regbench.reporting import ensemble
from regbench.reporting.aggregate import SeedsPlan, metric_of, pivot, sort_key, value_text
from regbench.reporting.report import Report, build
from regbench.reporting.report_format import param_columns, pivot_title, render, wide_console, write


ENSEMBLE_TITLE = "Ensembles on the test split, from saved predictions (beside their members' mean)"
TEMPERATURE_TITLE = "Temperature scaling fitted on validation: the test split before and after (means over seeds)"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="regbench report",
        description="Aggregate regbench runs into comparison tables: mean, std and 95% CI across seeds, "
        "paired differences against a baseline, a pivot view and plots.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a sweep folder, a run folder, or outputs/ (searched recursively); several are merged")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="the folder to write runs.csv, report.csv, report.html, report.md, pivot.csv and the plots "
                        "into (default: the first PATH; use it for a read-only results folder)")
    parser.add_argument("--format", choices=("csv", "md"), default="csv", help="md also writes report.md")
    against = parser.add_mutually_exclusive_group()
    against.add_argument("--baseline", metavar="LABEL", help="the reg label to compare against (default: none)")
    against.add_argument("--baseline-config", type=int, metavar="N",
                        help="compare against configuration N (report.csv's config column) instead of a label")
    parser.add_argument("--pivot", metavar="KEY", help="a params key, e.g. reg.alpha: one column per value (pivot.csv)")
    parser.add_argument("--metric", metavar="NAME", help="the pivot's cell value (default: the validation metric), "
                        "e.g. gap.acc or test_ece (lower better)")
    parser.add_argument("--plots", action="store_true", help="write gap_vs_strength.png and curves.png (and reliability.png, shift.png where the runs have them)")
    parser.add_argument("--ensemble", action="append", nargs="?", const="", metavar="NAME,NAME",
                        help="from the runs' saved predictions (predictions.npz): the test figures of the ensemble of "
                        "each configuration's seeds (no value) or of every run of the named configurations (config "
                        "ids or reg labels, comma-separated; repeat for several), beside their members' mean "
                        "(ensemble.csv; with --plots, reliability_ensemble.png)")
    parser.add_argument("--temperature", action="store_true",
                        help="temperature scaling fitted on each run's saved validation logits: test NLL, ECE and "
                        "Brier score before and after (temperature.csv; with --plots, reliability_temperature.png)")
    add_seeds_options(parser)
    return parser.parse_args(argv)


def add_seeds_options(parser: argparse.ArgumentParser) -> None:
    """--alpha, --power and --min-effect: the settings of the seeds-needed figures (SeedsPlan)."""
    parser.add_argument("--alpha", type=float, default=0.05, metavar="A",
                        help="the level of the paired t-test for the seeds needed, and 1 - the confidence of the "
                        "interval of each difference (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8, metavar="P",
                        help="the chance of detecting a difference that the seeds needed aim at (default 0.8)")
    parser.add_argument("--min-effect", type=float, default=0.01, metavar="E",
                        help="the smallest difference that matters, in the metric's units (default 0.01: one point "
                        "of accuracy or R²); a comparison whose interval holds both 0 and ±E is flagged "
                        "inconclusive; 0 flags none")


def seeds_plan(args: argparse.Namespace) -> SeedsPlan:
    """The SeedsPlan of the parsed options.

    Raises:
        UserInputError: alpha or power outside (0, 1), or a negative minimal effect.
    """
    if not 0 < args.alpha < 1:
        raise UserInputError(f"--alpha {args.alpha}: must lie strictly between 0 and 1")
    if not 0 < args.power < 1:
        raise UserInputError(f"--power {args.power}: must lie strictly between 0 and 1")
    if not args.min_effect >= 0:
        raise UserInputError(f"--min-effect {args.min_effect}: must be 0 or more")
    return SeedsPlan(args.alpha, args.power, args.min_effect or None)


def main(argv: list[str]) -> int:
    """`regbench report …`; returns the exit code."""
    args = parse_args(argv)
    try:
        seeds = seeds_plan(args)
    except UserInputError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        print(f"regbench: error: {missing[0]} does not exist", file=sys.stderr)
        return 2
    out = args.out or args.paths[0]
    problem = out_problem(out)
    if problem:
        print(f"regbench: error: {problem}", file=sys.stderr)
        return 2
    try:
        report = build(args.paths, args.baseline, args.baseline_config, seeds)
    except ValueError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        for line in pending_lines(args.paths):  # a sweep submitted, none of its jobs finished yet
            print(f"regbench: note: {line}", file=sys.stderr)
        return 2 if str(e).startswith("--baseline-config") else 1
    try:
        extra = ensemble.evaluate(report.runs, report.table, args.ensemble, args.temperature)
    except ValueError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    for folder, why in report.skipped:
        print(f"regbench: warning: skipped {folder}: {why}", file=sys.stderr)
    for note in report.notes:
        print(f"regbench: warning: {note}", file=sys.stderr)
    for note in extra.notes:
        print(f"regbench: note: {note}", file=sys.stderr)
    m = metric_of(report.runs)
    pivot_table, pivot_metric = None, args.metric or f"val_{m}"
    if args.pivot:
        try:
            pivot_table = pivot(report.runs, args.pivot, pivot_metric)
        except KeyError as e:
            print(f"regbench: error: {e.args[0]}", file=sys.stderr)
            return 2
    console = wide_console()
    try:  # a read-only folder (an archive, a shared drive) costs the files, never the table
        out.mkdir(parents=True, exist_ok=True)
        images = _plots(report, out, m) if args.plots else []
        if args.plots:
            images += _ensemble_reliability(extra, out)
        tables = [(name.removesuffix(".csv"), title, frame, name) for name, title, frame in (
            ("ensemble.csv", ENSEMBLE_TITLE, extra.ensembles), ("temperature.csv", TEMPERATURE_TITLE, extra.temperatures))
            if frame is not None]
        for name, _, frame, _ in tables:
            frame.to_csv(out / f"{name}.csv", index=False)
        files = write(report, out, args.format, "regbench report " + " ".join(map(shlex.quote, argv)), images,
                      pivot_table, pivot_metric, plotted=args.plots, tables=tables)
        files += [out / name for *_, name in tables]
        if pivot_table is not None:  # its first column names the metric its cells hold
            files.append(out / "pivot.csv")
            pivot_table.assign(metric=pivot_metric)[["metric", *pivot_table.columns]].to_csv(files[-1], index=False)
        failed = None
    except OSError as e:
        failed = e
    render(report, console)
    if pivot_table is not None:
        _print_pivot(pivot_table, pivot_metric, console)
    for title, frame in ((ENSEMBLE_TITLE, extra.ensembles), (TEMPERATURE_TITLE, extra.temperatures)):
        if frame is not None:
            _print_frame(frame, title, console)
    if failed is not None:
        # 1, not 0: the files asked for are missing, and a script that reads them next must know
        print(f"regbench: error: {not_written(failed, out)}", file=sys.stderr)
        return 1
    files += images
    from regbench import budget

    for line in budget.lines(args.paths):  # what a search spent on each regularizer
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in pending_lines(args.paths):
        print(f"regbench: note: {line}", file=sys.stderr)
    console.print("wrote " + ", ".join(str(f) for f in files), highlight=False)
    return 0


def pending_lines(paths: list[Path]) -> list[str]:
    """One line per sweep folder whose plan (regbench.plan: a sweep run as shards, worker
    processes or SLURM elements) has jobs without a result yet."""
    from regbench import plan

    lines = []
    for folder in paths:
        counts = plan.pending(Path(folder))
        why = "(still running, waiting, or stopped; the sweep's command again runs the ones not running)"
        if counts and counts[0] == counts[1]:
            lines.append(f"{folder}: none of its {counts[1]} planned jobs has a result yet {why}")
        elif counts and counts[0]:
            lines.append(f"{folder}: {counts[0]} of its {counts[1]} planned jobs have no result yet {why}: "
                         "this report has the others")
    return lines


def out_problem(out: Path) -> str | None:
    """Why `out` can never be the folder to write into (it, or a folder above it, is a file), or None."""
    for path in (out, *out.parents):
        if path.exists():
            if path.is_dir():
                return None
            return f"--out {out} is a file, not a folder" if path == out else f"--out {out}: {path} is a file, not a folder"
    return None


def not_written(error: OSError, out: Path) -> str:
    """The one line for files that could not be written (a read-only or full file system)."""
    what = error.filename or out
    return (f"cannot write {what} ({error.strerror or type(error).__name__}): the table above is complete, its files "
            "are not; --out DIR writes them into another folder")


def _print_pivot(table: pd.DataFrame, metric: str, console: Console) -> None:
    view = Table(title=pivot_title(metric), title_justify="left")
    for c in table.columns:
        view.add_column(str(c))
    for _, row in table.iterrows():
        view.add_row(*("" if pd.isna(v) else str(v) for v in row))
    console.print(view)


def _print_frame(frame: pd.DataFrame, title: str, console: Console) -> None:
    view = Table(title=title, title_justify="left")
    for c in frame.columns:
        view.add_column(str(c))
    for _, row in frame.iterrows():
        view.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)


def _ensemble_reliability(extra: ensemble.Evaluated, out: Path) -> list[Path]:
    """reliability_ensemble.png: each ensemble's test reliability diagram; reliability_temperature.png:
    each configuration's after temperature scaling, its seeds pooled (regbench.reporting.ensemble)."""
    import json

    from regbench.reporting.plots import reliability

    made = []
    for name, diagrams, frame, key, ece, title in (
            ("reliability_ensemble.png", extra.diagrams, extra.ensembles, "ensemble", "ensemble_test_ece",
             "Test-split reliability of each ensemble, from saved predictions (below the diagonal: over-confident)"),
            ("reliability_temperature.png", extra.scaled_diagrams, extra.temperatures, None, "test_ece_after",
             "Test-split reliability after temperature scaling, seeds pooled (below the diagonal: over-confident)")):
        if not diagrams or frame is None:
            continue
        labels = list(diagrams)
        keys = frame[key] if key else [f"{c}:{r}" for c, r in zip(frame["config"], frame["reg"])]
        eces = dict(zip(keys, frame[ece]))
        # one row per diagram (a seed's, after scaling): the figure pools a configuration's rows and counts them
        drawn_rows = [(i, d) for i, k in enumerate(labels) for d in (diagrams[k] if isinstance(diagrams[k], list)
                                                                     else [diagrams[k]])]
        rows = pd.DataFrame({"config": [i for i, _ in drawn_rows], "status": "ok",
                             "calibration": [json.dumps(d) for _, d in drawn_rows],
                             "test_ece": [eces[labels[i]] for i, _ in drawn_rows]})
        drawn = reliability(rows, out / name, dict(enumerate(labels)), list(range(len(labels))), title=title)
        for note in getattr(drawn, "notes", ()):
            print(f"regbench: note: {drawn.name}: {note}", file=sys.stderr)
        made += [drawn] if drawn is not None else []
    return made


def _with_reg(table: pd.DataFrame, describe: dict[int, str]) -> dict[int, str]:
    """`describe`'s names led by the configuration's reg label where they do not already name it."""
    return {int(r["config"]): (describe[int(r["config"])] if describe[int(r["config"])] == str(r["reg"]) else
                               f"{r['reg']}: {describe[int(r['config'])]}") for _, r in table.iterrows()}


def _plots(report: Report, out: Path, metric: str) -> list[Path]:
    from regbench.reporting.plots import curves, gap_vs_strength, no_strength, reliability, under_shift

    t = report.table
    # Parameters the label fixes (l1_ratio for l1/l2) would only repeat the panel's title.
    params = [p for p in param_columns(t) if t.groupby("reg")[p].agg(lambda v: v.map(str).nunique()).max() > 1]
    describe = {
        int(r["config"]): ", ".join(f"{p.removeprefix('reg.')}={value_text(r[p], p)}" for p in params) or str(r["reg"])
        for _, r in t.iterrows()
    }
    order = {int(r["config"]): tuple(sort_key(r[p]) for p in params) for _, r in t.iterrows()}
    made = [gap_vs_strength(report.runs, out / "gap_vs_strength.png", metric),
            curves(report.runs, out / "curves.png", describe, order)]
    if made[0] is None:
        print(f"regbench: note: no gap_vs_strength.png: {no_strength(report.runs)}", file=sys.stderr)
    if made[1] is None:
        print("regbench: note: no curves.png: no ok run has a readable metrics.csv", file=sys.stderr)
    # a classification's runs record their test split's bins (result.json `calibration`); others have none: no figure
    made.append(reliability(report.runs, out / "reliability.png", _with_reg(t, describe), list(t["config"])))
    # configurations evaluated under shift (result.json `test_acc@<corruption>=<severity>`); none: no figure
    made.append(under_shift(t, out / "shift.png", _with_reg(t, describe), metric))
    for png in made:  # series drawn over each other, as the figure's own note names them
        for note in getattr(png, "notes", ()):
            print(f"regbench: note: {png.name}: {note}", file=sys.stderr)
    return [p for p in made if p is not None]
