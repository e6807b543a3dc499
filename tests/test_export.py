"""TensorBoard and MLflow (regbench.loggers.tensorboard, regbench.reporting.mlflow_export, .export), read back
with the tools' own readers: TensorBoard's EventAccumulator and MLflow's MlflowClient on a
SQLite store. No mocks. Every test skips, naming the extra, when it is not installed
(`pip install -e ".[test]"` installs both).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from regbench.engine import sweep as stacking
from regbench.engine.runner import run
from tests.helpers.cli import regbench
from tests.helpers.configs import REPO, make_cfg
from tests.helpers.interrupt import ctrl_c_after_row
from tests.helpers.rundirs import metrics_floats
from tests.helpers.syncs import HostSyncs

SMALL = ["trainer.max_epochs=4", "dataset.train_size=200", "model.hidden_sizes=[16]"]
CLI_SMALL = ["trainer.max_epochs=3", "dataset.train_size=200", "model.hidden_sizes=[16]", "device=cpu"]


def _tb():
    pytest.importorskip("tensorboard", reason='TensorBoard not installed: pip install -e ".[tensorboard]"')
    from tensorboard.backend.event_processing import event_accumulator

    return event_accumulator


def _mlflow():
    pytest.importorskip("mlflow", reason='MLflow not installed: pip install -e ".[mlflow]"')
    from mlflow.tracking import MlflowClient

    return MlflowClient


def _quiet() -> Console:
    return Console(quiet=True)


def read_events(tb: Path) -> dict[str, dict[int, float]]:
    """Every scalar of an event folder, tag -> {step: value}, through TensorBoard's own reader."""
    ea = _tb()
    acc = ea.EventAccumulator(str(tb), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()[ea.SCALARS]}


