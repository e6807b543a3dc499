"""The figure contract (regbench.reporting.figures): what save() writes and records, what the
page reads back, and the grayscale-safe series styles."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from regbench.reporting import figures


def test_save_writes_png_svg_pdf_and_records_dpi_and_smallest_font(tmp_path):
    with figures.style():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1], label="a")
        ax.set_title("title")
        ax.text(0.5, 0.5, "small", fontsize=8.5)
        ax.legend()
        paths = figures.save(fig, tmp_path / "f.png")
    assert [p.name for p in paths] == ["f.png", "f.svg", "f.pdf"]
    assert paths[1].read_text().lstrip().startswith("<?xml") and "<svg" in paths[1].read_text()
    assert paths[2].read_bytes().startswith(b"%PDF")
    width, height, dpi, font = figures.png_info(paths[0])
    assert dpi == figures.DPI and font == 8.5
    assert width == pytest.approx(4 * figures.DPI, abs=2) and height == pytest.approx(3 * figures.DPI, abs=2)
    # Shown at 4 in = 384 CSS px, enlarged so that 8.5 pt (11.3 px) reaches the 15-px body text.
    assert figures.display_width(paths[0]) == pytest.approx(width / dpi * 96 * 15 / (8.5 * 96 / 72), rel=1e-3)


def test_vector_files_are_the_same_bytes_when_drawn_again(tmp_path):
    def draw(path):
        with figures.style():
            fig, ax = plt.subplots(figsize=(3, 2))
            ax.plot([0, 1, 2], [1, 0, 2])
            return figures.save(fig, path)

    a, b = draw(tmp_path / "a.png"), draw(tmp_path / "b.png")
    assert a[1].read_bytes() == b[1].read_bytes() and a[2].read_bytes() == b[2].read_bytes()


def test_series_styles_differ_in_colour_line_style_and_marker():
    styles = figures.series_styles(8)
    for key in ("color", "linestyle", "marker"):
        assert len({str(s[key]) for s in styles}) == 8, key
    assert len({(s["color"], str(s["linestyle"]), s["marker"]) for s in figures.series_styles(24)}) == 24


def test_a_png_from_elsewhere_falls_back_to_css_pixels(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    fig.savefig(tmp_path / "plain.png", dpi=50)  # no font record; pHYs says 50 dpi
    plt.close(fig)
    width, _, dpi, font = figures.png_info(tmp_path / "plain.png")
    assert (width, dpi, font) == (100, 50, figures.MIN_FONT_PT)
