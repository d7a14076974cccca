"""Budget fidelity: tau and its bootstrap match scipy, a planted stable epoch is found, a planted flip is reported.

The planted runs: curves whose early epochs are noise unrelated to the final
accuracy and whose later epochs are the final accuracy plus a little noise, so
the ranking becomes stable at a known epoch; and retrain tables in which the
search verdict "B is higher than A" is kept or reversed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

import runfolder
from reports import _fidelity as fidelity
from reports import build_report, load_run, summarize
from reports._fidelity import rank_stability
from reports._kendall import bootstrap_kendall_taus, kendall_tau, kendall_tau_ci, resample_counts, resample_indices
import synthetic_run as synthetic

RANK_STABILITY_CONTRACT = ["epoch", "n", "kendall_tau", "ci_low", "ci_high"]
EPOCHS = 8
STABLE_FROM = 4
SHORTCUTS = ["A", "B", "C"]
DEPTHS = [20, 56]
SEEDS = [0, 1, 2, 3]
FACTORS = {"shortcut": {"levels": SHORTCUTS, "reference": "A"}, "depth": {"levels": DEPTHS, "reference": 20}}


def _fixed_pair(n: int = 15, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    # Rounded to one decimal: ties in both columns, as quantised accuracies have.
    rng = np.random.default_rng(seed)
    x = np.round(rng.random(n), 1)
    return x, np.round(x + rng.random(n) * 0.5, 1)


# ------------------------------------------------------------------ tau and its CI against scipy
def test_tau_is_scipys_kendall_tau_b():
    x, y = _fixed_pair()
    tau, p_value = kendall_tau(x, y)
    expected = stats.kendalltau(x, y)
    assert tau == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert np.isnan(kendall_tau(x[:2], y[:2])[0])


def test_every_bootstrap_resample_is_scipys_tau_of_those_draws():
    x, y = _fixed_pair()
    indices = resample_indices(len(x), seed=3, n_resamples=300)
    mine = bootstrap_kendall_taus(x, y, resample_counts(indices, len(x)))
    expected = np.array([stats.kendalltau(x[rows], y[rows]).statistic for rows in indices])
    np.testing.assert_allclose(mine, expected, atol=1e-12, equal_nan=True)


def test_ci_is_the_percentile_interval_of_those_resamples():
    x, y = _fixed_pair(n=20, seed=5)
    result = kendall_tau_ci(x, y, seed=7, n_resamples=500)
    taus = np.array([stats.kendalltau(x[rows], y[rows]).statistic for rows in resample_indices(len(x), 7, 500)])
    low, high = np.percentile(taus[np.isfinite(taus)], [2.5, 97.5])
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert result.ci_low <= result.tau <= result.ci_high
    # And it agrees with scipy.stats.bootstrap's own percentile interval up to resampling noise.
    scipys = stats.bootstrap((x, y), lambda a, b: stats.kendalltau(a, b).statistic, paired=True, vectorized=False,
                             n_resamples=2000, method="percentile", random_state=0).confidence_interval
    assert abs(result.ci_low - scipys.low) < 0.06 and abs(result.ci_high - scipys.high) < 0.06


def test_a_constant_column_has_no_tau():
    result = kendall_tau_ci(np.full(10, 0.1), np.arange(10.0))
    assert np.isnan(result.tau) and np.isnan(result.ci_low)


# ------------------------------------------------------------------ planted runs
def _planted_curves(results: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Epochs before STABLE_FROM: noise unrelated to the end; from STABLE_FROM on, the final accuracy + 0.05 pp noise."""
    rows = []
    for trial, final in zip(results["trial_id"], results["val_acc_best"]):
        for epoch in range(1, EPOCHS + 1):
            value = (final if epoch == EPOCHS else
                     final + rng.normal(0, 0.0005) if epoch >= STABLE_FROM else rng.uniform(0.1, 0.9))
            rows.append({"trial_id": trial, "epoch": epoch, "train_loss": 1.0, "val_acc": value, "epoch_s": 1.0,
                         "images_per_s": 100.0, "lr": 0.1})
    return pd.DataFrame(rows)


def _write_study_yaml(run_dir, search: dict) -> None:
    (run_dir / "study.yaml").write_text(yaml.safe_dump({"name": run_dir.name, "search": search}))


