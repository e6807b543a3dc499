"""Loading a user's own code named by a dotted path in the config (`reg.extra.<name>._target_`,
`model._target_`): from the Python path, or else from a module file beside the config (a
`--config-dir` folder) or in the current folder, without touching sys.path."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from regbench import UserInputError


def load_object(where: str, target: Any, search: tuple[str, ...] = ()) -> Any:
    """The object `target` (`package.module.name`) names; `where` is the config key, for errors.

    Raises:
        UserInputError: one line, naming the key and the error, when it does not load.
    """
    if not isinstance(target, str) or "." not in target:
        raise UserInputError(f"{where} must be a dotted path module.name (got {target!r})")
    module_name, _, attr = target.rpartition(".")
    try:
        module = import_module(module_name, search)
    except UserInputError as e:
        raise UserInputError(f"{where}={target}: {e}") from None
    except Exception as e:  # the user's code failed to import: its error, in one line
        raise UserInputError(f"{where}={target}: importing {module_name} failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from e
    obj = getattr(module, attr, None)
    if obj is None:
        raise UserInputError(f"{where}={target}: {module_name} has no {attr}")
    return obj


def import_module(module_name: str, search: tuple[str, ...]) -> Any:
    """`module_name` from the Python path, else from `<top>.py` (or a package folder `<top>/`) in
    one of `search` or the current folder."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    top = module_name.split(".")[0]
    if importlib.util.find_spec(top) is not None:
        return importlib.import_module(module_name)
    for folder in (*search, "."):
        for path in (Path(folder) / f"{top}.py", Path(folder) / top / "__init__.py"):
            if path.is_file():
                spec = importlib.util.spec_from_file_location(
                    top, path, submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None)
                module = importlib.util.module_from_spec(spec)
                sys.modules[top] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[top]
                    raise
                return importlib.import_module(module_name)
    places = ", ".join([*search, "the current folder"])
    raise UserInputError(f"no module {module_name} on the Python path, nor {top}.py in {places}")
