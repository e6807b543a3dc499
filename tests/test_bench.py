"""scripts/bench.py compares regbench's runner with loops of its own; these check that the
comparison is fair (same work), not how fast anything is: timings belong to the benchmark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from regbench.data.datasets import load
from tests.helpers.configs import REPO, make_cfg

# (d)'s rows as scripts/bench.py listed them by hand before they were derived from the registry:
# the derivation keeps every one of them, name, overrides and baseline.
ROWS_LISTED_BEFORE = [
    ("l1 (proximal)", ["reg=l1"], []), ("l2", ["reg=l2"], []), ("weight_decay", ["reg=weight_decay"], []),
    ("dropout", ["reg=dropout"], []), ("augment", ["reg=augment"], []),
    ("batchnorm", ["reg=batchnorm"], []), ("label_smoothing", ["reg=label_smoothing"], []),
    ("mixup", ["reg=mixup"], []), ("cutmix", ["reg=cutmix"], []), ("cutout", ["reg=cutout"], []),
    ("input_noise", ["reg=input_noise"], []), ("ema", ["reg=ema"], []),
    ("swa", ["reg=swa", "reg.swa=0.01"], []),
    ("swa + batchnorm (update_bn)", ["reg=[swa,batchnorm]", "reg.swa=0.01"], ["reg=batchnorm"]),
    ("sam", ["reg=sam"], []), ("asam", ["reg=asam"], []),
    ("drop_path (resmlp)", ["model=resmlp", "reg=drop_path"], ["model=resmlp"]),
    ("shakedrop (resmlp)", ["model=resmlp", "reg=shakedrop"], ["model=resmlp"]),
]


@pytest.fixture
def bench(monkeypatch):
    """scripts/bench.py as a module, loaded as `python scripts/bench.py` runs it: with its folder
    first on sys.path, where its parts (scripts/benchlib) are."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_minimal_loop_does_exactly_the_runners_work(bench, tmp_path: Path):
    from benchlib.loops import minimal_loop, run_runner

    cfg = make_cfg(*bench.WORKLOAD_A, *bench.COMMON, "trainer.max_epochs=3", "dataset.train_size=300")
    device = torch.device("cpu")
    runner = run_runner(cfg, tmp_path)
    minimal = minimal_loop(cfg, load(cfg.dataset, device), device, 3)
    assert len(runner["metrics"]) == 3
    assert minimal["metrics"] == runner["metrics"]  # bit for bit: same batches, same ops


def test_the_reference_loop_trains_the_same_model_to_a_comparable_result(bench, tmp_path: Path):
    from benchlib.loops import minimal_loop, reference_loop

    cfg = make_cfg(*bench.WORKLOAD_A, *bench.COMMON, "trainer.max_epochs=3", "dataset.train_size=300")
    device = torch.device("cpu")
    data = load(cfg.dataset, device)
    reference = reference_loop(cfg, data, device, 3)
    minimal = minimal_loop(cfg, data, device, 3)
    # Another batch order (DataLoader's shuffle), same model, loss and penalty: close, not equal.
    assert len(reference["metrics"]) == 3
    assert abs(reference["metrics"][-1][3] - minimal["metrics"][-1][3]) < 0.1


def test_the_stacked_sweep_spans_the_strengths_it_names(bench):
    alphas = bench.stack_alphas(8)
    assert len(alphas) == 8 and alphas[0] == 1e-6 and alphas[-1] == 1e-2
    assert all(a < b for a, b in zip(alphas, alphas[1:]))
    assert len(bench.stack_alphas(32)) == 32


def test_every_regularizer_has_its_row_in_the_cost_benchmark(bench):
    """Each built-in regularizer's preset is timed in (d): a derivation that misses one fails here."""
    from regbench.regularizers import builtin

    timed = " ".join(" ".join(over) for _, over, _ in bench.reg_rows())
    untimed = [cls.name for cls in builtin()
               if not any(f"reg={p}" in timed or f"[{p}," in timed or f",{p}]" in timed for p in _presets_of(cls))]
    assert not untimed, f"no row in (d)'s rows (scripts/benchlib/regularizers.py) for {untimed}"
    assert bench.untimed() == []  # the derivation's own account: every class switched on by a row


