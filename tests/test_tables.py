"""dataset=table: the readers, the task and class names, the encoding against scikit-learn's
ColumnTransformer, no statistic from validation or test rows, and one-line errors."""

from __future__ import annotations

import csv as csvlib
import importlib.resources
import json
import shutil
from io import StringIO

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from regbench import UserInputError
from regbench.data import datasets, files
from regbench.data.datasets import load
from regbench.data.tables import MISSING
from tests.helpers.cli import regbench
from tests.helpers.configs import make_cfg
from tests.helpers.data import people

CPU = torch.device("cpu")
NUMERIC = ["age", "income", "const"]
CATEGORICAL = ["city", "plan"]


def table_cfg(path, *overrides: str):
    return make_cfg("dataset=table", f"dataset.path={path}", "dataset.target=label", "dataset.drop=[id]", *overrides)


def oracle(train: pd.DataFrame) -> ColumnTransformer:
    """scikit-learn's own answer, fitted on the same training rows."""
    ct = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), NUMERIC),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=MISSING),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), CATEGORICAL),
    ])
    return ct.fit(_objects(train))


def _objects(frame: pd.DataFrame) -> pd.DataFrame:
    # scikit-learn's imputer takes text columns as object arrays with NaN for a gap
    frame = frame.copy()
    for c in CATEGORICAL:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    return frame


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "people.csv"
    people().to_csv(path, index=False)
    return path


def test_the_encoding_is_scikit_learns_column_transformer(csv):
    ds = table_cfg(csv, "dataset.train_size=120").dataset
    src = datasets.read(ds)
    train, val, test = datasets.split_rows(src, ds)
    d = load(ds, CPU)
    ct = oracle(src.x.iloc[train])
    assert d.x_train.shape[1] == ct.transform(_objects(src.x.iloc[train[:1]])).shape[1]
    for rows, x in ((train, d.x_train), (val, d.x_val), (test, d.x_test)):
        expected = ct.transform(_objects(src.x.iloc[rows]))
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert d.task == "classification" and d.classes == ["maybe", "no", "yes"] and d.n_outputs == 3
    labels = pd.read_csv(csv)["label"].to_numpy()
    assert [d.classes[i] for i in d.y_val.tolist()] == labels[val].tolist()  # names back, row for row


def test_unseen_categories_and_new_gaps_in_an_official_test_file(tmp_path, csv):
    test = people(60, seed=1)
    test.loc[:9, "city"] = "Atlantis"  # never seen in training: all zeros
    test.loc[10:19, "plan"] = None  # plan has no gap in training: its missing category is unseen too
    test.loc[20:29, "income"] = np.nan  # no indicator for income (no gap in training): imputed only
    test.to_csv(tmp_path / "test.csv", index=False)
    ds = table_cfg(csv, f"dataset.test_path={tmp_path / 'test.csv'}").dataset
    src = datasets.read(ds)
    train, _, rows = datasets.split_rows(src, ds)
    d = load(ds, CPU)
    assert len(d.y_test) == 60 and rows.tolist() == list(range(60))
    expected = oracle(src.x.iloc[train]).transform(_objects(test.drop(columns=["id", "label"])))
    np.testing.assert_allclose(d.x_test.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_no_statistic_comes_from_validation_or_test_rows(tmp_path, csv):
    """Rewriting the validation rows and the test file wildly leaves the training matrix and
    the transform of every other row as they were."""
    test = people(60, seed=1)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = table_cfg(csv, f"dataset.test_path={tmp_path / 'test.csv'}")
    before = load(cfg.dataset, CPU)
    _, val, _ = datasets.split_rows(datasets.read(cfg.dataset), cfg.dataset)
    frame = pd.read_csv(csv)
    wild = frame.copy()
    wild.loc[val, "age"] = 1e6
    wild.loc[val, "income"] = np.nan
    wild.loc[val, "city"] = "Mars"
    wild.loc[val, "plan"] = None
    wild.to_csv(csv, index=False)
    test[["age", "income"]] *= -1000
    test["city"] = "Venus"
    test.to_csv(tmp_path / "test.csv", index=False)
    after = load(cfg.dataset, CPU)
    assert torch.equal(before.x_train, after.x_train) and torch.equal(before.y_train, after.y_train)
    assert not torch.equal(before.x_val, after.x_val) and not torch.equal(before.x_test, after.x_test)
    # the same encoder: rows restored to their old values encode as before
    frame.to_csv(csv, index=False)
    people(60, seed=1).to_csv(tmp_path / "test.csv", index=False)
    again = load(cfg.dataset, CPU)
    for split in ("x_val", "x_test"):
        assert torch.equal(getattr(before, split), getattr(again, split))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".feather", ".csv.gz"])
