"""`regbench export tensorboard|mlflow PATH...`: finished run folders where users already look.

    regbench export tensorboard PATH [PATH ...]
    regbench export mlflow PATH [PATH ...] [--tracking-uri URI]

PATH is a run folder, a sweep folder or any folder above them (searched as `regbench report`
searches). A folder without a usable result.json (a run still going, or killed) is skipped
with one warning line. Mistakes a user can make (a PATH that holds no run folder, a tracking
URI that cannot be written, a missing extra) are one line each, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from regbench import UserInputError

USAGE_EXAMPLES = """examples:
  regbench export tensorboard outputs/sweeps/<sweep>     # then: tensorboard --logdir outputs/sweeps/<sweep>
  regbench export mlflow outputs/sweeps/<sweep>          # into outputs/sweeps/mlflow.db
  regbench export mlflow outputs --tracking-uri sqlite:///mlflow.db
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="regbench export",
        description="Export finished run folders to TensorBoard event files or an MLflow tracking store.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = parser.add_subparsers(dest="target", required=True, metavar="{tensorboard,mlflow}")
    tb = targets.add_parser("tensorboard", help="write tb/ (TensorBoard event files) into every run folder",
                            description="Write tb/ event files into every run folder under PATH that has none from "
                                        "the live logger (logger=tensorboard); an earlier export's are replaced.")
    tb.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders, sweep folders or folders above them")
    ml = targets.add_parser("mlflow", help="import run folders into an MLflow tracking store",
                            description="Import run folders into MLflow: one experiment per sweep, one run per job. "
                                        "Exporting again updates, never duplicates (keyed by the run folder).")
    ml.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders, sweep folders or folders above them")
    ml.add_argument("--tracking-uri", metavar="URI",
                    help="MLflow tracking URI (default: sqlite:///<the first PATH's parent>/mlflow.db)")
    return parser.parse_args(argv)


def missing_extra(modules: list[str], extra: str) -> str | None:
    """One line naming the extra when any of `modules` is not installed (looked up, not imported)."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"{', '.join(absent)} not installed: pip install \"regbench[{extra}]\""


def finished_runs(paths: list[Path]) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """(run folder, result) of every usable run under `paths`, and the folders skipped with why.

    Raises:
        UserInputError: a PATH does not exist, or holds no run folder at all.
    """
    from regbench.reporting.collect import results, run_folders

    folder_lists = []
    for path in paths:
        if not path.exists():
            raise UserInputError(f"{path} does not exist")
        folder_lists.append(run_folders(path.resolve()))
        if not folder_lists[-1]:
            raise UserInputError(f"{path} holds no run folder (no result.json, metrics.csv or .hydra/ under it)")
    found, skipped = [], []
    for folder, result, why in results(folder_lists):
        if result is None:
            skipped.append((folder, why))
        else:
            found.append((folder, result))
    return found, skipped


def _runs_to_export(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The finished runs under `paths`, after a warning naming the folders skipped."""
    runs, skipped = finished_runs(paths)
    _warn(skipped)
    if not runs:
        raise UserInputError("no finished run to export (every run folder was skipped)")
    return runs


def _tensorboard(paths: list[Path]) -> int:
    problem = missing_extra(["tensorboard"], "tensorboard")
    if problem:
        raise UserInputError(problem)
    runs = _runs_to_export(paths)
    from regbench.reporting.collect import read_rows
    from regbench.results import METRICS_FILE

    written = live = 0
    for folder, result in runs:
        if has_live_events(folder):  # the live logger's files hold more (histograms): kept
            live += 1
            continue
        export_run(folder, result, read_rows(folder / METRICS_FILE), _config_yaml(folder))
        written += 1
    kept = f"; {live} already had the live logger's (kept)" if live else ""
    print(f"wrote tb/ in {written} run folder(s){kept}")
    print(f"open with: tensorboard --logdir {paths[0]}")
    return 0


EXPORT_SUFFIX = ".regbench-export"  # the event files `regbench export tensorboard` writes


