"""Seeds needed and the smallest detectable difference, against the textbook formula and the noncentral t."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from reports import ReportError, build_report, load_run
from reports import _power
from reports._power import (DEFAULT_TARGET_EFFECT, MAX_SEEDS, minimum_detectable_effect, seed_plan, seeds_needed,
                            target_effect)
from space import StudyError, study_from_dict

ALPHA, POWER = 0.05, 0.8
Z_ALPHA, Z_POWER = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)


def _exact_power(effect_size: float, n: int, paired: bool) -> float:
    """Two-sided t-test power by the noncentral t (scipy), independent of statsmodels."""
    df, noncentrality = (n - 1, effect_size * math.sqrt(n)) if paired else (2 * n - 2, effect_size * math.sqrt(n / 2))
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    # scipy gives nan for the far tail at a large noncentrality and df 1-2, where it is below 1e-9.
    return stats.nct.sf(critical, df, noncentrality) + np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality))


def _textbook(effect: float, sd: float, paired: bool) -> float:
    """n = ((z_{1-a/2} + z_power) sd / delta)^2 per pair, twice that per group unpaired, plus Guenther's t correction."""
    normal = ((Z_ALPHA + Z_POWER) * sd / effect) ** 2
    return normal + Z_ALPHA ** 2 / 2 if paired else 2 * normal + Z_ALPHA ** 2 / 4


