"""The grouping of a sweep's jobs into stacks: which jobs can share one, decided from their
configs alone (`stack_key`), and why a job cannot (`why_alone`).

Kept apart from `regbench.engine.stack` (torch, the whole training stack) because the stacked
launcher asks this of every job of every sweep, of any Hydra app: jobs that cannot stack run
as the basic launcher runs them, and a sweep where nothing stacks must not pay for, or be
changed by, importing regbench's training code.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from omegaconf import OmegaConf

from regbench.config.keys import MEMBER_KEYS, NOT_COMPUTED
from regbench.results import flatten

MODELS = ("linear", "mlp", "cnn", "resmlp", "resnet")


def is_regbench(cfg: Any) -> bool:
    """Whether a job's config was composed from regbench's schema (regbench.config.schema.Config).

    Looked up in sys.modules: an app that never imported regbench's schema cannot have
    composed a config from it, and the check then imports nothing.
    """
    schema = sys.modules.get("regbench.config.schema")
    return schema is not None and OmegaConf.get_type(cfg) is schema.Config


def member_keys(cfg: Any, search: tuple[str, ...] = ()) -> set[str]:
    """The dotted keys that may differ between the members of one stack."""
    from regbench.regularizers import load_user, user_entries

    keys = set(MEMBER_KEYS)  # the built-in regularizers' member knobs included
    for name, entry in user_entries(cfg.reg).items():
        cls = load_user(name, entry.get("_target_"), search)
        keys |= {f"reg.extra.{name}.{k.name}" for k in cls.knobs if k.member}
    return keys


def why_alone(cfg: Any, search: tuple[str, ...] = ()) -> str | None:
    """Why a regbench job cannot share a stack (one line), or None when it can."""
    from regbench import UserInputError
    from regbench.regularizers import load_user, user_entries
    from regbench.regularizers.contract import declared

    if cfg.get("search") is not None and cfg.search.seeds > 1:
        return f"search.seeds={cfg.search.seeds}: each trial trains its seeds itself (as one stack where they share a split)"
    if cfg.model.name == "custom":
        return "model=custom runs as its own module, one job at a time"
    if cfg.model.name not in MODELS:
        return f"model={cfg.model.name} has no stacked form"
    if cfg.optim.name == "fista":
        return "optim=fista is a full-batch solver, not a training loop to share"
    for name, entry in user_entries(cfg.reg).items():
        try:
            cls = load_user(name, entry.get("_target_") if hasattr(entry, "get") else None, search)
        except UserInputError as e:
            return str(e)
        reason = declared(cls, "stackable")
        if reason is not True:
            return f"reg.extra.{name} ({cls.__name__}) does not stack: {reason}"
    return None


def stack_key(cfg: Any, search: tuple[str, ...] = ()) -> str | None:
    """A key equal for jobs that can share one stack, or None for a job that must run alone
    (not a regbench job, or one `why_alone` names a reason for).

    Args:
        cfg: the job's config as its task function receives it (no `hydra` node); its
            `${hydra:...}` values must already be resolved for this very job.
        search: folders where a user regularizer's module may lie (`--config-dir`).
    """
    if not is_regbench(cfg) or why_alone(cfg, search) is not None:
        return None
    from regbench.regularizers import regularizers
    from regbench.regularizers.contract import declared

    members = member_keys(cfg, search)
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    shared = {k: v for k, v in flat.items() if k not in members and k not in NOT_COMPUTED}
    # A regularizer whose being on changes what every member computes (soft targets, a second
    # pass per step) puts its on/off in the key; its strengths may still differ between members.
    for cls, values in regularizers(cfg.reg, search):
        if declared(cls, "stack_on_off"):
            shared[f"{cls.name} on"] = cls.label(values(cfg.reg), cfg.model) is not None
    return json.dumps(shared, sort_keys=True, default=str)
