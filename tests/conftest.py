"""Shared fixtures (the plain helpers the tests share are in tests/helpers)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.configs import TINY, make_cfg


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread avoids OpenMP spin-waits on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("regbench_cache")


@pytest.fixture(autouse=True)
def _cache_of_the_tests(_session_cache, monkeypatch):
    """regbench's cache (data fingerprints, decoded image folders) in a folder of the test
    session, not the user's ~/.cache/regbench; a test that needs its own sets REGBENCH_CACHE again."""
    monkeypatch.setenv("REGBENCH_CACHE", str(_session_cache))


@pytest.fixture(autouse=True)
def _no_hydra_config_left_over():
    """A test that runs jobs in-process (the stacked launcher's `_train_stacks`, Hydra's launcher
    suites) leaves Hydra's HydraConfig set to its last job's, as a launcher does between jobs.
    The next test in that process would then resolve a relative dataset.path against that job's
    start folder (hydra.utils.to_absolute_path) instead of its own current folder."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, whatever the test runner installed (xdist workers may ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def tiny_cfg():
    """A factory of composed configs shrunk by TINY (later overrides win)."""
    return lambda *overrides: make_cfg(*TINY, *overrides)


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run where torch sees a CUDA device and are skipped, saying so, elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch sees none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def read_only():
    """Makes a folder read-only for real, and undoes it: `chmod` for a normal user; as root
    (who ignores permission bits, so chmod would prove nothing) a read-only bind mount of the
    folder onto itself, skipped where mounting is not allowed (a container without
    CAP_SYS_ADMIN). In-process tests (test_report.py, test_study.py) simulate the same error everywhere."""
    done = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)
            done.append(lambda: [p.chmod(p.stat().st_mode | 0o200) for p in [folder, *folder.rglob("*")]])
            return folder
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot make a read-only folder as root here: {mounted.stderr.decode().strip()}")
        done.append(lambda: subprocess.run(["umount", str(folder)], check=True))
        if _writable(folder):  # older mount(8)s ignore ro on a bind: remount
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        if _writable(folder):
            pytest.skip("the read-only bind mount is writable here")
        return folder

    yield make
    for undo in reversed(done):
        undo()


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True
