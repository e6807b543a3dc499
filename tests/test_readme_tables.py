"""scripts/readme_tables.py: it finds each generated table of the README and makes it current."""

from __future__ import annotations

import importlib.util

from tests.helpers.configs import REPO


def _script():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stale_table_is_named_and_rewritten_and_the_rest_of_the_text_kept():
    script = _script()
    readme = (REPO / "README.md").read_text()
    assert script.rewritten(readme) == (readme, [])  # the README is current (the other tests say so too)
    knobs = script.tables()["regularizer knobs"]
    stale_row = knobs.splitlines()[2]
    stale = readme.replace(stale_row + "\n", "", 1)
    assert stale != readme
    text, changed = script.rewritten(stale)
    assert changed == ["regularizer knobs"] and text == readme
