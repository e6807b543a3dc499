"""The cocktail search (Kadra et al. 2021; regbench.config.cocktail, `reg=cocktail` under
`+search=each`): its conditional space never yields a configuration that regbench refuses (the
config checks and the run's own refusal on the data are the oracles, over many trials of Optuna's
RandomSampler and TPESampler on each kind of model), an ingredient that is off samples nothing
(Optuna's trial.params is the oracle), the sweeper asks what a plain Optuna loop calling the same
space asks, a killed cocktail study resumes to the trials of an uninterrupted one, and `regbench
study` compares the tuned cocktail, as one configuration, with the tuned single regularizers."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason='needs the search extra: pip install -e ".[search]"')

from omegaconf import OmegaConf  # noqa: E402

from regbench.config import cocktail  # noqa: E402
from regbench.regularizers import label  # noqa: E402
from tests.helpers.cli import regbench, start  # noqa: E402
from tests.helpers.configs import make_cfg  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

# one of each kind of model: a table's MLP, a residual MLP (the residual-only ingredients), an image
# model (augmentation), a linear model on a regression (no batch norm, no label smoothing or mixing)
KINDS = {
    "mlp": ("dataset=wine", "model=mlp"),
    "resmlp": ("dataset=digits", "model=resmlp"),
    "cnn": ("dataset=digits", "model=cnn"),
    "linear": ("dataset=diabetes", "model=linear"),
}
SMALL = ["trainer.max_epochs=3", "dataset.train_size=100", "model.hidden_sizes=[16]"]


def _cfg(kind: str):
    return make_cfg(*KINDS[kind], "reg=cocktail")


def _samplers():
    return {"random": optuna.samplers.RandomSampler(seed=0),
            "tpe": optuna.samplers.TPESampler(seed=0, n_startup_trials=10)}


def _with(cfg, overrides: dict[str, str]):
    """`cfg` with the trial's overrides, each parsed as a Hydra override's value (the schema types it)."""
    import yaml

    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out.pop("hydra", None)
    for key, value in overrides.items():
        OmegaConf.update(out, key, yaml.safe_load(value), merge=False)
    return out


def _refused(cfg, data) -> str | None:
    """What regbench refuses in `cfg`: the command line's checks, then the run's own refusal on the data."""
    from regbench.config.checks import check
    from regbench.engine.runner import refusal

    problems = check(cfg, ())
    return problems[0] if problems else refusal(cfg, data)


def _off_samples_nothing(p: cocktail.Plan, params: dict) -> None:
    """Optuna's record of the trial is the oracle: an ingredient off (or not asked) has no parameter
    of any of its options; one on has exactly its option's."""
    owned = {f"{o.preset}.{key.removeprefix('reg.')}": (i, o) for i in p.ingredients for o in i.options
             for key, _ in o.space}
    choices = {k: v for k, v in params.items() if k.startswith(cocktail.GROUP)}
    for name in params:
        if name in choices:
            continue
        ingredient, option = owned[name]
        chosen = [v for k, v in choices.items() if k.split("[")[0] == ingredient.param]
        assert chosen == [option.preset], (name, params)
    for param, choice in choices.items():
        if choice == cocktail.OFF:
            continue
        option = next(o for i in p.ingredients for o in i.options if o.preset == choice)
        assert all(f"{option.preset}.{key.removeprefix('reg.')}" in params for key, _ in option.space), (choice, params)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_no_sampled_cocktail_is_refused_and_an_off_ingredient_samples_nothing(kind):
    """200 trials each of RandomSampler and TPESampler (told random values, so that TPE models):
    every sampled cocktail passes the config checks and the run's refusal on the data, and
    ingredients the checks refuse together are never on together."""
    import random

    import torch

    from regbench.data.datasets import load

    cfg = _cfg(kind)
    p = cocktail.plan(cfg)
    data = load(cfg.dataset, torch.device("cpu"))
    rng = random.Random(0)
    seen: set[frozenset[str]] = set()
    for name, sampler in _samplers().items():
        study = optuna.create_study(sampler=sampler)
        for _ in range(200 if kind != "linear" else 60):
            trial = study.ask()
            overrides = cocktail.space(cfg, trial)
            _off_samples_nothing(p, trial.params)
            on = frozenset(v for k, v in trial.params.items() if k.startswith(cocktail.GROUP) and v != cocktail.OFF)
            assert not any(pair <= on for pair in p.conflicts), on
            if on not in seen or rng.random() < 0.25:  # every new combination, and a share of the others
                problem = _refused(_with(cfg, overrides), data)
                assert problem is None, (name, sorted(on), overrides, problem)
                seen.add(on)
            study.tell(trial, rng.random())
    # the space was explored: most ingredients were on in some trial
    on_somewhere = {preset for combination in seen for preset in combination}
    assert len(on_somewhere) >= len([o for i in p.ingredients for o in i.options]) - 1, on_somewhere


