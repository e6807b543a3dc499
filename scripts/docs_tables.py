"""Rewrites the documentation's generated tables from their one declaration each, or checks them.

    python scripts/docs_tables.py          # after adding a config key, a regularizer, a knob, a hook or a result.json key,
                                           # or changing a search space
    python scripts/docs_tables.py --check  # exit 1, naming the stale tables, when one differs

The tables, each on its page of docs/: every config key with its default, range, where it
applies and how it enters config_hash (regbench.config.keys.KEYS, the schema's and the knobs'
declarations: docs/reference/config-keys.md), every built-in regularizer's knobs
(regbench.regularizers.registry.knob_table: docs/reference/regularizers.md), each preset's default search
space (registry.search_space, from the regularizers' `search`: the same page), the regularizer hooks
and who defines each (registry.hook_table: docs/reference/api.md), result.json's keys
(regbench.record.markdown: docs/reference/output.md). Each is found on its page by its header row
and replaced up to the blank line that ends it. tests/test_docs_tables.py, tests/test_regularizers.py,
tests/test_record.py and `mkdocs build --strict` (tests/test_docs.py) fail while one is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"

# table name -> the page that holds it, relative to docs/
PAGES = {
    "config keys": "reference/config-keys.md",
    "regularizer knobs": "reference/regularizers.md",
    "regularizer search spaces": "reference/regularizers.md",
    "regularizer hooks": "reference/api.md",
    "result.json keys": "reference/output.md",
}


def _cell(text: str) -> str:
    """A table cell's text: a `|` inside it would end the cell."""
    return str(text).replace("|", "\\|")


def _default(name: str, value: object) -> str:
    """A key's default as a reader types it: a group's name is its default option in conf/config.yaml."""
    if value == "???":
        import yaml

        config = yaml.safe_load((DOCS.parent / "conf" / "config.yaml").read_text())
        group = name.split(".")[0]
        chosen = [d[group] for d in config["defaults"] if isinstance(d, dict) and group in d]
        return f"`{group}={chosen[0]}`" if chosen else "(required)"
    if value is None:
        return "null"
    env = re.fullmatch(r"\$\{oc\.env:(\w+),'?([^'}]*)'?\}", str(value))
    if env:  # an environment variable with a fallback, as OmegaConf resolves it
        return f"`${env.group(1)}` or `{env.group(2)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def config_key_table() -> str:
    """Every config key (regbench.config.keys.KEYS, from the schema's and the knobs' declarations) as a
    markdown table: default, range, where it applies, whether it enters config_hash, what it does."""
    from regbench.config.declare import NEVER, UNLESS_DEFAULT, WHERE_APPLIES
    from regbench.config.keys import KEYS

    hashed = {NEVER: "no", UNLESS_DEFAULT: "away from its default", WHERE_APPLIES: "where it applies"}
    rows = ["| key | default | range | applies | in config_hash | what it does |", "|---|---|---|---|---|---|"]
    for name, key in KEYS.items():
        if key.applies is None:
            applies = "always"
        elif key.applies.values is None:
            applies = f"while `{key.applies.owner}` is on"
        else:
            applies = f"`{key.applies.owner}` = " + ", ".join(str(v).lower() if isinstance(v, bool) else str(v)
                                                             for v in key.applies.values)
        in_hash = "no (not in params)" if not key.params else hashed.get(key.hashed, "yes")
        doc = key.doc if key.computed else f"{key.doc} Never changes a result."
        if name.endswith(".name") and key.doc.startswith("One of "):  # a group's choice, named by a Python constant
            group = name.split(".")[0]
            doc = f"The `{group}` group's option, `{group}=<option>` (see [Configuration](configuration.md))."
        rows.append(f"| `{name}` | {_cell(_default(name, key.default))} | {_cell(key.range)} | {_cell(applies)} "
                    f"| {in_hash} | {_cell(doc)} |")
    return "\n".join(rows)


def search_space_table() -> str:
    """Each preset of conf/reg/ with the default search space a tuning study of it samples
    (regbench.regularizers.registry.search_space of the preset's `reg` node: the knobs' defaults
    with the preset's values, as `reg=<preset>` composes it), one row per key."""
    from omegaconf import OmegaConf

    from regbench.regularizers.registry import builtin_knobs, label, search_space

    model = OmegaConf.create({"name": "mlp"})  # conf/config.yaml's: batch norm acts on it
    defaults = OmegaConf.create({k.name: k.default for k in builtin_knobs()})
    rows = ["| preset (`reg=`) | key | distribution (`hydra.sweeper.params`) |", "|---|---|---|"]
    for path in sorted((DOCS.parent / "conf" / "reg").glob("*.yaml")):
        reg = OmegaConf.merge(defaults, OmegaConf.load(path))
        space = search_space(reg, model=model)
        rows += [f"| `{path.stem}` | `{key}` | `{_cell(value)}` |" for key, value in space.items()]
        if not space:
            if label(reg, model) == "cocktail":  # its conditional space is sampled define-by-run
                rows.append(f"| `{path.stem}` | (its own) | which regularizers to combine and their strengths, "
                            "conditional: see [The cocktail search](../how-to/search.md#the-cocktail-search) |")
                continue
            why = "the baseline, no regularizer" if label(reg, model) == "none" else "a switch, on or off"
            rows.append(f"| `{path.stem}` | (none) | nothing to tune: {why} |")
    return "\n".join(rows)


def tables() -> dict[str, str]:
    """Each generated table's name -> its markdown, the first line its header row."""
    from regbench.record import markdown
    from regbench.regularizers.registry import hook_table, knob_table

    return {"config keys": config_key_table(), "regularizer knobs": knob_table(markdown=True),
            "regularizer search spaces": search_space_table(), "regularizer hooks": hook_table(),
            "result.json keys": markdown()}


def rewritten(text: str, names: list[str] | None = None) -> tuple[str, list[str]]:
    """`text` with every generated table of `names` (default: all) as it is now, and the names of
    those that changed."""
    changed = []
    for name, table in tables().items():
        if names is not None and name not in names:
            continue
        header = table.splitlines()[0]
        start = text.find(header + "\n")
        if start < 0:
            raise SystemExit(f"{PAGES[name]} has no table headed {header!r} ({name})")
        end = text.find("\n\n", start)
        end = len(text) if end < 0 else end
        if text[start:end] != table:
            changed.append(name)
            text = text[:start] + table + text[end:]
    return text, changed


def main() -> int:
    stale = []
    for name, page in PAGES.items():
        path = DOCS / page
        text, changed = rewritten(path.read_text(), [name])
        stale += [f"{name} ({page})" for _ in changed]
        if changed and "--check" not in sys.argv[1:]:
            path.write_text(text)
    if "--check" in sys.argv[1:]:
        print(f"stale: {', '.join(stale)}" if stale else "the docs' generated tables are current")
        return 1 if stale else 0
    print(f"rewrote: {', '.join(stale)}" if stale else "the docs' generated tables were current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