def test_every_format_reads_the_same_table(tmp_path, csv, suffix):
    frame = pd.read_csv(csv)
    path = tmp_path / f"copy{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".feather":
        frame.to_feather(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    a, b = load(table_cfg(csv).dataset, CPU), load(table_cfg(path).dataset, CPU)
    for split in ("x_train", "y_train", "x_val", "y_test"):
        torch.testing.assert_close(getattr(a, split), getattr(b, split))


def test_a_split_column_marks_the_official_test_rows(tmp_path):
    frame = people()
    frame.insert(1, "fold", np.where(np.arange(len(frame)) % 4 == 0, "test", "train"))
    path = tmp_path / "folds.csv"
    frame.to_csv(path, index=False)
    d = load(table_cfg(path, "dataset.split_column=fold").dataset, CPU)
    assert len(d.y_test) == 60 and len(d.y_train) + len(d.y_val) == 180
    assert [d.classes[i] for i in d.y_test.tolist()] == frame["label"][::4].tolist()
    # the same as the two parts in two files, without the split column
    frame[frame.fold == "train"].drop(columns="fold").to_csv(tmp_path / "train.csv", index=False)
    frame[frame.fold == "test"].drop(columns="fold").to_csv(tmp_path / "test.csv", index=False)
    files = load(table_cfg(tmp_path / "train.csv", f"dataset.test_path={tmp_path / 'test.csv'}").dataset, CPU)
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(d, split), getattr(files, split)), split


@pytest.mark.parametrize(
    "target, values, override, task, n_outputs",
    [
        ("float", np.linspace(0, 1, 240) ** 2, None, "regression", 1),
        ("whole", np.arange(240) % 3 + 1, None, "classification", 3),
        ("many", np.arange(240), None, "regression", 1),
        ("many", np.arange(240) % 30, "classification", "classification", 30),
        ("flag", np.arange(240) % 2 == 0, None, "classification", 2),
    ],
)
def test_the_task_follows_the_target_unless_dataset_task_says(tmp_path, target, values, override, task, n_outputs):
    frame = people().drop(columns="label")
    frame[target] = values
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    cfg = make_cfg("dataset=table", f"dataset.path={path}", f"dataset.target={target}", "dataset.drop=[id]",
                   *([f"dataset.task={override}"] if override else []))
    d = load(cfg.dataset, CPU)
    assert d.task == task and d.n_outputs == n_outputs
    if task == "regression":  # standardised with the training targets, as the bundled regressions
        assert d.classes is None and abs(float(d.y_train.mean())) < 1e-5
    else:
        assert d.y_train.dtype == torch.int64 and len(d.classes) == n_outputs
        assert d.classes[:2] == {"whole": ["1", "2"], "many": ["0", "1"], "flag": ["False", "True"]}[target]


