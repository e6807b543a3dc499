"""A Report as people read it: the printed table (fitted to the terminal), report.md, the
page's sections, and the files `write` leaves (runs.csv, report.csv, report.md, report.html).

Every column of a table shares one number format (see number_formatter, param_formatter).
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

from regbench.reporting import html
from regbench.reporting.aggregate import (CORRECTED_T, GROUPED, PLAIN_T, group_of, metric_of, shifted_names,
                                         value_text)
from regbench.reporting.power import count_text
from regbench.reporting.report import Report, all_runs, applies, computed, idle


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
EARLY = "early best †"  # runs reported from within the patience


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
    shifted = shifted_names([c.removesuffix(".mean") for c in t.columns], (m,))  # test_acc@gaussian_noise=0.5 ...
    quantities = [q for q in (f"val_{m}", f"test_{m}", *shifted, f"gap.{m}", "gap.loss", "test_ece", "test_brier",
                              "sparsity") if f"{q}.mean" in t]
    header += [f"{q} (95% CI)" for q in quantities] + ["epochs"]
    show_early = "n_early_best" in t and bool(t["n_early_best"].any())
    if show_early:
        header.append(EARLY)
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
        lines += seeds_lines(report)
    if D_COLUMN in header and D_COLUMN not in left_out:
        column = header.index(D_COLUMN)
        corrected = "delta.test" in report.table and (report.table["delta.test"] == CORRECTED_T).any()
        lines.append("d_z: the effect size, the mean paired difference over the standard deviation of the paired "
                     "differences (Cohen's d_z)"
                     + ("; with the corrected t-test, that deviation widened by the same correction (d_z = t / √pairs)"
                        if corrected else "")
                     + ("; – where every paired difference is the same (no variance)"
                        if any(row[column] == "–" for row in rows) else ""))
    if EARLY in header and EARLY not in left_out:
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


def constants_line(report: Report) -> str:
    """The parameters every run shares, named once: those that change what a run computes
    (regbench.config.keys: a key declared `computed=False`, such as where a run is kept, is left
    out), apply to some run (see report.applies), and are not the knobs of a regularizer that acts
    in none of the runs (report.idle: the `reg` column says which act)."""
    shown = {k: v for k, v in report.constants.items()
             if computed(k) and applies(k, report.runs) and not idle(k, report.runs)}
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
    """A console that does not wrap tables at 80 columns when writing to a file or a pipe
    (render writes the whole table there, at its own width)."""
    console = Console()
    return console if console.is_terminal else Console(width=250)


# Columns left out first when the table is wider than the terminal: report.csv has them all.
# the calibration columns first of the rest: the terminal keeps what it showed before they existed
DROP_FIRST = ("pairs", "epochs", "test_brier (95% CI)", "test_ece (95% CI)", "sparsity (95% CI)", D_COLUMN,
              "gap.loss (95% CI)", "test_acc (95% CI)", "test_r2 (95% CI)")
CI_HALF = "CI halves"  # the step that shows `mean` for `mean ± CI`
RECORDS = "one record per row"  # the last resort: each configuration as lines of `column  value`


def _rich_table(title: str, header: list[str], rows: list[list[str]], sections: list[bool] = ()) -> Table:
    table = Table(title=title, title_justify="left")
    first_number = header.index("n")
    for i, name in enumerate(header):
        # Numbers never wrap or get cut: a column that does not fit is left out (fit_to_width).
        table.add_column(name, justify="left" if i < first_number else "right", no_wrap=i >= first_number,
                         overflow="fold" if i < first_number else "ignore")
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=bool(sections) and sections[i])
    return table


def natural_width(console: Console, table: Table) -> int:
    """The width the table takes when nothing is squeezed."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), table).maximum


def _abbreviate(name: str) -> str:
    """A shorter header: `val_acc (95% CI)` -> `val_acc ±CI`, `reg.alpha` -> `alpha`, ..."""
    for long, short in ((" (95% CI)", " ±CI"), (P_COLUMN, "pHolm t/W"), (EARLY, "†"), ("reg.", "")):
        name = name.replace(long, short)
    return name.split(" vs ")[0]


