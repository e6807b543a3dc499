"""`regbench report`: run folders in; runs.csv, report.csv, report.html (and pivot.csv, report.md, plots) out.

    regbench report PATH [PATH ...] [--out DIR] [--format csv|md] [--baseline LABEL]
                    [--baseline-config N] [--pivot KEY] [--metric NAME] [--plots]

The same `build` / `write` / `render` steps run at the end of every multirun (see
regbench.cli.callbacks), so `regbench report SWEEP` later gives the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench.config.keys import ONLY_FOR
from regbench.reporting.aggregate import (
    CORRECTED_T,
    PLAIN_T,
    against_baseline,
    describe_config,
    metric_of,
    pivot,
    set_aside_duplicates,
    sort_key,
    summarize,
    value_text,
    with_config_ids,
)
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


def build(paths: list[Path], baseline: str | None = None, baseline_config: int | None = None) -> Report:
    """Reads the runs under `paths` and aggregates them.

    Args:
        paths: sweep folders, run folders or trees of them, merged.
        baseline: the reg label to compare against; None means `none`, without a note when no
            run has that label (a sweep need not have a baseline).
        baseline_config: a configuration id (report.csv's `config`) to compare against instead.

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
    elif baseline is not None and not (runs["reg"] == baseline).any():
        labels = ", ".join(sorted(runs["reg"].astype(str).unique()))
        notes.append(f"--baseline {baseline} matches no run (the labels here: {labels}): no paired differences")
    table, chosen = against_baseline(runs, table, label, baseline_config)
    return Report(runs=runs, table=table, constants=constants, baseline=label, skipped=collected.skipped,
                  duplicates=duplicates, notes=collected.notes + notes + chosen)


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


_fmt_param = value_text  # a parameter as the config spells it


def param_formatter(values: list[Any], key: str = "") -> Any:
    """One format for a column of parameter values: plain (`0.001`) unless some value needs an
    exponent, then every non-zero number in scientific notation (`1e-05`, `1e-04`, `2.5e-03`)."""
    numbers = [v for v in values if isinstance(v, float) and not _missing(v) and not v.is_integer()]
    if not any("e" in f"{v:g}" for v in numbers):
        return lambda v: _fmt_param(v, key)

    def scientific(value: Any) -> str:
        if not isinstance(value, float) or _missing(value) or value == 0:
            return _fmt_param(value, key)
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"

    return scientific


def number_formatter(values: list[Any], digits: int = 4) -> Any:
    """One format for a column of statistics: `digits` decimals, unless a non-zero value would
    show as zero, then scientific notation for the whole column. Missing values are empty."""
    present = [abs(v) for v in values if isinstance(v, (int, float)) and not _missing(v)]
    tiny = any(0 < v < 0.5 * 10.0**-digits for v in present)

    def fmt(value: Any) -> str:
        if _missing(value):
            return ""
        return f"{value:.{digits - 1}e}" if tiny else f"{value:.{digits}f}"

    return fmt


def _fmt_p(value: Any) -> str:
    """A p-value as papers print it: three decimals, `<0.001` below; `–` where undefined."""
    if _missing(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def param_columns(table: pd.DataFrame) -> list[str]:
    """The varying parameters: summarize puts them first, before `reg`."""
    columns = list(table.columns)
    return columns[: columns.index("reg")]


P_COLUMN = "p Holm (t-test / Wilcoxon)"  # Holm-adjusted; report.csv also has the raw p-values
D_COLUMN = "d_z"  # the effect size of the paired difference


def display_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """The printed (and Markdown) view of report.csv: header and formatted rows. Every column
    shares one number format (see number_formatter, param_formatter). The p-values shown are
    the Holm-adjusted ones (report.csv has both)."""
    t, m = report.table, metric_of(report.runs)
    params = param_columns(t)
    header = params + ["reg", "n"]
    show_bad = bool((t["n_diverged"] + t["n_failed"]).any())
    if show_bad:
        header.append("diverged/failed")
    quantities = [q for q in (f"val_{m}", f"test_{m}", f"gap.{m}", "gap.loss", "sparsity") if f"{q}.mean" in t]
    header += [f"{q} (95% CI)" for q in quantities] + ["epochs"]
    show_early = "n_early_best" in t and bool(t["n_early_best"].any())
    if show_early:
        header.append("early best †")
    with_delta = f"delta.val_{m}" in t and t[f"delta.val_{m}"].notna().any()
    if with_delta:
        header += [f"Δval_{m} vs {report.baseline}", D_COLUMN, P_COLUMN, "pairs"]
    param_fmt = {p: param_formatter(list(t[p]), p) for p in params}
    stat_fmt = {q: number_formatter(list(t[f"{q}.mean"]) + list(t[f"{q}.ci95"])) for q in quantities}
    epochs_fmt = number_formatter(list(t.get("epochs_run.mean", [])), 1)
    delta_fmt = number_formatter(list(t[f"delta.val_{m}"])) if with_delta else None
    d_fmt = number_formatter(list(t[f"delta.val_{m}.d_z"]), 2) if with_delta else None
    rows = []
    for _, r in t.iterrows():
        row = [param_fmt[p](r[p]) for p in params] + [str(r["reg"]), str(int(r["n_seeds"]))]
        if show_bad:
            row.append(f"{int(r['n_diverged'])}/{int(r['n_failed'])}")
        for q in quantities:
            mean, ci = stat_fmt[q](r[f"{q}.mean"]), stat_fmt[q](r[f"{q}.ci95"])
            row.append(f"{mean} ± {ci}" if mean and ci else mean)
        row.append(epochs_fmt(r.get("epochs_run.mean")))
        if show_early:
            row.append(f"{int(r['n_early_best'])}/{int(r['n_seeds'])}" if r["n_early_best"] else "")
        if with_delta:
            pairs = r["delta.n_pairs"]
            tested = not _missing(pairs) and pairs >= 2
            p_t, p_w = r[f"delta.val_{m}.p_ttest_holm"], r[f"delta.val_{m}.p_wilcoxon_holm"]
            row += [
                delta_fmt(r[f"delta.val_{m}"]),
                (d_fmt(r[f"delta.val_{m}.d_z"]) or "–") if tested else "",
                f"{_fmt_p(p_t)} / {_fmt_p(p_w)}" if tested else "",
                "" if _missing(pairs) else str(int(pairs)),
            ]
        rows.append(row)
    return header, rows


def footnotes(report: Report, header: list[str], rows: list[list[str]], left_out: set[str] = frozenset()) -> list[str]:
    """What the table's marks mean, only for the marks it shows (`left_out`: columns a narrow
    terminal's view left out), and the duplicates set aside."""
    lines = []
    if P_COLUMN in header:
        lines.append("p Holm: p-values Holm-adjusted for the comparisons with the baseline, within each dataset, "
                     "metric and test (the t-test's one family, the Wilcoxon test's another); report.csv also "
                     "has the raw ones (delta.<q>.p_ttest, delta.<q>.p_wilcoxon)")
        lines += test_lines(report.table)
        column = header.index(P_COLUMN)
        if any("–" in row[column] for row in rows):
            t = report.table
            unsized = "delta.test" in t and ((t["delta.test"] == CORRECTED_T) & t["delta.n_train"].isna()).any()
            lines.append("p –: the test is undefined for these pairs: the t-test when every paired difference is "
                         "the same (no variance), the Wilcoxon test when every one is zero"
                         + ("; the corrected t-test also where the runs record no split sizes (see the note)"
                            if unsized else ""))
    if D_COLUMN in header and D_COLUMN not in left_out:
        column = header.index(D_COLUMN)
        corrected = "delta.test" in report.table and (report.table["delta.test"] == CORRECTED_T).any()
        lines.append("d_z: the effect size, the mean paired difference over the standard deviation of the paired "
                     "differences (Cohen's d_z)"
                     + ("; with the corrected t-test, that deviation widened by the same correction (d_z = t / √pairs)"
                        if corrected else "")
                     + ("; – where every paired difference is the same (no variance)"
                        if any(row[column] == "–" for row in rows) else ""))
    if "early best †" in header:
        patience = report.constants.get("trainer.patience")
        known = patience is not None and patience == patience  # not null, not NaN
        within = f"the first {int(patience)} epochs" if known else "the first trainer.patience epochs"
        lines.append(f"† runs whose reported (best) epoch lies within {within} (result.json early_best): "
                     "a barely trained model, often one that a strong penalty kept from learning; "
                     "its numbers describe that early model, not a trained one")
    n = len(report.duplicates)
    if n:
        lines.append(f"set aside {n} duplicate run(s): the same configuration and seed as a kept run "
                     "(the newest that finished is kept; runs.csv lists each with duplicate_of)")
        for _, r in report.duplicates.head(DUPLICATES_LISTED).iterrows():
            lines.append(f"  duplicate: {r['folder']} (kept: {r['duplicate_of']})")
        if n > DUPLICATES_LISTED:
            lines.append(f"  … and {n - DUPLICATES_LISTED} more")
    return lines


DUPLICATES_LISTED = 5  # more are in runs.csv


def test_lines(table: pd.DataFrame) -> list[str]:
    """Which t-test the rows used (report.csv's delta.test), and what each one's conclusion is about."""
    used = set(table["delta.test"].dropna()) if "delta.test" in table else set()
    lines = []
    if CORRECTED_T in used:
        ratios = sorted((table["delta.n_val"] / table["delta.n_train"]).dropna().unique())
        shown = ", ".join(f"{r:.3g}" for r in ratios[:3]) + (", …" if len(ratios) > 3 else "") or "unknown"
        lines.append("t-test where the seeds re-split the data (dataset.split_seed follows the seed): Nadeau & Bengio's "
                     "corrected resampled t-test, as two seeds' training sets overlap: the variance of the paired "
                     "differences times 1/pairs + n_test/n_train, n_test the size of the split the metric is measured "
                     f"on (for val: n_val/n_train = {shown}); report.csv names the test per row (delta.test) and the "
                     "split sizes; the Wilcoxon test has no such correction and is too confident there")
    if PLAIN_T in used:
        lines.append("t-test where every seed has the same split (one dataset.split_seed): the paired t-test; only the "
                     "training randomness varies, so the conclusion holds for this one split, not for the dataset")
    return lines


def applies(key: str, runs: pd.DataFrame) -> bool:
    """Whether `key` means something for at least one of the runs (see regbench.config.keys.ONLY_FOR)."""
    if key not in ONLY_FOR:
        return True
    owner, values = ONLY_FOR[key]
    column = runs.get(f"params.{owner}")
    if column is None:
        return True
    if values is None:  # the owning knob switches it on: anything but 0 / false / missing
        return bool((column.notna() & (column != 0) & (column != False)).any())  # noqa: E712
    return bool(column.isin(values).any())


def constants_line(report: Report) -> str:
    shown = {k: v for k, v in report.constants.items() if applies(k, report.runs)}
    return "constant in every run: " + ", ".join(f"{k}={_fmt_param(v, k)}" for k, v in shown.items())


def class_lines(report: Report) -> list[str]:
    """The class names of a user's data (result.json's `classes`), one line per dataset file:
    the report's accuracies are over these classes, indexed 0..K-1 in this order."""
    runs = report.runs
    if "classes" not in runs:
        return []
    out = []
    path = runs["params.dataset.path"] if "params.dataset.path" in runs else pd.Series([None] * len(runs), index=runs.index)
    for (dataset, where, names), _ in runs.assign(_path=path).groupby(["dataset", "_path", "classes"], dropna=True):
        listed = json.loads(names)
        if listed == [str(i) for i in range(len(listed))]:  # the labels are the indices: nothing to name
            continue
        shown = ", ".join(f"{i}={n}" for i, n in enumerate(listed[:CLASSES_LISTED]))
        more = f", … ({len(listed)} in all; result.json has them all)" if len(listed) > CLASSES_LISTED else ""
        out.append(f"classes of {dataset} {where}: {shown}{more}")
    return out


CLASSES_LISTED = 20


def problem_lines(report: Report) -> list[str]:
    """One line per diverged or failed run, with its folder and error."""
    bad = report.runs[report.runs["status"] != "ok"]
    return [
        f"{r['status']}: {r['folder']}" + (f": {r['error']}" if isinstance(r.get("error"), str) else "")
        for _, r in bad.iterrows()
    ]


def wide_console() -> Console:
    """A console that does not wrap tables at 80 columns when writing to a file or a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=250)


# Columns left out first when the table is wider than the terminal: report.csv has them all.
DROP_FIRST = ("pairs", "epochs", "sparsity (95% CI)", D_COLUMN, "gap.loss (95% CI)", "test_acc (95% CI)",
              "test_r2 (95% CI)")


def _rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    first_number = header.index("n")
    for i, name in enumerate(header):
        # Numbers never wrap or get cut: a column that does not fit is left out (fit_to_width).
        table.add_column(name, justify="left" if i < first_number else "right", no_wrap=i >= first_number,
                         overflow="fold" if i < first_number else "ignore")
    for row in rows:
        table.add_row(*row)
    return table


def natural_width(console: Console, table: Table) -> int:
    """The width the table takes when nothing is squeezed."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), table).maximum


def _abbreviate(name: str) -> str:
    """A shorter header: `val_acc (95% CI)` -> `val_acc ±CI`, `reg.alpha` -> `alpha`, ..."""
    for long, short in ((" (95% CI)", " ±CI"), (P_COLUMN, "pHolm t/W"), ("early best †", "†"), ("reg.", "")):
        name = name.replace(long, short)
    return name.split(" vs ")[0]


def fit_to_width(console: Console, title: str, header: list[str], rows: list[list[str]],
                 redundant: list[str] = ()) -> tuple[Table, list[str]]:
    """The table, fitted to the console's width without ever wrapping or cutting a number: it
    leaves out `pairs` and `epochs`, abbreviates the headers, leaves out the `redundant`
    columns (parameters the label determines), then sparsity, d_z, gap.loss and the test metric,
    one step at a time until it fits. Returns it and what was changed, for a line under it."""
    changed: list[str] = []
    steps = [*DROP_FIRST[:2], "abbreviate", *redundant, *DROP_FIRST[2:]]
    for step in [None, *steps]:
        if step == "abbreviate":
            header = [_abbreviate(name) for name in header]
            changed.append("headers abbreviated")
        elif step is not None:
            names = [name for name in header if name in (step, _abbreviate(step))]
            if not names:
                continue
            i = header.index(names[0])
            changed.append(f"left out {step}")
            header = header[:i] + header[i + 1:]
            rows = [row[:i] + row[i + 1:] for row in rows]
        table = _rich_table(title, header, rows)
        if natural_width(console, table) <= console.width:
            break
    return table, changed


def render(report: Report, console: Console) -> None:
    """Prints the comparison table, the constants, its footnotes, the problem runs and the skipped count."""
    header, rows = display_table(report)
    ok = int((report.runs["status"] == "ok").sum())
    title = f"{len(report.table)} configurations, {len(report.runs)} runs ({ok} ok), best validation first"
    t = report.table
    redundant = [p for p in param_columns(t) if t.groupby("reg")[p].agg(lambda v: v.map(str).nunique()).max() <= 1]
    table, changed = fit_to_width(console, title, header, rows, redundant)
    width = natural_width(console, table)
    if width <= console.width:
        console.print(table)
    else:  # still too wide: whole lines, which the terminal wraps, rather than numbers split in a cell
        Console(file=console.file, width=width, force_terminal=console.is_terminal, color_system=console.color_system,
                no_color=console.no_color).print(table)
    left_out = {step.removeprefix("left out ") for step in changed if step.startswith("left out ")}
    lines = [constants_line(report), *class_lines(report), *footnotes(report, header, rows, left_out),
             *problem_lines(report)]
    if changed:
        lines.append(f"for a {console.width}-column terminal: {'; '.join(changed)} "
                     "(report.csv has every column; --format md writes the whole table)")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if report.skipped:
        console.print(f"skipped {len(report.skipped)} run folder(s) without a usable result.json", highlight=False)


def markdown(report: Report) -> str:
    header, rows = display_table(report)
    lines = [constants_line(report), *class_lines(report), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    notes = footnotes(report, header, rows) + [f"Note: {n}" for n in report.notes]
    if notes:
        lines += ["", *notes]
    problems = problem_lines(report)
    if problems:
        lines += ["", *[f"- {p}" for p in problems]]
    return "\n".join(lines) + "\n"


def all_runs(report: Report) -> pd.DataFrame:
    """runs.csv: the kept runs, then the duplicates set aside (with `duplicate_of`)."""
    if report.duplicates.empty:
        return report.runs.assign(duplicate_of=None)
    return pd.concat([report.runs.assign(duplicate_of=None), report.duplicates], ignore_index=True)


def write(report: Report, out: Path, fmt: str = "csv", command: str = "", images: list[Path] = (),
          pivot_table: pd.DataFrame | None = None) -> list[Path]:
    """Writes runs.csv, report.csv and report.html (and report.md with fmt="md") into `out`;
    the page shows `pivot_table` too, embeds `images` and names `command` (by default
    `regbench report OUT`, which writes it again)."""
    from regbench.reporting import html

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "runs.csv", out / "report.csv"]
    all_runs(report).to_csv(files[0], index=False)
    report.table.to_csv(files[1], index=False)
    if fmt == "md":
        files.append(out / "report.md")
        files[-1].write_text(markdown(report))
    files.append(html.write_page(out / "report.html", "regbench report", html.report_sections(report, images, pivot_table),
                                 command or f"regbench report {shlex.quote(str(out))}"))
    return files


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
    parser.add_argument("--metric", metavar="NAME", help="the pivot's cell value (default: the validation metric), e.g. gap.acc")
    parser.add_argument("--plots", action="store_true", help="write gap_vs_strength.png and curves.png")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """`regbench report …`; returns the exit code."""
    args = parse_args(argv)
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
        report = build(args.paths, args.baseline, args.baseline_config)
    except ValueError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2 if str(e).startswith("--baseline-config") else 1
    for folder, why in report.skipped:
        print(f"regbench: warning: skipped {folder}: {why}", file=sys.stderr)
    for note in report.notes:
        print(f"regbench: warning: {note}", file=sys.stderr)
    m = metric_of(report.runs)
    pivot_table = None
    if args.pivot:
        try:
            pivot_table = pivot(report.runs, args.pivot, args.metric or f"val_{m}")
        except KeyError as e:
            print(f"regbench: error: {e.args[0]}", file=sys.stderr)
            return 2
    console = wide_console()
    try:  # a read-only folder (an archive, a shared drive) costs the files, never the table
        out.mkdir(parents=True, exist_ok=True)
        images = _plots(report, out, m) if args.plots else []
        files = write(report, out, args.format, "regbench report " + " ".join(map(shlex.quote, argv)), images,
                      pivot_table)
        if pivot_table is not None:
            files.append(out / "pivot.csv")
            pivot_table.to_csv(files[-1], index=False)
        failed = None
    except OSError as e:
        failed = e
    render(report, console)
    if pivot_table is not None:
        _print_pivot(pivot_table, args.metric or f"val_{m}", console)
    if failed is not None:
        # 1, not 0: the files asked for are missing, and a script that reads them next must know
        print(f"regbench: error: {not_written(failed, out)}", file=sys.stderr)
        return 1
    files += images
    console.print("wrote " + ", ".join(str(f) for f in files), highlight=False)
    return 0


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
    view = Table(title=f"{metric}: mean ± std across seeds", title_justify="left")
    for c in table.columns:
        view.add_column(str(c))
    for _, row in table.iterrows():
        view.add_row(*("" if pd.isna(v) else str(v) for v in row))
    console.print(view)


def _plots(report: Report, out: Path, metric: str) -> list[Path]:
    from regbench.reporting.plots import curves, gap_vs_strength

    t = report.table
    # Parameters the label fixes (l1_ratio for l1/l2) would only repeat the panel's title.
    params = [p for p in param_columns(t) if t.groupby("reg")[p].agg(lambda v: v.map(str).nunique()).max() > 1]
    describe = {
        int(r["config"]): ", ".join(f"{p.removeprefix('reg.')}={_fmt_param(r[p], p)}" for p in params) or str(r["reg"])
        for _, r in t.iterrows()
    }
    order = {int(r["config"]): tuple(sort_key(r[p]) for p in params) for _, r in t.iterrows()}
    made = [gap_vs_strength(report.runs, out / "gap_vs_strength.png", metric),
            curves(report.runs, out / "curves.png", describe, order)]
    if made[0] is None:
        print("regbench: note: no gap_vs_strength.png: its x axis is reg.alpha, and no ok run has reg.alpha > 0",
              file=sys.stderr)
    if made[1] is None:
        print("regbench: note: no curves.png: no ok run has a readable metrics.csv", file=sys.stderr)
    return [p for p in made if p is not None]
