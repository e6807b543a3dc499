"""Ensembles and temperature scaling from saved predictions (predictions.npz, regbench.predictions):
what `regbench report --ensemble` and `--temperature` add, without retraining.

- The ensemble of a configuration's seeds (`--ensemble`), or of every run of the named
  configurations (`--ensemble NAME,NAME`: report.csv's config ids or reg labels): the mean of
  its members' class probabilities (a classification: softmax of each member's saved logits) or
  of their outputs (a regression), evaluated on the test split with the runs' own conventions
  (loss = NLL of the averaged probabilities, acc, ECE, Brier score; MSE, R²), beside the mean
  of the same figures over its members alone.
- Temperature scaling (`--temperature`, classification): per run, the one temperature T > 0 that
  minimises the NLL of softmax(logits / T) on its validation split (Guo et al. 2017), then test
  NLL and ECE before and after, averaged over each configuration's seeds.

Members must share one test set: an ensemble whose runs' saved test targets differ (re-split
seeds of a dataset whose test split moves with the seed) is refused in one line. Runs without a
predictions.npz (recorded before runs kept one, or save_predictions=false) are left out, said
in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regbench import predictions
from regbench.predictions import PREDICTIONS_FILE, classification_scores, log_softmax, regression_scores

T_RANGE = (1e-3, 1e3)  # the temperatures searched; a run whose optimum lies at an end is left out, said


@dataclass
class Evaluated:
    """What --ensemble and --temperature give: their tables (None where not asked for or empty),
    the reliability diagrams of the ensembles and of the temperature-scaled configurations
    (label -> result.json-style `calibration`), notes."""

    ensembles: pd.DataFrame | None = None
    temperatures: pd.DataFrame | None = None
    diagrams: dict[str, dict[str, Any]] = field(default_factory=dict)
    scaled_diagrams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each configuration's test reliability diagrams after temperature scaling, one per seed."""
    notes: list[str] = field(default_factory=list)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T in T_RANGE minimising the mean NLL of softmax(logits / T) against `y`.

    The NLL is convex in b = 1/T (a log-sum-exp of b z minus b z_y), and its derivative, the mean
    of E_p[z] - z_y, grows with b: bisection on it, to 1e-12 relative in b."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    true = z[np.arange(len(y)), y]

    def slope(b: float) -> float:
        p = np.exp(log_softmax(b * z))
        return float(((p * z).sum(axis=1) - true).mean())

    low, high = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    if slope(low) >= 0:
        return T_RANGE[1]
    if slope(high) <= 0:
        return T_RANGE[0]
    while high - low > 1e-12 * high:
        mid = 0.5 * (low + high)
        if slope(mid) > 0:
            high = mid
        else:
            low = mid
    return 1.0 / (0.5 * (low + high))


def resolve(names: list[str], table: pd.DataFrame) -> list[tuple[str, list[int]]]:
    """The named ensembles of `--ensemble A,B` (each option one ensemble) as (label, config ids):
    a name is a config id (report.csv's `config`) or a reg label held by exactly one configuration.

    Raises:
        ValueError: a name matches no configuration, or a reg label several.
    """
    out = []
    for text in names:
        ids = []
        for name in (n.strip() for n in text.split(",") if n.strip()):
            if name.isdigit() and int(name) in set(table["config"]):
                ids.append(int(name))
                continue
            match = table.loc[table["reg"].astype(str) == name, "config"].tolist()
            if len(match) == 1:
                ids.append(int(match[0]))
            elif not match:
                raise ValueError(f"--ensemble {text}: {name} is neither a config id nor a reg label here (the configs: "
                                 + ", ".join(f"{c} {r}" for c, r in zip(table["config"], table["reg"])) + ")")
            else:
                raise ValueError(f"--ensemble {text}: {name} is the label of configs {', '.join(map(str, match))}: "
                                 "name one by its config id")
        out.append(("+".join(_label(table, c) for c in dict.fromkeys(ids)), list(dict.fromkeys(ids))))
    return out


def _label(table: pd.DataFrame, config: int) -> str:
    reg = table.loc[table["config"] == config, "reg"]
    return f"{config}:{reg.iloc[0]}" if len(reg) else str(config)


def _loaded(runs: pd.DataFrame, notes: list[str]) -> dict[int, list[dict[str, Any]]]:
    """Each configuration's ok runs' predictions (with `seed`), by config id; a line for the runs
    without a file and for unreadable ones."""
    ok = runs[runs["status"] == "ok"]
    found: dict[int, list[dict[str, Any]]] = {}
    missing, broken = 0, []
    for _, row in ok.iterrows():
        path = Path(str(row["folder"])) / PREDICTIONS_FILE
        if not path.is_file():
            missing += 1
            continue
        try:
            found.setdefault(int(row["config"]), []).append({**predictions.read(path), "seed": row.get("seed")})
        except ValueError as e:
            broken.append(str(e))
    if missing:
        notes.append(f"{missing} of {len(ok)} ok runs have no {PREDICTIONS_FILE} (recorded before runs kept one, or "
                     "with save_predictions=false): left out of the ensembles and temperatures")
    notes.extend(f"{why}: left out" for why in broken[:3])
    if len(broken) > 3:
        notes.append(f"... and {len(broken) - 3} more unreadable {PREDICTIONS_FILE}")
    return found


