"""The report's figures (gap_vs_strength.png, curves.png) as a reader sees them: rendered, then
checked on their artists and pixels for what issue 23 item 9 asks of them: a series drawn exactly
under another stays visible and is named; mean ± std bands stay within the metric's range; a seed
that stops early does not make the mean jump, and the count of seeds is shown; the early-stopping
marker sits on its curve; no empty panel; text and width within regbench.reporting.figures'
contract; SVG and PDF beside each PNG."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from regbench.reporting import figures, plots
from regbench.reporting.report_command import main
from tests.helpers.rundirs import write_run

KNOBS = ("alpha", "weight_decay", "dropout")


@pytest.fixture
def kept(monkeypatch):
    """The figures the drawing functions close, kept open for inspection (the last one last)."""
    closed: list = []
    monkeypatch.setattr(plots.plt, "close", closed.append)
    return closed


def _runs(rows: list[dict], dataset: str = "digits") -> pd.DataFrame:
    """runs.csv rows: every strength column present (0 where a row does not set it)."""
    out = []
    for r in rows:
        row = {"status": "ok", "dataset": dataset, "model": "mlp", **{f"params.reg.{k}": 0.0 for k in KNOBS}}
        row.update({f"params.reg.{k}": v for k, v in r.items() if k in KNOBS})
        row.update({k: v for k, v in r.items() if k not in KNOBS})
        row.setdefault("gap.acc", 1.0 - row.get("val_acc", 0.9) - 0.0)
        out.append(row)
    return pd.DataFrame(out)


def _rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def _contract(png: Path, fig) -> None:
    """figures' contract: width, smallest text, PNG + SVG + PDF, the PNG a real picture."""
    assert fig.get_size_inches()[0] <= figures.MAX_WIDTH_IN
    assert figures.smallest_font(fig) >= figures.MIN_FONT_PT
    width, height, dpi, font = figures.png_info(png)
    assert dpi == figures.DPI and width / dpi <= figures.MAX_WIDTH_IN + 1e-9 and font >= figures.MIN_FONT_PT
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (height, width) and image[..., :3].std() > 0.05  # not blank
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    ET.parse(png.with_suffix(".svg"))  # well-formed SVG
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:  # the figure's title above every panel, none of them touching it
        assert ax.get_tightbbox(renderer).y1 < title.y0, (ax.get_title(), fig.get_size_inches())
    for ax in fig.axes:  # no axes without data
        assert any(np.isfinite(np.asarray(line.get_ydata(), float)).any() for line in ax.get_lines()), ax.get_title()


