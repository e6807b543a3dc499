"""The config-key rules as of 5be3e05, copied verbatim (only the imports and the names of the
frozen knob data differ): the oracle that regbench.config.keys, which derives them from each
key's one declaration, must reproduce. Do not edit: a run folder written by that version keeps
the config_hash these rules give it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

# --- regbench/config/keys.py as of 5be3e05 ---
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "cosine_restarts", "plateau")

# The optim.* knobs each schedule reads (besides optim.lr and trainer.max_epochs).
SCHEDULE_KNOBS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "cosine": ("min_lr",),
    "warmup_cosine": ("min_lr", "warmup_epochs"),
    "step": ("step_size", "gamma"),
    "cosine_restarts": ("min_lr", "restart_period", "restart_mult"),
    "plateau": ("min_lr", "plateau_patience", "plateau_factor"),
}
ALL_SCHEDULE_KNOBS = ("min_lr", "warmup_epochs", "step_size", "gamma", "restart_period", "restart_mult",
                      "plateau_patience", "plateau_factor")


def inert_keys(params: dict[str, Any]) -> list[str]:
    schedule = params.get("optim.schedule", "constant")
    read = SCHEDULE_KNOBS.get(schedule, ALL_SCHEDULE_KNOBS)
    out = [f"optim.{k}" for k in ALL_SCHEDULE_KNOBS if k not in read and f"optim.{k}" in params]
    if schedule == "constant" and "optim.schedule" in params:
        out.append("optim.schedule")
    return out


MODEL_KNOBS_SINCE = {"groups": ("resmlp",), "blocks": ("resmlp",), "width": ("resmlp",),
                     "depth": ("resnet",), "width_mult": ("resnet",), "_target_": ("custom",), "kwargs": ("custom",)}
NOT_PARAMS = ("logger",)
NOT_HASHED = ("save_model", "keep_checkpoint", "overwrite", "trainer.checkpoint_seconds", "search.seeds")
SOLVER_ONLY = ("optim.tol", "optim.max_iter", "optim.log_every")
OWN_DATA_DEFAULTS = {"dataset.path": None, "dataset.target": None, "dataset.task": "auto", "dataset.drop": [],
                     "dataset.test_path": None, "dataset.split_column": None, "dataset.image_size": None,
                     "dataset.index_col": None}
MEMBER_KEYS = ("seed", "optim.lr", "optim.schedule", "optim.min_lr", "optim.warmup_epochs", "optim.step_size",
               "optim.gamma", "optim.restart_period", "optim.restart_mult", "optim.plateau_patience",
               "optim.plateau_factor")
NOT_COMPUTED = (*NOT_HASHED, "trainer.num_threads")

OWN_DATA = ("table", "arrays", "image_folder")  # regbench.data.files.OWN_DATA as of 5be3e05
SYNTHETIC = ("synthetic", "synthetic_regression")
TORCHVISION = ("mnist", "fashion_mnist", "cifar10")
ONLY_FOR = {
    "dataset.n_samples": ("dataset.name", SYNTHETIC),
    "dataset.n_features": ("dataset.name", SYNTHETIC),
    "dataset.n_informative": ("dataset.name", SYNTHETIC),
    "dataset.generator_seed": ("dataset.name", SYNTHETIC),
    "dataset.noise": ("dataset.name", ("synthetic_regression",)),
    "dataset.root": ("dataset.name", TORCHVISION),
    "dataset.download": ("dataset.name", TORCHVISION),
    "dataset.test_fraction": ("dataset.name", ("digits", "breast_cancer", "wine", "diabetes", *SYNTHETIC, *OWN_DATA)),
    "dataset.path": ("dataset.name", OWN_DATA),
    "dataset.task": ("dataset.name", ("table", "arrays")),
    "dataset.target": ("dataset.name", ("table",)),
    "dataset.drop": ("dataset.name", ("table",)),
    "dataset.test_path": ("dataset.name", ("table",)),
    "dataset.split_column": ("dataset.name", ("table",)),
    "dataset.index_col": ("dataset.name", ("table",)),
    "dataset.image_size": ("dataset.name", ("image_folder",)),
    "dataset.hflip": ("reg.augment", (True,)),
    "optim.momentum": ("optim.name", ("sgd",)),
    "optim.tol": ("optim.name", ("fista",)),
    "optim.max_iter": ("optim.name", ("fista",)),
    "optim.log_every": ("optim.name", ("fista",)),
    # the schedule knobs, for the schedules that read them
    **{f"optim.{knob}": ("optim.schedule", tuple(s for s, reads in SCHEDULE_KNOBS.items() if knob in reads))
       for knob in ALL_SCHEDULE_KNOBS},
    "model.channels": ("model.name", ("cnn",)),
    "model.hidden_sizes": ("model.name", ("mlp", "cnn")),
    "model.activation": ("model.name", ("mlp", "cnn", "resmlp", "resnet")),
    # the residual and custom models' knobs, for the models that read them
    **{f"model.{knob}": ("model.name", models) for knob, models in MODEL_KNOBS_SINCE.items()},
    "reg.swa_lr": ("reg.swa", None),  # None: any value but the knob's off (0)
    "reg.swa_anneal_epochs": ("reg.swa", None),
    "reg.cutout_size": ("reg.cutout", None),
    "reg.sam_adaptive": ("reg.sam", None),
}

# The built-in knobs as of 5be3e05: (name, default, since, member), from their modules.
KNOBS = [
    ("alpha", 0.0, None, True), ("l1_ratio", 0.5, None, True), ("l1_proximal", True, None, True),
    ("weight_decay", 0.0, None, True), ("dropout", 0.0, None, True), ("batchnorm", False, None, False),
    ("drop_path", 0.0, "0.2", True), ("shakedrop", 0.0, "0.2", True), ("label_smoothing", 0.0, None, True),
    ("augment", False, None, False), ("cutout", 0.0, "0.2", True), ("cutout_size", 0.33, "0.2", True),
    ("mixup", 0.0, "0.2", True), ("cutmix", 0.0, "0.2", True), ("mix_prob", 1.0, "0.2", True),
    ("input_noise", 0.0, "0.2", True), ("sam", 0.0, "0.2", True), ("sam_adaptive", False, "0.2", True),
    ("ema", 0.0, "0.2", True), ("swa", 0.0, "0.2", True), ("swa_lr", 0.0, "0.2", True),
    ("swa_anneal_epochs", 10, "0.2", True),
]


# --- regbench/results.py config_hash as of 5be3e05 (builtin_knobs() replaced by KNOBS) ---
def config_hash(params: dict[str, Any], data: str | None = None) -> str:
    solver = params.get("optim.name") == "fista"
    inert = set(inert_keys(params))
    inert |= {f"reg.{name}" for name, default, since, _ in KNOBS if since and params.get(f"reg.{name}") == default}
    inert |= {f"model.{k}" for k, models in MODEL_KNOBS_SINCE.items() if params.get("model.name") not in models}
    inert |= {k for k, default in OWN_DATA_DEFAULTS.items() if params.get(k, default) == default}
    kept = {k: v for k, v in params.items()
            if k not in NOT_HASHED and k not in inert and (solver or k not in SOLVER_ONLY)}
    if data is not None:  # not a config key: no config can collide with it
        kept["data fingerprint"] = data
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- regbench/reporting/collect.py's back-fills as of 5be3e05 (schema defaults frozen) ---
OPTIM_DEFAULTS = {"schedule": "constant", "min_lr": 0.0, "warmup_epochs": 5, "step_size": 30, "gamma": 0.1,
                  "restart_period": 15, "restart_mult": 2, "plateau_patience": 4, "plateau_factor": 0.1}
MODEL_DEFAULTS = {"groups": 2, "blocks": 2, "width": 256, "depth": 20, "width_mult": 1, "_target_": None}


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _before_schedules(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "params.optim.schedule" not in runs or "params.optim.name" not in runs:
        return runs
    old = runs["params.optim.schedule"].isna() & runs["params.optim.name"].notna()
    if not old.any():
        return runs
    runs = runs.copy()
    for knob in ("schedule", *ALL_SCHEDULE_KNOBS):
        column = f"params.optim.{knob}"
        if column in runs:
            runs.loc[old, column] = OPTIM_DEFAULTS[knob]
    return runs


def _before_new_knobs(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "params.dataset.name" not in runs:
        return runs
    defaults = {f"reg.{name}": default for name, default, since, _ in KNOBS if since}
    defaults |= {f"model.{k}": MODEL_DEFAULTS[k] for k in MODEL_KNOBS_SINCE if k != "kwargs"}
    defaults["search.seeds"] = 1
    regbench_runs = runs["params.dataset.name"].notna()
    for key, default in defaults.items():
        column = f"params.{key}"
        if column not in runs or default is None:
            continue
        old = runs[column].isna() & regbench_runs
        if old.any():
            runs = runs.copy()
            runs.loc[old, column] = default  # in the column's dtype (1 -> 1.0 beside newer runs' floats)
    return runs


def _before_own_data(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "params.dataset.task" not in runs or "params.dataset.name" not in runs:
        return runs
    old = runs["params.dataset.task"].isna() & runs["params.dataset.name"].notna()
    if not old.any():
        return runs
    runs = runs.copy()
    runs.loc[old, "params.dataset.task"] = "auto"
    if "params.dataset.drop" in runs:
        runs.loc[old, "params.dataset.drop"] = _scalar([])
    return runs


def backfilled(runs: pd.DataFrame) -> pd.DataFrame:
    """collect()'s chain of back-fills as of 5be3e05."""
    return _before_new_knobs(_before_own_data(_before_schedules(runs)))
