"""The study's figures, drawn headless with matplotlib under the figure contract of
regbench.reporting.figures (physical size, smallest text, PNG + SVG + PDF, grayscale-safe):

- the critical-difference diagram (Demšar 2006, fig. 1), drawn for one column of a two-column
  paper: `CD_WIDTH_IN` wide with text of `CD_FONT_PT`;
- the performance profiles (Dolan & Moré 2002), a page figure.

`cd_figure` and `profiles_figure` return the matplotlib Figure (the tests inspect its artists);
`cd_diagram` and `profiles` draw and save it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from regbench.reporting import figures  # noqa: E402
from regbench.reporting.ranking import cliques, profile  # noqa: E402

if TYPE_CHECKING:
    from regbench.reporting.study import Study

CD_WIDTH_IN = 3.5
"""The CD diagram's width: one column of a two-column paper (IEEE 3.5 in, ACM 3.33 in)."""
CD_FONT_PT = 8.0
"""The CD diagram's text, in points at `CD_WIDTH_IN`: the size of figure text in a two-column paper.
(The page enlarges the PNG until this reaches its body text: figures.display_width.)"""
CD_MIN_AXIS_IN = 1.3
"""The narrowest rank axis; names too long to leave it at `CD_WIDTH_IN` widen the figure instead."""
CLIQUE_LINEWIDTH_PT = 3.0
"""A clique's bar: thick (the elbows are 0.7 pt), black, so it survives grayscale printing."""
CLIQUE_OVERHANG_IN = 0.04
"""How far a clique's bar reaches past its outermost members' ranks, so a clique of methods
with equal average ranks still shows as a bar."""
PROFILES_SIZE_IN = (6.5, 3.6)
"""The profiles' size with a legend of one row (up to 4 regularizers), without the note a best
cost of 0 adds under them: a page figure."""
_RANK_MIN_IN = 0.17  # the axis's numbers (two digits at 8 pt) never touch
_ELBOW_IN = 0.1   # the horizontal part of an elbow beyond the axis's end
_GAP_IN = 0.04    # between an elbow's end and its name
_ROW_IN = 0.165   # between two names on one side
_LEVEL_IN = 0.075  # between two levels of clique bars


def cd_diagram(study: Study, stem: Path) -> list[Path]:
    """Draws `cd_figure` and writes it as `stem`.png, `stem`.svg and `stem`.pdf; returns their paths."""
    with figures.style():
        return figures.save(cd_figure(study), stem.with_suffix(".png"))


def cd_caption(study: Study) -> str:
    """What the bars of the CD diagram mean for this study (the test, its outcome, alpha)."""
    f = study.friedman
    # no-break spaces: a line never ends inside "p < 0.001" or "α = 0.05"
    p = "p\u00a0<\u00a00.001" if f.p < 0.001 else f"p\u00a0=\u00a0{f.p:.3f}"
    head = f"Average rank over {len(study.datasets)} datasets (1 = best)."
    if not f.conclusive:
        return f"{head} {f.n_datasets} datasets: no test; the ranks are descriptive only (one bar joins all)."
    if not f.p < study.alpha:
        return f"{head} Friedman {p} ≥ α\u00a0=\u00a0{study.alpha:g}: no difference shown (one bar joins all)."
    if study.posthoc == "nemenyi":
        return (f"{head} Friedman {p}. Bars join methods Nemenyi's test cannot tell apart "
                f"(α\u00a0=\u00a0{study.alpha:g}).")
    return (f"{head} Friedman {p}. Bars join methods the Wilcoxon signed-rank tests, Holm-adjusted, cannot "
            f"tell apart (α\u00a0=\u00a0{study.alpha:g}); no CD bar: the CD is Nemenyi's.")


