"""The report's figures, drawn headless with matplotlib under the shared figure contract
(regbench.reporting.figures: physical size at most MAX_WIDTH_IN wide, text at least MIN_FONT_PT,
grayscale-safe series, PNG + SVG + PDF): the gap against each regularizer's strength knob (its
declaration, regbench.regularizers.contract), and the learning curves with their
early-stopping points.

What a reader could misread, and what each figure does about it:

- **Coinciding series.** Two series with the same x and equal y (`elasticnet` with
  `l1_ratio=0` is `l2`; the baseline beside a regularizer that does not act) would hide one
  under the other. They are found (`coinciding`), the one beneath is drawn wider, lighter and
  with larger hollow markers, and a note on the figure names them (`elasticnet = l2 at every
  alpha`); the notes also travel with the returned path (`Drawn.notes`) for the terminal.
- **Bands.** A mean ± 1 std band is clipped to its quantity's range (`value_range`): an
  accuracy's band never goes above 1.
- **Seeds that stop early.** The mean learning curve is drawn in pieces, each the mean over
  one set of seeds (those still training); where a seed stops, the piece ends, the next one
  (thinner, lighter) starts at the same epoch over the seeds left, and `n=3→2` says so, so the
  curve never jumps because a seed left the average.
- **Empty panels.** A panel without data is not drawn, and the grid has no leftover axes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from regbench.reporting import figures  # noqa: E402

PANEL_HEIGHT_IN = 3.4
WIDTH_IN = 8.5
"""A figure's width: under figures.MAX_WIDTH_IN, so that the page, which enlarges a figure until
its smallest text (figures.MIN_FONT_PT) is as large as the body text (figures.display_width:
x1.125), still shows it within its 960-pixel column."""
EQUAL_RTOL, EQUAL_ATOL = 1e-6, 1e-9
"""Two series are equal when every y agrees within this (numpy.isclose): bit-identical runs and
numbers equal to far more digits than a figure shows."""


class Drawn(type(Path())):  # type: ignore[misc]
    """The path of a saved PNG that also carries the figure's notes (`notes`: one line each, e.g.
    `elasticnet = l2 at every alpha`) and its vector copies (`vectors`: the SVG and PDF beside
    it). A Path in every other respect, so a caller that only wants the file is unchanged."""

    notes: tuple[str, ...] = ()
    vectors: tuple[Path, ...] = ()


def _drawn(paths: list[Path], notes: list[str]) -> Drawn:
    out = Drawn(paths[0])
    out.notes, out.vectors = tuple(notes), tuple(paths[1:])
    return out


def strength_columns(runs: pd.DataFrame) -> list[str]:
    """The runs.csv columns of the built-in regularizers' strength knobs (each regularizer declares
    its own: regbench.regularizers.contract's `strength`) that `runs` holds, in the order of the
    label's parts: `params.reg.alpha`, `params.reg.dropout`, ..."""
    from regbench.regularizers import strength_knobs

    return [c for c in (f"params.reg.{knob}" for _, knob in strength_knobs()) if c in runs]


def value_range(quantity: str) -> tuple[float, float]:
    """The values `quantity` (a runs.csv column or a metrics.csv one) can take, (-inf, inf) where
    nothing bounds it: an accuracy and sparsity lie in [0, 1], a gap in accuracy in [-1, 1], an R²
    is at most 1, a loss is at least 0."""
    name = quantity.removeprefix("gap.")
    gap = quantity.startswith("gap.")
    if name == "sparsity" or name.endswith("acc"):
        return (-1.0, 1.0) if gap else (0.0, 1.0)
    if name.endswith("r2") and not gap:
        return (-math.inf, 1.0)
    if name.endswith("loss") and not gap:
        return (0.0, math.inf)
    return (-math.inf, math.inf)


def _band(ax, x, mean, std, quantity: str, **kw) -> None:
    """mean ± std, clipped to the range of `quantity`."""
    lo, hi = value_range(quantity)
    mean, std = np.asarray(mean, float), np.nan_to_num(np.asarray(std, float))
    ax.fill_between(x, np.clip(mean - std, lo, hi), np.clip(mean + std, lo, hi), **kw)


