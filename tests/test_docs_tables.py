"""scripts/docs_tables.py: it finds each generated table on its page of docs/ and makes it current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.helpers.configs import REPO


def _script():
    spec = importlib.util.spec_from_file_location("docs_tables", REPO / "scripts" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_table_of_the_docs_is_current():
    script = _script()
    for name, page in script.PAGES.items():
        text = (REPO / "docs" / page).read_text()
        assert script.rewritten(text, [name]) == (text, []), f"{page}: run python scripts/docs_tables.py"


def test_a_stale_table_is_named_and_rewritten_and_the_rest_of_the_text_kept():
    script = _script()
    page = (REPO / "docs" / script.PAGES["regularizer knobs"]).read_text()
    knobs = script.tables()["regularizer knobs"]
    stale_row = knobs.splitlines()[2]
    stale = page.replace(stale_row + "\n", "", 1)
    assert stale != page
    text, changed = script.rewritten(stale, ["regularizer knobs"])
    assert changed == ["regularizer knobs"] and text == page


def test_every_config_key_has_a_row_on_the_generated_reference_page():
    from regbench.config.keys import KEYS

    script = _script()
    page = (REPO / "docs" / script.PAGES["config keys"]).read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(KEYS)
    # a `|` in a range (`true | false`) is escaped, so every row has the header's six cells
    assert all(row.replace("\\|", "").count("|") == 7 for row in rows)


def test_check_mode_exits_0_on_current_docs():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "docs_tables.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "current" in out.stdout
