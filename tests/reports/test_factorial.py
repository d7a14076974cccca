"""Factorial statistics: planted effects are found and nothing else; every number matches scipy/statsmodels.

The planted runs share one noise model: accuracy = 0.80 + a per-seed offset
(sd 2 pp, the same for every cell: a seed fixes data order and augmentation)
+ the planted effect + independent noise (sd 0.2 pp). Pairing by seed removes
the seed offset, so a paired test sees the small noise and an unpaired one
the large: exactly why the report pairs where it can.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports import build_report, load_run
from reports._edf import complexity_weights
from reports._factorial import factorial_tables
from reports._load import level_label
from reports._stats import ablation_table, compare, holm, seed_pairs
import synthetic_run as synthetic

SEEDS = list(range(6))
SHORTCUTS = ["A", "B", "none"]
DEPTHS = [20, 56]
SEED_SD, NOISE_SD = 0.02, 0.002
# "none" loses 4 pp at depth 56 only: a simple effect in one cell and a shortcut x depth interaction.
INTERACTION_ONLY_AT_56 = {("none", 56): -0.04}
# B gains 3 pp at both depths: a main effect and no interaction.
MAIN_EFFECT_OF_B = {("B", 20): 0.03, ("B", 56): 0.03}

SIMPLE_EFFECT_CONTRACT = ["factor", "level", "reference", "within", "metric", "n", "n_ref", "paired", "diff",
                          "diff_ci_low", "diff_ci_high", "p_value", "p_adjusted", "verdict"]
INTERACTION_CONTRACT = ["factor_a", "factor_b", "metric", "statistic", "p_value", "effect_size", "verdict"]
CELL_MEANS_CONTRACT = ["factor.shortcut", "factor.depth", "metric", "n", "mean", "sd", "ci_low", "ci_high"]


def _planted_run(root, name: str, planted: dict, rng_seed: int = 11, drop: int | None = None):
    trials = synthetic.grid_trials({"shortcut": SHORTCUTS, "depth": DEPTHS}, SEEDS)
    if drop is not None:
        trials[drop]["status"] = "failed"
    results, curves = synthetic.build_results(trials, epochs=2, seed=rng_seed)
    rng = np.random.default_rng(rng_seed)
    seed_offset = dict(zip(SEEDS, rng.normal(0.0, SEED_SD, len(SEEDS))))
    effect = [planted.get((shortcut, int(depth)), 0.0)
              for shortcut, depth in zip(results["factor.shortcut"], results["factor.depth"])]
    accuracy = 0.80 + results["seed"].map(seed_offset).to_numpy() + np.array(effect) + rng.normal(0, NOISE_SD, len(results))
    complete = results["status"] == "complete"
    results["test_acc"] = np.where(complete, accuracy, np.nan)
    results["val_acc_best"] = np.where(complete, accuracy + rng.normal(0, NOISE_SD, len(results)), np.nan)
    factors = {"shortcut": {"levels": SHORTCUTS, "reference": "A"}, "depth": {"levels": DEPTHS, "reference": 20}}
    info = synthetic.run_info(name, factors, trials=len(trials), epochs=2, seeds=SEEDS)
    return synthetic.write_run(root / name, results, info, curves)


@pytest.fixture(scope="module")
def interaction_run(tmp_path_factory):
    return _planted_run(tmp_path_factory.mktemp("factorial") / "runs", "interaction_at_56", INTERACTION_ONLY_AT_56)


@pytest.fixture(scope="module")
def main_effect_run(tmp_path_factory):
    return _planted_run(tmp_path_factory.mktemp("factorial") / "runs", "main_effect_of_b", MAIN_EFFECT_OF_B)


@pytest.fixture(scope="module")
def interaction_page(interaction_run) -> str:
    return build_report(interaction_run).read_text(encoding="utf-8")


def _decided(table: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    decided = table[table["verdict"].isin(["higher", "lower"])]
    return {(row.factor, row.level, row.within, row.verdict) for row in decided.itertuples()}


# ---------------------------------------------------------------- planted effects


@pytest.mark.parametrize("metric", ["test_acc", "val_acc_best"])
def test_interaction_in_one_cell_is_found_and_nothing_else(interaction_run, metric):
    factorial = factorial_tables(load_run(interaction_run))
    simple = factorial.simple_effects[factorial.simple_effects["metric"] == metric]
    # The planted cell differs from its two neighbours, and from nothing else.
    assert _decided(simple) == {("shortcut", "none", "depth=56", "lower"), ("depth", "56", "shortcut=none", "lower")}
    assert len(simple) == 7  # 2 shortcut levels x 2 depths + 1 depth level x 3 shortcuts
    interaction = factorial.interactions.set_index(["factor_a", "factor_b", "metric"]).loc[("shortcut", "depth", metric)]
    assert interaction["verdict"] == "interaction" and interaction["p_value"] < 1e-6


@pytest.mark.parametrize("metric", ["test_acc", "val_acc_best"])
def test_main_effect_is_found_at_every_depth_without_an_interaction(main_effect_run, metric):
    factorial = factorial_tables(load_run(main_effect_run))
    simple = factorial.simple_effects[factorial.simple_effects["metric"] == metric]
    assert _decided(simple) == {("shortcut", "B", "depth=20", "higher"), ("shortcut", "B", "depth=56", "higher")}
    interaction = factorial.interactions.set_index(["factor_a", "factor_b", "metric"]).loc[("shortcut", "depth", metric)]
    assert interaction["verdict"] == "within noise"


def test_pairing_by_seed_is_what_finds_the_effect(interaction_run):
    """With a 2 pp seed offset and 0.2 pp noise, Welch cannot see the 4 pp cell effect that the paired test sees."""
    results = pd.read_parquet(interaction_run / "results.parquet")
    cell = lambda shortcut: results[(results["factor.shortcut"] == shortcut) & (results["factor.depth"] == 56)]  # noqa: E731
    none, reference = cell("none").sort_values("seed"), cell("A").sort_values("seed")
    paired = compare(none["test_acc"].to_numpy(), reference["test_acc"].to_numpy(), none["seed"].to_numpy(),
                     reference["seed"].to_numpy())
    unpaired = compare(none["test_acc"].to_numpy(), reference["test_acc"].to_numpy())
    assert paired.test == "paired t" and unpaired.test == "Welch t"
    assert paired.p_value < 1e-6 < unpaired.p_value
    assert paired.diff == pytest.approx(unpaired.diff)  # equal seeds: the same difference of means


# ---------------------------------------------------------------- against scipy and statsmodels


def _groups(results: pd.DataFrame, metric: str, factor: str, level: str, within: dict) -> pd.DataFrame:
    keep = (results["status"] == "complete") & results[metric].notna()
    keep &= results[f"factor.{factor}"].map(level_label) == level
    for name, value in within.items():
        keep &= results[f"factor.{name}"].map(level_label) == value
    return results[keep]


def _parse_within(text: str) -> dict:
    return dict(part.split("=") for part in text.split("; ")) if text else {}


@pytest.mark.parametrize("run_fixture", ["interaction_run", "main_effect_run"])
def test_simple_effects_match_scipy_and_statsmodels(run_fixture, request):
    run_dir = request.getfixturevalue(run_fixture)
    results = pd.read_parquet(run_dir / "results.parquet")
    simple = factorial_tables(load_run(run_dir)).simple_effects
    for (factor, metric), family in simple.groupby(["factor", "metric"]):
        p_values = []
        for row in family.itertuples():
            within = _parse_within(row.within)
            level = _groups(results, metric, factor, row.level, within).set_index("seed")[metric]
            reference = _groups(results, metric, factor, row.reference, within).set_index("seed")[metric]
            shared = sorted(set(level.index) & set(reference.index))
            assert row.paired and row.test == "paired t" and row.n == row.n_ref == len(shared)
            expected = stats.ttest_rel(level[shared], reference[shared])
            interval = expected.confidence_interval(0.95)
            differences = level[shared].to_numpy() - reference[shared].to_numpy()
            assert row.p_value == pytest.approx(expected.pvalue, rel=1e-9)
            assert row.diff == pytest.approx(differences.mean(), abs=1e-12)
            assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((interval.low, interval.high), abs=1e-12)
            assert row.effect_size == pytest.approx(differences.mean() / differences.std(ddof=1), rel=1e-9)
            p_values.append(expected.pvalue)
        from statsmodels.stats.multitest import multipletests

        assert family["p_adjusted"].to_numpy() == pytest.approx(multipletests(p_values, method="holm")[1], rel=1e-9)


@pytest.mark.parametrize("metric", ["test_acc", "val_acc_best"])
def test_interaction_matches_anova_lm_and_the_balanced_formula(interaction_run, metric):
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    results = pd.read_parquet(interaction_run / "results.parquet")
    scored = results[(results["status"] == "complete")]
    frame = pd.DataFrame({"y": scored[metric], "s": scored["factor.shortcut"], "d": scored["factor.depth"].astype(str),
                          "seed": scored["seed"].astype(str)})
    expected = anova_lm(ols("y ~ C(s) * C(d) + C(seed)", frame).fit(), typ=2)
    row = factorial_tables(load_run(interaction_run)).interactions.set_index("metric").loc[metric]
    assert row["test"] == "two-way ANOVA F (Type II), seeds as blocks"
    assert row["statistic"] == pytest.approx(expected.loc["C(s):C(d)", "F"], rel=1e-9)
    assert row["p_value"] == pytest.approx(expected.loc["C(s):C(d)", "PR(>F)"], rel=1e-9)
    # Balanced blocks (every seed in every cell): SS(AB) = r * sum (cell - row - column + grand)^2 over cells,
    # SS(E) = sum (y - cell - seed + grand)^2, with (cells - 1)(seeds - 1) degrees of freedom.
    mean_by = lambda *keys: frame.groupby(list(keys))["y"].transform("mean")  # noqa: E731
    grand = frame["y"].mean()
    ss_interaction = ((mean_by("s", "d") - mean_by("s") - mean_by("d") + grand) ** 2).sum()
    ss_error = ((frame["y"] - mean_by("s", "d") - mean_by("seed") + grand) ** 2).sum()
    cells = len(SHORTCUTS) * len(DEPTHS)
    df_interaction, df_error = (len(SHORTCUTS) - 1) * (len(DEPTHS) - 1), (cells - 1) * (len(SEEDS) - 1)
    assert row["statistic"] == pytest.approx((ss_interaction / df_interaction) / (ss_error / df_error), rel=1e-9)
    assert row["p_value"] == pytest.approx(stats.f.sf(row["statistic"], df_interaction, df_error), rel=1e-9)
    assert row["effect_size"] == pytest.approx(ss_interaction / (ss_interaction + ss_error), rel=1e-9)
    assert (row["df_num"], row["df_den"]) == (df_interaction, df_error)


def test_interaction_without_shared_seeds_is_the_plain_two_way_anova(interaction_run, copy_run):
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    run_dir = copy_run(interaction_run)
    results = pd.read_parquet(run_dir / "results.parquet")
    results["seed"] = np.arange(len(results))  # every trial its own seed: nothing to block or pair
    results.to_parquet(run_dir / "results.parquet")
    scored = results[results["status"] == "complete"]
    frame = pd.DataFrame({"y": scored["test_acc"], "s": scored["factor.shortcut"], "d": scored["factor.depth"].astype(str)})
    expected = anova_lm(ols("y ~ C(s) * C(d)", frame).fit(), typ=2)
    factorial = factorial_tables(load_run(run_dir))
    row = factorial.interactions.set_index("metric").loc["test_acc"]
    assert row["test"] == "two-way ANOVA F (Type II)"
    assert row["statistic"] == pytest.approx(expected.loc["C(s):C(d)", "F"], rel=1e-9)
    assert row["p_value"] == pytest.approx(expected.loc["C(s):C(d)", "PR(>F)"], rel=1e-9)
    assert not factorial.simple_effects["paired"].any()


def test_cell_means_match_pandas_and_the_t_interval(interaction_run):
    results = pd.read_parquet(interaction_run / "results.parquet")
    cells = factorial_tables(load_run(interaction_run)).cell_means
    assert list(cells.columns) == CELL_MEANS_CONTRACT
    assert len(cells) == 2 * len(SHORTCUTS) * len(DEPTHS)
    for row in cells.to_dict("records"):
        values = _groups(results, row["metric"], "shortcut", row["factor.shortcut"],
                         {"depth": row["factor.depth"]})[row["metric"]].to_numpy()
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert row["n"] == len(values)
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_compare_matches_scipy_on_fixed_data():
    level = np.array([0.812, 0.805, 0.821, 0.799, 0.816])
    reference = np.array([0.801, 0.798, 0.809, 0.795, 0.803])
    seeds = np.array([3, 1, 4, 0, 2])
    paired = compare(level, reference, seeds, seeds)
    expected = stats.ttest_rel(level, reference)
    differences = level - reference
    t975 = stats.t.ppf(0.975, len(level) - 1)
    half = t975 * differences.std(ddof=1) / np.sqrt(len(level))
    assert paired.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((differences.mean() - half, differences.mean() + half), rel=1e-9)

    welch = compare(level, reference[:4])
    expected = stats.ttest_ind(level, reference[:4], equal_var=False)
    # Welch-Satterthwaite degrees of freedom, by hand.
    v1, v2 = level.var(ddof=1) / 5, reference[:4].var(ddof=1) / 4
    df = (v1 + v2) ** 2 / (v1 ** 2 / 4 + v2 ** 2 / 3)
    diff = level.mean() - reference[:4].mean()
    half = stats.t.ppf(0.975, df) * np.sqrt(v1 + v2)
    assert welch.test == "Welch t" and (welch.n, welch.n_ref) == (5, 4)
    assert welch.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert welch.p_value == pytest.approx(2 * stats.t.sf(abs(diff / np.sqrt(v1 + v2)), df), rel=1e-9)
    assert (welch.ci_low, welch.ci_high) == pytest.approx((diff - half, diff + half), rel=1e-9)
    pooled = np.sqrt((4 * level.var(ddof=1) + 3 * reference[:4].var(ddof=1)) / 7)
    assert welch.effect_size == pytest.approx(diff / pooled, rel=1e-12)


@pytest.mark.parametrize("p_values", [
    [0.01, 0.04, 0.03, 0.005, np.nan],
    [0.2, 0.2, 0.01, 0.6, 0.9, 0.011, 0.04],  # ties, and adjusted values that reach 1
    [0.049],
    [np.nan, np.nan],
])
def test_holm_matches_statsmodels_and_keeps_nan(p_values):
    from statsmodels.stats.multitest import multipletests

    p_values = np.array(p_values, dtype=float)
    adjusted = holm(p_values)
    finite = np.isfinite(p_values)
    assert np.isnan(adjusted[~finite]).all()
    if finite.any():
        assert adjusted[finite] == pytest.approx(multipletests(p_values[finite], method="holm")[1], rel=1e-12)


def test_seed_pairs_need_unique_shared_seeds():
    values, reference = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5, 3.5])
    assert seed_pairs(values, [0, 1, 2], reference, [2, 1, 0])[1].tolist() == [3.5, 2.5, 1.5]
    assert seed_pairs(values, [0, 0, 1], reference, [0, 1, 2]) is None  # a seed twice in one group
    assert seed_pairs(values, [0, 1, 2], reference, [0, 5, 6]) is None  # one shared seed is no test


# ---------------------------------------------------------------- one decision rule


def _assert_verdicts_follow_their_p(table: pd.DataFrame) -> None:
    for row in table.itertuples():
        if row.verdict not in ("higher", "lower", "within noise"):
            continue
        decided = row.p_adjusted < 0.05
        assert (row.verdict != "within noise") == decided, row
        if decided:
            assert row.verdict == ("higher" if row.diff > 0 else "lower")
            # The CI is the test's own: it sits on the verdict's side of 0.
            assert (row.diff_ci_low > 0) if row.verdict == "higher" else (row.diff_ci_high < 0)
        assert (row.diff_ci_low > 0 or row.diff_ci_high < 0) == (row.p_value < 0.05)
        assert row.diff_ci_low <= row.diff <= row.diff_ci_high
        assert row.p_adjusted >= row.p_value


@pytest.mark.parametrize("run_fixture", ["interaction_run", "main_effect_run", "grid_run"])
def test_every_verdict_agrees_with_its_own_p_value(run_fixture, request):
    run = load_run(request.getfixturevalue(run_fixture))
    factorial = factorial_tables(run)
    _assert_verdicts_follow_their_p(factorial.simple_effects)
    _assert_verdicts_follow_their_p(ablation_table(run))
    interactions = factorial.interactions
    assert ((interactions["verdict"] == "interaction") == (interactions["p_value"] < 0.05)).all()


def test_pooled_comparisons_are_unpaired_and_a_one_factor_study_is_paired(interaction_run, tmp_path):
    pooled = ablation_table(load_run(interaction_run))
    assert set(pooled.loc[~pooled["is_reference"], "test"]) == {"Welch t"}
    trials = synthetic.grid_trials({"shortcut": SHORTCUTS}, SEEDS)
    results, curves = synthetic.build_results(trials, epochs=2, effects={"shortcut": {"B": 0.03}}, seed=2)
    info = synthetic.run_info("one_factor", {"shortcut": {"levels": SHORTCUTS, "reference": "A"}}, seeds=SEEDS)
    run = load_run(synthetic.write_run(tmp_path / "runs" / "one_factor", results, info, curves))
    alone = ablation_table(run)
    compared = alone[~alone["is_reference"]]
    assert set(compared["test"]) == {"paired t"}
    # With one factor, its simple effects are its pooled comparisons: the same test, the same numbers.
    simple = factorial_tables(run).simple_effects.set_index(["level", "metric"])
    for row in compared.itertuples():
        assert simple.loc[(row.level, row.metric), "within"] == ""
        assert simple.loc[(row.level, row.metric), "p_adjusted"] == pytest.approx(row.p_adjusted, rel=1e-12)
        assert simple.loc[(row.level, row.metric), "verdict"] == row.verdict


def test_simple_effects_that_cannot_be_tested_are_counted_in_the_notes(tmp_path):
    """One complete trial of B at depth 56: B vs A there and 56 vs 20 within B are left out, and the notes count them."""
    trials = synthetic.grid_trials({"shortcut": SHORTCUTS, "depth": DEPTHS}, SEEDS)
    for trial in trials:
        if trial["shortcut"] == "B" and int(trial["depth"]) == 56 and trial["seed"] > 0:
            trial["status"] = "failed"
    results, curves = synthetic.build_results(trials, epochs=2, seed=3)
    factors = {"shortcut": {"levels": SHORTCUTS, "reference": "A"}, "depth": {"levels": DEPTHS, "reference": 20}}
    run_dir = synthetic.write_run(tmp_path / "runs" / "thin_cell", results,
                                  synthetic.run_info("thin_cell", factors, seeds=SEEDS), curves)
    factorial = factorial_tables(load_run(run_dir))
    assert [note.split(":")[0] for note in factorial.notes if "are left out" in note] == [
        "1 simple effect(s) of shortcut are left out", "1 simple effect(s) of depth are left out"]
    simple = factorial.simple_effects
    assert simple[(simple["level"] == "B") & (simple["within"] == "depth=56")].empty
    assert simple[(simple["level"] == "56") & (simple["within"] == "shortcut=B")].empty
    assert len(simple[(simple["level"] == "none") & (simple["within"] == "depth=56")]) == 2  # both accuracies


def test_a_failed_trial_drops_only_its_pair(tmp_path):
    run_dir = _planted_run(tmp_path / "runs", "one_failed", INTERACTION_ONLY_AT_56, drop=0)  # A, depth 20, seed 0
    simple = factorial_tables(load_run(run_dir)).simple_effects
    row = simple[(simple["level"] == "B") & (simple["within"] == "depth=20") & (simple["metric"] == "test_acc")].iloc[0]
    assert row["paired"] and row["n"] == row["n_ref"] == len(SEEDS) - 1


def test_a_varying_searched_factor_forbids_pairing(tmp_path):
    trials = [{**trial, "lr": 0.1 if trial["seed"] % 2 else 0.05}
              for trial in synthetic.grid_trials({"shortcut": ["A", "B"], "depth": DEPTHS}, SEEDS)]
    results, curves = synthetic.build_results(trials, epochs=2, seed=4)
    factors = {"shortcut": {"levels": ["A", "B"], "reference": "A"}, "depth": {"levels": DEPTHS, "reference": 20},
               "lr": {"levels": None, "reference": None}}
    run_dir = synthetic.write_run(tmp_path / "runs" / "searched_lr", results,
                                  synthetic.run_info("searched_lr", factors, seeds=SEEDS), curves)
    simple = factorial_tables(load_run(run_dir)).simple_effects
    assert len(simple) and not simple["paired"].any() and set(simple["test"]) == {"Welch t"}


def test_a_conditional_factor_has_no_null_level_to_test(tmp_path):
    """bottleneck_ratio exists only for bottleneck blocks: null for basic ones, as the runner writes it."""
    trials = [{"block": "basic", "bottleneck_ratio": None, "seed": seed} for seed in SEEDS]
    trials += [{"block": "bottleneck", "bottleneck_ratio": ratio, "seed": seed} for ratio in (0.25, 0.5) for seed in SEEDS]
    results, curves = synthetic.build_results(trials, epochs=2, effects={"bottleneck_ratio": {0.5: 0.03}}, seed=5)
    factors = {"block": {"levels": ["basic", "bottleneck"], "reference": "basic"},
               "bottleneck_ratio": {"levels": [0.25, 0.5], "reference": 0.25}}
    run_dir = synthetic.write_run(tmp_path / "runs" / "conditional", results,
                                  synthetic.run_info("conditional", factors, seeds=SEEDS), curves)
    run = load_run(run_dir)
    factorial = factorial_tables(run)
    simple = factorial.simple_effects
    assert "(none)" not in set(simple["level"])
    ratio = simple[simple["factor"] == "bottleneck_ratio"]
    assert set(ratio["within"]) == {"block=bottleneck"} and set(ratio["level"]) == {"0.5"}
    assert set(factorial.interactions["verdict"]) == {"not testable"}
    assert any("bottleneck_ratio is conditional" in note for note in factorial.notes)
    pooled = ablation_table(run)
    # Pooled too: the basic-block trials belong to no bottleneck_ratio level, and no table shows a null level.
    assert set(pooled.loc[pooled["factor"] == "bottleneck_ratio", "level"]) == {"0.25", "0.5"}
    assert (pooled.loc[pooled["factor"] == "bottleneck_ratio", "n"] == len(SEEDS)).all()
    page = build_report(run_dir).read_text(encoding="utf-8")
    assert "bottleneck_ratio is conditional" in page and "(none)" not in page


# ---------------------------------------------------------------- tables and page


def test_csv_contracts(interaction_run, interaction_page):
    tables = interaction_run / "report_tables"
    simple = pd.read_csv(tables / "simple_effects.csv", keep_default_na=False, na_values=[""])
    assert list(simple.columns[:len(SIMPLE_EFFECT_CONTRACT)]) == SIMPLE_EFFECT_CONTRACT
    assert set(simple["verdict"]) <= {"higher", "lower", "within noise"}
    assert simple["within"].str.fullmatch(r"(\w+=[^;]+)(; \w+=[^;]+)*").all()
    assert simple["diff"].abs().max() < 1  # fractions, not percentage points
    interactions = pd.read_csv(tables / "interactions.csv")
    assert list(interactions.columns[:len(INTERACTION_CONTRACT)]) == INTERACTION_CONTRACT
    assert list(pd.read_csv(tables / "cell_means.csv").columns) == CELL_MEANS_CONTRACT
    power = pd.read_csv(tables / "power.csv", keep_default_na=False, na_values=[""])
    assert list(power.columns[:11]) == ["factor", "level", "reference", "within", "metric", "n", "paired", "sd_diff",
                                        "mde", "target_effect", "seeds_needed"]
    assert len(power) == len(simple)


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, flags=re.S)
    assert match, anchor
    return match.group(1)


def test_page_warns_of_the_interaction_beside_the_pooled_comparison(interaction_page):
    ablation = _section(interaction_page, "ablation")
    assert "INTERACTION: the effect of shortcut on test accuracy depends on depth" in ablation
    assert "pooled over depth" in ablation
    assert "Interaction: shortcut × depth" in interaction_page  # in the answer at a glance


def test_page_shows_simple_effects_and_the_seed_plan(interaction_run, interaction_page):
    simple = pd.read_csv(interaction_run / "report_tables" / "simple_effects.csv", keep_default_na=False,
                         float_precision="round_trip")
    section = _section(interaction_page, "simple-effects")
    for row in simple[simple["metric"] == "test_acc"].itertuples():
        key = f"simple.{row.factor}.{row.level}.{row.within}.{row.metric}"
        assert f'data-key="{key}.verdict">{row.verdict}<' in section
        assert f'data-key="{key}.diff" data-value="{float(row.diff)!r}"' in section
    seeds = _section(interaction_page, "seeds")
    assert "shortcut=B vs A at depth=56 is within noise" in seeds
    assert "Target effect: 1 pp, from the default" in seeds


def test_complexity_weights_give_every_level_the_same_distribution():
    rng = np.random.default_rng(0)
    cost = np.concatenate([rng.uniform(1e6, 1e7, 200), rng.uniform(5e6, 2e7, 200), [np.nan, -1.0]])
    level = np.array(["small"] * 200 + ["large"] * 200 + ["small", "large"])
    weights = complexity_weights(cost, level)
    assert weights[-2:].tolist() == [0.0, 0.0]  # no cost, no weight
    totals = pd.Series(weights).groupby(level).sum()
    assert totals.to_numpy() == pytest.approx([1.0, 1.0])
    # Equal mass per shared bin (bins: 10 equal widths of the log-cost range, as reports._edf cuts them).
    log_cost = np.log(cost[:400])
    edges = np.linspace(log_cost.min(), log_cost.max(), 11)
    bins = np.searchsorted(edges[1:-1], log_cost, side="right")
    masses = pd.DataFrame({"weight": weights[:400], "level": level[:400], "bin": bins}).pivot_table(
        index="bin", columns="level", values="weight", aggfunc="sum")
    shared = masses[(masses > 0).all(axis=1)]
    assert len(shared) >= 3
    assert shared["small"].to_numpy() == pytest.approx(shared["large"].to_numpy(), abs=1e-12)
    assert shared.to_numpy() == pytest.approx(1.0 / len(shared))
    # The cheapest small models have no large model of their cost: weight 0.
    assert weights[np.argmin(cost[:200])] == 0.0
    # Two complexities, one per level (ResNet-20 vs ResNet-56): no shared bin, so nothing to normalise.
    assert not complexity_weights([4e7, 4e7, 1.2e8, 1.2e8], ["20", "20", "56", "56"]).any()
    # One complexity for all: a single bin, and the plain EDF's weights 1/n.
    assert complexity_weights([4e7] * 4, ["a", "a", "a", "b"]).tolist() == pytest.approx([1 / 3] * 3 + [1.0])


def test_page_draws_the_normalised_edf_and_says_what_it_cannot(interaction_page):
    section = _section(interaction_page, "error-edf")
    assert 'alt="complexity-normalised error EDF by shortcut"' in section
    assert "Not normalised: depth" in section  # ResNet-20 and ResNet-56 share no range of MACs


def test_run_json_resources_give_device_hours(interaction_run, copy_run):
    run_dir = copy_run(interaction_run)
    info = json.loads((run_dir / "run.json").read_text())
    info["budget"]["resources_per_trial"] = {"cpus": 2, "gpus": 0.25}
    info["device_hours_unit"] = "GPU-hours"
    (run_dir / "run.json").write_text(json.dumps(info))
    from reports._power import seed_plan

    run = load_run(run_dir)
    plan = seed_plan(run)
    results = run.results.set_index("trial_id")
    row = plan.table.iloc[0]
    wall = results.loc[results["status"] == "complete", "wall_s"].mean()  # the synthetic wall time is constant
    assert plan.device_unit == "GPU-hours"
    assert row["device_hours"] == pytest.approx(row["seeds_needed"] * 2 * wall * 0.25 / 3600)


def test_where_factors_interact_the_answer_leads_with_the_simple_effects(interaction_page, main_effect_run):
    """The at-a-glance box: an interaction, then the simple effects, then the pooled lines, each marked."""
    def glance(page: str) -> list[str]:
        box = page.split('<div class="findings"><b>At a glance</b><ul>', 1)[1].split("</ul></div>", 1)[0]
        return [re.sub(r"<[^>]+>", "", item) for item in box.split("<li>")[1:]]

    lines = glance(interaction_page)
    first_interaction = next(i for i, line in enumerate(lines) if line.startswith("Interaction: "))
    pooled = [i for i, line in enumerate(lines) if "(pooled over " in line]
    assert pooled and min(pooled) > first_interaction
    assert all(lines[i].startswith("Pooled across an interaction (read the simple effects above): ") for i in pooled)
    # Without an interaction the pooled lines come first and carry no such mark.
    plain = glance(build_report(main_effect_run).read_text(encoding="utf-8"))
    assert not any(line.startswith("Interaction: ") or line.startswith("Pooled across") for line in plain)


def test_cells_are_the_sorted_distinct_rows_of_the_codes():
    """The ANOVA's cells from one integer per trial are np.unique's rows, with and without a missing code."""
    from reports._factorial import _cells

    rng = np.random.default_rng(0)
    codes = [rng.integers(0, size, 500) for size in (3, 4, 2)]
    for case in (codes, [*codes[:2], np.where(codes[2] == 0, -1, codes[2])]):
        expected, inverse = np.unique(np.stack(case, axis=1), axis=0, return_inverse=True)
        cells, cell = _cells(case, [3, 4, 2])
        assert np.array_equal(cells, expected) and np.array_equal(cell, inverse.reshape(-1))


@pytest.mark.parametrize("blocked", [True, False])
def test_interaction_anova_from_cell_sums_matches_anova_lm_on_an_unbalanced_design(blocked):
    # A covariate, unequal cells, a block missing from some cells: the cell-sum ANOVA that replaced the design
    # matrix (issue 25: 10^6 trials over 10^4 seeds) must still be statsmodels' Type II table.
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    from reports._factorial import interaction_anova

    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({"a": rng.choice(["x", "y", "z"], n), "b": rng.choice(["20", "32", "44", "56"], n, p=[.4, .3, .2, .1]),
                          "c": rng.choice(["p", "q"], n), "seed": rng.integers(0, 12, n).astype(str)})
    frame["y"] = 0.8 + 0.01 * (frame["a"] == "y") * (frame["b"] == "56") + rng.normal(0, 0.01, n)
    formula = "y ~ C(a) * C(b) + C(c)" + (" + C(seed)" if blocked else "")
    expected = anova_lm(ols(formula, frame).fit(), typ=2)
    mine = interaction_anova(frame["y"].to_numpy(), frame["a"].to_numpy(), frame["b"].to_numpy(), [frame["c"].to_numpy()],
                             frame["seed"].to_numpy() if blocked else None)
    assert mine.statistic == pytest.approx(expected.loc["C(a):C(b)", "F"], rel=1e-9)
    assert mine.p_value == pytest.approx(expected.loc["C(a):C(b)", "PR(>F)"], rel=1e-9)
    assert mine.ss_residual == pytest.approx(expected.loc["Residual", "sum_sq"], rel=1e-9)
    assert (mine.df_num, mine.df_resid) == (expected.loc["C(a):C(b)", "df"], expected.loc["Residual", "df"])
