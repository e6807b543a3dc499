"""The run record (regbench.record): result.json's declaration, its version, and the loader that
upgrades folders written by older regbench versions.

tests/records/ holds literal result.json files: `main-5be3e05-*` written by regbench at commit
5be3e05 (the last one before the format was declared: version 1, with no `record_version`) by
`regbench run trainer.max_epochs=2`, a job of `hydra/launcher=stacked reg=l2
reg.alpha=1e-5,1e-3 seed=0,1 trainer.max_epochs=3` and `model=linear reg=elasticnet
optim=fista`; `before-newer-keys` is one of those runs as an older regbench recorded it
(without the schedule, regularizer, model, search and own-data keys added since, nor
`finished_at`, `split_sizes`, `early_best`, `threads`, `weights`); `before-schedules-minimal`
is the folder tests/helpers/rundirs.write_run makes, which the report's tests use for old runs.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from regbench import record
from regbench.record import RECORD_VERSION, Unreadable, load, read

RECORDS = Path(__file__).parent / "records"
MAIN = ("main-5be3e05-run", "main-5be3e05-stacked-job", "main-5be3e05-fista")
OLD = ("before-newer-keys", "before-schedules-minimal")
WRITTEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # the old files' modification time in these tests


def _folder(tmp_path: Path, name: str) -> Path:
    """A run folder holding tests/records/`name`.json as its result.json, last modified at WRITTEN."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(RECORDS / f"{name}.json", folder / "result.json")
    os.utime(folder / "result.json", (WRITTEN.timestamp(), WRITTEN.timestamp()))
    return folder


def _raw(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


def _newer_knobs(raw: dict) -> dict:
    """The regularizer knobs added after 5be3e05 (issue 26's regularizers' on), trainer.ece_bins and shift, at their defaults:
    what the loader back-fills into a record of 5be3e05 that lacks them, the values its run ran with."""
    from regbench.regularizers import builtin_knobs
    from tests.helpers.rules_5be3e05 import KNOBS

    known = {name for name, *_ in KNOBS}
    newer = {f"reg.{k.name}": k.default for k in builtin_knobs() if k.name not in known}
    newer["trainer.ece_bins"] = 15  # issue 27: the calibration error's bins
    newer.update({f"shift.{c}": [] for c in ("gaussian_noise", "gaussian_blur", "contrast", "brightness")})  # and shift
    return {key: default for key, default in newer.items() if key not in raw["params"]}


# ------------------------------------------------------------------------------- the declaration


def test_every_key_new_result_builds_is_declared_and_every_key_every_record_has_is_built():
    from regbench.engine.runner import new_result
    from tests.helpers.configs import make_cfg

    declared = record.declared()
    always = {k for k, (_, _, required) in declared.items() if required}
    built = new_result(make_cfg())
    assert set(built) <= set(declared)
    assert always - set(built) == {"finished_at"}  # stamped by regbench.results.write_result as it writes
    assert list(built)[0] == "record_version" and built["record_version"] == RECORD_VERSION == 2
    own = new_result(make_cfg("dataset=synthetic"))
    assert set(own) - set(built) == set()  # a bundled dataset: no data_fingerprint


def test_the_declaration_gives_every_key_a_type_and_one_line_and_says_which_keys_are_optional():
    declared = record.declared()
    optional = {k for k, (_, _, required) in declared.items() if not required}
    assert optional == {"data_fingerprint", "classes", "data_summary", "split_sizes", "stack_size", "error_type",
                        "traceback", "files_not_written", "calibration", "shift"}
    for key, (kind, doc, _) in declared.items():
        assert kind is not None and doc.strip() and "\n" not in doc and "|" not in doc, key
    assert set(record.REQUIRED) <= {k for k, (_, _, required) in declared.items() if required}


def test_the_type_check_names_what_does_not_conform():
    good = load_record("main-5be3e05-run")
    assert record.problems(good) == []
    bad = {**good, "status": "done", "seed": 1.5, "sparsity": "0", "stopped_early": 0, "extra": 1}
    del bad["versions"]
    assert sorted(record.problems(bad)) == sorted([
        "missing versions", "undeclared extra", "status='done' is not typing.Literal['ok', 'diverged', 'failed']",
        "seed=1.5 is not <class 'int'>", "sparsity='0' is not float | None", "stopped_early=0 is not <class 'bool'>"])
    assert record.problems({**good, "sparsity": 0, "metrics": {"val_acc": None, "val_loss": 1}}) == []  # JSON numbers


def load_record(name: str) -> dict:
    """tests/records/`name`.json as the loader upgrades it (modified at WRITTEN)."""
    return dict(record.upgrade(_raw(name), WRITTEN.timestamp()).record)


def test_a_run_written_now_conforms_to_the_declaration_with_its_version(tiny_cfg, tmp_path):
    from regbench.engine.runner import run

    result = run(tiny_cfg(), tmp_path / "run")
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert written == json.loads(json.dumps(result)) and record.problems(written) == []
    assert list(written)[0] == "record_version" and written["record_version"] == RECORD_VERSION
    assert list(written)[-1] == "finished_at"
    assert load(tmp_path / "run") == written and read(tmp_path / "run").filled == {}


def test_a_failed_run_conforms_to_the_declaration(tiny_cfg, tmp_path, monkeypatch):
    from regbench.engine import runner

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "fit", boom)
    result = runner.run(tiny_cfg(), tmp_path / "run")
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "failed" and written["error"] == "RuntimeError: boom"
    assert {"error_type", "traceback"} <= set(written) and record.problems(written) == []


