"""The study's figures as a reader sees them (regbench.reporting.studyplots): the
critical-difference diagram in Demšar's form at one column's width, checked artist by artist
and in its SVG against the cliques and the CD (and autorank's), and the performance profiles'
plain-number ticks and the note a best cost of 0 calls for; both written as PNG, SVG and PDF."""

from __future__ import annotations

import functools
import re
import warnings
import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from regbench.reporting import figures, ranking, studyplots
from regbench.reporting.study import METRICS, Study, build, profile_note, profile_taus
from regbench.reporting.study_command import main
from tests.test_study import random_scores, write_study

PLAIN = re.compile(r"^\d+(\.\d+)?$")


@functools.lru_cache(maxsize=None)
def nemenyi_cd(k: int, n: int, alpha: float) -> float:
    return ranking.nemenyi_cd(k, n, alpha)  # the studentized range's quantile takes a second: once per shape


def study_of(scores: np.ndarray, posthoc: str = "nemenyi", alpha: float = 0.05, regs: list[str] | None = None) -> Study:
    """A Study of `scores` (datasets × regularizers, accuracies) computed as build() computes it
    (but for the p-values no figure draws)."""
    n, k = scores.shape
    # the Wilcoxon tests take seconds: only where they choose the cliques
    raw, adjusted = ranking.wilcoxon_holm(scores) if posthoc == "wilcoxon" else (np.full((k, k), np.nan),) * 2
    return Study(cells=pd.DataFrame(), datasets=[f"d{i}" for i in range(n)], regs=regs or [f"c{j}" for j in range(k)],
                 metrics={f"d{i}": METRICS["acc"] for i in range(n)}, scores=scores,
                 mean_rank=ranking.ranks(scores).mean(axis=0), friedman=ranking.friedman(scores),
                 cd=nemenyi_cd(k, n, alpha), alpha=alpha, posthoc=posthoc, p_nemenyi=np.full((k, k), np.nan),
                 p_wilcoxon=raw, p_wilcoxon_holm=adjusted, wtl=ranking.win_tie_loss(scores),
                 ratios=ranking.performance_ratios(np.maximum(1 - scores, 0)))


# 12 datasets: l2 always first, none always last, l1 and dropout second and third in turn
# (tests/test_study.py::test_posthoc_groups_follow_the_nemenyi_cd_or_wilcoxon_holm has the answers).
REGS4 = ["dropout", "l1", "l2", "none"]
SCORES4 = np.array([[0.82 + 0.02 * (i % 2), 0.84 - 0.02 * (i % 2), 0.90, 0.80] for i in range(12)])


def drawn(fig: plt.Figure):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def by_gid(fig: plt.Figure, prefix: str) -> list:
    return [a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))]


def texts_inside(fig: plt.Figure) -> None:
    """Every text drawn lies inside the canvas: nothing is cut off at an edge. (A tick label
    outside its axis's view interval is made, not drawn.)"""
    renderer = drawn(fig)
    canvas = fig.bbox
    hidden = set()
    for ax in fig.axes:
        for axis, labels, at in ((ax.xaxis, ax.get_xticklabels(which="both"), 0),
                                 (ax.yaxis, ax.get_yticklabels(which="both"), 1)):
            low, high = sorted(axis.get_view_interval())
            hidden |= {id(t) for t in labels
                       if not axis.get_visible() or not low - 1e-9 <= t.get_position()[at] <= high + 1e-9}
    for t in fig.findobj(plt.Text):
        if t.get_visible() and t.get_text().strip() and id(t) not in hidden:
            box = t.get_window_extent(renderer)
            assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1 \
                and box.y1 <= canvas.y1 + 1, t.get_text()