class Series(NamedTuple):
    """One drawn series, as `coinciding` compares them: its name, x values and y values (one
    array per quantity drawn, e.g. validation and train)."""

    name: str
    x: tuple
    ys: tuple


def coinciding(series: list[Series]) -> list[list[str]]:
    """Groups (two or more names, in the given order) of series that lie exactly on each other:
    the same x values and every y equal within EQUAL_RTOL / EQUAL_ATOL (NaN equal to NaN)."""
    groups: list[list[Series]] = []
    for s in series:
        for g in groups:
            first = g[0]
            if first.x == s.x and len(first.ys) == len(s.ys) and all(
                    np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=EQUAL_RTOL, atol=EQUAL_ATOL, equal_nan=True)
                    for a, b in zip(first.ys, s.ys)):
                g.append(s)
                break
        else:
            groups.append([s])
    return [[s.name for s in g] for g in groups if len(g) > 1]


def _beneath(groups: list[list[str]]) -> dict[str, int]:
    """For each series drawn under another it equals, how many are drawn over it (the first of a
    group is lowest)."""
    return {name: len(g) - 1 - i for g in groups for i, name in enumerate(g[:-1])}


def _equal_text(group: list[str]) -> str:
    """`elasticnet = l2` for a group, in the order they are drawn (the lowest first)."""
    return " = ".join(group)


