"""Shared fixtures: composing real configs, shrinking them for speed, and the offline data."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import traceback
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.overrides import TorchFunctionMode

import regbench
from regbench.cli.app import config_dir

# The package's own folder: a frame belongs to regbench when its file lies under it, wherever
# the repository was cloned (a clone named `regbench` puts the tests under `/regbench/` too).
PACKAGE = os.path.dirname(os.path.abspath(regbench.__file__)) + os.sep
REPO = Path(__file__).resolve().parents[1]
# The original MNIST / Fashion-MNIST .gz files, beside the repository (see its README).
SHARED_DATA = Path(os.environ.get("REGBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))

# Every test run is shrunk to this: a few epochs of a small MLP on a few hundred samples.
TINY = ["trainer.max_epochs=3", "dataset.train_size=300", "model.hidden_sizes=[32]"]


@lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=["device=cpu", *overrides])


def make_cfg(*overrides: str):
    """Composes conf/config.yaml with overrides, exactly as `regbench run` would (on the CPU);
    cached per overrides, a fresh copy each call."""
    return copy.deepcopy(_composed(tuple(overrides)))


def stack_of(cfg, model, seed: int = 0):
    """The engine's stack of one around `model` (a lone run's, as regbench.engine.runner builds
    it, with the data-order and augmentation streams of `seed`)."""
    from regbench.engine.member import Member
    from regbench.engine.stack import Stack
    from regbench.regularizers import regularizers

    streams = [torch.Generator(device=next(model.parameters()).device).manual_seed(s) for s in (seed + 2, seed, seed + 1)]
    member = Member(0, cfg, Path("."), {}, model, *streams)
    return Stack([member], model, cfg.optim, regularizers(cfg.reg))


def train_epochs(stack, data, epochs: int = 1):
    """Trains a stack of one for `epochs` epochs and puts its weights into its network; returns
    the last epoch's sum of step losses."""
    from regbench.engine.steps import train_epoch

    for _ in range(epochs):
        total = train_epoch(stack, data, stack.members[0].cfg.trainer.batch_size)
    stack.conclude(0)
    return total[0]


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


def regbench(*args: str, cwd: Path, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Runs the installed `regbench` console script in a subprocess."""
    exe = shutil.which("regbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "regbench", *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    # Hydra turns an exception in a callback into a warning and goes on: the sweep's checks or
    # its report would be skipped without a failing exit code. Every CLI test watches for it.
    assert "Callback SweepSummary" not in out.stderr, out.stderr
    return out


def torchvision_root(tmp_path: Path, folder: str) -> Path:
    """Copies the original .gz files of `folder` (MNIST or FashionMNIST) into a writable root."""
    source = SHARED_DATA / folder / "raw"
    if not source.is_dir():
        pytest.skip(f"offline {folder} files not found in {source} (set REGBENCH_SHARED_DATA)")
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for gz in source.glob("*.gz"):
        shutil.copy(gz, raw / gz.name)
    return tmp_path


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run where torch sees a CUDA device and are skipped, saying so, elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch sees none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


class HostSyncs(TorchFunctionMode):
    """Records every tensor call that, on a GPU, makes the host wait for the device: reading a
    value back (.item(), .tolist(), float(t), bool(t), .numpy(), .cpu()) or an op whose output
    size depends on the data (nonzero, masked_select, unique, indexing with a boolean mask).

    The CPU twin of tests/test_cuda.py's `set_sync_debug_mode("error")`: it intercepts the
    calls in Python (torch's function mode), so it runs anywhere, but cannot see a sync hidden
    inside one C++ kernel. `allowed(tensor)` exempts tensors that stay on the host in a GPU run
    too (the optimizers' `step` counters). `calls` holds (call, the regbench functions on the
    stack, outermost first).
    """

    CALLS = {
        torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
        torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.__array__, torch.Tensor.numpy,
        torch.Tensor.cpu, torch.nonzero, torch.Tensor.nonzero, torch.masked_select,
        torch.Tensor.masked_select, torch.unique, torch.Tensor.unique,
    }
    INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_}

    def __init__(self, allowed=lambda tensor: False):
        super().__init__()
        self.allowed, self.calls = allowed, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self._syncs(func, args) and not self.allowed(args[0]):
            where = tuple(f.name for f in traceback.extract_stack()[:-1] if os.path.abspath(f.filename).startswith(PACKAGE))
            self.calls.append((func.__name__, where))
        return func(*args, **(kwargs or {}))

    def _syncs(self, func, args) -> bool:
        if func in self.CALLS:
            return True
        if func in self.INDEXING and len(args) > 1:
            index = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
            return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
        return False