def test_the_derived_rows_keep_every_row_listed_before_and_add_only_presets(bench):
    """The rows derived from the registry and conf/reg are the hand-written list of before, plus
    a row per preset that list lacked (on the day of the derivation: conf/reg/elasticnet.yaml)."""
    rows = bench.reg_rows()
    assert len({name for name, _, _ in rows}) == len(rows)
    missing = [r for r in ROWS_LISTED_BEFORE if r not in rows]
    assert not missing, missing
    presets = {p.stem for p in (REPO / "conf" / "reg").glob("*.yaml")}
    added = [r for r in rows if r not in ROWS_LISTED_BEFORE]
    assert all(name.split(" ")[0] in presets and f"reg={name.split(' ')[0]}" in over for name, over, _ in added), added


def test_a_row_moves_to_a_model_its_regularizer_acts_on_with_its_baseline(bench):
    """drop_path, shakedrop and shake_shake refuse the MLP (their config_problem hook): their rows and
    baselines run on resmlp, the first of OTHER_MODELS; the rest stay on the workloads' MLP."""
    from benchlib.regularizers import OTHER_MODELS

    moved = {name: (over, base) for name, over, base in bench.reg_rows() if any(o.startswith("model=") for o in over)}
    assert OTHER_MODELS[0] == "resmlp"
    assert moved == {"drop_path (resmlp)": (["model=resmlp", "reg=drop_path"], ["model=resmlp"]),
                     "shakedrop (resmlp)": (["model=resmlp", "reg=shakedrop"], ["model=resmlp"]),
                     "shake_shake (resmlp)": (["model=resmlp", "reg=shake_shake"], ["model=resmlp"])}


def _presets_of(cls):
    """The conf/reg presets that switch `cls` on (set one of its knobs)."""
    import yaml

    names = {k.name for k in cls.knobs}
    return [p.stem for p in (REPO / "conf" / "reg").glob("*.yaml") if names & set((yaml.safe_load(p.read_text()) or {}))]


def test_each_regularizer_row_differs_from_its_plain_run_in_that_regularizer_only(bench):
    """(d) compares a regularizer's epoch time with the same run without it: the two configs
    must differ in `reg` keys alone, and the regularizer must act (its label is not none)."""
    from omegaconf import OmegaConf

    from regbench.regularizers import label
    from regbench.results import flatten

    assert bench.reg_rows()
    for name, over, plain in bench.reg_rows():
        a, b = (flatten(OmegaConf.to_container(make_cfg(*o), resolve=True)) for o in (plain, over))
        changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert changed and all(k.startswith("reg.") for k in changed), (name, changed)
        with_it = make_cfg(*over)
        assert label(with_it.reg, with_it.model) != "none", name


def test_the_cost_table_reports_every_row_and_the_targets_read_it(bench):
    from benchlib.report import regularizer_table

    rows = bench.reg_rows()
    row = {"epoch_seconds": 0.2, "baseline_epoch_seconds": 0.1, "ratio": 2.0, "baseline": "reg=none"}
    d = {"epochs": {"digits": 8, "mnist": 2}, "repeats": 3,
         "machine_sharing": {"other_cpu_s": 1.0, "wall_s": 100.0, "other_cpu_share": 0.005, "steal_s": 0.0},
         "workloads": {w: {label: dict(row) for label, _, _ in rows} for w in ("digits", "mnist")}}
    lines = "\n".join(regularizer_table(d))
    assert all(label in lines for label, _, _ in rows) and "2.00x (200 ms)" in lines
    targets = bench.targets({"d": d, "environment": {"device": "cpu"}})
    assert [t.startswith("[MISSED]") for t in targets] == [True, True, False]  # 2.0x: over 1.10, under 2.3