def _without_ci(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The table with `mean` where it had `mean ± CI`, and headers to match."""
    header = [name.removesuffix(" ±CI").removesuffix(" (95% CI)") for name in header]
    return header, [[cell.split(" ± ")[0] for cell in row] for row in rows]


def _view(header: list[str], rows: list[list[str]], left_out: list[str], short: bool,
          no_ci: bool) -> tuple[list[str], list[list[str]]]:
    """The table without the `left_out` columns, its headers abbreviated (`short`), its means
    without their CI (`no_ci`)."""
    keep = [i for i, name in enumerate(header) if name not in left_out]
    header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    if short:
        header = [_abbreviate(name) for name in header]
    return _without_ci(header, rows) if no_ci else (header, rows)


def fit_to_width(console: Console, title: str, header: list[str], rows: list[list[str]],
                 redundant: list[str] = (), sections: list[bool] = ()) -> tuple[Table | None, list[str]]:
    """The table, fitted to the console's width without ever wrapping or cutting a number: it
    leaves out `pairs` and `epochs`, abbreviates the headers, leaves out the `redundant`
    columns (parameters the label determines), then the metrics under shift, test_brier, test_ece,
    sparsity, d_z, gap.loss, the test metric and the `early best †` marks, then shows each mean without its CI, one step at a time until
    it fits; then it takes back, the last left out first, each column that still fits (the
    CI's room may hold the marks). Returns it (None when even that is too wide: then
    print records) and what was changed, for a line under it."""
    # the metrics under shift first of the numbers, the most severe first: report.csv has them all
    shifted = [h for h in reversed(header) if "@" in h]
    steps = [*DROP_FIRST[:2], "abbreviate", *redundant, *shifted, *DROP_FIRST[2:], EARLY, CI_HALF]
    left_out: list[str] = []
    short = no_ci = False

    def table() -> Table:
        return _rich_table(title, *_view(header, rows, left_out, short, no_ci), sections)

    def fits() -> bool:
        return natural_width(console, table()) <= console.width

    for step in [None, *steps]:
        if step == "abbreviate":
            short = True
        elif step == CI_HALF:
            no_ci = True
        elif step is not None and step in header:
            left_out.append(step)
        if fits():
            break
    else:
        return None, [RECORDS]
    for name in reversed(list(left_out)):
        left_out.remove(name)
        if not fits():
            left_out.append(name)
    changed = [f"left out {step}" if step in left_out else "headers abbreviated" if step == "abbreviate" and short
               else "means without their 95% CI" if step == CI_HALF and no_ci else None for step in steps]
    return table(), [c for c in changed if c]


def records(title: str, header: list[str], rows: list[list[str]], first_number: int) -> list[str]:
    """The table as one record per row, for a terminal too narrow for its columns: a line that
    names the row by its label, then one `column  value` line per parameter and number shown
    (`first_number`: the index of the first number column, `n`; the label is just before it)."""
    width = max(len(name) for name in header)
    out = [title]
    for i, row in enumerate(rows, 1):
        out += ["", f"{i}. {row[first_number - 1]}"]
        out += [f"   {name:<{width}}  {cell}" for j, (name, cell) in enumerate(zip(header, row))
                if cell and j != first_number - 1]
    return out


def _sections(report: Report) -> list[bool]:
    """Where a group (one dataset and model, see aggregate.group_keys) ends: a rule under its last row."""
    groups = group_of(report.table)
    return [i + 1 < len(groups) and groups[i + 1] != g for i, g in enumerate(groups)]


def title_of(report: Report) -> str:
    """The table's title: what it holds and in which order."""
    ok = int((report.runs["status"] == "ok").sum())
    grouped = [c for c in param_columns(report.table) if f"params.{c}".startswith(GROUPED)]
    order = f"grouped by {', '.join(grouped)}, best validation first in each" if grouped else "best validation first"
    return f"{len(report.table)} configurations, {len(report.runs)} runs ({ok} ok), {order}"


def render(report: Report, console: Console) -> None:
    """Prints the comparison table, the constants, its footnotes, the problem runs and the skipped count.

    On a terminal the table is fitted to its width (fit_to_width, else one record per row) and a
    line says what was changed; to a file or a pipe, which has no width, it is written whole.
    """
    header, rows = display_table(report)
    title, sections = title_of(report), _sections(report)
    t = report.table
    if console.is_terminal:
        redundant = [p for p in param_columns(t) if t.groupby("reg")[p].agg(lambda v: v.map(str).nunique()).max() <= 1]
        table, changed = fit_to_width(console, title, header, rows, redundant, sections)
    else:
        table, changed = _rich_table(title, header, rows, sections), []
    if table is None:
        title, *lines = records(title, header, rows, header.index("n"))
        console.print(title, highlight=False, markup=False)  # wrapped at the terminal's width
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    elif console.is_terminal:
        console.print(table)
    else:  # no width to fit: whole lines, every column
        width = natural_width(console, table)
        Console(file=console.file, width=width, force_terminal=False, color_system=console.color_system,
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


def pivot_title(metric: str) -> str:
    """The pivot's heading, naming the metric its cells hold (page, report.md, terminal)."""
    return f"Pivot: {metric}, mean ± std across seeds"


def pivot_markdown(pivot: pd.DataFrame, metric: str) -> str:
    """The pivot view as a section of report.md."""
    cells = [["" if pd.isna(v) else str(v).replace("|", "\\|") for v in row] for row in pivot.itertuples(index=False)]
    lines = [f"## {pivot_title(metric)}", "", "| " + " | ".join(map(str, pivot.columns)) + " |",
             "|" + "---|" * len(pivot.columns), *("| " + " | ".join(row) + " |" for row in cells)]
    return "\n".join(lines) + "\n"


def page_table(report: Report) -> tuple[html.GroupedTable, str]:
    """The comparison table as the page shows it, and the line that names the parameters it
    shows once instead of in every row.

    The rows of display_table stay in their groups (one dataset and model), each under a
    heading row naming the parameters its rows share: the group's own, and any column constant
    within every group. A parameter that each reg label fixes (l2's l1_ratio, dropout's rate,
    when the sweep does not vary them) is named once per label in the returned line. Each row
    then starts with its configuration's label (reg, and the parameters that still vary), the
    difference from the baseline with its p-values and effect size right after it, so that a
    narrow window scrolls the other numbers, never these; then the rest in the printed order."""
    header, rows = display_table(report)
    params = param_columns(report.table)
    reg = len(params)  # display_table's `reg` column follows the parameters
    members: dict[tuple, list[int]] = {}
    for i, g in enumerate(group_of(report.table)):
        members.setdefault(g, []).append(i)

    def constant_within(column: int, sets: list[list[int]]) -> bool:
        return all(len({rows[r][column] for r in idx}) == 1 for idx in sets)

    in_group = [i for i in range(reg) if constant_within(i, list(members.values()))]
    labels: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        labels.setdefault(row[reg], []).append(i)
    fixed = [i for i in range(reg) if i not in in_group and constant_within(i, list(labels.values()))]
    label = [reg] + [i for i in range(reg) if i not in in_group and i not in fixed]
    first = [i for i, name in enumerate(header) if name.startswith("Δ") or name in (P_COLUMN, D_COLUMN)]
    order = label + first + [i for i in range(reg + 1, len(header)) if i not in first]
    grouped = [(", ".join(f"{header[i]} = {rows[idx[0]][i]}" for i in in_group),
                [[rows[r][i] for i in order] for r in idx]) for idx in members.values()]
    return html.GroupedTable([header[i] for i in order], grouped, len(label)), _label_line(header, rows, fixed, labels)


def _label_line(header: list[str], rows: list[list[str]], fixed: list[int], labels: dict[str, list[int]]) -> str:
    """`fixed`'s values: each label's own, where they differ from a value two or more labels
    share (the most common one), then those shared values."""
    if not fixed:
        return ""
    value = {(name, i): rows[idx[0]][i] for name, idx in labels.items() for i in fixed}
    usual = {}
    for i in fixed:
        counts = {v: sum(value[(name, i)] == v for name in labels) for v in sorted({value[(n, i)] for n in labels})}
        top = max(counts, key=counts.get)
        if counts[top] >= 2:
            usual[i] = top
    own = [(name, [f"{header[i]}={value[(name, i)]}" for i in fixed if usual.get(i) != value[(name, i)]])
           for name in sorted(labels)]
    told = [f"{name}: {', '.join(values)}" for name, values in own if values]
    rest = ", ".join(f"{header[i]}={usual[i]}" for i in fixed if i in usual)
    if rest:
        told.append(("otherwise: " if told else "every label: ") + rest)
    return "Parameters each label fixes (not repeated in the rows): " + "; ".join(told) + "."


def parts(report: Report, command: str, images: list[Path] = (), pivot: pd.DataFrame | None = None,
          pivot_metric: str = "", tables: Sequence[tuple[str, str, pd.DataFrame, str]] = ()) -> list[html.Part]:
    """The page's parts this report writes: the comparison table (grouped, see page_table), its
    notes and the class names of a user's data; the pivot view (pivot.csv) of `pivot_metric`
    when given; each of `tables` ((key, title, frame, its CSV file): --ensemble's and
    --temperature's, regbench.reporting.ensemble); one part per plot in `images`. Each names `command`."""
    header, rows = display_table(report)
    grouped, label_line = page_table(report)
    out = [html.Part("table", "Comparison table", [
        html.Heading(title_of(report), label_line), grouped,
        html.Lines([constants_line(report), *class_lines(report), *footnotes(report, header, rows), *report.notes,
                    *problem_lines(report)])], command, ["report.csv"])]
    if pivot is not None:
        out.append(html.Part("pivot", pivot_title(pivot_metric), [
            html.Table([str(c) for c in pivot.columns], [["" if pd.isna(v) else str(v) for v in row]
                                                        for row in pivot.itertuples(index=False)],
                       sum(1 for _ in itertools.takewhile(lambda c: "=" not in str(c), pivot.columns)))],
            command, ["pivot.csv"]))
    for key, title, frame, name in tables:
        cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
        out.append(html.Part(key, title, [html.Table([str(c) for c in frame.columns], cells, 2)], command, [name]))
    for path in images:
        out.append(html.Part(f"plot:{path.name}", path.stem.replace("_", " "), [html.Figure(path, path.stem)],
                             command, [path.name]))
    return out


def write(report: Report, out: Path, fmt: str = "csv", command: str = "", images: list[Path] = (),
          pivot_table: pd.DataFrame | None = None, pivot_metric: str = "", plotted: bool = False,
          tables: Sequence[tuple[str, str, pd.DataFrame, str]] = ()) -> list[Path]:
    """Writes runs.csv, report.csv and report.html (and report.md with fmt="md") into `out`.

    The page's table part (and report.md) are this report's, and so are its pivot part (the
    pivot of `pivot_metric`) when `pivot_table` is given and its plot parts (`images`) when
    `plotted` (the plots were asked for, made or not); each names `command` (by default
    `regbench report OUT`, which writes it again). The parts other commands wrote there (a
    study, an earlier pivot or plots) stay on the page (regbench.reporting.html). pivot.csv
    itself is the command's (regbench.reporting.report_command), and so are the CSV files of
    `tables` (their parts replace the page's parts of the same key; a report without them keeps those)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "runs.csv", out / "report.csv"]
    html.replace_text(files[0], all_runs(report).to_csv(index=False))
    html.replace_text(files[1], report.table.to_csv(index=False))
    if fmt == "md":
        files.append(out / "report.md")
        text = markdown(report)
        if pivot_table is not None:
            text += "\n" + pivot_markdown(pivot_table, pivot_metric)
        html.replace_text(files[-1], text)
    command = command or f"regbench report {shlex.quote(str(out))}"
    replaces = ["table"] + (["pivot"] if pivot_table is not None else []) + (["plot"] if plotted or images else [])
    replaces += [key for key, *_ in tables]
    files.append(html.write_parts(out / "report.html", parts(report, command, list(images), pivot_table, pivot_metric,
                                                             tables), replaces))
    return files


def seeds_lines(report: Report) -> list[str]:
    """How many paired seeds each comparison of the validation metric needs (report.csv's
    delta.<q>.seeds_needed) in one line, then one line per inconclusive comparison (its interval
    holds both 0 and a difference of the minimal effect: delta.<q>.needs_seeds)."""
    t, m, plan = report.table, metric_of(report.runs), report.seeds
    q = f"val_{m}"
    if f"delta.{q}.seeds_needed" not in t:
        return []
    planned = t[t[f"delta.{q}.seeds_needed"].notna()]
    if planned.empty:
        return []
    level = f"{plan.power:.0%} power at alpha {plan.alpha:g}"

    def count(r: pd.Series, column: str) -> str:
        n = r[column]
        if n != math.inf:
            return count_text(n)
        return "never (the re-split correction)" if r["delta.test"] == CORRECTED_T else "never (no difference)"

    lines = [f"seeds needed to detect each Δ{q} with {level} (the paired t-test, from the paired differences' "
             "standard deviation; report.csv delta.<q>.seeds_needed): "
             + "; ".join(f"{r['reg']} (config {int(r['config'])}) {count(r, f'delta.{q}.seeds_needed')}"
                         for _, r in planned.iterrows())]
    if (planned[f"delta.{q}.seeds_needed"] == math.inf).any() and (planned["delta.test"] == CORRECTED_T).any():
        lines.append(f"never (the re-split correction): the corrected t-test's n_test/n_train term does not shrink "
                     f"with more seeds, so for this difference its power never reaches {plan.power:.0%}; one fixed "
                     "split (dataset.split_seed=0) asks less, and concludes about that split only")
    flagged = planned[planned[f"delta.{q}.needs_seeds"].notna()]
    for _, r in flagged.iterrows():
        needs = r[f"delta.{q}.needs_seeds"]
        low, high = r[f"delta.{q}.ci_low"], r[f"delta.{q}.ci_high"]
        why = (f"needs ~{count_text(needs)} seeds" if needs != math.inf
               else "no number of seeds settles it (the re-split correction)")
        lines.append(f"inconclusive: {r['reg']} (config {int(r['config'])}): the {1 - plan.alpha:.0%} interval of "
                     f"Δ{q} [{low:+.4f}, {high:+.4f}] holds both 0 and a difference of ±{plan.min_effect:g} "
                     f"(--min-effect): {why} (has {int(r['delta.n_pairs'])})"
                     + ("; `regbench more-seeds` adds them" if needs != math.inf else ""))
    return lines