CASES = [(0.01, 0.01), (0.005, 0.004), (0.005, 0.012), (0.01, 0.03), (0.002, 0.01), (0.02, 0.015), (0.01, 0.0012)]


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("effect,sd", CASES)
def test_seeds_needed_is_the_first_n_with_enough_power(effect, sd, paired):
    n = seeds_needed(effect, sd, paired)
    assert n >= 2 and float(n).is_integer()
    assert _exact_power(effect / sd, int(n), paired) >= POWER
    if n > 2:
        assert _exact_power(effect / sd, int(n) - 1, paired) < POWER


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("effect,sd", CASES)
def test_seeds_needed_agrees_with_the_textbook_formula(effect, sd, paired):
    assert abs(seeds_needed(effect, sd, paired) - math.ceil(_textbook(effect, sd, paired))) <= 1


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("effect,sd", CASES)
def test_seeds_needed_matches_statsmodels_solve_power(effect, sd, paired):
    """Where n is small, the closed-form bracket and the bisection give statsmodels' own n, rounded up."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    analysis = TTestPower() if paired else TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solved = float(np.squeeze(analysis.solve_power(effect_size=effect / sd, alpha=ALPHA, power=POWER)))
    if math.isnan(solved):  # its root finder gives up on a large effect, which 2 or 3 seeds detect
        assert seeds_needed(effect, sd, paired) <= 3
    else:
        assert seeds_needed(effect, sd, paired) == max(2, math.ceil(solved - 1e-9))


class _CountedPower:
    """_power, counted; it stops the test, rather than running for minutes, past `limit` evaluations."""

    def __init__(self, limit: int) -> None:
        self.calls, self.limit, self.power = 0, limit, _power._power

    def __call__(self, *args):
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError(f"more than {self.limit} power evaluations for one seed count")
        return self.power(*args)


# The issue's --effect 1e-12 searched for minutes; the others straddle MAX_SEEDS and the smallest answers.
BOUNDED = [(1e-12, 0.01), (1e-9, 0.05), (1e-4, 0.5), (0.001, 0.036), (0.001, 0.035), (0.01, 0.01), (0.05, 0.001)]


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("effect,sd", BOUNDED)
def test_seeds_needed_takes_a_bounded_number_of_power_evaluations(monkeypatch, effect, sd, paired):
    counted = _CountedPower(limit=2 * math.ceil(math.log2(MAX_SEEDS)) + 4)
    monkeypatch.setattr(_power, "_power", counted)
    monkeypatch.setattr(_power, "_solve_power", lambda *args, **kwargs: pytest.fail("an unbounded root search"))
    n = seeds_needed(effect, sd, paired)
    assert math.isnan(n) or 2 <= n <= MAX_SEEDS
    if math.isnan(n):  # "more than MAX_SEEDS" is an answer: the noncentral t agrees
        assert _exact_power(effect / sd, MAX_SEEDS, paired) < POWER
    else:
        assert _exact_power(effect / sd, int(n), paired) >= POWER


def test_a_tiny_effect_is_more_than_max_seeds_in_the_sentence(grid_run):
    plan = seed_plan(load_run(grid_run), effect=1e-4)
    row = next(plan.table.itertuples())
    row = row._replace(sd_diff=0.05, seeds_needed=seeds_needed(1e-4, 0.05, row.paired))
    assert f"more than {MAX_SEEDS:,} seeds per level" in _power.plan_sentence(row, None, plan)


@pytest.mark.parametrize("value", [1e-300, 0.0, 1.0, 5e-5])
def test_study_refuses_a_target_effect_out_of_range_at_load(value):
    with pytest.raises(StudyError) as caught:
        study_from_dict({"name": "t", "question": "q", "space": {"base": "cifar_resnet20"},
                         "report": {"target_effect": value}})
    message = str(caught.value)
    assert f"report.target_effect: out of range; got {value!r}; allowed: a fraction strictly between 0 and 1, " \
           "at least 0.0001" in message


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("n", [3, 5, 12, 40])
def test_minimum_detectable_effect_has_exactly_the_power(n, paired):
    sd = 0.007
    mde = minimum_detectable_effect(n, sd, paired)
    assert _exact_power(mde / sd, n, paired) == pytest.approx(POWER, abs=1e-6)
    # Large n: the normal approximation delta = (z_{1-a/2} + z_power) sd sqrt(1/n or 2/n).
    if n == 40:
        scale = math.sqrt(1 / n) if paired else math.sqrt(2 / n)
        assert mde == pytest.approx((Z_ALPHA + Z_POWER) * sd * scale, rel=0.05)


def test_degenerate_inputs():
    assert seeds_needed(0.01, 0.0, True) == 2  # no noise: the least a t-test needs
    assert math.isnan(seeds_needed(0.01, float("nan"), True))
    assert math.isnan(seeds_needed(1e-9, 0.05, False))  # beyond any budget: no number to plan with
    assert seeds_needed(0.05, 0.001, False) == 2
    assert math.isnan(minimum_detectable_effect(1, 0.01, True))
    assert minimum_detectable_effect(4, 0.0, True) == 0.0


def test_target_effect_comes_from_study_yaml(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    assert target_effect(load_run(run_dir)) == (DEFAULT_TARGET_EFFECT, "the default (study.yaml is missing)")
    (run_dir / "study.yaml").write_text("name: shortcut_ablation\nreport:\n  target_effect: 0.005\n")
    run = load_run(run_dir)
    assert target_effect(run) == (0.005, "report.target_effect in study.yaml")
    plan = seed_plan(run)
    assert set(plan.table["target_effect"]) == {0.005}
    build_report(run_dir)
    assert "Target effect: 0.5 pp, from report.target_effect in study.yaml" in (run_dir / "report.html").read_text()
    (run_dir / "study.yaml").write_text("name: shortcut_ablation\n")
    assert target_effect(load_run(run_dir))[0] == DEFAULT_TARGET_EFFECT


@pytest.mark.parametrize("value", ["1.5", "0", "'half'", "true", "1e-300", "0.00009"])
def test_bad_target_effect_names_file_field_and_rule(grid_run, copy_run, value):
    run_dir = copy_run(grid_run)
    (run_dir / "study.yaml").write_text(f"report:\n  target_effect: {value}\n")
    with pytest.raises(ReportError, match=r"study\.yaml: report\.target_effect: got .*; allowed: a fraction strictly "
                                          r"between 0 and 1") as error:
        build_report(run_dir)
    assert str(run_dir / "study.yaml") in str(error.value)


def test_power_table_uses_the_comparison_s_own_variance(grid_run):
    """Paired rows use the sd of the per-seed differences, unpaired rows the pooled sd, as their t-tests do."""
    from reports._factorial import factorial_tables

    run = load_run(grid_run)
    plan = seed_plan(run).table
    simple = factorial_tables(run).simple_effects
    merged = plan.merge(simple, on=["factor", "level", "reference", "within", "metric"], suffixes=("", "_simple"))
    assert len(merged) == len(plan) == len(simple)
    for row in merged.itertuples():
        assert row.paired == row.paired_simple and row.n == row.n_simple
        # Cohen's d (or d_z) is the difference over the very sd the power uses.
        assert row.effect_size == pytest.approx(row.diff / row.sd_diff, rel=1e-9)
        assert row.seeds_needed == seeds_needed(row.target_effect, row.sd_diff, row.paired)