def _planted_run(root, name: str, retrain_effect: float | None = None, retrained_levels=SHORTCUTS,
                 retrained_depths=DEPTHS, search: dict | None = None):
    """Shortcut x depth x 4 seeds; B is 4 pp above A at the search budget; optionally a retrain at 30 epochs
    in which B's offset against A is `retrain_effect`."""
    trials = synthetic.grid_trials({"shortcut": SHORTCUTS, "depth": DEPTHS}, SEEDS)
    results, _ = synthetic.build_results(trials, epochs=EPOCHS, effects={"shortcut": {"B": 0.04}}, seed=2)
    rng = np.random.default_rng(4)
    # A wide spread of finals: the ranking is then well defined.
    results["val_acc_best"] = results["val_acc_best"] + rng.normal(0, 0.03, len(results))
    curves = _planted_curves(results, rng)
    retrain = None
    if retrain_effect is not None:
        chosen = results["factor.shortcut"].isin(retrained_levels) & results["factor.depth"].isin(retrained_depths)
        best = runfolder.ranked_frame(results[chosen]).drop_duplicates("arch_key")
        retrain = [runfolder.RetrainRow(
            arch_key=row["arch_key"], source_trial_id=row["trial_id"], seed=seed, status="complete", epochs=30,
            source_val_acc_best=row["val_acc_best"], source_test_acc=row["test_acc"],
            test_acc=0.90 + (retrain_effect if row["factor.shortcut"] == "B" else 0.0) + rng.normal(0, 0.002))
            for row in best.to_dict("records") for seed in range(3)]
    info = synthetic.run_info(name, FACTORS, trials=len(trials), epochs=EPOCHS, seeds=SEEDS)
    run_dir = synthetic.write_run(root / name, results, info, curves, retrain)
    _write_study_yaml(run_dir, search or {"strategy": "grid"})
    return run_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("fidelity_runs")


@pytest.fixture(scope="module")
def kept_run(root):
    return _planted_run(root, "kept", retrain_effect=0.03,
                        search={"strategy": "grid", "scheduler": "asha", "asha": {"grace_period": 2}})


@pytest.fixture(scope="module")
def flipped_run(root):
    return _planted_run(root, "flipped", retrain_effect=-0.03)


# ------------------------------------------------------------------ within a run
def test_planted_curves_become_stable_at_the_planted_epoch(kept_run):
    stability = rank_stability(load_run(kept_run))
    table = stability.table
    assert list(table.columns) == RANK_STABILITY_CONTRACT
    assert list(table["epoch"]) == list(range(1, EPOCHS + 1))
    assert (table["n"] == len(SHORTCUTS) * len(DEPTHS) * len(SEEDS)).all()
    assert stability.stable_epoch == STABLE_FROM
    early = table[table["epoch"] < STABLE_FROM]
    assert (early["ci_low"] < fidelity.STABLE_TAU).all()
    late = table[table["epoch"] >= STABLE_FROM]
    assert (late["ci_low"] > fidelity.STABLE_TAU).all()
    # Each row's tau is scipy's on the same trials.
    run = load_run(kept_run)
    pivot = run.curves.pivot_table(index="trial_id", columns="epoch", values="val_acc")
    expected = stats.kendalltau(pivot[2], pivot[EPOCHS]).statistic
    assert table.loc[table["epoch"] == 2, "kendall_tau"].iloc[0] == pytest.approx(expected, abs=1e-12)


def test_a_grace_period_before_the_stable_epoch_is_not_safe(kept_run, root):
    stability = rank_stability(load_run(kept_run))
    assert stability.asha.scheduler == "asha" and stability.asha.grace_period == 2
    assert stability.grace_period_safe is False
    later = _planted_run(root, "late_cut", search={"strategy": "grid", "scheduler": "asha",
                                                   "asha": {"grace_period": STABLE_FROM + 1}})
    assert rank_stability(load_run(later)).grace_period_safe is True
    # The default grace period applies when the study names ASHA without its settings.
    default = _planted_run(root, "default_cut", search={"strategy": "grid", "scheduler": "asha"})
    assert rank_stability(load_run(default)).asha.grace_period == fidelity.ASHA_DEFAULT_GRACE_PERIOD


def test_many_trials_are_ranked_on_a_seeded_subset(kept_run, monkeypatch):
    monkeypatch.setattr(fidelity, "MAX_STABILITY_TRIALS", 10)
    first, second = rank_stability(load_run(kept_run)), rank_stability(load_run(kept_run))
    assert (first.table["n"] == 10).all() and first.n_complete == 24 and first.n_used == 10
    pd.testing.assert_frame_equal(first.table, second.table)
    assert any("seeded random 10" in note for note in first.notes)


def test_a_run_without_curves_says_so(kept_run, tmp_path):
    import shutil

    copy = tmp_path / "runs" / "no_curves"
    shutil.copytree(kept_run, copy)
    for name in ("curves.parquet", "curves.csv"):
        (copy / name).unlink()
    (copy / "trials.jsonl").unlink()
    stability = rank_stability(load_run(copy))
    assert stability.table.empty and "curves.parquet is missing" in stability.notes[0]
    text = build_report(copy).read_text(encoding="utf-8")
    assert "no per-epoch accuracies to rank" in text


# ------------------------------------------------------------------ across budgets
def _verdict_row(run_dir, factor: str, level: str) -> pd.Series:
    verdicts = summarize(load_run(run_dir)).fidelity.budget.verdicts
    return verdicts[(verdicts["factor"] == factor) & (verdicts["level"] == level)].iloc[0]