def _write(tmp_path, frame: pd.DataFrame, name: str = "bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "case, overrides, message",
    [
        ("absent target", ["dataset.target=churn"], "dataset.target=churn is not a column; its columns: id, age, city"),
        ("absent drop", ["dataset.drop=[idd]"], "dataset.drop=idd is not a column"),
        ("one class", [], "the target has a single class (yes)"),
        ("no rows", [], "no row is left once the rows without a label are dropped"),
        ("text regression", ["dataset.task=regression"], "dataset.task=regression needs a numeric target"),
        ("bad split", ["dataset.split_column=city"], "its values must be train or test"),
        ("not a table", [], "not a readable csv file"),
        ("lonely class", [], "The least populated classes in y have only 1 member"),
        ("all dropped", ["dataset.drop=[id,age,city,income,const,plan]"], "no feature column is left"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, case, overrides, message):
    frame = people()
    if case == "one class":
        frame["label"] = "yes"
    if case == "no rows":
        frame["label"] = np.nan
    if case == "lonely class":  # no stratified split can hold it
        frame.loc[0, "label"] = "never again"
    path = _write(tmp_path, frame)
    if case == "not a table":
        path.write_bytes(b'a,b\n"unclosed,1\n')
    with pytest.raises(UserInputError) as info:
        load(table_cfg(path, *overrides).dataset, CPU)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset.path=nowhere.csv", "dataset.target=y"], "does not exist; give the path of your CSV, TSV"),
        (["dataset.path=data.xlsx", "dataset.target=y"], "unknown table format '.xlsx'"),
        (["dataset.path=data.csv"], "dataset=table needs dataset.target=COLUMN"),
        (["dataset.target=y"], "dataset=table needs dataset.path=..."),
        (["dataset.path=data.csv", "dataset.target=y", "dataset.image_size=8"], "dataset.image_size applies to dataset=image_folder only"),
        (["dataset.path=data.csv", "dataset.target=y", "dataset.test_path=gone.csv"], "gone.csv does not exist"),
        (["dataset.path=data.csv", "dataset.target=y", "dataset.test_path=data.csv", "dataset.split_column=y"],
         "give dataset.test_path or dataset.split_column for the official test rows, not both"),
        (["dataset.path=data.csv", "dataset.target=y", "dataset.task=guess"], "dataset.task must be one of auto"),
        (["dataset.path=.", "dataset.target=y"], "is a folder; give the CSV, TSV, Parquet or Feather file itself"),
    ],
)
def test_the_config_check_names_the_file_before_anything_runs(tmp_path, monkeypatch, overrides, message):
    from regbench.config.checks import check

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "data.csv").write_text("y,x\n1,2\n")
    problems = check(make_cfg("dataset=table", *overrides), ())
    assert any(message in p for p in problems), problems


def test_too_large_for_memory_names_the_size_it_needs(csv, monkeypatch):
    monkeypatch.setattr(files, "available_memory", lambda device=None: 1000)
    with pytest.raises(UserInputError, match=rf"{csv} needs \d+\.\d KiB in memory but only 1000 B of host memory"):
        load(table_cfg(csv).dataset, CPU)


def test_many_one_hot_columns_are_refused_before_they_are_made(tmp_path, csv, monkeypatch):
    frame = pd.read_csv(csv)
    frame["name"] = [f"customer {i // 2}" for i in range(len(frame))]  # 120 values, each twice: no identifier
    frame.to_csv(csv, index=False)
    monkeypatch.setattr(files, "available_memory", lambda device=None: 200_000)
    with pytest.raises(UserInputError, match=r"its columns encode into \d+ features: dataset.drop the text columns"):
        load(table_cfg(csv).dataset, CPU)
    load(table_cfg(csv, "dataset.drop=[id,name]").dataset, CPU)  # fits once dropped


