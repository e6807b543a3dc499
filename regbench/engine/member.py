"""A member of a stack: one job, with the lone-run objects it is compared against, and its
random streams (data order, augmentation, dropout, and the named streams regularizers draw
from), which its checkpoint keeps (regbench.engine.checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regbench.engine.fitstate import FitState
from regbench.engine.schedules import Schedule


@dataclass
class Member:
    """One job of a stack, with the lone-run objects it is compared against."""

    index: int  # position in the jobs given to the engine
    cfg: Any
    out_dir: Path
    result: dict[str, Any]
    model: nn.Module  # the job's own network: its initial weights, and at the end its reported ones
    dropout_rng: torch.Generator
    order: torch.Generator
    aug: torch.Generator
    writer: Any = None  # its metrics.csv writer, once the engine knows where it starts
    logger: Any = None  # its live logger (regbench.loggers), opened with the writer in a stacked sweep
    state: FitState = field(default_factory=FitState)
    best_steps: int = 0  # optimizer steps up to the best epoch (batch norm's num_batches_tracked)
    # Which weights its network holds once concluded (Stack.conclude): `trained`, or the averaging
    # regularizer's name; the runner records it as result.json's `weights`.
    reported_weights: str = "trained"
    # Its own learning-rate schedule (optim.schedule and its knobs may differ between members);
    # a fresh one from its config unless given.
    schedule: Schedule | None = None

    # The random streams regularizers draw from, by name: a host-side numpy Generator (draws that
    # pick boxes and mixing weights, with no device sync) or a torch Generator on the device.
    # Created on first use from the seed and the name, so one regularizer's draws do not depend
    # on which others are on; saved in checkpoints (see regbench.engine.checkpoint.share).
    streams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule is None:
            self.schedule = Schedule(self.cfg.optim, self.cfg.trainer.max_epochs)

    def host_rng(self, name: str) -> Any:
        """The member's host-side stream `name` (numpy.random.Generator)."""
        if name not in self.streams:
            import zlib

            import numpy as np

            self.streams[name] = np.random.default_rng([self.cfg.seed, zlib.crc32(name.encode())])
        return self.streams[name]

    def device_rng(self, name: str, device: torch.device) -> torch.Generator:
        """The member's stream `name` on the device (torch.Generator)."""
        if name not in self.streams:
            import zlib

            seed = (self.cfg.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63
            self.streams[name] = torch.Generator(device=device).manual_seed(seed)
        return self.streams[name]

    def stream_states(self) -> dict[str, Any]:
        """Every stream's state, as weights_only loading accepts it."""
        return {name: rng.get_state() if isinstance(rng, torch.Generator) else rng.bit_generator.state
                for name, rng in self.streams.items()}

    def load_streams(self, states: dict[str, Any], device: torch.device) -> None:
        for name, state in states.items():
            if isinstance(state, torch.Tensor):
                self.device_rng(name, device).set_state(state)
            else:
                self.host_rng(name).bit_generator.state = state


def data_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The random streams of the data order and of augmentation, apart from dropout's, so
    that every regularizer sees the same batches for one seed."""
    return torch.Generator(device=device).manual_seed(seed), torch.Generator(device=device).manual_seed(seed + 1)
