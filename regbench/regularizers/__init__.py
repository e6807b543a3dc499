"""The regularizers: one module each, holding its knobs and every point where it acts on training.

- `regbench.regularizers.contract`: what a regularizer is, as types and data: its required
  attributes (`name`, `knobs`, `label`, `__init__(self, values, stack)`), the hooks through which
  it meets training (`layers`, `batch`, `penalty`, `after_step`, ... each a typing Protocol), what
  it may use of the engine's stack and of a member (`StackView`, `MemberView`), and every optional
  attribute with its default (`active`, `stackable`, `stack_on_off`, `convex`, `not_convex`,
  `strength`). Read it to write a regularizer of your own.
- `regbench.regularizers.registry`: the built-in classes, a user's classes loaded from
  `reg.extra.<name>._target_` and checked against the contract in one line, and what the rest of
  regbench asks of the regularizers a `reg` node names (their values, the run's label, checks,
  notices, the convex objective's terms, the strength knobs, the default search space of a
  tuning study: `search_space`).
- `regbench.regularizers.knob`: `Knob`, one number (or switch) of a regularizer.

This package re-exports the public names users' regularizers and regbench's other layers import:
`Knob`, and the registry's functions.
"""

from __future__ import annotations

from typing import Any

from regbench.regularizers.knob import Knob  # the public name users' regularizers import
from regbench.regularizers.registry import (builtin, builtin_knobs, check, config_problems, contract_problems,
                                            convex_obstacles, convex_terms, ingredients, is_cocktail, knob_table,
                                            label, load_user, notices, regularizers, search_space, strength_knobs, user_entries,
                                            user_values)

__all__ = ["Knob", "builtin", "builtin_knobs", "check", "config_problems", "contract_problems", "convex_obstacles",
           "convex_terms", "ingredients", "is_cocktail", "knob_table", "label", "load_user", "notices", "penalised_weights", "regularizers",
           "search_space", "sparsity", "strength_knobs", "user_entries", "user_values"]


def penalised_weights(model: Any) -> list[Any]:
    """Weight matrices and kernels: the parameters with two or more dimensions (biases and
    normalisation parameters are never penalised or decayed)."""
    return [p for p in model.parameters() if p.dim() >= 2]


def sparsity(weights: list[Any]) -> float:
    """Fraction of penalised weights that are exactly zero."""
    import torch

    with torch.no_grad():
        total = sum(w.numel() for w in weights)
        if total == 0:
            return 0.0
        return float(sum((w == 0).sum() for w in weights)) / total
