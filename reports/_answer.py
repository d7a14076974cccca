"""The study's answer in plain text: what `python -m search.run` prints when a study ends.

The same numbers as the report's simple effects (or, for one factor, its
pooled comparisons): each level against its reference, with the test, the
Holm-adjusted p and the verdict that comes from it. A study that names its
question's comparisons (`report.primary`) gets those first, with what it would
take to resolve them (reports._primary); everything else follows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from reports._factorial import factorial_tables
from reports._load import RunData, load_run
from reports._power import seed_plan
from reports._primary import PrimaryAnswers, command_lines, primary_answers, resolve_clause
from reports._stats import ABLATION_COLUMNS, ablation_table, metric_name

MAX_LINES = 12


def _points(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value * 100:+.1f}"


def _line(row: Any, reference: Any, where: str) -> str:
    p = "n/a" if math.isnan(row.p_adjusted) else f"{row.p_adjusted:.3g}"
    test = f"{row.test}, " if isinstance(row.test, str) and row.test else ""  # none where n is too small to test
    return (f"  {row.factor}={row.level} vs {reference}{where}: {_points(row.diff)} pp "
            f"[{_points(row.diff_ci_low)}, {_points(row.diff_ci_high)}], {test}Holm p = {p}: {row.verdict}")


def matching_text(run: RunData) -> str | None:
    """What was matched and how closely, from run.json and the match.* columns; None for an unmatched study."""
    settings = run.info.get("match_complexity")
    if not isinstance(settings, dict):
        return None
    by, tolerance = settings.get("by", "macs"), settings.get("tolerance", 0.01)
    target = (f"a fixed target of {settings['to']:.4g} {by}" if settings.get("to") is not None
              else "the same point with its design factors at their reference levels")
    text = (f"Matched complexity: {by} within {tolerance:.2%} of {target}, by solving "
            f"{settings.get('adjust', 'width_multiplier')}")
    gaps = run.results.get("match.gap")
    if gaps is not None and gaps.notna().any():
        worst = gaps.abs().idxmax()
        row = run.results.loc[worst]
        levels = ", ".join(f"{f.name}={row[f.column]}" for f in run.factors if f.column in run.results.columns)
        over = int((gaps.abs() > tolerance).sum())
        text += f"; largest gap {gaps[worst]:+.2%} ({levels})"
        if over:
            text += f"; {over} trial(s) miss the tolerance (no integer widths reach it)"
    return text + "."


def primary_lines(run: RunData, primary: PrimaryAnswers) -> list[str]:
    """The answer to the study's question (report.primary): each comparison's test, and what would resolve it."""
    question = run.info.get("question")
    lines = [f"the study's question: {question}" if question else "the study's question (report.primary):"]
    for answer in primary.answers:
        if answer.problem:
            lines.append(f"  {answer.name}: {answer.problem}")
            continue
        for row in answer.rows.itertuples():
            where = f" at {row.within.replace('; ', ', ')}" if row.within else ""
            resolve = resolve_clause(row, primary.plan)
            lines.append(_line(row, answer.reference, where) + (f"; {resolve}" if resolve else ""))
        if answer.scope:
            lines.append(f"  ({answer.scope})")
    if primary.more is not None:
        first, *command = command_lines(primary.more, primary.plan.target_effect)
        lines += [f"  {first}", *(f"    {text}" for text in command)]
    return lines


def answer_lines(run_dir: str | Path) -> list[str]:
    """Plain-text lines: the study's primary comparisons first, where it names them (report.primary); then each
    level vs its reference (within each combination of the other factors when crossed)."""
    run = load_run(run_dir)
    metric = run.headline_metric
    lines = []
    factorial = factorial_tables(run)
    ablation = pd.DataFrame(columns=ABLATION_COLUMNS) if factorial.crossed else ablation_table(run)
    primary = primary_answers(run, ablation, factorial, lambda: seed_plan(run, tested=factorial.tested))
    if primary is not None:
        lines += primary_lines(run, primary)
    matched = matching_text(run)
    if matched:
        lines.append(matched)
    if factorial.crossed:
        table = factorial.simple_effects[factorial.simple_effects["metric"] == metric]
        rows = [_line(row, row.reference, f" at {row.within.replace('; ', ', ')}") for row in table.itertuples()]
        title = f"simple effects on {metric_name(metric)} (each within the other factors' levels; Holm per factor):"
        found = factorial.interactions[(factorial.interactions["metric"] == metric)
                                       & (factorial.interactions["verdict"] == "interaction")]
        rows += [f"  interaction {row.factor_a} x {row.factor_b}: two-way ANOVA p = {row.p_value:.3g}"
                 for row in found.itertuples()]
    else:
        table = ablation[(ablation["metric"] == metric) & ~ablation["is_reference"]]
        references = {factor.name: factor.reference for factor in run.factors}
        rows = [_line(row, references.get(row.factor), "") for row in table.itertuples()]
        title = f"each level vs its reference on {metric_name(metric)}:"
    if rows:
        lines.append(title)
        lines += rows[:MAX_LINES] + ([f"  ... and {len(rows) - MAX_LINES} more in the report"]
                                     if len(rows) > MAX_LINES else [])
    return lines
