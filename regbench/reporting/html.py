"""report.html: one self-contained page per results folder that keeps every section the commands
have written there — the study (`regbench study`), the comparison table, the pivot and the plots
(`regbench report`, or a sweep's end) — each replaced only by the command that wrote it. Plots
are embedded (PNG as base64 data URIs, SVG inline), so the page has no script and fetches
nothing: it opens from a file, on a phone (a viewport and a fluid layout) or on paper (print CSS).

How the sections survive each other: every section is a `Part` (a key, its blocks, the command
that wrote it and when, and the files it shows), written into the page between two comment
markers. A command re-reads the page already in the folder, replaces the parts it owns, keeps
the others while the files they show are still there, and writes the page again: parts in a
fixed order (`ORDER`), a table of contents at the top. A part whose files are gone (a plot the
user deleted) is left out, and the page says so.

The blocks are data (`Heading`, `Table`, `GroupedTable`, `Lines`, `Figure`): the report
(regbench.reporting.report_format) and the study (regbench.reporting.study_format) build theirs;
this module knows neither."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence, Union

from regbench import __version__

BODY_TEXT_PX = 15  # regbench.reporting.figures.BODY_TEXT_PX says the same: figures are sized against it

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1360px; padding: 0 12px 40px; color: #1a1a1a; background: #fff; }
p, ul, pre, nav { max-width: 62rem; }
h1 { font-size: 1.45em; margin: 0.8em 0 0.3em; } h2 { font-size: 1.25em; margin: 1.6em 0 0.2em; }
h3 { font-size: 1.05em; margin: 1.1em 0 0.35em; }
section { border-top: 2px solid #ddd; margin-top: 1.2em; }
nav ul { margin: 0.2em 0; padding-left: 1.3em; } nav li { margin: 0.1em 0; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.4em 0; }
th, td { border: 1px solid #ccc; padding: 3px 5px; text-align: right; }
td { white-space: nowrap; } th { background: #f2f2f2; vertical-align: bottom; min-width: 2.5em; }
td.text, th.text { text-align: left; }
tr.group th { background: #e6ecf3; text-align: left; font-weight: 600; vertical-align: middle; }
.pm { color: #666; font-size: 0.9em; } td.ci { white-space: normal; }
.scroll { background: linear-gradient(to right, #fff 30%, #fff0) left / 32px 100% no-repeat local,
  linear-gradient(to left, #fff 30%, #fff0) right / 32px 100% no-repeat local,
  radial-gradient(farthest-side at 0 50%, #0003, #0000) left / 12px 100% no-repeat scroll,
  radial-gradient(farthest-side at 100% 50%, #0003, #0000) right / 12px 100% no-repeat scroll; }
img, svg { max-width: 100%; height: auto; display: block; margin: 0.5em 0; } figure { margin: 0; }
pre, code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.86em; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; word-break: break-all; }
code { white-space: pre-wrap; word-break: break-word; }
ul.notes li { margin: 0.15em 0; } .meta { color: #555; font-size: 0.85em; margin: 0.2em 0 0.6em; }
@media (max-width: 600px) { body { font-size: 14px; padding: 0 8px 24px; } th, td { padding: 2px 4px; } }
@media print { body { max-width: none; padding: 0; font-size: 10pt; } .scroll { overflow: visible; }
  table, img, svg, figure { page-break-inside: avoid; break-inside: avoid; } pre { white-space: pre-wrap; }
  h2, h3 { page-break-after: avoid; break-after: avoid; } nav { display: none; } }
"""

_MEAN_CI = re.compile(r"^(\S+) ± (\S+)$")
_KEY = re.compile(r"^[a-z_]\w*(\.\w+)+$")