def _saved(fig) -> np.ndarray:
    """The figure as figures.save writes it (the legend and notes around the panels), at 96 dpi."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", bbox_extra_artists=[*fig.legends, *fig.texts])
    buf.seek(0)
    return matplotlib.image.imread(buf)


def _visible_pixels(fig, artists) -> int:
    """How many pixels change when `artists` are hidden: what a reader sees of them."""
    shown = _rendered(fig)
    for a in artists:
        a.set_visible(False)
    hidden = _rendered(fig)
    for a in artists:
        a.set_visible(True)
    return int((np.abs(shown - hidden).max(axis=2) > 40).sum())


# --------------------------------------------------------------------------- gap_vs_strength


def _twins() -> pd.DataFrame:
    """l2 and an elastic net with l1_ratio 0 (the same numbers), the baseline; three alphas, two seeds."""
    rows = [{"reg": "none", "seed": s, "val_acc": v, "gap.acc": g} for s, v, g in ((0, 0.99, 0.01), (1, 0.80, 0.2))]
    for reg in ("elasticnet", "l2"):
        rows += [{"reg": reg, "alpha": a, "seed": s, "val_acc": v, "gap.acc": 0.02 * i + s * 0.01}
                 for i, a in enumerate((1e-4, 1e-3, 1e-2)) for s, v in ((0, 0.995), (1, 0.85))]
    return _runs(rows)


@pytest.mark.slow
def test_series_equal_at_every_alpha_are_both_visible_and_named(tmp_path, kept):
    png = plots.gap_vs_strength(_twins(), tmp_path / "gap_vs_strength.png", "acc")
    fig = kept[-1]
    _contract(png, fig)
    assert png.notes == ("elasticnet = l2 at every alpha",)
    assert png.vectors == (png.with_suffix(".svg"), png.with_suffix(".pdf"))
    note = [t for t in fig.texts if t.get_gid() == "coinciding"]
    assert len(note) == 1 and "elasticnet = l2 at every alpha" in note[0].get_text()
    assert "elasticnet = l2 at every alpha" in png.with_suffix(".svg").read_text()  # SVG keeps its text as text
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        beneath, top = lines["elasticnet"], lines["l2"]
        assert list(beneath.get_xdata()) == list(top.get_xdata())
        assert np.allclose(beneath.get_ydata(), top.get_ydata())  # the data is as it is, not shifted
        assert beneath.get_marker() != top.get_marker()
        assert beneath.get_markersize() > top.get_markersize() and beneath.get_linewidth() > top.get_linewidth()
        assert beneath.get_markerfacecolor() == "none"  # hollow: the one on top shows through
        assert _visible_pixels(fig, [beneath]) > 150  # the series beneath is seen
    # the note lies under the legend, outside the axes' canvas: seen in the saved file
    shown = _saved(fig)
    note[0].set_visible(False)
    assert shown.shape[0] >= _saved(fig).shape[0] + 2 * figures.MIN_FONT_PT * 96 / 72


def test_the_equality_check_is_exact_not_approximate():
    a = plots.Series("a", (1, 2), (np.array([0.5, 0.6]),))
    assert plots.coinciding([a, plots.Series("b", (1, 2), (np.array([0.5, 0.6 + 1e-12]),))]) == [["a", "b"]]
    assert plots.coinciding([a, plots.Series("b", (1, 2), (np.array([0.5, 0.601]),))]) == []
    assert plots.coinciding([a, plots.Series("b", (1, 3), (np.array([0.5, 0.6]),))]) == []  # other x


def test_bands_stay_inside_the_metric_range(tmp_path, kept):
    plots.gap_vs_strength(_twins(), tmp_path / "g.png", "acc")
    fig = kept[-1]
    gap, val = fig.axes
    assert val.get_title() == "validation acc"
    tops = [p.vertices[:, 1].max() for c in val.collections for p in c.get_paths()]
    tops += [p.get_path().transformed(p.get_patch_transform()).vertices[:, 1].max() for p in val.patches]
    assert tops and max(tops) <= 1.0  # mean 0.9225 ± 0.1 for l2 at alpha 1e-4: unclipped 1.03
    assert max(p.vertices[:, 1].max() for c in val.collections for p in c.get_paths()) == 1.0
    assert plots.value_range("val_acc") == (0, 1) and plots.value_range("gap.acc") == (-1, 1)
    assert plots.value_range("val_r2")[1] == 1 and plots.value_range("val_loss")[0] == 0
    assert plots.value_range("sparsity") == (0, 1) and plots.value_range("gap.loss") == (-np.inf, np.inf)


@pytest.mark.slow
def test_no_panel_for_a_strength_a_pair_never_varies(tmp_path, kept):
    """digits sweeps alpha, wine sweeps dropout: two rows, not four (two would hold only reference lines)."""
    runs = pd.concat([_runs([{"reg": "none", "val_acc": 0.9}, {"reg": "l2", "alpha": 1e-3, "val_acc": 0.92}]),
                      _runs([{"reg": "none", "val_acc": 0.8}, {"reg": "dropout", "dropout": 0.3, "val_acc": 0.85}],
                            dataset="wine")], ignore_index=True)
    png = plots.gap_vs_strength(runs, tmp_path / "g.png", "acc")
    fig = kept[-1]
    _contract(png, fig)
    assert [ax.get_title() for ax in fig.axes] == ["digits / mlp: generalization gap", "digits / mlp: validation acc",
                                                    "wine / mlp: generalization gap", "wine / mlp: validation acc"]
    assert fig.axes[2].get_xlabel() == "strength reg.dropout (log scale)"


@pytest.mark.slow
def test_many_pairs_wrap_into_rows_within_the_width(tmp_path, kept):
    runs = pd.concat([_runs([{"reg": "l2", "alpha": a, "val_acc": 0.9} for a in (1e-3, 1e-2)], dataset=d)
                      for d in ("digits", "wine", "iris")], ignore_index=True)
    png = plots.gap_vs_strength(runs, tmp_path / "g.png", "acc")
    fig = kept[-1]
    _contract(png, fig)
    assert len(fig.axes) == 6
    columns = {round(ax.get_position().x0, 3) for ax in fig.axes}
    assert len(columns) == 2  # two panels to a row, three rows


@pytest.mark.slow
def test_the_title_stays_above_the_panels_of_a_tall_figure(tmp_path, kept):
    datasets = ("digits", "wine", "iris", "breast_cancer", "diabetes", "california", "mnist", "fashion_mnist")
    runs = pd.concat([_runs([{"reg": "l2", "alpha": a, "val_acc": 0.9} for a in (1e-3, 1e-2)], dataset=d)
                      for d in datasets], ignore_index=True)
    png = plots.gap_vs_strength(runs, tmp_path / "g.png", "acc")
    fig = kept[-1]
    assert fig.get_size_inches()[1] > 20  # tight_layout alone lets the title overlap the first row here
    _contract(png, fig)


# --------------------------------------------------------------------------- curves


def _history(folder: Path, val: list[float], train: list[float]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(val) + 1), "train_loss": train, "val_loss": val}).to_csv(
        folder / "metrics.csv", index=False)
    return folder


def _early_stop(tmp_path) -> tuple[pd.DataFrame, dict]:
    """One configuration, three seeds: seed 0 stops at epoch 5 of 20 far below the others."""
    val = {0: [0.1 - 0.005 * e for e in range(5)],
           1: [1.0 - 0.01 * e for e in range(20)],
           2: [1.2 - 0.01 * e for e in range(20)]}
    rows = [{"status": "ok", "reg": "l2", "config": 0, "seed": s, "best_epoch": b,
             "folder": str(_history(tmp_path / f"s{s}", v, [x / 2 for x in v]))}
            for (s, v), b in zip(val.items(), (3, 14, 16))]
    return pd.DataFrame(rows), val


def _by_gid(ax, prefix: str) -> list:
    return [a for a in (*ax.get_lines(), *ax.texts) if (a.get_gid() or "").startswith(prefix)]


def test_a_seed_that_stops_early_does_not_make_the_mean_jump(tmp_path, kept):
    runs, val = _early_stop(tmp_path)
    png = plots.curves(runs, tmp_path / "curves.png", {0: "alpha=0.001"})
    fig = kept[-1]
    _contract(png, fig)
    (ax,) = fig.axes
    pieces = _by_gid(ax, "val:0:")
    # every piece is the mean of one set of seeds at each of its epochs: no seed leaves inside a piece
    for line in pieces:
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        fits = [seeds for k in (1, 2, 3) for seeds in itertools.combinations(val, k)
                if all(len(val[s]) >= x.max() for s in seeds)
                and np.allclose(y, [np.mean([val[s][int(e) - 1] for s in seeds]) for e in x])]
        assert fits, line.get_gid()
    full, rest = pieces  # two pieces: over three seeds, then over the two still training
    assert list(full.get_xdata()) == [1, 2, 3, 4, 5] and list(rest.get_xdata()) == list(range(5, 21))
    assert rest.get_linewidth() < full.get_linewidth() and rest.get_alpha() < full.get_alpha()  # fewer seeds
    (count,) = _by_gid(ax, "count:0:")
    assert count.get_text() == "n=3→2" and count.xy == (5.0, pytest.approx(np.mean([val[1][4], val[2][4]])))
    assert count.get_fontsize() >= figures.MIN_FONT_PT
    assert _visible_pixels(fig, [count]) > 30


def test_the_early_stopping_marker_sits_on_its_curve(tmp_path, kept):
    runs, _ = _early_stop(tmp_path)
    plots.curves(runs, tmp_path / "curves.png", {0: "alpha=0.001"})
    (ax,) = kept[-1].axes
    (stop,) = _by_gid(ax, "stop:0")
    point = (stop.get_xdata()[0], stop.get_ydata()[0])
    assert point[0] == 11  # the mean best epoch, (3 + 14 + 16) / 3
    on = [line for line in _by_gid(ax, "val:0:") if any(
        (x, y) == point for x, y in zip(line.get_xdata(), line.get_ydata()))]
    assert on, "the ring is on no validation curve"


def test_the_marker_at_the_epoch_two_pieces_share_is_on_the_one_over_more_seeds(tmp_path, kept):
    runs, val = _early_stop(tmp_path)
    runs["best_epoch"] = 5
    plots.curves(runs, tmp_path / "curves.png", {0: "alpha=0.001"})
    (ax,) = kept[-1].axes
    (stop,) = _by_gid(ax, "stop:0")
    assert stop.get_ydata()[0] == pytest.approx(np.mean([v[4] for v in val.values()]))


def test_equal_curves_in_a_panel_are_both_visible_and_named(tmp_path, kept):
    curve = [1.0, 0.5, 0.3, 0.2, 0.15, 0.12]
    rows = [{"status": "ok", "reg": "l2", "config": c, "seed": 0, "best_epoch": 4,
             "folder": str(_history(tmp_path / f"c{c}", curve, [x / 2 for x in curve]))} for c in (0, 1)]
    rows.append({"status": "ok", "reg": "none", "config": 2, "seed": 0, "best_epoch": 4,
                 "folder": str(_history(tmp_path / "c2", [x * 1.5 for x in curve], curve))})
    png = plots.curves(pd.DataFrame(rows), tmp_path / "curves.png",
                       {0: "l1_ratio=0, proximal", 1: "l1_ratio=0, not proximal", 2: "none"})
    fig = kept[-1]
    _contract(png, fig)
    assert png.notes == ("reg=l2: l1_ratio=0, proximal = l1_ratio=0, not proximal at every epoch",)
    assert len(fig.axes) == 2  # two labels; no leftover cell
    ax = fig.axes[0]
    beneath, top = _by_gid(ax, "val:0:")[0], _by_gid(ax, "val:1:")[0]
    assert beneath.get_marker() != top.get_marker() and beneath.get_markersize() > top.get_markersize()
    assert _visible_pixels(fig, [beneath]) > 100
    assert any("at every epoch" in t.get_text() for t in fig.texts)


def test_three_labels_take_a_two_by_two_grid_without_an_empty_cell(tmp_path, kept):
    rows = [{"status": "ok", "reg": r, "config": i, "seed": 0, "best_epoch": 2,
             "folder": str(_history(tmp_path / r, [1.0, 0.5, 0.4], [0.9, 0.4, 0.3]))}
            for i, r in enumerate(("l1", "l2", "none"))]
    rows.append({"status": "ok", "reg": "dropout", "config": 3, "seed": 0, "best_epoch": 2,
                 "folder": str(tmp_path / "missing")})  # no metrics.csv: no panel
    png = plots.curves(pd.DataFrame(rows), tmp_path / "curves.png", {})
    fig = kept[-1]
    _contract(png, fig)
    assert [ax.get_title() for ax in fig.axes] == ["reg=l1", "reg=l2", "reg=none"]


# --------------------------------------------------------------------------- the command


def test_report_plots_names_coinciding_series_in_the_terminal(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(sweep / f"n{seed}", reg="none", seed=seed, val=0.9 - seed / 10)
        for alpha in (1e-3, 1e-2):
            write_run(sweep / f"l2{seed}{alpha}", reg="l2", alpha=alpha, seed=seed, val=0.91 - seed / 10,
                      extra={"reg.l1_ratio": 0.0})
            write_run(sweep / f"en{seed}{alpha}", reg="elasticnet", alpha=alpha, seed=seed, val=0.91 - seed / 10,
                      extra={"reg.l1_ratio": 0.0, "reg.l1_proximal": False})
    assert main([str(sweep), "--out", str(tmp_path / "o"), "--plots"]) == 0
    err = capsys.readouterr().err
    assert "regbench: note: gap_vs_strength.png: elasticnet = l2 at every alpha\n" in err
    assert {p.name for p in (tmp_path / "o").iterdir()} >= {"gap_vs_strength.png", "gap_vs_strength.svg",
                                                             "gap_vs_strength.pdf"}
