"""The regularizer protocol (regbench.regularizers): knobs, labels, refusals, and a user's own
regularizer (examples/user_regularizer) run as a user runs it, alone and stacked."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import textwrap

import pytest
import torch
from rich.console import Console

from regbench.config.checks import check
from regbench.engine import grouping, sweep
from regbench.engine.runner import run
from regbench.regularizers import builtin, knob_table, label
from tests.helpers.cli import regbench
from tests.helpers.configs import REPO, make_cfg

EXAMPLE = REPO / "examples" / "user_regularizer"
SEARCH = (str(EXAMPLE),)
SMALL = ["dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=6", "trainer.patience=2"]


def test_every_builtin_knob_is_in_the_docs_table():
    page = (REPO / "docs" / "reference" / "regularizers.md").read_text()
    for row in knob_table(markdown=True).splitlines():
        assert row in page, f"{row}: run python scripts/docs_tables.py"


def test_every_builtin_regularizer_declares_its_knobs_label_and_docs():
    names = [cls.name for cls in builtin()]
    assert len(set(names)) == len(names)
    for cls in builtin():
        assert cls.knobs and all(k.doc and k.range for k in cls.knobs), cls
        assert cls.__module__.startswith("regbench.regularizers."), cls  # one module each
        off = {k.name: k.default for k in cls.knobs}
        assert cls.label(off, make_cfg("model=mlp").model) is None, cls  # the defaults switch it off


@pytest.mark.parametrize("key, value, message", [
    ("reg.alpha", -1, "reg.alpha must be >= 0 (got -1"),
    ("reg.l1_ratio", 2, "reg.l1_ratio must be in [0, 1] (got 2"),
    ("reg.dropout", 1, "reg.dropout must be in [0, 1) (got 1"),
    ("reg.weight_decay", -0.5, "reg.weight_decay must be >= 0 (got -0.5)"),
    ("reg.label_smoothing", 1, "reg.label_smoothing must be in [0, 1) (got 1"),
])
def test_each_knob_out_of_its_range_is_refused_in_one_line(key, value, message):
    problems = check(make_cfg(f"{key}={value}"))
    assert len(problems) == 1 and problems[0].startswith(message), problems


def _user_cfg(*overrides: str):
    """A composed config with the example's maxnorm entry (as `--config-dir` + reg=maxnorm gives)."""
    return make_cfg(*SMALL, "+reg.extra.maxnorm._target_=maxnorm.MaxNorm", *overrides)


def test_a_user_regularizer_loads_from_the_folder_beside_its_config_and_is_labelled():
    cfg = _user_cfg("+reg.extra.maxnorm.max_norm=1.0", "reg=l2")
    assert check(cfg, SEARCH) == []
    assert label(cfg.reg, cfg.model, SEARCH) == "l2+maxnorm"
    assert label(_user_cfg("+reg.extra.maxnorm.max_norm=0").reg, cfg.model, SEARCH) == "none"  # 0 is off


@pytest.mark.parametrize("entry, message", [
    (["+reg.extra.mine._target_=nowhere.Mine"],
     "reg.extra.mine._target_=nowhere.Mine: no module nowhere on the Python path, nor nowhere.py in"),
    (["+reg.extra.mine._target_=maxnorm.Missing"], "reg.extra.mine._target_=maxnorm.Missing: maxnorm has no Missing"),
    (["+reg.extra.mine._target_=Mine"], "reg.extra.mine._target_ must be a dotted path module.name (got 'Mine')"),
    (["+reg.extra.maxnorm._target_=maxnorm.MaxNorm", "+reg.extra.maxnorm.max_norm=-1"],
     "reg.extra.maxnorm.max_norm must be >= 0 (got -1)"),
    (["+reg.extra.maxnorm._target_=maxnorm.MaxNorm", "+reg.extra.maxnorm.radius=1"],
     "reg.extra.maxnorm.radius is not a knob of maxnorm.MaxNorm (its knobs: max_norm)"),
])
def test_a_user_regularizer_that_does_not_load_or_fit_is_refused_in_one_line(entry, message):
    problems = check(make_cfg(*entry), SEARCH)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_the_user_modules_import_error_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("raise ImportError('needs torch_geometric')\n")
    problems = check(make_cfg("+reg.extra.b._target_=broken.B"), (str(tmp_path),))
    assert problems == ["reg.extra.b._target_=broken.B: importing broken failed: ImportError: needs torch_geometric"]


