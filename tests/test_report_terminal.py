"""What a reader of `regbench report` sees (issue 23, "Terminal and files"): the table fitted to
a real terminal (a pty of 80, 100 and 120 columns) and whole in a pipe, rows grouped by dataset
and model in every output, a missing baseline said in one line, and a constants line of what
changes a result."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pandas as pd
import pytest

from regbench.reporting.report import build
from regbench.reporting.report_command import main
from regbench.reporting.report_format import constants_line, markdown, write
from tests.helpers.cli import regbench
from tests.helpers.configs import REPO
from tests.helpers.rundirs import write_run

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_pty(args: list[str], columns: int, cwd: Path) -> str:
    """The output of `regbench ARGS` run in a pseudo-terminal of `columns` x 50 (set with
    TIOCSWINSZ, as a terminal emulator does), escape codes removed; stderr included."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # the pty's size, nothing else
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "regbench", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return ANSI.sub("", b"".join(chunks).decode().replace("\r\n", "\n"))


def table_part(text: str) -> list[str]:
    """The lines of the printed table (title to bottom rule, or the records), before the constants."""
    return text.split("constant in every run")[0].rstrip("\n").splitlines()


@pytest.fixture(scope="module")
def user_sweep(tmp_path_factory) -> Path:
    """A real sweep: three datasets, a user regularizer (examples/user_regularizer's max-norm)
    beside none and l2, two seeds, a few epochs."""
    root = tmp_path_factory.mktemp("user_sweep")
    out = regbench("run", "-m", "--config-dir", str(REPO / "examples" / "user_regularizer"), "hydra/launcher=stacked",
                   "dataset=wine,digits,breast_cancer", "reg=none,l2,maxnorm", "seed=0,1", "trainer.max_epochs=2",
                   "dataset.train_size=100", "model.hidden_sizes=[16]", "hydra.sweep.dir=sweep", cwd=root)
    assert out.returncode == 0, out.stderr
    return root / "sweep"


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 100, 120])
def test_the_table_fits_a_real_terminal(user_sweep, tmp_path, columns):
    text = in_pty(["report", str(user_sweep), "--out", str(tmp_path / "o")], columns, tmp_path)
    lines = table_part(text)
    assert len(lines) > 5 and max(len(line) for line in lines) <= columns, "\n".join(lines)
    footer = next(line for line in text.splitlines() if "-column terminal" in line)
    assert footer.startswith(f"for a {columns}-column terminal: ")
    assert "report.csv has every column" in footer
    body = "\n".join(lines)
    for dataset in ("wine", "digits", "breast_cancer"):
        assert dataset in body
    assert "maxnorm" in body and re.search(r"\d\.\d{4}", body)
    # the three datasets as three groups, in the sweep's order, with a rule between them
    order = [d for line in lines for d in ("wine", "digits", "breast_cancer") if f" {d} " in line]
    assert order == ["wine"] * 3 + ["digits"] * 3 + ["breast_cancer"] * 3
    assert sum(line.startswith("├") for line in lines) == 2
    if columns == 80:
        assert "means without their 95% CI" in footer and "±" not in body


