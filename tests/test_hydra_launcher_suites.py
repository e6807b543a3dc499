"""Hydra's own launcher test suites, run for `hydra/launcher=stacked`.

Hydra ships the tests its launcher plugins must pass (`hydra.test_utils.launcher_common_tests`);
this runs them exactly as Hydra's joblib plugin does (plugins/hydra_joblib_launcher/tests/
test_joblib_launcher.py) and as Hydra's basic launcher runs the batched-sweeper suite
(tests/test_basic_launcher.py: the basic sweeper with max_batch_size=2). The apps are Hydra's:
its test configs and `hydra.test_utils.a_module` come with hydra-core, and the integration
suite writes its small apps into tmpdir itself. None of them is regbench: a launcher must run
any Hydra app's jobs as the basic launcher would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from hydra_plugins.regbench_stacked_launcher.stacked_launcher import StackedLauncher

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _version_base_unset():
    """Each suite test as in a fresh process, where no app has set Hydra's version base yet.

    Hydra runs these suites in a process of their own: the in-process ones then get Hydra's
    1.1 default, whose jobs run in their own folders, which the suites check. In this test
    process other tests compose regbench's config with version_base="1.3", which stays set
    (the basic launcher fails the suites as well after such a test).
    """
    from hydra import version

    base = version.VersionBase.instance()
    saved, base.version_base = base.version_base, version._UNSPECIFIED_
    yield
    base.version_base = saved


@pytest.fixture(autouse=True, scope="module")
def _consistent_plugins_afterwards():
    """Leaves Hydra's plugin registry consistent for the tests that run after these in the
    same process.

    The suites restore Hydra's singletons after each test, and restoring re-scans the plugins,
    which re-executes their modules: the config-source classes registered in the restored
    SourcesRegistry are then no longer the ones their modules hold, and pickling a config
    loader (as joblib does, and tests/test_cli.py checks) fails. A fresh registry and a fresh
    scan register the classes the modules hold now.
    """
    yield
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.singleton import Singleton

    Singleton._instances.pop(SourcesRegistry, None)
    Singleton._instances.pop(Plugins, None)
    Plugins.instance()


def test_discovery() -> None:
    assert StackedLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


EXECUTORS = [
    ("stacked", []),
    ("stacked", ["hydra.launcher.executor=local", "hydra.launcher.workers=2"]),  # spawned worker processes
    ("stacked", ["hydra.launcher.shard=0", "hydra.launcher.num_shards=1"]),  # the plan, run as one shard
]
if shutil.which("sbatch") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0:
    # SLURM array elements on the one-node cluster CI starts (bash scripts/slurm_local.sh start); without
    # one, these parameters are left out (tests/test_slurm_stacks.py says so, skipping in one line)
    EXECUTORS.append(("stacked", ["hydra.launcher.executor=slurm", "hydra.launcher.slurm.cpus_per_task=1"]))


@pytest.mark.parametrize("launcher_name, overrides", EXECUTORS)
class TestStackedLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {},
            [
                "-m",
                "hydra/job_logging=hydra_debug",
                "hydra/job_logging=disabled",
                "hydra/launcher=stacked",
            ],
        )
    ],
)
class TestStackedLauncherIntegration(IntegrationTestSuite):
    pass


@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("stacked", ["hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2", *extra]) for _, extra in EXECUTORS],
)
class TestStackedLauncherWithBatching(BatchedSweeperTestSuite):
    pass


# A plain Hydra app written for Hydra 1.1, whose jobs run in their own folders (1.1's chdir).
APP_1_1 = """
import os
import sys

import hydra


@hydra.main(version_base="1.1", config_path=None)
def app(cfg):
    print(f"job {cfg.a}: cwd={os.getcwd()} torch={'torch' in sys.modules} app={'regbench.cli.app' in sys.modules}")


if __name__ == "__main__":
    app()
"""


def test_another_apps_jobs_run_as_the_basic_launcher_runs_them(tmp_path):
    """Nothing stacks in another app's sweep: its jobs run as with the basic launcher (here in
    their own folders, as version_base 1.1 asks), and neither torch nor regbench's app is imported."""
    (tmp_path / "app.py").write_text(APP_1_1)
    out = subprocess.run([sys.executable, "app.py", "-m", "+a=1,2", "hydra/launcher=stacked", "hydra.sweep.dir=sweep"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for n, a in enumerate((1, 2)):
        assert f"job {a}: cwd={tmp_path / 'sweep' / str(n)} torch=False app=False" in out.stdout, out.stdout


def test_importing_regbench_leaves_hydras_version_base_alone():
    """`hydra.main` sets Hydra's version base for the whole process: an import that ran it
    would change how the app that loaded the launcher runs its jobs."""
    code = ("import hydra.version as v, regbench.cli.app, regbench.engine.stack, regbench.cli.callbacks, "
            "hydra_plugins.regbench_stacked_launcher.stacked_launcher; print(v.getbase() is v._UNSPECIFIED_)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stdout + out.stderr