def _cell(tag: str, value: object, text: bool, ci: bool = False) -> str:
    """One cell, escaped. With `ci`, a `mean ± CI` cell has its CI half in a lighter, smaller
    type, and may break before it: a table too wide for the window puts the CI halves under
    their means before it needs to scroll."""
    shown = str(value) if tag == "td" else str(value).replace("t-test", "t\u2011test")  # no break at its hyphen
    split = _MEAN_CI.match(shown) if tag == "td" and ci else None
    cls = ' class="text"' if text else ' class="ci"' if split else ""
    inner = (f'{html.escape(split[1])} <span class="pm">±\u00a0{html.escape(split[2])}</span>' if split
             else html.escape(shown))
    if tag == "th" and _KEY.match(shown):  # a config key may break after its dots: reg.<wbr>label_smoothing
        inner = inner.replace(".", ".<wbr>")
    return f"<{tag}{cls}>{inner}</{tag}>"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
    """An HTML table (escaped), its first `text_columns` columns left-aligned, in a scroller."""
    head = "".join(_cell("th", h, i < text_columns) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(_cell("td", v, i < text_columns) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def image(path: Path, alt: str) -> str:
    """A PNG as a data URI, or an SVG inline (its XML prolog dropped), each at the CSS width
    at which its smallest text is at least the body text (svg_width, figures.display_width; max-width 100%)."""
    if path.suffix == ".svg":
        text = path.read_text()
        svg = text[text.index("<svg"):]
        width = svg_width(svg)
        if width:
            svg = svg.replace("<svg", f'<svg style="width: {width:.0f}px"', 1)
        return f'<figure role="img" aria-label="{html.escape(alt)}">{svg}</figure>'
    from regbench.reporting import figures  # matplotlib: only a page with a PNG on it pays the import

    data = path.read_bytes()
    w, h, _, _ = figures.png_info(path)
    shown = figures.display_width(path)
    return (f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(alt)}" '
            f'width="{w}" height="{h}" style="width: {shown:.0f}px">')


_SVG_LENGTH = re.compile(r'\bwidth="([\d.]+)(pt|px)?"')
_SVG_GLYPHS = re.compile(r"scale\(([\d.]+) -\1\)")
_SVG_FONT = re.compile(r"font(?:-size)?\s*[:=]\s*\"?(?:[a-z-]+\s+)*([\d.]+)(?:px)?", re.IGNORECASE)


def svg_width(svg: str) -> float | None:
    """The CSS width (pixels) to show an SVG at: its physical width (pt as 4/3 px), enlarged so
    that its smallest text (in its own units, matplotlib's points) is at least the body text;
    None where the root element gives no width."""
    root = svg[: svg.index(">") + 1]
    found = _SVG_LENGTH.search(root)
    if not found:
        return None
    width = float(found[1]) * (4 / 3 if found[2] != "px" else 1)
    units = float(found[1])  # the viewBox matplotlib writes spans the width in the same units
    body = svg[len(root):]
    fonts = [float(f) for f in _SVG_FONT.findall(body)]  # text kept as text (svg.fonttype none)
    fonts += [100 * float(s) for s in _SVG_GLYPHS.findall(body)]  # text drawn as glyphs: 100 units a point
    fonts = [f for f in fonts if f > 0]
    if fonts:
        text_px = min(fonts) * width / units
        width *= max(1.0, BODY_TEXT_PX / text_px)
    return width


def lines(items: Sequence[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


@dataclass(frozen=True)
class Heading:
    """A sub-heading of a part, and a paragraph under it when `note` is given."""

    text: str
    note: str = ""

    def render(self, anchor: str = "") -> str:
        ident = f' id="{anchor}"' if anchor else ""
        return (f"<h3{ident}>{html.escape(self.text)}</h3>"
                + (f"<p>{html.escape(self.note)}</p>" if self.note else ""))


@dataclass(frozen=True)
class Table:
    """A table of text cells, its first `text_columns` columns left-aligned."""

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    text_columns: int = 1

    def render(self) -> str:
        return table(self.header, self.rows, self.text_columns)


@dataclass(frozen=True)
class GroupedTable:
    """A table whose rows come in groups, each under a heading row naming what its rows share
    (`groups`: (that text, its rows); an empty text: no heading row). Its `mean ± CI` cells
    may break before the CI (see _cell)."""

    header: Sequence[str]
    groups: Sequence[tuple[str, Sequence[Sequence[object]]]]
    text_columns: int = 1

    def render(self) -> str:
        head = "".join(_cell("th", h, i < self.text_columns) for i, h in enumerate(self.header))
        bodies = []
        for caption, rows in self.groups:
            top = (f'<tr class="group"><th scope="rowgroup" colspan="{len(self.header)}">'
                   f"{html.escape(caption)}</th></tr>" if caption else "")
            bodies.append("<tbody>" + top + "".join(
                "<tr>" + "".join(_cell("td", v, i < self.text_columns, ci=True) for i, v in enumerate(row)) + "</tr>"
                for row in rows) + "</tbody>")
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead>{"".join(bodies)}</table></div>'


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


Block = Union[Heading, Table, GroupedTable, Lines, Figure]

ORDER = ("study", "table", "pivot", "plot")
"""The parts in the order the page shows them; a key is one of these, or `plot:<file name>`."""


@dataclass(frozen=True)
class Part:
    """One command's section of the page.

    Args:
        key: which section (see ORDER): "study", "table", "pivot" or "plot:<file name>".
        title: its heading (and its line in the table of contents).
        blocks: what it shows.
        command: the command line that wrote it (and writes it again).
        files: the files in the page's folder it shows or stands for: a part kept from an
            earlier command is left out once one of them is gone.
        when: when it was written (default: now, UTC).
    """

    key: str
    title: str
    blocks: Sequence[Block]
    command: str
    files: Sequence[str] = ()
    when: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    def render(self) -> str:
        """The part's HTML between its markers: what `parts` reads back."""
        base = _anchor(self.key)
        meta = html.escape(json.dumps({"key": self.key, "title": self.title, "command": self.command,
                                       "when": self.when, "files": list(self.files)}), quote=True)
        used: set[str] = set()
        body = []
        for block in self.blocks:
            if isinstance(block, Heading):
                anchor = f"{base}-{_anchor(block.text)}"
                while anchor in used:
                    anchor += "-"
                used.add(anchor)
                body.append(block.render(anchor))
            else:
                body.append(block.render())
        return (f"<!-- regbench:part {self.key} -->\n"
                f'<section id="{base}" data-part="{meta}"><h2>{html.escape(self.title)}</h2>'
                f'<p class="meta">written by <code>{html.escape(self.command)}</code> · {html.escape(self.when)}</p>'
                + "".join(body) + f"</section>\n<!-- /regbench:part {self.key} -->\n")


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "part"


@dataclass(frozen=True)
class Written:
    """A part as read back from a page: its metadata and its HTML, markers included."""

    key: str
    title: str
    command: str
    when: str
    files: Sequence[str]
    text: str


_PART = re.compile(r"<!-- regbench:part (\S+) -->\n?(.*?)<!-- /regbench:part \1 -->\n?", re.DOTALL)


def parts(page_text: str) -> list[Written]:
    """The parts of a page this module wrote, in their order; none from any other page (an
    older regbench's report.html has no markers: the next command replaces it whole)."""
    out = []
    for found in _PART.finditer(page_text):
        meta = re.search(r'data-part="([^"]*)"', found[2])
        try:
            m = json.loads(html.unescape(meta[1])) if meta else None
        except ValueError:
            m = None
        if m is None or m.get("key") != found[1]:
            continue
        out.append(Written(found[1], str(m.get("title", found[1])), str(m.get("command", "")), str(m.get("when", "")),
                           [str(f) for f in m.get("files", [])], found[0]))
    return out


def _rank(key: str) -> int:
    kind = key.split(":")[0]
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


def assemble(folder: Path, old: Sequence[Written], new: Sequence[Part], replaces: Sequence[str],
             keep_existing: Sequence[str] = ()) -> str:
    """The page: the `new` parts, and the `old` ones that (1) no new part and none of the kinds
    in `replaces` ("plot" replaces every "plot:…" part) takes the place of, and (2) still find
    their files in `folder`; a new part whose key is in `keep_existing` is only added where the
    page keeps none of that key."""
    forced = [p for p in new if p.key not in keep_existing]
    taken = {p.key for p in forced}
    kept, gone = [], []
    for w in old:
        if w.key in taken or w.key in replaces or w.key.split(":")[0] in replaces:
            continue
        missing = [f for f in w.files if not (folder / f).exists()]
        (gone if missing else kept).append((w, missing))
    have = {w.key for w, _ in kept}
    new = [p for p in new if p.key not in have]
    rendered = [(p.key, p.title, p.render()) for p in new] + [(w.key, w.title, w.text) for w, _ in kept]
    rendered.sort(key=lambda r: _rank(r[0]))  # stable: plots keep the order they were made in
    notes = [f"not shown: “{w.title}”, written by {w.command.splitlines()[0]} ({w.when}): "
             f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} no longer in this folder "
             "(the command writes it again)" for w, missing in gone if w.key not in {p.key for p in new}]
    return _page(folder, rendered, notes)


def _toc(rendered: Sequence[tuple[str, str, str]]) -> str:
    items = []
    for key, title, text in rendered:
        subs = re.findall(r'<h3 id="([^"]+)">(.*?)</h3>', text)
        inner = "<ul>" + "".join(f'<li><a href="#{a}">{t}</a></li>' for a, t in subs) + "</ul>" if len(subs) > 1 else ""
        items.append(f'<li><a href="#{_anchor(key)}">{html.escape(title)}</a>{inner}</li>')
    return f'<nav aria-label="contents"><ul>{"".join(items)}</ul></nav>' if items else ""


def _page(folder: Path, rendered: Sequence[tuple[str, str, str]], notes: Sequence[str]) -> str:
    name = folder.resolve().name or str(folder)
    title = f"regbench results: {name}"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">regbench {__version__}, page assembled {when}; "
        "each section is written again by the command it names, the others are kept</p>"
        + _toc(rendered) + lines(notes) + "\n" + "".join(text for _, _, text in rendered) + "</body></html>\n"
    )


def write_parts(path: Path, new: Sequence[Part], replaces: Sequence[str] = (),
                keep_existing: Sequence[str] = ()) -> Path:
    """Writes the page at `path` with the `new` parts and the parts of the page already there
    that they do not replace (see assemble); returns `path`."""
    try:
        old = parts(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):  # no page yet, or not one to keep parts of
        old = []
    replace_text(path, assemble(path.parent, old, new, replaces, keep_existing))
    return path


def replace_text(path: Path, text: str) -> None:
    """Writes `path` whole or not at all: into a temporary file beside it, then renamed over it,
    so that a reader, or another process writing the same report (shards of one sweep ending
    together), never sees half a file. Its mode follows the file it replaces."""
    import errno
    import os
    import tempfile

    if path.exists() and not os.access(path, os.W_OK):  # made read-only on purpose: as open() would, refuse
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)
        except FileNotFoundError:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
