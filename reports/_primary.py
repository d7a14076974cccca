"""The study's own question answered first: the comparisons `report.primary` names in study.yaml.

Each is answered by the test the report already runs for it, so its verdict,
p and CI are that table's: the simple effects (per combination of the other
factors, Holm over the factor) where the study crosses factors, else the
ablation table's comparison (Holm over the factor's levels). A crossed study
is never pooled here; the answer says whether the factor interacts, so the
reader knows why it is read per level of the others. Where a comparison is
within noise, the seed plan (reports._power) says how many seeds would resolve
report.target_effect, and `more_seeds` what running them costs, as a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

import runfolder
from reports._factorial import Factorial
from reports._load import Factor, ReportError, RunData, level_label
from reports._power import MAX_SEEDS, MoreSeeds, SeedPlan, more_seeds


# The verdicts of a comparison that was tested (reports._stats.verdict); the others say why it was not.
TESTED_VERDICTS = ("higher", "lower", "within noise")


@dataclass(frozen=True)
class PrimaryAnswer:
    """One primary comparison: its test rows (one per combination of the other factors), read with its plan."""

    factor: str
    level: str
    reference: str
    # Rows of the simple effects or ablation table on the headline metric (columns: level, reference, within, diff,
    # diff_ci_low, diff_ci_high, test, p_adjusted, verdict, n), each with its seed plan (sd_diff, seeds_needed, mde,
    # device_hours; nan where the plan has no row).
    rows: pd.DataFrame
    # How the rows are read: per combination of the other factors and whether the factor interacts; "" for one factor.
    scope: str
    # Why there is no test to show (the factor or the level is not in this run); "" when there are rows.
    problem: str = ""

    @property
    def name(self) -> str:
        return f"{self.factor}={self.level} vs {self.reference}"


@dataclass(frozen=True)
class PrimaryAnswers:
    """Every primary comparison of a run, and the one command that resolves those within noise (None: none to run)."""

    answers: list[PrimaryAnswer]
    plan: SeedPlan
    more: MoreSeeds | None


def declared(run: RunData) -> tuple[runfolder.PrimaryComparison, ...]:
    """`report.primary` from the run folder's study.yaml; empty where it names none or the folder has no study.yaml."""
    try:
        study = runfolder.read_study_record(run.run_dir)
        return () if study is None else study.primary
    except runfolder.RunFolderError as error:
        raise ReportError(str(error)) from None


def _with_plan(rows: pd.DataFrame, plan: SeedPlan, metric: str) -> pd.DataFrame:
    keys = ["factor", "level", "within"]
    planned = plan.table[plan.table["metric"] == metric][keys + ["sd_diff", "seeds_needed", "mde", "device_hours"]]
    return rows.merge(planned, on=keys, how="left")


def _scope(factor: Factor, factorial: Factorial, metric: str) -> str:
    others = [other.name for other in factorial.factors if other.name != factor.name]
    if not others:
        return ""
    per = f"read per {', '.join(others)}, as every simple effect"
    table = factorial.interactions
    tests = table[(table["metric"] == metric) & ((table["factor_a"] == factor.name) | (table["factor_b"] == factor.name))]
    found = [row for row in tests.itertuples() if row.verdict == "interaction"]
    if found:
        pairs = "; ".join(f"{row.factor_a} x {row.factor_b}: two-way ANOVA p = {row.p_value:.3g}" for row in found)
        partners = ", ".join(row.factor_b if row.factor_a == factor.name else row.factor_a for row in found)
        return (f"{per}: {factor.name} interacts ({pairs}), so a comparison pooled over {partners} would average "
                "effects that differ")
    tested = [row for row in tests.itertuples() if np.isfinite(row.p_value)]
    if tested:
        pairs = "; ".join(f"{row.factor_a} x {row.factor_b} p = {row.p_value:.3g}" for row in tested)
        return f"{per}; the two-way ANOVA finds no interaction ({pairs})"
    return f"{per}; the interaction could not be tested"


