"""`regbench more-seeds`: adds paired seeds to the comparisons a report flags inconclusive.

    regbench more-seeds SWEEP [SWEEP ...] [--baseline LABEL | --baseline-config N]
                        [--alpha A] [--power P] [--min-effect E] [--max-seeds N] [--dry-run]

It builds the report of the SWEEPs (regbench.reporting.report.build), takes each comparison of
the validation metric whose interval holds both 0 and the minimal effect
(delta.val_<m>.needs_seeds), and runs `regbench run -m <that configuration's overrides>
seed=...` for it and for its baseline (the comparison is paired), up to the seeds it needs
(at most --max-seeds pairs).

The new runs go into SWEEP/more_seeds/round<k>/config<id>/, one Hydra sweep folder per
configuration, not into SWEEP itself: a sweep folder's job numbers belong to its job list (the
sweep's guard, regbench.cli.callbacks.foreign_job, refuses a different list there), and a
report of SWEEP reads its sub-folders too. A round's plan (plan.json: the commands) is written
before it starts; a rerun while any of its jobs has no result.json reruns the same commands in
the same folders, where Hydra's sweep skips the finished jobs; only a complete round lets the
next rerun plan a new one from the report, which then holds the new seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from regbench import UserInputError
from regbench.reporting.aggregate import SEED, metric_of
from regbench.reporting.report import Report, build
from regbench.reporting.report_command import add_seeds_options, seeds_plan

FOLDER = "more_seeds"  # under the first SWEEP


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="regbench more-seeds",
        description="Run the seeds that the comparisons `regbench report` flags inconclusive need (their interval "
        "holds both 0 and --min-effect), for each such configuration and its baseline, into "
        "SWEEP/more_seeds/round<k>/; rerun it to resume an interrupted round, or, once a round is complete, to "
        "plan the next from the report that now holds its seeds.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="SWEEP",
                        help="the sweep folder(s) of the report; the new runs go under the first")
    against = parser.add_mutually_exclusive_group()
    against.add_argument("--baseline", metavar="LABEL", help="the reg label to compare against (default: none)")
    against.add_argument("--baseline-config", type=int, metavar="N",
                         help="compare against configuration N (report.csv's config column) instead of a label")
    add_seeds_options(parser)
    parser.add_argument("--max-seeds", type=int, default=20, metavar="N",
                        help="at most this many paired seeds per comparison (default 20)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run and write nothing")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """`regbench more-seeds …`; returns the exit code."""
    args = parse_args(argv)
    try:
        seeds = seeds_plan(args)
        if args.max_seeds < 2:
            raise UserInputError(f"--max-seeds {args.max_seeds}: must be 2 or more (a paired t-test needs 2)")
        missing = [p for p in args.paths if not p.is_dir()]
        if missing:
            raise UserInputError(f"{missing[0]} is not a folder")
    except UserInputError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    root = args.paths[0] / FOLDER
    pending = unfinished_round(root)
    if pending is not None:
        folder, commands = pending
        print(f"resuming {folder} (its jobs without a result.json run; Hydra skips the finished ones)")
    else:
        try:
            report = build(args.paths, args.baseline, args.baseline_config, seeds)
        except ValueError as e:
            print(f"regbench: error: {e}", file=sys.stderr)
            return 2 if str(e).startswith("--baseline-config") else 1
        folder = root / f"round{next_round(root)}"
        try:
            commands, lines = plan(report, folder.resolve(), args.max_seeds)
        except UserInputError as e:
            print(f"regbench: error: {e}", file=sys.stderr)
            return 2
        for line in lines:
            print(line)
        if not commands:
            print("no comparison needs more seeds")
            return 0
        if not args.dry_run:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "plan.json").write_text(json.dumps({"commands": commands}, indent=1) + "\n")
    for command in commands:
        print(shown(command))
    if args.dry_run:
        return 0
    for command in commands:
        try:
            done = subprocess.run([sys.executable, "-m", "regbench", *command["argv"]])
        except KeyboardInterrupt:  # the job itself saw the Ctrl-C too, and stopped as `regbench run` does
            print("regbench: interrupted; `regbench more-seeds` again resumes this round", file=sys.stderr)
            return 130
        if done.returncode:
            print(f"regbench: error: `{shown(command)}` ended with exit code {done.returncode}; "
                  "`regbench more-seeds` again resumes this round", file=sys.stderr)
            return done.returncode
    print(f"added the seeds; `regbench report {' '.join(map(shlex.quote, map(str, args.paths)))}` includes them")
    return 0


def shown(command: dict[str, Any]) -> str:
    """A command as the user would type it."""
    return "regbench " + " ".join(map(shlex.quote, command["argv"]))


def next_round(root: Path) -> int:
    """1 more than the last round<k> under `root` (1 for the first)."""
    rounds = [int(p.name[5:]) for p in root.glob("round*") if p.name[5:].isdigit()] if root.is_dir() else []
    return max(rounds, default=0) + 1


def unfinished_round(root: Path) -> tuple[Path, list[dict[str, Any]]] | None:
    """The last round under `root` and its commands while any of its jobs has no result.json."""
    if not root.is_dir():
        return None
    last = root / f"round{next_round(root) - 1}"
    saved = last / "plan.json"
    if not saved.is_file():
        return None
    commands = json.loads(saved.read_text())["commands"]
    for command in commands:
        sweep = Path(command["sweep_dir"])
        if not all((sweep / str(i) / "result.json").is_file() for i in range(len(command["seeds"]))):
            return last, commands
    return None


def plan(report: Report, folder: Path, max_seeds: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The `regbench run -m` commands of one round, and one line per inconclusive comparison.

    Each flagged comparison gets pairs up to min(its delta.val_<m>.needs_seeds, max_seeds):
    first the seeds only one side has (the other side runs them), then fresh ones (the lowest
    numbers no run of either side has). One command per configuration, its seeds the union of
    what its comparisons ask (a baseline serves several).
    """
    t, q = report.table, f"val_{metric_of(report.runs)}"
    needs_column = f"delta.{q}.needs_seeds"
    if needs_column not in t:
        return [], []
    runs = report.runs
    ok_seeds = {c: {int(s) for s in f.loc[f["status"] == "ok", SEED]} for c, f in runs.groupby("config")}
    any_seeds = {c: {int(s) for s in f[SEED]} for c, f in runs.groupby("config")}
    wanted: dict[int, set[int]] = {}
    lines = []
    for _, r in t[t[needs_column].notna()].iterrows():
        config, base, has = int(r["config"]), int(r["delta.baseline_config"]), int(r["delta.n_pairs"])
        needs = r[needs_column]
        name = f"{r['reg']} (config {config})"
        if needs == math.inf:
            lines.append(f"{name}: inconclusive, but no number of seeds settles it (the re-split correction): "
                         "left as is")
            continue
        target = min(int(needs), max_seeds)
        if target <= has:
            lines.append(f"{name}: inconclusive, needs ~{int(needs)} seeds, has {has} (--max-seeds {max_seeds}): "
                         "left as is")
            continue
        one_side = sorted((ok_seeds[config] - any_seeds[base]) | (ok_seeds[base] - any_seeds[config]))
        used = any_seeds[config] | any_seeds[base]
        fresh = (s for s in range(10**9) if s not in used)
        chosen = (one_side + [next(fresh) for _ in range(target - has)])[: target - has]
        for c in (config, base):
            wanted.setdefault(c, set()).update(s for s in chosen if s not in ok_seeds[c])
        capped = f" (--max-seeds {max_seeds}; it needs ~{int(needs)})" if target < needs else ""
        lines.append(f"{name}: inconclusive with {has} pairs: adding {target - has} to {target}{capped}: "
                     f"seed {','.join(map(str, chosen))}")
    commands = []
    for config, seeds in sorted(wanted.items()):
        if not seeds:
            continue
        overrides = job_overrides(runs[runs["config"] == config])
        sweep_dir = folder / f"config{config}"
        ordered = sorted(seeds)
        argv = ["run", "-m", *overrides, f"seed={','.join(map(str, ordered))}", f"hydra.sweep.dir={sweep_dir}"]
        commands.append({"config": config, "seeds": ordered, "sweep_dir": str(sweep_dir), "argv": argv})
    return commands, lines


def job_overrides(frame: pd.DataFrame) -> list[str]:
    """The command-line overrides of a configuration's runs (a run folder's .hydra/overrides.yaml),
    without its seed.

    Raises:
        UserInputError: no run of it kept its overrides.
    """
    from omegaconf import OmegaConf

    for folder in frame["folder"]:
        saved = Path(folder) / ".hydra" / "overrides.yaml"
        if saved.is_file():
            overrides = [str(o) for o in OmegaConf.load(saved)]
            return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "seed"]
    raise UserInputError(f"{frame['folder'].iloc[0]}: no .hydra/overrides.yaml in any run of its configuration, so "
                         "its command cannot be rebuilt")