@pytest.mark.slow
def test_a_run_and_a_stacked_2x2_sweep_on_a_table(tmp_path, csv):
    common = ["dataset=table", f"dataset.path={csv}", "dataset.target=label", "dataset.drop=[id]",
              "trainer.max_epochs=2", "model.hidden_sizes=[16]", "trainer.num_threads=1"]
    out = regbench("run", *common, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").rglob("result.json")]
    assert result["status"] == "ok" and result["task"] == "classification" and result["dataset"] == "table"
    assert result["classes"] == ["maybe", "no", "yes"] and result["epochs_run"] == 2
    assert "classes: 0=maybe, 1=no, 2=yes" in out.stdout
    sweep = regbench("run", "-m", "hydra/launcher=stacked", *common, "reg=l2", "reg.alpha=1e-4,1e-2", "optim.lr=1e-3,1e-2",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    assert "train as one model (4 members)" in sweep.stdout and "sweep done: 4 ok" in sweep.stdout
    results = [json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("result.json")]
    assert len(results) == 4 and all(r["classes"] == ["maybe", "no", "yes"] for r in results)
    assert f"classes of table {csv}: 0=maybe, 1=no, 2=yes" in sweep.stdout  # the sweep's report names them
    assert "dataset.target=label" in sweep.stdout and "dataset.image_size" not in sweep.stdout


@pytest.mark.slow
def test_a_regression_table_runs_with_r2(tmp_path):
    frame = people().drop(columns="label")
    frame["spend"] = frame["income"] * 0.1 + np.arange(len(frame)) * 0.37
    path = tmp_path / "spend.parquet"
    frame.to_parquet(path)
    out = regbench("run", "dataset=table", f"dataset.path={path}", "dataset.target=spend", "dataset.drop=[id]",
                   "trainer.max_epochs=2", "model.hidden_sizes=[16]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").rglob("result.json")]
    assert result["task"] == "regression" and result["metrics"]["test_r2"] is not None and "classes" not in result
    header = next((tmp_path / "outputs" / "runs").rglob("metrics.csv")).read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_r2,val_loss,val_r2,lr,seconds"


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset.path=nowhere.csv"], "nowhere.csv does not exist"),
        (["dataset.path=people.csv", "dataset.target=churn"], "dataset.target=churn is not a column; its columns: id, age"),
    ],
)
def test_the_cli_answers_a_bad_table_in_one_line(tmp_path, overrides, message):
    people().to_csv(tmp_path / "people.csv", index=False)
    out = regbench("run", "dataset=table", "dataset.target=label", *overrides, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("regbench: error: ") and message in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("metrics.csv"))


def test_the_bundled_datasets_keep_their_config_hash_and_merge_with_older_runs(tmp_path, csv):
    """The dataset keys a user's data added, at their defaults, change no bundled run's hash
    (finished results and checkpoints of older versions stay valid), and the report takes
    older runs for the same configuration; a table's path is in its hash."""
    from regbench.engine.runner import new_result
    from regbench.config.keys import OWN_DATA_DEFAULTS
    from regbench.reporting.report import build
    from regbench.reporting.report_format import constants_line
    from regbench.results import config_hash
    from tests.helpers.rundirs import write_run

    for overrides in ([], ["dataset=mnist", "reg=l2"], ["dataset=diabetes", "optim=sgd"]):
        result = new_result(make_cfg(*overrides))
        before = {k: v for k, v in result["params"].items() if k not in OWN_DATA_DEFAULTS}
        assert result["config_hash"] == config_hash(before)
    a = new_result(table_cfg(csv))["config_hash"]
    assert a != new_result(table_cfg(tmp_path / "other.csv"))["config_hash"]
    assert a != new_result(table_cfg(csv, "dataset.task=regression"))["config_hash"]
    new_keys = {k: v for k, v in new_result(make_cfg())["params"].items() if k in OWN_DATA_DEFAULTS}
    for seed in (0, 1):  # the same two runs, recorded before the keys existed and after
        write_run(tmp_path / "old" / str(seed), seed=seed, finished_at="2026-01-01")
        write_run(tmp_path / "new" / str(seed), seed=seed, extra=new_keys, finished_at="2026-02-01")
    report = build([tmp_path / "old", tmp_path / "new"])
    assert len(report.table) == 1 and len(report.duplicates) == 2
    assert "dataset.task" not in constants_line(report) and "dataset.path" not in constants_line(report)