def _answer(run: RunData, comparison: runfolder.PrimaryComparison, ablation: pd.DataFrame, factorial: Factorial,
            plan: SeedPlan) -> PrimaryAnswer:
    metric = run.headline_metric
    level, reference = level_label(comparison.level), level_label(comparison.reference)
    empty = pd.DataFrame()
    factor = next((f for f in run.categorical_factors if f.name == comparison.factor), None)
    if factor is None:
        return PrimaryAnswer(comparison.factor, level, reference, empty, "",
                             f"{comparison.factor} is not a factor with levels in this run")
    if level not in factor.levels or reference not in factor.levels:
        return PrimaryAnswer(factor.name, level, reference, empty, "",
                             f"{level if level not in factor.levels else reference} is not a level of {factor.name} "
                             f"in this run ({', '.join(factor.levels)})")
    if reference != factor.reference:
        return PrimaryAnswer(factor.name, level, reference, empty, "",
                             f"the report tests {factor.name} against its reference {factor.reference}, not {reference}")
    if factorial.crossed and factor.name in {f.name for f in factorial.factors}:
        table = factorial.simple_effects
        rows = table[(table["metric"] == metric) & (table["factor"] == factor.name) & (table["level"] == level)]
        scope = _scope(factor, factorial, metric)
    else:
        table = ablation
        rows = table[(table["metric"] == metric) & (table["factor"] == factor.name) & (table["level"] == level)]
        rows = rows.assign(reference=factor.reference, within="")
        scope = ""
    # A row without a test (the ablation table's "n too small") has no estimate to lead with.
    rows = rows[rows["verdict"].isin(TESTED_VERDICTS)]
    rows = _with_plan(rows.reset_index(drop=True), plan, metric)
    if rows.empty:
        return PrimaryAnswer(factor.name, level, reference, rows, scope,
                             "no test: the level or its reference has fewer than 2 complete trials")
    return PrimaryAnswer(factor.name, level, reference, rows, scope)


def primary_answers(run: RunData, ablation: pd.DataFrame, factorial: Factorial,
                    seed_plan: Callable[[], SeedPlan]) -> PrimaryAnswers | None:
    """The answers to the run's `report.primary`, from the report's own tables; None where the study names none.

    `seed_plan` gives the report's seed plan, asked for only when there is a primary comparison (the driver's
    answer of a study without one computes none).
    """
    comparisons = declared(run)
    if not comparisons:
        return None
    plan = seed_plan()
    answers = [_answer(run, comparison, ablation, factorial, plan) for comparison in comparisons]
    # One command resolves every primary comparison within noise: the most seeds any of them needs.
    needed = [row.seeds_needed for answer in answers for row in answer.rows.itertuples()
              if row.verdict == "within noise" and np.isfinite(row.seeds_needed) and row.seeds_needed > row.n]
    return PrimaryAnswers(answers, plan, more_seeds(run, int(max(needed))) if needed else None)


def resolve_clause(row: Any, plan: SeedPlan) -> str:
    """What a comparison within noise would take to resolve the target effect, from its seed-plan row; '' if decided."""
    if row.verdict != "within noise":
        return ""
    target = f"{plan.target_effect * 100:.3g} pp"
    unit = "pairs" if row.test == "paired t" else "trials per level"
    if not np.isfinite(row.seeds_needed):
        # No plan row (its budget ran out) says nothing; a plan row without a number is out of reach.
        return "" if not np.isfinite(row.sd_diff) else (f"resolving {target} is out of reach at this noise (more "
                                                         f"than {MAX_SEEDS:,} seeds per level)")
    if row.seeds_needed <= row.n:
        return (f"its {row.n} {unit} already resolve {target} with {plan.power:.0%} power: the difference is likely "
                f"smaller than that")
    hours = (f", about {row.device_hours:.2g} {plan.device_unit} for these two cells"
             if np.isfinite(row.device_hours) else "")
    return f"resolving {target} needs about {int(row.seeds_needed)} seeds per level ({row.n} {unit} now{hours})"


def command_lines(more: MoreSeeds, target_effect: float) -> list[str]:
    """The cost of resolving every primary comparison within noise, and the command that runs it (or why none)."""
    target = f"{target_effect * 100:.3g} pp"
    if not more.points:  # not a grid: no points to run once per seed, so no cost to count
        return [f"to resolve {target}: {more.seeds} seeds per level (no command: {more.why_no_command}; "
                "see python -m reports.plan)"]
    hours = (f"about {more.device_hours:.3g} {more.device_unit} at this run's {more.trial_s:.0f} s per trial"
             if np.isfinite(more.device_hours) else "an unknown cost (no trial recorded its wall time)")
    cost = (f"to resolve {target}: {more.seeds} seeds per point, {hours} ({more.new_trials} new trials: "
            f"{more.seeds - more.seeds_run} more seeds x {more.points} points; the {more.seeds_run} seeds run are "
            "reused, not trained again)")
    if more.command is None:
        return [f"{cost}; no command: {more.why_no_command}"]
    return [f"{cost}:", more.command]
