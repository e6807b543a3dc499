"""The documentation site (mkdocs.yml, docs/) and the README: the site builds with warnings as
errors, every page is in the nav and every nav entry is a page, the README's links land, and the
commands the pages show are run and their printed output compared.

Marks in the markdown (docs/development.md explains them to writers):

- `<!-- test: output of CMD -->` before a fenced block: the block is what `CMD` prints (stdout,
  then stderr), line for line, with the run's wall-clock seconds and its run folder masked (they
  change from run to run); `<!-- test: output of CMD (exit 2) -->` for a refusal.
- `<!-- test: runs: CMD; CMD -->` before a fenced block that shows each CMD: each succeeds.
- `<!-- test: quoted -->` before a fenced bash block of `CMD   # ...; name value; name value` lines:
  each CMD runs, and every `name value` its comment quotes is in what it prints.

A number with a decimal point may differ from the page's by one unit in its last shown digit (and
no more): the pages were run on one CPU model, and another one changes the last bits of a loss,
which over an early-stopped training of dozens of epochs can move a 4-digit figure by one
(0.5635 on the Intel Xeon the README names, 0.5634 on an AMD EPYC). Everything else, integers
and text included, must be equal.

Every command runs in a fresh folder (with `examples/` and `scripts/` linked into it, so that the
paths the pages show work), through the installed `regbench` as a user types it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import regbench
from tests.helpers.configs import REPO

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
MARK = re.compile(r"^<!-- test: (output of|runs:|quoted)(.*?)-->\n```[a-z]*\n(.*?)^```$", re.M | re.S)


def _nav_pages(nav) -> list[str]:
    """Every page a mkdocs nav names, depth first."""
    found = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += _nav_pages(value) if isinstance(value, list) else [value]
    return found


def _marks(kind: str) -> list[tuple[str, str, str]]:
    """(page, argument, block) for every mark of `kind` in the README and docs/."""
    return [(str(page.relative_to(REPO)), arg.strip(), block) for page in PAGES
            for k, arg, block in MARK.findall(page.read_text()) if k == kind]


DECIMAL = re.compile(r"-?\d+\.\d+")


def same_up_to_last_digit(printed: str, shown: str) -> bool:
    """Whether a printed line is the shown one, each decimal number within one unit of the shown
    number's last digit, everything else (integers, text, the count of digits) equal."""
    if DECIMAL.sub("#", printed) != DECIMAL.sub("#", shown):
        return False
    for got, want in zip(DECIMAL.findall(printed), DECIMAL.findall(shown)):
        digits = len(want.split(".")[1])
        if len(got.split(".")[1]) != digits or abs(float(got) - float(want)) > 1.000001 * 10.0 ** -digits:
            return False
    return True


def _mask(text: str) -> str:
    """What changes from run to run: the wall-clock seconds and the run folder."""
    text = re.sub(r"\b\d+\.\ds on (cpu|cuda\S*)", r"<seconds> on \1", text)
    return re.sub(r"run folder: \S+", "run folder: <folder>", text)


@lru_cache(maxsize=None)
def _run(command: str, workdir: str) -> subprocess.CompletedProcess:
    """`command` as a user types it, in a fresh folder of `workdir` (once per command)."""
    args = shlex.split(command)
    assert args[0] == "regbench", f"only regbench commands are run here: {command}"
    cwd = Path(workdir) / f"cmd{len(list(Path(workdir).iterdir()))}"
    cwd.mkdir()
    for name in ("examples", "scripts"):
        (cwd / name).symlink_to(REPO / name)
    return regbench(*args[1:], cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("docs_commands"))


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(set(nav)) == len(nav)


def test_the_readme_is_a_front_page_whose_links_land():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    # .ci/run runs the README's first line that starts with the test command: it must be there
    assert re.search(r'^pip install -e "\.\[test\]" && pytest', readme, re.M)
    assert re.search(r"^pip install -e \. && regbench run", readme, re.M)
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local and [link for link in local if not (REPO / link).exists()] == []
    # every page of the site is one click from the README
    assert sorted(set(local) & {str(p.relative_to(REPO)) for p in DOCS.rglob("*.md")}) == \
        sorted(str(p.relative_to(REPO)) for p in DOCS.rglob("*.md"))


