"""Live event writers: what a run logs while it trains (`logger=...`), a leaf below the engine.

The engines hold the logger `live(cfg, out_dir, history)` returns and hand it every epoch's row
(`epoch`) and the finished result (`finish`); what a logger needs of the model, it is given:
`weights`, a callable that returns (name, tensor) pairs, read only when the logger needs them.
This package imports nothing from the engine, the reporting or the command line;
`regbench export` (regbench.reporting.export) writes its event files with the same writer.

- regbench.loggers.tensorboard: `logger=tensorboard`, TensorBoard event files in a run's tb/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from regbench import UserInputError

Weights = Callable[[], Iterable[tuple[str, Any]]]  # (name, tensor) pairs, read only when due


class NullLogger:
    """What the engines hold without `logger=...`: every call does nothing."""

    def epoch(self, row: dict[str, Any], weights: Weights) -> None:
        pass

    def finish(self, result: dict[str, Any]) -> None:
        pass


NULL = NullLogger()


def live(cfg: Any, out_dir: Path, history: Iterable[dict[str, Any]] = ()) -> NullLogger:
    """The logger a run's config asks for: a LiveLogger with `logger=tensorboard`, else (`logger=none`) NULL."""
    if cfg.get("logger") is None or cfg.logger.name != "tensorboard":
        return NULL
    from regbench.loggers.tensorboard import TB_DIR, LiveLogger

    try:
        return LiveLogger(cfg, out_dir, list(history))
    except UserInputError:  # the extra is missing (the config check names it before any work starts)
        raise
    except Exception as e:  # tb/ cannot be written: the run goes on without its live view
        import sys

        print(f"regbench: warning: no TensorBoard logging in {Path(out_dir) / TB_DIR} ({type(e).__name__}: {e}); "
              "the run goes on", file=sys.stderr)
        return NULL