def _shared_test_set(members: list[dict[str, Any]]) -> bool:
    first = members[0]["test_targets"]
    return all(m["test_targets"].shape == first.shape and np.array_equal(m["test_targets"], first) for m in members)


def ensemble_scores(members: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """(the ensemble's test scores, the mean of its members' own) of runs sharing one test set."""
    task, y = members[0]["meta"]["task"], members[0]["test_targets"]
    if task == "classification":
        bins = int(members[0]["meta"].get("bins", 15))
        logp = np.stack([log_softmax(m["test_outputs"]) for m in members])
        mixed = np.logaddexp.reduce(logp, axis=0) - math.log(len(members))  # log of the mean probability
        together = classification_scores(mixed, y, bins)
        alone = [classification_scores(lp, y, bins) for lp in logp]
    else:
        outs = np.stack([m["test_outputs"].astype(np.float64) for m in members])
        together = regression_scores(outs.mean(axis=0), y)
        alone = [regression_scores(o, y) for o in outs]
    mean = {k: float(np.mean([a[k] for a in alone])) for k in together if k != "bins"}
    return together, mean


def evaluate(runs: pd.DataFrame, table: pd.DataFrame, ensemble: list[str] | None, temperature: bool) -> Evaluated:
    """The --ensemble (None: not asked; [""]: every configuration's seeds; names: those
    ensembles too) and --temperature tables of a report's runs and table.

    Raises:
        ValueError: a name of `ensemble` matches no configuration (see `resolve`).
    """
    named = resolve([e for e in ensemble or () if e], table)
    result = Evaluated()
    if ensemble is None and not temperature:
        return result
    found = _loaded(runs, result.notes)
    if not found:
        result.notes.append(f"no run here kept its predictions ({PREDICTIONS_FILE}): no ensemble or temperature")
        return result
    order = [int(c) for c in table["config"] if int(c) in found]
    if ensemble is not None:
        groups = [(_label(table, c), [c]) for c in order] if "" in ensemble else []
        rows = []
        for label, ids in groups + named:
            members = [m for c in ids for m in found.get(c, [])]
            if not members:
                result.notes.append(f"ensemble {label}: none of its runs kept predictions: no ensemble")
                continue
            if not _shared_test_set(members):
                result.notes.append(f"ensemble {label}: its runs' test sets differ (other data, or other splits: by "
                                    "default each seed re-splits, dataset.split_seed following seed): refused, an "
                                    "ensemble needs its members' predictions on the same samples; a sweep with a "
                                    "fixed dataset.split_seed=0 has them")
                continue
            together, alone = ensemble_scores(members)
            row = {"ensemble": label, "configs": " ".join(map(str, ids)), "members": len(members)}
            row |= {f"ensemble_test_{k}": v for k, v in together.items() if k != "bins"}
            row |= {f"mean_member_test_{k}": v for k, v in alone.items()}
            rows.append(row)
            if "bins" in together:
                result.diagrams[label] = _diagram(together["bins"])
        result.ensembles = pd.DataFrame(rows) if rows else None
    if temperature:
        rows, classified = [], False
        for c in order:
            members = [m for m in found[c] if m["meta"]["task"] == "classification"]
            if not members:
                continue
            classified = True
            fitted, unbounded = [], 0
            for m in members:
                t = fit_temperature(m["val_outputs"], m["val_targets"])
                if t in T_RANGE:  # no minimum inside the range: no temperature the validation split can tell
                    unbounded += 1
                    continue
                bins = int(m["meta"].get("bins", 15))
                before = classification_scores(log_softmax(m["test_outputs"]), m["test_targets"], bins)
                after = classification_scores(log_softmax(m["test_outputs"] / t), m["test_targets"], bins)
                fitted.append((t, before, after))
            if unbounded:
                result.notes.append(
                    f"--temperature: {unbounded} of {len(members)} runs of {_label(table, c)} left out: their validation "
                    f"NLL has no minimum for T in [{T_RANGE[0]:g}, {T_RANGE[1]:g}] (a validation split classified "
                    "perfectly keeps gaining as T falls to 0; one classified at chance as T grows), so the split cannot "
                    "tell a temperature")
            if not fitted:
                continue
            result.scaled_diagrams[_label(table, c)] = [_diagram(f[2]["bins"]) for f in fitted]  # pooled when drawn
            rows.append({"config": c, "reg": table.loc[table["config"] == c, "reg"].iloc[0], "runs": len(fitted),
                         "temperature": float(np.mean([t for t, _, _ in fitted])),
                         **{f"test_{k}_{when}": float(np.mean([f[i][k] for f in fitted]))
                            for k in ("loss", "ece", "brier", "acc") for i, when in ((1, "before"), (2, "after"))}})
        if rows:
            result.temperatures = pd.DataFrame(rows)
        elif not classified:
            result.notes.append("--temperature: no classification run kept its predictions: no temperature scaling")
    return result


def _diagram(bins: dict[str, list[float]]) -> dict[str, Any]:
    """result.json's `calibration` of an ensemble's test split (what plots.reliability draws)."""
    count = bins["count"]

    def mean(total: float, n: float) -> float | None:
        return total / n if n else None

    return {"bins": len(count), "test": {"count": [int(n) for n in count],
                                         "confidence": [mean(s, n) for s, n in zip(bins["confidence"], count)],
                                         "accuracy": [mean(h, n) for h, n in zip(bins["hits"], count)]}}