def test_every_fence_is_a_fence():
    """A fence line holds the fence and its language only: text after a closing fence would be
    swallowed into the code block (and its test)."""
    bad = [(str(page.relative_to(REPO)), line) for page in PAGES for line in page.read_text().splitlines()
           if line.startswith("```") and not re.fullmatch(r"```[a-z]*", line)]
    assert bad == []


def test_the_pages_carry_their_marks():
    """The marks are parsed as the tests below read them: a typo in one would silently test nothing."""
    raw = sum(len(re.findall(r"^<!-- test:", page.read_text(), re.M)) for page in PAGES)
    assert raw == len(_marks("output of")) + len(_marks("runs:")) + len(_marks("quoted"))
    assert ("README.md", "regbench run reg=elasticnet") in [(p, a) for p, a, _ in _marks("output of")]


@pytest.mark.slow  # builds the whole site: about 3 s, more on a loaded machine
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs", reason='mkdocs not installed: pip install -e ".[docs]" (the test extra has it)')
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNING" not in out.stderr, out.stderr[-3000:]
    for page in DOCS.rglob("*.md"):
        assert (tmp_path / "site" / page.relative_to(DOCS).with_suffix(".html")).is_file(), page
    api = (tmp_path / "site" / "reference" / "api.html").read_text()
    assert "StackView" in api and "def builtin" not in api and "builtin" in api  # rendered from the docstrings


@pytest.mark.slow  # each command is a regbench run from the shell
@pytest.mark.parametrize("page, command, shown", _marks("output of"), ids=lambda v: str(v)[:40])
def test_a_shown_output_is_what_the_command_prints(page, command, shown, workdir):
    exit_code = re.search(r"\(exit (\d+)\)$", command)  # a refusal: `CMD (exit 2)`
    command = command[:exit_code.start()].strip() if exit_code else command
    out = _run(command, workdir)
    assert out.returncode == (int(exit_code.group(1)) if exit_code else 0), out.stderr[-2000:]
    printed = _mask(out.stdout + out.stderr).splitlines()  # as a terminal shows them; warnings go to stderr
    expected = _mask(shown).splitlines()
    differ = [(got, want) for got, want in zip(printed, expected) if not same_up_to_last_digit(got, want)]
    assert len(printed) == len(expected) and not differ, (f"{page}: {command}", differ[:3] or (printed, expected))


@pytest.mark.slow
@pytest.mark.parametrize("page, commands, block", _marks("runs:"), ids=lambda v: str(v)[:40])
def test_a_shown_command_runs(page, commands, block, workdir):
    for command in [c.strip() for c in commands.split(";") if c.strip()]:
        assert command in block, f"{page}: the mark names {command!r}, which the block does not show"
        out = _run(command, workdir)
        assert out.returncode == 0, f"{page}: {command}\n{out.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("page, _, block", _marks("quoted"), ids=lambda v: str(v)[:40])
def test_numbers_quoted_beside_a_command_are_what_it_prints(page, _, block, workdir):
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        quoted = re.findall(r"\b([a-z_]+) (\d[\d.e+-]*)", comment)
        assert quoted, f"{page}: {line!r} quotes no number"
        out = _run(command.strip(), workdir)
        assert out.returncode == 0, f"{page}: {command}\n{out.stderr[-2000:]}"
        for name, value in quoted:
            printed = re.findall(rf"\b{name} (\d[\d.e+-]*)", out.stdout)
            assert any(same_up_to_last_digit(p.rstrip("."), value.rstrip(".")) for p in printed), \
                f"{page}: {command.strip()} printed no {name} {value}:\n{out.stdout}"


def test_numbers_may_differ_by_one_unit_in_their_last_digit_and_nothing_else():
    assert same_up_to_last_digit("sparsity 0.5634; 50826 parameters", "sparsity 0.5635; 50826 parameters")
    assert same_up_to_last_digit("loss -0.0100 acc 1.00", "loss -0.0099 acc 1.00")
    assert not same_up_to_last_digit("sparsity 0.5633", "sparsity 0.5635")  # two units
    assert not same_up_to_last_digit("sparsity 0.563", "sparsity 0.5635")  # another count of digits
    assert not same_up_to_last_digit("best epoch 64 of 75", "best epoch 65 of 75")  # integers are equal or not
    assert not same_up_to_last_digit("val 0.5635", "test 0.5635")