@pytest.mark.slow
def test_the_space_follows_what_the_model_and_the_data_allow():
    """Ingredients come from the presets of conf/reg/, one choice per regularizer module; what the
    checks refuse on this model or data is left out, saying why; refused pairs are never together."""
    mlp = cocktail.plan(_cfg("mlp"))
    names = {i.name: [o.preset for o in i.options] for i in mlp.ingredients}
    assert names["elasticnet"] == ["elasticnet", "l1", "l2"] and names["sam"] == ["asam", "sam"]
    assert names["mixing"] == ["cutmix", "mixup"] and names["grad_clip"] == ["grad_clip", "grad_clip_value"]
    assert not {"drop_path", "shakedrop", "shake_shake", "augment"} & set(names)  # residual-only; images only
    assert any(line.startswith("augment: reg.augment needs image data") for line in mlp.left_out)
    assert mlp.conflicts == {frozenset(("ema", "swa"))}
    res = cocktail.plan(_cfg("resmlp"))
    assert {"drop_path", "shakedrop", "shake_shake", "augment"} <= {i.name for i in res.ingredients}
    assert res.conflicts == {frozenset(p) for p in (("ema", "swa"), ("shake_shake", "shakedrop"), ("drop_path", "shake_shake"))}
    linear = cocktail.plan(_cfg("linear"))
    left = {line.split(":")[0] for line in linear.left_out}
    assert {"batchnorm", "label_smoothing", "mixup", "cutmix"} <= left  # does nothing; a regression
    # each option's space is its regularizer's declared one (regbench.regularizers.search_space), not a copy
    from regbench.regularizers import search_space

    l2 = next(o for i in mlp.ingredients for o in i.options if o.preset == "l2")
    assert dict(l2.space) == search_space(make_cfg("reg=l2").reg, (), make_cfg("reg=l2").model)


@pytest.mark.slow  # the data loaded, torch imported: over 3 s alone
def test_a_trial_asked_again_gives_the_same_overrides_and_a_conflict_is_asked_under_its_own_name():
    cfg = _cfg("resmlp")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    names = set()
    for _ in range(40):
        trial = study.ask()
        first = cocktail.space(cfg, trial)
        again = cocktail.space(cfg, optuna.trial.Trial(study, trial._trial_id))  # as a resumed trial is
        assert again == first
        names |= set(trial.params)
        study.tell(trial, 0.0)
    # shake_shake after drop_path or shakedrop is on has no choice but off: it is then not asked
    assert "cocktail.shake_shake" in names
    assert all(not n.startswith("cocktail.shake_shake[") for n in names)


def test_the_cocktail_is_labelled_cocktail_and_other_runs_keep_their_hash():
    from regbench.config.keys import hashed
    from regbench.results import flatten

    cfg = make_cfg("reg=cocktail", "reg.dropout=0.3")
    assert label(cfg.reg, cfg.model) == "cocktail"
    plain = make_cfg("reg=dropout")
    assert label(plain.reg, plain.model) == "dropout"
    params = flatten(OmegaConf.to_container(plain, resolve=True))
    assert params["reg.cocktail"] is False and "reg.cocktail" not in hashed(params)  # at its default: as before
    assert "reg.cocktail" in hashed(flatten(OmegaConf.to_container(cfg, resolve=True)))