def test_a_user_regularizer_acts_and_a_stack_of_them_equals_the_lone_runs_bit_for_bit(tmp_path):
    """maxnorm keeps every unit's incoming weights inside its ball (the reported weights' row
    norms, the oracle), members with different max_norm stack with the built-in regularizers,
    and each member ends where its lone run ends."""
    variants = [["+reg.extra.maxnorm.max_norm=0.5"], ["+reg.extra.maxnorm.max_norm=1.0", "reg=l2"],
                ["+reg.extra.maxnorm.max_norm=0"], ["+reg.extra.maxnorm.max_norm=0.5", "reg=dropout", "seed=1",
                                                    "dataset.split_seed=0"]]
    cfgs = [_user_cfg("save_model=true", *v) for v in variants]
    assert len({grouping.stack_key(c, SEARCH) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    alone = [run(c, tmp_path / f"alone{i}", quiet, SEARCH) for i, c in enumerate(cfgs)]
    together = sweep.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], quiet, search=SEARCH)
    for i, (a, s) in enumerate(zip(alone, together)):
        assert a["status"] == s["status"] == "ok", (a.get("error"), s.get("error"))
        for key in ("metrics", "gap", "best_epoch", "epochs_run", "sparsity", "reg", "params", "config_hash"):
            assert s[key] == a[key], (variants[i], key)
        weights = torch.load(tmp_path / f"alone{i}" / "model.pt", weights_only=True)
        norms = torch.cat([w.flatten(1).norm(dim=1) for name, w in weights.items() if w.dim() >= 2])
        radius = cfgs[i].reg.extra.maxnorm.max_norm
        if radius > 0:
            assert norms.max() <= radius * (1 + 1e-5), (variants[i], norms.max())
        else:
            assert norms.max() > 0.6  # unconstrained, units do grow past the radius 0.5 the others keep
    assert alone[0]["reg"] == "maxnorm" and alone[1]["reg"] == "l2+maxnorm" and alone[2]["reg"] == "none"
    assert alone[0]["params"]["reg.extra.maxnorm.max_norm"] == 0.5
    assert alone[0]["metrics"] != alone[2]["metrics"]  # the constraint binds at 0.5


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_regularizer_that_cannot_stack_says_why_and_its_jobs_run_alone(tmp_path):
    (tmp_path / "lonely.py").write_text(textwrap.dedent('''
        from regbench.regularizers import Knob

        class Lonely:
            name = "lonely"
            knobs = (Knob("on", True, "Whether it acts.", "true | false"),)
            stackable = "it keeps a Python-side state per run"

            @staticmethod
            def label(values, model):
                return "lonely" if values["on"] else None

            def __init__(self, values, stack):
                self.active = False
    '''))
    cfg = make_cfg("+reg.extra.l._target_=lonely.Lonely")
    search = (str(tmp_path),)
    assert grouping.stack_key(cfg, search) is None
    assert grouping.why_alone(cfg, search) == "reg.extra.l (Lonely) does not stack: it keeps a Python-side state per run"
    shutil.copytree(EXAMPLE, tmp_path / "conf")
    (tmp_path / "conf" / "reg" / "lonely.yaml").write_text("extra:\n  l:\n    _target_: lonely.Lonely\n")
    shutil.copy(tmp_path / "lonely.py", tmp_path / "conf" / "lonely.py")
    out = regbench("run", "-m", "--config-dir", "conf", "hydra/launcher=stacked", "reg=lonely", "seed=0,1",
                   "trainer.max_epochs=2", "dataset.train_size=100", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "stacked: jobs 0-1 run alone: reg.extra.l (Lonely) does not stack: it keeps a Python-side state per run" \
        in out.stdout
    assert "sweep done: 2 ok" in out.stdout


@pytest.mark.slow
def test_the_user_regularizer_example_runs_end_to_end_as_its_readme_says(tmp_path):
    """examples/user_regularizer/run.sh, from a subprocess as a user runs it (shortened by its
    extra arguments): the user's maxnorm beside l2 and no regularizer in stacked sweeps, and
    the report's rows for each."""
    out = subprocess.run(["bash", str(EXAMPLE / "run.sh"), str(tmp_path / "out"), "trainer.max_epochs=5"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for jobs in ("0-2", "3-5", "6-8"):  # one stack per seed (the seed picks the split), max_norm per member
        assert f"stacked: jobs {jobs} train as one model (3 members)" in out.stdout
    with open(tmp_path / "out" / "report" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = {r["reg"] for r in rows}
    assert labels == {"none", "l2", "maxnorm"}, labels
    assert len([r for r in rows if r["reg"] == "maxnorm"]) == 3  # max_norm 0.5, 1 and 2
    runs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "maxnorm").glob("*/result.json")]
    assert sorted(r["params"]["reg.extra.maxnorm.max_norm"] for r in runs) == [0.5] * 3 + [1.0] * 3 + [2.0] * 3
    assert all(r["stack_size"] == 3 for r in runs)


def test_a_user_regularizer_is_not_part_of_the_convex_objective_unless_it_says_so():
    from regbench.config.checks import convex_obstacles

    cfg = _user_cfg("model=linear", "reg=l1", "+reg.extra.maxnorm.max_norm=1.0")
    assert convex_obstacles(cfg, SEARCH) == ["reg.extra.maxnorm.max_norm=1.0 (not part of the convex objective)"]
    off = _user_cfg("model=linear", "reg=l1", "+reg.extra.maxnorm.max_norm=0")
    assert convex_obstacles(off, SEARCH) == []  # switched off, it is no obstacle


def test_run_help_lists_every_knob_of_every_regularizer(tmp_path):
    out = regbench("run", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert knob_table() in out.stdout  # the same table docs/reference/regularizers.md carries in markdown
    assert "optim.schedule" in out.stdout and "reg.extra.NAME" in out.stdout


def test_knobs_added_later_leave_the_hash_of_runs_that_do_not_use_them_as_it_was():
    """A regularizer knob added after the first release, at its default (off), stays out of
    config_hash, so sweeps recorded before it existed still resume; set, it counts."""
    from omegaconf import OmegaConf

    from regbench.results import config_hash, flatten

    def hashed(*overrides):
        return config_hash(flatten(OmegaConf.to_container(make_cfg(*overrides), resolve=True)))

    later = [k for k in builtin()[-1].knobs if k.since]
    assert later  # input_noise came in 0.2
    params = flatten(OmegaConf.to_container(make_cfg("reg=l2"), resolve=True))
    without = {k: v for k, v in params.items() if not k.startswith(("reg.mixup", "reg.cutmix", "reg.mix_prob",
                                                                      "reg.cutout", "reg.input_noise"))}
    assert hashed("reg=l2") == config_hash(without)
    assert hashed("reg=l2", "reg.input_noise=0.1") != hashed("reg=l2")


# A regularizer written from the contract's docstrings alone (regbench.regularizers.contract), with only what it calls
# required (name, knobs, label, __init__) and one hook, penalty: an L2 penalty on the weight
# matrices, written as the docstring describes the stack (each member's own term).
MINIMAL = textwrap.dedent('''
    import torch

    from regbench.regularizers import Knob


    class Ridge:
        name = "ridge"
        knobs = (Knob("strength", 0.0, "0.5 * strength * ||w||^2 on the weight matrices.", ">= 0", lambda v: v >= 0),)

        @staticmethod
        def label(values, model):
            return "ridge" if values["strength"] > 0 else None

        def __init__(self, values, stack):
            self.strength = [v["strength"] for v in values]

        def penalty(self, stack):
            s = torch.tensor(self.strength, device=stack.params[0].device)
            return sum((0.5 * s * w.square().flatten(1).sum(1)).sum()
                       for w, penalised in zip(stack.params, stack.penalised) if penalised)
''')


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_a_regularizer_written_from_the_docstring_alone_runs_end_to_end_and_its_penalty_acts(tmp_path):
    """The protocol's required attributes and a penalty are enough (no `active`, which only the
    example sets): from a subprocess, its run is ok, labelled, and its penalty is exactly the
    built-in L2 of the same strength (regbench's L2, itself checked against scikit-learn in
    tests/test_convex.py), which no penalty does not give."""
    (tmp_path / "ridge.py").write_text(MINIMAL)
    common = ("dataset.train_size=200", "model.hidden_sizes=[16]", "trainer.max_epochs=3")
    out = regbench("run", "-m", *common, "+reg.extra.ridge._target_=ridge.Ridge", "+reg.extra.ridge.strength=0,0.05",
                   "hydra.sweep.dir=mine", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    l2 = regbench("run", *common, "reg=l2", "reg.alpha=0.05", "hydra.run.dir=l2", cwd=tmp_path)
    assert l2.returncode == 0, l2.stdout[-2000:] + l2.stderr[-2000:]
    results = {json.loads(p.read_text())["params"]["reg.extra.ridge.strength"]: json.loads(p.read_text())
               for p in (tmp_path / "mine").glob("*/result.json")}
    builtin_l2 = json.loads((tmp_path / "l2" / "result.json").read_text())
    on, off = results[0.05], results[0]
    assert on["status"] == off["status"] == "ok" and (on["reg"], off["reg"]) == ("ridge", "none")
    for key, value in builtin_l2["metrics"].items():
        assert on["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    assert on["metrics"]["train_loss"] > off["metrics"]["train_loss"] + 1e-3  # the penalty acted


# name, knobs, label, __init__: each missing or of the wrong kind, and hooks of the wrong arity
_KNOB = 'K = (Knob("s", 0.0, "A strength.", ">= 0"),)\n'
_LABEL = "    @staticmethod\n    def label(values, model):\n        return None\n"
_INIT = "    def __init__(self, values, stack):\n        pass\n"
CONTRACT = [
    ('    name = "m"\n    knobs = K\n' + _INIT, "lacks label (a staticmethod label(values, model) -> str | None)"),
    ('    knobs = K\n' + _LABEL + _INIT, "lacks name (a str, its part of the reg label)"),
    ('    name = "m"\n' + _LABEL + _INIT, "lacks knobs (a sequence of regbench.regularizers.Knob)"),
    ('    name = "m"\n    knobs = K\n' + _LABEL, "lacks __init__(self, values, stack)"),
    ('    name = "m"\n    knobs = K\n    def label(self, values, model):\n        return None\n' + _INIT,
     "has label(self, values, model), not a staticmethod label(values, model)"),
    ('    name = "m"\n    knobs = K\n    label = "m"\n' + _INIT, "has label 'm', not a staticmethod label(values, model)"),
    ('    name = "m"\n    knobs = "s"\n' + _LABEL + _INIT, "has knobs 's', not a sequence of regbench.regularizers.Knob"),
    ('    name = "m"\n    knobs = ({"name": "s"},)\n' + _LABEL + _INIT,
     "has knobs holding {'name': 's'}, not a sequence of regbench.regularizers.Knob"),
    ('    name = "m"\n    knobs = K\n' + _LABEL + "    def __init__(self, values):\n        pass\n",
     "has __init__(self, values), not __init__(self, values, stack)"),
    ('    name = "m"\n    knobs = K\n' + _LABEL + _INIT + "    def penalty(self):\n        return None\n",
     "has penalty(self), not penalty(self, stack)"),
    ('    name = "m"\n    knobs = K\n' + _LABEL + _INIT + "    def batch(self, stack, x):\n        return x\n",
     "has batch(self, stack, x), not batch(self, stack, x, y)"),
    ('    name = "m"\n    knobs = K\n' + _LABEL + _INIT + "    def problem(self, cfg, data):\n        return None\n",
     "has problem(self, cfg, data), not a staticmethod problem(cfg, data)"),
    ('    name = "m"\n    knobs = K\n' + _LABEL + _INIT + "    def weights(self, stack):\n        return None\n",
     "defines weights but lacks weights_label(self, stack, k, epoch) -> str"),
    ('    name = "m"\n    knobs = K\n    stackable = False\n' + _LABEL + _INIT,
     "has stackable False, not True or a one-line reason (a str)"),
    ('    name = "dropout"\n    knobs = K\n' + _LABEL + _INIT, "has name 'dropout', a built-in regularizer's: choose another"),
]


def _user_module(tmp_path, body: str) -> str:
    """Writes `class Mine` with `body` into a module of its own (one a test: an imported module
    stays in sys.modules) and returns the module's name."""
    import re

    module = re.sub(r"\W", "_", tmp_path.name)
    (tmp_path / f"{module}.py").write_text("from regbench.regularizers import Knob\n" + _KNOB + "class Mine:\n" + body)
    return module


@pytest.mark.parametrize("body, message", CONTRACT, ids=[m.split(" (")[0].split(",")[0][:40] for _, m in CONTRACT])
def test_a_user_class_that_breaks_the_protocol_is_refused_in_one_line_naming_what(tmp_path, body, message):
    module = _user_module(tmp_path, body)
    problems = check(make_cfg(f"+reg.extra.m._target_={module}.Mine"), (str(tmp_path),))
    assert problems == [f"reg.extra.m: {module}.Mine {message}; see regbench.regularizers"]


@pytest.mark.parametrize("body, message", [CONTRACT[0], CONTRACT[4], CONTRACT[9]])
def test_the_refusal_comes_from_the_command_line_before_any_data_is_read(tmp_path, body, message):
    """exit 2, the one line, no traceback, no run folder (the engine never built the class)."""
    (tmp_path / "mine.py").write_text("from regbench.regularizers import Knob\n" + _KNOB + "class Mine:\n" + body)
    out = regbench("run", "+reg.extra.m._target_=mine.Mine", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout + out.stderr == f"regbench: error: reg.extra.m: mine.Mine {message}; see regbench.regularizers\n"
    assert not (tmp_path / "run").exists()


def test_two_entries_of_one_class_are_refused(tmp_path):
    (tmp_path / "ridge.py").write_text(MINIMAL)
    problems = check(make_cfg("+reg.extra.a._target_=ridge.Ridge", "+reg.extra.b._target_=ridge.Ridge"), (str(tmp_path),))
    assert problems == ["reg.extra.a and reg.extra.b are both named 'ridge': one entry per regularizer class"]


def test_every_builtin_and_the_example_meet_the_protocol_the_user_classes_are_checked_against():
    import importlib.util

    from regbench.regularizers import contract_problems

    spec = importlib.util.spec_from_file_location("maxnorm_example", EXAMPLE / "maxnorm.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for cls in (*builtin(), example.MaxNorm):
        assert contract_problems(cls) == [], cls


def test_every_attribute_the_engine_reads_from_a_regularizer_is_in_the_protocol():
    """The names the engine, the model builder, the launcher and the regularizers' package read off
    a regularizer class or instance (hasattr/getattr, the contract's defines/declared, and the
    `reg.<attr>` / `cls.<attr>` reads) are each declared by regbench.regularizers.contract: a hook
    (its Protocol, with a docstring), a declared attribute (its default and doc), a required one,
    or named in the contract's docstring, so that none is known only from an example."""
    import inspect
    import re

    import regbench.regularizers as protocol
    from regbench.regularizers import contract

    files = [*(REPO / "regbench" / "engine").glob("*.py"), REPO / "regbench" / "models.py",
             *(REPO / "regbench" / "regularizers").glob("[a-z_]*.py"),
             *(REPO / "hydra_plugins").rglob("*.py")]
    files = [f for f in files if f.parent.name != "regularizers" or f.stem in ("__init__", "registry", "contract")]
    subjects = r"(?:r|reg|cls|self\.weights_hook|self\.loss_hook)"
    patterns = [rf"\b(?:hasattr|getattr|defines|declared)\({subjects}, \"(\w+)\"", rf"\b{subjects}\.(\w+)\b"]
    read = {name for f in files for p in patterns for name in re.findall(p, f.read_text())}
    # Python's own, and the `reg` config node's keys (a `reg` is also that node)
    read -= {"__name__", "__init__", "get", "items", "extra"} | {k.name for k in protocol.builtin_knobs()}
    assert {"active", "label", "penalty", "stackable", "weights_label"} <= read  # the scan sees them
    assert all(inspect.getdoc(getattr(contract.HOOKS[h], h)) for h in contract.HOOKS)
    assert all(d.doc for d in contract.DECLARED.values())
    declared = set(contract.HOOKS) | set(contract.DECLARED) | set(contract.REQUIRED)
    undocumented = sorted(name for name in read if name not in declared and f"`{name}" not in contract.__doc__)
    assert undocumented == []


def test_the_docs_hook_table_is_the_contracts():
    """The docs' table of hooks (docs/reference/api.md) is generated from the contract's Protocols and the built-ins
    that define each: a new hook, or a regularizer using one, cannot leave it stale."""
    from regbench.regularizers.registry import hook_table

    table = hook_table()
    assert table in (REPO / "docs" / "reference" / "api.md").read_text(), \
        "docs/reference/api.md's hook table is stale: run python scripts/docs_tables.py"
    assert "`gradient(stack, closure)` | " in table and "| sam |" in table  # every hook, with who defines it
