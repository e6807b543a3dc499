"""`regbench export mlflow`: run folders into an MLflow tracking store, after the fact.

One MLflow experiment per folder of runs (a sweep's job folders are one experiment; single
runs under outputs/runs another), named after that folder; one MLflow run per run folder,
with
- params: result.json's `params` (flat, dotted keys);
- metrics: `epoch/<column>` for every metrics.csv column but `epoch`, and `epoch/gap.*`, at
  step = epoch; `final/<key>` at step = epochs_run (metrics, gap, sparsity, best_epoch,
  epochs_run, seconds) — the names TensorBoard gets (regbench.loggers.tensorboard);
- tags: `status`, `reg`, `seed`, `dataset`, `model`, `config` (the report's configuration id over
  the exported runs), `config_hash`, `regbench.version`, `regbench.folder`, and `error` for a
  failed run;
- artifacts: result.json, metrics.csv, model.pt if present, the job's .hydra/*.yaml.
A sweep's report files (report.csv, runs.csv, report.md, pivot.csv, plots, multirun.yaml) go on
a parent run of the experiment, under which its jobs are nested.

Idempotent, keyed by the run folder (its absolute path, tag `regbench.folder`): an export of
folders already exported updates their tags and artifacts and adds no run; a folder whose run
was redone since (another config_hash or finished_at) gets its old MLflow run deleted and a
new one. Export from one process: MLflow's SQLite and file stores race under parallel writers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from regbench import UserInputError
from regbench.loggers.tensorboard import epoch_scalars, final_scalars
from regbench.reporting.collect import read_rows
from regbench.results import METRICS_FILE, MODEL_FILE, RESULT_FILE

EXTRA = 'pip install "regbench[mlflow]"'
FOLDER_TAG = "regbench.folder"
KIND_TAG = "regbench.kind"
FINGERPRINT_TAG = "regbench.fingerprint"
# A sweep's files logged on its parent run: report.html first, the file a person opens.
SWEEP_FILES = ("report.html", "report.csv", "runs.csv", "report.md", "pivot.csv", "gap_vs_strength.png", "curves.png",
               "multirun.yaml")
ARTIFACT_DIR = "mlartifacts"  # beside a SQLite database: the experiments' artifact roots


def default_uri(paths: list[Path]) -> str:
    """A SQLite database `mlflow.db` beside the first PATH (MLflow's own default backend)."""
    return "sqlite:///" + str(Path(paths[0]).resolve().parent / "mlflow.db")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory when relative), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).absolute()


def required_modules(uri: str) -> list[str]:
    """What an export to `uri` imports: MLflow, and for a SQLite store SQLAlchemy and Alembic."""
    return ["mlflow"] + (["sqlalchemy", "alembic"] if sqlite_path(uri) else [])


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