def test_the_docs_table_of_result_json_is_the_declaration():
    readme = (Path(__file__).parents[1] / "docs" / "reference" / "output.md").read_text()
    assert record.markdown() in readme, "docs/reference/output.md's result.json table is stale: run python scripts/docs_tables.py"
    start = readme.index("| key | meaning |")
    keys = [line.split("`")[1] for line in readme[start:].split("\n\n")[0].splitlines()[2:]]
    assert keys == list(record.declared())


def test_the_record_module_stays_light():
    """jobs (on `regbench run`'s path before torch) import it: nothing heavy at module level."""
    import subprocess
    import sys

    code = "import sys, regbench.record; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("name", MAIN)
def test_a_folder_written_by_main_before_the_version_loads_as_it_is_with_the_version(tmp_path, name):
    loaded = read(_folder(tmp_path, name))
    raw = _raw(name)
    assert "record_version" not in raw
    newer = _newer_knobs(raw)  # nothing else is filled in
    assert loaded.record == {"record_version": RECORD_VERSION, **raw, "params": {**raw["params"], **newer}}
    assert loaded.filled == newer
    assert loaded.recorded_params == raw["params"] and record.problems(loaded.record) == []


@pytest.mark.parametrize("name", OLD)
def test_a_folder_of_an_older_regbench_gets_the_values_its_run_ran_with(tmp_path, name):
    from regbench.config.keys import ALL_SCHEDULE_KNOBS
    from regbench.config.schema import OptimConfig
    from regbench.results import config_hash

    raw = _raw(name)
    loaded = read(_folder(tmp_path, name))
    params = loaded.record["params"]
    assert {k: params[k] for k in raw["params"]} == raw["params"]  # what the run recorded is kept
    assert params["optim.schedule"] == "constant"
    assert all(params[f"optim.{k}"] == getattr(OptimConfig(), k) for k in ALL_SCHEDULE_KNOBS)
    assert params["dataset.task"] == "auto" and params["dataset.drop"] == []
    assert params["reg.mixup"] == 0.0 and params["reg.ema"] == 0.0 and params["reg.swa_lr"] == 0.0
    assert params["model.groups"] == 2 and params["model.depth"] == 20 and params["search.seeds"] == 1
    assert "model.kwargs" not in params or params["model.kwargs"] == raw["params"].get("model.kwargs")
    assert loaded.filled == {k: v for k, v in params.items() if k not in raw["params"]}
    assert loaded.record["finished_at"] == WRITTEN.isoformat()  # when the file was written
    assert loaded.record["record_version"] == RECORD_VERSION
    # nothing is invented: what an older regbench did not record stays unknown (absent)
    assert all(p.startswith("missing ") for p in record.problems(loaded.record))
    assert {"missing threads", "missing weights", "missing early_best"} <= set(record.problems(loaded.record))
    # the identity of an old folder holds with its upgraded params
    assert config_hash(params) == config_hash(raw["params"]) == raw.get("config_hash", config_hash(params))


