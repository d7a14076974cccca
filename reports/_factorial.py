"""Factorial statistics: cell means, simple effects and interaction tests of a study's categorical factors.

A comparison pooled over another factor's levels answers "is B better than A
on average over depths?", and hides the answer when the depths disagree: He
et al. 2015 (arXiv 1512.03385) find a plain net fine at 20 layers and worse at
56. So each level is also compared with its reference *within* every
combination of the other factors (a simple effect), and each pair of factors
gets a two-way ANOVA interaction test (statsmodels `ols` + `anova_lm`).

Simple effects follow the decision rule of reports._stats: a paired t-test
when both groups ran the same seeds and differ only in the compared factor,
Welch's t-test otherwise; Holm over the comparisons of one factor and metric;
a verdict of higher or lower exactly when the Holm-adjusted p is below 0.05.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd

from reports import _budget as budgets
from reports._budget import SectionBudget
from reports._load import Factor, RunData, level_labels
from reports._stats import (ABLATION_METRICS, ALPHA, NULL_LEVEL, Comparison, accuracy_values, compare, conditional,
                            holm, pairable, t_mean_ci, verdict)

# The ANOVA of each pair of factors; named in the table and the page. Seeds
# shared across cells enter as blocks (a randomised complete block design), as
# the simple effects pair by seed: a seed's data order and augmentation move
# every cell it ran, and leaving that in the residual hides interactions.
INTERACTION_TEST = "two-way ANOVA F (Type II)"
BLOCKED_TEST = "two-way ANOVA F (Type II), seeds as blocks"
INTERACTION_VERDICTS = {
    "interaction": f"p < {ALPHA:g}: the effect of one factor depends on the level of the other; read the simple effects, "
                   "not the pooled comparisons",
    "within noise": f"p >= {ALPHA:g}: no evidence that the effects differ between levels",
    "not testable": "the design cannot separate the interaction (see the reason)",
}

SIMPLE_EFFECT_COLUMNS = ["factor", "level", "reference", "within", "metric", "n", "n_ref", "paired", "diff",
                         "diff_ci_low", "diff_ci_high", "p_value", "p_adjusted", "verdict", "test", "effect_size"]
INTERACTION_COLUMNS = ["factor_a", "factor_b", "metric", "statistic", "p_value", "effect_size", "verdict",
                       "test", "df_num", "df_den", "n", "reason"]
CELL_STAT_COLUMNS = ["metric", "n", "mean", "sd", "ci_low", "ci_high"]


def factorial_factors(run: RunData) -> list[Factor]:
    """The categorical factors with at least two levels to compare (a null '(none)' level does not count)."""
    return [factor for factor in run.categorical_factors
            if len([level for level in factor.levels if level != NULL_LEVEL]) >= 2]


def _metrics(run: RunData) -> list[str]:
    return [metric for metric in ABLATION_METRICS if metric in run.results.columns]


def within_text(within: tuple[tuple[str, str], ...]) -> str:
    """The other factors' levels as `name=value` joined by '; ' (the `within` column); '' for none."""
    return "; ".join(f"{name}={value}" for name, value in within)


@dataclass(frozen=True)
class SimpleComparison:
    """A level and its reference within one combination of the other factors, before any test."""

    factor: Factor
    level: str
    within: tuple[tuple[str, str], ...]
    metric: str
    trials: pd.DataFrame
    reference_trials: pd.DataFrame
    pairable: bool

    @property
    def reference(self) -> str:
        return self.factor.reference

    @property
    def testable(self) -> bool:
        """Both groups hold at least 2 trials: the least a t-test needs."""
        return len(self.trials) >= 2 and len(self.reference_trials) >= 2

    def t_test(self) -> Comparison:
        """The comparison by the report's one decision rule (reports._stats.compare)."""
        values = self.trials[self.metric].to_numpy(dtype=float)
        reference = self.reference_trials[self.metric].to_numpy(dtype=float)
        if self.pairable:
            return compare(values, reference, self.trials["seed"].to_numpy(), self.reference_trials["seed"].to_numpy())
        return compare(values, reference)


def _labels(frame: pd.DataFrame, factors: list[Factor]) -> pd.DataFrame:
    return pd.DataFrame({factor.name: level_labels(frame[factor.column]) for factor in factors}, index=frame.index)


