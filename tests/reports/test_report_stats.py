"""The report's statistics, checked against independent computations (pandas, scipy, brute force)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import runfolder
from reports import ablation_table, bootstrap_mean_ci, load_run, pareto_front, welch_p_value
from reports._load import level_label
from reports._stats import bootstrap_means, failure_messages, failed_trials, status_counts, t_mean_ci, top_trials


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.8, 0.02, 30)
    first, again = bootstrap_mean_ci(values), bootstrap_mean_ci(values)
    assert first == again
    assert first[0] < values.mean() < first[1]
    assert bootstrap_mean_ci(values, seed=5) != first


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    values = np.random.default_rng(2).normal(0.8, 0.02, 40)
    ours = bootstrap_mean_ci(values)
    theirs = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=20000,
                             random_state=np.random.default_rng(0)).confidence_interval
    # Two Monte-Carlo estimates of one interval: equal to within a fraction of its width.
    width = theirs.high - theirs.low
    assert abs(ours[0] - theirs.low) < 0.1 * width
    assert abs(ours[1] - theirs.high) < 0.1 * width


def test_bootstrap_of_a_large_group_is_chunked_but_complete():
    values = np.random.default_rng(3).normal(0.5, 0.1, 9000)
    means = bootstrap_means(values, seed="big")
    assert means.shape == (2000,) and np.isfinite(means).all()
    assert abs(means.std() - values.std() / np.sqrt(values.size)) < 0.2 * values.std() / np.sqrt(values.size)


def test_t_mean_ci_equals_scipy():
    values = np.random.default_rng(6).normal(0.8, 0.02, 7)
    expected = stats.t.interval(0.95, 6, loc=values.mean(), scale=stats.sem(values))
    assert t_mean_ci(values) == pytest.approx(expected, rel=1e-12)
    assert all(np.isnan(bound) for bound in t_mean_ci(values[:1]))


def test_bootstrap_ci_needs_two_values():
    assert all(np.isnan(bound) for bound in bootstrap_mean_ci(np.array([0.5])))


def test_welch_p_value_equals_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.8, 0.01, 6), rng.normal(0.81, 0.03, 9)
    assert welch_p_value(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    assert np.isnan(welch_p_value(a[:1], b))


def _independent_groups(results: pd.DataFrame, factor: str, metric: str) -> dict[str, np.ndarray]:
    scored = results[(results["status"] == "complete") & results[metric].notna()]
    return {level_label(level): group[metric].to_numpy() for level, group in scored.groupby(f"factor.{factor}")}


@pytest.mark.parametrize("factor,reference", [("shortcut", "A"), ("depth", "20")])
@pytest.mark.parametrize("metric", ["test_acc", "val_acc_best"])
def test_ablation_matches_independent_computation(grid_run, factor, reference, metric):
    results = pd.read_parquet(grid_run / "results.parquet")
    table = ablation_table(load_run(grid_run))
    rows = table[(table["factor"] == factor) & (table["metric"] == metric)].set_index("level")
    groups = _independent_groups(results, factor, metric)
    assert set(rows.index) == set(groups)
    for level, values in groups.items():
        row = rows.loc[level]
        assert row["n"] == len(values)
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        if level == reference:
            assert row["verdict"] == "reference" and np.isnan(row["p_value"])
            continue
        # Pooled over the other factor, trials of one seed differ in more than this factor: Welch, unpaired.
        expected = stats.ttest_ind(values, groups[reference], equal_var=False)
        interval = expected.confidence_interval(0.95)
        assert row["test"] == "Welch t"
        assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert row["diff"] == pytest.approx(values.mean() - groups[reference].mean(), abs=1e-12)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((interval.low, interval.high), abs=1e-12)
    # Holm over the comparisons of one factor and metric (statsmodels multipletests).
    from statsmodels.stats.multitest import multipletests

    compared = rows[~rows["is_reference"]]
    assert compared["p_adjusted"].to_numpy() == pytest.approx(
        multipletests(compared["p_value"].to_numpy(), method="holm")[1], rel=1e-12)


def test_ablation_verdicts_follow_the_holm_p_value(grid_run):
    table = ablation_table(load_run(grid_run))
    compared = table[~table["is_reference"]]
    for row in compared.itertuples():
        decided = row.p_adjusted < 0.05
        assert row.verdict == ("higher" if decided and row.diff > 0 else "lower" if decided else "within noise")
        # The CI is the same test's: a verdict never sits beside a CI that contains 0.
        if decided:
            assert not row.diff_ci_low <= 0 <= row.diff_ci_high
    # The synthetic effects: B is 4 points above A, depth 56 is 3 above 20; both far beyond the noise.
    verdict = table.set_index(["factor", "level", "metric"])["verdict"]
    assert verdict[("shortcut", "B", "test_acc")] == "higher"
    assert verdict[("depth", "56", "val_acc_best")] == "higher"


def test_ablation_counts_only_complete_trials_with_accuracy(grid_run):
    results = pd.read_parquet(grid_run / "results.parquet")
    table = ablation_table(load_run(grid_run))
    totals = table[(table["factor"] == "shortcut") & (table["metric"] == "test_acc")]["n"].sum()
    assert totals == ((results["status"] == "complete") & results["test_acc"].notna()).sum()
    assert totals < len(results)  # the fixture's failed and pruned trials are left out


def test_one_trial_gives_n_too_small_or_no_trials(one_trial_run):
    table = ablation_table(load_run(one_trial_run))
    reference = table[(table["level"] == "A") & (table["metric"] == "test_acc")].iloc[0]
    assert reference["n"] == 1 and np.isnan(reference["std"]) and np.isnan(reference["ci_low"])
    assert set(table[~table["is_reference"]]["verdict"]) == {"no trials"}


def test_level_with_one_trial_is_n_too_small(grid_run):
    run = load_run(grid_run)
    complete_c = run.results[(run.results["factor.shortcut"] == "C") & (run.results["status"] == "complete")]
    keep = (run.results["factor.shortcut"] != "C") | (run.results["trial_id"] == complete_c["trial_id"].iloc[0])
    run.results = run.results[keep | (run.results["status"] != "complete")].reset_index(drop=True)
    table = ablation_table(run)
    row = table[(table["level"] == "C") & (table["metric"] == "test_acc")].iloc[0]
    assert row["n"] == 1 and row["verdict"] == "n too small" and np.isnan(row["p_value"])


def test_pareto_front_on_a_hand_made_example():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, np.nan])
    accuracy = np.array([0.5, 0.7, 0.6, 0.65, 0.9, 0.99])
    assert pareto_front(cost, accuracy).tolist() == [True, True, False, False, True, False]


def test_pareto_front_equals_brute_force():
    rng = np.random.default_rng(5)
    cost, accuracy = rng.integers(1, 30, 300).astype(float), rng.random(300).round(2)
    dominated = [any((cost[j] <= cost[i] and accuracy[j] >= accuracy[i]) and (cost[j] < cost[i] or accuracy[j] > accuracy[i])
                     for j in range(300)) for i in range(300)]
    front = pareto_front(cost, accuracy)
    # Exact duplicates keep one representative; every kept point is undominated.
    assert not any(front & np.array(dominated))
    undominated_points = {(cost[i], accuracy[i]) for i in range(300) if not dominated[i]}
    assert {(cost[i], accuracy[i]) for i in np.flatnonzero(front)} == undominated_points


def test_status_counts_and_failed_tables(grid_run):
    run = load_run(grid_run)
    counts = status_counts(run.results).set_index("status")["trials"]
    assert counts.to_dict() == {"complete": 16, "failed": 1, "pruned": 1, "total": 18}
    failed = failed_trials(run)
    assert list(failed["status"]) == ["failed", "pruned"]
    assert failure_messages(failed)["trials"].sum() == 2


def test_top_trials_rank_by_the_objective(grid_run):
    run = load_run(grid_run)
    top = top_trials(run, 3)
    results = pd.read_parquet(grid_run / "results.parquet")
    expected = runfolder.ranked_frame(results)["trial_id"].head(3).tolist()
    assert top["trial_id"].tolist() == expected
    assert top["rank"].tolist() == [0, 1, 2]