def _study(sweep: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


@pytest.mark.slow
def test_singles_and_the_cocktail_tuned_with_one_budget_then_compared_in_a_study(tmp_path):
    """`reg=none,l2,dropout,cocktail dataset=wine,digits +search=each`, stacked, pruned on paired
    seeds: the cocktail's study asks what a plain Optuna loop calling its space asks; its runs are
    labelled cocktail and ran its trials' overrides; `regbench study` ranks it as one configuration,
    with its win/tie/loss against each and the ingredients it chose."""
    out = regbench("run", "-m", "reg=none,l2,dropout,cocktail", "dataset=wine,digits", "+search=each",
                   "+search/prune=wilcoxon", "hydra.sweeper.n_trials=4", "search.seeds=2", *SMALL,
                   "hydra/launcher=stacked", "hydra.sweep.dir=sw", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "each 1/4 trials x 2 paired seeds" in out.stdout
    sweep = tmp_path / "sw"
    search = {s["key"]: s for s in json.loads((sweep / "search.json").read_text())["studies"]}
    mix = search["reg=cocktail,dataset=wine"]
    assert mix["trials"] == mix["counted"] == 4 and "cocktail.dropout" in mix["space"]
    assert "cocktail.augment" not in mix["space"] and "cocktail.augment" in search["reg=cocktail,dataset=digits"]["space"]
    # the oracle: Optuna's own loop, the same sampler and seed, calling the same space, told the same values
    study = _study(sweep, "regbench[reg=cocktail,dataset=wine]")
    plain = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    cfg = make_cfg("reg=cocktail", "dataset=wine", *SMALL)
    asked, overrides = [], []
    for _ in range(4):  # one batch: each trial's space sampled as it is asked
        asked.append(plain.ask())
        overrides.append(cocktail.space(cfg, asked[-1]))
    assert [t.params for t in study.trials] == [t.params for t in asked]
    for t in study.trials:  # each seed's run ran the trial's overrides, labelled cocktail
        assert t.user_attrs["regbench_overrides"] == overrides[t.number]
        for s in (0, 1):
            result = json.loads((sweep / "reg=cocktail,dataset=wine" / str(t.number) / f"seed_{s}" / "result.json").read_text())
            assert result["reg"] == "cocktail"
            for key, value in overrides[t.number].items():
                assert str(result["params"][key]).lower() == value.lower() or float(result["params"][key]) == float(value)
    report = regbench("study", "sw", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    text = report.stdout
    assert "│ cocktail" in text and "the tuned cocktail against each (wins/ties/losses over 2 datasets): " in text
    assert "chosen on validation for wine: cocktail: " in text
    assert "reg=cocktail,dataset=wine: 4 of 4 trials" in text and "UNEQUAL" not in text
    rows = list(csv.reader((sweep / "wtl.csv").open()))
    assert rows[0] == ["reg", "cocktail", "dropout", "l2", "none"] and rows[1][0] == "cocktail"
    cells = list(csv.DictReader((sweep / "study.csv").open()))
    chosen = [c["chosen"] for c in cells if c["reg"] == "cocktail"]
    assert len(chosen) == 2 and all(c and "=" in c or c == "(nothing on)" for c in chosen), chosen
    assert not any(c["reg"] not in ("cocktail", "dropout", "l2", "none") for c in cells)  # no trial under its ingredients


@pytest.mark.slow
def test_a_killed_cocktail_study_resumes_to_the_trials_of_an_uninterrupted_one(tmp_path):
    args = ["reg=cocktail", "+search=each", "hydra.sweeper.n_trials=6", "hydra.sweeper.batch=2",
            "hydra.sweeper.sampler.n_startup_trials=2", "search.seeds=2", "trainer.max_epochs=20",
            "dataset.train_size=300", "model.hidden_sizes=[16]", "hydra/launcher=stacked"]
    whole = regbench("run", "-m", *args, "hydra.sweep.dir=whole", cwd=tmp_path, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    proc = start(["run", "-m", *args, "hydra.sweep.dir=killed"], tmp_path)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "2").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = tmp_path / "killed"
    states = [t.state.name for t in _study(killed, "regbench").trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and states[2:] == ["RUNNING", "RUNNING"], states
    again = regbench("run", "-m", *args, "hydra.sweep.dir=killed", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "trials 2, 3 were interrupted; they run again" in again.stdout
    a, b = _study(killed, "regbench").trials, _study(tmp_path / "whole", "regbench").trials
    assert [t.params for t in a] == [t.params for t in b]  # the conditional parameters included
    assert [t.user_attrs["regbench_overrides"] for t in a] == [t.user_attrs["regbench_overrides"] for t in b]
    assert [t.value for t in a] == [t.value for t in b]


def _suggest_dropout(cfg, trial):
    """A define-by-run space in Hydra's convention: its parameter names are config keys."""
    trial.suggest_float("reg.dropout", 0.1, 0.5)


@pytest.mark.slow  # the data loaded, torch imported: over 3 s alone
def test_a_define_by_run_space_gives_its_suggestions_or_its_overrides_to_the_trials_jobs():
    """`custom_search_space`'s two conventions: a function returning None overrides what it suggested
    (Hydra's Optuna sweeper's), one returning a dict overrides that (the cocktail's); the static
    space's parameters join them, and the job's overrides say it all."""
    from hydra_plugins.regbench_optuna_sweeper.sweeper import _Study

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {"reg.alpha": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)}
    st = _Study("", ["reg=cocktail"], space, {}, 2, [0], study, None, define=[_suggest_dropout], cfg=None)
    trial = st.ask()
    assert set(trial.params) == {"reg.alpha", "reg.dropout"}
    job = st.job(trial, 0, ["dataset=wine"])
    assert f"reg.dropout={trial.params['reg.dropout']!r}" in job and f"reg.alpha={trial.params['reg.alpha']!r}" in job
    cfg = _cfg("mlp")
    mix = _Study("", [], {}, {}, 2, [0, 1], optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)), None,
                 define=[cocktail.space], cfg=cfg)
    trial = mix.ask()
    job = mix.job(trial, 1, [])
    overrides = trial.user_attrs["regbench_overrides"]
    assert overrides and all(f"{k}={v}" in job for k, v in overrides.items())
    assert not any(k.startswith(cocktail.GROUP) for k in (j.split("=")[0] for j in job))  # choices are no config keys
    assert "seed=1" in job and "hydra.sweep.subdir='0/seed_1'" in job