def svg_texts(path) -> list[str]:
    """The text elements of an SVG matplotlib wrote with svg.fonttype none (figures.style)."""
    root = ET.parse(path).getroot()
    return ["".join(e.itertext()).strip() for e in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("alpha", [0.05, 0.001])  # 0.001: two cliques that overlap, on two levels
def test_cd_diagram_has_demsars_form(alpha):
    study = study_of(SCORES4, alpha=alpha, regs=REGS4)
    with figures.style():
        fig = studyplots.cd_figure(study)
    renderer = drawn(fig)
    ax = fig.axes[0]
    # one column of a two-column paper, its text 8 pt at that width
    assert tuple(fig.get_size_inches())[0] == pytest.approx(studyplots.CD_WIDTH_IN)
    assert figures.smallest_font(fig) == studyplots.CD_FONT_PT >= 8
    # the rank axis on top, integer ticks 1..k, 1 (the best) on the left
    assert ax.xaxis.get_ticks_position() == "top"
    ticks = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert [t.get_text() for t in ticks] == ["1", "2", "3", "4"]
    xs = [t.get_window_extent(renderer).x0 for t in ticks]
    assert xs == sorted(xs)
    tick_bottom = min(t.get_window_extent(renderer).y0 for t in ticks)
    # names on both sides with their average ranks, all below the tick labels
    names = {a.get_gid().removeprefix("name-"): a for a in by_gid(fig, "name-")}
    assert sorted(names) == sorted(REGS4)
    axis_left, axis_right = ax.transData.transform([(1, 0), (4, 0)])[:, 0]
    best_first = [REGS4[j] for j in np.argsort(study.mean_rank, kind="stable")]
    for n, reg in enumerate(best_first):
        text, rank = names[reg], study.mean_rank[REGS4.index(reg)]
        box = text.get_window_extent(renderer)
        assert box.y1 < tick_bottom, reg
        if n < 2:  # the better half on the left, "name (rank)"
            assert text.get_text() == f"{reg} ({rank:.2f})" and box.x1 < axis_left
        else:
            assert text.get_text() == f"({rank:.2f}) {reg}" and box.x0 > axis_right
        elbow = by_gid(fig, f"elbow-{reg}")[0]  # from the rank on the axis down, then aside to the name
        x, y = elbow.get_data()
        assert (x[0], x[1], y[0]) == (pytest.approx(rank), pytest.approx(rank), 0)
        assert y[1] == y[2] == pytest.approx(text.get_position()[1])
    # cliques: thick black bars, one per clique, reaching from its best to its worst member's rank
    groups = ranking.cliques(study.mean_rank, study.different())
    assert groups == ([[0, 1]] if alpha == 0.05 else [[2, 0, 1], [0, 1, 3]])
    bars = sorted(by_gid(fig, "clique-"), key=lambda b: b.get_gid())
    assert len(bars) == len(groups)
    elbow_width = by_gid(fig, "elbow-")[0].get_linewidth()
    per_rank = (axis_right - axis_left) / 3 / fig.dpi  # inches per unit of rank
    levels = set()
    for bar, members in zip(bars, groups):
        x, y = bar.get_data()
        ranks = study.mean_rank[members]
        overhang = studyplots.CLIQUE_OVERHANG_IN / per_rank
        assert min(x) == pytest.approx(ranks.min() - overhang) and max(x) == pytest.approx(ranks.max() + overhang)
        assert bar.get_linewidth() >= 3 * elbow_width and bar.get_color() == "black"
        assert y[0] < 0 and max(names[r].get_position()[1] for r in REGS4) < y[0]  # between the axis and the names
        levels.add(y[0])
    assert len(levels) == len(groups)  # these overlap: one level each
    # the CD drawn to scale above the axis, from rank 1, with its value
    cd = by_gid(fig, "cd-bar")[0]
    x, y = cd.get_data()
    assert (x[0], x[1] - x[0]) == (1, pytest.approx(study.cd))
    left, right = ax.transData.transform([(x[0], y[0]), (x[1], y[1])])
    one, two = ax.transData.transform([(1, 0), (2, 0)])
    assert (right[0] - left[0]) / (two[0] - one[0]) == pytest.approx(study.cd)  # on the axis's scale
    assert left[1] > max(t.get_window_extent(renderer).y1 for t in ticks)
    assert any(t.get_text() == f"CD = {study.cd:.2f}" for t in fig.findobj(plt.Text))
    texts_inside(fig)
    plt.close(fig)


def test_cd_diagram_files_are_png_svg_pdf_legible_at_one_column(tmp_path):
    study = study_of(SCORES4, regs=REGS4)
    paths = studyplots.cd_diagram(study, tmp_path / "cd")
    assert [p.name for p in paths] == ["cd.png", "cd.svg", "cd.pdf"]
    width, _, dpi, font = figures.png_info(paths[0])
    assert width / dpi == pytest.approx(studyplots.CD_WIDTH_IN, abs=0.01) and font == studyplots.CD_FONT_PT
    # on the page: enlarged until 8 pt reaches the body text
    assert figures.display_width(paths[0]) == pytest.approx(3.5 * 96 * 15 / (8 * 96 / 72), rel=0.01)
    texts = svg_texts(paths[1])
    for text in ("1", "2", "3", "4", "l2 (1.00)", "dropout (2.50)", "(2.50) l1", "(4.00) none", "CD = 1.35"):
        assert text in texts, text
    assert paths[2].read_bytes().startswith(b"%PDF")
    # grayscale: every line and text is black (nothing told apart by colour alone)
    pixels = plt.imread(paths[0])[..., :3]
    assert np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).max() < 0.02


