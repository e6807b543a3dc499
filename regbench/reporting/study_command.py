"""`regbench study`: run folders spanning several datasets in; ranks, corrected tests, a
critical-difference diagram, win/tie/loss counts, performance profiles and report.html out.

    regbench study PATH [PATH ...] [--out DIR] [--metric NAME[,NAME]] [--reg LABEL,LABEL[,...]]
                   [--posthoc nemenyi|wilcoxon] [--alpha A] [--rope [R]] [--seed S]

The Study is built by regbench.reporting.study and printed and written by
regbench.reporting.study_format; the page has the report's table of the same runs under it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regbench import UserInputError
from regbench.reporting.report import build as build_report
from regbench.reporting.report_command import not_written, out_problem
from regbench.reporting.report_format import wide_console
from regbench.reporting.study import DEFAULT_METRICS, POSTHOCS, build, default_rope, parse_metrics
from regbench.reporting.study_format import render, write


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="regbench study",
        description="Compare regularizers across datasets: per-dataset ranks (each regularizer at its best "
        "configuration on validation, scored on test), the Friedman test with the Iman–Davenport correction, "
        "the Nemenyi critical difference or pairwise Wilcoxon tests with Holm's correction, a critical-difference "
        "diagram, win/tie/loss counts, performance profiles, an optional Bayesian signed-rank test, and report.html.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="sweep folders, run folders or trees of them, merged (several datasets)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="the folder to write study.csv, study_tests.json, wtl.csv, profiles.csv, the diagrams and "
                        "report.html into (default: the first PATH; use it for a read-only results folder)")
    parser.add_argument("--metric", default=",".join(DEFAULT_METRICS), metavar="NAME[,NAME]",
                        help="the metric each dataset is ranked by: the first of these that applies to its task "
                        "(acc, and the lower-better calibration metrics ece, brier: classification; r2, mse: regression; "
                        "loss: any; default acc,r2); the strength is chosen on its validation value, the rank taken "
                        "on its test value")
    parser.add_argument("--reg", metavar="LABEL,LABEL[,...]",
                        help="the regularizers to compare, e.g. none,l2,dropout; a dataset without an ok run of one "
                        "of them is left out (default: those with ok runs on every dataset; the others are left out, "
                        "and a note says which and where they are missing)")
    parser.add_argument("--posthoc", choices=POSTHOCS, default="nemenyi",
                        help="the post-hoc test after Friedman, and the bars of the CD diagram (default nemenyi)")
    parser.add_argument("--alpha", type=float, default=0.05, help="the significance level (default 0.05)")
    parser.add_argument("--rope", nargs="?", const="default", metavar="R",
                        help="also run the Bayesian signed-rank test (on the datasets' means) and the hierarchical "
                        "Bayesian test (on every seed) with this region of practical equivalence, in the metric's "
                        "units (e.g. 0.01 accuracy); --rope alone: the metric's default (0.01 for acc, r2, ece, "
                        "brier; none for mse, loss); both tests go into bayes.csv")
    parser.add_argument("--seed", type=int, default=0, help="the Bayesian tests' Monte-Carlo seed (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """`regbench study …`; returns the exit code."""
    args = parse_args(argv)
    try:
        metrics = parse_metrics(args.metric)
        if not 0 < args.alpha < 1:
            raise UserInputError(f"--alpha {args.alpha}: must lie strictly between 0 and 1")
        if args.rope == "default":
            args.rope = default_rope(metrics)
        elif args.rope is not None:
            try:
                value = float(args.rope)
            except ValueError:
                raise UserInputError(f"--rope {args.rope}: must be a number (0 or more)") from None
            if not value >= 0:
                raise UserInputError(f"--rope {args.rope}: must be 0 or more")
            args.rope = value
        out = args.out or args.paths[0]
        if out_problem(out):
            raise UserInputError(out_problem(out))
        study = build(args.paths, metrics, args.posthoc, args.alpha, args.rope, args.seed, args.reg)
    except UserInputError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    for folder, why in study.skipped:
        print(f"regbench: warning: skipped {folder}: {why}", file=sys.stderr)
    report = build_report(args.paths)  # the per-configuration table, under the study on the page
    try:  # a read-only folder (an archive, a shared drive) costs the files, never the table
        files = write(study, out, "regbench study " + " ".join(map(_quote, argv)), report)
        failed = None
    except OSError as e:
        failed = e
    render(study, wide_console())
    if failed is not None:
        # 1, not 0: the files asked for are missing, and a script that reads them next must know
        print(f"regbench: error: {not_written(failed, out)}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
