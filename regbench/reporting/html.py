"""report.html: one self-contained page per report or study — its tables, its plots (PNG as
base64 data URIs, SVG inline), the study's statistics and the command that produced it. No
script, no network: it opens from a file, on a phone (a viewport and a fluid layout) or on paper
(print CSS).

The page renders the sections it is given, as data (`Heading`, `Table`, `Lines`, `Figure`):
the report (regbench.reporting.report_format) and the study (regbench.reporting.study_format)
build theirs; this module knows neither."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence, Union

from regbench import __version__

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


def table(header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
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


@dataclass(frozen=True)
class Heading:
    """A section's title, and a paragraph under it when `note` is given."""

    text: str
    note: str = ""

    def render(self) -> str:
        return f"<h2>{html.escape(self.text)}</h2>" + (f"<p>{html.escape(self.note)}</p>" if self.note else "")


@dataclass(frozen=True)
class Table:
    """A table of text cells, its first `text_columns` columns left-aligned."""

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    text_columns: int = 1

    def render(self) -> str:
        return table(self.header, self.rows, self.text_columns)


@dataclass(frozen=True)
class Lines:
    """Notes, one item each (nothing when there are none)."""

    items: Sequence[str]

    def render(self) -> str:
        return lines(self.items)


@dataclass(frozen=True)
class Figure:
    """A plot written to `path` (PNG or SVG), read when the page is rendered."""

    path: Path
    alt: str

    def render(self) -> str:
        return image(self.path, self.alt)


Block = Union[Heading, Table, Lines, Figure]


def page(title: str, sections: Sequence[Block], command: str = "") -> str:
    """The whole document: the sections in their order, then the command."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    made = (f"<h2>Command</h2><pre>{html.escape(command)}</pre>" if command else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">regbench {__version__}, written {when}</p>"
        + "".join(section.render() for section in sections) + made + "</body></html>\n"
    )


def write_page(path: Path, title: str, sections: Sequence[Block], command: str = "") -> Path:
    path.write_text(page(title, sections, command), encoding="utf-8")
    return path
