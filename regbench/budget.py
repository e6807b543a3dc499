"""What a search spent: `search.json` (written into the sweep folder by regbench's Optuna sweeper,
hydra_plugins.regbench_optuna_sweeper) read back for `regbench report` and `regbench study`, and
the trials it pruned (their `trial.json`), whose configurations a study does not choose.

A comparison of tuned regularizers is fair when each had the same budget: the lines say how many
trials and paired seeds each study had, with which sampler and pruner, and say it loudly when the
budgets differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = "search.json"  # in the sweep folder
TRIAL_FILE = "trial.json"  # in a trial's folder, above its seed_<n>/ runs


def found(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The search records in `paths` (each a sweep folder, or a folder holding sweep folders,
    two levels down at most), in path order; unreadable ones are left out."""
    out, seen = [], set()
    for path in paths:
        path = Path(path)
        candidates = [path / FILE, *sorted(path.glob(f"*/{FILE}")), *sorted(path.glob(f"*/*/{FILE}"))]
        for file in candidates:
            if file in seen or not file.is_file():
                continue
            seen.add(file)
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("studies"), list):
                out.append((file.parent, data))
    return out


def _sampler_text(conf: Any) -> str:
    if not isinstance(conf, dict):
        return "the default sampler"
    name = str(conf.get("_target_", "?")).rsplit(".", 1)[-1]
    return f"{name}(seed={conf.get('seed')})"


def _pruner_text(conf: Any) -> str:
    if not isinstance(conf, dict):
        return "no pruner"
    name = str(conf.get("_target_", "?")).rsplit(".", 1)[-1]
    knobs = ", ".join(f"{k}={v}" for k, v in conf.items() if not k.startswith("_"))
    return f"{name}({knobs})"


def lines(paths: list[Path]) -> list[str]:
    """One line per search found under `paths` stating the budget, then one per study: its trials
    (pruned, failed) and best trial. Studies with nothing to tune have one trial and say so."""
    out = []
    for folder, data in found(paths):
        studies = [s for s in data["studies"] if isinstance(s, dict)]
        if not studies:
            continue
        tunable = [s for s in studies if s.get("space")]
        budgets = sorted({int(s.get("trials", 0)) for s in tunable})
        seeds = sorted({len(s.get("seeds") or []) for s in studies})
        instances = sorted({len(s.get("instances") or []) for s in studies} - {0})  # hydra.sweeper.across
        head = (f"tuning budget ({folder / FILE}): {len(studies)} {'study' if len(studies) == 1 else 'studies'}"
                + (f", {'/'.join(map(str, budgets))} trials" if budgets else "")
                + (f" x {'/'.join(map(str, instances))} instances" if instances else "")
                + f" x {'/'.join(map(str, seeds))} paired seeds each, {_sampler_text(data.get('sampler'))}, "
                f"{_pruner_text(data.get('pruner'))}, {data.get('batch')} trials at a time")
        if len(budgets) > 1 or len(seeds) > 1:
            head += " — UNEQUAL budgets: the comparison is not fair"
        out.append(head)
        for s in studies:
            name = s.get("key") or s.get("name")
            best = s.get("best")
            text = (f"  {name}: {s.get('counted')} of {s.get('trials')} trials"
                    + (f" ({s.get('pruned')} pruned, {s.get('failed')} failed)" if s.get("space") else " (nothing to tune)")
                    + (f", {s.get('running')} unfinished" if s.get("running") else ""))
            if best:
                # a define-by-run study's (the cocktail's): the config values its parameters made
                chosen = best["overrides"] if isinstance(best.get("overrides"), dict) else best["params"]
                params = ", ".join(f"{k}={_number(v)}" for k, v in chosen.items())
                text += f"; best trial {best['trial']}: mean val_loss {best['value']:.4g}" + (f" at {params}" if params else "")
            out.append(text)
    return out


def _number(value: Any) -> str:
    """A parameter's value, a float (or a float's text, as an override holds it) to 4 digits."""
    if isinstance(value, str):
        try:
            as_float = float(value)
        except ValueError:
            return value
        return value if value.lstrip("-").isdigit() else f"{as_float:.4g}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pruned(run_folders: Any) -> list[bool]:
    """For each run folder, whether it is a run of a trial the search pruned (its trial.json, in the
    folder above the run's, or two above under `hydra.sweeper.across`: <trial>/<instance>/seed_<n>,
    says so); one read per folder, not per run."""
    parents = [Path(f).parent for f in run_folders]
    state = {p: _trial_state(p) for p in set(parents) | {p.parent for p in parents}}
    return [state[p] == "pruned" or (state[p] is None and state[p.parent] == "pruned") for p in parents]


def _trial_state(trial_folder: Path) -> str | None:
    try:
        data = json.loads((trial_folder / TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data.get("state") if isinstance(data, dict) else None