def has_live_events(folder: Path) -> bool:
    """Whether tb/ holds event files the live logger wrote (not an earlier export's)."""
    from regbench.loggers.tensorboard import EVENTS, TB_DIR

    tb = Path(folder) / TB_DIR
    return tb.is_dir() and any(not p.name.endswith(EXPORT_SUFFIX) for p in tb.glob(EVENTS))


def export_run(folder: Path, result: dict[str, Any], rows: list[dict[str, Any]], config_yaml: str | None) -> None:
    """Writes a finished run's tb/ from its files, replacing what an earlier export wrote, with
    the live logger's writer and tags (regbench.loggers.tensorboard)."""
    from regbench.loggers.tensorboard import EVENTS, TB_DIR, Writer, config_markdown, epoch_scalars, write_final

    tb = Path(folder) / TB_DIR
    for old in tb.glob(EVENTS + EXPORT_SUFFIX) if tb.is_dir() else ():
        old.unlink()
    writer = Writer(tb, filename_suffix=EXPORT_SUFFIX)
    try:
        if config_yaml is not None:
            writer.text("config", config_markdown(config_yaml))
        for row in rows:
            writer.scalars(epoch_scalars(row), int(row["epoch"]))
        write_final(writer, result)
    finally:
        writer.close()


def _config_yaml(folder: Path) -> str | None:
    """The job's .hydra/config.yaml, resolved where it resolves, as written otherwise."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_yaml(OmegaConf.load(path), resolve=True)
    except Exception:  # an interpolation that needs the run's context: the file as Hydra wrote it
        return path.read_text()


def _mlflow(paths: list[Path], uri: str | None) -> int:
    from regbench.reporting import mlflow_export as mx

    uri = uri or mx.default_uri(paths)
    problem = missing_extra(mx.required_modules(uri), "mlflow")
    if problem:
        raise UserInputError(problem)
    runs = _runs_to_export(paths)
    configs = _config_ids(runs)
    store = mx.Store(uri)
    groups: dict[Path, list[tuple[Path, dict[str, Any], int]]] = {}
    for (folder, result), config in zip(runs, configs):
        groups.setdefault(folder.parent, []).append((folder, result, config))
    total_new = total_updated = 0
    for group, members in groups.items():
        new, updated = mx.export_group(store, group, members)
        total_new, total_updated = total_new + new, total_updated + updated
        print(f"experiment {group.name}: {new} new run(s), {updated} updated ({group})")
    print(f"{total_new + total_updated} run(s) in {uri}")
    for line in ui_hint(uri):
        print(line)
    return 0


def ui_hint(uri: str) -> list[str]:
    """How to open `uri` in MLflow's web UI from this environment: `mlflow ui` where the full
    mlflow package is installed (its server needs Flask); else the command that installs it, in
    an environment of its own (the launchers extra pins an SQLAlchemy the full package's
    server does not accept, and mlflow-skinny, which regbench's extra installs, has no UI)."""
    import importlib.util

    command = f"mlflow ui --backend-store-uri {uri}"
    if importlib.util.find_spec("flask") is not None:
        return [f"open with: {command}"]
    return ["the web UI is in the full mlflow package, which this environment lacks (regbench's mlflow extra is "
            "mlflow-skinny); in an environment of its own:",
            f"  python -m venv ~/mlflow-ui && ~/mlflow-ui/bin/pip install mlflow && ~/mlflow-ui/bin/{command}"]


def _config_ids(runs: list[tuple[Path, dict[str, Any]]]) -> list[int]:
    """The report's configuration id of every run, over the runs exported together."""
    import pandas as pd

    from regbench.reporting.aggregate import with_config_ids
    from regbench.reporting.collect import flatten_result

    table = pd.DataFrame([flatten_result(result) for _, result in runs])
    return [int(c) for c in with_config_ids(table)["config"]]


def _warn(skipped: list[tuple[Path, str]]) -> None:
    for folder, why in skipped:
        print(f"regbench: warning: skipped {folder}: {why}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """`regbench export ...`; returns the exit code."""
    args = parse_args(argv)
    try:
        if args.target == "tensorboard":
            return _tensorboard(args.paths)
        return _mlflow(args.paths, args.tracking_uri)
    except UserInputError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a run folder or the store that cannot be written
        print(f"regbench: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
