"""`regbench study`: every statistic against an outside implementation (autorank and
scikit-posthocs for the ranks, Friedman and Nemenyi; scipy for Wilcoxon; statsmodels for Holm;
baycomp for the Bayesian signed-rank test), fixtures with known answers, report.html in headless
Chromium, and an end-to-end stacked study."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regbench import UserInputError
from regbench.reporting import ranking
from regbench.reporting.study import METRICS, build
from regbench.reporting.study_command import main
from tests.helpers.cli import regbench
from tests.helpers.rundirs import write_run

REGS = ("none", "l1", "l2", "dropout")
# What sets each label apart in a real run's params (a configuration is its params, not its label).
KNOBS = {"none": {}, "l1": {"reg.l1_ratio": 1.0}, "l2": {"reg.l1_ratio": 0.0}, "dropout": {"reg.dropout": 0.5}}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def random_scores(seed: int, n: int = 9, k: int = 5, decimals: int = 2) -> np.ndarray:
    """Scores with a trend across columns and, rounded, some ties (as accuracies on small test sets have)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(size=(n, k)) * 0.05 + np.linspace(0.7, 0.8, k), decimals)


def write_study(root: Path, test: dict, val: dict | None = None, seeds=(0, 1, 2), task="classification",
                alphas: dict | None = None) -> Path:
    """Run folders for test[dataset][reg] (the mean over seeds; each seed is offset by a
    seed-dependent amount that averages to 0). `alphas[reg]` lists extra strengths: each is a
    further configuration whose validation and test values are given as val[(dataset, reg, alpha)]."""
    n = 0
    offsets = np.array(seeds, float) - np.mean(seeds)
    for dataset, by_reg in test.items():
        for reg, score in by_reg.items():
            for alpha in (alphas or {}).get(reg, [0.0]):
                v, t = (val or {}).get((dataset, reg, alpha), (score, score))
                for seed, off in zip(seeds, offsets):
                    write_run(root / str(n), reg=reg, alpha=alpha, seed=seed, dataset=dataset, task=task,
                              val=v + 0.001 * off, test=t + 0.001 * off, train=1.0,
                              extra={"reg.l1_ratio": 0.5, "reg.dropout": 0.0, **KNOBS[reg]})
                    n += 1
    return root


