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

from regbench.cli.schema import check
from regbench.engine import stackable, stacked
from regbench.engine.runner import run
from regbench.regularizers import builtin, knob_table, label
from tests.conftest import REPO, make_cfg, regbench

EXAMPLE = REPO / "examples" / "user_regularizer"
SEARCH = (str(EXAMPLE),)
SMALL = ["dataset.train_size=300", "model.hidden_sizes=[32,16]", "trainer.max_epochs=6", "trainer.patience=2"]


def test_every_builtin_knob_is_in_the_readme_table():
    readme = (REPO / "README.md").read_text()
    for row in knob_table(markdown=True).splitlines():
        assert row in readme, row


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
    assert len({stackable.stack_key(c, SEARCH) for c in cfgs}) == 1
    quiet = Console(quiet=True)
    alone = [run(c, tmp_path / f"alone{i}", quiet, SEARCH) for i, c in enumerate(cfgs)]
    together = stacked.train([(c, tmp_path / f"stacked{i}") for i, c in enumerate(cfgs)], quiet, search=SEARCH)
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
    assert stackable.stack_key(cfg, search) is None
    assert stackable.why_alone(cfg, search) == "reg.extra.l (Lonely) does not stack: it keeps a Python-side state per run"
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
    from regbench.cli.schema import convex_obstacles

    cfg = _user_cfg("model=linear", "reg=l1", "+reg.extra.maxnorm.max_norm=1.0")
    assert convex_obstacles(cfg, SEARCH) == ["reg.extra.maxnorm.max_norm=1.0 (not part of the convex objective)"]
    off = _user_cfg("model=linear", "reg=l1", "+reg.extra.maxnorm.max_norm=0")
    assert convex_obstacles(off, SEARCH) == []  # switched off, it is no obstacle


def test_run_help_lists_every_knob_of_every_regularizer(tmp_path):
    out = regbench("run", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert knob_table() in out.stdout  # the same table the README carries in markdown
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
