"""Which jobs of a sweep can share one stack, decided from their configs alone.

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

from regbench.results import NOT_HASHED, flatten

MODELS = ("linear", "mlp")
# What may differ between the members of one stack.
# The learning-rate schedule and its knobs too: each member follows its own (regbench.engine.schedules).
MEMBER_KEYS = ("seed", "reg.alpha", "reg.l1_ratio", "reg.weight_decay", "reg.dropout", "optim.lr", "optim.schedule",
               "optim.min_lr", "optim.warmup_epochs", "optim.step_size", "optim.gamma", "optim.restart_period",
               "optim.restart_mult", "optim.plateau_patience", "optim.plateau_factor")
# What changes how a job is run or kept, not what it computes (the thread count changes only
# the last bits, and a stack runs on one count).
NOT_COMPUTED = (*NOT_HASHED, "trainer.num_threads")


def is_regbench(cfg: Any) -> bool:
    """Whether a job's config was composed from regbench's schema (regbench.cli.schema.Config).

    Looked up in sys.modules: an app that never imported regbench's schema cannot have
    composed a config from it, and the check then imports nothing.
    """
    schema = sys.modules.get("regbench.cli.schema")
    return schema is not None and OmegaConf.get_type(cfg) is schema.Config


def stack_key(cfg: Any) -> str | None:
    """A key equal for jobs that can share one stack, or None for a job that must run alone
    (not a regbench job, model=cnn, or reg.augment).

    Args:
        cfg: the job's config as its task function receives it (no `hydra` node); its
            `${hydra:...}` values must already be resolved for this very job.
    """
    if not is_regbench(cfg) or cfg.model.name not in MODELS or cfg.reg.augment:
        return None
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    shared = {k: v for k, v in flat.items() if k not in MEMBER_KEYS and k not in NOT_COMPUTED}
    return json.dumps(shared, sort_keys=True, default=str)