def cd_figure(study: Study) -> plt.Figure:
    """The critical-difference diagram in Demšar's form (2006, fig. 1; as autorank's plot_stats
    and scikit-posthocs' critical_difference_diagram draw it).

    The rank axis is on top, integer ticks, 1 (the best) on the left, as Demšar and
    scikit-posthocs draw it (autorank puts the best on the right). Each method's average rank is
    joined by an elbow to its name: the better half on the left, "name (rank)", best on top; the
    other half on the right, "(rank) name", worst on top. Thick black bars under the axis join
    the cliques (regbench.reporting.ranking.cliques: the groups the post-hoc test cannot tell
    apart), stacked in as few levels as do not overlap. With Nemenyi's test, the critical
    difference is drawn to scale above the axis, from rank 1, with its value. A caption under
    it says the test and what the bars mean.

    The figure is `CD_WIDTH_IN` wide (wider only where the names leave the axis less than
    `CD_MIN_AXIS_IN`, or too little room per rank for its numbers), all its text `CD_FONT_PT`.
    In axis (data) coordinates x is the rank and y is in inches from the axis, up positive.
    Artists carry gids for the tests: "cd-bar", "clique-<n>", "elbow-<reg>", "name-<reg>".
    """
    k = len(study.regs)
    ranks = np.asarray(study.mean_rank, float)
    order = [int(j) for j in np.argsort(ranks, kind="stable")]
    half = (k + 1) // 2
    left, right = order[:half], order[half:]
    groups = cliques(ranks, study.different())
    draw_cd = study.posthoc == "nemenyi" and bool(np.isfinite(study.cd))
    lo, hi = 1.0, float(max(k, ranks.max(), 1 + study.cd if draw_cd else k))

    fig = plt.figure(figsize=(CD_WIDTH_IN, 2.0))

    def width_in(text: str) -> float:
        return _text_width(fig, text, CD_FONT_PT)

    names = {j: (f"{study.regs[j]} ({ranks[j]:.2f})" if j in left else f"({ranks[j]:.2f}) {study.regs[j]}")
             for j in order}
    margin_left = max(width_in(names[j]) for j in left) + _ELBOW_IN + _GAP_IN + 0.04
    margin_right = max((width_in(names[j]) for j in right), default=0.0) + _ELBOW_IN + _GAP_IN + 0.04
    # room for the axis's numbers too: at least _RANK_MIN_IN per unit of rank
    width = max(CD_WIDTH_IN, margin_left + margin_right + max(CD_MIN_AXIS_IN, _RANK_MIN_IN * (hi - lo)))
    axis_in = width - margin_left - margin_right
    per_rank = axis_in / (hi - lo)  # inches per unit of rank

    # Clique bars in levels: a bar goes on the first level where it overlaps no other.
    levels: list[list[tuple[float, float]]] = []
    placed = []
    for members in groups:
        a, b = float(ranks[members].min()), float(ranks[members].max())
        level = next((n for n, spans in enumerate(levels) if all(b < s or a > e for s, e in spans)), len(levels))
        if level == len(levels):
            levels.append([])
        levels[level].append((a, b))
        placed.append((members, a, b, level))

    line_in = CD_FONT_PT * 1.25 / 72  # one line of text
    top_in = (0.52 if draw_cd else 0.27)  # tick labels (and the CD bar with its value) above the axis
    first_row = -(0.12 + _LEVEL_IN * len(levels) + (0.06 if levels else 0.04))
    rows = max(len(left), len(right))
    last_row = first_row - _ROW_IN * (rows - 1)
    caption = _wrapped(fig, cd_caption(study), width - 0.1, CD_FONT_PT)
    caption_in = line_in * (caption.count("\n") + 1)
    bottom_in = -last_row + line_in / 2 + 0.1 + caption_in + 0.05
    height = top_in + bottom_in
    fig.set_size_inches(width, height)
    ax = fig.add_axes((margin_left / width, 0, axis_in / width, 1))
    ax.set_xlim(lo, hi)
    ax.set_ylim(-bottom_in, top_in)
    ax.patch.set_visible(False)
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.yaxis.set_visible(False)
    ax.spines["top"].set_position(("data", 0))
    ax.spines["top"].set_bounds(1, k)
    ax.spines["top"].set_linewidth(0.8)
    ax.xaxis.set_ticks_position("top")
    ax.set_xticks(range(1, k + 1), [str(t) for t in range(1, k + 1)])
    ax.set_xticks(np.arange(1.5, k, 1.0), minor=True)
    ax.tick_params(axis="x", which="major", length=4, width=0.8, pad=1.5, labelsize=CD_FONT_PT, direction="out")
    ax.tick_params(axis="x", which="minor", length=2, width=0.6, direction="out")

    elbow = dict(color="black", linewidth=0.7, linestyle="-", marker="", clip_on=False, solid_joinstyle="miter")
    for n, j in enumerate(left):
        y = first_row - _ROW_IN * n
        end = lo - _ELBOW_IN / per_rank
        ax.plot([ranks[j], ranks[j], end], [0, y, y], gid=f"elbow-{study.regs[j]}", **elbow)
        ax.text(end - _GAP_IN / per_rank, y, names[j], ha="right", va="center", fontsize=CD_FONT_PT, clip_on=False,
                gid=f"name-{study.regs[j]}")
    for n, j in enumerate(reversed(right)):  # the worst on top, so that no two elbows cross
        y = first_row - _ROW_IN * n
        end = hi + _ELBOW_IN / per_rank
        ax.plot([ranks[j], ranks[j], end], [0, y, y], gid=f"elbow-{study.regs[j]}", **elbow)
        ax.text(end + _GAP_IN / per_rank, y, names[j], ha="left", va="center", fontsize=CD_FONT_PT, clip_on=False,
                gid=f"name-{study.regs[j]}")
    over = CLIQUE_OVERHANG_IN / per_rank
    for n, (members, a, b, level) in enumerate(placed):
        y = -(0.12 + _LEVEL_IN * level)
        ax.plot([a - over, b + over], [y, y], color="black", linewidth=CLIQUE_LINEWIDTH_PT, linestyle="-", marker="",
                solid_capstyle="butt",
                clip_on=False, gid=f"clique-{n}", zorder=3)
    if draw_cd:
        y = 0.33
        ax.plot([lo, lo + study.cd], [y, y], color="black", linewidth=0.8, linestyle="-", marker="", clip_on=False,
                gid="cd-bar")
        ax.vlines([lo, lo + study.cd], y - 0.035, y + 0.035, color="black", linewidth=0.8, clip_on=False)
        ax.text(lo + study.cd / 2, y + 0.045, f"CD = {study.cd:.2f}", ha="center", va="bottom", fontsize=CD_FONT_PT,
                clip_on=False)
    fig.text(0.05 / width, (bottom_in - (-last_row + line_in / 2 + 0.1)) / height, caption, ha="left", va="top",
             fontsize=CD_FONT_PT, linespacing=1.25)
    return fig


