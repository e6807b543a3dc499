"""(d) What each regularizer costs: for every row (each preset of conf/reg that switches a
registered regularizer on; SWA averaging from the first epoch), the runner's median epoch time
with it over the same run without it (its baseline: reg=none, or batch norm alone for SWA's
update_bn pass), on (a)'s and (b)'s MLPs, fixed epochs, no early stopping, rows and baselines
interleaved and repeated. Targets on MNIST, where the arithmetic dominates: EMA and mixup at most
1.10x, SAM at most 2.3x (two forward-backward passes a step: near 2x by nature).

The rows are derived, not listed (`reg_rows`): every preset in conf/reg whose composed `reg`
node switches on a regularizer of the registry (`regbench.regularizers.builtin()`) is a row,
on the workloads' MLP, or else on the first of OTHER_MODELS that the regularizer's
`config_problem` hook accepts (with that model as the baseline too: drop_path and shakedrop run
on resmlp). A new regularizer with its preset gets its row without an edit here; ADJUST holds
what a row needs beyond its preset, for the few that do.
"""

from __future__ import annotations

import functools
import gc
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .common import REPO, CpuWatch, compose_cfg
from .loops import WORKLOAD_A, run_runner

Row = tuple[str, list[str], list[str]]  # (its name, its overrides, its baseline's overrides)

# The models a row may move to when the workloads' MLP has nothing its regularizer acts on, in
# order: fully connected like (a)'s and (b)'s, so that the row still runs on both workloads.
OTHER_MODELS = ("resmlp",)


@dataclass(frozen=True)
class Adjust:
    """What a preset's row needs beyond the preset.

    Attributes:
        name: the row's name, when not the preset's.
        overrides: overrides after the preset's.
        then: further rows, right after this one (combinations with their own baselines).
        shared: overrides of the row and of its baseline alike (a schedule the regularizer needs),
            so that the two still differ in `reg` keys alone.
    """

    name: str | None = None
    overrides: tuple[str, ...] = ()
    then: tuple[Row, ...] = ()
    shared: tuple[str, ...] = ()


ADJUST = {
    # the L1 part applied as a proximal soft-threshold after each step (reg.l1_proximal, the default)
    "l1": Adjust(name="l1 (proximal)"),
    # SWA starts averaging at once (reg.swa=0.01: S = 0) so that every timed epoch pays for it; with
    # batch norm it also recomputes the statistics of the average (update_bn), against batch norm alone
    "swa": Adjust(overrides=("reg.swa=0.01",),
                  then=(("swa + batchnorm (update_bn)", ["reg=[swa,batchnorm]", "reg.swa=0.01"], ["reg=batchnorm"]),)),
    # snapshot ensembles need cosine restarts (refused without); cycles of one epoch, so that every timed epoch
    # takes a snapshot and, from the third on, evaluates the full ensemble of M = 3 (three forward passes)
    # (its baseline: the same schedule without snapshots)
    "snapshot": Adjust(shared=("optim.schedule=cosine_restarts", "optim.restart_period=1", "optim.restart_mult=1")),
}

# targets of (d) on (b), where the arithmetic dominates: (row, the most its epoch may cost relative to the baseline)
REG_TARGETS = [("ema", 1.10), ("mixup", 1.10), ("sam", 2.3)]


def reg_rows() -> list[Row]:
    """(d)'s rows, derived from the registry and the presets in conf/reg (see the module's docstring).

    Ordered by model (the workloads' MLP first), then by the first regularizer each preset
    switches on (in the registry's order), then by the preset's name; a row's ADJUST.then
    rows follow it.
    """
    return [(name, list(over), list(base)) for name, over, base in _derived()[0]]


def untimed() -> list[str]:
    """The registered regularizers no row switches on (no preset of theirs runs on OTHER_MODELS)."""
    return list(_derived()[1])


@functools.lru_cache(maxsize=None)
def _derived() -> tuple[tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...], tuple[str, ...]]:
    from regbench.regularizers import builtin, config_problems
    from regbench.regularizers.registry import regularizers

    order = {cls: i for i, cls in enumerate(builtin())}
    found = []  # (sort key, the rows)
    covered: set[type] = set()
    for preset in sorted(p.stem for p in (REPO / "conf" / "reg").glob("*.yaml")):
        adjust = ADJUST.get(preset, Adjust())
        for m, model in enumerate((None, *OTHER_MODELS)):
            on_model = [f"model={model}"] if model else []
            base = [*on_model, *adjust.shared]
            over = [*base, f"reg={preset}", *adjust.overrides]
            cfg = compose_cfg([*WORKLOAD_A, *over])
            acting = [cls for cls, values in regularizers(cfg.reg) if cls in order and cls.label(values(cfg.reg), cfg.model)]
            if not acting or config_problems(cfg.reg, cfg):
                continue  # nothing acts on this model (reg=none, or batch norm on a linear model), or it refuses it
            name = (adjust.name or preset) + (f" ({model})" if model else "")
            rows = [(name, over, base), *((n, [*base, *o], [*base, *b]) for n, o, b in adjust.then)]
            found.append(((m, min(order[c] for c in acting), preset), rows))
            covered.update(acting)
            break
    rows = [(n, tuple(o), tuple(b)) for _, group in sorted(found) for n, o, b in group]
    return tuple(rows), tuple(cls.name for cls in order if cls not in covered)


def bench_regularizers(workloads: dict[str, list[str]], rows: list[tuple[str, list[str], list[str]]], epochs: dict[str, int],
                       repeats: int, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """(d) Each regularizer's epoch time relative to its baseline's, per workload: runner.run with
    fixed epochs and no early stopping, the rows and their baselines interleaved (the order
    rotating each repeat); the median per-epoch seconds of each run, then the median over repeats."""
    out: dict[str, Any] = {"epochs": epochs, "repeats": repeats, "workloads": {}}
    watch = CpuWatch()
    for name, base in workloads.items():
        variants = {tuple(b) for _, _, b in rows} | {None}
        configs: dict[Any, Any] = {}
        for label, over, b in rows:
            configs[label] = compose_cfg([*base, *over, "trainer.patience=null", f"trainer.max_epochs={epochs[name]}"])
        for b in variants - {None}:
            configs[("baseline", b)] = compose_cfg([*base, *b, "trainer.patience=null", f"trainer.max_epochs={epochs[name]}"])
        seconds: dict[Any, list[float]] = {key: [] for key in configs}
        keys = list(configs)
        for r in range(repeats):
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:
                gc.collect()
                seconds[key].append(statistics.median(run_runner(configs[key], workdir)["epoch_seconds"]))
        table = {}
        for label, _, b in rows:
            mine, theirs = statistics.median(seconds[label]), statistics.median(seconds[("baseline", tuple(b))])
            table[label] = {"epoch_seconds": mine, "baseline_epoch_seconds": theirs, "ratio": mine / theirs,
                            "baseline": " ".join(b) or "reg=none"}
        out["workloads"][name] = table
        log(f"(d) {name}: " + ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in table.items()))
    out["machine_sharing"] = watch.foreign()
    return out
