"""Rewrites the README's generated tables from their one declaration each, or checks them.

    python scripts/readme_tables.py          # after adding a regularizer, a knob, a hook or a result.json key
    python scripts/readme_tables.py --check  # exit 1, naming the stale tables, when one differs

The tables: every built-in regularizer's knobs (regbench.regularizers.registry.knob_table), the
regularizer hooks and who defines each (registry.hook_table), result.json's keys
(regbench.record.markdown). Each is found by its header row and replaced up to the blank line
that ends it; tests/test_regularizers.py and tests/test_record.py fail while one is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def tables() -> dict[str, str]:
    """Each generated table's name -> its markdown, the first line its header row."""
    from regbench.record import markdown
    from regbench.regularizers.registry import hook_table, knob_table

    return {"regularizer knobs": knob_table(markdown=True), "regularizer hooks": hook_table(),
            "result.json keys": markdown()}


def rewritten(text: str) -> tuple[str, list[str]]:
    """`text` with every generated table as it is now, and the names of those that changed."""
    changed = []
    for name, table in tables().items():
        header = table.splitlines()[0]
        start = text.find(header + "\n")
        if start < 0:
            raise SystemExit(f"README.md has no table headed {header!r} ({name})")
        end = text.find("\n\n", start)
        end = len(text) if end < 0 else end
        if text[start:end] != table:
            changed.append(name)
            text = text[:start] + table + text[end:]
    return text, changed


def main() -> int:
    text, changed = rewritten(README.read_text())
    if "--check" in sys.argv[1:]:
        print(f"stale: {', '.join(changed)}" if changed else "README's generated tables are current")
        return 1 if changed else 0
    README.write_text(text)
    print(f"rewrote: {', '.join(changed)}" if changed else "README's generated tables were current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