def _f32(expected: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """What TensorBoard keeps of a number: float32 (its scalar summaries' type)."""
    import numpy as np

    return {tag: {step: float(np.float32(v)) for step, v in by_step.items()} for tag, by_step in expected.items()}


def _expected_epochs(folder: Path) -> dict[str, dict[int, float]]:
    """What metrics.csv says each `epoch/*` tag must hold."""
    rows = metrics_floats(folder)
    m = "acc" if "train_acc" in rows[0] else "r2"
    expected: dict[str, dict[int, float]] = {}
    for row in rows:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch":
                expected.setdefault(f"epoch/{key}", {})[step] = value
        expected.setdefault(f"epoch/gap.{m}", {})[step] = row[f"train_{m}"] - row[f"val_{m}"]
        expected.setdefault("epoch/gap.loss", {})[step] = row["val_loss"] - row["train_loss"]
    return expected


def _expected_finals(folder: Path) -> dict[str, dict[int, float]]:
    result = json.loads((folder / "result.json").read_text())
    step = result["epochs_run"]
    finals = {f"final/{k}": v for k, v in result["metrics"].items()}
    finals.update({f"final/gap.{k}": v for k, v in result["gap"].items()})
    finals.update({f"final/{k}": result[k] for k in ("sparsity", "best_epoch", "epochs_run", "seconds")})
    return {k: {step: float(v)} for k, v in finals.items()}


def assert_events_equal_files(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar in folder/tb equals metrics.csv (per epoch) and result.json (final), exactly
    at TensorBoard's float32 precision."""
    events = read_events(folder / "tb")
    expected = _f32({**_expected_epochs(folder), **_expected_finals(folder)})
    assert {k: v for k, v in events.items() if not k.startswith("weights/")} == expected
    return events


def _hparams(tb: Path) -> dict:
    """The HParams session of an event folder, as TensorBoard's HParams plugin reads it."""
    _tb()
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = pea.EventAccumulator(str(tb))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.session_start_info.hparams.items()}


# ---------------------------------------------------------------------------------------------
# logger=tensorboard, live


def test_live_logger_writes_every_scalar_as_metrics_csv_and_result_json_hold_it(tmp_path):
    _tb()
    cfg = make_cfg(*SMALL, "reg=l1", "trainer.patience=null", "logger=tensorboard", "logger.histogram_every=2")
    result = run(cfg, tmp_path, _quiet())
    assert result["status"] == "ok"
    events = assert_events_equal_files(tmp_path)
    assert events["weights/sparsity"].keys() == {2, 4}  # every 2 epochs, with the histograms

    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    assert sorted(acc.Tags()[ea.HISTOGRAMS]) == ["weights/1.bias", "weights/1.weight", "weights/3.bias", "weights/3.weight"]
    assert [e.step for e in acc.Histograms("weights/1.weight")] == [2, 4]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "alpha: 0.0001" in text and "histogram_every: 2" in text  # the resolved config
    hp = _hparams(tmp_path / "tb")
    assert hp["reg"] == "l1" and hp["reg.alpha"] == pytest.approx(1e-4) and hp["model.hidden_sizes"] == "[16]"
    assert "logger" not in result["params"] and not any(k.startswith("logger") for k in result["params"])


def test_optim_fista_logs_its_blocks_and_the_models_own_weights(tmp_path):
    """optim=fista solves in the model itself (regbench.engine.convex), one row per block of iterations."""
    _tb()
    cfg = make_cfg("model=linear", "dataset=diabetes", "reg=l1", "reg.alpha=1e-2", "optim=fista", "optim.max_iter=40",
                   "optim.log_every=10", "logger=tensorboard", "logger.histogram_every=2")
    result = run(cfg, tmp_path, _quiet())
    assert result["status"] == "ok" and result["epochs_run"] >= 2
    events = assert_events_equal_files(tmp_path)
    assert "epoch/val_r2" in events and "epoch/gap.r2" in events
    assert set(events["weights/sparsity"]) == {e for e in range(2, result["epochs_run"] + 1, 2)}


def test_the_logger_is_not_a_parameter_a_sweep_resumes_and_reports_across_it():
    from regbench.engine.runner import new_result

    plain, logged = new_result(make_cfg(*SMALL)), new_result(make_cfg(*SMALL, "logger=tensorboard"))
    assert plain["params"] == logged["params"] and plain["config_hash"] == logged["config_hash"]


def test_without_histograms_the_logger_adds_no_read_back(tmp_path):
    """The logger uses the values the epoch's one read-back produced; the weights are copied
    to the host only every logger.histogram_every epochs."""
    _tb()
    base = [*SMALL, "trainer.patience=null", "reg=l1"]
    counts = []
    for i, extra in enumerate([[], ["logger=tensorboard", "logger.histogram_every=0"], ["logger=tensorboard", "logger.histogram_every=2"]]):
        with HostSyncs() as probe:
            run(make_cfg(*base, *extra), tmp_path / str(i), _quiet())
        counts.append([c for c in probe.calls if "fit" in c[1]])
    assert counts[0] == counts[1] and counts[0]
    extra = [c for c in counts[2] if "histograms" in c[1]]
    assert len(counts[2]) == len(counts[0]) + len(extra) and extra  # copies in the histogram epochs only


def test_a_resumed_run_continues_its_event_files_and_a_fresh_start_replaces_them(tmp_path, monkeypatch):
    """Checkpoints after epochs 3 and 6 (a fake clock), interrupted after epoch 8's row: the
    rerun trains 7 and 8 again, and TensorBoard's purge step hides the first attempt's 7: tb/
    reads as one run, each epoch once. A fresh start in the folder replaces the event files."""
    ea = _tb()

    args = (*SMALL, "trainer.max_epochs=10", "trainer.patience=null", "reg=[dropout,l1]",
            "trainer.checkpoint_seconds=2.5", "logger=tensorboard", "logger.histogram_every=0")
    let_run = ctrl_c_after_row(monkeypatch, 8)  # after epoch 8's row, before the logger's
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(*args), tmp_path, _quiet())
    let_run()
    assert run(make_cfg(*args), tmp_path, _quiet())["resumed_from_epoch"] == 6
    acc = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("epoch/val_loss")] == list(range(1, 11))
    assert_events_equal_files(tmp_path)

    (tmp_path / "last.pt").unlink(missing_ok=True)
    (tmp_path / "result.json").unlink()
    run(make_cfg(*args[:-3], "trainer.max_epochs=3", "logger=tensorboard"), tmp_path, _quiet())  # afresh, 3 epochs
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert_events_equal_files(tmp_path)


