"""`Knob`: one number (or switch) of a regularizer, the unit every regularizer module declares.

Its own module so that the regularizer modules import it without importing the package that
loads them (`regbench.regularizers`, which re-exports it for users' regularizers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Knob:
    """One number (or switch) of a regularizer, with its range and its one-line doc."""

    name: str
    default: Any
    doc: str
    range: str = ""  # as the user reads it: ">= 0", "[0, 1)", "true | false"
    valid: Callable[[Any], bool] | None = None  # None: any value of the default's type
    member: bool = True  # may differ between the members of one stack
    since: str | None = None  # the version that added it, after the first: at its default it stays out of config_hash
    only_when_on: bool = False  # it applies only while its regularizer is on (its first knob is not 0 / false)

    def problem(self, value: Any, prefix: str = "reg.") -> str | None:
        """One line when `value` is out of range, else None."""
        if self.valid is None or self.valid(value):
            return None
        return f"{prefix}{self.name} must be {self.range} (got {value!r})"
