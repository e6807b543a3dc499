"""A normal (non-editable) install finds every config: the wheel carries conf/."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers.configs import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("regbench-*.whl")
    return path


def test_wheel_contains_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert len(configs) >= 25
    missing = [c for c in configs if f"regbench/conf/{c}" not in names]
    assert not missing


def test_wheel_carries_the_stacked_launcher_plugin_in_hydras_namespace(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hydra_plugins/regbench_stacked_launcher/stacked_launcher.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package, shared with other plugins


def _venv_seeing_these_packages(env_dir: Path) -> Path:
    """A new virtual environment whose interpreter also finds the packages of the one running
    the tests (torch, hydra, ...), so the wheel installs without its dependencies and offline.

    Not `system_site_packages=True`: created from inside a virtual environment, that would
    inherit the base interpreter's packages, not this environment's. A .pth file lists this
    environment's site folders instead; their own .pth files (the editable install of
    regbench among them) are not processed, so `import regbench` finds only the wheel.
    """
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(purelib, "_test_parent_env.pth").write_text("".join(f"{p}\n" for p in ours if Path(p).is_dir()))
    return python


def test_installed_wheel_composes_from_its_own_configs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    python = _venv_seeing_these_packages(env_dir)
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import regbench.cli.app as a; print(a.config_dir())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert where.startswith(str(env_dir)) and where.endswith("regbench/conf")
    out = subprocess.run(
        [env_dir / "bin" / "regbench", "run", "--cfg", "job", "dataset=wine", "reg=[l1,dropout]"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "name: wine" in out.stdout and "l1_ratio: 1.0" in out.stdout and "dropout: 0.5" in out.stdout
    out = subprocess.run(
        [env_dir / "bin" / "regbench", "run", "--cfg", "hydra", "hydra/launcher=stacked"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "regbench_stacked_launcher.stacked_launcher.StackedLauncher" in out.stdout