def test_cd_cliques_and_cd_match_autorank():
    autorank = pytest.importorskip("autorank")
    from autorank._util import get_sorted_rank_groups

    compared = 0
    for seed in range(8):
        scores = random_scores(seed, n=10, k=5)
        study = study_of(scores)
        frame = pd.DataFrame(scores, columns=study.regs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = autorank.autorank(frame, alpha=0.05, force_mode="nonparametric", verbose=False)
        gaps = np.abs(study.mean_rank[:, None] - study.mean_rank[None, :])
        if not study.friedman.p < 0.05 or np.any(np.abs(gaps - study.cd) < 1e-3):
            continue  # autorank draws its bars whatever Friedman says; a gap at the CD itself is a coin toss
        compared += 1
        result = result._replace(rankdf=result.rankdf.sort_values("meanrank"))
        _, names, pairs = get_sorted_rank_groups(result, False)
        theirs = sorted(sorted(names[i:j + 1]) for i, j in pairs)
        with figures.style():
            fig = studyplots.cd_figure(study)
        ours = []
        for bar in by_gid(fig, "clique-"):
            x, _ = bar.get_data()
            ours.append(sorted(r for r, rank in zip(study.regs, study.mean_rank) if min(x) < rank < max(x)))
        assert sorted(ours) == theirs, seed
        x, _ = by_gid(fig, "cd-bar")[0].get_data()
        assert x[1] - x[0] == pytest.approx(result.cd, rel=1e-4)
        plt.close(fig)
    assert compared >= 3


@pytest.mark.slow  # scipy's Wilcoxon tests with ties: seconds of CPU
def test_cd_diagram_with_wilcoxon_draws_no_cd_and_says_so():
    study = study_of(SCORES4, posthoc="wilcoxon", regs=REGS4)
    with figures.style():
        fig = studyplots.cd_figure(study)
    assert by_gid(fig, "cd-bar") == []
    assert len(by_gid(fig, "clique-")) == len(ranking.cliques(study.mean_rank, study.different())) == 1
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "Wilcoxon signed-rank" in caption and "no CD bar" in caption
    plt.close(fig)


def test_long_names_widen_the_cd_diagram_and_stay_inside():
    regs = ["label_smoothing_strong", "spectral_normalization", "c2", "c3", "elastic_net_regularizer"]
    study = study_of(random_scores(3, n=10, k=5), regs=regs)
    with figures.style():
        fig = studyplots.cd_figure(study)
    ax = fig.axes[0]
    axis_in = ax.get_position().width * fig.get_size_inches()[0]
    assert fig.get_size_inches()[0] > studyplots.CD_WIDTH_IN and axis_in == pytest.approx(studyplots.CD_MIN_AXIS_IN)
    texts_inside(fig)
    plt.close(fig)


def test_profile_ticks_are_plain_numbers():
    assert studyplots.profile_ticks(2.1) == pytest.approx([1, 1.1, 1.2, 1.5, 2])
    assert studyplots.profile_ticks(1.05) == pytest.approx([1, 1.005, 1.01, 1.02, 1.05])
    assert [studyplots.plain_number(t) for t in studyplots.profile_ticks(3e6)] == \
        ["1", "10", "100", "1000", "10000", "100000", "1000000"]
    assert studyplots.profile_ticks(1.0) == [1.0]  # every regularizer ties on every dataset


@pytest.mark.parametrize("spread", [0.05, 0.5])  # ratios up to about 1.1, and up to about 3
def test_profiles_tick_labels_are_plain_and_series_differ_in_grayscale(tmp_path, spread):
    scores = 1 - (0.1 + spread * 0.1 * np.random.default_rng(0).random((6, 4)))
    study = study_of(scores, regs=REGS4)
    taus = profile_taus(study)
    with figures.style():
        fig = studyplots.profiles_figure(study, taus)
    renderer = drawn(fig)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
              if t.get_visible() and t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert labels[0] == "1" and len(labels) >= 3 and all(PLAIN.match(t) for t in labels), labels
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # no two labels overlap
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len({(str(line.get_linestyle()), line.get_marker()) for line in lines}) == len(lines) == 4
    assert by_gid(fig, "zero-cost-note") == []
    texts_inside(fig)
    with figures.style():  # as studyplots.profiles saves it: SVG text stays text
        paths = figures.save(fig, tmp_path / "profiles.png")
    svg = svg_texts(paths[1])
    assert set(labels) <= set(svg) and not any("10^" in t or "×10" in t or "e+" in t for t in svg)
    assert figures.png_info(paths[0])[3] >= figures.MIN_FONT_PT


def test_a_best_cost_of_0_is_noted_where_and_only_where_it_happens(tmp_path, capsys):
    test = {f"d{i}": {"none": 0.80 + 0.01 * i, "l1": 0.84, "l2": 0.90, "dropout": 0.86} for i in range(6)}
    test["d0"]["l2"] = 1.0  # a perfect test accuracy: cost 0, every other ratio on d0 infinite
    root = write_study(tmp_path / "s", test, seeds=(0,))
    study = build([root])
    note = profile_note(study)
    assert note == ("a best cost of 0 (a perfect score) on 1 dataset, d0 (acc = 1: l2), makes the other regularizers' "
                    "ratios there infinite: never within any tau, their curves end below 1 (dropout at 5/6, l1 at "
                    "5/6, none at 5/6)")
    assert study.notes == [f"performance profiles: {note}"]
    rho = ranking.profile(study.ratios, profile_taus(study))
    assert rho[-1].tolist() == [5 / 6, 5 / 6, 1.0, 5 / 6]  # dropout, l1, l2, none: what the note says
    with figures.style():
        fig = studyplots.profiles_figure(study, profile_taus(study))
    shown = by_gid(fig, "zero-cost-note")
    assert len(shown) == 1 and "d0 (acc = 1: l2)" in shown[0].get_text() and "any τ" in shown[0].get_text()
    texts_inside(fig)
    plt.close(fig)
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out)]) == 0
    assert "note: performance profiles: a best cost of 0 (a perfect score) on 1 dataset" in capsys.readouterr().out
    for name in ("profiles.png", "profiles.svg", "profiles.pdf", "cd.png", "cd.svg", "cd.pdf"):
        assert (out / name).stat().st_size > 0, name
    assert any("Note: a best cost of 0" in t for t in svg_texts(out / "profiles.svg"))
    # and without a perfect score, no note anywhere
    test["d0"]["l2"] = 0.99
    again = build([write_study(tmp_path / "t", test, seeds=(0,))])
    assert profile_note(again) == "" and again.notes == []
    with figures.style():
        fig = studyplots.profiles_figure(again, profile_taus(again))
    assert by_gid(fig, "zero-cost-note") == []
    plt.close(fig)