def _reachable(uri: str) -> None:
    """A tracking server's port answers (MLflow's client would retry a dead one for minutes)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=10).close()
    except OSError as e:
        raise UserInputError(f"cannot use the tracking URI {uri}: {parts.hostname}:{port} does not answer "
                             f"({e.strerror or type(e).__name__})") from None


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


class Store:
    """An MLflow tracking store opened through MlflowClient, with regbench's keys."""

    def __init__(self, uri: str) -> None:
        db = sqlite_path(uri)
        if db is not None:
            where = db if db.exists() else db.parent
            if not where.exists():
                raise UserInputError(f"cannot use the tracking URI {uri}: {db.parent} does not exist")
            if not os.access(where, os.W_OK):
                raise UserInputError(f"cannot use the tracking URI {uri}: {where} is not writable")
        if uri.startswith(("http://", "https://")):
            _reachable(uri)
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # set on import: MLflow announces every table it creates
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri, self.db = uri, db
        try:
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)
        except Exception as e:  # unreachable server, unknown scheme, a file that is not a database
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserInputError(f"cannot use the tracking URI {uri}: {first}") from None

    def experiment(self, folder: Path) -> str:
        """The id of the experiment of `folder` (a sweep folder, or outputs/runs), made or restored as needed."""
        from mlflow.entities import ViewType

        key = str(folder)
        taken = set()
        for exp in self._all_experiments(ViewType.ALL):
            if exp.tags.get(FOLDER_TAG) == key:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                return exp.experiment_id
            taken.add(exp.name)
        name = folder.name if folder.name not in taken else f"{folder.name} ({folder})"
        location = None
        if self.db is not None:  # not ./mlruns of whatever directory the export ran in
            digest = hashlib.sha256(key.encode()).hexdigest()[:8]
            location = (self.db.parent / ARTIFACT_DIR / f"{folder.name}-{digest}").as_uri()
        # the kind MLflow 3's UI opens as runs and charts (model training), not as GenAI traces
        tags = {FOLDER_TAG: key, "mlflow.experimentKind": "custom_model_development"}
        return self.client.create_experiment(name, artifact_location=location, tags=tags)

    def _all_experiments(self, view: Any) -> list[Any]:
        out, token = [], None
        while True:
            page = self.client.search_experiments(view_type=view, max_results=1000, page_token=token)
            out += list(page)
            token = page.token
            if not token:
                return out

    def runs_by_folder(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's active runs by their `regbench.folder` tag."""
        out, token = {}, None
        while True:
            page = self.client.search_runs([experiment_id], max_results=1000, page_token=token)
            for run in page:
                folder = run.data.tags.get(FOLDER_TAG)
                if folder:
                    out.setdefault(folder, run)
            token = page.token
            if not token:
                return out


def export_group(store: Store, folder: Path, runs: list[tuple[Path, dict[str, Any], int]]) -> tuple[int, int]:
    """Exports one folder's runs (run folder, result, config id); returns (new, updated)."""
    client = store.client
    exp = store.experiment(folder)
    existing = store.runs_by_folder(exp)
    parent = None
    reports = [folder / name for name in SWEEP_FILES if (folder / name).is_file()]
    if reports:  # a sweep: its report on a parent run, its jobs nested under it
        parent = _parent_run(client, exp, folder, existing.get(str(folder)), reports)
    new = updated = 0
    for run_folder, result, config in runs:
        fingerprint = f"{result.get('config_hash')}:{result.get('finished_at')}"
        old = existing.get(str(run_folder))
        tags = _tags(run_folder, result, config, parent, fingerprint)
        if old is not None and old.data.tags.get(FINGERPRINT_TAG) == fingerprint:
            run_id = old.info.run_id
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            updated += 1
        else:
            if old is not None:  # the folder's run was redone: its MLflow run is replaced, not doubled
                client.delete_run(old.info.run_id)
            run_id = _new_run(client, exp, run_folder, result, tags)
            new += 1
        _artifacts(client, run_id, run_folder)
    return new, updated


def _tags(run_folder: Path, result: dict[str, Any], config: int, parent: str | None, fingerprint: str) -> dict[str, str]:
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    tags = {
        "status": str(result.get("status")),
        "reg": str(result.get("reg")),
        "seed": str(result.get("seed")),
        "dataset": str(result.get("dataset")),
        "model": str(result.get("model")),
        "config": str(config),
        "config_hash": str(result.get("config_hash")),
        "regbench.version": str((result.get("versions") or {}).get("regbench")),
        FOLDER_TAG: str(run_folder),
        KIND_TAG: "run",
        FINGERPRINT_TAG: fingerprint,
    }
    if result.get("error"):  # a failed run says why, as in result.json (one line)
        tags["error"] = str(result["error"])[:5000]
    if parent is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    return tags


def _new_run(client: Any, exp: str, run_folder: Path, result: dict[str, Any], tags: dict[str, str]) -> str:
    from mlflow.entities import Metric, Param

    end = _ms(result.get("finished_at")) or int(run_folder.joinpath(RESULT_FILE).stat().st_mtime * 1000)
    start = end - int(1000 * (result.get("seconds") or 0))
    name = f"{run_folder.name} {result.get('reg')} seed={result.get('seed')}"
    run_id = client.create_run(exp, start_time=start, tags=tags, run_name=name).info.run_id
    params = [Param(k, str(v)) for k, v in sorted((result.get("params") or {}).items())]
    metrics, t = [], start
    for row in read_rows(run_folder / METRICS_FILE):
        t += int(1000 * (row.get("seconds") or 0))  # when the epoch ended, as near as the files tell
        metrics += [Metric(k, v, min(t, end), int(row["epoch"])) for k, v in epoch_scalars(row).items()]
    step = int(result.get("epochs_run") or 0)
    metrics += [Metric(k, v, end, step) for k, v in final_scalars(result).items()]
    for chunk in _chunks(params, 100):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=chunk)
    status = {"ok": "FINISHED"}.get(str(result.get("status")), "FAILED")
    client.set_terminated(run_id, status=status, end_time=end)
    return run_id


def _artifacts(client: Any, run_id: str, run_folder: Path) -> None:
    for name in (RESULT_FILE, METRICS_FILE, MODEL_FILE):
        if (run_folder / name).is_file():
            client.log_artifact(run_id, str(run_folder / name))
    for path in sorted((run_folder / ".hydra").glob("*.yaml")):
        client.log_artifact(run_id, str(path), artifact_path="hydra")


def _parent_run(client: Any, exp: str, folder: Path, old: Any, reports: list[Path]) -> str:
    if old is not None:
        run_id = old.info.run_id
    else:
        run_id = client.create_run(exp, tags={FOLDER_TAG: str(folder), KIND_TAG: "sweep"}, run_name=folder.name).info.run_id
        client.set_terminated(run_id, status="FINISHED")
    for path in reports:
        client.log_artifact(run_id, str(path))
    return run_id
