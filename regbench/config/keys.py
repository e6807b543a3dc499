"""What regbench knows about config keys besides their type and default (regbench.config.schema):
which keys a schedule, a model, a dataset or an optimizer reads, which may differ between the
members of one stack, and which change what a run computes.

Plain data (and `inert_keys`, a function of a flattened config), read by the checks
(regbench.config.checks), the run identity (regbench.results.config_hash), the stacking key
(regbench.engine.grouping), the back-fill of older runs (regbench.record)
and its constants line (regbench.reporting.report). Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

from regbench.data.files import OWN_DATA

# Learning-rate schedules (optim.schedule; computed by regbench.engine.schedules).
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
    """The optim.* schedule keys of a flattened config that change nothing: the knobs its
    schedule does not read, and `optim.schedule` itself when it is `constant` (so that a
    constant-rate run keeps the config_hash it had before schedules existed, and its
    checkpoints and finished results stay valid)."""
    schedule = params.get("optim.schedule", "constant")
    read = SCHEDULE_KNOBS.get(schedule, ALL_SCHEDULE_KNOBS)
    out = [f"optim.{k}" for k in ALL_SCHEDULE_KNOBS if k not in read and f"optim.{k}" in params]
    if schedule == "constant" and "optim.schedule" in params:
        out.append("optim.schedule")
    return out


# Model knobs added after the first release, with the models that read them: for any other
# model they stay out of config_hash (regbench.results), so runs from before keep their hash.
MODEL_KNOBS_SINCE = {"groups": ("resmlp",), "blocks": ("resmlp",), "width": ("resmlp",),
                     "depth": ("resnet",), "width_mult": ("resnet",), "_target_": ("custom",), "kwargs": ("custom",)}

# Config nodes that say where a run's numbers are also sent, not what it computes: left out of
# `params`, so of config_hash (a sweep resumes with or without a logger) and of the report's
# configurations (a sweep logged to TensorBoard and one that was not compare as one).
NOT_PARAMS = ("logger",)

# Settings that change what is kept, not what is computed: a run may resume across them.
# search.seeds: how a trial is scored, not what any of its runs computes (each seed's run has its own seed)
NOT_HASHED = ("save_model", "keep_checkpoint", "overwrite", "trainer.checkpoint_seconds", "search.seeds")
# Settings only optim=fista reads: left out of the other runs' hash, which stays what it was
# before they existed (a sweep started then still resumes; scripts/golden.py still compares).
SOLVER_ONLY = ("optim.tol", "optim.max_iter", "optim.log_every")
# The keys of a user's data (dataset=table, arrays, image_folder), added after the first release,
# at their defaults: left out of the hash, so that the bundled datasets' runs keep theirs.
OWN_DATA_DEFAULTS = {"dataset.path": None, "dataset.target": None, "dataset.task": "auto", "dataset.drop": [],
                     "dataset.test_path": None, "dataset.split_column": None, "dataset.image_size": None,
                     "dataset.index_col": None}

# What may differ between the members of one stack, besides every regularizer knob declared
# `member=True` in its module (regbench.regularizers). The learning-rate schedule and its knobs
# too: each member follows its own (regbench.engine.schedules).
MEMBER_KEYS = ("seed", "optim.lr", "optim.schedule", "optim.min_lr", "optim.warmup_epochs", "optim.step_size",
               "optim.gamma", "optim.restart_period", "optim.restart_mult", "optim.plateau_patience",
               "optim.plateau_factor")
# What changes how a job is run or kept, not what it computes (the thread count changes only
# the last bits, and a stack runs on one count).
NOT_COMPUTED = (*NOT_HASHED, "trainer.num_threads")

# Keys that apply only to some datasets or optimizers: the report's constants line leaves them out elsewhere.
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
