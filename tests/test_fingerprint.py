"""Data fingerprints: a run on an edited file of a user's is another run (not skipped, its
checkpoint not resumed, not merged with the old runs in a report); the bundled datasets keep
their hashes; the digest cache trusts size and times and rehashes on a mismatch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from regbench.data import fingerprint
from regbench.results import flatten, identity
from tests.helpers.cli import regbench
from tests.helpers.configs import make_cfg

SMALL = ["trainer.max_epochs=3", "model.hidden_sizes=[16]", "trainer.num_threads=1"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Every test hashes into its own cache folder, never the user's."""
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fingerprint.REHASH_ENV, raising=False)


def write_table(path: Path, seed: int = 0, n: int = 300) -> Path:
    """Two informative columns, two noise columns and a label the informative ones decide."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "label": y}).to_csv(path, index=False)
    return path


def shuffle_labels(path: Path, seed: int = 1) -> None:
    frame = pd.read_csv(path)
    frame["label"] = np.random.default_rng(seed).permutation(frame["label"].to_numpy())
    frame.to_csv(path, index=False)


def table_cfg(path: Path, *overrides: str):
    return make_cfg("dataset=table", f"dataset.path={path}", "dataset.target=label", "model.hidden_sizes=[16]",
                    "trainer.max_epochs=3", *overrides)


def params_of(cfg) -> dict:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


# --- the bundled datasets keep their hashes -------------------------------------------------

# Recorded with the code on main at commit 6a5dcec, before data fingerprints existed
# (regbench.results.config_hash of the flattened composed config, device=cpu): run folders of
# the bundled datasets written then must keep resuming and merging.
BUNDLED_HASHES = {
    (): "2d4f331994c4289d",
    ("reg=l2", "reg.alpha=1e-3"): "281b434e37bf0828",
    ("dataset=mnist", "reg=[dropout,batchnorm]"): "d2eac6f29ebe42cc",
    ("dataset=diabetes", "model=linear", "reg=l1"): "675047829f1b5d27",
    ("dataset=breast_cancer", "optim=sgd", "optim.schedule=cosine"): "a8a1e45e3750eb04",
}


@pytest.mark.parametrize("overrides", list(BUNDLED_HASHES))
def test_the_bundled_datasets_keep_the_hash_they_had_before_fingerprints(overrides):
    from regbench.engine.runner import new_result

    digest, data = identity(params_of(make_cfg(*overrides)))
    assert data is None and digest == BUNDLED_HASHES[overrides]
    result = new_result(make_cfg(*overrides))
    assert result["config_hash"] == BUNDLED_HASHES[overrides] and "data_fingerprint" not in result


def test_a_tables_identity_is_its_files_content(tmp_path):
    csv = write_table(tmp_path / "data.csv")
    test = write_table(tmp_path / "test.csv", seed=5, n=50)
    digest, data = identity(params_of(table_cfg(csv)))
    assert data["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()  # what sha256sum prints
    assert data["files"] == {"dataset.path": {"path": str(csv), "sha256": data["sha256"]}}
    both = identity(params_of(table_cfg(csv, f"dataset.test_path={test}")))[1]
    assert both["files"]["dataset.test_path"]["sha256"] == hashlib.sha256(test.read_bytes()).hexdigest()
    npz = tmp_path / "data.npz"
    np.savez(npz, x=np.zeros((4, 2)), y=np.arange(4) % 2)
    arrays = identity(params_of(make_cfg("dataset=arrays", f"dataset.path={npz}")))[1]
    assert arrays["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    shuffle_labels(csv)
    assert identity(params_of(table_cfg(csv)))[0] != digest
    assert identity(params_of(table_cfg(csv, f"dataset.test_path={test}")))[1]["sha256"] != both["sha256"]


# --- the digest cache -----------------------------------------------------------------------

def counting(monkeypatch) -> list[Path]:
    """Records every file the fingerprint module actually reads."""
    read, real = [], fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda p: read.append(p) or real(p))
    return read


def test_a_rerun_reads_no_file_and_touching_one_keeps_its_fingerprint(tmp_path, monkeypatch):
    csv = write_table(tmp_path / "data.csv")
    read = counting(monkeypatch)
    first = fingerprint.digest(csv)
    assert first == hashlib.sha256(csv.read_bytes()).hexdigest() and read == [csv]
    assert fingerprint.digest(csv) == first and read == [csv]  # size and times match: the cache answers
    st = csv.stat()
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, content unchanged
    assert fingerprint.digest(csv) == first and read == [csv, csv]  # read again, same digest


def test_new_content_of_the_same_size_and_mtime_is_still_seen(tmp_path):
    """Writing a file sets its ctime, which no user tool can set back: the cache is not fooled
    by a file rewritten at the same size with its mtime restored (cp -p, rsync -t)."""
    csv = write_table(tmp_path / "data.csv")
    before, st = fingerprint.digest(csv), csv.stat()
    text = csv.read_bytes()
    csv.write_bytes(text.replace(b"yes", b"YES", 1))
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert csv.stat().st_size == st.st_size and csv.stat().st_mtime_ns == st.st_mtime_ns
    assert fingerprint.digest(csv) == hashlib.sha256(csv.read_bytes()).hexdigest() != before


def test_a_matching_stamp_is_trusted_and_regbench_rehash_reads_every_file_again(tmp_path, monkeypatch):
    """The cache's known limit, shown with a forged entry (as a file changed with its size,
    mtime and ctime kept would leave it): the stamp matches, so the cached digest is believed;
    REGBENCH_REHASH=1 reads the file and repairs the entry."""
    csv = write_table(tmp_path / "data.csv")
    true = fingerprint.digest(csv)
    entry = fingerprint._cache_file(csv)
    record = json.loads(entry.read_text())
    entry.write_text(json.dumps({**record, "sha256": "0" * 64}))
    assert fingerprint.digest(csv) == "0" * 64
    monkeypatch.setenv(fingerprint.REHASH_ENV, "1")
    assert fingerprint.digest(csv) == true
    monkeypatch.delenv(fingerprint.REHASH_ENV)
    assert fingerprint.digest(csv) == true


def test_the_cache_lies_in_regbenchs_cache_folder_and_an_unwritable_one_only_costs_a_rehash(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    csv = write_table(data / "data.csv")
    fingerprint.digest(csv)
    assert sorted(p.name for p in data.iterdir()) == ["data.csv"]  # nothing beside the data
    assert list((tmp_path / "cache" / "fingerprints").glob("*.json"))
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "not_a_folder"))
    assert fingerprint.digest(csv) == hashlib.sha256(csv.read_bytes()).hexdigest()


def test_an_image_folders_fingerprint_follows_its_images(tmp_path):
    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(f"{cls}{i}".encode())
    first = fingerprint.digest(root)
    (root / "cat" / "notes.txt").write_text("not an image")  # not read by regbench: no new version
    assert fingerprint.digest(root) == first
    shutil.move(root / "cat" / "1.png", root / "dog" / "9.png")  # relabelled
    moved = fingerprint.digest(root)
    assert moved != first
    (root / "dog" / "0.png").write_bytes(b"dog0 edited")
    assert fingerprint.digest(root) not in (first, moved)
    digest, data = identity(params_of(make_cfg("dataset=image_folder", f"dataset.path={root}")))
    assert data["sha256"] == fingerprint.digest(root)


# --- a rerun on edited data -----------------------------------------------------------------

@pytest.mark.slow
def test_a_rerun_after_the_labels_were_shuffled_runs_again_and_says_why(tmp_path):
    csv = write_table(tmp_path / "data.csv")
    env = {**os.environ, "REGBENCH_CACHE": str(tmp_path / "cache")}
    args = ["run", "dataset=table", "dataset.path=data.csv", "dataset.target=label", *SMALL, "trainer.max_epochs=20",
            "hydra.run.dir=run"]
    first = regbench(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    before = json.loads((tmp_path / "run" / "result.json").read_text())
    assert before["data_fingerprint"]["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    again = regbench(*args, cwd=tmp_path, env=env)
    assert "already done" in again.stdout and "skipped" in again.stdout
    old_sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    shuffle_labels(csv)
    new_sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    rerun = regbench(*args, cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "already done" not in rerun.stdout and "another configuration" not in rerun.stderr
    line = f"[run] {tmp_path / 'run'} holds a result on another version of data.csv (sha256 {old_sha[:8]} -> " \
           f"{new_sha[:8]}): running again (this run's result.json replaces it)"
    assert rerun.stdout.splitlines()[0] == line
    after = json.loads((tmp_path / "run" / "result.json").read_text())
    assert after["data_fingerprint"]["sha256"] == new_sha and after["config_hash"] != before["config_hash"]
    assert after["params"] == before["params"]
    assert after["metrics"]["val_acc"] != before["metrics"]["val_acc"]
    assert before["metrics"]["val_acc"] > 0.8 and after["metrics"]["val_acc"] < 0.7  # shuffled labels: near chance


@pytest.mark.slow
def test_a_resumed_stacked_sweep_on_edited_data_reruns_every_job(tmp_path):
    write_table(tmp_path / "data.csv")
    env = {**os.environ, "REGBENCH_CACHE": str(tmp_path / "cache")}
    args = ["run", "-m", "hydra/launcher=stacked", "dataset=table", "dataset.path=data.csv", "dataset.target=label",
            *SMALL, "reg=l2", "reg.alpha=1e-4,1e-2", "hydra.sweep.dir=sweep"]
    assert regbench(*args, cwd=tmp_path, env=env).returncode == 0
    shuffle_labels(tmp_path / "data.csv")
    out = regbench(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "already done in" not in out.stdout and "train as one model (2 members)" in out.stdout
    for job in (0, 1):
        assert f"[job {job}] {tmp_path / 'sweep' / str(job)} holds a result on another version of data.csv" in out.stdout
    sha = hashlib.sha256((tmp_path / "data.csv").read_bytes()).hexdigest()
    assert all(json.loads((tmp_path / "sweep" / str(j) / "result.json").read_text())["data_fingerprint"]["sha256"] == sha
               for j in (0, 1))


def test_a_folder_of_this_configuration_on_other_data_is_not_refused_as_another_one(tmp_path):
    from regbench.engine.runner import new_result
    from regbench.jobs import finished_elsewhere, finished_result, rerun_notice
    from regbench.results import write_result

    csv = write_table(tmp_path / "data.csv")
    folder = tmp_path / "run"
    folder.mkdir()
    old = {**new_result(table_cfg(csv)), "status": "ok"}
    write_result(folder, old)
    assert finished_result(table_cfg(csv), folder) is not None and finished_elsewhere(table_cfg(csv), folder) is None
    shuffle_labels(csv)
    assert finished_result(table_cfg(csv), folder) is None
    assert finished_elsewhere(table_cfg(csv), folder) is None
    assert "another version of data.csv" in rerun_notice(table_cfg(csv), folder, "run")
    refused = finished_elsewhere(table_cfg(csv, "reg=l2"), folder)
    new = hashlib.sha256(csv.read_bytes()).hexdigest()
    assert "another configuration (data.csv changed (sha256 " \
           f"{old['data_fingerprint']['sha256'][:8]} -> {new[:8]}); reg.alpha was" in refused
    assert rerun_notice(table_cfg(csv, "reg=l2"), folder, "run") is None  # another configuration: refused, not rerun


def test_a_result_from_before_fingerprints_is_run_again_saying_its_version_is_unknown(tmp_path):
    from regbench.engine.runner import new_result
    from regbench.jobs import finished_result, rerun_notice
    from regbench.results import config_hash, write_result

    csv = write_table(tmp_path / "data.csv")
    old = {**new_result(table_cfg(csv)), "status": "ok"}
    del old["data_fingerprint"]
    old["config_hash"] = config_hash(old["params"])  # as regbench wrote it before fingerprints
    folder = tmp_path / "run"
    folder.mkdir()
    write_result(folder, old)
    assert finished_result(table_cfg(csv), folder) is None
    assert "a version of data.csv regbench did not record" in rerun_notice(table_cfg(csv), folder, "run")


@pytest.mark.slow
def test_a_checkpoint_made_on_other_data_is_not_resumed(tmp_path, capsys):
    from regbench.engine.checkpoint import CHECKPOINT_FILE
    from regbench.engine.runner import run
    from regbench.results import RESULT_FILE

    csv = write_table(tmp_path / "data.csv")
    keep = ("keep_checkpoint=true", "trainer.checkpoint_seconds=0")
    same, edited = tmp_path / "same", tmp_path / "edited"
    for folder in (same, edited):  # a run killed after its last checkpoint: last.pt without result.json
        run(table_cfg(csv, *keep), folder)
        (folder / RESULT_FILE).unlink()
    assert run(table_cfg(csv), same)["resumed_from_epoch"] is not None  # the control: same data, resumed
    old = hashlib.sha256(csv.read_bytes()).hexdigest()
    shuffle_labels(csv)
    new = hashlib.sha256(csv.read_bytes()).hexdigest()
    capsys.readouterr()
    result = run(table_cfg(csv), edited)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "ignoring" in line]
    assert warnings == [f"regbench: warning: ignoring {edited / CHECKPOINT_FILE}: made on another version of data.csv "
                        f"(sha256 {old[:8]} -> {new[:8]}); starting fresh"]
    assert result["resumed_from_epoch"] is None and result["status"] == "ok"
    assert result["metrics"] == run(table_cfg(csv), tmp_path / "fresh")["metrics"]


# --- reports --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_report_keeps_two_versions_of_a_file_apart_and_says_so(tmp_path):
    from regbench.engine.runner import run
    from regbench.reporting.report import build
    from regbench.reporting.study import problem_names

    csv = write_table(tmp_path / "data.csv")
    for seed in (0, 1):
        run(table_cfg(csv, f"seed={seed}"), tmp_path / "runs" / f"v1_{seed}")
    v1 = hashlib.sha256(csv.read_bytes()).hexdigest()
    shuffle_labels(csv)
    v2 = hashlib.sha256(csv.read_bytes()).hexdigest()
    for seed in (0, 1):
        run(table_cfg(csv, f"seed={seed}"), tmp_path / "runs" / f"v2_{seed}")
    report = build([tmp_path / "runs"])
    assert len(report.table) == 2 and report.duplicates.empty
    assert sorted(report.table["dataset.data_version"]) == sorted([f"data@{v1[:8]}", f"data@{v2[:8]}"])
    assert set(report.table["n_seeds"]) == {2}
    by_version = report.table.set_index("dataset.data_version")
    old_runs = report.runs[report.runs["folder"].str.contains("v1_")]
    assert by_version.loc[f"data@{v1[:8]}", "val_acc.mean"] == pytest.approx(old_runs["val_acc"].mean())
    (note,) = [n for n in report.notes if "versions of its file" in n]
    assert f"runs of dataset table ({csv}) used 2 versions" in note
    assert f"data@{v1[:8]} (2 runs), data@{v2[:8]} (2 runs)" in note and note.endswith(f"the file(s) now: data@{v2[:8]}")
    assert problem_names(report.runs).nunique() == 2  # `regbench study` sees two datasets, not one
    out = regbench("report", str(tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"regbench: warning: {note}" in out.stderr and f"data@{v2[:8]}" in out.stdout


def test_runs_from_before_fingerprints_group_as_before_and_are_noted(tmp_path):
    from regbench.reporting.report import build
    from tests.helpers.rundirs import write_run

    extra = {"dataset.path": "data.csv", "dataset.target": "label"}
    fp = lambda sha: {"sha256": sha, "files": {"dataset.path": {"path": "/d/data.csv", "sha256": sha}}}  # noqa: E731
    write_run(tmp_path / "a" / "0", dataset="table", seed=0, extra=extra)  # before fingerprints
    write_run(tmp_path / "a" / "1", dataset="table", seed=1, extra=extra, data_fingerprint=fp("a" * 64))
    write_run(tmp_path / "a" / "2", dataset="table", seed=2, extra=extra, data_fingerprint=fp("a" * 64))
    report = build([tmp_path / "a"])
    assert len(report.table) == 1 and report.table["n_seeds"].iloc[0] == 3 and "dataset.data_version" not in report.table
    (note,) = report.notes
    assert "1 of 3 were recorded before data fingerprints and are grouped with the runs on data@aaaaaaaa" in note
    write_run(tmp_path / "a" / "3", dataset="table", seed=0, extra=extra, data_fingerprint=fp("b" * 64))
    report = build([tmp_path / "a"])
    assert sorted(report.table["dataset.data_version"]) == ["data@aaaaaaaa", "data@bbbbbbbb", "data@unknown"]
    assert "data@unknown (1 runs recorded before data fingerprints)" in report.notes[0]


def test_bundled_runs_and_one_version_of_a_file_add_no_column_and_no_note(tmp_path):
    from regbench.reporting.report import build
    from tests.helpers.rundirs import write_run

    fp = {"sha256": "c" * 64, "files": {"dataset.path": {"path": "/d/data.csv", "sha256": "c" * 64}}}
    for seed in (0, 1):
        write_run(tmp_path / "r" / f"d{seed}", seed=seed)
        write_run(tmp_path / "r" / f"t{seed}", dataset="table", seed=seed, extra={"dataset.path": "data.csv"},
                  data_fingerprint=fp)
    report = build([tmp_path / "r"])
    assert len(report.table) == 2 and not report.notes and "dataset.data_version" not in report.table
