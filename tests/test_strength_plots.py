"""gap_vs_strength against each regularizer's declared strength knob (not reg.alpha alone): what
each panel draws, read off the figure, for runs.csv-like frames; and one real small sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from regbench.reporting import plots

KNOBS = ("alpha", "weight_decay", "dropout")


def _runs(rows: list[dict]) -> pd.DataFrame:
    """runs.csv rows: every strength column present (0 where a row does not set it), as regbench writes them."""
    out = []
    for r in rows:
        row = {"status": "ok", "dataset": "digits", "model": "mlp", **{f"params.reg.{k}": 0.0 for k in KNOBS}}
        row.update({f"params.reg.{k}": v for k, v in r.items() if k in KNOBS})
        row.update({k: v for k, v in r.items() if k not in KNOBS})
        row["val_acc"] = 1.0 - row["gap.acc"]
        out.append(row)
    return pd.DataFrame(out)


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Draws gap_vs_strength and returns its figure (kept open) and its path."""
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)

    def draw(runs: pd.DataFrame):
        path = plots.gap_vs_strength(runs, tmp_path / "gap_vs_strength.png", "acc")
        return (figures[-1] if figures else None), path

    return draw


def _lines(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_a_dropout_sweep_is_drawn_against_reg_dropout(drawn):
    runs = _runs([{"reg": "none", "gap.acc": 0.10, "seed": 0}, {"reg": "none", "gap.acc": 0.12, "seed": 1},
                  *({"reg": "dropout", "dropout": p, "gap.acc": g, "seed": s}
                    for p, gaps in ((0.1, (0.08, 0.06)), (0.3, (0.04, 0.02))) for s, g in enumerate(gaps))])
    fig, path = drawn(runs)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    gap, val = fig.axes[:2]
    assert len(fig.axes) == 2 and gap.get_xlabel() == "strength reg.dropout (log scale)"
    lines = _lines(gap)
    assert lines["dropout"][0] == [0.1, 0.3] and lines["dropout"][1] == pytest.approx([0.07, 0.03])
    assert lines["none (dropout=0)"][1] == pytest.approx([0.11, 0.11])  # the baseline: a reference line
    assert _lines(val)["dropout"][1] == pytest.approx([0.93, 0.97])


def test_a_weight_decay_sweep_beside_an_l2_sweep_gets_a_row_each(drawn):
    runs = _runs([{"reg": "none", "gap.acc": 0.1},
                  {"reg": "weight_decay", "weight_decay": 1e-4, "gap.acc": 0.09},
                  {"reg": "weight_decay", "weight_decay": 1e-2, "gap.acc": 0.05},
                  {"reg": "l2", "alpha": 1e-3, "gap.acc": 0.07}])
    fig, _ = drawn(runs)
    assert len(fig.axes) == 4  # rows: reg.alpha, reg.weight_decay (the order of the label's parts)
    alpha, decay = fig.axes[0], fig.axes[2]
    assert alpha.get_xlabel() == "strength reg.alpha (log scale)"
    assert decay.get_xlabel() == "strength reg.weight_decay (log scale)"
    assert set(_lines(alpha)) == {"l2", "none (alpha=0)", "weight_decay (alpha=0)"}
    assert set(_lines(decay)) == {"weight_decay", "none (weight_decay=0)", "l2 (weight_decay=0)"}
    assert _lines(decay)["weight_decay"] == ([1e-4, 1e-2], pytest.approx([0.09, 0.05]))


def test_a_mixed_label_gets_one_curve_per_value_of_its_other_strength_never_an_average_over_it(drawn):
    runs = _runs([{"reg": "elasticnet+dropout", "alpha": a, "dropout": p, "l1_ratio": 0.5, "gap.acc": a * 10 + p}
                  for a in (1e-3, 1e-2) for p in (0.1, 0.3)])
    fig, _ = drawn(runs)
    alpha, _, dropout, _ = fig.axes
    assert _lines(alpha) == {
        "elasticnet+dropout (dropout=0.1)": ([1e-3, 1e-2], pytest.approx([0.11, 0.2])),
        "elasticnet+dropout (dropout=0.3)": ([1e-3, 1e-2], pytest.approx([0.31, 0.4]))}
    assert _lines(dropout) == {
        "elasticnet+dropout (alpha=0.001)": ([0.1, 0.3], pytest.approx([0.11, 0.31])),
        "elasticnet+dropout (alpha=0.01)": ([0.1, 0.3], pytest.approx([0.2, 0.4]))}


def test_an_alpha_sweep_draws_what_it_drew_before_strengths_were_declared(drawn):
    """runs of the README's kind (reg.alpha only in params, as tests/test_report.py writes them):
    one row, l2 against reg.alpha, the baseline a reference line named `(alpha=0)`."""
    runs = pd.DataFrame([{"status": "ok", "dataset": "digits", "model": "mlp", "reg": r, "params.reg.alpha": a,
                          "gap.acc": g, "val_acc": 1 - g}
                         for r, a, g in (("none", 0.0, 0.1), ("l2", 1e-4, 0.08), ("l2", 1e-3, 0.05))])
    fig, _ = drawn(runs)
    gap = fig.axes[0]
    assert len(fig.axes) == 2 and gap.get_xscale() == "log"
    assert _lines(gap) == {"l2": ([1e-4, 1e-3], pytest.approx([0.08, 0.05])), "none (alpha=0)": ([0, 1], [0.1, 0.1])}


def test_without_a_strength_above_zero_nothing_is_drawn_and_the_note_names_the_knobs_recorded(drawn):
    assert drawn(_runs([{"reg": "none", "gap.acc": 0.1}])) == (None, None)
    only_alpha = pd.DataFrame([{"status": "ok", "reg": "l2", "params.reg.alpha": 0.0}])
    assert plots.no_strength(only_alpha) == "its x axis is reg.alpha, and no ok run has reg.alpha > 0"
    assert plots.no_strength(_runs([{"reg": "none", "gap.acc": 0.1}])) == (
        "its x axis is a regularizer's strength (reg.alpha, reg.weight_decay, reg.dropout), and no ok run has one > 0")
    assert plots.no_strength(pd.DataFrame([{"status": "ok", "reg": "none"}])).startswith(
        "its x axis is a regularizer's strength (reg.alpha, reg.weight_decay, reg.dropout, ")


def test_a_real_dropout_sweep_is_reported_against_its_rate(tmp_path, drawn):
    """Two dropout rates and the baseline, trained for real (one tiny stack), collected from
    their folders as `regbench report` collects them."""
    from rich.console import Console

    from regbench.engine import sweep
    from regbench.reporting.collect import collect
    from tests.helpers.configs import TINY, make_cfg

    cfgs = [make_cfg(*TINY, "trainer.max_epochs=2", "dataset.train_size=200", f"reg.dropout={p}")
            for p in (0.0, 0.2, 0.5)]
    results = sweep.train([(c, tmp_path / f"{i}") for i, c in enumerate(cfgs)], Console(quiet=True))
    assert [r["status"] for r in results] == ["ok"] * 3
    runs = collect([tmp_path]).runs
    fig, path = drawn(runs)
    assert path is not None and len(fig.axes) == 2
    lines = _lines(fig.axes[0])
    assert lines["dropout"][0] == [0.2, 0.5] and "none (dropout=0)" in lines
    by_rate = {r["params"]["reg.dropout"]: r["gap"]["acc"] for r in results}
    assert lines["dropout"][1] == pytest.approx([by_rate[0.2], by_rate[0.5]])
