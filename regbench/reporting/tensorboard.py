"""TensorBoard: a run's numbers as event files in its folder's `tb/`, live or after the fact.

Live (`logger=tensorboard`): the engines hand every epoch's row, the values the epoch's one host
read-back already produced, to `LiveLogger.epoch`; only every `logger.histogram_every` epochs
are the weights copied to the host, for their histograms and sparsity. `regbench export
tensorboard` writes the same scalars from metrics.csv and result.json for runs that trained
without the logger.

What a run folder's tb/ holds (tags; `acc` is `r2` for a regression):
- `epoch/<column>` for every metrics.csv column but `epoch` (train_loss, train_acc, val_loss,
  val_acc, lr, seconds) and `epoch/gap.acc`, `epoch/gap.loss` (train_acc - val_acc,
  val_loss - train_loss), at step = epoch. TensorBoard keeps scalars as float32: they read back
  equal to metrics.csv rounded to float32 (metrics.csv and MLflow keep every digit);
- `final/<key>` at step = epochs_run: result.json's metrics (train/val/test), `gap.*`,
  `sparsity`, `best_epoch`, `epochs_run`, `seconds`;
- `weights/<parameter>` histograms and `weights/sparsity` every N epochs (live only);
- `config`: the resolved config as text; the flat params and the label `reg` as HParams, with
  the `final/*` scalars as its metrics (TensorBoard's HParams dashboard groups a sweep by them).

Nothing here imports TensorBoard until a writer is made: `regbench run` without the logger and
`regbench --help` never load it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from regbench import UserInputError

TB_DIR = "tb"
EXTRA = 'pip install "regbench[tensorboard]"'
EXPORT_SUFFIX = ".regbench-export"  # the event files `regbench export tensorboard` writes
EVENTS = "events.out.tfevents.*"

Weights = Callable[[], Iterable[tuple[str, Any]]]  # (name, tensor) pairs, read only when due


def stack_weights(stack: Any, member: Any) -> list[tuple[str, Any]]:
    """A member's slices of the engine's stacked parameters (regbench.engine.stack), under the
    names its own network gives them (`1.weight`, ...), the same as in a lone run."""
    from regbench.engine.network import tensors

    k = next(i for i, m in enumerate(stack.members) if m is member)
    names = {id(p): name for name, p in member.model.named_parameters()}
    return [(names[id(p)], t[k]) for p, t in zip(tensors(member.model)[0], stack.params)]


def summary_writer_class() -> Any:
    """torch's SummaryWriter; one line naming the extra when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package
        raise UserInputError(f"TensorBoard is not installed: {EXTRA}") from None
    return SummaryWriter


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row as tags: every column but `epoch`, and the epoch's gap."""
    m = "acc" if "train_acc" in row else "r2"
    out = {f"epoch/{k}": float(v) for k, v in row.items() if k != "epoch"}
    out[f"epoch/gap.{m}"] = float(row[f"train_{m}"]) - float(row[f"val_{m}"])
    out["epoch/gap.loss"] = float(row["val_loss"]) - float(row["train_loss"])
    return out


