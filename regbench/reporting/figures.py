"""How every figure regbench draws is sized, styled and saved: one contract shared by the
report's plots (regbench.reporting.plots), the study's (regbench.reporting.studyplots) and the
page that shows them (regbench.reporting.html).

- **Size.** A figure is drawn at its physical size in inches, at most `MAX_WIDTH_IN` wide, and
  its smallest text is at least `MIN_FONT_PT`. The page shows a PNG at that physical size (96
  CSS pixels per inch, the CSS definition), enlarged where its smallest text would otherwise be
  smaller than the page's body text; so text in a figure is never smaller than the text around
  it, and a figure never needs more than the page's column.
- **Files.** `save` writes the PNG (at `DPI`, twice CSS's 96 so it is sharp on high-density
  screens) and, beside it, the same figure as SVG and PDF (vector, for a paper), and records in
  the PNG the figure's dpi (pHYs) and its smallest font size (a text chunk, `MIN_FONT_KEY`),
  which the page reads back.
- **Style.** `style()` sets a property cycle in which every series differs in colour (Okabe &
  Ito's palette, safe for colour-blind readers), line style *and* marker, so that series stay
  apart when printed in grayscale."""

from __future__ import annotations

import contextlib
import struct
import zlib
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

DPI = 192
"""PNG pixels per inch: twice CSS's 96 pixels per inch."""
CSS_PX_PER_IN = 96
MIN_FONT_PT = 10.0
"""The smallest text a figure may carry, in points."""
BODY_TEXT_PX = 15.0
"""The page's body text, in CSS pixels (regbench.reporting.html's CSS says the same)."""
MAX_WIDTH_IN = 10.0
"""The widest figure: 960 CSS pixels, inside the page's column at a 1,000-pixel window."""
MIN_FONT_KEY = "regbench:min-font-pt"
VECTOR_FORMATS = ("svg", "pdf")

# Okabe & Ito (2008), "Color universal design": distinguishable with every common colour-vision
# deficiency. Yellow comes last: in grayscale it is nearly white, so it is used only from the
# eighth series on (and every series also differs in line style and marker).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_styles(n: int) -> list[dict]:
    """`n` styles (color, linestyle, marker), each pair of them apart in all three as long as
    n <= 8; beyond 8, colours repeat with other line styles and markers."""
    out = []
    for i in range(n):
        out.append({"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i + i // len(PALETTE)) % len(LINESTYLES)],
                    "marker": MARKERS[(i + 2 * (i // len(PALETTE))) % len(MARKERS)]})
    return out


@contextlib.contextmanager
def style() -> Iterator[None]:
    """matplotlib settings for a figure regbench saves: text at least `MIN_FONT_PT`, the
    grayscale-safe property cycle, vector output with real text (SVG text stays text; PDF
    embeds TrueType fonts)."""
    styles = series_styles(len(PALETTE))
    prop = cycler(color=[s["color"] for s in styles]) + cycler(linestyle=[s["linestyle"] for s in styles]) \
        + cycler(marker=[s["marker"] for s in styles])
    rc = {
        "font.size": MIN_FONT_PT + 1, "axes.titlesize": MIN_FONT_PT + 2, "axes.labelsize": MIN_FONT_PT + 1,
        "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
        "figure.titlesize": MIN_FONT_PT + 3, "axes.prop_cycle": prop, "lines.markersize": 5,
        "svg.fonttype": "none", "pdf.fonttype": 42, "savefig.dpi": DPI, "figure.dpi": DPI / 2,
        "svg.hashsalt": "regbench",  # the same figure gives the same SVG, byte for byte
    }
    with plt.rc_context(rc):
        yield


def smallest_font(fig: plt.Figure) -> float:
    """The smallest font size (points) of the visible, non-empty text in `fig`."""
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else MIN_FONT_PT


def save(fig: plt.Figure, png: Path, **savefig: object) -> list[Path]:
    """Writes `fig` to `png` (at `DPI`, with its smallest font size recorded) and to the SVG and
    PDF beside it; closes the figure. Returns the three paths, the PNG first.

    Args:
        fig: the figure.
        png: where the PNG goes; the vector files take its stem.
        **savefig: passed to every `Figure.savefig` (bbox_inches, bbox_extra_artists, ...).
    """
    png = Path(png)
    metadata = {MIN_FONT_KEY: f"{smallest_font(fig):g}"}
    fig.savefig(png, dpi=DPI, metadata=metadata, **savefig)
    paths = [png]
    for fmt in VECTOR_FORMATS:
        out = png.with_suffix("." + fmt)
        # Dates and tool versions out of the vector files, so a rerun on the same data gives the same bytes.
        meta = {"Date": None} if fmt == "svg" else {"CreationDate": None, "ModDate": None}
        fig.savefig(out, format=fmt, metadata=meta, **savefig)
        paths.append(out)
    plt.close(fig)
    return paths


def png_info(path: Path) -> tuple[int, int, float, float]:
    """(width px, height px, dpi, smallest font pt) read from a PNG `save` wrote; dpi falls back
    to 96 and the font size to `MIN_FONT_PT` where the file does not say (a PNG from elsewhere)."""
    data = Path(path).read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    dpi, font = float(CSS_PX_PER_IN), MIN_FONT_PT
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"pHYs" and length == 9 and body[8] == 1:  # unit: metre
            dpi = struct.unpack(">I", body[:4])[0] * 0.0254
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, _, rest = body.partition(b"\0")
            if key.decode("latin-1") == MIN_FONT_KEY:
                text = zlib.decompress(rest[1:]) if kind == b"zTXt" else rest.split(b"\0")[-1] if kind == b"iTXt" else rest
                font = float(text.decode("latin-1"))
        elif kind == b"IEND":
            break
        pos += 12 + length
    return width, height, round(dpi), font


def display_width(path: Path) -> float:
    """The CSS width (pixels) at which the page shows a PNG: its physical size, enlarged so that
    its smallest text is at least the body text."""
    width, _, dpi, font = png_info(path)
    physical = width / dpi * CSS_PX_PER_IN
    text_px = font * CSS_PX_PER_IN / 72
    return physical * max(1.0, BODY_TEXT_PX / text_px)


__all__ = ["DPI", "MIN_FONT_PT", "MAX_WIDTH_IN", "BODY_TEXT_PX", "series_styles", "style", "save", "png_info",
           "display_width", "smallest_font"]
