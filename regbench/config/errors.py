"""Hydra's and OmegaConf's composition errors as one line each.

Hydra prints such an error over several lines (the message, then the OmegaConf cause with its
`full_key` and `object_type` lines, then a hint about HYDRA_FULL_ERROR); a sweep may hit the
same one in every job. `describe` folds one into a single line that names the override and
what is wrong with it, suggesting the key that was probably meant.
"""

from __future__ import annotations

import dataclasses
import difflib

_DETAIL = ("full_key:", "reference_type=", "object_type=", "To append to your config use")


def describe(error: BaseException) -> str:
    """One line for a composition error: its message, then the OmegaConf reason behind it.

    Example: `Could not override 'reg.alpah': Key 'alpah' not in 'RegConfig' (did you mean
    reg.alpha?)` where Hydra prints seven lines.
    """
    line = _fold(str(error))
    cause = error.__cause__
    if cause is not None and _is_omegaconf(cause) and "$VALUE" not in str(cause):
        line = f"{line.rstrip('.')}: {_fold(str(cause))}"
        hint = _did_you_mean(cause)
    else:
        key = getattr(error, "full_key", None)
        if _is_omegaconf(error) and key and key not in line:
            line = f"{key}: {line}"
        hint = _did_you_mean(error)
    return f"{line} (did you mean {hint}?)" if hint else line


def _fold(message: str) -> str:
    """Joins a multi-line message, without Hydra's search path and OmegaConf's detail lines;
    a tab-indented list (the available options of a group) becomes a comma-separated one."""
    head = message.partition("\nConfig search path")[0]
    lines = [x for x in head.splitlines() if x.strip() and not x.strip().startswith(_DETAIL)]
    if not lines:
        return message.strip()
    out = lines[0].strip()
    for prev, line in zip(lines, lines[1:]):
        listed = line.startswith("\t") and prev.startswith("\t")
        out += (", " if listed else " " if prev.endswith(":") else "; ") + line.strip()
    return out


def _is_omegaconf(error: BaseException) -> bool:
    return type(error).__module__.startswith("omegaconf")


def _did_you_mean(error: BaseException) -> str | None:
    """The closest field name for a key that the schema's dataclass lacks, as a full key."""
    key, owner, full_key = (getattr(error, a, None) for a in ("key", "object_type", "full_key"))
    if not (isinstance(key, str) and dataclasses.is_dataclass(owner) and isinstance(full_key, str)):
        return None
    names = [f.name for f in dataclasses.fields(owner)]
    close = [] if key in names else difflib.get_close_matches(key, names, n=1)
    if not close:
        return None
    parent = full_key.rpartition(".")[0]
    return f"{parent}.{close[0]}" if parent else close[0]