def test_the_report_names_the_classes_of_each_file_unless_they_are_the_indices(tmp_path):
    from regbench.console import result_summary
    from regbench.reporting.report import build
    from regbench.reporting.report_format import class_lines
    from tests.helpers.rundirs import write_run

    for seed in (0, 1):
        write_run(tmp_path / "a" / str(seed), seed=seed, dataset="table", extra={"dataset.path": "/d/churn.csv"},
                  classes=["no", "yes"])
        write_run(tmp_path / "b" / str(seed), seed=seed, dataset="arrays", extra={"dataset.path": "/d/x.npz"},
                  classes=["0", "1", "2"])
        write_run(tmp_path / "c" / str(seed), seed=seed)  # digits: no classes recorded
    assert class_lines(build([tmp_path])) == ["classes of table /d/churn.csv: 0=no, 1=yes"]
    many = [f"c{i}" for i in range(25)]
    write_run(tmp_path / "d" / "0", dataset="table", extra={"dataset.path": "/d/many.csv"}, classes=many)
    assert "classes of table /d/many.csv: 0=c0, 1=c1" in "\n".join(class_lines(build([tmp_path])))
    assert "19=c19, … (25 in all; result.json has them all)" in "\n".join(class_lines(build([tmp_path])))
    result = {"task": "classification", "stopped_early": False, "status": "ok", "params": {}, "best_epoch": 2,
              "epochs_run": 2, "sparsity": 0.0, "n_params": 3, "seconds": 1.0, "device": "cpu"}
    assert "classes: 0=no, 1=yes" in result_summary({**result, "classes": ["no", "yes"]})
    assert "classes" not in result_summary({**result, "classes": ["0", "1"]})


def sklearn_file(name: str, tmp_path):
    """A copy of one of scikit-learn's own data files, with its own first line."""
    source = importlib.resources.files("sklearn.datasets") / "data" / name
    shutil.copy(source, tmp_path / name)
    return tmp_path / name


def fields(path) -> tuple[int, int]:
    """The header's names and the first row's fields, counted by Python's csv module."""
    with open(path, newline="") as f:
        header, first = next(csvlib.reader(f)), next(csvlib.reader(f))
    return len(header), len(first)


# scikit-learn's files start with a line of counts and class names, not one name per field
SKLEARN_FILES = [("breast_cancer.csv", "load_breast_cancer", "benign"), ("wine_data.csv", "load_wine", "class_2")]


@pytest.mark.parametrize("name, loader, target", SKLEARN_FILES)
def test_a_header_with_fewer_names_than_fields_is_refused(tmp_path, name, loader, target):
    from sklearn import datasets as skd

    path = sklearn_file(name, tmp_path)
    names, n_fields = fields(path)
    assert n_fields == getattr(skd, loader)().data.shape[1] + 1  # features and target, by scikit-learn's loader
    assert pd.read_csv(path).shape[1] == names  # what pandas silently does: the leading fields become an index
    with pytest.raises(UserInputError) as info:
        load(make_cfg("dataset=table", f"dataset.path={path}", f"dataset.target={target}").dataset, CPU)
    text = str(info.value)
    assert text.startswith(f"{path}: its header has {names} names but its rows have {n_fields} fields") and "\n" not in text
    assert "add a header row with one name per field" in text and f"dataset.index_col={n_fields - names}" in text


@pytest.mark.parametrize("name, loader, target", SKLEARN_FILES)
def test_the_same_file_with_a_header_gives_every_feature_and_says_so(tmp_path, name, loader, target):
    from sklearn import datasets as skd

    bunch = getattr(skd, loader)()
    n, d = bunch.data.shape
    path = sklearn_file(name, tmp_path)
    rows = path.read_text().splitlines()[1:]
    path.write_text("\n".join([",".join([*(f"f{i}" for i in range(d)), "y"]), *rows]) + "\n")
    data = load(make_cfg("dataset=table", f"dataset.path={path}", "dataset.target=y").dataset, CPU)
    k = len(np.unique(bunch.target))
    assert data.x_train.shape[1] == d and data.n_outputs == k
    assert data.summary["line"] == f"table {name}: {n} rows, {d + 1} columns -> {d} features, {k} classes"
    assert (data.summary["rows"], data.summary["features"], data.summary["classes"]) == (n, d, k)