def test_stacked_members_each_log_their_own_event_folder(tmp_path):
    _tb()
    variants = [["reg=l1"], ["reg=l2", "optim.lr=3e-3"], ["reg=dropout"]]
    cfgs = [make_cfg(*SMALL, "trainer.patience=2", "trainer.max_epochs=6", "logger=tensorboard",
                     "logger.histogram_every=2", *v) for v in variants]
    results = stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], _quiet())
    assert all(r["status"] == "ok" for r in results)
    alone = run(make_cfg(*SMALL, "trainer.patience=2", "trainer.max_epochs=6", "logger=tensorboard",
                         "logger.histogram_every=2", "reg=dropout"), tmp_path / "alone", _quiet())
    for i in range(len(cfgs)):
        events = assert_events_equal_files(tmp_path / str(i))
        assert set(events["weights/sparsity"]) == {e for e in (2, 4, 6) if e <= results[i]["epochs_run"]}
    # a member's histograms carry the names (and the numbers) of its lone run's
    from tensorboard.backend.event_processing import event_accumulator as ea

    tags = []
    for folder in (tmp_path / "2", tmp_path / "alone"):
        acc = ea.EventAccumulator(str(folder / "tb"), size_guidance={ea.HISTOGRAMS: 0})
        acc.Reload()
        tags.append(sorted(acc.Tags()[ea.HISTOGRAMS]))
    assert tags[0] == tags[1] and "weights/1.weight" in tags[0]
    assert alone["metrics"] == pytest.approx(results[2]["metrics"])


