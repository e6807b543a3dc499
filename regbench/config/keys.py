"""The table of every config key (`KEYS`), gathered from the one declaration of each: a schema
field's Key (regbench.config.schema, regbench.config.declare) or a regularizer's Knob
(regbench.regularizers.knob); and what the rest of regbench reads of it, derived here:

- the run identity: `hashed` (the keys of a run's params that enter config_hash,
  regbench.results) and `NOT_PARAMS` (nodes left out of params);
- the stacking key (regbench.engine.grouping): `MEMBER_KEYS`, `NOT_COMPUTED`;
- the report (regbench.reporting.report): `ONLY_FOR`, where each key applies;
- the back-fill of runs recorded before a key existed: `backfill` (called by the run record's
  loader, regbench.record);
- the range checks (regbench.config.checks): `range_problems`;
- and the views older code and tests name: SCHEDULES, SCHEDULE_KNOBS, ALL_SCHEDULE_KNOBS,
  MODEL_KNOBS_SINCE, NOT_HASHED, SOLVER_ONLY, OWN_DATA_DEFAULTS.

Adding a key is adding its field (or Knob): nothing here changes. Nothing heavy is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from regbench.config.declare import ALWAYS, META, NEVER, UNLESS_DEFAULT, WHERE_APPLIES, Key, When
from regbench.config.schema import SCHEDULES, Config


def _fields(cls: type, prefix: str, params: bool) -> Iterator[Key]:
    """The Keys of a schema dataclass, named and with their defaults, depth first in field order."""
    for f in dataclasses.fields(cls):
        declared = f.metadata.get(META)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.default_factory):
            inherited = params and (declared is None or declared.params)
            if name == "reg":
                yield from _knobs()
            else:
                yield from _fields(f.default_factory, f"{name}.", inherited)
            continue
        if declared is None:
            raise TypeError(f"schema field {name} has no declaration: give it one with regbench.config.declare.key()")
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        yield dataclasses.replace(declared, name=name, default=default, params=params and declared.params,
                                  computed=declared.computed and params)


def _knobs() -> Iterator[Key]:
    """The built-in regularizers' knobs as Keys: a Knob is the regularizer's own declaration.
    A regularizer's first knob switches it on; a knob declared `only_when_on` applies while it is."""
    from regbench.regularizers import builtin
    from regbench.regularizers.registry import COCKTAIL

    for cls in builtin():
        owner = f"reg.{cls.knobs[0].name}"
        for k in cls.knobs:
            yield Key(doc=k.doc, range=k.range, valid=k.valid, member=k.member, since=k.since,
                      applies=When(owner, None) if k.only_when_on else None,
                      hashed=UNLESS_DEFAULT if k.since else ALWAYS, name=f"reg.{k.name}", default=k.default)
    # the cocktail's mark, a knob of no regularizer (regbench.regularizers.registry.COCKTAIL)
    yield Key(doc=COCKTAIL.doc, range=COCKTAIL.range, valid=COCKTAIL.valid, member=COCKTAIL.member,
              since=COCKTAIL.since, hashed=UNLESS_DEFAULT, name=f"reg.{COCKTAIL.name}", default=COCKTAIL.default)


KEYS: dict[str, Key] = {k.name: k for k in _fields(Config, "", True)}
"""Every config key by its dotted name, in the schema's order; `reg.extra` (the user's
regularizers, declared by their own Knobs) and the entries of `model.kwargs` are not in it."""

# Config nodes left out of `params`, so of config_hash and of the report's configurations.
NOT_PARAMS = tuple(f.name for f in dataclasses.fields(Config)
                   if META in f.metadata and not f.metadata[META].params)