def test_index_col_sets_aside_row_labels_the_header_does_not_name(tmp_path, csv):
    from regbench.config.checks import check

    frame = people()
    labelled = tmp_path / "labelled.csv"  # R's write.table: row names first, no name for them in the header
    frame.set_index(pd.Index([f"row{i}" for i in range(len(frame))])).to_csv(labelled, index=True, header=False)
    labelled.write_text(",".join(frame.columns) + "\n" + labelled.read_text())
    with pytest.raises(UserInputError, match=r"its header has 7 names but its rows have 8 fields.*index_col=1"):
        load(table_cfg(labelled).dataset, CPU)
    plain = load(table_cfg(csv).dataset, CPU)
    data = load(table_cfg(labelled, "dataset.index_col=1").dataset, CPU)
    assert all(torch.equal(getattr(data, k), getattr(plain, k)) for k in ("x_train", "y_train", "x_test", "y_test"))
    assert data.summary["line"].endswith("; set aside: id (dataset.drop); 1 leading index field set aside (dataset.index_col)")
    with pytest.raises(UserInputError, match=r"dataset.index_col=2 but its header has 7 names and its rows have 8 "
                                             r"fields \(1 leading field without a name\); set dataset.index_col=1"):
        load(table_cfg(labelled, "dataset.index_col=2").dataset, CPU)
    trailing = tmp_path / "trailing.csv"  # a separator at the end of each row: no index, but the same shift
    trailing.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]},\n" for i in range(40)))
    with pytest.raises(UserInputError, match=r"its header has 3 names but its rows have 4 fields, the last one "
                                             r"empty: .*; remove the separator that ends each row$"):
        load(make_cfg("dataset=table", f"dataset.path={trailing}", "dataset.target=label").dataset, CPU)
    with pytest.raises(UserInputError, match=r"dataset.index_col=1 but its header names every field"):
        load(table_cfg(csv, "dataset.index_col=1").dataset, CPU)
    frame.to_parquet(tmp_path / "people.parquet")
    with pytest.raises(UserInputError, match="dataset.index_col applies to CSV and TSV files only"):
        load(table_cfg(tmp_path / "people.parquet", "dataset.index_col=1").dataset, CPU)
    assert "dataset.index_col must be >= 1" in " ".join(check(table_cfg(csv, "dataset.index_col=0"), ()))
    arrays = make_cfg("dataset=arrays", f"dataset.path={tmp_path / 'x.npz'}", "dataset.index_col=1")
    assert "dataset.index_col applies to dataset=table only" in check(arrays, ())


def test_an_id_column_is_refused_naming_it_and_the_drop_that_fixes_it(tmp_path, csv):
    frame = people()
    frame["name"] = [f"customer {i}" for i in range(len(frame))]  # text, all distinct
    frame.to_csv(csv, index=False)
    with pytest.raises(UserInputError) as info:
        load(table_cfg(csv).dataset, CPU)
    n_train = len(datasets.split_rows(datasets.read(table_cfg(csv, "dataset.drop=[id,name]").dataset),
                                      table_cfg(csv).dataset)[0])
    assert str(info.value) == (f"{csv}: column name ({n_train} distinct values) of {n_train} training rows looks like "
                               "an identifier or free text: one-hot encoded, each value would be a feature that "
                               "almost no validation or test row shares; set it aside with dataset.drop=[id,name]")
    load(table_cfg(csv, "dataset.drop=[id,name]").dataset, CPU)
    load(table_cfg(csv, "dataset.drop=[name]").dataset, CPU)  # a numeric id is never taken for one