def test_ranks_friedman_and_nemenyi_match_autorank_and_scikit_posthocs():
    autorank = pytest.importorskip("autorank")
    sp = pytest.importorskip("scikit_posthocs")
    for seed in range(4):
        scores = random_scores(seed)
        frame = pd.DataFrame(scores, columns=[f"c{j}" for j in range(scores.shape[1])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = autorank.autorank(frame, alpha=0.05, force_mode="nonparametric", verbose=False)
        assert result.omnibus == "friedman"
        mean_rank = ranking.ranks(scores).mean(axis=0)
        np.testing.assert_allclose(mean_rank, result.rankdf["meanrank"].reindex(frame.columns).to_numpy(), rtol=1e-12)
        f = ranking.friedman(scores)
        assert f.p_chi2 == pytest.approx(result.pvalue, rel=1e-9)
        assert f.chi2 == pytest.approx(stats.friedmanchisquare(*scores.T).statistic, rel=1e-9)
        n, k = scores.shape  # Iman & Davenport (1980), as Demšar (2006) writes it
        assert f.f == pytest.approx((n - 1) * f.chi2 / (n * (k - 1) - f.chi2), rel=1e-12)
        assert f.p == pytest.approx(stats.f.sf(f.f, k - 1, (k - 1) * (n - 1)), rel=1e-12)
        # autorank takes q_alpha from statsmodels' qsturng (an approximation good to ~1e-5)
        assert ranking.nemenyi_cd(k, n, 0.05) == pytest.approx(result.cd, rel=1e-4)
        np.testing.assert_allclose(ranking.nemenyi_p(scores), sp.posthoc_nemenyi_friedman(scores).to_numpy(), atol=1e-6)


def test_nemenyi_cd_matches_demsar_table():
    # Demšar (2006), table 5(a): q_0.05 for k = 2..6 is 1.960, 2.343, 2.569, 2.728, 2.850
    for k, q in zip(range(2, 7), (1.960, 2.343, 2.569, 2.728, 2.850)):
        assert ranking.nemenyi_cd(k, 10) == pytest.approx(q * np.sqrt(k * (k + 1) / 60), abs=2e-3)


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_wilcoxon_and_holm_match_scipy_and_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    scores = random_scores(7, n=12, decimals=3)
    raw, adjusted = ranking.wilcoxon_holm(scores)
    k = scores.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    expected = [stats.wilcoxon(scores[:, i], scores[:, j]).pvalue for i, j in pairs]
    np.testing.assert_allclose([raw[i, j] for i, j in pairs], expected, rtol=1e-12)
    holm = multitest.multipletests(expected, method="holm")[1]
    np.testing.assert_allclose([adjusted[i, j] for i, j in pairs], holm, rtol=1e-12)
    np.testing.assert_array_equal(raw, raw.T)


def test_bayesian_signed_rank_matches_baycomp():
    baycomp = pytest.importorskip("baycomp")
    rng = np.random.default_rng(3)
    for shift, rope in ((0.0, 0.01), (0.01, 0.01), (0.03, 0.01), (0.01, 0.0)):
        x = rng.uniform(0.7, 0.95, 15)
        y = x - shift + rng.normal(0, 0.01, 15)
        ours = ranking.bayes_signed_rank(x, y, rope, seed=1)
        theirs = baycomp.two_on_multiple(x, y, rope, random_state=2)
        if rope == 0:
            theirs = (theirs[0], 0.0, theirs[1])
        # Monte-Carlo with 50 000 samples each, different streams: 3 standard errors at p = 0.5 is 0.007
        np.testing.assert_allclose(ours, theirs, atol=0.01)
        assert sum(ours) == pytest.approx(1.0)


def test_one_regularizer_winning_everywhere_ranks_first_on_every_dataset(tmp_path):
    test = {f"d{i}": {"none": 0.80 + 0.01 * i, "l1": 0.81 + 0.01 * i, "l2": 0.90, "dropout": 0.79 + 0.01 * i}
            for i in range(5)}
    study = build([write_study(tmp_path, test)])
    l2 = study.regs.index("l2")
    assert (study.cells.loc[study.cells["reg"] == "l2", "rank"] == 1).all()
    assert study.mean_rank[l2] == 1.0
    assert study.wtl[l2, :, 0].tolist() == [0 if j == l2 else 5 for j in range(4)]  # wins
    assert study.friedman.conclusive and study.friedman.p < 0.05
    assert (study.ratios[:, l2] == 1).all()  # the best on every dataset: its profile is 1 from tau = 1
    assert np.isinf(study.friedman.f)  # every dataset orders the four alike (l1 > none > dropout)
    assert "orders the configurations alike" in study.friedman.note


def test_complete_ties_give_equal_ranks_and_no_difference(tmp_path):
    test = {f"d{i}": {r: 0.9 for r in REGS} for i in range(4)}
    study = build([write_study(tmp_path, test)])
    np.testing.assert_array_equal(study.mean_rank, [2.5] * 4)
    assert study.friedman.p == 1.0 and "ties every configuration" in study.friedman.note
    assert not study.different().any()
    assert (study.wtl[..., 1][~np.eye(4, dtype=bool)] == 4).all()


def test_two_datasets_say_friedman_cannot_conclude(tmp_path, capsys):
    test = {f"d{i}": {"none": 0.8, "l1": 0.85, "l2": 0.9} for i in range(2)}
    root = write_study(tmp_path / "s", test)
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Friedman test: 2 datasets cannot support a conclusion" in out
    record = json.loads((tmp_path / "out" / "study_tests.json").read_text())
    assert record["friedman"]["conclusive"] is False and record["friedman"]["p"] is None


def test_strength_is_chosen_on_validation_never_on_test(tmp_path):
    test = {f"d{i}": {"none": 0.8, "l2": 0.8} for i in range(3)}
    # l2 at 1e-4: best on validation, worse on test; at 1e-2 the reverse. The study must take 1e-4.
    val = {(f"d{i}", "l2", a): vt for i in range(3) for a, vt in ((1e-4, (0.95, 0.70)), (1e-2, (0.85, 0.99)))}
    study = build([write_study(tmp_path, test, val, alphas={"l2": [1e-4, 1e-2]})])
    l2 = study.cells[study.cells["reg"] == "l2"]
    assert (l2["chosen"] == "alpha=0.0001").all()
    assert l2["score"].to_numpy() == pytest.approx([0.70] * 3)
    assert (l2["rank"] == 2).all()


def test_regression_ranks_by_its_own_metric_and_direction(tmp_path):
    # write_run gives loss = 1 - value: by r2 (higher better) or by mse (lower better) the order is the same
    cls = {f"c{i}": {"none": 0.8, "l2": 0.9} for i in range(2)}
    reg = {f"r{i}": {"none": 0.3, "l2": 0.6} for i in range(2)}
    write_study(tmp_path / "a", cls)
    write_study(tmp_path / "b", reg, task="regression")
    for metrics in ("acc,r2", "acc,mse"):
        study = build([tmp_path], [METRICS[m] for m in metrics.split(",")])
        assert (study.cells.loc[study.cells["reg"] == "l2", "rank"] == 1).all(), metrics
        assert study.metrics["r0"].name == metrics.split(",")[1]
    study = build([tmp_path], [METRICS["loss"]])  # the loss is lower-better on every dataset
    assert (study.cells.loc[study.cells["reg"] == "l2", "rank"] == 1).all()


def test_bad_input_is_one_line(tmp_path, capsys):
    root = write_study(tmp_path / "s", {"d0": {"none": 0.8, "l2": 0.9}})
    assert main([str(root)]) == 2
    assert "a study needs at least 2 datasets" in capsys.readouterr().err
    assert main([str(root), "--metric", "f1"]) == 2
    assert "--metric f1: unknown metric f1" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2
    for args, says in ((["--metric", "loss", "--rope"], "--rope: loss has no default region of practical equivalence"),
                       (["--rope", "wide"], "--rope wide: must be a number"), (["--rope", "-1"], "must be 0 or more")):
        capsys.readouterr()
        assert main([str(root), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    with pytest.raises(UserInputError, match="none applies to dataset d0"):
        build([root], [METRICS["r2"]])


def test_a_dataset_missing_a_regularizer_is_left_out_with_a_note(tmp_path):
    test = {f"d{i}": {"none": 0.8, "l2": 0.9} for i in range(3)}
    test["d3"] = {"none": 0.8}
    study = build([write_study(tmp_path, test)])
    assert study.datasets == ["d0", "d1", "d2"] and study.regs == ["l2", "none"]
    assert study.notes == ["dataset d3 left out: it has ok runs of none alone, and a study ranks two or more "
                           "regularizers"]


FIVE = {f"d{i}": {"none": 0.80 + 0.01 * i, "l2": 0.83 + 0.005 * i, "dropout": 0.81, "l1": 0.82} for i in range(5)}


def test_a_regularizer_missing_from_one_dataset_is_left_out_not_every_dataset(tmp_path):
    # five sweeps sharing none, l2 and dropout; l1 has no run on d4 (the issue: `found 0 datasets`)
    test = {d: dict(regs) for d, regs in FIVE.items()}
    del test["d4"]["l1"]
    root = write_study(tmp_path / "s", test)
    study = build([root])
    assert study.datasets == [f"d{i}" for i in range(5)] and study.regs == ["dropout", "l2", "none"]
    assert study.notes == ["left out l1: not on every dataset (no ok run of l1 on d4); --reg chooses the regularizers"]
    assert set(study.cells["reg"]) == {"dropout", "l2", "none"} and len(study.cells) == 15
    # the statistics are those of the complete block alone: the same as a study without l1 at all
    without = {d: {r: v for r, v in regs.items() if r != "l1"} for d, regs in test.items()}
    alone = build([write_study(tmp_path / "alone", without)])
    np.testing.assert_array_equal(study.scores, alone.scores)
    assert study.friedman.p == alone.friedman.p
    # several missing: each named with where it is missing, in one line
    test["d2"].pop("dropout")
    test["d3"].pop("dropout")
    study = build([write_study(tmp_path / "two", test)])
    assert study.regs == ["l2", "none"]
    assert study.notes == ["left out dropout, l1: not on every dataset (no ok run of dropout on d2, d3; l1 on d4); "
                           "--reg chooses the regularizers"]


def test_reg_chooses_the_regularizers_and_leaves_out_the_datasets_without_them(tmp_path, capsys):
    test = {d: dict(regs) for d, regs in FIVE.items()}
    del test["d4"]["l1"]
    root = write_study(tmp_path / "s", test)
    study = build([root], regs="none,l2")
    assert study.regs == ["l2", "none"] and len(study.datasets) == 5 and study.notes == []
    study = build([root], regs="none, l1,l2")
    assert study.regs == ["l1", "l2", "none"] and study.datasets == ["d0", "d1", "d2", "d3"]
    assert study.notes == ["dataset d4 left out: no ok run of l1 (--reg)"]
    assert main([str(root), "--reg", "none,l1", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "note: dataset d4 left out: no ok run of l1 (--reg)" in printed
    assert "2 regularizers on 4 datasets" in printed
    for bad, why in (("none,l3", "--reg none,l3: no ok run of l3 (the labels here: dropout, l1, l2, none)"),
                     ("l2", "--reg l2: a study ranks two or more regularizers")):
        assert main([str(root), "--reg", bad, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"regbench: error: {why}") and err.count("\n") == 1


def test_regularizers_on_no_common_pair_of_datasets_say_so_in_one_line(tmp_path, capsys):
    test = {"d0": {"none": 0.8, "l2": 0.9}, "d1": {"none": 0.7, "l2": 0.8}, "d2": {"none": 0.8, "l1": 0.85}}
    root = write_study(tmp_path / "s", test)
    assert main([str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "found 3 dataset(s) (d0, d1, d2) and 1 regularizer(s) (none)" in err
    assert "left out l1, l2: not on every dataset (no ok run of l1 on d0, d1; l2 on d2); --reg chooses" in err
    study = build([root], regs="none,l2")  # the way out the line names
    assert study.datasets == ["d0", "d1"] and study.notes == ["dataset d2 left out: no ok run of l2 (--reg)"]


def test_study_writes_every_output(tmp_path, capsys):
    test = {f"d{i}": {"none": 0.80 + 0.02 * (i % 2), "l1": 0.82, "l2": 0.85 + 0.01 * i, "dropout": 0.81}
            for i in range(6)}
    root = write_study(tmp_path / "s", test)
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--rope", "0.01", "--posthoc", "wilcoxon"]) == 0
    for name in ("study.csv", "study_tests.json", "wtl.csv", "profiles.csv", "cd.png", "cd.svg", "cd.pdf", "profiles.png",
                 "profiles.svg", "profiles.pdf", "report.html"):
        assert (out / name).stat().st_size > 0, name
    cells = pd.read_csv(out / "study.csv")
    assert len(cells) == 24 and set(cells["reg"]) == set(REGS)
    record = json.loads((out / "study_tests.json").read_text())
    assert record["command"].startswith("regbench study ") and "--rope 0.01" in record["command"]
    assert len(record["bayes_signed_rank"]["pairs"]) == 6 and len(record["wilcoxon"]["pairs"]) == 6
    assert len(record["bayes_hierarchical"]["pairs"]) == 6
    bayes = pd.read_csv(out / "bayes.csv")
    assert list(bayes["test"]).count("hierarchical") == 6 and list(bayes["test"]).count("signed-rank") == 6
    probs = bayes[["p_left_better", "p_equivalent", "p_right_better"]].sum(axis=1)
    assert np.allclose(probs, 1.0)
    l2 = bayes[(bayes["test"] == "hierarchical") & (bayes["left"] == "l2") & (bayes["right"] == "dropout")].iloc[0]
    assert l2["p_left_better"] > 0.95 and l2["mean_difference"] == pytest.approx(0.065, abs=0.01)
    wtl = pd.read_csv(out / "wtl.csv", index_col=0)
    assert wtl.loc["l2", "dropout"] == "6/0/0"
    page = (out / "report.html").read_text()
    assert "<svg" in page and "data:image/png;base64," in page and "regbench study" in page
    assert 'name="viewport"' in page and "@media print" in page
    for fetch in ('src="http', "src='http", 'href="http', "url(http", "@import", "<script", "<link"):
        assert fetch not in page, fetch  # nothing fetched (the SVG's metadata names URIs, fetches none)
    printed = capsys.readouterr().out
    assert "Friedman (Iman–Davenport)" in printed and "Bayesian signed-rank (rope 0.01)" in printed
    assert "hierarchical Bayesian, every seed (rope 0.01): P(l2 better) = " in printed
    assert "Hierarchical Bayesian test, every seed (rope 0.01)" in page


def test_rope_alone_is_the_metrics_default(tmp_path, capsys):
    test = {f"d{i}": {"none": 0.80, "l2": 0.82 + 0.002 * i} for i in range(3)}
    root = write_study(tmp_path / "s", test)
    assert main([str(root), "--out", str(tmp_path / "out"), "--rope"]) == 0
    assert "hierarchical Bayesian, every seed (rope 0.01)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "study_tests.json").read_text())["bayes_hierarchical"]["rope"] == 0.01


def test_the_hierarchical_test_takes_the_seeds_correlation_from_the_split(tmp_path):
    """Re-split seeds: rho = n_test / (n_train + n_test), as the corrected t-test; one fixed split: 0;
    re-split data of unknown sizes: 1/seeds, with a note."""
    from regbench.reporting.study import seeds_correlation

    test = {f"d{i}": {"none": 0.80, "l2": 0.82 + 0.002 * i} for i in range(3)}
    study = build([write_study(tmp_path / "s", test)], rope=0.01)
    assert len(study.hierarchical) == 1 and study.hierarchical[0]["left"] == "l2"
    runs = pd.DataFrame({"params.seed": [0, 1, 2], "params.dataset.split_seed": [0, 1, 2],
                         "split_sizes.train": [900.0] * 3, "split_sizes.val": [100.0] * 3,
                         "split_sizes.test": [300.0] * 3})
    assert seeds_correlation(runs) == (pytest.approx(300 / 1200), "re-split")
    assert seeds_correlation(runs.assign(**{"params.dataset.split_seed": 7}))[0] == 0.0
    unknown = seeds_correlation(runs.drop(columns=["split_sizes.train", "split_sizes.val", "split_sizes.test"]))
    assert math.isnan(unknown[0])


PROBE = """<script>window.__errors = [];
addEventListener('error', e => __errors.push(String(e.message || (e.target && e.target.outerHTML || '').slice(0, 80))), true);
const ce = console.error; console.error = (...a) => { __errors.push(a.join(' ')); ce(...a); };
addEventListener('load', () => {
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({errors: __errors, images: [...document.images].map(i => [i.alt, i.naturalWidth]),
    svgs: [...document.querySelectorAll('svg')].map(s => s.getBBox().width),
    width: document.documentElement.scrollWidth, inner: innerWidth});
  document.body.appendChild(p); });</script>"""


def check_in_chromium(page: Path, tmp_path: Path, width: int) -> dict:
    """Opens `page` (with a probe script added to its head) in headless Chromium at `width`
    pixels; returns what the probe saw, and checks the console and a screenshot."""
    probe = tmp_path / f"probe_{width}.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--window-size={width},900", "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    consoled = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not consoled, consoled
    seen = json.loads(dom.stdout.split('<pre id="probe">')[1].split("</pre>")[0].replace("&quot;", '"'))
    shot = tmp_path / f"shot_{width}.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05  # drawn, not blank
    assert (pixels[..., :3] < 0.5).mean() > 0.005  # some dark text on it
    pdf = tmp_path / f"print_{width}.pdf"  # the print stylesheet: it prints, to more than a blank page
    subprocess.run([*flags, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()], capture_output=True,
                   timeout=120)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000
    return seen


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 390])  # a desktop and a phone
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_study_page_renders_in_chromium(tmp_path, width):
    test = {f"d{i}": {"none": 0.80 + 0.02 * (i % 2), "l1": 0.82, "l2": 0.85 + 0.01 * i, "dropout": 0.81}
            for i in range(4)}
    root = write_study(tmp_path / "s", test)
    assert main([str(root), "--out", str(tmp_path / "out"), "--rope", "0.01"]) == 0
    seen = check_in_chromium(tmp_path / "out" / "report.html", tmp_path, width)
    assert seen["errors"] == []
    assert [alt for alt, _ in seen["images"]] == ["performance profiles"]
    assert all(w > 0 for _, w in seen["images"]) and seen["svgs"] and all(w > 0 for w in seen["svgs"])
    assert seen["width"] <= seen["inner"]  # wide tables scroll inside their box, the page does not


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run installs it)")
@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_report_page_embeds_its_plots_and_renders(tmp_path):
    from regbench.reporting.report_command import main as report_main

    root = tmp_path / "sweep"
    for seed in range(3):
        write_run(root / f"n{seed}", reg="none", seed=seed, val=0.8 + 0.01 * seed)
        for alpha in (1e-4, 1e-2):
            write_run(root / f"l2_{alpha}_{seed}", reg="l2", alpha=alpha, seed=seed, val=0.82 + 0.01 * seed)
    assert report_main([str(root), "--plots", "--pivot", "reg.alpha"]) == 0
    page = (root / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # gap_vs_strength.png (no metrics.csv: no curves.png)
    assert f"regbench report {root} --plots --pivot reg.alpha" in page and "p Holm" in page
    assert "<th>reg.alpha=0.0001</th>" in page and "0.8300 ± 0.0100" in page  # the pivot view
    seen = check_in_chromium(root / "report.html", tmp_path, 1280)
    assert seen["errors"] == [] and seen["images"] and all(w > 0 for _, w in seen["images"])


@pytest.mark.slow
def test_end_to_end_study_of_a_stacked_sweep(tmp_path):
    """Three bundled datasets x four regularizers x three seeds, stacked, then `regbench study`."""
    import resource

    def cpu_seconds() -> float:  # CPU time, not wall time: other processes on the machine do not count
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start = cpu_seconds()
    out = regbench("run", "-m", "hydra/launcher=stacked", "dataset=digits,wine,breast_cancer",
                   "reg=none,l2,dropout,label_smoothing", "seed=0,1,2", "trainer.max_epochs=5",
                   "model.hidden_sizes=[32]", "device=cpu", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train as one model" in out.stdout + out.stderr
    page = (tmp_path / "sweep" / "report.html").read_text()  # the sweep's own report page, with its command
    assert "regbench run -m hydra/launcher=stacked hydra.sweep.dir=sweep dataset=digits,wine,breast_cancer" in page
    study = regbench("study", "sweep", "--rope", "0.01", cwd=tmp_path)
    assert study.returncode == 0, study.stderr[-3000:]
    assert cpu_seconds() - start < 60
    cells = pd.read_csv(tmp_path / "sweep" / "study.csv")
    assert sorted(cells["dataset"].unique()) == ["breast_cancer", "digits", "wine"]
    assert len(cells) == 12 and (cells["n_seeds"] == 3).all()
    runs = pd.read_csv(tmp_path / "sweep" / "runs.csv")  # the scores are the runs' own test means
    for _, c in cells.iterrows():
        mine = runs[(runs["dataset"] == c["dataset"]) & (runs["reg"] == c["reg"])]
        assert c["score"] == pytest.approx(mine["test_acc"].mean(), rel=1e-12)
    record = json.loads((tmp_path / "sweep" / "study_tests.json").read_text())
    assert record["friedman"]["conclusive"] and record["friedman"]["k"] == 4
    assert "Friedman (Iman–Davenport)" in study.stdout
    for name in ("cd.png", "cd.svg", "profiles.png", "report.html", "wtl.csv"):
        assert (tmp_path / "sweep" / name).is_file()


def test_a_dataset_parameter_that_varies_makes_separate_datasets(tmp_path):
    for train_size in (100, 300):
        write_study(tmp_path / str(train_size), {"digits": {"none": 0.8, "l2": 0.9}})
        for folder in (tmp_path / str(train_size)).iterdir():
            result = json.loads((folder / "result.json").read_text())
            result["params"]["dataset.train_size"] = train_size
            (folder / "result.json").write_text(json.dumps(result))
    write_study(tmp_path / "wine", {"wine": {"none": 0.8, "l2": 0.9}})
    study = build([tmp_path])
    assert study.datasets == ["digits (train_size=100)", "digits (train_size=300)", "wine"]


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out DIR", "--metric", "--reg", "--posthoc", "--alpha", "--rope", "--seed"):
        assert option in text


def test_cliques_are_the_maximal_runs_no_pair_of_which_differs():
    different = np.zeros((4, 4), bool)
    for i, j in ((0, 2), (0, 3)):
        different[i, j] = different[j, i] = True
    assert ranking.cliques(np.array([1.0, 2.0, 3.0, 4.0]), different) == [[0, 1], [1, 2, 3]]
    assert ranking.cliques(np.array([4.0, 3.0, 2.0, 1.0]), np.zeros((4, 4), bool)) == [[3, 2, 1, 0]]
    assert ranking.cliques(np.array([1.0, 2.0]), ~np.eye(2, dtype=bool)) == []


@pytest.mark.slow  # over 3 s of CPU: CI's run, not the fast loop
def test_posthoc_groups_follow_the_nemenyi_cd_or_wilcoxon_holm(tmp_path):
    from regbench.reporting.study import tests_record

    test = {f"d{i}": {"none": 0.80, "l1": 0.84 - 0.02 * (i % 2), "l2": 0.90, "dropout": 0.82 + 0.02 * (i % 2)}
            for i in range(12)}
    root = write_study(tmp_path, test)
    nemenyi = build([root])
    # ranks: l2 1, none 4, l1 and dropout 2 and 3 in turn (2.5 on average); CD(k=4, N=12) = 2.569·sqrt(20/72)
    assert nemenyi.cd == pytest.approx(2.569 * np.sqrt(20 / 72), abs=1e-3)  # 1.354
    np.testing.assert_array_equal(nemenyi.mean_rank, [2.5, 2.5, 1.0, 4.0])  # dropout, l1, l2, none
    # 1.5 ranks between l2 and the middle pair, and between it and none: more than the CD
    assert tests_record(nemenyi)["groups_not_told_apart"] == [["dropout", "l1"]]
    with_cd = build([root], alpha=0.001)  # CD(k=4, N=12, alpha=0.001) is wider than 1.5: groups overlap
    assert with_cd.cd > 1.5 and with_cd.friedman.p < 0.001
    assert tests_record(with_cd)["groups_not_told_apart"] == [["l2", "dropout", "l1"], ["dropout", "l1", "none"]]
    wilcoxon = build([root], posthoc="wilcoxon")
    # every pair differs on all 12 datasets but l1/dropout (6 wins each): Holm keeps those 5 apart
    l1, dropout = wilcoxon.regs.index("l1"), wilcoxon.regs.index("dropout")
    assert wilcoxon.p_wilcoxon[l1, dropout] == pytest.approx(1.0)
    assert tests_record(wilcoxon)["groups_not_told_apart"] == [["dropout", "l1"]]


def test_a_study_of_a_read_only_folder_prints_it_and_says_what_was_not_written(tmp_path, monkeypatch, capsys):
    # simulated (root ignores chmod); test_a_read_only_study_folder_for_real makes the error happen
    import errno
    import os

    import regbench.reporting.study_command as study_module

    root = write_study(tmp_path / "s", {f"d{i}": {"none": 0.8 + 0.01 * i, "l2": 0.85} for i in range(3)})

    def refused(study, out, *args, **kwargs):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(out / "study.csv"))

    monkeypatch.setattr(study_module, "write", refused)
    assert main([str(root)]) == 1
    printed = capsys.readouterr()
    assert "2 regularizers on 3 datasets" in printed.out and "wrote " not in printed.out
    assert printed.err == (f"regbench: error: cannot write {root / 'study.csv'} (Permission denied): the table above "
                           "is complete, its files are not; --out DIR writes them into another folder\n")


@pytest.mark.slow
def test_a_read_only_study_folder_for_real(tmp_path, read_only):
    root = read_only(write_study(tmp_path / "s", {f"d{i}": {"none": 0.8 + 0.01 * i, "l2": 0.85} for i in range(3)}))
    out = regbench("study", str(root), cwd=tmp_path)
    assert out.returncode == 1 and "2 regularizers on 3 datasets" in out.stdout
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"regbench: error: cannot write {root}/")
    assert "--out DIR writes them into another folder" in out.stderr
    again = regbench("study", str(root), "--out", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "elsewhere" / "study.csv").is_file() and (tmp_path / "elsewhere" / "report.html").is_file()
