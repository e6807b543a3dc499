"""How a config key is declared: `Key`, everything regbench knows about one key besides its type
and default, and `key()`, which puts a Key on a schema field (regbench.config.schema).

A key is declared once, on its dataclass field: its one-line doc, its range, when it applies,
whether the members of a stack may differ in it, whether it changes what a run computes, and
how it enters the run's identity (config_hash). regbench.config.keys gathers the declarations
into one table and derives from it what the checks, the run identity, the stacking key, the
report and the back-fill of older runs need. A regularizer's knobs are declared by its own
`Knob`s (regbench.regularizers.knob), from which the table makes their Keys.

Nothing is imported here but the standard library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

# How a key enters config_hash (regbench.results), the identity of a run. The identity is the
# effective config, the keys that apply and change results, within one constraint: a run folder
# keeps the hash it was written with, so a key keeps the rule it had when runs were recorded.
ALWAYS = "always"  # hashed wherever present (the keys of the first release, whatever else they apply to)
WHERE_APPLIES = "where it applies"  # hashed only where its `applies` holds (added later for some models, optim=fista)
UNLESS_DEFAULT = "unless at its default"  # added after the first release: runs from before keep their hash
NEVER = "never"  # what is kept or where, not what is computed: a run resumes across it
HASHED = (ALWAYS, WHERE_APPLIES, UNLESS_DEFAULT, NEVER)

ON = None  # When.values: the owning key is switched on (anything but 0, false or missing)


@dataclass(frozen=True)
class When:
    """Where a key applies: when the key `owner` has one of `values` (ON: when the owner, a
    regularizer's knob, is switched on)."""

    owner: str
    values: tuple[Any, ...] | None

    def holds(self, value: Any) -> bool:
        """Whether the key applies when its owner has `value`."""
        if self.values is ON:
            return value is not None and value is not False and value != 0
        return value in self.values


@dataclass(frozen=True)
class Key:
    """One config key's declaration. `name` and `default` are filled in by the table
    (regbench.config.keys), from the field or the Knob that declares it."""

    doc: str
    range: str = ""  # as the user reads it: ">= 0", "in [0, 1)", "one of a, b"
    valid: Callable[[Any], bool] | None = None  # None: any value of its type
    problem_of: Callable[[Any], str | None] | None = None  # a rule that needs words of its own (train_size)
    choices: tuple[str, ...] | None = None  # the allowed names: gives `range` and `valid`
    checked: bool = True  # False: a check of regbench.config.checks tests the range only where the key applies
    applies: When | None = None  # None: it applies to every run
    member: bool = False  # may differ between the members of one stack
    computed: bool = True  # changes what a run computes (False: what is kept, where, or how it runs)
    hashed: str = ALWAYS  # how it enters config_hash: ALWAYS, WHERE_APPLIES, UNLESS_DEFAULT or NEVER
    since: str | None = None  # the version that added it, after the first: runs from before get its default
    params: bool = True  # recorded in result.json's `params` (False: the live logger's node)
    name: str = ""
    default: Any = None

    def __post_init__(self) -> None:
        if self.hashed not in HASHED:
            raise ValueError(f"{self.name or self.doc!r}: hashed must be one of {HASHED} (got {self.hashed!r})")
        if self.hashed == WHERE_APPLIES and self.applies is None:
            raise ValueError(f"{self.name or self.doc!r}: hashed where it applies, but `applies` is not declared")
        if self.choices is not None and not self.range:
            object.__setattr__(self, "range", f"one of {', '.join(self.choices)}")
        if self.choices is not None and self.valid is None:
            object.__setattr__(self, "valid", self.choices.__contains__)

    def problem(self, value: Any) -> str | None:
        """One line when `value` is out of the key's range, else None."""
        if self.problem_of is not None:
            return self.problem_of(value)
        if self.valid is None or self.valid(value):
            return None
        return f"{self.name} must be {self.range} (got {value!r})"

    def hashed_in(self, params: dict[str, Any], owner_default: Any = None) -> bool:
        """Whether this key, present in a run's flattened `params`, enters its config_hash.

        Args:
            params: the run's flattened config (regbench.results.flatten).
            owner_default: the default of the key `applies` names, for params recorded before
                that key existed.
        """
        if self.hashed == NEVER:
            return False
        if self.hashed == UNLESS_DEFAULT:
            return params[self.name] != self.default
        if self.hashed == WHERE_APPLIES:
            return self.applies.holds(params.get(self.applies.owner, owner_default))
        return True


META = "regbench"  # the field metadata's key that holds a Key


def key(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None,
        **declared: Any) -> Any:
    """A schema field with its Key: `x: float = key(0.1, "What x is.", range=">= 0", valid=...)`.

    Args:
        default: the field's default (for a mutable one, give `factory` instead).
        doc: one line: what the key does.
        factory: makes the default of a list or dict field.
        **declared: the other fields of Key.
    """
    metadata = {META: Key(doc=doc, **declared)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def node(cls: type, doc: str = "", params: bool = True) -> Any:
    """A schema field holding a config node (a dataclass of keys). `params=False`: its keys say
    where a run's numbers are also sent, not what it computes; they are left out of `params`."""
    return dataclasses.field(default_factory=cls, metadata={META: Key(doc=doc, params=params, computed=params)})