def _text_width(fig: plt.Figure, text: str, fontsize: float) -> float:
    """The width, in inches, of `text` set in `fontsize` points in `fig`."""
    probe = fig.text(0, 0, text, fontsize=fontsize)
    extent = probe.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    probe.remove()
    return extent


def _wrapped(fig: plt.Figure, text: str, width: float, fontsize: float) -> str:
    """`text` in lines no wider than `width` inches (as `fig` sets them in `fontsize` points)."""
    chars = max(20, int(width * 72 / (0.5 * fontsize)))
    while chars > 20:
        out = textwrap.fill(text, chars)
        if all(_text_width(fig, line, fontsize) <= width for line in out.splitlines()):
            return out
        chars -= 2
    return textwrap.fill(text, chars)


def profile_ticks(top: float) -> list[float]:
    """The tau ticks for an axis from 1 to `top` (log scale): 1 and numbers such as 1.01, 1.02,
    1.05, 1.1, 1.2, 1.5, 2, 3, 5, 10 (powers of 10 alone from `top` = 100 on), at least a tenth of
    the axis's (log) length apart."""
    if top >= 100:
        candidates = [10.0 ** e for e in range(1, 13)]
    else:
        candidates = sorted({1 + m * 10.0 ** e for e in range(-4, 0) for m in (1, 2, 5)}
                            | {m * 10.0 ** e for e in range(0, 3) for m in (1, 2, 3, 5)})
    span = np.log(max(top, 1 + 1e-6))
    ticks = [1.0]
    for c in candidates:
        if 1 < c <= top * (1 + 1e-9) and np.log(c) - np.log(ticks[-1]) >= span / 10:
            ticks.append(c)
    return ticks


