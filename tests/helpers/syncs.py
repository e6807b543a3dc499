"""Host synchronisations, seen on the CPU: the calls that on a GPU make the host wait for the device."""

from __future__ import annotations

import os
import traceback

import torch
from torch.overrides import TorchFunctionMode

import regbench

# The package's own folder: a frame belongs to regbench when its file lies under it, wherever
# the repository was cloned (a clone named `regbench` puts the tests under `/regbench/` too).
PACKAGE = os.path.dirname(os.path.abspath(regbench.__file__)) + os.sep


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


def fit_under_host_syncs(cfg, folder, search: tuple[str, ...] = ()):
    """Fits a lone run of `cfg` on the CPU (as the runner builds it, writing into `folder`) under
    HostSyncs; returns its stack and the probe. `search`: where a user regularizer's module lies."""
    from regbench.data.datasets import load
    from regbench.engine.loop import fit
    from regbench.engine.runner import new_stack
    from regbench.regularizers import regularizers

    device = torch.device("cpu")
    data = load(cfg.dataset, device)
    stack = new_stack([(cfg, folder, {})], data, device, regularizers(cfg.reg, search), search)
    with HostSyncs() as probe:
        fit(stack, data)
    return stack, probe


def finish_reads(wheres: list[tuple[str, ...]], calls: list[tuple[str, tuple[str, ...]]], members: int) -> None:
    """What a stack reads back as its `members` members finish (`wheres`: the regbench functions
    on the stack of each such call; `calls`: the probe's calls): each member's sparsity and its final
    metrics (one read each), and, where it keeps predictions.npz (regbench.engine.predictions.keep),
    their one transfer: `.cpu()`, then `.numpy()` of that host copy (no sync on a GPU either)."""
    kept = [name for name, where in calls if "keep" in where]
    assert kept in ([], ["cpu", "numpy"] * members), kept
    assert len(wheres) - len(kept) == 2 * members, wheres
