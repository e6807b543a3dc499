"""report.html: one self-contained page per report or study — its tables, its plots (PNG as
base64 data URIs, SVG inline), the study's statistics and the command that produced it. No
script, no network: it opens from a file, on a phone (a viewport and a fluid layout) or on paper
(print CSS)."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from regbench import __version__

if TYPE_CHECKING:
    from regbench.reporting.report import Report
    from regbench.reporting.study import Study

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 0 12px 40px; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.45em; margin: 0.8em 0 0.3em; } h2 { font-size: 1.15em; margin: 1.4em 0 0.4em; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.4em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
img, svg { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
pre, code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.86em; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; word-break: break-all; }
ul.notes li { margin: 0.15em 0; } .meta { color: #555; font-size: 0.85em; }
@media (max-width: 600px) { body { font-size: 14px; padding: 0 8px 24px; } th, td { padding: 2px 4px; } }
@media print { body { max-width: none; padding: 0; font-size: 10pt; } .scroll { overflow: visible; }
  table, img, svg, figure { page-break-inside: avoid; break-inside: avoid; } pre { white-space: pre-wrap; }
  h2 { page-break-after: avoid; break-after: avoid; } }
"""


def table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """An HTML table (escaped), its first `text_columns` columns left-aligned, in a scroller."""
    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="text"' if i < text_columns else ""
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def image(path: Path, alt: str) -> str:
    """A PNG as a data URI, or an SVG inline (its XML prolog dropped)."""
    if path.suffix == ".svg":
        text = path.read_text()
        return f'<figure role="img" aria-label="{html.escape(alt)}">{text[text.index("<svg"):]}</figure>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def lines(items: Sequence[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


def page(title: str, sections: Sequence[str], command: str = "") -> str:
    """The whole document."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    made = (f"<h2>Command</h2><pre>{html.escape(command)}</pre>" if command else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">regbench {__version__}, written {when}</p>"
        + "".join(sections) + made + "</body></html>\n"
    )


def write_page(path: Path, title: str, sections: Sequence[str], command: str = "") -> Path:
    path.write_text(page(title, sections, command), encoding="utf-8")
    return path


def report_sections(report: Report, images: Sequence[Path] = (), pivot: pd.DataFrame | None = None) -> list[str]:
    """The comparison table as the console prints it (every column), its notes, the pivot view
    (pivot.csv) when given, and the plots."""
    from regbench.reporting.report import constants_line, display_table, footnotes, param_columns, problem_lines

    header, rows = display_table(report)
    ok = int((report.runs["status"] == "ok").sum())
    sections = [f"<h2>{len(report.table)} configurations, {len(report.runs)} runs ({ok} ok), best validation first</h2>",
                table(header, rows, len(param_columns(report.table)) + 1),
                lines([constants_line(report), *footnotes(report, header, rows), *report.notes, *problem_lines(report)])]
    if pivot is not None:
        sections += ["<h2>Pivot: mean ± std across seeds</h2>",
                     table([str(c) for c in pivot.columns], [["" if pd.isna(v) else str(v) for v in row]
                                                            for row in pivot.itertuples(index=False)])]
    for path in images:
        sections.append(f"<h2>{html.escape(path.stem.replace('_', ' '))}</h2>{image(path, path.stem)}")
    return sections


def study_sections(study: Study, out: Path) -> list[str]:
    """The rank table, the tests, the CD diagram, the chosen configurations, win/tie/loss and the profiles."""
    from regbench.reporting.study import summary_lines, wtl_table

    cell = study.cells.set_index(["dataset", "reg"])
    order = sorted(range(len(study.regs)), key=lambda j: (study.mean_rank[j], j))
    ranks = [[study.regs[j], f"{study.mean_rank[j]:.2f}",
              *(f"{cell.loc[(d, study.regs[j]), 'score']:.4f} ({cell.loc[(d, study.regs[j]), 'rank']:g})"
                for d in study.datasets)] for j in order]
    chosen = [[d, *(cell.loc[(d, r), "chosen"] for r in study.regs)] for d in study.datasets]
    wtl = wtl_table(study)
    sections = [
        "<h2>Ranks</h2><p>Per dataset, each regularizer at its best configuration on validation, scored by its mean "
        "test metric over seeds (rank in brackets, 1 the best, ties averaged).</p>",
        table(["reg", "avg rank", *(f"{d} ({study.metrics[d].name})" for d in study.datasets)], ranks),
        "<h2>Tests</h2>", lines(summary_lines(study, bayes=False)),
        "<h2>Critical-difference diagram</h2>", image(out / "cd.svg", "critical-difference diagram"),
        "<h2>Configuration chosen on validation</h2>", table(["dataset", *study.regs], chosen, len(study.regs) + 1),
        "<h2>Win/tie/loss</h2><p>Row against column: datasets won/tied/lost.</p>",
        table(["reg", *wtl.columns], [[r, *wtl.loc[r]] for r in wtl.index]),
        "<h2>Performance profiles</h2>", image(out / "profiles.png", "performance profiles"),
    ]
    if study.bayes:
        sections += [f"<h2>Bayesian signed-rank test (rope {study.rope:g})</h2>",
                     table(["left", "right", "P(left better)", "P(equivalent)", "P(right better)"],
                           [[b["left"], b["right"], f"{b['p_left_better']:.3f}", f"{b['p_equivalent']:.3f}",
                             f"{b['p_right_better']:.3f}"] for b in study.bayes], 2)]
    return sections