def final_scalars(result: dict[str, Any]) -> dict[str, float]:
    """result.json's final numbers as tags (null values left out)."""
    out: dict[str, Any] = {f"final/{k}": v for k, v in (result.get("metrics") or {}).items()}
    out.update({f"final/gap.{k}": v for k, v in (result.get("gap") or {}).items()})
    for key in ("sparsity", "best_epoch", "epochs_run", "seconds"):
        out[f"final/{key}"] = result.get(key)
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def hparam_value(value: Any) -> Any:
    """What TensorBoard's HParams accept: numbers, strings and booleans (lists as JSON, null as text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else json.dumps(value)


class Writer:
    """One run's event files: scalars in double precision, text, histograms, HParams."""

    def __init__(self, folder: Path, filename_suffix: str = "") -> None:
        self.folder = Path(folder)
        self._w = summary_writer_class()(str(self.folder), filename_suffix=filename_suffix)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            # TensorBoard's classic float32 scalar: a float64 tensor (new_style, double_precision) would
            # keep every digit, but the data server that `tensorboard` uses by default shows none of them
            self._w.add_scalar(tag, value, step)

    def text(self, tag: str, markdown: str) -> None:
        self._w.add_text(tag, markdown, 0)

    def histograms(self, weights: Iterable[tuple[str, Any]], step: int) -> None:
        """`weights/<name>` histograms and `weights/sparsity` (the share of exact zeros in the
        penalised weights: parameters of two or more dimensions)."""
        zeros = total = 0
        for name, tensor in weights:
            values = tensor.detach().float().cpu()
            self._w.add_histogram(f"weights/{name}", values.numpy(), step)
            if values.dim() >= 2:
                zeros += int((values == 0).sum())
                total += values.numel()
        if total:
            self.scalars({"weights/sparsity": zeros / total}, step)

    def hparams(self, result: dict[str, Any], metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {k: hparam_value(v) for k, v in (result.get("params") or {}).items()}
        values["reg"] = str(result.get("reg"))
        values["status"] = str(result.get("status"))
        exp, ssi, sei = hparams(values, {k: v for k, v in metrics.items()})
        for summary in (exp, ssi, sei):
            self._w.file_writer.add_summary(summary)

    def events(self, events: Iterable[Any]) -> None:
        """Copies events (tensorboard's Event protos) as they are."""
        for event in events:
            self._w._get_file_writer().add_event(event)

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def config_markdown(yaml_text: str) -> str:
    """A YAML text as a Markdown code block (4-space indent: every Markdown renders it)."""
    return "\n".join("    " + line for line in yaml_text.rstrip("\n").splitlines())


def _events_up_to(paths: list[Path], last_step: int) -> list[Any]:
    """The events of earlier event files up to `last_step`, file headers left out."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    kept = []
    for path in paths:
        for event in LegacyEventFileLoader(str(path)).Load():  # as written (not migrated to tensors)
            if not event.HasField("file_version") and event.step <= last_step:
                kept.append(event)
    return kept


def write_final(writer: Writer, result: dict[str, Any]) -> None:
    """The final scalars and the HParams session of a finished run."""
    finals = final_scalars(result)
    writer.scalars(finals, int(result.get("epochs_run") or 0))
    writer.hparams(result, finals)


class NullLogger:
    """What the engines hold without `logger=...`: every call does nothing."""

    def epoch(self, row: dict[str, Any], weights: Weights) -> None:
        pass

    def finish(self, result: dict[str, Any]) -> None:
        pass


NULL = NullLogger()


class LiveLogger(NullLogger):
    """`logger=tensorboard` for one run: its tb/ folder, written epoch by epoch.

    A run that starts afresh replaces the event files its folder held (as metrics.csv is
    rewritten); a resumed run continues them, rewritten without what the interrupted process
    logged after its checkpoint's epoch (so that every reader sees each epoch once), or, when
    the interrupted run had no logger, logs the checkpoint's history first. A logging error (a
    full disk) is one warning, and the run goes on without the logger.
    """

    def __init__(self, cfg: Any, out_dir: Path, history: list[dict[str, Any]]) -> None:
        from omegaconf import OmegaConf

        self.every = int(cfg.logger.histogram_every)
        folder = Path(out_dir) / TB_DIR
        old = sorted(folder.glob(EVENTS)) if folder.is_dir() else []
        if old and not history:
            shutil.rmtree(folder)
        self.writer: Writer | None = Writer(folder)
        if old and history:
            self.writer.events(_events_up_to(old, len(history)))
            for path in old:
                path.unlink()
        else:
            self.writer.text("config", config_markdown(OmegaConf.to_yaml(cfg, resolve=True)))
            for row in history:
                self.writer.scalars(epoch_scalars(row), int(row["epoch"]))
        self.writer.flush()

    def _guard(self, write: Callable[[Writer], None]) -> None:
        if self.writer is None:
            return
        try:
            write(self.writer)
        except Exception as e:  # the run matters more than its live view
            import sys

            print(f"regbench: warning: TensorBoard logging stopped in {self.writer.folder} ({type(e).__name__}: {e}); "
                  "the run goes on", file=sys.stderr)
            self.writer = None

    def epoch(self, row: dict[str, Any], weights: Weights) -> None:
        """The epoch's row (values already on the host); histograms when the epoch is due."""
        step = int(row["epoch"])

        def write(w: Writer) -> None:
            w.scalars(epoch_scalars(row), step)
            if self.every and step % self.every == 0:
                w.histograms(weights(), step)  # the only read-back the logger adds, every N epochs
            w.flush()

        self._guard(write)

    def finish(self, result: dict[str, Any]) -> None:
        """The final numbers and HParams, once result.json is written; closes the files."""

        def write(w: Writer) -> None:
            write_final(w, result)
            w.close()

        self._guard(write)
        self.writer = None


def live(cfg: Any, out_dir: Path, history: Iterable[dict[str, Any]] = ()) -> NullLogger:
    """The logger a run's config asks for: a LiveLogger with `logger=tensorboard`, else (`logger=none`) NULL."""
    if cfg.get("logger") is None or cfg.logger.name != "tensorboard":
        return NULL
    try:
        return LiveLogger(cfg, out_dir, list(history))
    except UserInputError:  # the extra is missing (the config check names it before any work starts)
        raise
    except Exception as e:  # tb/ cannot be written: the run goes on without its live view
        import sys

        print(f"regbench: warning: no TensorBoard logging in {Path(out_dir) / TB_DIR} ({type(e).__name__}: {e}); "
              "the run goes on", file=sys.stderr)
        return NULL


# ---------------------------------------------------------------------------------------------
# `regbench export tensorboard PATH...`


def has_live_events(folder: Path) -> bool:
    """Whether tb/ holds event files the live logger wrote (not an earlier export's)."""
    tb = Path(folder) / TB_DIR
    return tb.is_dir() and any(not p.name.endswith(EXPORT_SUFFIX) for p in tb.glob(EVENTS))


def export_run(folder: Path, result: dict[str, Any], rows: list[dict[str, Any]], config_yaml: str | None) -> None:
    """Writes a finished run's tb/ from its files, replacing what an earlier export wrote."""
    tb = Path(folder) / TB_DIR
    for old in tb.glob(EVENTS + EXPORT_SUFFIX) if tb.is_dir() else ():
        old.unlink()
    writer = Writer(tb, filename_suffix=EXPORT_SUFFIX)
    try:
        if config_yaml is not None:
            writer.text("config", config_markdown(config_yaml))
        for row in rows:
            writer.scalars(epoch_scalars(row), int(row["epoch"]))
        write_final(writer, result)
    finally:
        writer.close()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of floats (`epoch` an int); empty when the file is missing."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = []
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                row[key] = int(value) if key == "epoch" else (float(value) if value not in ("", None) else math.nan)
            rows.append(row)
        return rows