def test_a_retrain_that_agrees_keeps_the_verdict(kept_run):
    row = _verdict_row(kept_run, "shortcut", "B")
    assert row["search_verdict"] == "higher"
    assert row["retrain_verdict"] == "higher" and row["fidelity"] == "holds" and row["direction_agrees"]
    assert row["retrain_epochs"] == 30 and row["search_epochs"] == EPOCHS
    assert row["n_architectures"] == 2 and row["n_architectures_ref"] == 2 and row["n"] == 2


def test_a_retrain_that_disagrees_reverses_the_verdict(flipped_run):
    row = _verdict_row(flipped_run, "shortcut", "B")
    assert row["search_verdict"] == "higher"
    assert row["retrain_verdict"] == "lower" and row["fidelity"] == "reversed" and not row["direction_agrees"]
    # Two architectures a side: Welch's t on the architectures' mean retrained accuracies.
    run = load_run(flipped_run)
    runs = fidelity.retrained_runs(run)
    b, a = (runs[runs["factor.shortcut"] == level].groupby("arch_key")["test_acc"].mean() for level in ("B", "A"))
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert row["unit"] == fidelity.ARCHITECTURE_UNIT and row["n"] == 2
    assert row["retrain_diff"] == pytest.approx(b.mean() - a.mean(), abs=1e-12)
    assert row["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)


def test_one_architecture_a_side_is_compared_over_its_seeds(root):
    run_dir = _planted_run(root, "depth_20_only", retrain_effect=0.03, retrained_depths=[20])
    row = _verdict_row(run_dir, "shortcut", "B")
    assert row["unit"] == fidelity.RUN_UNIT and (row["n"], row["n_ref"]) == (3, 3)
    runs = fidelity.retrained_runs(load_run(run_dir))
    b, a = (runs.loc[runs["factor.shortcut"] == level, "test_acc"] for level in ("B", "A"))
    assert row["p_value"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
    assert row["fidelity"] == "holds"
    # depth has one retrained level only: nothing to compare it with.
    assert _verdict_row(run_dir, "depth", "56")["fidelity"] == "too few retrained architectures"


def test_too_few_retrained_architectures_is_said_plainly(root):
    run_dir = _planted_run(root, "only_b", retrain_effect=0.03, retrained_levels=["B"])
    row = _verdict_row(run_dir, "shortcut", "B")
    assert row["fidelity"] == "too few retrained architectures" and row["n_architectures_ref"] == 0
    budget = summarize(load_run(run_dir)).fidelity.budget
    assert (budget.ranking["reading"] == "too few architectures").all()
    assert any("too few to tell" in note for note in budget.notes)
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert "too few retrained architectures to tell" in text


def test_search_ranking_against_retrained_ranking_is_scipys_tau(flipped_run):
    run = load_run(flipped_run)
    ranking = summarize(run).fidelity.budget.ranking
    runs = fidelity.retrained_runs(run)
    per_architecture = runs.groupby("arch_key").agg(search=("search_val_acc_best", "first"), mean=("test_acc", "mean"))
    row = ranking[ranking["search_metric"] == "val_acc_best"].iloc[0]
    assert row["n"] == len(SHORTCUTS) * len(DEPTHS)
    expected = stats.kendalltau(per_architecture["search"], per_architecture["mean"])
    assert row["kendall_tau"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
    assert row["ci_low"] <= row["kendall_tau"] <= row["ci_high"]


# ------------------------------------------------------------------ the page and the CSVs
def _keyed(text: str) -> dict[str, str]:
    return dict(re.findall(r'data-key="([^"]+)"[^>]*>([^<]*)<', text))


def test_the_page_shows_the_stable_epoch_the_grace_period_and_the_retrain(kept_run):
    text = build_report(kept_run).read_text(encoding="utf-8")
    assert 'id="budget-fidelity"' in text and "Does the cheap budget predict the expensive one?" in text
    keyed = _keyed(text)
    assert keyed["stability.stable_epoch"] == str(STABLE_FROM)
    assert "is NOT shown safe" in text and f"set search.asha.grace_period to {STABLE_FROM} or more" in text
    assert keyed["budget_verdict.shortcut.B.30.fidelity"] == "holds"
    assert 'data-testid="rank-stability"' in text and 'data-testid="budget-verdicts"' in text
    tables = kept_run / "report_tables"
    assert list(pd.read_csv(tables / "rank_stability.csv").columns) == RANK_STABILITY_CONTRACT
    ranking = pd.read_csv(tables / "budget_fidelity.csv")
    assert {"kendall_tau", "ci_low", "ci_high", "n"} <= set(ranking.columns)
    assert (pd.read_csv(tables / "budget_verdicts.csv")["fidelity"].notna()).all()


def test_a_run_without_retrain_explains_how_to_measure_it(root):
    run_dir = _planted_run(root, "no_retrain")
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert "No retrain.parquet" in text and "A grace period of 4 epoch(s) or more would be safe" in text
    assert not (run_dir / "report_tables" / "budget_fidelity.csv").exists()
    assert (run_dir / "report_tables" / "rank_stability.csv").exists()
