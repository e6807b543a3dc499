"""The layering of regbench's modules, enforced: import-linter's contract in pyproject.toml (imports
go down the data flow, siblings independent), and no import circle between the modules of one
package (grimp, the graph import-linter itself builds)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

grimp = pytest.importorskip("grimp", reason="import-linter (the test extras) is not installed")


def test_the_import_linter_contracts_are_kept(capsys, monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO)  # import-linter reads pyproject.toml from the current folder
    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 broken" in out and "KEPT" in out


def _graph():
    return grimp.build_graph("regbench", "hydra_plugins", cache_dir=None)


@pytest.mark.parametrize("package", ["regbench.config", "regbench.data", "regbench.regularizers", "regbench.engine",
                                     "regbench.loggers", "regbench.reporting", "regbench.cli"])
def test_no_import_circle_inside_a_package(package):
    graph = _graph()
    modules = sorted(m for m in graph.modules if m.startswith(package + "."))
    circles = [(a, b) for a, b in itertools.combinations(modules, 2)
               if graph.chain_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)]
    assert not circles, f"import circles in {package}: {circles}"


def test_the_contract_names_every_package_of_regbench():
    """A new package must take its place in the layering (else the contract would not see it)."""
    import tomllib

    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    named = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    top = {f"regbench.{p.stem if p.is_file() else p.name}" for p in (REPO / "regbench").iterdir()
           if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    top -= {"regbench.conf"}
    assert top <= named, f"not in the layers of pyproject.toml: {sorted(top - named)}"
    assert os.path.isdir(REPO / "hydra_plugins" / "regbench_stacked_launcher")
