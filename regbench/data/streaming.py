"""A split too large for the device: kept in (pinned) host memory and sent to the device batch
by batch, without a DataLoader over Python objects.

`HostSplit` stands where a device tensor would in `regbench.data.datasets.Data`: the engine
slices it (`x[start:stop]`) and gathers from it (`x[idx]`, with indices on the device) as from
a tensor, and gets back a batch on the device. A gather first brings its indices to the host
(one synchronisation per batch), takes the rows there into pinned memory and copies them
asynchronously; the order of the batches and every number computed are those of the same
split held on the device.
"""

from __future__ import annotations

from typing import Any

import torch

# The dataset's share of the device memory free when it loads: the rest is for the model,
# its activations and the optimizer's state.
DEVICE_SHARE = 0.8


class HostSplit:
    """One split's inputs in host memory, read as a tensor on `device` batch by batch.

    Args:
        tensor: the split's inputs (N, ...) on the CPU.
        device: where the batches go.
    """

    def __init__(self, tensor: torch.Tensor, device: torch.device):
        self.device = device
        self._pinned = device.type == "cuda"
        self.host = tensor.pin_memory() if self._pinned else tensor

    @property
    def shape(self) -> torch.Size:
        return self.host.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.host.dtype

    def __len__(self) -> int:
        return len(self.host)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, torch.Tensor) and index.device.type != "cpu":
            index = index.cpu()
        batch = self.host[index]
        if self._pinned:  # a pinned source: the copy overlaps the device's work
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)


def placement(n_bytes: int, device: torch.device, free_on_device: int | None) -> str:
    """`device` when a dataset of `n_bytes` leaves the model room on `device`, else `host`
    (streamed; only a CUDA device has memory of its own)."""
    if device.type != "cuda" or free_on_device is None:
        return "device"
    return "device" if n_bytes <= DEVICE_SHARE * free_on_device else "host"