def _scored_labels(run: RunData, metric: str, factors: list[Factor]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials with a `metric` (only the columns a comparison reads) and their level labels of `factors`."""
    scored = accuracy_values(run, metric)
    # What a comparison reads (its test, `pairable`, the seed plan's wall time): slicing 70 columns 470 times is
    # most of a 10^5-trial report otherwise.
    kept = [metric, "seed", "wall_s", "packed_seeds", *(other.column for other in run.factors)]
    scored = scored[[column for column in dict.fromkeys(kept) if column in scored.columns]]
    return scored, _labels(scored, factors)


def simple_comparisons(run: RunData, metric: str, factor: Factor, factors: list[Factor] | None = None,
                       scored_labels: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Iterator[SimpleComparison]:
    """Each level of `factor` against its reference within every combination of the other `factors`' levels.

    A conditional factor's null level is never compared (it has no value to
    test). A combination that ran the level but too few trials of it or of the
    reference still yields its comparison, which is then not `testable`.
    `scored_labels`: `_scored_labels(run, metric, factors)`, where the caller has it already.
    """
    factors = factorial_factors(run) if factors is None else factors
    others = [other for other in factors if other.name != factor.name]
    scored, labels = _scored_labels(run, metric, [factor, *others]) if scored_labels is None else scored_labels
    # Every (level, other factors' levels) group at once, each group's trials in row order.
    grouped = labels.groupby([factor.name, *(other.name for other in others)], sort=False).groups
    groups = {key if isinstance(key, tuple) else (key,): index for key, index in grouped.items()}
    for combination in itertools.product(*(other.levels for other in others)):
        within = tuple((other.name, value) for other, value in zip(others, combination))
        reference = None  # one frame for every level of this combination
        for level in factor.levels:
            if level in (factor.reference, NULL_LEVEL) or (level, *combination) not in groups:
                continue
            if reference is None:
                reference_index = groups.get((factor.reference, *combination))
                reference = scored.iloc[0:0] if reference_index is None else scored.loc[reference_index]
            trials = scored.loc[groups[(level, *combination)]]
            yield SimpleComparison(factor, level, within, metric, trials, reference,
                                   pairable(run, factor, trials, reference))


def _walk_comparisons(run: RunData, factors: list[Factor], budget: SectionBudget | None = None
                      ) -> tuple[list[tuple[SimpleComparison, Comparison]], dict[str, int]]:
    """(every testable simple comparison with its t-test, in table order; per factor, how many on the headline
    metric cannot be tested): one walk over the comparisons, which at 10^6 trials take seconds to cut out."""
    tested, untestable = [], {factor.name: 0 for factor in factors}
    for metric in _metrics(run):
        scored_labels = _scored_labels(run, metric, factors)
        for factor in factors:
            for comparison in simple_comparisons(run, metric, factor, factors, scored_labels):
                if comparison.testable:
                    budgets.check(budget)
                    tested.append((comparison, comparison.t_test()))
                elif metric == run.headline_metric:
                    untestable[factor.name] += 1
    return tested, {name: count for name, count in untestable.items() if count}


def tested_comparisons(run: RunData, factors: list[Factor] | None = None,
                       budget: SectionBudget | None = None) -> list[tuple[SimpleComparison, Comparison]]:
    """Every testable simple comparison of every factor and accuracy with its t-test, in table order."""
    return _walk_comparisons(run, factorial_factors(run) if factors is None else factors, budget)[0]


def _untestable_counts(run: RunData, factors: list[Factor]) -> dict[str, int]:
    counts = {}
    for factor in factors:
        count = sum(not comparison.testable for comparison in simple_comparisons(run, run.headline_metric, factor, factors))
        if count:
            counts[factor.name] = count
    return counts


def simple_effects_table(run: RunData, factors: list[Factor] | None = None,
                         tested: list[tuple[SimpleComparison, Comparison]] | None = None,
                         untestable: dict[str, int] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """simple_effects.csv and notes on what it leaves out; Holm over the comparisons of one factor and metric.

    `tested` and `untestable`: what `_walk_comparisons` gives, where the caller has walked them already.
    """
    factors = factorial_factors(run) if factors is None else factors
    tested = tested_comparisons(run, factors) if tested is None else tested
    rows, notes = [], []
    untestable = _untestable_counts(run, factors) if untestable is None else untestable
    for metric in _metrics(run):
        for factor in factors:
            family = []
            for comparison, result in tested:
                if comparison.metric != metric or comparison.factor.name != factor.name:
                    continue
                family.append({
                    "factor": factor.name, "level": comparison.level, "reference": factor.reference,
                    "within": within_text(comparison.within), "metric": metric, "n": result.n, "n_ref": result.n_ref,
                    "paired": result.paired, "diff": result.diff, "diff_ci_low": result.ci_low,
                    "diff_ci_high": result.ci_high, "p_value": result.p_value, "test": result.test,
                    "effect_size": result.effect_size,
                })
            for row, p_adjusted in zip(family, holm([row["p_value"] for row in family])):
                row["p_adjusted"] = p_adjusted
                row["verdict"] = verdict(row["diff"], p_adjusted)
            rows += family
    for name, count in untestable.items():
        notes.append(f"{count} simple effect(s) of {name} are left out: the level or the reference has fewer than 2 "
                     "complete trials in that combination of the other factors.")
    tested = {row["factor"] for row in rows}
    for factor in factors:
        if factor.name not in tested and len(factors) > 1:
            notes.append(f"{factor.name} has no simple effect to test: no combination of the other factors holds 2 or "
                         f"more trials of both a level and the reference {factor.reference} (the factors are not "
                         "crossed); see its pooled comparison.")
        if conditional(run, factor):
            unset = int(run.complete[factor.column].isna().sum())
            notes.append(f"{factor.name} is conditional: it exists only for some trials, so the {unset} complete "
                         f"trial(s) without it belong to none of its levels; its comparisons use only the trials "
                         f"where it is set.")
    return pd.DataFrame(rows, columns=SIMPLE_EFFECT_COLUMNS), notes


def cell_means_table(run: RunData, factors: list[Factor] | None = None) -> pd.DataFrame:
    """cell_means.csv: n, mean, sd and t-based 95% CI of each accuracy in every combination of levels that was run."""
    factors = factorial_factors(run) if factors is None else factors
    columns = [factor.column for factor in factors] + CELL_STAT_COLUMNS
    if not factors:
        return pd.DataFrame(columns=columns)
    run_cells = set(_labels(run.results, factors).itertuples(index=False, name=None))
    rows = []
    for metric in _metrics(run):
        scored = accuracy_values(run, metric)
        labels = _labels(scored, factors)
        values = scored[metric].groupby([labels[factor.name] for factor in factors], sort=False)
        groups = {key if isinstance(key, tuple) else (key,): group.to_numpy(dtype=float) for key, group in values}
        for combination in itertools.product(*(factor.levels for factor in factors)):
            if combination not in run_cells:
                continue
            sample = groups.get(combination, np.array([]))
            low, high = t_mean_ci(sample)
            rows.append({**{factor.column: level for factor, level in zip(factors, combination)}, "metric": metric,
                         "n": len(sample), "mean": float(sample.mean()) if len(sample) else float("nan"),
                         "sd": float(sample.std(ddof=1)) if len(sample) >= 2 else float("nan"),
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=columns)


def _seeds_are_blocks(scored: pd.DataFrame) -> bool:
    """Seeds are blocks when there are several and every one ran more than one trial (cell)."""
    if "seed" not in scored.columns or scored["seed"].isna().any():
        return False
    counts = scored["seed"].value_counts()
    return len(counts) >= 2 and bool((counts >= 2).all())


def _interaction_row(a: Factor, b: Factor, factors: list[Factor], metric: str, scored: pd.DataFrame,
                     labels: pd.DataFrame) -> dict:
    """The ANOVA row of a x b on `metric`; `scored` holds the metric (and seed) of the trials `labels` labels."""
    row = {"factor_a": a.name, "factor_b": b.name, "metric": metric, "statistic": np.nan, "p_value": np.nan,
           "effect_size": np.nan, "verdict": "not testable", "test": INTERACTION_TEST, "df_num": np.nan,
           "df_den": np.nan, "n": 0, "reason": ""}
    # A conditional factor's null cells have no level to test: only trials where both factors exist enter.
    keep = (labels[a.name] != NULL_LEVEL) & (labels[b.name] != NULL_LEVEL)
    if not keep.all():
        scored, labels = scored[keep], labels[keep]
    row["n"] = len(scored)
    if labels[a.name].nunique() < 2 or labels[b.name].nunique() < 2:
        row["reason"] = (f"fewer than 2 levels of {a.name} or {b.name} among the trials where both exist "
                         "(one is conditional on the other)")
        return row
    crossed = pd.crosstab(labels[a.name], labels[b.name])
    if (crossed == 0).to_numpy().any():
        row["reason"] = f"not every combination of {a.name} and {b.name} has a complete trial, so they are not crossed"
        return row
    covariates = [other for other in factors if other.name not in (a.name, b.name)
                  and (labels[other.name] != NULL_LEVEL).all() and labels[other.name].nunique() >= 2]
    blocks = None
    if _seeds_are_blocks(scored):
        blocks = scored["seed"].to_numpy()  # grouped as they are: a text copy of 10^6 seeds only costs time
        row["test"] = BLOCKED_TEST
    anova = interaction_anova(scored[metric].to_numpy(dtype=float), labels[a.name].to_numpy(),
                              labels[b.name].to_numpy(), [labels[other.name].to_numpy() for other in covariates], blocks)
    if anova.df_resid <= 0:
        row["reason"] = "one trial per combination: no residual variance to test the interaction against"
        return row
    if anova.rank_deficient:
        row["reason"] = "the design confounds this pair with another factor"
        return row
    p_value = anova.p_value
    row.update(statistic=anova.statistic, p_value=p_value, df_num=float(anova.df_num), df_den=float(anova.df_resid),
               # Partial eta squared: the interaction's share of the variance it and the noise explain.
               effect_size=anova.ss_interaction / (anova.ss_interaction + anova.ss_residual),
               verdict="interaction" if np.isfinite(p_value) and p_value < ALPHA else "within noise")
    return row


@dataclass(frozen=True)
class InteractionAnova:
    """The A x B line and the residual line of a Type II ANOVA table (statsmodels `anova_lm(typ=2)`)."""

    ss_interaction: float
    df_num: int
    ss_residual: float
    df_resid: int
    rank_deficient: bool

    @property
    def statistic(self) -> float:
        return (self.ss_interaction / self.df_num) / (self.ss_residual / self.df_resid)

    @property
    def p_value(self) -> float:
        from scipy import stats

        return float(stats.f.sf(self.statistic, self.df_num, self.df_resid))


def _one_hot(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Treatment coding: a column per level but the first (as patsy's C())."""
    return (codes[:, None] == np.arange(1, n_levels)[None, :]).astype(float)