@pytest.mark.slow
def test_a_pipe_gets_the_whole_table(user_sweep, tmp_path):
    out = regbench("report", str(user_sweep), "--out", str(tmp_path / "o"), cwd=tmp_path,
                   env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0
    lines = table_part(out.stdout)
    header = " ".join(lines[:6])
    for column in ("reg.alpha", "reg.extra.maxnorm.max_norm", "test_acc (95% CI)", "gap.loss (95% CI)",
                   "test_ece (95% CI)", "test_brier (95% CI)", "sparsity (95% CI)", "epochs", "d_z",
                   "p Holm (t-test / Wilcoxon)", "pairs"):
        assert column in header, column
    assert "-column terminal" not in out.stdout  # nothing was fitted, so nothing to say
    assert max(len(line.rstrip()) for line in lines) > 200  # wider than 80, and not wrapped at 250 either
    assert all(line.count("│") in (0, 20) for line in lines[3:])  # every row on one line: 19 columns


@pytest.mark.slow
def test_a_terminal_too_narrow_for_any_table_gets_one_record_per_row(user_sweep, tmp_path):
    text = in_pty(["report", str(user_sweep), "--out", str(tmp_path / "o")], 60, tmp_path)
    lines = table_part(text)
    assert "for a 60-column terminal: one record per row" in text
    assert max(len(line) for line in lines) <= 60
    assert sum(bool(re.match(r"\d+\. (none|l2|maxnorm)$", line)) for line in lines) == 9
    assert any(re.fullmatch(r" +val_acc \(95% CI\) +\d\.\d{4} ± \d\.\d{4}", line) for line in lines)


def interleaved(root: Path) -> Path:
    """Three datasets written in an interleaved order, the baseline of each not its best."""
    vals = {"wine": (0.6, 0.7), "digits": (0.95, 0.9), "breast_cancer": (0.8, 0.85)}
    for seed in (0, 1):
        for reg, alpha, i in (("none", 0.0, 0), ("l2", 1e-3, 1)):
            for d in ("wine", "digits", "breast_cancer"):
                write_run(root / f"{d}-{reg}-{seed}", reg=reg, alpha=alpha, dataset=d, seed=seed,
                          val=vals[d][i] + seed / 100, extra={"dataset.name": d})
    return root


# the groups in the order the runs are read (their folders' names), each best validation first
EXPECTED = [("breast_cancer", "l2"), ("breast_cancer", "none"), ("digits", "none"), ("digits", "l2"),
            ("wine", "l2"), ("wine", "none")]


def test_rows_are_grouped_by_dataset_and_sorted_within_in_every_output(tmp_path):
    from io import StringIO

    from rich.console import Console

    from regbench.reporting.report_format import render

    report = build([interleaved(tmp_path / "runs")])
    assert list(report.table.columns[:3]) == ["dataset.name", "reg.alpha", "reg"]  # the group leads
    files = write(report, tmp_path / "out", "md")
    csv = pd.read_csv(files[1])
    assert list(zip(csv["dataset.name"], csv["reg"])) == EXPECTED
    found = lambda text: re.findall(r"(wine|digits|breast_cancer)\W+[\w.e-]+\W+(none|l2)\b", text)  # noqa: E731
    assert found(markdown(report)) == EXPECTED == found((tmp_path / "out" / "report.md").read_text())
    page = (tmp_path / "out" / "report.html").read_text()
    # the page names each group once, in the row that heads it (issue 23, item 8), its rows' label first
    on_page = [(group, re.findall(r'<tr><td class="text">(\w+)</td>', rows)[i])
               for group, rows in re.findall(r'<tbody><tr class="group"><th [^>]*>dataset\.name = (\w+)</th></tr>(.*?)</tbody>',
                                             page)
               for i in range(len(re.findall(r'<tr><td class="text">', rows)))]
    assert on_page == EXPECTED
    out = StringIO()
    render(report, Console(file=out, width=200, force_terminal=True, color_system=None))
    printed = out.getvalue()
    assert found(printed) == EXPECTED
    assert "grouped by dataset.name, best validation first in each" in printed
    assert printed.count("├") == 2  # a rule between two groups
    # the numbers are those of the runs, only their order moved
    assert dict(zip(zip(csv["dataset.name"], csv["reg"]), csv["val_acc.mean"])) == pytest.approx(
        {("wine", "none"): 0.605, ("wine", "l2"): 0.705, ("digits", "none"): 0.955, ("digits", "l2"): 0.905,
         ("breast_cancer", "none"): 0.805, ("breast_cancer", "l2"): 0.855})


def test_rows_are_grouped_by_model_too(tmp_path):
    for seed in (0, 1):
        for model, vals in (("mlp", (0.7, 0.8)), ("linear", (0.9, 0.6))):
            for reg, alpha, val in (("none", 0.0, vals[0]), ("l2", 1e-3, vals[1])):
                write_run(tmp_path / f"{model}-{reg}-{seed}", reg=reg, alpha=alpha, seed=seed, val=val,
                          extra={"model.name": model})
    t = build([tmp_path]).table
    assert list(zip(t["model.name"], t["reg"])) == [("linear", "none"), ("linear", "l2"), ("mlp", "l2"),
                                                    ("mlp", "none")]


def test_a_report_without_the_baseline_says_how_to_add_it(tmp_path, capsys):
    for seed in (0, 1):
        write_run(tmp_path / f"l1-{seed}", reg="l1", alpha=1e-3, seed=seed, val=0.9, extra={"reg.l1_ratio": 1.0})
        write_run(tmp_path / f"l2-{seed}", reg="l2", alpha=1e-3, seed=seed, val=0.8, extra={"reg.l1_ratio": 0.0})
    report = build([tmp_path])
    assert report.notes == ["no run is labelled none, the baseline (the labels here: l1, l2): Δ, d_z and p-values "
                            "need it; run it as its own sweep, `regbench run -m reg=none` with the same overrides but "
                            "no reg.* one, and merge the two (`regbench report SWEEP BASELINE`), or compare with "
                            "another label: --baseline LABEL"]
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "baseline" in line] == [f"regbench: warning: {report.notes[0]}"]
    assert f"Note: {report.notes[0]}" in markdown(report)
    # with the baseline, or another label chosen, no such line
    assert build([tmp_path], baseline="l2").notes == []
    write_run(tmp_path / "none-0", seed=0, val=0.7)
    assert build([tmp_path]).notes == []


