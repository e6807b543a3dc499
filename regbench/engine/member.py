"""A member of a stack: one job, with the lone-run objects it is compared against, and its
random streams, which its checkpoint keeps (regbench.engine.checkpoint).

A member has one stream the engine draws from itself, its data order (`Member.order`), and
named streams for everything else, one mechanism for all (`Member.host_rng`,
`Member.device_rng`): the network's stream (`NETWORK_STREAM`, the one torch's own random
layers draw from), and each regularizer's own, seeded where it is first asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regbench.engine.fitstate import FitState
from regbench.engine.schedules import Schedule
# The stream torch's default generator stands for while a member's network trains, opened with the
# member (`network_stream`); named by the contract, so that the regularizers share the one name.
from regbench.regularizers.contract import NETWORK_STREAM

__all__ = ["NETWORK_STREAM", "Member", "network_stream", "order_generator"]


@dataclass
class Member:
    """One job of a stack, with the lone-run objects it is compared against."""

    index: int  # position in the jobs given to the engine
    cfg: Any
    out_dir: Path
    result: dict[str, Any]
    model: nn.Module  # the job's own network: its initial weights, and at the end its reported ones
    order: torch.Generator  # the data order (regbench.engine.steps.train_epoch): the engine's own stream
    # The named random streams, by name: a host-side numpy Generator (draws that need no device
    # sync: a box, a weight) or a torch Generator on the device. Each is opened on
    # first use from the seed its user gives or from the member's seed and its name, so that one
    # regularizer's draws do not depend on which others are on; all are saved in checkpoints
    # (`stream_states`, regbench.engine.checkpoint.share).
    streams: dict[str, Any] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        if self.schedule is None:
            self.schedule = Schedule(self.cfg.optim, self.cfg.trainer.max_epochs)

    def host_rng(self, name: str) -> Any:
        """The member's host-side stream `name` (numpy.random.Generator), opened on first use
        from the member's seed and the name."""
        if name not in self.streams:
            import zlib

            import numpy as np

            self.streams[name] = np.random.default_rng([self.cfg.seed, zlib.crc32(name.encode())])
        return self.streams[name]

    def device_rng(self, name: str, device: torch.device, seed: int | None = None) -> torch.Generator:
        """The member's stream `name` on the device (torch.Generator).

        Args:
            name: the stream's name, under which checkpoints keep it.
            device: where it is opened, on first use.
            seed: where it starts when it is opened (a stream that keeps the seed it had before
                it was a named one); by default a seed made of the member's seed and the name.
                Ignored once the stream is open: a resumed run's stream continues from its state.
        """
        if name not in self.streams:
            if seed is None:
                import zlib

                seed = (self.cfg.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63
            self.streams[name] = torch.Generator(device=device).manual_seed(seed)
        return self.streams[name]

    def stream_states(self) -> dict[str, Any]:
        """Every named stream's state, as weights_only loading accepts it."""
        return {name: rng.get_state() if isinstance(rng, torch.Generator) else rng.bit_generator.state
                for name, rng in self.streams.items()}

    def load_streams(self, states: dict[str, Any], device: torch.device) -> None:
        """Sets the named streams in `states` (`stream_states`) to their states, opening those
        not open yet; the others go on as they are."""
        for name, state in states.items():
            if isinstance(state, torch.Tensor):
                self.device_rng(name, device).set_state(state)
            else:
                self.host_rng(name).bit_generator.state = state

    def reset_streams(self, states: dict[str, Any], device: torch.device) -> None:
        """The named streams exactly as `states` (`stream_states`) holds them: those opened since
        are closed."""
        self.streams = {}
        self.load_streams(states, device)


def network_stream(seed: int, device: torch.device) -> torch.Generator:
    """A member's `NETWORK_STREAM`, opened as soon as its model is built: on the CPU it starts
    where building the model left torch's global stream, so that the network's random layers
    draw the very numbers the plain torch module would; on CUDA (whose fused kernels draw
    differently anyway) from seed + 2, apart from the data order's seed and the seed + 1 an
    older stream keeps (`Member.device_rng`'s `seed`)."""
    generator = torch.Generator(device=device)
    if device.type == "cpu":
        return generator.set_state(torch.get_rng_state())
    return generator.manual_seed(seed + 2)


def order_generator(seed: int, device: torch.device) -> torch.Generator:
    """The stream of the data order, from the seed alone, so that every regularizer sees the
    same batches for one seed."""
    return torch.Generator(device=device).manual_seed(seed)
