"""report.html, one page per results folder (issue 23, items 6 and 8): the parts `regbench
report` and `regbench study` write survive each other (in process, on fixture run folders), and,
after `report --plots`, `study`, `report` on a real sweep of tiny runs over three datasets, the
page in headless Chromium at 1,400 and 1,000 px: every section there, no horizontal page
scroll, Δ and p in view, and the text in every figure at least as large as the body text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from regbench.reporting import figures, html
from regbench.reporting.report_command import main as report_main
from regbench.reporting.study_command import main as study_main
from tests.helpers.cli import regbench
from tests.helpers.rundirs import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Chromium not installed (apt-get install chromium; .ci/run installs it)"
SHOTS = os.environ.get("REGBENCH_PAGE_SHOTS")  # a folder to keep the screenshots in, for a person to look at


def small_study(root: Path) -> Path:
    """Two regularizers (l2 at two strengths) on three datasets, three seeds each: a table with
    groups, a parameter that varies, a baseline, a study."""
    for d, base in (("wine", 0.7), ("digits", 0.9), ("breast_cancer", 0.8)):
        for seed in range(3):
            write_run(root / f"{d}-none-{seed}", reg="none", seed=seed, dataset=d, val=base + 0.01 * seed,
                      test=base + 0.01 * seed, extra={"dataset.name": d, "reg.l1_ratio": 0.5})
            for alpha in (1e-4, 1e-2):
                write_run(root / f"{d}-l2-{alpha}-{seed}", reg="l2", alpha=alpha, seed=seed, dataset=d,
                          val=base + 0.02 + 0.01 * seed, test=base + 0.015 + 0.01 * seed,
                          extra={"dataset.name": d, "reg.l1_ratio": 0.0})
    return root


def keys(page: Path) -> list[str]:
    return [w.key for w in html.parts(page.read_text())]


def test_report_and_study_keep_each_others_parts(tmp_path, capsys):
    root = small_study(tmp_path / "runs")
    page = root / "report.html"
    assert report_main([str(root), "--pivot", "reg.alpha"]) == 0
    assert keys(page) == ["table", "pivot"]
    assert study_main([str(root)]) == 0
    assert keys(page) == ["study", "table", "pivot"]  # the study first, the report's parts kept
    text = page.read_text()
    assert f"regbench report {root} --pivot reg.alpha" in text and f"regbench study {root}" in text
    written = {w.key: w for w in html.parts(text)}
    assert written["table"].command == f"regbench report {root} --pivot reg.alpha"  # not the study's table
    assert written["study"].files == ["study.csv", "cd.svg", "profiles.png"]
    assert report_main([str(root)]) == 0  # no --pivot: the table again, the pivot (pivot.csv still there) kept
    again = {w.key: w for w in html.parts(page.read_text())}
    assert list(again) == ["study", "table", "pivot"]
    assert again["table"].command == f"regbench report {root}" and again["pivot"].text == written["pivot"].text
    assert again["study"].text == written["study"].text  # byte for byte: the report never touches it
    text = page.read_text()
    assert text.count('<nav aria-label="contents">') == 1 and '<a href="#study">' in text
    assert '<a href="#pivot">' in text and '<a href="#table">' in text
    capsys.readouterr()


def test_a_part_whose_files_are_gone_is_left_out_and_said(tmp_path, capsys):
    root = small_study(tmp_path / "runs")
    assert report_main([str(root), "--pivot", "reg.alpha"]) == 0
    assert study_main([str(root)]) == 0
    (root / "pivot.csv").unlink()
    (root / "profiles.png").unlink()
    assert report_main([str(root)]) == 0
    text = (root / "report.html").read_text()
    assert keys(root / "report.html") == ["table"]
    assert "not shown: “Pivot: val_acc, mean ± std across seeds”, written by regbench report" in text
    assert "pivot.csv is no longer in this folder" in text and "profiles.png is no longer in this folder" in text
    assert study_main([str(root)]) == 0  # the command writes it again
    assert keys(root / "report.html") == ["study", "table"] and "no longer in this folder" not in \
        (root / "report.html").read_text()
    capsys.readouterr()


def test_study_into_another_folder_brings_the_table_and_leaves_the_runs_folder_alone(tmp_path, capsys):
    root = small_study(tmp_path / "runs")
    assert report_main([str(root)]) == 0
    before = (root / "report.html").read_bytes()
    out = tmp_path / "elsewhere"
    assert study_main([str(root), "--out", str(out)]) == 0
    assert (root / "report.html").read_bytes() == before
    written = {w.key: w for w in html.parts((out / "report.html").read_text())}
    assert list(written) == ["study", "table"]  # no table there yet: the study's, until a report writes one
    assert written["table"].command == written["study"].command == f"regbench study {root} --out {out}"
    assert report_main([str(root), "--out", str(out)]) == 0
    written = {w.key: w for w in html.parts((out / "report.html").read_text())}
    assert written["table"].command == f"regbench report {root} --out {out}" and list(written) == ["study", "table"]
    capsys.readouterr()


def test_a_study_brings_a_table_where_the_reports_table_lost_its_file(tmp_path, capsys):
    root = small_study(tmp_path / "runs")
    assert report_main([str(root)]) == 0
    (root / "report.csv").unlink()
    assert study_main([str(root)]) == 0
    written = {w.key: w for w in html.parts((root / "report.html").read_text())}
    assert list(written) == ["study", "table"] and written["table"].command == f"regbench study {root}"
    assert "no longer in this folder" not in (root / "report.html").read_text()  # replaced, not missing
    capsys.readouterr()


def test_an_older_page_without_parts_is_replaced_and_a_read_only_page_costs_only_the_page(tmp_path, capsys):
    root = small_study(tmp_path / "runs")
    (root / "report.html").write_text("<html><body><h2>Command</h2><pre>regbench report old</pre></body></html>")
    assert report_main([str(root)]) == 0
    assert keys(root / "report.html") == ["table"] and "regbench report old" not in (root / "report.html").read_text()
    (root / "report.html").write_bytes(b"\xff\xfe not text")  # not a page of ours: replaced, not a crash
    assert report_main([str(root)]) == 0 and keys(root / "report.html") == ["table"]
    capsys.readouterr()


def test_the_page_table_collapses_shared_parameters_and_leads_with_the_label_and_the_tests(tmp_path):
    from regbench.reporting.report import build
    from regbench.reporting.report_format import P_COLUMN, display_table, page_table

    report = build([small_study(tmp_path / "runs")])
    header, rows = display_table(report)
    assert header[:4] == ["dataset.name", "reg.alpha", "reg.l1_ratio", "reg"]  # the printed order
    grouped, line = page_table(report)
    assert grouped.header[:5] == ["reg", "reg.alpha", "Δval_acc vs none", "d_z", P_COLUMN]
    assert "dataset.name" not in grouped.header and "reg.l1_ratio" not in grouped.header
    assert [caption for caption, _ in grouped.groups] == [
        "dataset.name = breast_cancer", "dataset.name = digits", "dataset.name = wine"]  # the folders' order
    assert line == "Parameters each label fixes (not repeated in the rows): l2: reg.l1_ratio=0; none: reg.l1_ratio=0.5."
    # the same cells as the printed table, only moved: every row's values, in the groups' order
    moved = [row for _, rows_ in grouped.groups for row in rows_]
    for shown, printed in zip(moved, rows):
        collapsed = ("dataset.name", "reg.l1_ratio")
        assert sorted(shown) == sorted(c for i, c in enumerate(printed) if header[i] not in collapsed)
    assert [r[0] for r in moved] == [r[header.index("reg")] for r in rows]


def test_figures_are_sized_so_their_text_is_body_text(tmp_path):
    import matplotlib.pyplot as plt

    with figures.style():
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([0, 1], [0, 1], label="a")
        ax.legend()
        png, svg, _ = figures.save(fig, tmp_path / "f.png")
    tag = html.image(png, "f")
    width, _, dpi, font = figures.png_info(png)
    shown = float(re.search(r'style="width: ([\d.]+)px"', tag)[1])
    assert shown == pytest.approx(figures.display_width(png), abs=0.5)
    assert shown * font * dpi / 72 / width >= figures.BODY_TEXT_PX - 0.5  # its smallest text, in CSS px
    inline = html.image(svg, "f")
    shown_svg = float(re.search(r'<svg style="width: ([\d.]+)px"', inline)[1])
    view = float(re.search(r'viewBox="0 0 ([\d.]+)', inline)[1])
    assert shown_svg * font / view >= figures.BODY_TEXT_PX - 0.5
    assert html.svg_width('<svg width="72pt" height="10pt" viewBox="0 0 72 10"><g></g></svg>') == 96  # no text: as is
    assert html.BODY_TEXT_PX == figures.BODY_TEXT_PX and f"font: {html.BODY_TEXT_PX}px/" in html.CSS


# ---------------------------------------------------------------------------------- in headless Chromium

PROBE = """<script>addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width]; };
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    th: [...document.querySelectorAll('section#table thead th')].map(t => [t.textContent, ...box(t)]),
    images: [...document.images].map(i => [i.alt, ...box(i), i.naturalWidth]),
    svgs: [...document.querySelectorAll('figure svg')].map(s => [...box(s), s.viewBox.baseVal.width]),
    body: parseFloat(getComputedStyle(document.body).fontSize),
    column: document.body.clientWidth - parseFloat(getComputedStyle(document.body).paddingLeft)
      - parseFloat(getComputedStyle(document.body).paddingRight),
    width: document.documentElement.scrollWidth, inner: innerWidth});
  document.body.appendChild(p); });</script>"""


def chromium(page: Path, out: Path, width: int) -> tuple[dict, Path]:
    """What PROBE sees of `page` at a `width`-pixel window, and a screenshot of the whole page."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=10000"]
    probe = out / f"probe_{width}.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run([*flags, f"--window-size={width},900", "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120)
    seen = json.loads(dom.stdout.split('<pre id="probe">')[1].split("</pre>")[0].replace("&quot;", '"')
                      .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    height = int(min(16000, 900 + len(page.read_text()) // 60))  # the whole page in one picture
    shot = out / f"report_{width}.png"
    subprocess.run([*flags, f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    return seen, shot


def smallest_svg_font(svg: str) -> float:
    """The smallest text of a matplotlib SVG, in its own units (points): text kept as text, or
    glyphs drawn at scale(size/100)."""
    sizes = [float(s) for s in re.findall(r"font(?:-size)?:\s*(?:[a-z-]+\s+)*([\d.]+)px", svg)]
    sizes += [100 * float(s) for s in re.findall(r"scale\(([\d.]+) -\1\)", svg)]
    return min(sizes)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.slow  # a real sweep (about 20 s of CPU) and Chromium
def test_one_page_after_report_study_report_in_chromium_at_1400_and_1000_px(tmp_path):
    out = regbench("run", "-m", "hydra/launcher=stacked", "dataset=digits,wine,breast_cancer",
                   "reg=none,l2,dropout,label_smoothing", "seed=0,1", "trainer.max_epochs=4", "model.hidden_sizes=[16]",
                   "device=cpu", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for args in (("report", "sweep", "--plots", "--pivot", "reg.alpha"), ("study", "sweep"), ("report", "sweep")):
        done = regbench(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    page = tmp_path / "sweep" / "report.html"
    written = {w.key: w for w in html.parts(page.read_text())}
    assert list(written) == ["study", "table", "pivot", "plot:gap_vs_strength.png", "plot:curves.png",
                             "plot:reliability.png"]
    assert written["table"].command == "regbench report sweep"
    first = "regbench report sweep --plots --pivot reg.alpha"
    assert written["plot:gap_vs_strength.png"].command == written["plot:curves.png"].command == first
    assert written["plot:reliability.png"].command == first
    assert written["pivot"].command == first
    assert written["study"].command == "regbench study sweep"
    for fetch in ('src="http', 'href="http', "url(http", "@import", "<script", "<link"):
        assert fetch not in page.read_text(), fetch
    for width in (1400, 1000):
        seen, shot = chromium(page, tmp_path, width)
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(SHOTS) / shot.name)
        assert seen["sections"] == ["study", "table", "pivot", "plot-gap-vs-strength-png", "plot-curves-png",
                                    "plot-reliability-png"]
        assert seen["width"] <= seen["inner"], seen["width"]  # the page never scrolls sideways
        heads = {name: (left, right) for name, left, right, _ in seen["th"]}
        tests = [name for name in heads if name.startswith("Δ") or name.startswith("p Holm")]
        assert len(tests) == 2, list(heads)
        for name in tests:
            left, right = heads[name]
            assert 0 <= left and right <= seen["inner"], (width, name, left, right)  # in view, not behind a scrollbar
        body = seen["body"]
        pngs = {alt: (shown, natural) for alt, _, _, shown, natural in seen["images"]}
        assert set(pngs) == {"gap_vs_strength", "curves", "reliability", "performance profiles"}
        for alt, (shown, natural) in pngs.items():
            name = {"performance profiles": "profiles"}.get(alt, alt)
            _, _, dpi, font = figures.png_info(tmp_path / "sweep" / f"{name}.png")
            if figures.display_width(tmp_path / "sweep" / f"{name}.png") <= seen["column"]:
                assert shown * font * dpi / 72 / natural >= body - 0.5, (width, alt, shown, natural, dpi, font)
            else:  # a figure drawn wider than the window: the column's width, scaled down, never wider
                assert shown == pytest.approx(seen["column"], abs=1), (width, alt, shown)
        (left, right, shown, units), = seen["svgs"]
        font = smallest_svg_font((tmp_path / "sweep" / "cd.svg").read_text())
        assert shown * font / units >= body - 0.5, (width, shown, font, units)
        import matplotlib.image

        pixels = matplotlib.image.imread(shot)
        assert pixels.shape[1] == width and (pixels[..., :3] < 0.5).mean() > 0.005  # drawn, dark text on it