def hashed(params: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's flattened config (regbench.results.flatten) that makes its identity,
    config_hash: every key but those its declaration keeps out here (`hashed`: never, where it
    does not apply, at its default). A key the table does not declare (a user regularizer's
    knob, an entry of model.kwargs, a key of an older version) is hashed as it is."""
    out = {}
    for name, value in params.items():
        declared = KEYS.get(name)
        owner = KEYS.get(declared.applies.owner) if declared is not None and declared.applies else None
        if declared is None or declared.hashed_in(params, owner.default if owner else None):
            out[name] = value
    return out


def backfill(params: dict[str, Any]) -> dict[str, Any]:
    """A regbench run's flattened params as a newer version records them: each key added since
    (its `since`) that the run lacks gets its default, the value the run ran with, so that merged
    with newer runs it is the same configuration. Keys with a null default stay missing (a
    missing value reads as null), and so do nodes (model.kwargs). Params without dataset.name
    (not a regbench run) come back as they are."""
    if params.get("dataset.name") is None:
        return params
    out = dict(params)
    for name, k in KEYS.items():
        if k.since and k.params and out.get(name) is None and k.default is not None and not isinstance(k.default, dict):
            out[name] = list(k.default) if isinstance(k.default, list) else k.default
    return out


def value(cfg: Any, name: str, missing: Any = None) -> Any:
    """The value of the dotted key `name` in a composed config, `missing` when a node is absent
    (a programmatic config without `logger`)."""
    node = cfg
    for part in name.split("."):
        if node is None or part not in node:
            return missing
        node = node[part]
    return node


_ABSENT = object()


def range_problems(cfg: Any) -> list[str]:
    """One message per key whose value is out of its declared range: the top-level keys first
    (`seed` before the dataset.split_seed that follows it), then each node's in the schema's
    order. The ranges hold whatever else the config says (a sweep may share a key across models,
    schedules and optimizers). The reg.* knobs are checked by their regularizers, beside the
    user's (regbench.regularizers.check); the keys declared `checked=False` by the checks of
    their datasets, where they apply (regbench.config.checks)."""
    out = []
    for name, k in sorted(KEYS.items(), key=lambda item: "." in item[0]):  # a stable sort
        if not k.checked or name.startswith("reg.") or (k.valid is None and k.problem_of is None):
            continue
        v = value(cfg, name, _ABSENT)
        if v is not _ABSENT:
            out.append(k.problem(v))
    return [p for p in out if p]


# --- views of the table, by the names the checks, the report and the tests read ---

# The optim.* knobs each schedule reads (besides optim.lr and trainer.max_epochs).
ALL_SCHEDULE_KNOBS = tuple(n.removeprefix("optim.") for n, k in KEYS.items()
                           if k.applies is not None and k.applies.owner == "optim.schedule")
SCHEDULE_KNOBS: dict[str, tuple[str, ...]] = {
    s: tuple(knob for knob in ALL_SCHEDULE_KNOBS if s in KEYS[f"optim.{knob}"].applies.values) for s in SCHEDULES}

# Model knobs added after the first release, with the models that read them: for any other
# model they stay out of config_hash.
MODEL_KNOBS_SINCE = {n.removeprefix("model."): k.applies.values for n, k in KEYS.items()
                     if n.startswith("model.") and k.hashed == WHERE_APPLIES}

# Settings that change what is kept, not what is computed: a run may resume across them.
NOT_HASHED = tuple(n for n, k in KEYS.items() if k.params and k.hashed == NEVER)
# Settings only optim=fista reads: left out of the other runs' hash.
SOLVER_ONLY = tuple(n for n, k in KEYS.items() if k.applies == When("optim.name", ("fista",))
                    and k.hashed == WHERE_APPLIES)
# The keys of a user's data, added after the first release: left out of the hash at their defaults.
OWN_DATA_DEFAULTS = {n: k.default for n, k in KEYS.items() if n.startswith("dataset.") and k.hashed == UNLESS_DEFAULT}

# What may differ between the members of one stack (the user's regularizers add their own
# member knobs: regbench.engine.grouping.member_keys).
MEMBER_KEYS = tuple(n for n, k in KEYS.items() if k.member)
# What changes how a job is run or kept, not what it computes.
NOT_COMPUTED = tuple(n for n, k in KEYS.items() if k.params and not k.computed)

# Where each key applies, as (owner key, values) (values None: while the owner is on): the
# report's constants line leaves a key out where it applies to none of the runs.
ONLY_FOR = {n: (k.applies.owner, k.applies.values) for n, k in KEYS.items() if k.applies is not None}
