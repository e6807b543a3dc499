"""What a user sees: a real sweep in TensorBoard (live logger) and in MLflow's UI (after
`regbench export mlflow`), each served on 127.0.0.1 and photographed by headless Chromium.

The docs' pictures (docs/*.png) come from here: `REGBENCH_SCREENSHOTS=docs pytest tests/test_screenshots.py`
copies them into docs/. Skips, saying why, without Chromium (`apt-get install chromium`, which
.ci/run does), TensorBoard, or MLflow's full package (its web UI; mlflow-skinny has none).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.cli import regbench

from tests.helpers.configs import REPO

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _needs(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(why)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (apt-get install chromium; .ci/run installs it)")
    _needs("tensorboard", 'TensorBoard not installed: pip install -e ".[tensorboard]"')
    root = tmp_path_factory.mktemp("shots")
    out = regbench("run", "-m", "hydra/launcher=stacked", "logger=tensorboard", "logger.histogram_every=5",
                   "reg=l1,l2", "reg.alpha=1e-4,1e-2", "trainer.max_epochs=25", "trainer.patience=null",
                   "dataset.train_size=300", "model.hidden_sizes=[32]", "device=cpu",
                   "hydra.sweep.dir=outputs/sweeps/demo", cwd=root, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "outputs" / "sweeps" / "demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(cmd: list[str], url: str, cwd: Path, log: Path) -> subprocess.Popen:
    """Starts a server and waits (up to 90 s) until `url` answers."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError(f"{url} did not answer in 90 s: {log.read_text()[-2000:]}")


def _screenshot(url: str, png: Path, width: int = 1400, height: int = 900) -> None:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--window-size={width},{height}", "--virtual-time-budget=20000", f"--screenshot={png}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.is_file(), out.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (height, width)
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05  # a page was drawn, not a blank one
    target = os.environ.get("REGBENCH_SCREENSHOTS")
    if target:
        Path(REPO / target).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(REPO / target) / png.name)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_tensorboard_shows_the_sweep(sweep, tmp_path):
    port = _free_port()
    exe = shutil.which("tensorboard") or str(Path(sys.executable).parent / "tensorboard")
    proc = _serve([exe, "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port)],
                  f"http://127.0.0.1:{port}/data/runs", tmp_path, tmp_path / "tensorboard.log")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=10) as r:
            runs = r.read().decode()
        assert all(f'"{n}/tb"' in runs for n in range(4)), runs  # one run per job folder
        _screenshot(f"http://127.0.0.1:{port}/#scalars&tagFilter=epoch%2Fval_loss%7Cepoch%2Fgap.acc%7Cweights%2Fsparsity",
                    tmp_path / "tensorboard.png")
        _screenshot(f"http://127.0.0.1:{port}/#hparams", tmp_path / "tensorboard_hparams.png")
    finally:
        _stop(proc)


def _mlflow_ui() -> str:
    """An `mlflow` command whose web UI can serve a SQLite store: $REGBENCH_MLFLOW_UI (the `mlflow`
    of another environment), else this environment's, if it has the UI and SQLAlchemy 2."""
    given = os.environ.get("REGBENCH_MLFLOW_UI")
    if given:
        return given
    import mlflow
    import sqlalchemy

    if not (Path(mlflow.__file__).parent / "server" / "js" / "build").is_dir():
        pytest.skip("MLflow's web UI is in the full package (pip install mlflow), not in mlflow-skinny; "
                    "set REGBENCH_MLFLOW_UI to the mlflow command of an environment that has it")
    if int(sqlalchemy.__version__.split(".")[0]) < 2:
        pytest.skip(f"mlflow ui needs SQLAlchemy 2 (this environment has {sqlalchemy.__version__}, which the launchers "
                    "extra pins for optuna 2.10); set REGBENCH_MLFLOW_UI to the mlflow command of another environment")
    return shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")


def test_mlflow_ui_shows_the_exported_sweep(sweep, tmp_path):
    _needs("mlflow", 'MLflow not installed: pip install -e ".[mlflow]"')
    exe = _mlflow_ui()
    from mlflow.tracking import MlflowClient

    out = regbench("export", "mlflow", str(sweep), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    uri = f"sqlite:///{sweep.parent / 'mlflow.db'}"
    (exp,) = [e for e in MlflowClient(tracking_uri=uri).search_experiments() if e.name == "demo"]
    port = _free_port()
    proc = _serve([exe, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                  f"http://127.0.0.1:{port}/health", tmp_path, tmp_path / "mlflow.log")
    try:
        jobs = sorted((r for r in MlflowClient(tracking_uri=uri).search_runs([exp.experiment_id])
                       if r.data.tags.get("regbench.kind") == "run"), key=lambda r: r.info.run_name)
        assert len(jobs) == 4
        # the sweep's jobs compared: parallel coordinates of the varying params, then params and metrics
        ids = urllib.parse.quote(json.dumps([r.info.run_id for r in jobs]))
        experiments = urllib.parse.quote(json.dumps([exp.experiment_id]))
        _screenshot(f"http://127.0.0.1:{port}/#/compare-runs?runs={ids}&experiments={experiments}",
                    tmp_path / "mlflow.png", 1600, 1100)
        run = jobs[0]
        # a job's run: its tags, parent (the sweep) and metrics (MLflow's charts draw nothing under
        # headless Chromium's virtual time, so the picture is the run's overview)
        _screenshot(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}",
                    tmp_path / "mlflow_run.png", 1600, 1300)
    finally:
        _stop(proc)