def test_a_small_category_column_is_no_identifier_and_free_text_is_warned_about(tmp_path):
    rng = np.random.default_rng(1)
    small = pd.DataFrame({"shade": [f"s{i % 5}" for i in range(30)], "x": rng.normal(size=30),
                          "label": ["a", "b"] * 15})
    small.to_csv(tmp_path / "small.csv", index=False)
    d = load(make_cfg("dataset=table", f"dataset.path={tmp_path / 'small.csv'}", "dataset.target=label").dataset, CPU)
    assert d.summary["one_hot"] == {"shade": 5} and d.summary["warnings"] == []
    assert d.summary["line"] == "table small.csv: 30 rows, 3 columns -> 6 features (shade -> 5), 2 classes"
    frame = people()
    frame["note"] = [f"a long comment written about customer number {i % 150}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "notes.csv", index=False)
    d = load(table_cfg(tmp_path / "notes.csv").dataset, CPU)
    (warning,) = d.summary["warnings"]
    k = d.summary["one_hot"]["note"]
    assert warning.startswith(f"{tmp_path / 'notes.csv'}: column note looks like free text ({k} distinct values of ")
    assert warning.endswith(f"one-hot encoded into {k} features; set it aside with dataset.drop=[id,note] "
                            "unless it is a category")


def test_the_summary_counts_rows_columns_and_features_as_scikit_learn_encodes_them(tmp_path):
    frame = people()
    frame.loc[[5, 17, 40], "label"] = None  # no target: dropped, and said so
    test = people(60, seed=1)
    frame.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    ds = table_cfg(tmp_path / "train.csv", f"dataset.test_path={tmp_path / 'test.csv'}").dataset
    src = datasets.read(ds)
    train = datasets.split_rows(src, ds)[0]
    ct = oracle(src.x.iloc[train])
    width = ct.transform(_objects(src.x.iloc[train[:1]])).shape[1]
    one_hot = {c: len(k) for c, k in zip(CATEGORICAL, ct.named_transformers_["cat"][-1].categories_)}
    flags = len(ct.named_transformers_["num"][0].indicator_.features_)
    s = load(ds, CPU).summary
    assert (s["features"], s["one_hot"], s["missing_indicators"]) == (width, one_hot, flags)
    assert (s["rows"], s["test_rows"], s["rows_without_target"], s["columns"]) == (240, 60, 3, 7)
    assert s["line"] == (f"table train.csv + test.csv: 240 rows + 60 test rows, 7 columns -> {width} features "
                         f"(city -> {one_hot['city']}, plan -> {one_hot['plan']}, {flags} missing-value indicator"
                         f"{'s' * (flags > 1)}), 3 classes; 3 rows without a label dropped; set aside: id (dataset.drop)")
    assert load(make_cfg().dataset, CPU).summary is None  # a bundled dataset has none


def test_a_run_and_a_stack_record_the_summary_and_print_it_once(tmp_path, csv):
    from rich.console import Console

    from regbench.engine import sweep
    from regbench.engine.runner import run

    common = ["trainer.max_epochs=1", "model.hidden_sizes=[8]"]
    out = StringIO()
    result = run(table_cfg(csv, *common), tmp_path / "lone", Console(file=out, width=80))
    line = load(table_cfg(csv).dataset, CPU).summary["line"]
    assert result["status"] == "ok" and result["data_summary"]["line"] == line
    assert json.loads((tmp_path / "lone" / "result.json").read_text())["data_summary"] == result["data_summary"]
    assert out.getvalue().count(line + "\n") == 1
    out = StringIO()
    jobs = [(table_cfg(csv, *common, f"reg=l2", f"reg.alpha={a}"), tmp_path / f"m{a}") for a in (1e-4, 1e-2)]
    results = sweep.train(jobs, Console(file=out, width=80))
    assert out.getvalue().count(line) == 1  # one load, one line, for the whole stack
    assert [r["data_summary"]["line"] for r in results] == [line, line]
    assert all(json.loads((d / "result.json").read_text())["data_summary"]["line"] == line for _, d in jobs)
    bundled = run(make_cfg(*common), tmp_path / "digits", Console(file=StringIO(), width=80))
    assert "data_summary" not in bundled


@pytest.mark.slow
def test_the_cli_prints_the_summary_and_refuses_a_short_header_in_one_line(tmp_path):
    path = sklearn_file("breast_cancer.csv", tmp_path)
    out = regbench("run", "dataset=table", f"dataset.path={path}", "dataset.target=benign", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith(f"regbench: error: {path}: its header has 4 names but its "
                                                         "rows have 31 fields")
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    rows = path.read_text().splitlines()[1:]
    path.write_text("\n".join([",".join([*(f"f{i}" for i in range(30)), "y"]), *rows]) + "\n")
    out = regbench("run", "dataset=table", f"dataset.path={path}", "dataset.target=y", "trainer.max_epochs=1",
                   "model.hidden_sizes=[8]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "table breast_cancer.csv: 569 rows, 31 columns -> 30 features, 2 classes\n" in out.stdout