def test_an_old_folder_with_a_null_finished_at_or_key_gets_them_too(tmp_path):
    folder = _folder(tmp_path, "before-newer-keys")
    raw = _raw("before-newer-keys")
    assert raw["finished_at"] is None
    raw["params"]["search.seeds"] = None
    (folder / "result.json").write_text(json.dumps(raw))
    os.utime(folder / "result.json", (WRITTEN.timestamp(), WRITTEN.timestamp()))
    loaded = read(folder)
    assert loaded.filled["search.seeds"] == 1 and loaded.record["finished_at"] == WRITTEN.isoformat()
    assert list(loaded.record).index("finished_at") == list(raw).index("finished_at") + 1  # kept in its place


def test_a_run_of_a_users_data_keeps_what_it_recorded():
    raw = {**_raw("main-5be3e05-run"), "dataset": "table"}
    raw["params"] = {**raw["params"], "dataset.name": "table", "dataset.task": "regression", "dataset.drop": ["id"]}
    assert record.upgrade(raw, 0.0).filled == _newer_knobs(raw)


def test_a_folder_of_a_newer_format_is_read_as_it_says(tmp_path):
    folder = _folder(tmp_path, "main-5be3e05-run")
    raw = {"record_version": 3, **_raw("main-5be3e05-run")}
    (folder / "result.json").write_text(json.dumps(raw))
    assert load(folder) == {**raw, "params": {**raw["params"], **_newer_knobs(raw)}}


@pytest.mark.parametrize("content, why", [
    (None, "no result.json (still running, killed, or refused at start)"),
    ("", "empty result.json"),
    ("{", "unreadable result.json (JSONDecodeError: "),
    ("[1]", "malformed result.json (not an object)"),
    ('{"status": "ok", "task": "classification"}', "malformed result.json (missing dataset, model, reg, seed, params, "
                                                   "metrics, gap)"),
])
def test_what_cannot_be_read_says_why(tmp_path, content, why):
    if content is not None:
        (tmp_path / "result.json").write_text(content)
    with pytest.raises(Unreadable) as e:
        load(tmp_path)
    assert str(e.value).startswith(why)


# ------------------------------------------------------------------------------- its readers


def test_a_job_finds_its_finished_result_in_an_old_folder_through_the_loader(tmp_path):
    """jobs.finished_result: an old folder of this very configuration (its config_hash) is
    finished, and reads as the current format."""
    from regbench.jobs import finished_result
    from tests.helpers.configs import make_cfg

    folder = _folder(tmp_path, "before-newer-keys")  # written by `regbench run ... seed=1 trainer.max_epochs=3`
    done = finished_result(make_cfg("trainer.max_epochs=3", "seed=1", "device=auto"), folder)
    assert done is not None and done["record_version"] == RECORD_VERSION and done["params"]["optim.schedule"] == "constant"
    assert finished_result(make_cfg("trainer.max_epochs=3", "seed=2", "device=auto"), folder) is None


def test_the_runs_table_keeps_a_back_filled_key_only_where_a_run_recorded_it_in_that_columns_type(tmp_path):
    """The report's table is what it was when collect back-filled its table itself: older runs
    alone get no column for the keys added since; beside a newer run, the integer 1 of
    search.seeds sits in the column of floats that a run without it made."""
    from regbench.reporting.collect import collect
    from tests.helpers.rundirs import write_run

    for seed in (0, 1):
        write_run(tmp_path / "old" / str(seed), seed=seed, extra={"optim.name": "adam"})
    alone = collect([tmp_path / "old"]).runs
    assert not any(c in alone for c in ("params.search.seeds", "params.optim.schedule", "params.dataset.task"))
    write_run(tmp_path / "new" / "0", seed=0, extra={"optim.name": "adam", "search.seeds": 1, "optim.schedule": "constant"})
    runs = collect([tmp_path / "old", tmp_path / "new"]).runs
    assert list(runs["params.search.seeds"].map(repr)) == ["1.0", "1.0", "1.0"]
    assert list(runs["params.optim.schedule"]) == ["constant"] * 3 and "params.optim.min_lr" not in runs
    assert "record_version" not in runs  # every loaded record has the current one
