"""The study's figures, drawn headless with matplotlib: the critical-difference diagram
(Demšar 2006, fig. 1) and the performance profiles (Dolan & Moré 2002)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from regbench.reporting.ranking import cliques  # noqa: E402

if TYPE_CHECKING:
    from regbench.reporting.study import Study


def cd_diagram(study: Study, stem: Path) -> list[Path]:
    """The rank axis (1, the best, on the left), each regularizer at its average rank with its
    name, thick bars joining the groups the post-hoc test cannot tell apart, and (Nemenyi) the
    critical difference drawn to scale. Written as `stem`.png and `stem`.svg."""
    k = len(study.regs)
    order = list(np.argsort(study.mean_rank, kind="stable"))
    groups = cliques(study.mean_rank, study.different())
    half = (k + 1) // 2
    height = 1.6 + 0.32 * max(half, k - half) + 0.18 * len(groups)
    fig, ax = plt.subplots(figsize=(8, height))
    ax.set_xlim(0.5 - 0.35 * k, k + 0.5 + 0.35 * k)
    top = 0.0
    bottom = -(0.55 + 0.35 * max(half, k - half) + 0.15 * len(groups))
    ax.set_ylim(bottom - 0.1, 0.9)
    ax.axis("off")
    ax.hlines(top, 1, k, color="black", linewidth=1.2)
    for tick in range(1, k + 1):
        ax.vlines(tick, top, top + 0.08, color="black", linewidth=1)
        ax.text(tick, top + 0.12, str(tick), ha="center", va="bottom", fontsize=9)
    for half_tick in np.arange(1.5, k, 1.0):
        ax.vlines(half_tick, top, top + 0.04, color="black", linewidth=0.6)
    for n, j in enumerate(order):
        x = study.mean_rank[j]
        left = n < half
        y = -(0.35 + 0.35 * (n if left else k - 1 - n)) - 0.15 * len(groups)
        end = 1 - 0.3 * k if left else k + 0.3 * k
        ax.plot([x, x, end], [top, y, y], color="black", linewidth=0.8)
        ax.text(end + (-0.05 if left else 0.05), y, f"{study.regs[j]} ({x:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)
    for g, members in enumerate(groups):
        ranks = study.mean_rank[members]
        y = -0.18 - 0.15 * g
        ax.plot([ranks.min() - 0.03, ranks.max() + 0.03], [y, y], color="tab:red", linewidth=3.5, solid_capstyle="round")
    if study.posthoc == "nemenyi" and np.isfinite(study.cd):
        y = 0.62
        ax.plot([1, 1 + study.cd], [y, y], color="black", linewidth=1.2)
        ax.vlines([1, 1 + study.cd], y - 0.05, y + 0.05, color="black", linewidth=1.2)
        ax.text(1 + study.cd / 2, y + 0.07, f"CD = {study.cd:.2f}", ha="center", va="bottom", fontsize=9)
    f = study.friedman
    if not f.conclusive:
        caption = f"{f.n_datasets} datasets: no test (ranks descriptive only)"
    elif not f.p < study.alpha:
        caption = f"Friedman p = {f.p:.3g} ≥ {study.alpha:g}: no difference shown (one bar joins all)"
    else:
        test = "Nemenyi" if study.posthoc == "nemenyi" else "Wilcoxon–Holm"
        caption = f"Friedman p = {f.p:.3g}; bars: not told apart by {test} at alpha = {study.alpha:g}"
    ax.set_title(textwrap.fill(f"Average rank over {len(study.datasets)} datasets (1 = best). {caption}", 95), fontsize=9)
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def profiles(study: Study, taus: np.ndarray, path: Path) -> Path:
    """For each regularizer, the fraction of datasets on which its cost (error rate, 1 - r2, or
    loss) is within a factor tau of the best regularizer's, against tau (a step plot)."""
    from regbench.reporting.ranking import profile

    rho = profile(study.ratios, taus)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.get_cmap("tab10")
    styles = ("-", "--", ":", "-.")  # regularizers with the same profile still show, one over the other
    for n, j in enumerate(np.argsort(study.mean_rank, kind="stable")):
        ax.step(taus, rho[:, j], where="post", color=colors(j % 10), label=study.regs[j],
                linestyle=styles[n % len(styles)], linewidth=2.4 - 0.3 * (n % len(styles)))
    ax.set_xscale("log")  # ratios are factors: log scale, as Dolan & Moré draw them
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("tau: cost within this factor of the best on the dataset (cost: error rate, 1 − r2 or loss)")
    ax.set_ylabel("fraction of datasets")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_title(f"Performance profiles over {len(study.datasets)} datasets (Dolan & Moré)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
