"""The report's figures, drawn headless with matplotlib: the gap against each regularizer's
strength knob (its declaration, regbench.regularizers.contract), and the learning curves with
their early-stopping points."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402


def strength_columns(runs: pd.DataFrame) -> list[str]:
    """The runs.csv columns of the built-in regularizers' strength knobs (each regularizer declares
    its own: regbench.regularizers.contract's `strength`) that `runs` holds, in the order of the
    label's parts: `params.reg.alpha`, `params.reg.dropout`, ..."""
    from regbench.regularizers import strength_knobs

    return [c for c in (f"params.reg.{knob}" for _, knob in strength_knobs()) if c in runs]


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


def gap_vs_strength(runs: pd.DataFrame, path: Path, metric: str) -> Path | None:
    """For each regularizer label, gap.<metric> and val_<metric> against the strength knob of a
    regularizer (log axis), mean with a ±1 std band across seeds: one row of panels per dataset /
    model pair and per strength knob that is > 0 in some ok run (`strength_columns`: reg.alpha for
    the elastic net, reg.dropout, reg.weight_decay...). In a knob's row, a label with no run where
    the knob is > 0 (the baseline, another regularizer) is a horizontal reference line; a label
    whose runs also vary another strength (elasticnet+dropout over both) gets one curve per value
    of the others, named by them, so that no point averages over a strength. Returns None when no
    strength knob is > 0 in any ok run."""
    ok = runs[runs["status"] == "ok"]
    axes_of = [c for c in strength_columns(ok) if _on(ok, c).any()]
    if not axes_of:
        return None
    rows = [(title, frame, x) for title, frame in _panels(ok) for x in axes_of]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 4.2 * len(rows)), squeeze=False)
    colors = plt.get_cmap("tab10")
    markers = "osD^v<>"
    labels = sorted(ok["reg"].unique())
    for row, (title, frame, x) in enumerate(rows):
        knob = x.removeprefix("params.reg.")
        for col, (q, ylabel) in enumerate(
            [(f"gap.{metric}", f"gap.{metric} = train {metric} − val {metric}"), (f"val_{metric}", f"validation {metric}")]
        ):
            ax = axes[row][col]
            for i, label in enumerate(labels):
                part = frame[frame["reg"] == label]
                if part.empty:
                    continue
                color = colors(i % 10)
                acting = part[_on(part, x)]
                if acting.empty:  # no strength axis: a reference line at its mean
                    mean, std = part[q].mean(), part[q].std()
                    ax.axhline(mean, color=color, linestyle="--", label=f"{label} ({knob}=0)")
                    if not math.isnan(std):
                        ax.axhspan(mean - std, mean + std, color=color, alpha=0.12)
                    continue
                others = [c for c in axes_of if c != x and acting[c].map(str).nunique() > 1]
                curves_of = acting.groupby(others, sort=True, dropna=False) if others else [((), acting)]
                for j, (values, curve) in enumerate(curves_of):
                    values = values if isinstance(values, tuple) else (values,)
                    name = label if not others else label + " (" + ", ".join(
                        f"{c.removeprefix('params.reg.')}={_number(v)}" for c, v in zip(others, values)) + ")"
                    g = curve.groupby(x)[q].agg(["mean", "std"]).sort_index()
                    ax.plot(g.index, g["mean"], marker=markers[j % len(markers)], color=color, label=name)
                    ax.fill_between(g.index, g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=color,
                                    alpha=0.2)
            ax.set_xscale("log")
            ax.set_xlabel(f"strength reg.{knob} (log scale)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {'generalization gap' if col == 0 else 'validation ' + metric}")
            ax.grid(True, which="both", alpha=0.3)
    handles, names = _unique_legend(axes)
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), frameon=False)
    fig.suptitle("Mean ± 1 std across seeds")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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


def _unique_legend(axes: np.ndarray) -> tuple[list, list]:
    seen: dict[str, object] = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(name, handle)
    return list(seen.values()), list(seen.keys())


def curves(runs: pd.DataFrame, path: Path, describe: dict[int, str], order: dict[int, tuple] | None = None) -> Path | None:
    """Train (dashed) and validation (solid) loss per epoch for each configuration, the mean
    across seeds, read from metrics.csv; past the shortest run the mean covers only the
    seeds still training and is drawn faded. A dot marks each configuration's mean
    early-stopping (best) epoch. One panel per regularizer label.

    Colours follow `describe`: configurations described alike (the same strength) share one
    colour in every panel, assigned in increasing `order` (a sort key per configuration);
    one legend, outside the panels, lists them in that order. Returns None when no
    metrics.csv could be read."""
    ok = runs[runs["status"] == "ok"]
    histories = []
    for _, run in ok.iterrows():
        csv = Path(run["folder"]) / "metrics.csv"
        try:
            h = pd.read_csv(csv, usecols=["epoch", "train_loss", "val_loss"])
        except (OSError, ValueError):
            continue
        histories.append(h.assign(config=run["config"], reg=run["reg"]))
    if not histories:
        return None
    history = pd.concat(histories, ignore_index=True)
    labels = sorted(history["reg"].unique())
    ncols = min(3, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    order = order or {}
    present = sorted(history["config"].unique())
    names = sorted({describe.get(c, f"config {c}") for c in present},
                   key=lambda n: min(order.get(c, (n,)) for c in present if describe.get(c, f"config {c}") == n))
    cmap = plt.get_cmap("viridis")
    color_of = {n: cmap(i / max(len(names) - 1, 1) * 0.9) for i, n in enumerate(names)}
    for ax, label in zip(axes.flat, labels):
        for cid in sorted(history.loc[history["reg"] == label, "config"].unique()):
            color = color_of[describe.get(cid, f"config {cid}")]
            runs_of = history[history["config"] == cid]
            mean = runs_of.groupby("epoch")[["train_loss", "val_loss"]].mean()
            # Past the shortest run the mean covers fewer seeds: drawn faded, not as if complete.
            counts = runs_of.groupby("epoch").size()
            last_full = counts.index[counts == counts.max()].max()
            for part, alpha in ((mean.loc[:last_full], 1.0), (mean.loc[last_full:], 0.35)):
                if len(part) < 2 and alpha < 1:
                    continue
                ax.plot(part.index, part["val_loss"], color=color, alpha=alpha)
                ax.plot(part.index, part["train_loss"], color=color, linestyle="--", alpha=0.8 * alpha)
            best = ok.loc[ok["config"] == cid, "best_epoch"].mean()
            if not math.isnan(best):
                epoch = int(round(best))
                if epoch in mean.index:
                    ax.plot([epoch], [mean.loc[epoch, "val_loss"]], "o", color=color, markersize=7, markeredgecolor="black")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (log scale)")
        ax.set_title(f"reg={label}")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color_of[n], linewidth=2.5) for n in names]
    handles += [Line2D([], [], color="grey"), Line2D([], [], color="grey", linestyle="--"),
                Line2D([], [], color="grey", marker="o", markeredgecolor="black", linestyle="none")]
    legend = fig.legend(handles, names + ["validation", "train", "mean early-stopping epoch"], loc="upper left",
                        bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    title = ("Loss per epoch, mean across seeds (solid: validation, dashed: train; dot: mean early-stopping epoch; "
             "faded: fewer seeds, the others stopped)")
    suptitle = fig.suptitle(textwrap.fill(title, width=max(50, 55 * ncols)), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if nrows == 1 else 0.96))
    fig.savefig(path, dpi=120, bbox_inches="tight", bbox_extra_artists=[legend, suptitle])
    plt.close(fig)
    return path