def _cells(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(each combination of codes that occurs, one row each in sorted order; each trial's row): np.unique(axis=0).

    One integer per trial (the codes as digits of a mixed-radix number, the first most significant) sorts as
    the rows do, and sorting 10^6 integers takes a hundredth of the time of sorting 10^6 rows.
    """
    # Too many combinations for one int64, or a missing value (code -1): sort the rows themselves.
    if math.prod(sizes) >= 2**62 or any(code.size and code.min() < 0 for code in codes):
        cell_codes, cell = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        return cell_codes, cell.reshape(-1)
    present, cell = np.unique(np.ravel_multi_index(codes, sizes), return_inverse=True)
    return np.stack(np.unravel_index(present, sizes), axis=1), cell.reshape(-1)


def interaction_anova(y: np.ndarray, a: np.ndarray, b: np.ndarray, covariates: list[np.ndarray],
                      blocks: np.ndarray | None) -> InteractionAnova:
    """The Type II F test of the A x B interaction in `y ~ C(a) * C(b) + C(c...) [+ C(block)]`, from cell sums.

    The same numbers as statsmodels' `anova_lm(ols(...).fit(), typ=2)` (tests
    check them to 1e-9), without its design matrix of one row per trial and one
    column per seed: 10^6 trials over 10^4 seeds would be 80 GB. Every column
    but the blocks is constant within a cell (a combination of levels), so:
    the block effects are absorbed by subtracting block means (Frisch-Waugh-
    Lovell), and X'X and X'y of what remains are sums over cells and over
    (block, cell) counts, a p x p system with p the number of cell columns.
    The interaction's sum of squares is the Wald form b' V^-1 b of its
    coefficients (V their block of (X'X)^-1), as statsmodels computes Type II
    with `f_test`; the residual is summed over the trials themselves.
    """
    factors = [a, b, *covariates]
    codes = [pd.factorize(values, sort=True)[0] for values in factors]
    sizes = [int(code.max()) + 1 for code in codes]
    cell_codes, cell = _cells(codes, sizes)
    columns = [_one_hot(cell_codes[:, i], size) for i, size in enumerate(sizes)]
    main_a, main_b = columns[0], columns[1]
    interaction = (main_a[:, :, None] * main_b[:, None, :]).reshape(len(cell_codes), -1)
    # Interaction columns last: their coefficients are the tail of b and their covariance the last block.
    design = np.hstack([main_a, main_b, *columns[2:], interaction])  # one row per cell
    block = pd.factorize(blocks)[0] if blocks is not None else np.zeros(len(y), dtype=np.int64)
    n_blocks, n_cells, p = int(block.max()) + 1, len(cell_codes), design.shape[1]
    block_size = np.bincount(block, minlength=n_blocks).astype(float)
    y_within = y - (np.bincount(block, weights=y, minlength=n_blocks) / block_size)[block]
    cell_size = np.bincount(cell, minlength=n_cells).astype(float)
    by_block_cell = np.bincount(block * n_cells + cell, minlength=n_blocks * n_cells).reshape(n_blocks, n_cells)
    block_sums = by_block_cell.astype(float) @ design  # each block's column sums
    gram = design.T @ (design * cell_size[:, None]) - block_sums.T @ (block_sums / block_size[:, None])
    moment = design.T @ np.bincount(cell, weights=y_within, minlength=n_cells)  # the block means of y_within are 0
    # Exact zeros of a confounded design come out as rounding noise of about n * eps * |gram|; a real eigenvalue
    # of a design of counts is at least about 1 / n of the largest.
    eigenvalues = np.linalg.eigvalsh(gram)
    rank = int((eigenvalues > eigenvalues.max() * 1e-10).sum()) if eigenvalues.max() > 0 else 0
    df_resid = len(y) - n_blocks - rank
    q = interaction.shape[1]
    if df_resid <= 0 or rank < p:
        return InteractionAnova(np.nan, q, np.nan, df_resid, rank < p)
    coefficients = np.linalg.solve(gram, moment)
    fitted = (design @ coefficients)[cell]
    fitted -= (np.bincount(block, weights=fitted, minlength=n_blocks) / block_size)[block]
    ss_residual = float(((y_within - fitted) ** 2).sum())
    tail = coefficients[p - q:]
    covariance = np.linalg.inv(gram)[p - q:, p - q:]
    ss_interaction = float(tail @ np.linalg.solve(covariance, tail))
    return InteractionAnova(ss_interaction, q, ss_residual, df_resid, False)


def interactions_table(run: RunData, factors: list[Factor] | None = None,
                       budget: SectionBudget | None = None) -> pd.DataFrame:
    """interactions.csv: a two-way ANOVA interaction test for each pair of factors and each accuracy.

    The verdict is the F-test's own p against 0.05, unadjusted: a found
    interaction only sends the reader from the pooled table to the simple
    effects, and a missed one is the costlier mistake.
    """
    factors = factorial_factors(run) if factors is None else factors
    rows = []
    for metric in _metrics(run):
        scored = accuracy_values(run, metric)
        labels = _labels(scored, factors)  # once per metric: each pair reads the same labels
        scored = scored[[column for column in (metric, "seed") if column in scored.columns]]
        for a, b in itertools.combinations(factors, 2):
            budgets.check(budget)  # one ANOVA per pair: an OLS fit on the trials where both exist
            rows.append(_interaction_row(a, b, factors, metric, scored, labels))
    return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)


@dataclass
class Factorial:
    """The factorial tables of a run: cell means, simple effects and interactions, and notes on what they omit."""

    factors: list[Factor]
    cell_means: pd.DataFrame
    simple_effects: pd.DataFrame
    interactions: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    # The simple comparisons behind `simple_effects`, with their tests, for the seed plan to reuse.
    tested: list[tuple[SimpleComparison, Comparison]] = field(default_factory=list, repr=False)

    @property
    def crossed(self) -> bool:
        """Two or more factors: only then do simple effects differ from the pooled comparisons."""
        return len(self.factors) >= 2

    def interacting(self, factor: str, metric: str | None = None) -> pd.DataFrame:
        """The interactions found (p < 0.05) that involve `factor` (for `metric`, when given)."""
        table = self.interactions
        found = table[(table["verdict"] == "interaction") & ((table["factor_a"] == factor) | (table["factor_b"] == factor))]
        return found if metric is None else found[found["metric"] == metric]


def factorial_tables(run: RunData, budget: SectionBudget | None = None) -> Factorial:
    """Cell means, simple effects and interaction tests of every categorical factor with 2 or more levels."""
    budgets.check(budget)
    factors = factorial_factors(run)
    tested, untestable = _walk_comparisons(run, factors, budget)
    simple, notes = simple_effects_table(run, factors, tested, untestable)
    return Factorial(factors=factors, cell_means=cell_means_table(run, factors), simple_effects=simple,
                     interactions=interactions_table(run, factors, budget), notes=notes, tested=tested)


def empty_factorial(run: RunData) -> Factorial:
    """The factorial tables with no rows (the factors kept): what a page shows when their budget ran out."""
    return Factorial(factors=factorial_factors(run), cell_means=pd.DataFrame(columns=CELL_STAT_COLUMNS),
                     simple_effects=pd.DataFrame(columns=SIMPLE_EFFECT_COLUMNS),
                     interactions=pd.DataFrame(columns=INTERACTION_COLUMNS))