@pytest.mark.slow
@pytest.mark.parametrize("plugin, launcher, sweep, n", [
    ("hydra_joblib_launcher", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["reg=l1,l2", "seed=0,1"], 4),
    ("hydra_submitit_launcher", ["hydra/launcher=submitit_local"], ["reg=l1,l2"], 2),
], ids=["joblib", "submitit_local"])
def test_a_parallel_sweep_with_the_live_logger_leaves_one_readable_event_folder_per_job(tmp_path, plugin, launcher, sweep, n):
    _tb()
    pytest.importorskip(f"hydra_plugins.{plugin}", reason=f'{plugin} not installed: pip install -e ".[launchers]"')
    out = regbench("run", "-m", *launcher, "logger=tensorboard", "logger.histogram_every=1", *sweep, *CLI_SMALL,
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    jobs = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert len(jobs) == n
    for job in jobs:
        assert len(list((job.parent / "tb").glob("events.out.tfevents.*"))) == 1
        events = assert_events_equal_files(job.parent)
        assert set(events["weights/sparsity"]) == {1, 2, 3}


@pytest.mark.slow
def test_the_stacked_launcher_with_the_live_logger(tmp_path):
    _tb()
    out = regbench("run", "-m", "hydra/launcher=stacked", "logger=tensorboard", "reg=l1",
                   "reg.alpha=1e-4,1e-3", "seed=0,1", "dataset.split_seed=0", *CLI_SMALL, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "train as one model (4 members)" in out.stdout
    jobs = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert len(jobs) == 4
    for job in jobs:
        assert_events_equal_files(job.parent)


def test_a_missing_extra_is_one_line_before_anything_runs(monkeypatch, tmp_path):
    import importlib.util

    from regbench.config.checks import check
    from regbench.reporting import export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("tensorboard", "mlflow") else real(name, *a))
    assert check(make_cfg(*SMALL, "logger=tensorboard")) == [
        'logger=tensorboard needs the tensorboard extra: pip install "regbench[tensorboard]"']
    assert check(make_cfg(*SMALL)) == []
    for target, extra in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        assert export.main([target, str(tmp_path)]) == 2  # before it even looks at the folder
    assert not list(tmp_path.iterdir())


def test_a_missing_extra_message_names_it(capsys, monkeypatch, tmp_path):
    import importlib.util

    from regbench.reporting import export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert export.main(["mlflow", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == 'regbench: error: mlflow not installed: pip install "regbench[mlflow]"\n'


@pytest.mark.slow
def test_help_and_a_default_run_import_neither_tensorboard_nor_mlflow(tmp_path):
    code = (
        "import sys\n"
        "from regbench.cli.main import main\n"
        "main(['--help'])\n"
        "from tests.helpers.configs import make_cfg\n"
        "from regbench.engine.runner import run\n"
        "from rich.console import Console\n"
        f"run(make_cfg('trainer.max_epochs=1', 'dataset.train_size=100', 'model.hidden_sizes=[8]'), {str(tmp_path)!r}, Console(quiet=True))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'mlflow') or m == 'torch.utils.tensorboard')\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout


# ---------------------------------------------------------------------------------------------
# regbench export tensorboard / mlflow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real 4-job sweep, without the live logger, with its report and one job saving its model."""
    root = tmp_path_factory.mktemp("sweep")
    out = regbench("run", "-m", "reg=l1,l2", "seed=0,1", *CLI_SMALL, "hydra.sweep.dir=outputs/sweeps/s", cwd=root)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "outputs" / "sweeps" / "s"


def _copy(sweep: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "outputs" / "sweeps" / "s"
    shutil.copytree(sweep, target)
    return target


@pytest.mark.slow
def test_export_tensorboard_writes_every_run_and_a_second_export_replaces_it(sweep, tmp_path):
    _tb()
    s = _copy(sweep, tmp_path)
    out = regbench("export", "tensorboard", str(s), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote tb/ in 4 run folder(s)" in out.stdout and f"tensorboard --logdir {s}" in out.stdout
    for job in sorted(s.glob("*/result.json")):
        assert_events_equal_files(job.parent)
        hp = _hparams(job.parent / "tb")
        assert hp["seed"] == json.loads(job.read_text())["seed"] and hp["status"] == "ok"
    again = regbench("export", "tensorboard", str(s), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for job in sorted(s.glob("*/result.json")):
        assert len(list((job.parent / "tb").glob("events.out.tfevents.*"))) == 1
        assert_events_equal_files(job.parent)


def test_export_tensorboard_keeps_the_live_loggers_files(tmp_path, capsys):
    _tb()
    from regbench.reporting import export

    run(make_cfg(*SMALL, "logger=tensorboard"), tmp_path / "live", _quiet())
    run(make_cfg(*SMALL), tmp_path / "plain", _quiet())
    before = sorted((tmp_path / "live" / "tb").iterdir())
    assert export.main(["tensorboard", str(tmp_path)]) == 0
    assert "wrote tb/ in 1 run folder(s); 1 already had the live logger's (kept)" in capsys.readouterr().out
    assert sorted((tmp_path / "live" / "tb").iterdir()) == before
    assert_events_equal_files(tmp_path / "plain")


@pytest.mark.slow
def test_export_mlflow_reads_back_with_mlflows_client_and_a_second_export_adds_no_run(sweep, tmp_path):
    MlflowClient = _mlflow()
    from mlflow.entities import ViewType

    s = _copy(sweep, tmp_path)
    out = regbench("export", "mlflow", str(s), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    db = s.parent / "mlflow.db"  # beside PATH by default
    uri = f"sqlite:///{db}"
    assert db.is_file() and f"mlflow ui --backend-store-uri {uri}" in out.stdout
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert exp.name == "s" and exp.tags["regbench.folder"] == str(s.resolve())
    runs = client.search_runs([exp.experiment_id])
    jobs = {r.data.tags["regbench.folder"]: r for r in runs if r.data.tags.get("regbench.kind") == "run"}
    (parent,) = [r for r in runs if r.data.tags.get("regbench.kind") == "sweep"]
    assert len(runs) == 5 and len(jobs) == 4
    # the sweep's page too, the file a person opens (issue 23)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"report.html", "report.csv", "runs.csv",
                                                                            "multirun.yaml"}
    for folder, r in jobs.items():
        folder = Path(folder)
        result = json.loads((folder / "result.json").read_text())
        assert r.data.params == {k: str(v) for k, v in result["params"].items()}
        tags = r.data.tags
        assert (tags["status"], tags["reg"], tags["seed"]) == ("ok", result["reg"], str(result["seed"]))
        assert tags["config_hash"] == result["config_hash"] and tags["regbench.version"] == result["versions"]["regbench"]
        assert tags["config"] in {"0", "1"} and tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.info.status == "FINISHED"
        expected = {**_expected_epochs(folder), **_expected_finals(folder)}
        assert set(r.data.metrics) == set(expected)
        for key, by_step in expected.items():
            history = client.get_metric_history(r.info.run_id, key)
            assert {m.step: m.value for m in history} == by_step, key
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"result.json", "metrics.csv", "hydra"} <= names and "model.pt" not in names
        local = client.download_artifacts(r.info.run_id, "result.json", str(tmp_path / "dl" / folder.name))
        assert json.loads(Path(local).read_text()) == result
    assert {t["config"] for t in (r.data.tags for r in jobs.values())} == {"0", "1"}

    again = regbench("export", "mlflow", str(s), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 new run(s), 4 updated" in again.stdout
    assert len(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)) == 5
    for r in client.search_runs([exp.experiment_id]):
        for key in r.data.metrics:
            history = client.get_metric_history(r.info.run_id, key)
            assert len(history) == len({m.step for m in history})  # no metric logged twice

    # the whole outputs/ folder, the database and its artifacts (copies of result.json) beside the
    # sweep: the same 4 jobs, no run made of an artifact copy
    fourth = regbench("export", "mlflow", str(tmp_path / "outputs"), "--tracking-uri", uri, cwd=tmp_path)
    assert fourth.returncode == 0 and "0 new run(s), 4 updated" in fourth.stdout, fourth.stdout + fourth.stderr
    assert [e.name for e in client.search_experiments() if e.name != "Default"] == ["s"]
    report = regbench("report", str(tmp_path / "outputs"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0 and "4 runs (4 ok)" in report.stdout, report.stdout + report.stderr

    # a job redone since (another finished_at): its MLflow run is replaced, the count stays
    job = s / "0" / "result.json"
    result = json.loads(job.read_text())
    result["finished_at"] = "2030-01-01T00:00:00+00:00"
    job.write_text(json.dumps(result))
    third = regbench("export", "mlflow", str(s), "--tracking-uri", uri, cwd=tmp_path)
    assert "1 new run(s), 3 updated" in third.stdout, third.stdout + third.stderr
    assert len(client.search_runs([exp.experiment_id])) == 5


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_export_mlflow_logs_the_model_and_a_single_runs_folder(tmp_path, capsys):
    MlflowClient = _mlflow()
    from regbench.reporting import export

    runs = tmp_path / "outputs" / "runs"
    run(make_cfg(*SMALL, "save_model=true"), runs / "a", _quiet())
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert export.main(["mlflow", str(runs / "a"), "--tracking-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert exp.name == "runs"
    (r,) = client.search_runs([exp.experiment_id])
    assert "mlflow.parentRunId" not in r.data.tags  # single runs: no sweep report, no parent
    assert "model.pt" in {a.path for a in client.list_artifacts(r.info.run_id)}
    assert exp.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())  # beside the database


@pytest.mark.parametrize("args, message", [
    (["mlflow", "{missing}"], "{missing} does not exist"),
    (["mlflow", "{empty}"], "{empty} holds no run folder (no result.json, metrics.csv or .hydra/ under it)"),
    (["tensorboard", "{empty}"], "{empty} holds no run folder (no result.json, metrics.csv or .hydra/ under it)"),
    (["mlflow", "{run}", "--tracking-uri", "sqlite:///{missing}/m.db"],
     "cannot use the tracking URI sqlite:///{missing}/m.db: {missing} does not exist"),
    (["mlflow", "{run}", "--tracking-uri", "sqlite:///{notadb}"], "cannot use the tracking URI sqlite:///{notadb}: "),
    (["mlflow", "{run}", "--tracking-uri", "http://127.0.0.1:9"],
     "cannot use the tracking URI http://127.0.0.1:9: 127.0.0.1:9 does not answer"),  # at once, not after retries
])
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    _mlflow()
    from regbench.reporting import export

    places = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": tmp_path / "run",
              "notadb": tmp_path / "notadb.db"}
    places["empty"].mkdir()
    places["notadb"].write_text("this is not a database\n" * 100)
    if "{run}" in args:
        run(make_cfg(*SMALL, "trainer.max_epochs=1"), places["run"], _quiet())
    args = [a.format(**places) for a in args]
    assert export.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("regbench: error: " + message.format(**places)) and err.count("\n") == 1, err


def test_a_failed_run_is_exported_as_failed_with_its_error(tmp_path, monkeypatch):
    MlflowClient = _mlflow()
    from regbench.reporting import export

    def crash(*args, **kwargs):  # a fault of the machine once the run started, not bad input: a failed result
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr("regbench.engine.runner.checkpoint.load", crash)
    result = run(make_cfg(*SMALL), tmp_path / "runs" / "x", _quiet())
    assert result["status"] == "failed"
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert export.main(["mlflow", str(tmp_path / "runs"), "--tracking-uri", uri]) == 0
    assert export.main(["tensorboard", str(tmp_path / "runs")]) == 0
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    (r,) = client.search_runs([exp.experiment_id])
    assert r.info.status == "FAILED" and r.data.tags["status"] == "failed"
    assert r.data.tags["error"] == result["error"] and "illegal memory access" in result["error"]
    assert set(r.data.metrics) == {"final/epochs_run", "final/seconds"}  # no metrics.csv: it never trained
    assert set(read_events(tmp_path / "runs" / "x" / "tb")) == {"final/epochs_run", "final/seconds"}


def test_a_folder_still_running_is_skipped_with_a_warning(tmp_path, capsys):
    _mlflow()
    from regbench.reporting import export

    run(make_cfg(*SMALL, "trainer.max_epochs=1"), tmp_path / "done", _quiet())
    (tmp_path / "going").mkdir()
    (tmp_path / "going" / "metrics.csv").write_text("epoch,train_loss\n")
    assert export.main(["mlflow", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    captured = capsys.readouterr()
    assert f"regbench: warning: skipped {tmp_path / 'going'}: no result.json" in captured.err
    assert "1 new run(s), 0 updated" in captured.out


def test_the_mlflow_hint_works_in_the_environment_it_is_printed_in(monkeypatch):
    """`mlflow ui` needs the full mlflow package (its server imports Flask); regbench's extra is
    mlflow-skinny, without it: the hint then says how to get a UI, in an environment of its own."""
    import importlib.util

    from regbench.reporting import export

    real = importlib.util.find_spec
    uri = "sqlite:////data/mlflow.db"
    for has_flask in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, has=has_flask: (real("json") if has else None) if name == "flask" else real(name, *a))
        lines = export.ui_hint(uri)
        if has_flask:
            assert lines == [f"open with: mlflow ui --backend-store-uri {uri}"]
        else:
            assert "full mlflow package" in lines[0] and "pip install mlflow" in lines[1]
            assert lines[1].endswith(f"~/mlflow-ui/bin/mlflow ui --backend-store-uri {uri}")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert export.ui_hint(uri)[0].startswith("open with:") == (real("flask") is not None)  # this environment's truth