def _trial(number, alpha, state="COMPLETE", value=0.5):
    return {"number": number, "state": state, "params": {"reg.alpha": alpha, "reg.l1_ratio": 0.5}, "value": value}


def test_the_search_part_refuses_runs_that_did_not_search_the_same_trials(bench):
    """(f) compares wall times only between studies of the same trials: a study that asked
    another parameter, or holds fewer or unfinished trials, is named, not timed."""
    from benchlib.search import same_trials_problem

    same = [_trial(0, 1e-4), _trial(1, 1e-3)]
    assert same_trials_problem({"8 a batch": same, "1 a batch": [dict(t, value=0.6) for t in same]}, 2) is None
    other = [_trial(0, 1e-4), _trial(1, 2e-3)]
    problem = same_trials_problem({"8 a batch": same, "1 a batch": other}, 2)
    assert problem.startswith("1 a batch asked other trials than 8 a batch: trial 1")
    assert "expected 2 complete" in same_trials_problem({"8 a batch": same, "1 a batch": same[:1]}, 2)
    failed = [_trial(0, 1e-4), _trial(1, 1e-3, state="FAIL", value=None)]
    assert "1 complete" in same_trials_problem({"8 a batch": same, "1 a batch": failed}, 2)


def test_the_search_part_reports_each_variant_and_judges_the_target_on_one_trial_at_a_time(bench):
    from benchlib.report import search_table
    from benchlib.search import BASIC, ONE, STACKED, VARIANTS

    def variant(wall):
        return {"wall_seconds": wall, "min": wall, "max": wall, "repeats": [wall], "per_trial_seconds": wall / 16}

    f = {"command": "regbench run -m ...", "trials": 16, "batch": 8, "repeats": 1, "max_epochs": None,
         "variants": {v: " ".join(o) for v, o in VARIANTS.items()},
         "machine_sharing": {"other_cpu_s": 1.0, "wall_s": 100.0, "other_cpu_share": 0.005, "steal_s": 0.0},
         "same_trials": True, "trial_value_max_abs_diff": 0.0, "epochs_run": {v: 966 for v in VARIANTS},
         STACKED: variant(20.0), ONE: variant(38.0), BASIC: variant(50.0),
         "speedup": 1.9, "speedup_per_repeat": [1.9], "speedup_vs_basic": 2.5}
    lines = "\n".join(search_table(f))
    assert all(v in lines for v in VARIANTS) and "1.25 s" in lines and "1.90x" in lines and "2.50x" in lines
    assert bench.targets({"search": f, "environment": {"device": "cpu"}}) == [
        "[MISSED] (f) a search of 16 trials from the shell, 8 trials a stack, at least 2x faster than one trial at a "
        "time: 38.0 s / 20.0 s = 1.90x"]


@pytest.mark.slow
def test_the_search_parts_quick_path_runs_and_reads_the_trials_optuna_asks(tmp_path: Path):
    """`scripts/bench.py --quick`'s part (f) from the shell, on 3 trials of one epoch: every
    variant's study holds the trials a plain Optuna loop with the preset's sampler asks."""
    import json
    import subprocess
    import sys

    optuna = pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--skip", "a", "b", "c",
                        "c-sizes", "cli-sweep", "memory", "cli", "d", "cluster", "search-basic", "--search-trials", "3",
                        "--search-epochs", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    f = json.loads(out.read_text())["search"]
    assert f["same_trials"] and f["trials"] == 3 and set(f["variants"]) == {"stacked, 8 a batch", "stacked, 1 a batch"}
    assert f["epochs_run"] == {"stacked, 8 a batch": 3, "stacked, 1 a batch": 3}
    assert "(f) a search of 3 trials" in p.stdout and "] (f) a search of 3 trials" in p.stdout
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    space = {"reg.alpha": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True),
             "reg.l1_ratio": optuna.distributions.FloatDistribution(0.0, 1.0)}
    asked = [study.ask(space).params for _ in range(3)]
    assert f["params"] == asked