def _grid(n: int, ncols_max: int, width: float = WIDTH_IN):
    """A figure with `n` panels in rows of at most `ncols_max`, `width` inches wide; the unused
    cells of the last row removed. Returns the figure and its n axes, in reading order."""
    ncols = min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    width = width if ncols > 1 else min(width, 6.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, PANEL_HEIGHT_IN * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def _under_title(fig, suptitle) -> None:
    """Lowers the panels' top edge (after tight_layout) until the figure's title sits above every
    panel's title: tight_layout leaves them overlapping in a figure taller than about 10 in."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bottom = suptitle.get_window_extent(renderer).y0
    top = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes)
    gap = 0.25 * suptitle.get_window_extent(renderer).height
    if top > bottom - gap:
        fig.subplots_adjust(top=fig.subplotpars.top - (top - bottom + gap) / fig.bbox.height)


def _footer(fig, legend_handles: list, legend_names: list[str], notes: list[str], ncol: int) -> list:
    """The legend and the notes under the panels, in as many columns (at most `ncol`) as fit the
    figure's width; returns the artists, for bbox_extra_artists. Call after tight_layout."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    for cols in range(max(ncol, 1), 0, -1):
        legend = fig.legend(legend_handles, legend_names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=cols,
                            frameon=False)
        if cols == 1 or legend.get_window_extent(renderer).width <= width:
            break
        legend.remove()
    extra = [legend]
    if notes:
        box = legend.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        text = "Drawn over each other (equal values; the one beneath wider, with larger hollow markers):\n" + \
            "\n".join(notes)
        extra.append(fig.text(0.5, box.y0 - 0.01, text, ha="center", va="top", fontsize=figures.MIN_FONT_PT,
                              gid="coinciding"))
    return extra


def _apart(fig, gid_prefix: str) -> None:
    """Moves the annotations whose gid starts with `gid_prefix` up or down, in steps of their own
    height, until none overlaps another in the same axes (they name counts at nearby points, and
    several curves stop near the same epoch)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = sorted((t for t in ax.texts if (t.get_gid() or "").startswith(gid_prefix)), key=lambda t: t.xy[0])
        placed = []  # the early-stopping rings too: a count must not cover one
        for ring in (line for line in ax.get_lines() if (line.get_gid() or "").startswith("stop:")):
            x, y = ax.transData.transform((ring.get_xdata()[0], ring.get_ydata()[0]))
            r = ring.get_markersize() / 2 * fig.dpi / 72
            placed.append(Bbox.from_extents(x - r, y - r, x + r, y + r))
        for text in texts:
            dx, dy = text.xyann
            height = text.get_window_extent(renderer).height * 72 / fig.dpi
            for step in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
                text.xyann = (dx, dy + step * 1.1 * height)
                box = text.get_window_extent(renderer)
                if not any(box.overlaps(other) for other in placed):
                    break
            placed.append(text.get_window_extent(renderer))


def _on(frame: pd.DataFrame, column: str) -> pd.Series:
    """Where the strength in `column` is > 0 (a run of another tool, or a text, is not)."""
    return pd.to_numeric(frame[column], errors="coerce") > 0


def _number(value: object) -> str:
    """A strength as a legend names it (`0.001`, `1e-05`)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _panels(ok: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per dataset/model pair present."""
    return [(f"{d} / {m}", f) for (d, m), f in ok.groupby(["dataset", "model"], sort=True)]


def gap_vs_strength(runs: pd.DataFrame, path: Path, metric: str) -> Drawn | None:
    """For each regularizer label, gap.<metric> and val_<metric> against the strength knob of a
    regularizer (log axis), mean with a ±1 std band across seeds (clipped to the quantity's range,
    `value_range`): one row of two panels per dataset / model pair and strength knob that is > 0 in
    some ok run of that pair (`strength_columns`: reg.alpha for the elastic net, reg.dropout,
    reg.weight_decay...). In a knob's row, a label with no run where the knob is > 0 (the
    baseline, another regularizer) is a horizontal reference line; a label whose runs also vary
    another strength (elasticnet+dropout over both) gets one curve per value of the others, named
    by them, so that no point averages over a strength. A panel whose quantity no run has is left
    out. Series equal at every point are drawn apart and named in a note (the module's
    docstring). Writes the PNG, SVG and PDF (figures.save); returns the PNG's path with the
    notes (`Drawn`), or None when no strength knob is > 0 in any ok run."""
    ok = runs[runs["status"] == "ok"]
    axes_of = [c for c in strength_columns(ok) if _on(ok, c).any()]
    if not axes_of:
        return None
    quantities = [(f"gap.{metric}", f"gap.{metric} = train {metric} − val {metric}", "generalization gap"),
                  (f"val_{metric}", f"validation {metric}", f"validation {metric}")]
    panels = [(title, frame, x, q) for title, frame in _panels(ok) for x in axes_of if _on(frame, x).any()
              for q in quantities if q[0] in frame and pd.to_numeric(frame[q[0]], errors="coerce").notna().any()]
    if not panels:
        return None
    pairs = {title for title, *_ in panels}
    labels = sorted(ok["reg"].unique())
    styles = dict(zip(labels, figures.series_styles(len(labels))))
    notes: list[str] = []
    with figures.style():
        fig, axes = _grid(len(panels), 2)
        for ax, (title, frame, x, (q, ylabel, what)) in zip(axes, panels):
            knob = x.removeprefix("params.reg.")
            drawn = []  # (Series, label, its mean and std: a number each for a reference line, else a frame)
            for label in labels:
                part = frame[frame["reg"] == label]
                if part.empty or part[q].isna().all():
                    continue
                acting = part[_on(part, x)]
                if acting.empty:  # no strength axis: a reference line at its mean
                    mean, std = part[q].mean(), part[q].std()
                    drawn.append((Series(f"{label} ({knob}=0)", ("ref",), (np.array([mean]),)), label, mean, std))
                    continue
                others = [c for c in axes_of if c != x and acting[c].map(str).nunique() > 1]
                curves_of = acting.groupby(others, sort=True, dropna=False) if others else [((), acting)]
                for values, curve in curves_of:
                    values = values if isinstance(values, tuple) else (values,)
                    name = label if not others else label + " (" + ", ".join(
                        f"{c.removeprefix('params.reg.')}={_number(v)}" for c, v in zip(others, values)) + ")"
                    g = curve.groupby(x)[q].agg(["mean", "std"]).sort_index()
                    drawn.append((Series(name, tuple(g.index), (g["mean"].to_numpy(),)), label, g, None))
            groups = coinciding([d[0] for d in drawn])
            below = _beneath(groups)
            per_label: dict[str, int] = {}
            for series, label, data, std in drawn:
                style = dict(styles[label])
                base = style.pop("marker")
                j = per_label[label] = per_label.get(label, -1) + 1
                k = below.get(series.name, 0)
                width = 1.6 * (1 + 1.4 * k)
                if series.x == ("ref",):
                    ax.axhline(data, color=style["color"], linestyle=style["linestyle"], linewidth=width,
                               alpha=0.55 if k else 1.0, label=series.name, gid=f"ref:{series.name}")
                    if not math.isnan(std):
                        lo, hi = value_range(q)
                        ax.axhspan(max(data - std, lo), min(data + std, hi), color=style["color"], alpha=0.10)
                    continue
                g = data
                marker = figures.MARKERS[(figures.MARKERS.index(base) + j) % len(figures.MARKERS)]
                ax.plot(g.index, g["mean"], marker=marker, label=series.name, gid=f"mean:{series.name}",
                        linewidth=width, alpha=0.55 if k else 1.0, markersize=6 * (1 + 0.6 * k),
                        markerfacecolor="none" if k else style["color"], markeredgewidth=1.5 if k else 1.0,
                        zorder=2 + (len(drawn) - k) * 0.01, **style)
                _band(ax, g.index, g["mean"], g["std"], q, color=style["color"], alpha=0.15, linewidth=0)
            for group in groups:
                refs = all(n.endswith(f"({knob}=0)") for n in group)
                where = f" ({q})" if len([p for p in panels if p[0] == title and p[2] == x]) > 1 else ""
                note = (f"{title}: " if len(pairs) > 1 else "") + _equal_text(group) + \
                    ("" if refs else f" at every {knob}") + where
                notes.append(note)
            ax.set_xscale("log")
            _strength_ticks(ax, frame.loc[_on(frame, x), x])
            ax.set_xlabel(f"strength reg.{knob} (log scale)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {what}" if len(pairs) > 1 else what)
            ax.grid(True, which="both", alpha=0.3)
        notes = _merge_quantities(notes, [q[0] for q in quantities])
        handles, names = _unique_legend(axes)
        suptitle = fig.suptitle("Mean ± 1 std across seeds" + ("" if len(pairs) > 1 else f" ({next(iter(pairs))})"))
        fig.tight_layout()
        _under_title(fig, suptitle)
        extra = _footer(fig, handles, names, notes, ncol=min(len(names), 3))
        paths = figures.save(fig, Path(path), bbox_inches="tight", bbox_extra_artists=[*extra, suptitle])
    return _drawn(paths, notes)


def _strength_ticks(ax, values: pd.Series) -> None:
    """Ticks at the strengths the runs have, in plain numbers (0.1, 0.3, 0.5; 1e-04), where there
    are few enough of them; else decades in the same notation. No minor labels: on a log axis
    they collide (3×10⁻¹ beside 4×10⁻¹)."""
    present = sorted(set(pd.to_numeric(values, errors="coerce").dropna()))
    if 0 < len(present) <= 8:
        ax.set_xticks(present)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _merge_quantities(notes: list[str], quantities: list[str]) -> list[str]:
    """One note for series equal in every quantity of a row (`elasticnet = l2 at every alpha`),
    the quantity named where they are equal in one only."""
    out: list[str] = []
    for note in notes:
        for q in quantities:
            if note.endswith(f" ({q})"):
                base = note.removesuffix(f" ({q})")
                if all(f"{base} ({p})" in notes for p in quantities):
                    note = base
        if note not in out:
            out.append(note)
    return out


def no_strength(runs: pd.DataFrame) -> str:
    """Why `gap_vs_strength` drew nothing, naming the strength knobs the runs record:
    `its x axis is reg.alpha, and no ok run has reg.alpha > 0`."""
    from regbench.regularizers import strength_knobs

    named = [c.removeprefix("params.") for c in strength_columns(runs)]
    if len(named) == 1:
        return f"its x axis is {named[0]}, and no ok run has {named[0]} > 0"
    if named:
        return f"its x axis is a regularizer's strength ({', '.join(named)}), and no ok run has one > 0"
    every = ", ".join(f"reg.{knob}" for _, knob in strength_knobs())
    return f"its x axis is a regularizer's strength ({every}), and no run records one"


def _unique_legend(axes: list) -> tuple[list, list]:
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(name, handle)
    return list(seen.values()), list(seen.keys())


class Piece(NamedTuple):
    """A piece of a mean learning curve: the mean over one set of runs (`runs`, `n` of them) at
    `epochs`, of validation and train loss."""

    runs: frozenset
    n: int
    epochs: np.ndarray
    val: np.ndarray
    train: np.ndarray


def mean_pieces(history: pd.DataFrame) -> list[Piece]:
    """A configuration's mean learning curve in pieces of constant membership: `history` holds
    rows (run, epoch, train_loss, val_loss) of its seeds. Each piece covers the epochs where the
    same runs have a validation loss; a piece after the first also starts at the last epoch of
    the one before when all its runs have that epoch, so that consecutive pieces meet in x, each
    continuous in the runs it averages."""
    val = history.pivot_table(index="epoch", columns="run", values="val_loss", aggfunc="mean").sort_index()
    train = history.pivot_table(index="epoch", columns="run", values="train_loss", aggfunc="mean")
    train = train.reindex(index=val.index, columns=val.columns)
    present = val.notna()
    pieces: list[Piece] = []
    epochs = list(val.index)
    start = 0
    for i in range(1, len(epochs) + 1):
        if i < len(epochs) and present.iloc[i].equals(present.iloc[start]):
            continue
        members = frozenset(c for c in val.columns if present.iloc[start][c])
        first = start
        if pieces and members and all(present.iloc[start - 1][c] for c in members):
            first = start - 1
        if members:
            cols = sorted(members, key=str)
            rows = val.index[first:i]
            pieces.append(Piece(members, len(members), np.asarray(rows, float),
                                val.loc[rows, cols].mean(axis=1).to_numpy(),
                                train.loc[rows, cols].mean(axis=1).to_numpy()))
        start = i
    return pieces


def curves(runs: pd.DataFrame, path: Path, describe: dict[int, str], order: dict[int, tuple] | None = None) -> Drawn | None:
    """Validation (solid, filled markers) and train (dashed, hollow markers) loss per epoch for
    each configuration, the mean across seeds, read from metrics.csv. One panel per regularizer
    label, at most two (three from five labels on) to a row.

    Where a seed stopped early, the mean is not allowed to jump: it is drawn in pieces, each the
    mean over the seeds still training (`mean_pieces`); a piece over fewer seeds than the
    configuration has is thinner and lighter, and `n=3→2` marks where the count drops. A ring on
    the validation curve marks the configuration's mean early-stopping (best) epoch, on the piece
    that holds that epoch. Configurations whose curves are equal at every epoch are drawn apart
    and named in a note (the module's docstring).

    Styles follow `describe`: configurations described alike (the same strength) share one colour
    and marker (figures.series_styles) in every panel, assigned in increasing `order` (a sort key
    per configuration); one legend, under the panels, lists them in that order. Writes the PNG,
    SVG and PDF (figures.save); returns the PNG's path with the notes (`Drawn`), or None when no
    metrics.csv could be read."""
    ok = runs[runs["status"] == "ok"]
    histories = []
    for _, run in ok.iterrows():
        csv = Path(run["folder"]) / "metrics.csv"
        try:
            h = pd.read_csv(csv, usecols=["epoch", "train_loss", "val_loss"])
        except (OSError, ValueError):
            continue
        histories.append(h.assign(config=run["config"], reg=run["reg"], run=str(run["folder"])))
    if not histories:
        return None
    history = pd.concat(histories, ignore_index=True)
    history[["train_loss", "val_loss"]] = history[["train_loss", "val_loss"]].apply(pd.to_numeric, errors="coerce")
    # a loss of 0 or below has no place on a log axis (and a loss is never below 0)
    history = history[history["val_loss"] > 0]
    if history.empty:
        return None
    labels = sorted(history["reg"].unique())
    order = order or {}
    present = sorted(history["config"].unique())
    name_of = {c: describe.get(c, f"config {c}") for c in present}
    names = sorted(set(name_of.values()), key=lambda n: min(order.get(c, (n,)) for c in present if name_of[c] == n))
    style_of = dict(zip(names, figures.series_styles(len(names))))
    last_epoch = float(history["epoch"].max())
    step = max(1, round(last_epoch / 6))
    notes: list[str] = []
    reduced = False
    with figures.style():
        fig, axes = _grid(len(labels), 2)
        for ax, label in zip(axes, labels):
            configs = sorted(history.loc[history["reg"] == label, "config"].unique())
            pieces_of = {cid: mean_pieces(history[history["config"] == cid]) for cid in configs}
            series = [Series(name_of[cid], tuple(np.concatenate([p.epochs for p in pieces_of[cid]])),
                             (np.concatenate([p.val for p in pieces_of[cid]]),
                              np.concatenate([p.train for p in pieces_of[cid]]))) for cid in configs]
            groups = coinciding(series)
            below = _beneath(groups)
            for i, cid in enumerate(configs):
                style = style_of[name_of[cid]]
                k = below.get(name_of[cid], 0)
                full = max(p.n for p in pieces_of[cid])
                offset = (i * step) // max(len(configs), 1)
                for j, piece in enumerate(pieces_of[cid]):
                    share = piece.n / full
                    reduced |= share < 1
                    every = [m for m, e in enumerate(piece.epochs) if (e - 1 - offset) % step == 0]
                    common = dict(color=style["color"], marker=style["marker"], markevery=every,
                                  markersize=5.5 * (1 + 0.6 * k) * (0.6 + 0.4 * share))
                    ax.plot(piece.epochs, piece.val, linestyle="-", linewidth=(1.8 * (1 + 1.4 * k)) * (0.35 + 0.65 * share),
                            alpha=(0.55 if k else 1.0) * (0.35 + 0.65 * share), markerfacecolor="none" if k else style["color"],
                            gid=f"val:{cid}:{j}:n={piece.n}", zorder=3 - 0.1 * k, **common)
                    ax.plot(piece.epochs, piece.train, linestyle="--",
                            linewidth=(1.1 * (1 + 1.4 * k)) * (0.35 + 0.65 * share),
                            alpha=(0.45 if k else 0.85) * (0.35 + 0.65 * share), markerfacecolor="white",
                            gid=f"train:{cid}:{j}:n={piece.n}", zorder=2.5 - 0.1 * k, **common)
                    if j:  # where a seed stopped: the count, at the epoch the pieces meet
                        before = pieces_of[cid][j - 1]
                        ax.annotate(f"n={before.n}→{piece.n}", (piece.epochs[0], piece.val[0]), xytext=(3, 5),
                                    textcoords="offset points", fontsize=figures.MIN_FONT_PT, color=style["color"],
                                    gid=f"count:{cid}:{j}", zorder=6,
                                    bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8))
                best = ok.loc[ok["config"] == cid, "best_epoch"].mean()
                if not math.isnan(best):
                    epoch = float(round(best))
                    for piece in pieces_of[cid]:
                        if epoch in piece.epochs:
                            y = piece.val[list(piece.epochs).index(epoch)]
                            ax.plot([epoch], [y], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                                    markeredgecolor="black", markeredgewidth=1.6, zorder=4, gid=f"stop:{cid}")
                            break
            for group in groups:
                notes.append(f"reg={label}: {_equal_text(group)} at every epoch")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss (log scale)")
            ax.set_title(f"reg={label}")
            ax.grid(True, which="both", alpha=0.3)
        handles = [Line2D([], [], color=style_of[n]["color"], marker=style_of[n]["marker"], linewidth=2) for n in names]
        keys = ["validation", "train", "mean early-stopping epoch"]
        handles += [Line2D([], [], color="grey", marker="o"), Line2D([], [], color="grey", linestyle="--", marker="o",
                                                                    markerfacecolor="white"),
                    Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                           markeredgecolor="black", markeredgewidth=1.6)]
        if reduced:
            keys.append("fewer seeds (the others stopped)")
            handles.append(Line2D([], [], color="grey", linewidth=0.9, alpha=0.5))
        suptitle = fig.suptitle("Loss per epoch, mean across seeds")
        fig.tight_layout()
        _under_title(fig, suptitle)
        _apart(fig, "count:")
        extra = _footer(fig, handles, names + keys, notes, ncol=3)
        paths = figures.save(fig, Path(path), bbox_inches="tight", bbox_extra_artists=[*extra, suptitle])
    return _drawn(paths, notes)


MAX_RELIABILITY_PANELS = 24  # the report table's first configurations; more would make a page of tiny panels


def pooled_bins(cells: pd.Series) -> dict[str, np.ndarray] | None:
    """One configuration's reliability diagram from its runs' result.json `calibration` (the
    runs table's JSON text): its seeds' test predictions pooled, i.e. per bin the total `count`
    and the count-weighted mean `confidence` and `accuracy` over seeds (NaN for an empty bin).
    None when no run recorded one, or the runs used different bin counts."""
    import json

    diagrams = []
    for cell in cells:
        try:
            value = json.loads(cell) if isinstance(cell, str) else None
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("test"), dict):
            diagrams.append((int(value["bins"]), value["test"]))
    if not diagrams or len({b for b, _ in diagrams}) > 1:
        return None
    count = np.sum([np.asarray(d["count"], float) for _, d in diagrams], axis=0)
    weighted = {q: np.sum([np.asarray([v or 0.0 for v in d[q]], float) * np.asarray(d["count"], float)
                           for _, d in diagrams], axis=0) for q in ("confidence", "accuracy")}
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {q: np.where(count > 0, weighted[q] / count, np.nan) for q in weighted}
    return {"count": count, **out, "runs": np.array(len(diagrams))}


RELIABILITY_TITLE = "Test-split reliability, seeds pooled (bars below the diagonal: over-confident, above: under-confident)"


def reliability(runs: pd.DataFrame, path: Path, describe: dict[int, str], order: list[int] | None = None,
                title: str = RELIABILITY_TITLE) -> Drawn | None:
    """The reliability diagram of each configuration's test predictions (a classification's ok
    runs that recorded `calibration`), its seeds pooled (`pooled_bins`): per equal-width
    confidence bin, a bar up to the accuracy of the predictions in it, and a hatched bar from
    there to their mean confidence (the gap the ECE sums, weighted by the bin's share of
    predictions). Bars below the diagonal: over-confident; above it: under-confident. Each panel
    names the configuration (`describe`), its mean test ECE over seeds and its seeds. At most
    MAX_RELIABILITY_PANELS panels, the configurations in `order` (the report table's) first, a
    note naming how many were left out. Returns the PNG's path (`Drawn`), or None when no run
    recorded a diagram. `title`: the figure's (an ensemble's diagram is drawn with its own,
    regbench.reporting.ensemble)."""
    if "calibration" not in runs:
        return None
    ok = runs[(runs["status"] == "ok") & runs["calibration"].notna()]
    configs = [c for c in (order or sorted(ok["config"].unique())) if c in set(ok["config"])]
    diagrams = [(c, pooled_bins(ok.loc[ok["config"] == c, "calibration"])) for c in configs]
    diagrams = [(c, d) for c, d in diagrams if d is not None]
    if not diagrams:
        return None
    notes = []
    if len(diagrams) > MAX_RELIABILITY_PANELS:
        notes.append(f"the first {MAX_RELIABILITY_PANELS} of {len(diagrams)} configurations, in the table's order")
        diagrams = diagrams[:MAX_RELIABILITY_PANELS]
    with figures.style():
        fig, axes = _grid(len(diagrams), 3)
        for ax, (cid, d) in zip(axes, diagrams):
            bins = len(d["count"])
            edges = np.linspace(0.0, 1.0, bins + 1)
            filled = d["count"] > 0
            left, width = edges[:-1][filled], 1.0 / bins
            acc, conf = d["accuracy"][filled], d["confidence"][filled]
            ax.bar(left, acc, width=width, align="edge", color="#4c72b0", edgecolor="black", linewidth=0.6,
                   label="accuracy", gid=f"accuracy:{cid}")
            # hatched, unfilled: over the accuracy bar it stays readable where the bin is under-confident
            ax.bar(left, conf - acc, bottom=acc, width=width, align="edge", facecolor="none", edgecolor="#c44e52",
                   hatch="///", linewidth=0.9, label="gap to the bin's mean confidence", gid=f"gap:{cid}")
            ax.plot([0, 1], [0, 1], linestyle="--", marker="", color="black", linewidth=1.2,
                    label="perfect calibration (accuracy = confidence)")
            ece = ok.loc[ok["config"] == cid, "test_ece"].mean() if "test_ece" in ok else math.nan
            name = describe.get(cid, f"config {cid}")
            ax.set_title(name if len(name) <= 38 else name[:37] + "…")
            ax.text(0.03, 0.97, f"ECE {ece:.3f}\nn={int(d['runs'])}", transform=ax.transAxes, va="top", ha="left",
                    fontsize=figures.MIN_FONT_PT, bbox=dict(boxstyle="round,pad=0.2", facecolor="white",
                                                             edgecolor="none", alpha=0.8))
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
        handles, names = axes[0].get_legend_handles_labels()
        suptitle = fig.suptitle(title)
        fig.tight_layout()
        _under_title(fig, suptitle)
        extra = _footer(fig, handles, names, [], ncol=3)
        if notes:
            extra.append(fig.text(0.5, 1.0, "; ".join(notes), ha="center", va="bottom", fontsize=figures.MIN_FONT_PT))
        paths = figures.save(fig, Path(path), bbox_inches="tight", bbox_extra_artists=[*extra, suptitle])
    return _drawn(paths, notes)


MAX_SHIFT_LINES = 12  # configurations drawn per panel: more would be a tangle; the table's first ones


def under_shift(table: pd.DataFrame, path: Path, describe: dict[int, str], metric: str) -> Drawn | None:
    """The test metric against the severity of each corruption (one panel each), one line per
    configuration: its mean over seeds with the 95% CI as error bars (report.csv's
    `test_acc@<corruption>=<severity>.mean` and `.ci95`), the clean test metric at severity 0
    where the runs did not list 0 themselves. At most MAX_SHIFT_LINES configurations, the
    table's first, a note naming how many were left out. None when no configuration was
    evaluated under shift (regbench.engine.shift)."""
    from regbench.data.corrupt import CORRUPTIONS
    from regbench.reporting.aggregate import shifted_names

    columns = shifted_names([c.removesuffix(".mean") for c in table.columns if c.endswith(".mean")], (metric,))
    columns = [c for c in columns if table[f"{c}.mean"].notna().any()]
    if not columns:
        return None
    by_corruption: dict[str, list[tuple[float, str]]] = {}
    for c in columns:
        name, _, severity = c.partition("@")[2].partition("=")
        by_corruption.setdefault(name, []).append((float(severity), c))
    names = [n for n in CORRUPTIONS if n in by_corruption]
    rows = [r for _, r in table.iterrows() if any(pd.notna(r[f"{c}.mean"]) for c in columns)]
    notes = []
    if len(rows) > MAX_SHIFT_LINES:
        notes.append(f"the first {MAX_SHIFT_LINES} of {len(rows)} configurations, in the table's order")
        rows = rows[:MAX_SHIFT_LINES]
    clean = f"test_{metric}"
    with figures.style():
        fig, axes = _grid(len(names), 2)
        for ax, name in zip(axes, names):
            for i, r in enumerate(rows):
                points = [(s, r[f"{c}.mean"], r[f"{c}.ci95"]) for s, c in by_corruption[name] if pd.notna(r[f"{c}.mean"])]
                if 0.0 not in {s for s, _, _ in points} and pd.notna(r.get(f"{clean}.mean")):
                    points.append((0.0, r[f"{clean}.mean"], r.get(f"{clean}.ci95")))
                points.sort()
                x, y = [p[0] for p in points], [p[1] for p in points]
                err = [0.0 if pd.isna(p[2]) else p[2] for p in points]
                cid = int(r["config"])
                ax.errorbar(x, y, yerr=err, capsize=3, label=describe.get(cid, f"config {cid}"), gid=f"shift:{name}:{cid}",
                            color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
            ax.set_title(name)
            ax.set_xlabel({"gaussian_noise": "noise std (standardised units)", "gaussian_blur": "blur sigma (pixels)",
                           "contrast": "contrast lost (1 - factor)", "brightness": "brightness lost (1 - factor)"}[name])
            ax.set_ylabel(f"test {metric}")
        handles, labels = axes[0].get_legend_handles_labels()
        suptitle = fig.suptitle(f"Test {metric} under shift: mean over seeds, 95% CI (severity 0: the clean test split)")
        fig.tight_layout()
        _under_title(fig, suptitle)
        extra = _footer(fig, handles, labels, notes, ncol=3)
        paths = figures.save(fig, Path(path), bbox_inches="tight", bbox_extra_artists=[*extra, suptitle])
    return _drawn(paths, notes)