@pytest.mark.slow
def test_a_sweep_that_turns_none_into_a_penalty_warns_when_it_starts(tmp_path):
    out = regbench("run", "-m", "reg=none,l1", "reg.alpha=1e-4,1e-3", "trainer.max_epochs=1", "dataset.train_size=100",
                   "model.hidden_sizes=[8]", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    starts = [line for line in err if "reg=none is not the baseline" in line]
    assert starts == ["regbench: warning: reg=none is not the baseline in 2 of 4 jobs (e.g. `reg=none reg.alpha=0.0001 "
                      "trainer.max_epochs=1 dataset.train_size=100 model.hidden_sizes=[8]` runs as elasticnet): a reg.* "
                      "override applies to every preset of a sweep, reg=none included, so the report has no baseline "
                      "for Δ, d_z and p-values; run reg=none as its own sweep and merge the two "
                      "(`regbench report SWEEP BASELINE`)"]
    assert len(list((tmp_path / "sweep").glob("*/result.json"))) == 4  # a warning, not a refusal
    assert sum("no run is labelled none" in line for line in err) == 1  # and the report says it again, once
    # a sweep whose reg=none stays the baseline says nothing of the kind; nor one that sweeps
    # reg.alpha over the default preset without naming reg=none (the report says there is no baseline)
    out = regbench("run", "-m", "reg=none,l1", "trainer.max_epochs=1", "dataset.train_size=100",
                   "model.hidden_sizes=[8]", "hydra.sweep.dir=plain", cwd=tmp_path)
    assert out.returncode == 0 and "baseline" not in out.stderr
    out = regbench("run", "-m", "reg.alpha=1e-4,1e-3", "trainer.max_epochs=1", "dataset.train_size=100",
                   "model.hidden_sizes=[8]", "hydra.sweep.dir=default", cwd=tmp_path)
    assert out.returncode == 0 and "reg=none is not the baseline" not in out.stderr
    assert "regbench: warning: no run is labelled none" in out.stderr


def test_the_constants_line_leaves_out_what_never_changes_a_result(tmp_path):
    from regbench.config.keys import KEYS

    kept = {"trainer.checkpoint_seconds": 30, "overwrite": False, "keep_checkpoint": False, "save_model": False,
            "search.seeds": 1, "trainer.num_threads": "auto", "reg.l1_ratio": 0.5, "reg.l1_proximal": True,
            "trainer.patience": 10, "reg.dropout": 0.0}
    for seed in (0, 1):
        write_run(tmp_path / "none" / str(seed), seed=seed, extra=kept)
        write_run(tmp_path / "dropout" / str(seed), reg="dropout", seed=seed, extra={**kept, "reg.dropout": 0.5})
    line = constants_line(build([tmp_path]))
    assert "trainer.patience=10" in line and "dataset.name=digits" in line
    assert "reg.alpha" not in line  # the elastic net acts in no run (alpha 0 everywhere): the reg column says so
    for key in ("checkpoint_seconds", "overwrite", "keep_checkpoint", "save_model", "search.seeds", "num_threads"):
        assert key not in line, key
        assert not KEYS[key if "." in key or key in KEYS else f"trainer.{key}"].computed
    # every run's alpha is 0: the elastic net's shape (l1_ratio, l1_proximal) changes nothing
    assert "l1_ratio" not in line and "l1_proximal" not in line
    for seed in (0, 1):
        write_run(tmp_path / "l2" / str(seed), reg="l2", alpha=1e-3, seed=seed, extra=kept)
    line = constants_line(build([tmp_path]))
    assert "reg.l1_ratio=0.5" in line and "reg.l1_proximal=true" in line


def test_the_constants_line_leaves_out_the_knobs_of_a_regularizer_no_run_uses(tmp_path):
    """A regularizer off in every run (its label part None: `reg.swa=0`, mixing with both rates 0,
    batch norm on model=linear) is named by no run's `reg`; its knobs would only lengthen the
    line. One that acts in every run keeps them (`reg.dropout=0.5`), and so does one off in some
    runs only (then its knobs vary or are worth stating)."""
    off = {"reg.swa": 0.0, "reg.swa_lr": 0.0, "reg.mixup": 0.0, "reg.cutmix": 0.0, "reg.mix_prob": 1.0,
           "reg.batchnorm": True, "model.name": "linear", "reg.dropout": 0.5, "reg.ema": 0.0}
    for seed in (0, 1):
        write_run(tmp_path / "a" / str(seed), reg="dropout", seed=seed, extra=off)
    line = constants_line(build([tmp_path]))
    assert "reg.dropout=0.5" in line and "model.name=linear" in line
    for key in ("reg.swa", "reg.mixup", "reg.cutmix", "reg.mix_prob", "reg.batchnorm", "reg.ema", "reg.alpha"):
        assert f"{key}=" not in line, key
    for seed in (0, 1):  # EMA on in two more runs: its knob varies, and is no constant
        write_run(tmp_path / "b" / str(seed), reg="dropout+ema", seed=seed, extra={**off, "reg.ema": 0.999})
    line = constants_line(build([tmp_path]))
    assert "reg.ema" not in line and "reg.dropout=0.5" in line and "reg.swa=" not in line


def test_the_l1_ratio_applies_only_where_alpha_is_on_by_its_own_declaration():
    from regbench.config.keys import KEYS
    from regbench.regularizers.elasticnet import ElasticNet

    shape = {k.name: k.only_when_on for k in ElasticNet.knobs}
    assert shape == {"alpha": False, "l1_ratio": True, "l1_proximal": True}
    assert KEYS["reg.l1_ratio"].applies.owner == "reg.alpha" and KEYS["reg.l1_ratio"].hashed == "always"


def test_reporting_names_no_regularizer_nor_knob():
    """Issue 22's rule: what a regularizer is, and when its knobs apply, is declared by it; the
    reporting layer derives the constants line from the key table, naming none of them."""
    from regbench.regularizers import builtin

    names = {cls.name for cls in builtin()} | {k.name for cls in builtin() for k in cls.knobs}
    names -= {"none"}
    reporting = REPO / "regbench" / "reporting"
    for path in [*reporting.glob("report*.py"), reporting / "aggregate.py"]:
        # docstrings and comments may name them
        code = re.sub(r'""".*?"""|#[^\n]*', "", path.read_text(), flags=re.S)
        words = set(re.findall(r"[\"'.]([a-z_0-9]+)[\"']", code))
        assert not names & words, (path.name, names & words)


def test_columns_left_out_come_back_where_the_room_allows(tmp_path):
    """Dropping the CI halves frees room: the `early best †` marks, left out one step before,
    come back at 80 columns; at 100, d_z comes back once gap.loss and the test metric are out."""
    from io import StringIO

    from rich.console import Console

    from regbench.reporting.report_format import render

    for seed in (0, 1, 2):
        write_run(tmp_path / f"none{seed}", seed=seed, val=0.9 + seed / 100, early_best=False,
                  extra={"trainer.patience": 10})
        for alpha in (1e-4, 1e-3, 1e-2):
            write_run(tmp_path / f"l1-{alpha}-{seed}", reg="l1", alpha=alpha, seed=seed, val=0.4 + seed / 50 + alpha,
                      early_best=seed < 2 and alpha == 1e-2, best_epoch=1,
                      extra={"trainer.patience": 10, "reg.l1_ratio": 1.0})
    report = build([tmp_path])
    printed = {}
    for width in (80, 100):
        out = StringIO()
        render(report, Console(file=out, width=width, force_terminal=True, color_system=None))
        printed[width] = out.getvalue()
        assert max(len(line) for line in table_part(printed[width])) <= width
    table80, footer80 = table_part(printed[80]), printed[80].strip().splitlines()[-1]
    assert "┃ †   ┃" in table80[2] and any("│ 2/3 │" in line for line in table80)
    assert "means without their 95% CI" in footer80 and "early best" not in footer80
    assert "† runs whose reported (best) epoch" in printed[80]
    footer100 = printed[100].strip().splitlines()[-1]
    assert " d_z " in table_part(printed[100])[2] and "left out d_z" not in footer100
    assert "left out test_acc (95% CI)" in footer100 and "means without" not in footer100


def test_the_pivot_names_its_metric_in_every_output_and_the_page_keeps_the_class_names(tmp_path):
    """Issue 23, item 7: pivot.csv's `metric` column, the pivot's title on the page and in
    report.md (which --format md now also holds), and the class-name lines the terminal prints
    on the page too."""
    classes = ["cat", "dog", "eel"]
    for reg, alpha in (("none", 0.0), ("l2", 1e-3)):
        for seed in (0, 1):
            write_run(tmp_path / "runs" / f"{reg}{seed}", reg=reg, alpha=alpha, seed=seed, dataset="table",
                      extra={"dataset.path": "/data/pets.csv"}, classes=classes)
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs"), "--out", str(out), "--format", "md", "--pivot", "reg.alpha",
                 "--metric", "gap.acc"]) == 0
    pivot = pd.read_csv(out / "pivot.csv")
    assert list(pivot.columns)[:2] == ["metric", "reg"] and set(pivot["metric"]) == {"gap.acc"}
    md = (out / "report.md").read_text()
    assert "## Pivot: gap.acc, mean ± std across seeds" in md and "| reg | reg.alpha=0 | reg.alpha=0.001 |" in md
    page = (out / "report.html").read_text()
    assert "Pivot: gap.acc, mean ± std across seeds" in page
    assert "classes of table /data/pets.csv: 0=cat, 1=dog, 2=eel" in page and "0=cat, 1=dog, 2=eel" in md
