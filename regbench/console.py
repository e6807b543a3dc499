"""What a run shows on the terminal: a progress bar while it trains, a table when it ends."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


def progress_bar(console: Console, max_epochs: int, label: str) -> tuple[Progress, Any]:
    """A per-run bar (epoch, train/val loss) that stays silent when stdout is not a terminal."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  {task.fields[losses]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task(label, total=max_epochs, losses="")
    return bar, task


def count_bar(console: Console, total: int, label: str, unit: str) -> tuple[Progress, Any]:
    """A bar counting `total` items (files decoded, ...), silent when the console is not a terminal."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    return bar, bar.add_task(label, total=total)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def result_table(result: dict[str, Any]) -> Table:
    """Train/val/test metrics, the generalization gap and the run's facts as one table."""
    m = "acc" if result["task"] == "classification" else "r2"
    metrics, gap = result["metrics"], result["gap"]
    table = Table()
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column(m, justify="right")
    for split in ("train", "val", "test"):
        table.add_row(split, _fmt(metrics[f"{split}_loss"]), _fmt(metrics[f"{split}_{m}"]))
    table.add_row(
        "gap",
        _fmt(gap["loss"]),
        _fmt(gap[m]),
        style="bold",
    )
    return table


def result_summary(result: dict[str, Any]) -> str:
    """The lines around the table: what ran, and the facts a table cannot hold."""
    m = "acc" if result["task"] == "classification" else "r2"
    es = "stopped early" if result["stopped_early"] else "ran to max_epochs" if result["status"] == "ok" else result["status"]
    params = result["params"]
    if params.get("optim.name") == "fista":
        done = f"solved by optim=fista in {result['epochs_run']} blocks of {params.get('optim.log_every')} iterations"
    else:
        done = f"best epoch {result['best_epoch']} of {result['epochs_run']} ({es})"
    optimality = result.get("optimality")
    text = (
        f"gap: train {m} - val {m}, and val loss - train loss\n"
        f"{done}; sparsity {result['sparsity']:.4f}; "
        + ("" if optimality is None else f"optimality {optimality:.2e}; ")
        + f"{result['n_params']} parameters; {result['seconds']:.1f}s on {result['device']}"
    )
    # the calibration metrics (result.json, the report) stay off the terminal: the run's summary is what it was
    plain = {f"{split}_{k}" for split in ("train", "val", "test") for k in ("loss", m, "ece", "brier")}
    own = {k: v for k, v in (result.get("metrics") or {}).items() if k not in plain}  # a regularizer's (test_acc_fgsm)
    if own:
        text += "\n" + "; ".join(f"{k} {_fmt(v)}" for k, v in own.items())
    weights = result.get("weights")
    if weights not in (None, "trained"):  # an average is the model: say which weights the table's numbers are of
        which = weights if weights.startswith("snapshot") else f"{weights.upper()} average of the weights"
        text += f"\nthe metrics are those of the {which} (result.json's weights: {weights})"
    classes = result.get("classes")
    if classes and classes != [str(i) for i in range(len(classes))]:  # a user's labels, named back
        shown = ", ".join(f"{i}={name}" for i, name in enumerate(classes[:20]))
        text += f"\nclasses: {shown}" + (f", … ({len(classes)} in all, in result.json)" if len(classes) > 20 else "")
    if result.get("early_best"):
        patience = result["params"].get("trainer.patience")
        text += (f"\nwarning: the reported epoch {result['best_epoch']} lies within the first {patience} epochs "
                 "(trainer.patience): a barely trained model, not a trained one (a penalty this strong may keep it "
                 "from learning; try trainer.patience=null to see where it goes)")
    return text


def result_title(result: dict[str, Any]) -> str:
    return f"{result['dataset']} / {result['model']} / reg={result['reg']} / seed {result['seed']}: {result['status']}"


def one_line(result: dict[str, Any], job: str) -> str:
    """A compact summary for a job of a multirun."""
    m = "acc" if result["task"] == "classification" else "r2"
    if result["status"] == "failed":
        return f"[{job}] {result['reg']} seed={result['seed']}: failed: {result['error']}"
    mt = result["metrics"]
    return (
        f"[{job}] {result['reg']} seed={result['seed']}: val_{m} {_fmt(mt[f'val_{m}'])} "
        f"test_{m} {_fmt(mt[f'test_{m}'])} gap.{m} {_fmt(result['gap'][m])} "
        f"({result['epochs_run']} epochs, {result['status']}"
        + (f"; best epoch {result['best_epoch']}, within patience: barely trained" if result.get("early_best") else "")
        + ")"
    )