def plain_number(x: float) -> str:
    """1, 1.05, 2, 1000000: a tick label without exponent or scientific notation."""
    return np.format_float_positional(float(np.round(x, 6)), precision=6, trim="-")


def _cost_name(study: Study) -> str:
    names = {"acc": "1 − acc", "r2": "1 − r2", "mse": "mse", "loss": "loss"}
    # any other metric (ece, brier, acc@gaussian_noise=0.5) by the same rule: Metric.cost
    used = list(dict.fromkeys(names.get(m.name, f"1 − {m.name}" if m.higher_better else m.name)
                              for m in study.metrics.values()))
    return ", ".join(used)


def profiles_figure(study: Study, taus: np.ndarray) -> plt.Figure:
    """For each regularizer, the fraction of datasets on which its cost (error rate, 1 - r2, or
    loss) is within a factor tau of the best regularizer's, against tau (a step plot, log tau
    axis with plain-number ticks). Each regularizer differs in colour, line style and marker
    (figures.series_styles; drawn best average rank first, each a little thinner than the one
    before, so that identical profiles still show one under the other; markers edged in black,
    so that light colours still show in grayscale). Where a best cost is 0
    the other regularizers' ratios on that dataset are infinite and their curves end below 1:
    a note under the plot says where and how far they reach (study.profile_note)."""
    from regbench.reporting.study import profile_note

    rho = profile(study.ratios, taus)
    order = [int(j) for j in np.argsort(study.mean_rank, kind="stable")]
    styles = figures.series_styles(len(order))
    width, height = PROFILES_SIZE_IN
    height += 0.22 * (-(-len(order) // 4) - 1)  # a line for each row of the legend past the first
    fig = plt.figure(figsize=(width, height), layout="constrained")
    note = profile_note(study, tau="τ")
    plot = fig
    if note:  # under everything, in a panel of its own that the layout leaves alone
        text = _wrapped(fig, "Note: " + note, width - 0.2, figures.MIN_FONT_PT)
        room = (text.count("\n") + 1) * figures.MIN_FONT_PT * 1.25 / 72 + 0.15
        fig.set_size_inches(width, height + room)
        plot, under = fig.subfigures(2, 1, height_ratios=[height, room])
        under.text(0.1 / width, 1 - 0.05 / room, text, ha="left", va="top", fontsize=figures.MIN_FONT_PT,
                   linespacing=1.25, gid="zero-cost-note")
    ax = plot.subplots()
    for n, j in enumerate(order):
        # markevery (start, step) in fractions of the axes' diagonal: staggered, so equal curves show every marker
        ax.step(taus, rho[:, j], where="post", label=study.regs[j], **styles[n],
                linewidth=max(2.6 - 0.3 * n, 1.0), markevery=(0.03 + 0.11 * n / max(len(order), 1), 0.11),
                markersize=5, markeredgecolor="black", markeredgewidth=0.5, zorder=3 + len(order) - n)
    ax.set_xscale("log")  # ratios are factors: a log scale, as Dolan & Moré draw them
    top = float(taus.max())
    ax.set_xlim(1, top)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(profile_ticks(top)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: plain_number(x)))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"τ: cost within this factor of the dataset's best (cost = {_cost_name(study)})")
    ax.set_ylabel("fraction of datasets")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, which="major", alpha=0.3)
    # under the axis label, in rows: the plot keeps the page's width, and long names fit
    plot.legend(loc="outside lower center", ncols=min(len(order), 4), frameon=False)
    ax.set_title(f"Performance profiles (Dolan & Moré 2002), {len(study.datasets)} datasets")
    return fig


def profiles(study: Study, taus: np.ndarray, path: Path) -> list[Path]:
    """Draws `profiles_figure` and writes it as `path` (PNG) and the SVG and PDF beside it; returns the three paths."""
    with figures.style():
        return figures.save(profiles_figure(study, taus), path)
